#!/usr/bin/env bash
# Gateway proxy cost (issue 5): requests/s and p50/p99 latency through the gateway
# beside direct requests to the same single container, in the same run, with wrk.
#
# One `invok run` (release build, its own --instance) serves two pools of one container
# each (minContainers = maxContainers = 1):
#
# - `static`: the demo image with `/www/index.html` written at start, so `GET /` is a
#   static file answered by busybox httpd itself (the proxy's own cost shows best);
# - `cgi`: the demo image as it is, where `GET /` runs `cgi-bin/index.cgi` (a fork and a
#   shell per request, as a real function does work).
#
# For each, wrk runs DURATION seconds against
#   direct:   http://127.0.0.1:HOSTPORT/          (the container's published port)
#   gateway:  http://127.0.0.1:GW/function/NAME/  (wrk keeps its connections alive)
#   gw-close: the same with `Connection: close`   (a new client connection per request,
#             as every direct request needs: busybox httpd closes after each response)
# and the table gives requests/s, p50 and p99, the gateway's throughput as a percentage
# of direct, the latency it adds, and the CPU time per request of the gateway (the
# operator process), of the port's docker-proxy and of the container: on 2 cores the
# load tool, the proxies and the function share the CPU, so throughput follows the CPU
# each request costs in all. Aim: >= 90% of direct throughput, < 0.3 ms added at p50.
#
# Busybox httpd closes the connection after every response (saying so for static files,
# silently after CGI output), so the gateway cannot keep its upstream connections alive:
# it opens one per request, as a direct client does. INVOK_BIN=PATH benchmarks another
# build of invok.
#
# Usage: bash scripts/bench-gateway.sh   (DURATION=10 CONNECTIONS=4 THREADS=2 by default)
# Takes about 1.5 minutes; traffic goes only to 127.0.0.1; the operator is stopped and
# the instance's containers removed on exit (also on failure or Ctrl-C).
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

# A loopback port below the kernel's ephemeral range (32768-60999 by default), so that no
# outgoing connection of this benchmark (there are thousands) can hold it, and on which
# no socket is open at all.

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-4}
THREADS=${THREADS:-2}

install_debian wrk wrk

bench_setup gateway

# pool NAME [COMMAND-LINE]: one container, TCP readiness, a long cooldown.
pool() {
  local name=$1 tmp=$MANIFESTS/.$1.tmp
  {
    printf 'apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: %s\n' "$name"
    printf 'spec:\n  image: %s\n' "$IMAGE"
    [ -z "${2:-}" ] || printf '  command: ["/bin/sh", "-c", "%s"]\n' "$2"
    printf '  scaling:\n    minContainers: 1\n    maxContainers: 1\n    cooldownDuration: 1h\n'
  } >"$tmp"
  mv "$tmp" "$MANIFESTS/$name.yaml"
}
pool static 'echo ok > /www/index.html && exec httpd -f -p 8080 -h /www'
pool cgi

start_operator
both_ready() { ready_is static 1 && ready_is cgi 1; }
wait_until 60 "both pools have their container ready" both_ready

host_port_of() {
  local id
  id=$(docker ps -q --filter "label=dev.invok.instance=$INSTANCE" --filter "label=dev.invok.pool=$1")
  [ "$(echo "$id" | wc -w)" = 1 ] || die "pool $1 should have exactly one container: $id"
  docker port "$id" 8080/tcp | sed -n 's/^127\.0\.0\.1://p' | head -n 1
}

# CPU time (µs, user + system) of the container's processes so far (cgroup v1 or v2).
container_cpu_us() {
  local f
  for f in "/sys/fs/cgroup/cpuacct/docker/$1/cpuacct.usage" \
    "/sys/fs/cgroup/system.slice/docker-$1.scope/cpu.stat" "/sys/fs/cgroup/docker/$1/cpu.stat"; do
    [ -r "$f" ] || continue
    case $f in
    *cpuacct.usage) awk '{ printf "%d\n", $1 / 1000 }' "$f" ;;
    *) awk '$1 == "usage_usec" { print $2 }' "$f" ;;
    esac
    return
  done
  echo 0
}

# run_wrk LABEL URL [wrk args...]: prints "rps p50_ms p99_ms requests errors gw_us proxy_us
# ctr_us": the last three are CPU time per request (µs) of the operator (the gateway),
# of the docker-proxy of the container's port and of the container, over the run.
run_wrk() {
  local label=$1 url=$2 out o0 o1 p0 p1 c0 c1
  shift 2
  o0=$(cpu_ticks "$OP_PID")
  p0=$(cpu_ticks "$PROXY_PID")
  c0=$(container_cpu_us "$CID")
  out=$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" --latency "$@" "$url")
  o1=$(cpu_ticks "$OP_PID")
  p1=$(cpu_ticks "$PROXY_PID")
  c1=$(container_cpu_us "$CID")
  echo "$out" >"$BENCH_TMP/wrk-$label.txt"
  local rps p50 p99 reqs errs
  read -r rps p50 p99 reqs errs < <(wrk_summary "$out")
  awk -v r="$rps" -v a="$p50" -v b="$p99" -v n="$reqs" -v e="$errs" \
    -v o="$((o1 - o0))" -v p="$((p1 - p0))" -v c="$((c1 - c0))" -v hz="$CLK_TCK" \
    'BEGIN { n = (n > 0) ? n : 1; printf "%s %s %s %d %d %.0f %.0f %.0f\n", r, a, b, n, e, o * 1e6 / hz / n, p * 1e6 / hz / n, c / n }'
}

# Whether a client's second request reuses the first one's connection: "kept" when it
# did, "closed" when the server closed it (saying so, or not: then curl retries).
keepalive() {
  local v
  v=$(curl -sv -o /dev/null -o /dev/null "$1" "$1" 2>&1)
  if grep -Eiq 're-?using existing connection' <<<"$v" && ! grep -qi 'connection died' <<<"$v"; then
    echo kept
  else
    echo closed
  fi
}

declare -A RESULT
echo
printf 'load average before: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
for name in static cgi; do
  port=$(host_port_of "$name")
  CID=$(docker ps -q --no-trunc --filter "label=dev.invok.instance=$INSTANCE" --filter "label=dev.invok.pool=$name")
  PROXY_PID=$(pgrep -f "docker-proxy .*-host-port $port( |\$)" | head -n 1 || true)
  # Without a userland proxy (iptables only), its column reads 0.
  [ -n "$PROXY_PID" ] || PROXY_PID=$$
  direct="http://127.0.0.1:$port/"
  gw="http://127.0.0.1:$GATEWAY_PORT/function/$name/"
  body=$(curl -sf "$direct") || die "direct GET $direct failed"
  [ "$body" = ok ] || die "direct GET $direct answered $body"
  # Warm up: the gateway learns that this container closes its connections.
  for _ in 1 2 3 4 5; do
    [ "$(curl -sf "$gw")" = ok ] || die "GET $gw failed"
  done
  printf '%s: client connection kept alive: direct %s, gateway %s (the container answers %s)\n' \
    "$name" "$(keepalive "$direct")" "$(keepalive "$gw")" \
    "$(curl -s -D - -o /dev/null "$direct" | tr -d '\r' | grep -i '^connection:' || echo 'without a Connection header')"
  RESULT[$name-direct]=$(run_wrk "$name-direct" "$direct")
  RESULT[$name-gateway]=$(run_wrk "$name-gateway" "$gw")
  RESULT[$name-gw-close]=$(run_wrk "$name-gw-close" "$gw" -H "Connection: close")
done
printf 'load average after:  %s\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)"

printf 'wrk -t%s -c%s -d%ss, one container (busybox httpd closes every connection); CPU: µs per request\n\n' \
  "$THREADS" "$CONNECTIONS" "$DURATION"
printf '| path | target | requests/s | p50 ms | p99 ms | errors | throughput vs direct | added p50 ms | added p99 ms | CPU gateway | CPU docker-proxy | CPU container |\n'
printf '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for name in static cgi; do
  read -r drps dp50 dp99 _ derr _ dpx dct <<<"${RESULT[$name-direct]}"
  path="\`GET /\` $([ "$name" = static ] && echo static || echo CGI)"
  printf '| %s | direct | %.0f | %.3f | %.3f | %s | | | | | %s | %s |\n' "$path" "$drps" "$dp50" "$dp99" "$derr" "$dpx" "$dct"
  for target in gateway gw-close; do
    read -r rps p50 p99 _ err gcpu pcpu ccpu <<<"${RESULT[$name-$target]}"
    awk -v p="$path" -v t="$target" -v r="$rps" -v a="$p50" -v b="$p99" -v e="$err" \
      -v dr="$drps" -v da="$dp50" -v db="$dp99" -v g="$gcpu" -v x="$pcpu" -v c="$ccpu" 'BEGIN {
        label = (t == "gateway") ? "gateway (keep-alive)" : "gateway (Connection: close)"
        printf "| %s | %s | %.0f | %.3f | %.3f | %s | %.0f%% | %+.3f | %+.3f | %s | %s | %s |\n", p, label, r, a, b, e, 100 * r / dr, a - da, b - db, g, x, c
      }'
  done
done
