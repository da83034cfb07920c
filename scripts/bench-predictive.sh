#!/usr/bin/env bash
# Predictive scaling: replays load shapes through the gateway (a linear ramp, a sawtooth,
# a periodic burst) with scripts/replay-load.py, an open-loop bounded load generator,
# against two pools identical but for `predictive` (reactive: targetRequestsPerSecond
# alone; predictive: the same plus `predictive: {horizon, window}`), both driven with the
# same schedule at the same instants, and reports for each pool:
#
#   waited   requests that waited for capacity: latency above WAIT_FACTOR (2) x the
#            unloaded p90 (WAIT_QUANTILE 0.9), or no 200 answer (timeout, connection
#            error, 5xx). The unloaded latency is measured first, in the same run:
#            UNLOADED_RPS (1) requests per second for UNLOADED_SECS (30) through the
#            gateway to a pool of one idle container with the same limits. It is
#            bimodal (about 25 or 65 ms: a burn that straddles the CFS quota period is
#            held to the next), so its p50 would flip between the modes from run to
#            run; the p90 does not. A request exceeds twice that when it shares its
#            container's CPU quota with other burns (the container is over capacity) or
#            waits for a container at the gateway. The share of the unloaded requests
#            above the threshold (the definition's noise floor) is printed with it.
#   p99 ms   99th percentile latency (a timeout counts as its timeout).
#   c-s      container-seconds: the pool's ready + starting containers, sampled every
#            0.1 s (watch_pool), integrated over the measured window (sample and hold);
#            the operator's own cost.containerSeconds over the same window beside it.
#
# and the ratios predictive / reactive. The issue's goal: on the ramp and the periodic
# burst, predictive halves the requests that waited at no more than 10 % more
# container-seconds.
#
# The request is a CPU burn, GET /function/POOL/cgi-bin/cpu?ms=MS (20): the demo image
# runs `yes` for MS ms; under a CPUS (0.25) core limit, concurrent burns in a container
# share its quota, and the CGI's own work is throttled with them, so an over-full
# container shows as latency. One such container serves about 10 requests/s alone on
# the host, about 6/s while both pools burn on 2 shared cores; the CPU rule (0.7 of the
# limit) fires near 7/s. TARGET_RPS is 4, under both, so the request rate (and its
# forecast) is the signal that scales the pools, not CPU.
#
# Warm-up: the seasonal term of the forecast needs a history spanning two periods, so
# the periodic shapes (sawtooth, burst) first run WARMUP_PERIODS (2) periods of the same
# shape, in the same replayer run (so the phase continues); only the periods after the
# warm-up are counted and compared. The ramp has no warm-up (Holt's trend learns it
# within a few polls). Each shape gets a fresh pair of pools (its own history), removed
# before the next shape.
#
# Plots: $PLOT_DIR/predictive-<shape>.png (docs/plots by default): the offered load
# (requests/s, from the replayer's send times binned per second), the predictive pool's
# forecast and both pools' replicas (ready + starting) over time, the warm-up shaded.
#
# Usage: bash scripts/bench-predictive.sh   (about 16 minutes with the defaults)
#   SHAPES="ramp sawtooth burst" PEAK=16 MS=20 CPUS=0.25 TARGET_RPS=4 MAX_CONTAINERS=8
#   POLL=1s COOLDOWN=10s IDLE=0.3 HORIZON=10s WINDOW=10m TIMEOUT=10 WAIT_FACTOR=2
#   RAMP_SECS=60  SAW_PERIOD=60 SAW_PERIODS=3  BURST_PERIOD=60 BURST_SECS=15 BURST_BASE=2
#   BURST_PERIODS=4  WARMUP_PERIODS=2  UNLOADED_RPS=1 UNLOADED_SECS=20
#   MAX_REQUESTS=20000 (per replayer run, per target)  RESULTS_DIR= (keep the raw data)
# Its own --instance, cleaned up on exit (also on failure); load only to 127.0.0.1.
# HORIZON is 10 s, not the 30 s default: a container here is ready within about 1 s of
# being asked for, and the reactive pool lags the load by its 6 s rate window plus a
# poll and a start, so 10 s covers that lag, where 30 s would keep the burst's
# containers for 30 s more each period.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

SHAPES=${SHAPES:-ramp sawtooth burst}
PEAK=${PEAK:-16}
MS=${MS:-20}
CPUS=${CPUS:-0.25}
TARGET_RPS=${TARGET_RPS:-4}
# The CPU fraction under which a container counts as idle: a container serving a few
# 20 ms burns a second is not idle at the seed's 0.10, and neither pool would shrink
# between bursts.
IDLE=${IDLE:-0.3}
MAX_CONTAINERS=${MAX_CONTAINERS:-8}
POLL=${POLL:-1s}
COOLDOWN=${COOLDOWN:-10s}
HORIZON=${HORIZON:-10s}
WINDOW=${WINDOW:-10m}
TIMEOUT=${TIMEOUT:-10}
WAIT_FACTOR=${WAIT_FACTOR:-2}
WAIT_QUANTILE=${WAIT_QUANTILE:-0.9}
RAMP_SECS=${RAMP_SECS:-60}
SAW_PERIOD=${SAW_PERIOD:-60}
SAW_PERIODS=${SAW_PERIODS:-3}
BURST_PERIOD=${BURST_PERIOD:-60}
BURST_SECS=${BURST_SECS:-15}
BURST_BASE=${BURST_BASE:-2}
BURST_PERIODS=${BURST_PERIODS:-4}
WARMUP_PERIODS=${WARMUP_PERIODS:-2}
UNLOADED_RPS=${UNLOADED_RPS:-1}
UNLOADED_SECS=${UNLOADED_SECS:-30}
MAX_REQUESTS=${MAX_REQUESTS:-20000}
RESULTS_DIR=${RESULTS_DIR:-}
REPLAY=$ROOT/scripts/replay-load.py

for shape in $SHAPES; do
  case $shape in ramp | sawtooth | burst) ;; *) die "unknown shape $shape (ramp, sawtooth, burst)" ;; esac
done

bench_setup predictive
SAMPLERS=()
stop_samplers() {
  local pid
  for pid in "${SAMPLERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  SAMPLERS=()
}
# The samplers too, whatever ends the script (then bench-lib's cleanup, with the status).
trap 'rc=$?; stop_samplers; (exit $rc); bench_cleanup' EXIT
SPEC_EXTRA="  resources:\n    cpus: $CPUS\n"
start_operator
wait_until 30 "the operator is ready" readyz_ok
fn_url() { echo "http://127.0.0.1:$GATEWAY_PORT/function/$1/cgi-bin/cpu?ms=$MS"; }
keep() { if [ -n "$RESULTS_DIR" ]; then mkdir -p "$RESULTS_DIR" && cp "$@" "$RESULTS_DIR/"; fi; }

# pool_pair SHAPE: the reactive and the predictive pool of SHAPE, identical but for
# `predictive`, each with one ready container.
pool_pair() {
  local common=("pollInterval: $POLL" "cooldownDuration: $COOLDOWN" "cooldownCpuThreshold: $IDLE" "targetRequestsPerSecond: $TARGET_RPS")
  manifest "$1-reactive" 1 "$MAX_CONTAINERS" "${common[@]}"
  manifest "$1-predictive" 1 "$MAX_CONTAINERS" "${common[@]}" "predictive:" "  horizon: $HORIZON" "  window: $WINDOW"
  wait_until 60 "$1-reactive has 1 ready" ready_is "$1-reactive" 1
  wait_until 60 "$1-predictive has 1 ready" ready_is "$1-predictive" 1
}

# watch_signals FILE POOL...: every 0.5 s, per pool: "epoch_ms pool requestRate
# forecastRate model containerSeconds lastScaleReason" (- where absent); prints its PID.
watch_signals() {
  local file=$1
  shift
  python3 - "http://127.0.0.1:$ADMIN_PORT/api/v1/pools/" "$file" "$@" <<'PY' &
import json, sys, time, urllib.request
base, path, pools = sys.argv[1], sys.argv[2], sys.argv[3:]
def f(v):
    return "-" if v is None else f"{v:.3f}"
with open(path, "w", buffering=1) as out:
    while True:
        for pool in pools:
            t = int(time.time() * 1000)
            try:
                with urllib.request.urlopen(base + pool, timeout=1) as r:
                    p = json.load(r)
                s = p.get("signals") or {}
                fc = s.get("forecast") or {}
                model = (fc.get("model") or {}).get("kind", "-")
                if model == "seasonal":
                    model += "/%.0fs" % (fc["model"].get("periodSeconds") or 0)
                last = p.get("lastScale") or p.get("last_scale") or {}
                cs = (p.get("cost") or {}).get("containerSeconds")
                out.write(f"{t} {pool} {f(s.get('requestRate'))} {f(fc.get('rate'))} {model} "
                          f"{f(cs)} {last.get('reason', '-')}\n")
            except Exception:
                pass
        time.sleep(0.5)
PY
  echo $!
}

stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# --- The unloaded latency, and from it the "waited" threshold. ---
manifest unloaded 1 1 "pollInterval: $POLL"
wait_until 60 "unloaded has 1 ready" ready_is unloaded 1
sleep 2
python3 "$REPLAY" --shape constant --peak "$UNLOADED_RPS" --duration "$UNLOADED_SECS" \
  --timeout "$TIMEOUT" --max-requests 1000 --target "unloaded=$(fn_url unloaded)" \
  --out "$BENCH_TMP/unloaded.tsv" 2>>"$BENCH_TMP/replay.log"
# The unloaded latency is bimodal here (a burn that straddles the CFS quota period is
# held until the next one), so the reference is its p90, not its p50; the share of
# unloaded requests above the threshold (the definition's noise floor) is printed too.
read -r UNLOADED_P50 UNLOADED_REF THRESHOLD NOISE < <(awk -F'\t' 'NR > 2 { print $3, $4 }' "$BENCH_TMP/unloaded.tsv" |
  sort -n | awk -v q="$WAIT_QUANTILE" -v f="$WAIT_FACTOR" '
    { n++; v[n] = $1; if ($2 != 200) bad++ }
    END {
      if (n == 0 || bad == n) exit 1
      i = int(q * n + 0.999999); if (i < 1) i = 1
      t = f * v[i]
      for (k = 1; k <= n; k++) if (v[k] > t) over++
      printf "%.1f %.1f %.1f %.1f\n", v[int((n + 1) / 2)], v[i], t, 100 * (over + bad) / n
    }') || die "no unloaded request succeeded"
log "unloaded latency ($UNLOADED_SECS s at $UNLOADED_RPS/s, one idle container): p50 $UNLOADED_P50 ms, p$(awk -v q="$WAIT_QUANTILE" 'BEGIN { print q * 100 }') $UNLOADED_REF ms; waited = latency > $THRESHOLD ms or no 200 ($NOISE % of the unloaded requests)"
keep "$BENCH_TMP/unloaded.tsv"
rm -f "$MANIFESTS/unloaded.yaml"
wait_until 60 "unloaded is pruned" instance_count_is 0

# analyse SHAPE FROM TO: prints one row per pool ("pool requests waited waited% p99 cs
# operator_cs") for the requests sent in [FROM, TO] s of the replay, and writes the plot
# data: SHAPE-load.dat ("second rps"), SHAPE-POOL.dat ("s ready+starting desired"),
# SHAPE-forecast.dat ("s pool rate forecast").
analyse() {
  python3 - "$BENCH_TMP" "$1" "$2" "$3" "$THRESHOLD" <<'PY'
import math, sys
tmp, shape, lo, hi, threshold = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
pools = [f"{shape}-reactive", f"{shape}-predictive"]
t0 = None
reqs = {p: [] for p in pools}
with open(f"{tmp}/{shape}.tsv") as f:
    for line in f:
        if line.startswith("# t0_epoch_ms="):
            t0 = int(line.split()[1].split("=")[1])
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4 or parts[0] == "target":
            continue
        reqs[parts[0]].append((float(parts[1]), float(parts[2]), int(parts[3])))
# Offered load, per second (the same schedule went to both pools: count one).
bins = {}
for sent, _, _ in reqs[pools[0]]:
    bins[int(sent)] = bins.get(int(sent), 0) + 1
with open(f"{tmp}/{shape}-load.dat", "w") as out:
    for s in range(0, int(hi) + 1):
        out.write(f"{s} {bins.get(s, 0)}\n")
timeout_ms = None
for pool in pools:
    rows = [(s, ms, st) for s, ms, st in reqs[pool] if lo <= s < hi + 0.5]
    n = len(rows)
    waited = sum(1 for _, ms, st in rows if st != 200 or ms > threshold)
    lat = sorted(ms if st != -1 else float("inf") for _, ms, st in rows)
    p99 = lat[max(0, math.ceil(0.99 * n) - 1)] if n else float("nan")
    # Replicas: ready + starting, sample and hold, over [t0 + lo, t0 + hi).
    samples = []
    with open(f"{tmp}/{pool}.raw") as f:
        for line in f:
            v = line.split()
            if len(v) >= 4:
                samples.append(((int(v[0]) - t0) / 1000.0, int(v[2]) + int(v[3]), int(v[1])))
    with open(f"{tmp}/{pool}.dat", "w") as out:
        for t, live, desired in samples:
            out.write(f"{t:.2f} {live} {desired}\n")
    cs = 0.0
    for (t, live, _), nxt in zip(samples, samples[1:] + [(hi, 0, 0)]):
        a, b = max(t, lo), min(nxt[0], hi)
        if b > a:
            cs += live * (b - a)
    # The operator's own count: its cost.containerSeconds at the window's ends.
    op = []
    with open(f"{tmp}/{shape}-signals.raw") as f:
        for line in f:
            v = line.split()
            if len(v) == 7 and v[1] == pool and v[5] != "-":
                op.append(((int(v[0]) - t0) / 1000.0, float(v[5])))
    def at(x):
        before = [c for t, c in op if t <= x]
        return before[-1] if before else (op[0][1] if op else float("nan"))
    op_cs = at(hi) - at(lo) if op else float("nan")
    print(f"{pool} {n} {waited} {100.0 * waited / n if n else float('nan'):.2f} {p99:.1f} {cs:.1f} {op_cs:.1f}")
with open(f"{tmp}/{shape}-signals.raw") as f, open(f"{tmp}/{shape}-forecast.dat", "w") as out:
    for line in f:
        v = line.split()
        if len(v) == 7 and v[1] == pools[1]:
            out.write(f"{(int(v[0]) - t0) / 1000.0:.2f} {v[2]} {v[3]}\n")
PY
}

declare -A ROWS SHORT
for shape in $SHAPES; do
  case $shape in
    ramp)
      warm=0
      total=$RAMP_SECS
      args=(--shape ramp --peak "$PEAK" --duration "$RAMP_SECS")
      desc="0 -> $PEAK/s over $RAMP_SECS s"
      ;;
    sawtooth)
      warm=$((WARMUP_PERIODS * SAW_PERIOD))
      total=$((warm + SAW_PERIODS * SAW_PERIOD))
      args=(--shape sawtooth --peak "$PEAK" --period "$SAW_PERIOD" --duration "$total")
      desc="0 -> $PEAK/s every $SAW_PERIOD s, $WARMUP_PERIODS periods of warm-up + $SAW_PERIODS measured"
      ;;
    burst)
      warm=$((WARMUP_PERIODS * BURST_PERIOD))
      total=$((warm + BURST_PERIODS * BURST_PERIOD))
      # The burst ends each period, so a measured period starts at the base rate.
      args=(--shape burst --peak "$PEAK" --base "$BURST_BASE" --period "$BURST_PERIOD" --burst "$BURST_SECS"
        --offset "$((BURST_PERIOD - BURST_SECS))" --duration "$total")
      desc="$BURST_BASE/s, $PEAK/s for $BURST_SECS s every $BURST_PERIOD s, $WARMUP_PERIODS periods of warm-up + $BURST_PERIODS measured"
      ;;
  esac
  log "$shape: $desc"
  pool_pair "$shape"
  # Not $(watch_pool ...): the sampler would inherit the substitution's pipe as its
  # stdout, and the substitution would wait for it to end.
  watch_pool "$shape-reactive" "$BENCH_TMP/$shape-reactive.raw" >"$BENCH_TMP/pid1"
  watch_pool "$shape-predictive" "$BENCH_TMP/$shape-predictive.raw" >"$BENCH_TMP/pid2"
  watch_signals "$BENCH_TMP/$shape-signals.raw" "$shape-reactive" "$shape-predictive" >"$BENCH_TMP/pid3"
  w1=$(cat "$BENCH_TMP/pid1") w2=$(cat "$BENCH_TMP/pid2") w3=$(cat "$BENCH_TMP/pid3")
  SAMPLERS=("$w1" "$w2" "$w3")
  sleep 1
  python3 "$REPLAY" "${args[@]}" --timeout "$TIMEOUT" --max-requests "$MAX_REQUESTS" \
    --max-duration "$((total + 5))" --out "$BENCH_TMP/$shape.tsv" \
    --target "$shape-reactive=$(fn_url "$shape-reactive")" \
    --target "$shape-predictive=$(fn_url "$shape-predictive")" 2>>"$BENCH_TMP/replay.log"
  sleep 1
  stop_pid "$w1"
  stop_pid "$w2"
  stop_pid "$w3"
  SAMPLERS=()
  tail -n 3 "$BENCH_TMP/replay.log" >&2
  ROWS[$shape]=$(analyse "$shape" "$warm" "$total")
  # Short of capacity (scripts/capacity-waits.py): sent while ready x target < offered.
  for pool in reactive predictive; do
    SHORT[$shape-$pool]=$(python3 "$ROOT/scripts/capacity-waits.py" "$BENCH_TMP/$shape.tsv" \
      "$BENCH_TMP/$shape-$pool.raw" "$shape-$pool" "$TARGET_RPS" "$warm")
  done
  for pool in reactive predictive; do
    curl -s "http://127.0.0.1:$ADMIN_PORT/api/v1/pools/$shape-$pool" >"$BENCH_TMP/$shape-$pool.json"
  done
  keep "$BENCH_TMP/$shape".* "$BENCH_TMP/$shape"-*
  echo "${ROWS[$shape]}" | sed 's/^/bench: /' >&2
  rm -f "$MANIFESTS/$shape-reactive.yaml" "$MANIFESTS/$shape-predictive.yaml"
  wait_until 90 "the $shape pools are pruned" instance_count_is 0

  r=(${ROWS[$shape]})
  title="$shape ($desc): waited reactive ${r[2]} / predictive ${r[9]}, container-s ${r[5]} / ${r[12]}"
  shade=
  [ "$warm" -eq 0 ] || shade="set object 1 rect from 0, graph 0 to $warm, graph 1 fc rgb '#eeeeee' fs solid noborder behind;
set label 1 'warm-up (not counted)' at $((warm / 2)), graph 0.95 center;"
  plot "$PLOT_DIR/predictive-$shape.png" "
set title '$title';
set xlabel 'seconds since the load started';
set ylabel 'requests/s';
set y2label 'containers (ready + starting)';
set xrange [0:$total];
set yrange [0:*];
set y2range [0:$((MAX_CONTAINERS + 1))];
set y2tics 1;
set ytics nomirror;
set key below;
set grid;
set datafile missing '-';
$shade;
plot '$BENCH_TMP/$shape-load.dat' using 1:2 with steps lc rgb '#999999' lw 1 title 'offered load (req/s, 1 s bins)', \
     '$BENCH_TMP/$shape-forecast.dat' using 1:(\$3) with lines lc rgb '#2ca02c' dt 2 lw 1 title 'forecast of the predictive pool (req/s, $HORIZON ahead)', \
     '$BENCH_TMP/$shape-reactive.dat' using 1:2 axes x1y2 with steps lc rgb '#1f77b4' lw 2 title 'reactive: containers', \
     '$BENCH_TMP/$shape-predictive.dat' using 1:2 axes x1y2 with steps lc rgb '#d62728' lw 2 title 'predictive: containers'"
done

echo
echo "Predictive vs reactive scaling ($(nproc) cores, $(docker version --format '{{.Server.Version}}'), load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo "Pools: $IMAGE, cpus $CPUS, min 1, max $MAX_CONTAINERS, targetRequestsPerSecond $TARGET_RPS, pollInterval $POLL," \
  "cooldownDuration $COOLDOWN; predictive: horizon $HORIZON, window $WINDOW. Request: GET cgi-bin/cpu?ms=$MS, timeout $TIMEOUT s."
echo "Waited = latency > $WAIT_FACTOR x the unloaded p$(awk -v q="$WAIT_QUANTILE" 'BEGIN { print q * 100 }') ($UNLOADED_REF ms; p50 $UNLOADED_P50 ms; $UNLOADED_SECS s at $UNLOADED_RPS/s on one idle container) = $THRESHOLD ms, or no 200 (true of $NOISE % of the unloaded requests)."
echo "Container-seconds: ready + starting containers sampled every 0.1 s, integrated over the measured window (operator's cost.containerSeconds beside it)."
echo "Periodic shapes: the first $WARMUP_PERIODS periods are warm-up (the forecast's history), not counted."
echo
printf '%-9s %-11s %9s %8s %9s %9s %10s %12s\n' shape pool requests waited "waited %" "p99 ms" "c-s" "operator c-s"
for shape in $SHAPES; do
  while read -r pool n w wp p99 cs ocs; do
    printf '%-9s %-11s %9s %8s %9s %9s %10s %12s\n' "$shape" "${pool#"$shape"-}" "$n" "$w" "$wp" "$p99" "$cs" "$ocs"
  done <<<"${ROWS[$shape]}"
done
echo
printf '%-9s %22s %16s %20s\n' shape "waited pred/react" "p99 pred/react" "c-s pred/react"
for shape in $SHAPES; do
  r=(${ROWS[$shape]})
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else if (a == 0) print "0/0"; else print "inf" }'; }
  printf '%-9s %22s %16s %20s\n' "$shape" "$(ratio "${r[9]}" "${r[2]}") (${r[9]}/${r[2]})" \
    "$(ratio "${r[11]}" "${r[4]}")" "$(ratio "${r[12]}" "${r[5]}")"
done
echo "Goal (ramp, burst): waited <= 0.50x at c-s <= 1.10x."
echo
echo "Short of capacity = sent while the pool's ready containers x targetRequestsPerSecond were"
echo "below the requests sent to it in the second before (scripts/capacity-waits.py): what"
echo "scaling ahead changes, independent of the CPU the pools take from each other."
printf '%-9s %22s %22s %22s\n' shape "short reactive" "short predictive" "short pred/react"
for shape in $SHAPES; do
  read -r _ sr spr <<<"${SHORT[$shape-reactive]}"
  read -r _ sp spp <<<"${SHORT[$shape-predictive]}"
  printf '%-9s %22s %22s %22s\n' "$shape" "$sr ($spr %)" "$sp ($spp %)" "$(ratio "$sp" "$sr")"
done
