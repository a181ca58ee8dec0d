#!/usr/bin/env bash
# Rendered by maestro-deploy for project "maestro", environment "demo".
# Do not edit: `mage render` rewrites this file, and stops at hand edits
# unless told to overwrite them (DEPLOY_OVERWRITE=1), keeping a backup in .backup/.
#
# Starts the stack from the images already on this engine (it builds
# nothing), waits until every service is healthy and prints a status
# report. Needs only docker and a compose CLI (docker compose, else
# docker-compose). Exits non-zero when a service does not become healthy
# in time.
#
# Settings (environment variables):
#   COMPOSE_PROJECT_NAME   project name (default maestro, as in .env)
#   DEPLOY_COMPOSE         compose command (default: docker compose, else docker-compose)
#   DEPLOY_HEALTH_TIMEOUT  seconds to wait for health (default 180)
#   DEPLOY_HOST            address the published ports are probed on (default 127.0.0.1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# .env writes a secret's '$' as ${MAESTRO_DOLLAR} where no quoting keeps
# it literal for both compose versions; compose v2 would prefer this shell's
# value of it to the file's.
unset MAESTRO_DOLLAR

project=maestro
if [[ -n "${COMPOSE_PROJECT_NAME:-}" ]]; then project=$COMPOSE_PROJECT_NAME; fi
timeout=${DEPLOY_HEALTH_TIMEOUT:-180}
host=${DEPLOY_HOST:-127.0.0.1}

if [[ -n "${DEPLOY_COMPOSE:-}" ]]; then
  read -r -a compose <<<"$DEPLOY_COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  echo "deploy-all: no compose CLI: install the docker compose plugin or docker-compose" >&2
  exit 2
fi
dc() { "${compose[@]}" -p "$project" -f docker-compose.yml "$@"; }

# One entry per service, in start order: name, how its health is known
# (container: the image's healthcheck; http: GET on the published port;
# running: the container runs), published port, health path.
names=(state-store template-service automation-service k8s-execution-service quality-fabric maestro-gateway)
modes=(container container container container container container)
ports=(0 8005 8003 8004 8000 8080)
paths=(/health /health /health /health /health /health)

echo "deploy-all: start project $project"
dc up -d --remove-orphans

state_of() {
  local id
  id=$(dc ps -q "$1" 2>/dev/null | head -n 1) || true
  if [[ -z "$id" ]]; then echo missing; return; fi
  docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing
}

http_ok() {
  curl -fsS -g -o /dev/null --max-time 2 "http://$host:$1$2" >/dev/null 2>&1
}

deadline=$((SECONDS + timeout))
declare -a status
failed=0
for i in "${!names[@]}"; do
  name=${names[$i]}
  while :; do
    st=$(state_of "$name")
    case "${modes[$i]}:$st" in
      container:healthy | running:running) break ;;
      http:running) if http_ok "${ports[$i]}" "${paths[$i]}"; then st=healthy; break; fi ;;
      *:unhealthy | *:exited | *:dead) break ;;
    esac
    if (( SECONDS >= deadline )); then st="$st (timeout)"; break; fi
    sleep 1
  done
  status[$i]=$st
  case "$st" in healthy | running) ;; *) failed=1 ;; esac
done

printf '\n%-28s %-22s %s\n' SERVICE STATE URL
for i in "${!names[@]}"; do
  url=-
  if [[ "${ports[$i]}" != 0 ]]; then url="http://$host:${ports[$i]}${paths[$i]}"; fi
  printf '%-28s %-22s %s\n' "${names[$i]}" "${status[$i]}" "$url"
done

if (( failed )); then
  for i in "${!names[@]}"; do
    case "${status[$i]}" in healthy | running) continue ;; esac
    echo
    echo "--- last log lines of ${names[$i]}:"
    dc logs --tail 20 "${names[$i]}" 2>&1 || true
  done
  echo
  echo "deploy-all: FAILED: not every service is healthy" >&2
  exit 1
fi
echo
echo "deploy-all: OK: ${#names[@]} services healthy"
