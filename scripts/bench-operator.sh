#!/usr/bin/env bash
# Operator figures (issue 3), measured beside their baselines in the same run:
#
# 1. Time from writing a manifest to all its containers ready (HTTP GET / answering), for
#    1 and 10 containers, beside `docker run -d` of the same image (4 at a time, as the
#    operator starts them) until its published port answers HTTP: the ratio is the figure.
# 2. Operator CPU (percent of one core) and RSS over 60 s with 50 idle pools of
#    2 containers (from /proc/PID/stat and /proc/PID/status), dockerd's CPU beside it.
#
# Usage: bash scripts/bench-operator.sh   (ROUNDS=3 WINDOW=60 POOLS=50 by default)
# Takes about 2-3 minutes on 2 cores; its own --instance, cleaned up on exit.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

ROUNDS=${ROUNDS:-3}
WINDOW=${WINDOW:-60}
POOLS=${POOLS:-50}

bench_setup operator
start_operator
wait_until 30 "the operator is ready" readyz_ok

declare -A OP BASE
for n in 1 10; do
  OP[$n]=
  BASE[$n]=
  for r in $(seq 1 "$ROUNDS"); do
    # Operator: manifest written -> n ready.
    t0=$(now_ms)
    manifest "p$n-$r" "$n" "$n"
    wait_until 60 "p$n-$r has $n ready" ready_is "p$n-$r" "$n"
    OP[$n]+=" $(($(now_ms) - t0))"
    rm -f "$MANIFESTS/p$n-$r.yaml"
    wait_until 60 "p$n-$r is pruned" instance_count_is 0
    # Baseline: docker run -d, same image, same count.
    BASE[$n]+=" $(baseline_run "$n")"
  done
  log "n=$n operator ms:${OP[$n]}; docker run ms:${BASE[$n]}"
done

log "starting $POOLS idle pools of 2 containers"
for i in $(seq 1 "$POOLS"); do
  manifest "idle$i" 2 2
done
wait_until 180 "$((POOLS * 2)) containers ready" total_ready_is $((POOLS * 2))
# Let the start-up transients (probes, first samples) pass before the window.
sleep 5
log "measuring the operator for ${WINDOW}s"
read -r cpu rss dcpu < <(measure "$OP_PID" "$WINDOW")

echo
echo "Invok operator figures ($(nproc) cores, $(docker version --format '{{.Server.Version}}'), median of $ROUNDS rounds)"
printf '%-34s %12s %16s %8s\n' "" "invok run" "docker run -d" "ratio"
for n in 1 10; do
  # shellcheck disable=SC2086
  o=$(median ${OP[$n]})
  # shellcheck disable=SC2086
  b=$(median ${BASE[$n]})
  printf '%-34s %9s ms %13s ms %7.2fx\n' "manifest -> $n container(s) ready" "$o" "$b" \
    "$(awk -v o="$o" -v b="$b" 'BEGIN { print o / b }')"
done
printf '%s idle pools x 2 containers, %ss: operator CPU %s%% of a core, RSS %s MB (dockerd CPU %s%%)\n' \
  "$POOLS" "$WINDOW" "$cpu" "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')" "$dcpu"
