#!/usr/bin/env bash
# Make a Docker daemon answer on this machine, idempotently.
#
# - installs Debian's docker.io and busybox-static when they are missing,
# - starts dockerd in the background when `docker info` does not answer,
# - waits (bounded) until it answers.
#
# Safe to run any number of times; does nothing when Docker already answers.
set -euo pipefail

log() { echo "docker-up: $*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || need_pkgs+=(busybox-static)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# Debian's docker.io puts its client in /usr/bin; a client elsewhere on PATH
# (for example a newer one in /usr/local/bin) talks to the same socket.
# Only a live dockerd counts: a stopped one can linger as a zombie until PID 1 reaps it.
if ! pgrep -x -r R,S,D dockerd >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi

for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    log "docker answers"
    exit 0
  fi
  sleep 0.5
done
log "dockerd did not answer within 60 s; last lines of /var/log/dockerd.log:"
tail -n 30 /var/log/dockerd.log >&2 || true
exit 1
