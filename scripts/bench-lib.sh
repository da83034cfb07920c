# Shared helpers of scripts/bench-*.sh (sourced, not run).
#
# Each benchmark runs its own `invok run` (release build) with its own --instance, admin
# port, lock and manifest directory, and removes that instance's containers (and the
# baseline containers it ran itself) when it ends, also on failure or Ctrl-C. Traffic
# goes only to 127.0.0.1.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
IMAGE=invok/demo-fn:latest
CLK_TCK=$(getconf CLK_TCK)

log() { echo "bench: $*" >&2; }
die() {
  log "$*"
  exit 1
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# A loopback port nobody listens on.
free_port() {
  # Below the kernel's ephemeral range (32768+), and not bound by anyone.
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
      echo "$p"
      return
    fi
  done
  die "no free port"
}

# bench_setup NAME: Docker, the demo image, curl, the release binary, a temp dir, cleanup.
bench_setup() {
  BENCH_NAME=$1
  bash "$ROOT/scripts/docker-up.sh"
  bash "$ROOT/scripts/build-demo-image.sh" >/dev/null
  if ! command -v curl >/dev/null 2>&1; then
    log "installing curl from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
  fi
  if [ -z "${INVOK_BIN:-}" ]; then
    log "building invok (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin invok)
    INVOK_BIN=$CARGO_TARGET_DIR/release/invok
  fi
  log "load average before the run: $(cut -d" " -f1-3 /proc/loadavg)"
  BENCH_TMP=$(mktemp -d)
  INSTANCE=bench-$BENCH_NAME-$$
  MANIFESTS=$BENCH_TMP/manifests
  mkdir -p "$MANIFESTS"
  OP_PID=
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Removes every container carrying label $1=$2, four removals at a time.
remove_labelled() {
  docker ps -aq --filter "label=$1=$2" | xargs -r -n 10 -P 4 docker rm -f >/dev/null 2>&1 || true
}

bench_cleanup() {
  local rc=$?
  stop_operator
  remove_labelled dev.invok.instance "$INSTANCE"
  remove_labelled dev.invok.bench "$INSTANCE"
  if [ "$rc" -ne 0 ] && [ -f "$BENCH_TMP/operator.log" ]; then
    log "operator log (last lines):"
    tail -n 20 "$BENCH_TMP/operator.log" >&2
  fi
  rm -rf "$BENCH_TMP"
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every $WAIT_PAUSE seconds (0.02 by
# default); fails after SECONDS.
wait_until() {
  local limit=$(($(now_ms) + $1 * 1000)) what=$2
  shift 2
  until "$@"; do
    [ "$(now_ms)" -lt "$limit" ] || die "timed out waiting until $what"
    sleep "${WAIT_PAUSE:-0.02}"
  done
}

# start_operator [VAR=VALUE...]: starts `invok run` on $MANIFESTS, waits for /healthz.
start_operator() {
  ADMIN_PORT=$(free_port)
  GATEWAY_PORT=$(free_port)
  env INVOK_LOCK_DIR="$BENCH_TMP/lock" RUST_LOG="${RUST_LOG:-info}" "$@" \
    "$INVOK_BIN" run --manifests "$MANIFESTS" --instance "$INSTANCE" \
    --admin-listen "127.0.0.1:$ADMIN_PORT" --listen "127.0.0.1:$GATEWAY_PORT" \
    >>"$BENCH_TMP/operator.log" 2>&1 &
  OP_PID=$!
  wait_until 20 "the admin API answers" curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/healthz"
}

# Stops the operator with SIGTERM (containers stay, as documented).
stop_operator() {
  if [ -n "${OP_PID:-}" ] && kill -0 "$OP_PID" 2>/dev/null; then
    kill -TERM "$OP_PID" 2>/dev/null || true
    wait "$OP_PID" 2>/dev/null || true
  fi
  OP_PID=
}

readyz_ok() { curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz"; }

# Sum of a numeric field of /status over every pool.
status_sum() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/status" |
    grep -o "\"$1\":[0-9]*" | awk -F: '{ s += $2 } END { print s + 0 }'
}

# A field of one pool's summary.
pool_field() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/api/v1/pools/$1" |
    grep -o "\"$2\":[0-9]*" | head -n 1 | awk -F: '{ print $2 + 0 }'
}

ready_is() { [ "$(pool_field "$1" ready_containers)" = "$2" ]; }
total_ready_is() { [ "$(status_sum ready_containers)" = "$1" ]; }
instance_count() { docker ps -aq --filter "label=dev.invok.instance=$INSTANCE" | wc -l; }
instance_count_is() { [ "$(instance_count)" -eq "$1" ]; }

# manifest NAME MIN MAX [SCALING LINE...]: writes NAME.yaml atomically; $SPEC_EXTRA
# (e.g. "  resources:\n    cpus: 0.5\n") goes into `spec`.
manifest() {
  local name=$1 min=$2 max=$3 tmp
  shift 3
  tmp=$MANIFESTS/.$name.tmp
  {
    printf 'apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: %s\n' "$name"
    printf 'spec:\n  image: %s\n%b  readiness:\n    path: /\n  scaling:\n' "$IMAGE" "${SPEC_EXTRA:-}"
    printf '    minContainers: %s\n    maxContainers: %s\n' "$min" "$max"
    for line in "$@"; do printf '    %s\n' "$line"; done
  } >"$tmp"
  mv "$tmp" "$MANIFESTS/$name.yaml"
}

# CPU time (clock ticks, user + system) and RSS (kB) of a process.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
dockerd_pid() { pgrep -x -o dockerd; }

# measure PID SECONDS: prints "CPU% RSS_KB DOCKERD_CPU%": CPU as a percentage of one core
# over the window, RSS averaged over one sample per second.
measure() {
  local pid=$1 secs=$2 dpid t0 d0 t1 d1 rss=0 i
  dpid=$(dockerd_pid)
  t0=$(cpu_ticks "$pid")
  d0=$(cpu_ticks "$dpid")
  for i in $(seq 1 "$secs"); do
    sleep 1
    rss=$((rss + $(rss_kb "$pid")))
  done
  t1=$(cpu_ticks "$pid")
  d1=$(cpu_ticks "$dpid")
  awk -v a="$t0" -v b="$t1" -v c="$d0" -v d="$d1" -v s="$secs" -v r="$rss" -v hz="$CLK_TCK" \
    'BEGIN { printf "%.3f %d %.3f\n", (b - a) * 100 / hz / s, r / s, (d - c) * 100 / hz / s }'
}

# Median of the numbers given as arguments.
median() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# baseline_run N: baseline_up N, then removes those containers; prints the elapsed ms.
baseline_run() {
  baseline_up "$1"
  remove_labelled dev.invok.bench "$INSTANCE"
}

# Converts wrk's 812.00us / 1.23ms / 1.05s to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n
  }'
}

# wrk_summary WRK_OUTPUT: prints "requests/s p50_ms p99_ms requests errors" (errors:
# socket errors plus non-2xx answers) from the output of `wrk --latency`.
wrk_summary() {
  local out=$1 rps p50 p99 reqs errs non2xx
  rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
  p50=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
  p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
  reqs=$(echo "$out" | awk '/requests in/ { print $1 }')
  errs=$(echo "$out" | awk -F'[ ,]+' '/Socket errors/ { print $4 + $6 + $8 + $10 }')
  non2xx=$(echo "$out" | awk '/Non-2xx/ { print $NF }')
  echo "$rps $p50 $p99 ${reqs:-0} $((${errs:-0} + ${non2xx:-0}))"
}

# install_debian COMMAND PACKAGE: installs PACKAGE from Debian unless COMMAND exists,
# without letting its init script start a service.
install_debian() {
  local cmd=$1 pkg=$2 policy=/usr/sbin/policy-rc.d made=
  command -v "$cmd" >/dev/null 2>&1 && return
  log "installing $pkg from Debian"
  export DEBIAN_FRONTEND=noninteractive
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && made=1
  fi
  apt-get install -y -qq "$pkg" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq "$pkg" >/dev/null
  }
  [ -z "$made" ] || rm -f $policy
}

# baseline_up N: `docker run -d` of the demo image N times, 4 at a time (as the operator
# creates them), each until its published port answers HTTP; prints the elapsed ms. The
# containers stay (labelled dev.invok.bench=$INSTANCE).
baseline_up() {
  local t0
  t0=$(now_ms)
  seq 1 "$1" | xargs -P 4 -I{} bash -c '
    id=$(docker run -d --label "dev.invok.bench=$1" -p 127.0.0.1::8080 "$2")
    port=$(docker port "$id" 8080/tcp | sed -n "s/^127\.0\.0\.1://p" | head -n 1)
    for _ in $(seq 1 3000); do
      curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && exit 0
      sleep 0.01
    done
    exit 1' _ "$INSTANCE" "$IMAGE" || die "a baseline container did not answer"
  echo $(($(now_ms) - t0))
}

# Where the benchmarks' plots go (the README shows them).
PLOT_DIR=${PLOT_DIR:-$ROOT/docs/plots}

# plot PNG SCRIPT: draws a PNG with gnuplot (Debian's gnuplot-nox, installed if missing)
# from the gnuplot commands in SCRIPT (one per line; written to a file, since `gnuplot
# -e` does not take newlines as separators); the terminal and output are set here.
plot() {
  local png=$1 script
  install_debian gnuplot gnuplot-nox
  mkdir -p "$(dirname "$png")"
  script=$(mktemp)
  printf "set terminal pngcairo size 960,440 font 'sans,10' noenhanced\nset output '%s'\n%s\n" "$png" "$2" >"$script"
  gnuplot "$script" || die "gnuplot could not draw $png (commands in $script)"
  rm -f "$script"
  log "plot: $png"
}

# watch_pool NAME FILE: samples the pool every 0.1 s into FILE ("epoch_ms desired ready
# starting cpu" per line; cpu is the summed CPU of its containers, 1.0 = one limit) until
# killed; prints the sampler's PID.
watch_pool() {
  # Its output goes nowhere: `pid=$(watch_pool ...)` must not wait for it.
  python3 - "http://127.0.0.1:$ADMIN_PORT/api/v1/pools/$1" "$2" <<'PY' >/dev/null 2>&1 &
import json, sys, time, urllib.request
url, path = sys.argv[1], sys.argv[2]
with open(path, "w", buffering=1) as out:
    while True:
        t = int(time.time() * 1000)
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                p = json.load(r)
            s = p["summary"]
            cpu = sum(c.get("cpu") or 0 for c in p["containers"])
            out.write(f"{t} {s['desired_containers']} {s['ready_containers']} {s['starting_containers']} {cpu:.3f}\n")
        except Exception:
            pass  # the pool is not there yet or any more: a gap in the plot
        time.sleep(0.1)
PY
  echo $!
}
