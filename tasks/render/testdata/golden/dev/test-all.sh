#!/usr/bin/env bash
# Rendered by maestro-deploy for project "maestro", environment "dev".
# Do not edit: `mage render` rewrites this file, and stops at hand edits
# unless told to overwrite them (DEPLOY_OVERWRITE=1), keeping a backup in .backup/.
#
# Runs the checks of `mage testAll` on the deployed stack, with docker alone:
#   container  the service's containers run and, with a healthcheck, are healthy
#   http       a GET from this host on the service's published port: the
#              catalog's http checks, else the health path
#   network    a GET from inside the stack's network, by service name: what
#              another service sees
# Each HTTP check is judged as testAll judges it: status, body text, JSON
# field, with its timeout and retries. They are made by testAll's probe, a
# FROM scratch image (maestro-deploy/probe:<hash>) that `mage testAll` builds on
# this engine. Without it, http checks are made with curl, which judges the
# status and body text but not a JSON field, and network checks are not made;
# the lines and the summary say so.
#
# Prints a line per check, PASS, FAIL or SKIP (not made here, or not wholly:
# the line says what was left out), and a summary. Exits 1 when a check fails,
# 2 on a bad setting or a missing tool.
#
# Settings (environment variables):
#   COMPOSE_PROJECT_NAME  project name (default maestro, as in .env)
#   DEPLOY_HOST           address the published ports are probed on (default
#                         127.0.0.1): a host name, an IPv4 address, or an IPv6
#                         address in brackets
#   DEPLOY_PROBE_IMAGE    the probe image to use (default: the newest
#                         maestro-deploy/probe image here that works); set but empty: none
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

die() {
  echo "test-all: $*" >&2
  exit 2
}

project=maestro
environment=dev
if [[ -n "${COMPOSE_PROJECT_NAME:-}" ]]; then project=$COMPOSE_PROJECT_NAME; fi
[[ $project =~ ^[a-z0-9][a-z0-9_-]*$ ]] ||
  die "COMPOSE_PROJECT_NAME=$(printf %q "$project"): not a compose project name (lower-case letters, digits, '_', '-')"
# The host goes into the probe's JSON and into URLs: a name, an IPv4
# address or a bracketed IPv6 address, and nothing else.
host=${DEPLOY_HOST:-127.0.0.1}
[[ ${#host} -le 253 && $host =~ ^([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])$ ]] ||
  die "DEPLOY_HOST=$(printf %q "$host"): not a host name or address (an IPv6 address goes in brackets: [::1])"
command -v docker >/dev/null 2>&1 || die "docker is needed"
if ! err=$(docker version --format '{{.Server.Version}}' 2>&1 >/dev/null); then
  die "docker cannot reach its engine: $err"
fi

l_project=com.docker.compose.project
l_network=com.docker.compose.network
l_probe=maestro-deploy.probe
l_service=com.docker.compose.service
l_oneoff=com.docker.compose.oneoff
network_name=platform

# One entry per check, in the order of testAll's report: service, check
# name, kind, whether its service is a one-shot job (its container check
# wants it exited 0); for an http check, what curl needs (published port, path,
# status, body text, retries, timeout in seconds) and the JSON assertion
# curl cannot judge; a verdict known without running the check.
c_service=(state-store template-service template-service template-service automation-service automation-service automation-service k8s-execution-service k8s-execution-service quality-fabric quality-fabric maestro-gateway maestro-gateway maestro-gateway maestro-gateway maestro-gateway maestro-gateway)
c_name=(container container health 'reaches state-store' container health 'reaches template-service' container health container health container health 'gateway -> quality-fabric' 'gateway -> automation-service' 'gateway -> k8s-execution-service' 'gateway -> template-service')
c_kind=(container container http network container http network container http container http container http network network network network)
c_once=(0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)
c_port=(0 0 9005 0 0 9003 0 0 9004 0 9000 0 9080 0 0 0 0)
c_path=('' '' /health '' '' /health '' '' /health '' /health '' /health '' '' '' '')
c_status=(0 0 200 0 0 200 0 0 200 0 200 0 200 0 0 0 0)
c_contains=('' '' '' '' '' '' '' '' '' '' '' '' '' '' '' '' '')
c_retries=(0 0 2 0 0 2 0 0 2 0 2 0 2 0 0 0 0)
c_timeout=('' '' 2 '' '' 2 '' '' 2 '' 2 '' 2 '' '' '' '')
c_json=('' '' 'json field status = "ok"' '' '' 'json field status = "ok"' '' '' 'json field status = "ok"' '' 'json field status = "ok"' '' 'json field status = "ok"' '' '' '' '')
c_fail=('' '' '' '' '' '' '' '' '' '' '' '' '' '' '' '' '')

# The probe's checks (probe.Spec, id = index above). The http ones reach
# the host as $host, put in place of the placeholder once checked.
http_specs='[{"id":"2","url":"http://<host>:9005/health","status":200,"json_field":"status","json_equals":"ok","timeout_ms":2000,"retries":2},{"id":"5","url":"http://<host>:9003/health","status":200,"json_field":"status","json_equals":"ok","timeout_ms":2000,"retries":2},{"id":"8","url":"http://<host>:9004/health","status":200,"json_field":"status","json_equals":"ok","timeout_ms":2000,"retries":2},{"id":"10","url":"http://<host>:9000/health","status":200,"json_field":"status","json_equals":"ok","timeout_ms":2000,"retries":2},{"id":"12","url":"http://<host>:9080/health","status":200,"json_field":"status","json_equals":"ok","timeout_ms":2000,"retries":2}]'
http_specs=${http_specs//'<host>'/$host}
http_bound=67
network_specs='[{"id":"3","url":"http://template-service:8005/call/state-store","status":200,"contains":"\"ok\":true","timeout_ms":2000,"retries":2},{"id":"6","url":"http://automation-service:8003/call/template-service","status":200,"contains":"\"ok\":true","timeout_ms":2000,"retries":2},{"id":"13","url":"http://maestro-gateway:8080/call/quality-fabric","status":200,"contains":"\"ok\":true","timeout_ms":2000,"retries":2},{"id":"14","url":"http://maestro-gateway:8080/call/automation-service","status":200,"contains":"\"ok\":true","timeout_ms":2000,"retries":2},{"id":"15","url":"http://maestro-gateway:8080/call/k8s-execution-service","status":200,"contains":"\"ok\":true","timeout_ms":2000,"retries":2},{"id":"16","url":"http://maestro-gateway:8080/call/template-service","status":200,"contains":"\"ok\":true","timeout_ms":2000,"retries":2}]'
network_bound=67

declare -a state detail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# bounded SECONDS COMMAND...: a probe run may not hang the script. Without
# coreutils' timeout, the probe's own limit (5 minutes) bounds it.
if command -v timeout >/dev/null 2>&1; then
  bounded() {
    local secs=$1
    shift
    timeout --kill-after=10 "$secs" "$@"
  }
else
  bounded() {
    shift
    "$@"
  }
fi

# The probe: DEPLOY_PROBE_IMAGE, else the newest probe image of this
# engine that knows -text (an empty list of checks prints nothing and
# succeeds; an older probe exits 2 with its usage).
probe=
probe_why=
probe_works() {
  local out
  out=$(bounded 60 docker run --rm --network none --label "$l_probe=$project" "$1" -text '[]' 2>&1) && [[ -z $out ]]
}
if [[ -n ${DEPLOY_PROBE_IMAGE+set} ]]; then
  if [[ -z $DEPLOY_PROBE_IMAGE ]]; then
    probe_why="DEPLOY_PROBE_IMAGE is empty"
  elif [[ ! $DEPLOY_PROBE_IMAGE =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]]; then
    die "DEPLOY_PROBE_IMAGE=$(printf %q "$DEPLOY_PROBE_IMAGE"): not an image reference"
  elif probe_works "$DEPLOY_PROBE_IMAGE"; then
    probe=$DEPLOY_PROBE_IMAGE
  else
    probe_why="DEPLOY_PROBE_IMAGE=$DEPLOY_PROBE_IMAGE does not run as a probe that knows -text"
  fi
else
  mapfile -t candidates < <(docker images --filter "label=$l_probe" --filter "reference=maestro-deploy/probe" --format '{{.Repository}}:{{.Tag}}' 2>/dev/null || true)
  probe_why="no maestro-deploy/probe image on this engine"
  for img in "${candidates[@]:0:5}"; do
    if probe_works "$img"; then
      probe=$img
      break
    fi
    probe_why="no maestro-deploy/probe image on this engine knows -text (the newest: ${candidates[0]})"
  done
fi

if [[ -n $probe ]]; then
  echo "test-all: ${#c_kind[@]} checks on $project ($environment), probe $probe"
else
  echo "test-all: ${#c_kind[@]} checks on $project ($environment), without the probe image: $probe_why"
fi

# run_probe KIND NETWORK SPECS SECONDS: the probe's checks on NETWORK, its
# lines in $tmp/KIND.out, what it said otherwise in $tmp/KIND.err.
run_probe() {
  local kind=$1 net=$2 specs=$3 secs=$4 name rc=0
  name="$project-test-all-$$-$kind"
  bounded "$secs" docker run --rm --name "$name" --label "$l_probe=$project" --network "$net" \
    "$probe" -text "$specs" >"$tmp/$kind.out" 2>"$tmp/$kind.err" || rc=$?
  if ((rc == 124 || rc == 137)); then
    # Timed out: the probe got SIGTERM (docker run passes it on), or the
    # docker CLI was killed and the container may still run.
    docker rm -f "$name" >/dev/null 2>&1 || true
  fi
  return "$rc"
}

# take KIND RC SECONDS: the verdicts the probe printed; a check it left
# out fails with what is known.
take() {
  local kind=$1 rc=$2 secs=$3 id verdict text why i timedout=
  why="the probe returned no result for this check"
  if ((rc == 124 || rc == 137)); then
    timedout=1
    why="no result: the probe did not finish within ${secs}s"
  elif ((rc != 0)); then
    text=$(tail -n 1 "$tmp/$kind.err" 2>/dev/null || true)
    why="the probe failed (exit code $rc): ${text:0:200}"
  fi
  while IFS=$'\t' read -r id verdict text; do
    [[ $id =~ ^[0-9]+$ && $id -lt ${#c_kind[@]} && ${c_kind[$id]} == "$kind" ]] || continue
    [[ $verdict == PASS || $verdict == FAIL ]] || continue
    # A check the timeout cancelled says so, not "context canceled".
    if [[ -n $timedout && $verdict == FAIL && $text == cancelled* ]]; then text=$why; fi
    state[id]=$verdict
    detail[id]=${text:0:240}
  done <"$tmp/$kind.out"
  for i in "${!c_kind[@]}"; do
    if [[ ${c_kind[$i]} == "$kind" && -z ${state[$i]:-} && -z ${c_fail[$i]} ]]; then
      state[i]=FAIL
      detail[i]=$why
    fi
  done
}

kinds=" ${c_kind[*]} "
pids=()
if [[ -n $probe && -n $http_specs ]]; then
  run_probe http host "$http_specs" "$http_bound" &
  pids+=("http:$!")
fi
if [[ -n $probe && -n $network_specs ]]; then
  net=$(docker network ls --filter "label=$l_project=$project" --filter "label=$l_network=$network_name" --format '{{.Name}}' 2>/dev/null | head -n 1 || true)
  if [[ -z $net ]] && docker network inspect "${project}_$network_name" >/dev/null 2>&1; then
    net=${project}_$network_name
  fi
  if [[ -n $net ]]; then
    run_probe network "$net" "$network_specs" "$network_bound" &
    pids+=("network:$!")
  else
    for i in "${!c_kind[@]}"; do
      if [[ ${c_kind[$i]} == network ]]; then
        state[i]=FAIL
        detail[i]="no network \"$network_name\" of project $project (is the stack up?)"
      fi
    done
  fi
fi


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

# container SERVICE ONCE: the state of the service's containers, as testAll
# judges it (with ONCE=1, a one-shot job: done when it exited 0); a
# container the engine still counts as starting is healthy once its
# healthcheck passes when run here; a health still starting is looked at
# again, a second apart, five times at most.
container() {
  local svc=$1 once=${2:-0} attempt ids id info st health code restarts fatal waiting n healthy own completed
  for attempt in 1 2 3 4 5; do
    if ! ids=$(docker ps -aq --no-trunc --filter "label=$l_project=$project" --filter "label=$l_service=$svc" \
      --filter "label=$l_oneoff=False" 2>&1); then
      verdict=FAIL why="docker ps: $ids"
      return
    fi
    if [[ -z $ids ]]; then
      verdict=FAIL why="no container of service $svc in project $project (is the stack up?)"
      return
    fi
    fatal='' waiting='' n=0 healthy=0 own='' completed=''
    for id in $ids; do
      info=$(docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}} {{.RestartCount}}' "$id" 2>/dev/null) || continue
      read -r st health code restarts <<<"$info"
      n=$((n + 1))
      if ((once)); then
        case $st:$code in
          exited:0) completed="completed (exit code 0)" ;;
          exited:* | dead:*) fatal="$st (exit code $code)" ;;
          *) waiting="still running" ;;
        esac
        continue
      fi
      case $st:$health in
        exited:* | dead:*) fatal="$st (exit code $code)" ;;
        restarting:*) fatal="restarting (last exit code $code, restarted $restarts times)" ;;
        running:unhealthy) fatal="unhealthy (docker inspect ${id:0:12} shows the healthcheck's output)" ;;
        running:healthy) healthy=$((healthy + 1)) own=1 ;;
        running:none) healthy=$((healthy + 1)) ;;
        running:starting)
          if run_healthcheck "$id"; then healthy=$((healthy + 1)) own=1; else waiting="health starting"; fi
          ;;
        *) waiting=$st ;;
      esac
    done
    if [[ -n $fatal ]]; then
      verdict=FAIL why=$fatal
      return
    fi
    if [[ -n $completed && -z $waiting ]]; then
      verdict=PASS why=$completed
      return
    fi
    if ((n > 0)) && [[ -z $waiting ]]; then
      verdict=PASS why=running
      if [[ -n $own ]]; then why=healthy; fi
      if ((n > 1)); then why="$n containers running${own:+ and healthy}"; fi
      return
    fi
    verdict=FAIL why=${waiting:-"no container of service $svc in project $project (is the stack up?)"}
    if ((attempt < 5)); then sleep 1; fi
  done
}

# curl_check INDEX: an http check with curl: status and body text, with
# testAll's retries and backoff; its JSON assertion is left out, and said so.
curl_check() {
  local i=$1 url attempt=0 rc code text err pause=(0.1 0.2 0.4 0.8)
  url="http://$host:${c_port[$i]}${c_path[$i]}"
  while :; do
    rc=0
    code=$(curl -sS -g --noproxy '*' -o "$tmp/body" -w '%{http_code}' --max-time "${c_timeout[$i]}" "$url" 2>"$tmp/curl.err") || rc=$?
    text=
    if [[ -s $tmp/body ]]; then
      IFS= read -r -d '' text <"$tmp/body" || true
      text=${text//[[:cntrl:]]/ }
    fi
    verdict=FAIL
    case $rc in
      0)
        if [[ $code != "${c_status[$i]}" ]]; then
          why="status $code (want ${c_status[$i]})${text:+: ${text:0:200}}"
        elif [[ -n ${c_contains[$i]} && $text != *"${c_contains[$i]}"* ]]; then
          why="body does not contain \"${c_contains[$i]}\"${text:+: ${text:0:200}}"
        elif [[ -n ${c_json[$i]} ]]; then
          verdict=SKIP why="HTTP $code; not checked: ${c_json[$i]} (needs the probe image)"
        else
          verdict=PASS why="HTTP $code"
        fi
        ;;
      6) why="no answer: no such host $host" ;;
      7) why="no answer: could not connect to $host:${c_port[$i]}" ;;
      28) why="no answer: timeout after ${c_timeout[$i]}s" ;;
      *)
        err=$(tail -n 1 "$tmp/curl.err" 2>/dev/null || true)
        why="no answer: ${err:-curl exit code $rc}"
        ;;
    esac
    if [[ $verdict != FAIL ]] || ((attempt >= c_retries[i])); then return; fi
    sleep "${pause[attempt]:-1}"
    attempt=$((attempt + 1))
  done
}

for i in "${!c_kind[@]}"; do
  if [[ -n ${c_fail[$i]} ]]; then
    state[i]=FAIL
    detail[i]=${c_fail[$i]}
  elif [[ ${c_kind[$i]} == container ]]; then
    container "${c_service[$i]}" "${c_once[$i]}"
    state[i]=$verdict
    detail[i]=$why
  fi
done

json_unchecked=0
network_unchecked=0
if [[ -z $probe ]]; then
  if [[ $kinds == *" http "* ]] && ! command -v curl >/dev/null 2>&1; then
    die "curl is needed for the http checks when no probe image is there ($probe_why)"
  fi
  for i in "${!c_kind[@]}"; do
    [[ -z ${state[$i]:-} ]] || continue
    case ${c_kind[$i]} in
      http)
        curl_check "$i"
        state[i]=$verdict
        detail[i]=$why
        if [[ -n ${c_json[$i]} && $verdict != FAIL ]]; then json_unchecked=$((json_unchecked + 1)); fi
        ;;
      network)
        state[i]=SKIP
        detail[i]="not checked: made from inside the stack's network by the probe image"
        network_unchecked=$((network_unchecked + 1))
        ;;
    esac
  done
fi

for p in "${pids[@]}"; do
  rc=0
  wait "${p#*:}" || rc=$?
  kind=${p%%:*}
  bound=$http_bound
  if [[ $kind == network ]]; then bound=$network_bound; fi
  take "$kind" "$rc" "$bound"
done

passed=0
failed=0
skipped=0
for i in "${!c_kind[@]}"; do
  case ${state[$i]:-} in
    PASS) passed=$((passed + 1)) ;;
    SKIP) skipped=$((skipped + 1)) ;;
    *)
      state[i]=FAIL
      detail[i]=${detail[$i]:-"not run"}
      failed=$((failed + 1))
      ;;
  esac
  printf '%s  %-24s %-34s %s\n' "${state[$i]}" "${c_service[$i]}" "${c_name[$i]}" "${detail[$i]}"
done

echo
echo "test-all: ${#c_kind[@]} checks: $passed PASS, $failed FAIL, $skipped SKIP"
if [[ -z $probe ]] && ((json_unchecked + network_unchecked > 0)); then
  what=()
  if ((network_unchecked > 0)); then what+=("$network_unchecked network checks"); fi
  if ((json_unchecked > 0)); then what+=("the JSON field of $json_unchecked http checks"); fi
  if ((${#what[@]} == 2)); then what=("${what[0]} and ${what[1]}"); fi
  echo "test-all: not checked: ${what[0]}: they need testAll's probe image ($probe_why)."
  echo "test-all: \`mage testAll\` builds it on this engine; or set DEPLOY_PROBE_IMAGE to a probe image."
fi
if ((failed > 0)); then exit 1; fi
