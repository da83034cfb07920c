#!/usr/bin/env bash
# Runs Invok on the example pools in manifests/: makes Docker answer, builds the demo
# function image, builds invok, and runs the operator in the foreground (Ctrl-C stops
# it and leaves the containers running; `docker rm -f $(docker ps -aq --filter
# label=dev.invok.instance=demo)` removes them).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/invok-target}"

bash scripts/docker-up.sh
bash scripts/build-demo-image.sh >/dev/null
cargo build --quiet --bin invok
echo "invok: admin API on http://127.0.0.1:8081/status; Ctrl-C to stop" >&2
exec "$CARGO_TARGET_DIR/debug/invok" run --manifests manifests --instance demo "$@"
