#!/usr/bin/env bash
# Sampling cost (issue 4): operator CPU (percent of one core) and RSS with 0, 100 and 300
# idle containers, at pollInterval 1 s and 2 s, through the cgroup files and through
# Docker's streaming stats API (INVOK_SAMPLER=cgroup|stats) in the same run. Per
# container = (figure with N - figure with 0) / N. dockerd's CPU is shown beside: the
# stats path moves most of the cost into the daemon.
#
# The containers are made once per count by the operator itself; the operator is
# restarted for each sampler path and adopts them (all state lives in Docker).
#
# Usage: bash scripts/bench-sampling.sh   (COUNTS="0 100 300" WINDOW=15 by default)
# Takes about 5 minutes on 2 cores; its own --instance, cleaned up on exit.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

COUNTS=${COUNTS:-0 100 300}
POLLS=${POLLS:-1s 2s}
WINDOW=${WINDOW:-15}
SETTLE=${SETTLE:-3}

bench_setup sampling

# Containers of the pool whose latest sample the operator reports.
sampled() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/api/v1/pools/idle" | { grep -o '"cpu":[0-9]' || true; } | wc -l
}

declare -A CPU RSS DCPU SAMPLED
for n in $COUNTS; do
  paths="cgroup stats"
  [ "$n" -eq 0 ] && paths="cgroup"
  for path in $paths; do
    start_operator INVOK_SAMPLER="$path"
    max=$n
    [ "$max" -eq 0 ] && max=1
    manifest idle "$n" "$max" "pollInterval: 2s" "cooldownDuration: 1h"
    wait_until 240 "$n containers ready" ready_is idle "$n"
    for poll in $POLLS; do
      manifest idle "$n" "$max" "pollInterval: $poll" "cooldownDuration: 1h"
      sleep "$SETTLE"
      log "n=$n path=$path poll=$poll: measuring for ${WINDOW}s"
      read -r c r d < <(measure "$OP_PID" "$WINDOW")
      CPU[$n,$path,$poll]=$c
      RSS[$n,$path,$poll]=$r
      DCPU[$n,$path,$poll]=$d
      SAMPLED[$n,$path,$poll]=$(sampled)
      log "  operator CPU ${c}% RSS ${r} kB; dockerd CPU ${d}%; ${SAMPLED[$n,$path,$poll]}/$n sampled"
    done
    stop_operator
  done
done

echo
echo "Sampling cost ($(nproc) cores, $(docker version --format '{{.Server.Version}}'), ${WINDOW}s windows)"
printf '%-10s %-5s %-7s %13s %9s %13s %9s %22s %10s\n' containers poll path \
  "operator CPU%" "RSS MB" "dockerd CPU%" sampled "per container: CPU%" "RSS KB"
for n in $COUNTS; do
  paths="cgroup stats"
  [ "$n" -eq 0 ] && paths="cgroup"
  for path in $paths; do
    for poll in $POLLS; do
      c=${CPU[$n,$path,$poll]}
      r=${RSS[$n,$path,$poll]}
      d=${DCPU[$n,$path,$poll]}
      c0=${CPU[0,cgroup,$poll]:-0}
      r0=${RSS[0,cgroup,$poll]:-0}
      if [ "$n" -gt 0 ]; then
        pc=$(awk -v a="$c" -v b="$c0" -v n="$n" 'BEGIN { printf "%.4f", (a - b) / n }')
        pr=$(awk -v a="$r" -v b="$r0" -v n="$n" 'BEGIN { printf "%.0f", (a - b) / n }')
      else
        pc=-
        pr=-
      fi
      printf '%-10s %-5s %-7s %13s %9s %13s %9s %22s %10s\n' "$n" "$poll" "$path" "$c" \
        "$(awk -v k="$r" 'BEGIN { printf "%.1f", k / 1024 }')" "$d" \
        "${SAMPLED[$n,$path,$poll]}/$n" "$pc" "$pr"
    done
  done
done
echo "seed budget per container at 2 s: 0.1% of a core and 1-2 MB (1000-2000 KB)"
