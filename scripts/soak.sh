#!/usr/bin/env bash
# scripts/soak.sh [DURATION]: a soak of the operator under sawtooth, bursty and steady
# load through the gateway, against three pools, for DURATION (default 30m; `90s`,
# `2m`, `1h` or seconds). Reports requests answered and failed (any answer other than
# the function's own, a documented 503 or 504), scale events and flaps per pool (a
# scale-down undone by a scale-up within one cooldown with no more load offered than at
# the scale-down), and the operator's RSS and open
# file descriptors after warm-up and at the end. Exits 1 when a request failed or the
# operator died. CI runs `scripts/soak.sh 2m` on the debug build the tests made
# (SOAK_PROFILE=debug, INVOK_BIN=target/debug/invok); figures come from release builds.
#
# Pools (the demo image):
#   saw     1..6, targetConcurrency 2   a 90 s ramp of 1..12 workers (200 ms sleeps),
#                                       then 30 s idle
#   burst   0..4, targetConcurrency 4   16 workers for 4 s every 30 s (from zero, cold)
#   steady  1..3                        2 workers, always
source "$(dirname "$0")/bench-lib.sh"

duration=${1:-30m}
case $duration in
*h) secs=$((${duration%h} * 3600)) ;;
*m) secs=$((${duration%m} * 60)) ;;
*s) secs=${duration%s} ;;
*[!0-9]* | '') die "DURATION: want e.g. 30m, 90s, 1h or seconds, not '$duration'" ;;
*) secs=$duration ;;
esac

bench_setup soak
profile=${SOAK_PROFILE:-release}
case $profile in
release) profile_flag=--release ;;
debug) profile_flag= ;;
*) die "SOAK_PROFILE: release or debug, not '$profile'" ;;
esac
log "building the load generator ($profile)"
(cd "$ROOT" && cargo build $profile_flag --quiet --example soak_load)
manifest saw 1 6 "targetConcurrency: 2" "pollInterval: 1s"
manifest burst 0 4 "targetConcurrency: 4" "pollInterval: 1s"
manifest steady 1 3 "pollInterval: 1s"
start_operator
pools_ready() {
  [ "$(pool_field saw ready_containers)" -ge 1 ] && [ "$(pool_field steady ready_containers)" -ge 1 ]
}
wait_until 60 "saw and steady are ready" pools_ready
log "soaking for $secs s (operator pid $OP_PID, gateway 127.0.0.1:$GATEWAY_PORT)"
"$CARGO_TARGET_DIR/$profile/examples/soak_load" --gateway "$GATEWAY_PORT" --pid "$OP_PID" \
  --log "$BENCH_TMP/operator.log" --duration "$secs" --cooldown 30
