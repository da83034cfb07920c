#!/usr/bin/env bash
# Runs the deterministic simulation of the whole operator (tests/simulation.rs) for N
# seeds and prints its figures: seeds, steps, seconds, steps per second.
#
#   scripts/simulate.sh [N] [FIRST]
#
# N seeds (default 5000) from seed FIRST (default: a random one, printed, so a long run
# explores new ground; CI runs seeds 0..500). Steps per seed: INVOK_SIM_STEPS (default
# 200). Built with --release (overflow checks stay on there) unless INVOK_SIM_PROFILE=test.
# A failing seed prints its one-line reproduction, which replays it exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/invok-target}"

seeds="${1:-5000}"
first="${2:-$(( (RANDOM << 15 | RANDOM) * 1000 ))}"
profile=(--release)
if [ "${INVOK_SIM_PROFILE:-release}" = test ]; then
    profile=()
fi

echo "simulate: $seeds seeds from $first, ${INVOK_SIM_STEPS:-200} steps each, ${INVOK_SIM_THREADS:-2} threads (cargo test ${profile[*]:-} --test simulation)"
start=$(date +%s.%N)
status=0
INVOK_SIM_SEEDS="$seeds" INVOK_SIM_BASE="$first" \
    cargo test ${profile[@]+"${profile[@]}"} --quiet --test simulation -- --exact simulation --nocapture \
    || status=$?
end=$(date +%s.%N)
echo "simulate: $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s in all, build included; exit $status"
if [ "$status" -ne 0 ]; then
    echo "simulate: a reproduction above replays a failing seed (add --release to cargo test for speed)" >&2
fi
exit "$status"
