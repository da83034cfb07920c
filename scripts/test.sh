#!/usr/bin/env bash
# The whole test suite, as CI runs it: makes Docker answer, builds the demo image, then
# checks formatting, lints, and runs every test (unit, property, real-Docker integration,
# doc tests) and builds every example.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds outside the clone are reused between runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/invok-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

bash scripts/docker-up.sh
bash scripts/build-demo-image.sh >/dev/null

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets --quiet
echo "== doc tests"
cargo test --doc --quiet
