#!/usr/bin/env bash
# The gateway's user-space cost per proxied request, in instructions (issue 15).
#
# Wall-clock figures on this machine drift by +-20 % between runs (bench-proxy.sh takes
# medians of interleaved rounds for that reason), too much to see a 10 % change in the
# gateway's own code. valgrind's callgrind counts instructions instead, the same for the
# same binary and requests whatever else the machine does. It counts user space only:
# the kernel's share (the loopback TCP of both hops, the same for every proxy) is not in
# it; bench-proxy.sh's CPU per request has both.
#
# Runs `invok run` under callgrind with one ready fast-fn container, sends WARMUP
# requests, zeroes the counters, sends REQUESTS keep-alive requests over 8 connections
# (ab, from Debian's apache2-utils), and prints the instructions per request. With
# BASE_BIN=/path/to/an/older/invok it measures that binary the same way first and prints
# the ratio. Usage:
#
#   bash scripts/bench-gateway-instructions.sh            (REQUESTS=5000; about 2 minutes)
#   BASE_BIN=/var/tmp/invok-before bash scripts/bench-gateway-instructions.sh
#
# KEEP_DUMP=PREFIX keeps each measured dump as PREFIX.BINARY-NAME, for
# `callgrind_annotate --inclusive=yes PREFIX.invok | head -60`.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

REQUESTS=${REQUESTS:-5000}
WARMUP=${WARMUP:-500}

install_debian ab apache2-utils
command -v callgrind_control >/dev/null 2>&1 || install_debian callgrind_control valgrind

bash "$ROOT/scripts/build-fast-image.sh" >/dev/null
bench_setup instructions
IMAGE=invok/fast-fn:latest
manifest fast 1 1 "cooldownDuration: 1h"
BUILT_BIN=$INVOK_BIN

# measure BIN: prints the instructions per request of BIN's gateway.
measure() {
  local bin=$1 out=$BENCH_TMP/callgrind.$RANDOM
  INVOK_BIN=$BENCH_TMP/under-callgrind
  printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s --collect-atstart=yes --compress-strings=no %s "$@"\n' \
    "$out" "$bin" >"$INVOK_BIN"
  chmod +x "$INVOK_BIN"
  start_operator
  wait_until 120 "the fast pool is ready" ready_is fast 1
  local gw="http://127.0.0.1:$GATEWAY_PORT/function/fast/"
  wait_until 30 "$gw answers" curl -sf -o /dev/null "$gw"
  ab -q -k -c 8 -n "$WARMUP" "$gw" >/dev/null
  callgrind_control --zero "$OP_PID" >/dev/null
  local report
  report=$(ab -k -c 8 -n "$REQUESTS" "$gw")
  callgrind_control --dump=measured "$OP_PID" >/dev/null
  local failed
  failed=$(echo "$report" | awk '/^Failed requests:/ { print $3 }')
  [ "$failed" = 0 ] || die "$failed requests failed"
  stop_operator
  # The dump taken after --zero holds the measured requests (the operator's own
  # background work in the same seconds is in it too: a sampler tick, a pass or two).
  # The first dump (OUT.1) is the one asked for after --zero.
  local dump=$out.1
  grep -q "^summary:" "$dump" 2>/dev/null || die "no callgrind dump of the measured requests in $dump"
  [ -z "${KEEP_DUMP:-}" ] || cp "$dump" "$KEEP_DUMP.$(basename "$bin")"
  awk -v n="$REQUESTS" '/^summary:/ { printf "%.0f\n", $2 / n }' "$dump"
}

if [ -n "${BASE_BIN:-}" ]; then
  log "measuring $BASE_BIN"
  base=$(measure "$BASE_BIN")
fi
log "measuring $BUILT_BIN"
now=$(measure "$BUILT_BIN")

echo
echo "Gateway instructions per request (user space, callgrind; $REQUESTS requests, 8 keep-alive connections, one fast-fn container)"
echo
if [ -n "${BASE_BIN:-}" ]; then
  awk -v b="$base" -v n="$now" -v bb="$BASE_BIN" 'BEGIN {
    printf "| binary | instructions/request |\n|---|---:|\n| %s | %d |\n| this tree | %d (%.2fx) |\n", bb, b, n, n / b
  }'
else
  echo "this tree: $now instructions per request"
fi
