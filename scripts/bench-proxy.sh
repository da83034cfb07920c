#!/usr/bin/env bash
# Gateway against the floor (issue 15): one ready container of a fast upstream
# (invok/fast-fn, scripts/fast-fn: answers from memory, keeps connections alive), reached
# three ways in the same run:
#
#   direct   http://127.0.0.1:HOSTPORT/                the container's published port
#   nginx    http://127.0.0.1:NGINX/                   Debian's nginx as a reverse proxy,
#                                                      keep-alive to the container
#   gateway  http://127.0.0.1:GW/function/fast/        Invok's gateway
#
# Throughput: `wrk -t2 -c8` for DURATION seconds each (the issue's 8 connections).
# Added latency: `wrk -t1 -c1` (one request at a time: a moderate load that leaves the
# CPU idle between requests) for DURATION seconds each, p50 and p99.
# Prints each figure, the ratios gateway/direct and gateway/nginx, and the CPU time per
# request of the proxy process (gateway or nginx workers). Goals: throughput >= 0.95x
# direct and >= nginx; added latency <= +0.2 ms at p50 and <= +1 ms at p99.
#
# Each figure is the median of ROUNDS interleaved rounds: this machine's speed drifts
# between runs, and the interleaving exposes all three targets to the same drift.
#
# Draws the latency distribution of each target at one connection (percentiles, medians
# over the rounds) and the throughput at 8 connections into $PLOT_DIR/proxy.png
# (docs/plots by default).
#
# Usage: bash scripts/bench-proxy.sh   (DURATION=10 ROUNDS=3 by default; about 5 minutes)
# PERF_OUT=FILE also records a perf profile of the operator during the gateway's
# throughput run of the first round (`perf report -i FILE`; the profile's own cost
# lowers that round's figure).
# Installs wrk and nginx-light from Debian if missing (without starting nginx's service);
# traffic goes only to 127.0.0.1; everything it started is stopped on exit.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}

install_debian wrk wrk
install_debian nginx nginx-light

bash "$ROOT/scripts/build-fast-image.sh" >/dev/null
bench_setup proxy
IMAGE=invok/fast-fn:latest
manifest fast 1 1 "cooldownDuration: 1h"
start_operator
wait_until 60 "the fast pool is ready" ready_is fast 1

CID=$(docker ps -q --no-trunc --filter "label=dev.invok.instance=$INSTANCE" --filter "label=dev.invok.pool=fast")
PORT=$(docker port "$CID" 8080/tcp | sed -n 's/^127\.0\.0\.1://p' | head -n 1)
[ -n "$PORT" ] || die "no published port for the fast container"

NGINX_PORT=$(free_port)
mkdir -p "$BENCH_TMP/nginx"
cat >"$BENCH_TMP/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $BENCH_TMP/nginx/nginx.pid;
error_log $BENCH_TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $BENCH_TMP/nginx/body;
  proxy_temp_path $BENCH_TMP/nginx/proxy;
  fastcgi_temp_path $BENCH_TMP/nginx/fastcgi;
  uwsgi_temp_path $BENCH_TMP/nginx/uwsgi;
  scgi_temp_path $BENCH_TMP/nginx/scgi;
  upstream fn {
    server 127.0.0.1:$PORT;
    keepalive 32;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://fn;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
nginx -c "$BENCH_TMP/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
trap 'kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; bench_cleanup' EXIT

direct="http://127.0.0.1:$PORT/"
viang="http://127.0.0.1:$NGINX_PORT/"
gw="http://127.0.0.1:$GATEWAY_PORT/function/fast/"
for url in "$direct" "$viang" "$gw"; do
  wait_until 10 "$url answers" curl -sf -o /dev/null "$url"
  [ "$(curl -sf "$url")" = ok ] || die "GET $url did not answer ok"
done

# CPU ticks of a process and its children's threads (nginx: master + workers).
tree_ticks() {
  local t=0 p
  for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done
  echo "$t"
}
nginx_pids() { echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"); }

# wrk prints these percentiles of the latency (µs) when the run ends, for the plot.
PERCENTILES="1 5 10 20 30 40 50 60 70 80 90 95 97 99 99.5 99.9"
cat >"$BENCH_TMP/percentiles.lua" <<LUA
done = function(summary, latency, requests)
  for _, p in ipairs({$(echo $PERCENTILES | tr ' ' ,)}) do
    io.write(string.format("P %g %d\\n", p, latency:percentile(p)))
  end
end
LUA

# run_wrk URL THREADS CONNECTIONS PIDS...: prints "rps p50_ms p99_ms errors cpu_us_per_req";
# with PCT_OUT=FILE also writes "percentile µs" lines of the run's latency there.
run_wrk() {
  local url=$1 t=$2 c=$3 out a b
  shift 3
  a=$(tree_ticks "$@")
  out=$(wrk -t "$t" -c "$c" -d "${DURATION}s" --latency -s "$BENCH_TMP/percentiles.lua" "$url")
  b=$(tree_ticks "$@")
  [ -z "${PCT_OUT:-}" ] || echo "$out" | awk '$1 == "P" { print $2, $3 }' >"$PCT_OUT"
  local rps p50 p99 reqs errs
  read -r rps p50 p99 reqs errs < <(wrk_summary "$out")
  awk -v r="$rps" -v a50="$p50" -v a99="$p99" -v n="$reqs" -v e="$errs" \
    -v d="$((b - a))" -v hz="$CLK_TCK" \
    'BEGIN { n = (n > 0) ? n : 1; printf "%s %s %s %d %.1f\n", r, a50, a99, e, d * 1e6 / hz / n }'
}

# field N (1-based) of each of the rounds' results given, one per line
field_of() {
  local n=$1 line
  shift
  for line in "$@"; do echo "$line" | cut -d' ' -f"$n"; done
}

log "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -a Td Tn Tg Ld Ln Lg
for round in $(seq 1 "$ROUNDS"); do
  log "round $round of $ROUNDS"
  # Interleaved, so that a change in the machine's load touches all three alike.
  Td+=("$(run_wrk "$direct" 2 8 $$)")
  Tn+=("$(run_wrk "$viang" 2 8 $(nginx_pids))")
  if [ -n "${PERF_OUT:-}" ] && [ "$round" = 1 ]; then
    # A profile of the operator while it proxies (perf from Debian's linux-perf).
    perf record -q -F 999 --call-graph dwarf,16384 -p "$OP_PID" -o "$PERF_OUT" -- sleep "$((DURATION - 1))" 2>/dev/null &
    PERF_PID=$!
  fi
  Tg+=("$(run_wrk "$gw" 2 8 "$OP_PID")")
  [ -z "${PERF_PID:-}" ] || wait "$PERF_PID"
  PERF_PID=
  Ld+=("$(PCT_OUT=$BENCH_TMP/pct-direct-$round run_wrk "$direct" 1 1 $$)")
  Ln+=("$(PCT_OUT=$BENCH_TMP/pct-nginx-$round run_wrk "$viang" 1 1 $(nginx_pids))")
  Lg+=("$(PCT_OUT=$BENCH_TMP/pct-gateway-$round run_wrk "$gw" 1 1 "$OP_PID")")
done
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# The median of each figure over the rounds: "rps p50 p99 errors(sum) cpu".
summarize() {
  local -n t=$1 l=$2
  local errs
  errs=$(field_of 4 "${t[@]}" "${l[@]}" | awk '{ s += $1 } END { print s + 0 }')
  # median (bench-lib) of each figure over the rounds
  echo "$(median $(field_of 1 "${t[@]}")) $(median $(field_of 2 "${l[@]}")) $(median $(field_of 3 "${l[@]}")) $errs $(median $(field_of 5 "${t[@]}"))"
}
declare -A S
S[direct]=$(summarize Td Ld)
S[nginx]=$(summarize Tn Ln)
S[gateway]=$(summarize Tg Lg)

echo
echo "Proxy figures ($(nproc) cores, one fast-fn container, wrk ${DURATION}s each, median of $ROUNDS interleaved rounds; CPU: µs of the proxy per request)"
echo
echo "| target | req/s, 8 connections | vs direct | CPU/request | p50 ms, 1 connection | p99 ms | added p50 | added p99 | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
read -r drps dp50 dp99 _ _ <<<"${S[direct]}"
for k in direct nginx gateway; do
  read -r rps p50 p99 errs cpu <<<"${S[$k]}"
  awk -v k="$k" -v r="$rps" -v dr="$drps" -v c="$cpu" -v a="$p50" -v b="$p99" -v da="$dp50" -v db="$dp99" -v e="$errs" 'BEGIN {
    if (k == "direct") printf "| %s | %.0f | | | %.3f | %.3f | | | %d |\n", k, r, a, b, e
    else printf "| %s | %.0f | %.2fx | %.1f µs | %.3f | %.3f | %+.3f ms | %+.3f ms | %d |\n", k, r, r / dr, c, a, b, a - da, b - db, e
  }'
done
echo
echo "Per round, gateway / nginx req/s: $(for i in "${!Tg[@]}"; do awk -v g="${Tg[$i]%% *}" -v n="${Tn[$i]%% *}" 'BEGIN { printf "%.2fx ", g / n }'; done)"
read -r nrps _ _ _ _ <<<"${S[nginx]}"
read -r grps _ _ _ _ <<<"${S[gateway]}"
awk -v g="$grps" -v n="$nrps" -v d="$drps" 'BEGIN { printf "\ngateway / direct = %.2fx (goal >= 0.95x); gateway / nginx = %.2fx (goal >= 1.00x)\n", g / d, g / n }'

# The plot: per target, the median over the rounds of each percentile; and req/s.
for k in direct nginx gateway; do
  for p in $PERCENTILES; do
    # shellcheck disable=SC2046
    echo "$p $(median $(awk -v p="$p" '$1 == p { print $2 / 1000 }' "$BENCH_TMP"/pct-$k-*))"
  done >"$BENCH_TMP/pct-$k.dat"
  echo "$k ${S[$k]%% *}" >>"$BENCH_TMP/rps.dat"
done
plot "$PLOT_DIR/proxy.png" "
set multiplot layout 1,2
set title 'Latency at one connection (median of $ROUNDS rounds)'
set xlabel 'latency, ms (log scale)'
set ylabel 'percentile of requests'
set logscale x
set yrange [0:100]
set key bottom right
set grid
plot '$BENCH_TMP/pct-direct.dat' using 2:1 with linespoints lw 2 title 'direct', \
     '$BENCH_TMP/pct-nginx.dat' using 2:1 with linespoints lw 2 title 'nginx', \
     '$BENCH_TMP/pct-gateway.dat' using 2:1 with linespoints lw 2 title 'Invok gateway'
unset logscale x
set title 'Throughput at 8 connections, one container'
set xlabel ''
set ylabel 'requests per second'
set yrange [0:*]
set style fill solid 0.6
set boxwidth 0.6
unset key
plot '$BENCH_TMP/rps.dat' using 0:2:xtic(1) with boxes, '' using 0:2:(sprintf('%.0f', \$2)) with labels offset 0,1
unset multiplot"
