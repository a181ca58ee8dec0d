#!/usr/bin/env bash
# Rendered by maestro-deploy for project "maestro", environment "demo".
# Do not edit: `mage render` rewrites this file, and stops at hand edits
# unless told to overwrite them (DEPLOY_OVERWRITE=1), keeping a backup in .backup/.
#
# Tests the deployed stack from this host with curl: each service's health
# path and the catalog's "http" checks (status and body text). Prints a
# PASS/FAIL line per check and a summary; exits non-zero when one fails.
# JSON field checks and checks from inside the stack network ("network"
# checks) are run by `mage testAll`.
#
# Settings (environment variables):
#   DEPLOY_HOST  address the published ports are probed on (default 127.0.0.1)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

host=${DEPLOY_HOST:-127.0.0.1}
if ! command -v curl >/dev/null 2>&1; then
  echo "test-all: curl is needed" >&2
  exit 2
fi

body=$(mktemp)
trap 'rm -f "$body"' EXIT
passed=0
failed=0
skipped=0

# check SERVICE NAME PORT PATH STATUS CONTAINS RETRIES TIMEOUT
check() {
  local service=$1 name=$2 port=$3 path=$4 want=$5 contains=$6 retries=$7 limit=$8
  local url="http://$host:$port$path" code text attempt=0 why
  while :; do
    why=
    code=$(curl -sS -g -o "$body" -w '%{http_code}' --max-time "$limit" "$url" 2>/dev/null) || code=000
    if [[ "$code" != "$want" ]]; then
      why="status $code, want $want"
    elif [[ -n "$contains" ]]; then
      text=
      IFS= read -r -d '' text <"$body" || true
      if [[ "$text" != *"$contains"* ]]; then why="body does not contain the expected text"; fi
    fi
    if [[ -z "$why" ]]; then
      printf 'PASS  %-24s %s (%s)\n' "$service" "$name" "$url"
      passed=$((passed + 1))
      return 0
    fi
    if (( attempt >= retries )); then
      printf 'FAIL  %-24s %s (%s): %s\n' "$service" "$name" "$url" "$why"
      failed=$((failed + 1))
      return 0
    fi
    attempt=$((attempt + 1))
    sleep 1
  done
}

skip() {
  printf 'SKIP  %-24s %s: %s\n' "$1" "$2" "$3"
  skipped=$((skipped + 1))
}

check template-service health 8005 /health 200 '' 2 2
check automation-service health 8003 /health 200 '' 2 2
check k8s-execution-service health 8004 /health 200 '' 2 2
check quality-fabric health 8000 /health 200 '' 2 2
check maestro-gateway health 8080 /health 200 '' 2 2

echo
echo "test-all: $passed PASS, $failed FAIL, $skipped SKIP"
if (( failed > 0 )); then exit 1; fi
