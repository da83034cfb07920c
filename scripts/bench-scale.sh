#!/usr/bin/env bash
# Scale against the floor (issue 15): N containers declared at once, held idle, and
# deleted, beside what a user would do by hand with the docker CLI, in the same run.
#
# For each size POOLSxPER (default "50x10 100x10", i.e. 500 and 1,000 containers):
#   1. baseline up:    `docker run -d -p 127.0.0.1::8080` of the demo image N times, 4 at a
#                      time, each until its published port answers `GET /`;
#   2. baseline down:  `docker rm -f` of those N, 4 at a time;
#   3. invok up:       POOLS manifests of PER containers (min = max = PER, HTTP readiness
#                      on `/`) moved into the watched directory at once, until /status
#                      counts N ready;
#   4. invok idle:     the operator's CPU (% of one core) and RSS over WINDOW seconds
#                      holding the N idle containers (dockerd's CPU beside it);
#   5. invok down:     every manifest deleted at once, until no container of the instance
#                      is left (each is stopped with the pool's drain and Docker's stop).
# Prints the ratios up = 3/1 and down = 5/2 (goals <= 1.2x), and the idle cost (goals:
# <= 1 % of a core and <= 64 MB RSS; per container, the cost should not grow with N).
#
# Usage: bash scripts/bench-scale.sh   (SIZES="50x10 100x10" WINDOW=30 by default)
# Takes about 15 minutes for both sizes on 2 cores. Needs about 15 GB of memory for
# 1,000 containers (each has its containerd shim and docker-proxy). Its own --instance;
# every container it made is removed on exit, also on failure or Ctrl-C.
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

SIZES=${SIZES:-50x10 100x10}
WINDOW=${WINDOW:-30}

bench_setup scale
start_operator
wait_until 30 "the operator is ready" readyz_ok

# baseline_down: docker rm -f of this run's baseline containers, 4 at a time (one per call).
baseline_down() {
  local t0
  t0=$(now_ms)
  docker ps -aq --filter "label=dev.invok.bench=$INSTANCE" | xargs -r -n 1 -P 4 docker rm -f >/dev/null
  echo $(($(now_ms) - t0))
}

declare -a ROWS
for size in $SIZES; do
  pools=${size%x*}
  per=${size#*x}
  n=$((pools * per))
  log "$n containers ($pools pools x $per): baseline up"
  b_up=$(baseline_up "$n")
  log "baseline down"
  b_down=$(baseline_down)

  log "invok up"
  stage=$BENCH_TMP/stage
  mkdir -p "$stage"
  (
    MANIFESTS=$stage
    for i in $(seq 1 "$pools"); do manifest "s$i" "$per" "$per" "cooldownDuration: 1h"; done
  )
  t0=$(now_ms)
  mv "$stage"/*.yaml "$MANIFESTS"/
  # Polled every 100 ms: /status lists every pool, and polling must not load the operator.
  WAIT_PAUSE=0.1 wait_until 900 "$n containers ready" total_ready_is "$n"
  o_up=$(($(now_ms) - t0))

  # Let the start-up transients (first samples, probes) pass before the window.
  sleep 5
  log "invok idle with $n containers for ${WINDOW}s"
  read -r cpu rss dcpu < <(measure "$OP_PID" "$WINDOW")

  log "invok down"
  t0=$(now_ms)
  rm -f "$MANIFESTS"/s*.yaml
  WAIT_PAUSE=0.1 wait_until 900 "every container is removed" instance_count_is 0
  o_down=$(($(now_ms) - t0))
  ROWS+=("$n $pools $per $b_up $o_up $b_down $o_down $cpu $rss $dcpu")
  log "n=$n up: docker $b_up ms, invok $o_up ms; down: docker $b_down ms, invok $o_down ms; idle: cpu $cpu% rss $rss kB dockerd $dcpu%"
done

echo
echo "Scale figures ($(nproc) cores, Docker $(docker version --format '{{.Server.Version}}'), load average now $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| containers | up: docker run ×4 | up: invok | ratio | down: docker rm -f ×4 | down: invok | ratio | idle CPU (% core) | per 1,000 containers | RSS MB | dockerd CPU |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "${ROWS[@]}"; do
  read -r n pools per b_up o_up b_down o_down cpu rss dcpu <<<"$row"
  awk -v n="$n" -v p="$pools" -v q="$per" -v bu="$b_up" -v ou="$o_up" -v bd="$b_down" -v od="$o_down" \
    -v c="$cpu" -v r="$rss" -v d="$dcpu" 'BEGIN {
      printf "| %d (%d x %d) | %.1f s | %.1f s | %.2fx | %.1f s | %.1f s | %.2fx | %.2f %% | %.2f %% | %.1f | %.2f %% |\n",
        n, p, q, bu / 1000, ou / 1000, ou / bu, bd / 1000, od / 1000, od / bd, c, c * 1000 / n, r / 1024, d
    }'
done
