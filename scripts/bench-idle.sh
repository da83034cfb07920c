#!/usr/bin/env bash
# The idle operator against an earlier build of itself (issue 15): one set of N idle
# containers, held in turn by BASE_BIN and by this tree's release build, ROUNDS times
# alternately, so both see the same containers, daemon and machine.
#
#   1. the containers: POOLS manifests of 10 (min = max = 10, HTTP readiness on `/`,
#      cooldown 1h), brought up once by this tree's build;
#   2. each round, for each binary: start it on those manifests (it adopts the running
#      containers), wait until /status counts N ready, let it settle SETTLE seconds
#      (first samples, passes that find the pools quiet), then its CPU (% of one core)
#      and RSS over WINDOW seconds; stop it (the containers stay, as documented).
# Prints each round and the medians, and the ratio this tree / BASE_BIN.
#
# Usage: BASE_BIN=/path/to/old/invok bash scripts/bench-idle.sh
#   POOLS=100 (1,000 containers), ROUNDS=3, WINDOW=60, SETTLE=10.
# Without BASE_BIN, only this tree is measured. Takes about 5 minutes to start 1,000
# containers, then ROUNDS x 2 x (WINDOW + SETTLE + adoption) seconds. Its own
# --instance; every container it made is removed on exit, also on failure or Ctrl-C.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
POOLS=${POOLS:-100}
ROUNDS=${ROUNDS:-3}
WINDOW=${WINDOW:-60}
SETTLE=${SETTLE:-10}
n=$((POOLS * 10))

bench_setup idle
NEW_BIN=$INVOK_BIN
bins=("$NEW_BIN")
if [ -n "${BASE_BIN:-}" ]; then
  [ -x "$BASE_BIN" ] || die "BASE_BIN=$BASE_BIN is not an executable"
  bins=("$BASE_BIN" "$NEW_BIN")
fi

for i in $(seq 1 "$POOLS"); do manifest "s$i" 10 10 "cooldownDuration: 1h"; done
log "starting $n containers in $POOLS pools"
start_operator
WAIT_PAUSE=1 wait_until 1800 "$n containers ready" total_ready_is "$n"
stop_operator

declare -A cpus rsss
for round in $(seq 1 "$ROUNDS"); do
  for bin in "${bins[@]}"; do
    INVOK_BIN=$bin
    start_operator
    WAIT_PAUSE=0.5 wait_until 300 "$n containers ready" total_ready_is "$n"
    sleep "$SETTLE" # lets it reach its steady state; not a wait for a condition
    read -r cpu rss _ < <(measure "$OP_PID" "$WINDOW")
    stop_operator
    log "round $round: $bin: cpu $cpu % rss $rss kB"
    cpus[$bin]="${cpus[$bin]:-} $cpu"
    rsss[$bin]="${rsss[$bin]:-} $rss"
  done
done

echo "| binary | idle CPU, % of a core (median of $ROUNDS x ${WINDOW}s) | rounds | RSS MB |"
echo "|---|---:|---|---:|"
for bin in "${bins[@]}"; do
  # shellcheck disable=SC2086 # the lists are words on purpose
  c=$(median ${cpus[$bin]})
  # shellcheck disable=SC2086
  r=$(median ${rsss[$bin]})
  echo "| $bin | $c |${cpus[$bin]} | $(awk -v r="$r" 'BEGIN { printf "%.1f", r / 1024 }') |"
done
if [ -n "${BASE_BIN:-}" ]; then
  # shellcheck disable=SC2086
  awk -v a="$(median ${cpus[$BASE_BIN]})" -v b="$(median ${cpus[$NEW_BIN]})" -v n="$n" \
    'BEGIN { printf "bench-idle: %d containers: this tree %.2f %% vs base %.2f %% of a core: %.2fx\n", n, b, a, b / a }'
fi
