#!/usr/bin/env bash
# Reaction time (issue 4): from the start of a CPU burn in the only container of a pool
# (min 1, max 2, default thresholds, half a core: the burn reads ~1.0 of its limit even
# when other work shares the host) to a second container ready, at pollInterval 1 s and
# 2 s, beside the pollInterval itself and the bare container start time (`docker run -d`
# until the published port answers HTTP) measured in the same run.
#
# Draws the first round of each pollInterval (desired and ready containers and the pool's
# CPU, sampled every 0.1 s, against the time since the burn started) into
# $PLOT_DIR/reaction.png (docs/plots by default).
#
# Usage: bash scripts/bench-reaction.sh   (POLLS="1s 2s" ROUNDS=3 by default)
# Takes about 1-2 minutes; its own --instance, cleaned up on exit. Load goes only to the
# container's loopback port, one bounded request per round.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

POLLS=${POLLS:-1s 2s}
ROUNDS=${ROUNDS:-3}

bench_setup reaction
SPEC_EXTRA='  resources:\n    cpus: 0.5\n'
start_operator
wait_until 30 "the operator is ready" readyz_ok

# Containers of the pool whose latest sample the operator reports.
sampled_is() {
  [ "$(curl -s "http://127.0.0.1:$ADMIN_PORT/api/v1/pools/$1" | { grep -o '"cpu":[0-9]' || true; } | wc -l)" -ge "$2" ]
}

declare -A REACT START
for poll in $POLLS; do
  REACT[$poll]=
  START[$poll]=
  secs=${poll%s}
  for r in $(seq 1 "$ROUNDS"); do
    name=r$secs-$r
    manifest "$name" 1 2 "pollInterval: $poll" "cooldownDuration: 1h"
    wait_until 60 "$name has 1 ready" ready_is "$name" 1
    # Idle and sampled (CPU needs two samples) before the load starts.
    wait_until 60 "$name is sampled" sampled_is "$name" 1
    id=$(docker ps -q --filter "label=dev.invok.instance=$INSTANCE" --filter "label=dev.invok.pool=$name")
    port=$(docker port "$id" 8080/tcp | sed -n 's/^127\.0\.0\.1://p' | head -n 1)
    watcher=
    if [ "$r" = 1 ]; then
      watcher=$(watch_pool "$name" "$BENCH_TMP/watch-$secs.raw")
      sleep 1 # a second of the idle pool before the burn, for the plot
    fi
    t0=$(now_ms)
    curl -s -o /dev/null --max-time 60 "http://127.0.0.1:$port/cgi-bin/cpu?ms=$((secs * 4000 + 10000))" &
    load=$!
    wait_until 60 "$name has 2 ready" ready_is "$name" 2
    REACT[$poll]+=" $(($(now_ms) - t0))"
    if [ -n "$watcher" ]; then
      sleep 2 # the new container's first samples, for the plot
      kill "$watcher"
      wait "$watcher" 2>/dev/null || true
      awk -v t0="$t0" '{ printf "%.2f %s %s %s %s\n", ($1 - t0) / 1000, $2, $3, $4, $5 }' \
        "$BENCH_TMP/watch-$secs.raw" >"$BENCH_TMP/watch-$secs.dat"
    fi
    # Deleting the manifest removes the containers, and with them the burn.
    rm -f "$MANIFESTS/$name.yaml"
    wait_until 60 "$name is pruned" instance_count_is 0
    wait "$load" 2>/dev/null || true
    START[$poll]+=" $(baseline_run 1)"
  done
  log "poll=$poll reaction ms:${REACT[$poll]}; bare start ms:${START[$poll]}"
done

echo
echo "Reaction time ($(nproc) cores, $(docker version --format '{{.Server.Version}}'), median of $ROUNDS rounds)"
printf '%-13s %14s %15s %15s %24s\n' pollInterval "reaction ms" "bare start ms" "reaction-start" "reaction/(poll+start)"
for poll in $POLLS; do
  # shellcheck disable=SC2086
  rt=$(median ${REACT[$poll]})
  # shellcheck disable=SC2086
  st=$(median ${START[$poll]})
  p=$((${poll%s} * 1000))
  printf '%-13s %14s %15s %15s %23.2fx\n' "$poll" "$rt" "$st" "$(awk -v a="$rt" -v b="$st" 'BEGIN { print a - b }')" \
    "$(awk -v a="$rt" -v b="$st" -v p="$p" 'BEGIN { print a / (p + b) }')"
done

# One panel per pollInterval: containers (left axis) and CPU (right axis) over time.
panels=
for poll in $POLLS; do
  secs=${poll%s}
  panels+="set title 'pollInterval $poll: reaction $(median ${REACT[$poll]}) ms (median), bare container start $(median ${START[$poll]}) ms'
plot '$BENCH_TMP/watch-$secs.dat' using 1:2 with steps lw 2 title 'desired', \
     '' using 1:3 with steps lw 2 title 'ready', \
     '' using 1:5 axes x1y2 with lines lw 1 dt 2 title 'CPU (limits)'
"
done
# shellcheck disable=SC2016
plot "$PLOT_DIR/reaction.png" "
set multiplot layout 1,$(echo $POLLS | wc -w)
set xlabel 'seconds since the burn started'
set ylabel 'containers'
set y2label 'summed CPU, 1.0 = one container at its limit'
set yrange [0:3]
set ytics 1
set y2range [0:2]
set y2tics
set key top left
set grid
set arrow from 0, graph 0 to 0, graph 1 nohead dt 3
$panels
unset multiplot"
