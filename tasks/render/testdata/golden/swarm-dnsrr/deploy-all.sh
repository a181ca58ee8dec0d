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

state_of() {
  local id st
  id=$(dc ps -q "$1" 2>/dev/null | head -n 1) || true
  if [[ -z "$id" ]]; then echo missing; return; fi
  st=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null) || st=missing
  if [[ $st == starting ]] && run_healthcheck "$id"; then st=healthy; fi
  echo "$st"
}

# run_healthcheck ID: runs the container's own healthcheck once, now, as the
# engine would (CMD: its arguments; CMD-SHELL: through the container's
# /bin/sh), within 10 seconds; true when it passes. The engine runs its
# first check one interval after the start, 30 seconds in these files.
run_healthcheck() {
  local test=()
  mapfile -t test < <(docker inspect -f '{{if .Config.Healthcheck}}{{range .Config.Healthcheck.Test}}{{println .}}{{end}}{{end}}' "$1" 2>/dev/null)
  case ${test[0]:-} in
    CMD) timeout 10 docker exec "$1" "${test[@]:1}" >/dev/null 2>&1 ;;
    CMD-SHELL) timeout 10 docker exec "$1" /bin/sh -c "${test[1]}" >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

http_ok() {
  curl -fsS -g -o /dev/null --max-time 2 "http://$host:$1$2" >/dev/null 2>&1
}

# The start groups, in order (indexes in names): a service starts once
# every service it depends on is healthy, which is seen here, by running
# their healthchecks, rather than by compose, which would wait for the
# engine's first check.
groups=('0 3' '1' '2 4' '5')

echo "deploy-all: start project $project"
deadline=$((SECONDS + timeout))
declare -a status
failed=0
orphans=--remove-orphans
for group in "${groups[@]}"; do
  read -r -a ids <<<"$group"
  if (( failed )); then
    for i in "${ids[@]}"; do status[$i]="not started"; done
    continue
  fi
  start=()
  for i in "${ids[@]}"; do start+=("${names[$i]}"); done
  dc up -d --no-deps $orphans "${start[@]}"
  orphans=
  for i in "${ids[@]}"; do
    name=${names[$i]}
    while :; do
      st=$(state_of "$name")
      case "${modes[$i]}:$st" in
        container:healthy | running:running) break ;;
        http:running) if http_ok "${ports[$i]}" "${paths[$i]}"; then st=healthy; break; fi ;;
        *:unhealthy | *:exited | *:dead) break ;;
      esac
      if (( SECONDS >= deadline )); then st="$st (timeout)"; break; fi
      sleep 0.5
    done
    status[$i]=$st
    case "$st" in healthy | running) ;; *) failed=1 ;; esac
  done
done

printf '\n%-28s %-22s %s\n' SERVICE STATE URL
for i in "${!names[@]}"; do
  url=-
  if [[ "${ports[$i]}" != 0 ]]; then url="http://$host:${ports[$i]}${paths[$i]}"; fi
  printf '%-28s %-22s %s\n' "${names[$i]}" "${status[$i]}" "$url"
done

if (( failed )); then
  for i in "${!names[@]}"; do
    case "${status[$i]}" in healthy | running | "not started") continue ;; esac
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
