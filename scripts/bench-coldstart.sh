#!/usr/bin/env bash
# Cold start (issue 5): latency of the first request to a pool at zero containers,
# through the gateway, beside `docker run -d` of the same image until its published port
# answers the same request, in the same run. Aim: no more than the container's own start
# plus 100 ms.
#
# One `invok run` (release build, its own --instance) serves two pools with
# minContainers 0, maxContainers 1 and a 2 s cooldown, which differ only in readiness:
# - `cold-tcp`: the default TCP probe;
# - `cold-http`: an HTTP probe, `readiness.path: /`.
# Each repetition times, one after the other: `docker run -d -p 127.0.0.1:PORT:8080`, then
# polling `GET /` every 5 ms until it answers 200 (the baseline); then one `GET /function/NAME/`
# per pool (curl's time_total, status must be 200); then waits until both pools are back
# at zero containers. Prints each time and the medians.
#
# Usage: bash scripts/bench-coldstart.sh   (REPS=5 by default)
# Takes about 1 minute; traffic goes only to 127.0.0.1; the operator is stopped and the
# instance's and the baseline's containers removed on exit (also on failure or Ctrl-C).
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

# A loopback port below the kernel's ephemeral range (32768-60999 by default), so that no
# outgoing connection of this benchmark (there are thousands) can hold it, and on which
# no socket is open at all.

REPS=${REPS:-5}
POOLS=(cold-tcp cold-http)

bench_setup coldstart

# pool NAME [READINESS-PATH]
pool() {
  local name=$1 tmp=$MANIFESTS/.$1.tmp
  {
    printf 'apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: %s\n' "$name"
    printf 'spec:\n  image: %s\n' "$IMAGE"
    [ -z "${2:-}" ] || printf '  readiness:\n    path: %s\n' "$2"
    printf '  scaling:\n    minContainers: 0\n    maxContainers: 1\n'
    printf '    cooldownDuration: 2s\n    pollInterval: 500ms\n'
  } >"$tmp"
  mv "$tmp" "$MANIFESTS/$name.yaml"
}
pool cold-tcp
pool cold-http /

start_operator
wait_until 30 "the operator is ready" readyz_ok
pool_known() { curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/api/v1/pools/$1"; }
for p in "${POOLS[@]}"; do
  wait_until 30 "pool $p is known" pool_known "$p"
done

# Sets RUN_MS (until `docker run -d` returned) and ANSWER_MS (until the published port
# answered GET / with 200), both from before `docker run`; the host port is chosen here
# so that no `docker port` call sits between the two.
baseline_once() {
  local port t0 t1 t2 id
  port=$(free_port)
  t0=$(date +%s%N)
  id=$(docker run -d --label "dev.invok.bench=$INSTANCE" -p "127.0.0.1:$port:8080" "$IMAGE")
  t1=$(date +%s%N)
  for _ in $(seq 1 2000); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/")" = 200 ]; then
      t2=$(date +%s%N)
      docker rm -f "$id" >/dev/null
      RUN_MS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
      ANSWER_MS=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
      return
    fi
    sleep 0.005
  done
  die "the baseline container never answered"
}

# Time (ms, 1 decimal) of the first request through the gateway; the pool must be at 0.
cold_once() {
  local out code secs
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 60 \
    "http://127.0.0.1:$GATEWAY_PORT/function/$1/")
  read -r code secs <<<"$out"
  [ "$code" = 200 ] || die "first request to $1 answered $code"
  awk -v s="$secs" 'BEGIN { printf "%.1f", s * 1000 }'
}

at_zero() {
  local p
  for p in "${POOLS[@]}"; do
    [ "$(docker ps -aq --filter "label=dev.invok.instance=$INSTANCE" --filter "label=dev.invok.pool=$p" | wc -l)" = 0 ] || return 1
    [ "$(pool_field "$p" container_count)" = 0 ] || return 1
  done
}

declare -A T
for r in $(seq 1 "$REPS"); do
  wait_until 60 "both pools are at zero containers" at_zero
  baseline_once
  T[run]+=" $RUN_MS"
  T[base]+=" $ANSWER_MS"
  for p in "${POOLS[@]}"; do
    T[$p]+=" $(cold_once "$p")"
  done
  log "repetition $r: docker run -d $RUN_MS ms, answered $ANSWER_MS ms;" \
    "${POOLS[0]} ${T[${POOLS[0]}]##* } ms; ${POOLS[1]} ${T[${POOLS[1]}]##* } ms"
done

# shellcheck disable=SC2086
base=$(median ${T[base]})
echo
printf '%s repetitions, load average %s\n\n' "$REPS" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '| first request | median ms | vs docker run + first answer | each run ms |\n'
printf '|---|---:|---:|---|\n'
# shellcheck disable=SC2086
printf '| `docker run -d` returned (start only) | %.1f | | %s |\n' "$(median ${T[run]})" "${T[run]# }"
printf '| `docker run -d` + first `GET /` answered (baseline) | %.1f | | %s |\n' "$base" "${T[base]# }"
for p in "${POOLS[@]}"; do
  # shellcheck disable=SC2086
  m=$(median ${T[$p]})
  label="through the gateway, pool at 0, $([ "$p" = cold-tcp ] && echo 'TCP readiness (default)' || echo 'HTTP readiness `/`')"
  awk -v l="$label" -v m="$m" -v b="$base" -v all="${T[$p]# }" \
    'BEGIN { printf "| %s | %.1f | %+.1f | %s |\n", l, m, m - b, all }'
done
