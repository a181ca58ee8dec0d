#!/usr/bin/env bash
# Rendered by maestro-deploy for project "maestro", environment "dev".
# Do not edit: `mage render` rewrites this file, and stops at hand edits
# unless told to overwrite them (DEPLOY_OVERWRITE=1), keeping a backup in .backup/.
#
# Builds the images mage has not built, starts the stack, waits until every
# service is healthy and prints a status report. Needs only docker and a
# compose CLI (docker compose, else docker-compose). Exits non-zero when a
# service does not become healthy in time.
#
# Images: an image that mage built (it carries the io.maestro.context-hash
# label) is used as it is, so that this script and mage run the same images
# and never replace each other's containers; the others are built with
# compose. mage builds by content, this script cannot tell whether sources
# changed since: after editing them, run `mage build`, or set
# DEPLOY_BUILD=always.
#
# Settings (environment variables):
#   COMPOSE_PROJECT_NAME   project name (default maestro, as in .env)
#   DEPLOY_COMPOSE         compose command (default: docker compose, else docker-compose)
#   DEPLOY_BUILD           always: build every image with compose, mage's too
#   DEPLOY_HEALTH_TIMEOUT  seconds to wait for health (default 120)
#   DEPLOY_HOST            address the published ports are probed on (default 127.0.0.1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
# .env writes a secret's '$' as ${MAESTRO_DOLLAR} where no quoting keeps
# it literal for both compose versions; compose v2 would prefer this shell's
# value of it to the file's.
unset MAESTRO_DOLLAR

project=maestro
if [[ -n "${COMPOSE_PROJECT_NAME:-}" ]]; then project=$COMPOSE_PROJECT_NAME; fi
timeout=${DEPLOY_HEALTH_TIMEOUT:-120}
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
ports=(0 9005 9003 9004 9000 9080)
paths=(/health /health /health /health /health /health)

# DEPLOY_BUILD=always builds every image; nothing else is meant.
case ${DEPLOY_BUILD:-} in
  "" | always) ;;
  *)
    echo "deploy-all: DEPLOY_BUILD=$(printf %q "$DEPLOY_BUILD"): want always, or nothing" >&2
    exit 2
    ;;
esac

# Pre-build steps, each run in its source folder when its program exists
# there; without it the image is built from what the folder already holds.
has_program() { (cd "$1" && command -v "$2" >/dev/null 2>&1); }
prebuild() {
  case $1 in
    state-store)
      if has_program /src/maestro/examples/maestro-platform/infrastructure/state-store go; then
        printf 'deploy-all: prebuild %s\n' "$1"
        (cd /src/maestro/examples/maestro-platform/infrastructure/state-store && export 'CGO_ENABLED=0' && export 'GOOS=linux' && exec go build -trimpath '-ldflags=-s -w' -o app .)
      else
        printf 'deploy-all: skip prebuild of %s: %s not found\n' "$1" go
      fi
      ;;
    template-service)
      if has_program /src/maestro/examples/maestro-platform/services/template-service go; then
        printf 'deploy-all: prebuild %s\n' "$1"
        (cd /src/maestro/examples/maestro-platform/services/template-service && export 'CGO_ENABLED=0' && export 'GOOS=linux' && exec go build -trimpath '-ldflags=-s -w' -o app .)
      else
        printf 'deploy-all: skip prebuild of %s: %s not found\n' "$1" go
      fi
      ;;
    automation-service)
      if has_program /src/maestro/examples/maestro-platform/services/automation-service go; then
        printf 'deploy-all: prebuild %s\n' "$1"
        (cd /src/maestro/examples/maestro-platform/services/automation-service && export 'CGO_ENABLED=0' && export 'GOOS=linux' && exec go build -trimpath '-ldflags=-s -w' -o app .)
      else
        printf 'deploy-all: skip prebuild of %s: %s not found\n' "$1" go
      fi
      ;;
    k8s-execution-service)
      if has_program /src/maestro/examples/maestro-platform/services/k8s-execution-service go; then
        printf 'deploy-all: prebuild %s\n' "$1"
        (cd /src/maestro/examples/maestro-platform/services/k8s-execution-service && export 'CGO_ENABLED=0' && export 'GOOS=linux' && exec go build -trimpath '-ldflags=-s -w' -o app .)
      else
        printf 'deploy-all: skip prebuild of %s: %s not found\n' "$1" go
      fi
      ;;
    quality-fabric)
      if has_program /src/maestro/examples/maestro-platform/quality-fabric go; then
        printf 'deploy-all: prebuild %s\n' "$1"
        (cd /src/maestro/examples/maestro-platform/quality-fabric && export 'CGO_ENABLED=0' && export 'GOOS=linux' && exec go build -trimpath '-ldflags=-s -w' -o app .)
      else
        printf 'deploy-all: skip prebuild of %s: %s not found\n' "$1" go
      fi
      ;;
    maestro-gateway)
      if has_program /src/maestro/examples/maestro-platform/maestro-engine go; then
        printf 'deploy-all: prebuild %s\n' "$1"
        (cd /src/maestro/examples/maestro-platform/maestro-engine && export 'CGO_ENABLED=0' && export 'GOOS=linux' && exec go build -trimpath '-ldflags=-s -w' -o app .)
      else
        printf 'deploy-all: skip prebuild of %s: %s not found\n' "$1" go
      fi
      ;;
  esac
}

# built_by_mage IMAGE: whether IMAGE exists and mage built it: mage labels
# each image it builds with the hash of its content.
l_context_hash=io.maestro.context-hash
built_by_mage() {
  local keys key
  keys=$(docker image inspect --format '{{range $k, $v := .Config.Labels}}{{println $k}}{{end}}' "$1" 2>/dev/null) || return 1
  while IFS= read -r key; do
    if [[ $key == "$l_context_hash" ]]; then return 0; fi
  done <<<"$keys"
  return 1
}

# The services built from source, and the image each runs.
build_names=(state-store template-service automation-service k8s-execution-service quality-fabric maestro-gateway)
build_images=(maestro/state-store:latest maestro/template-service:latest maestro/automation-service:latest maestro/k8s-execution-service:latest maestro/quality-fabric:latest maestro/maestro-gateway:latest)
to_build=()
for i in "${!build_names[@]}"; do
  name=${build_names[$i]}
  image=${build_images[$i]}
  if [[ ${DEPLOY_BUILD:-} == always ]]; then
    why="DEPLOY_BUILD=always"
  elif built_by_mage "$image"; then
    printf 'deploy-all: reuse %s: %s, built by mage\n' "$name" "$image"
    continue
  elif docker image inspect "$image" >/dev/null 2>&1; then
    why="$image was not built by mage"
  else
    why="no image $image yet"
  fi
  printf 'deploy-all: build %s: %s\n' "$name" "$why"
  to_build+=("$name")
done
for name in "${to_build[@]}"; do
  prebuild "$name"
done
if ((${#to_build[@]} > 0)); then
  echo "deploy-all: build images of ${to_build[*]}"
  dc build "${to_build[@]}"
fi

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
