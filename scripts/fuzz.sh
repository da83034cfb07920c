#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...]: runs each fuzz target of fuzz/ (libFuzzer, the
# targets `cargo fuzz` runs) for SECONDS (default 60) from its corpus in fuzz/corpus/,
# seeded from manifests/ and the tests. Fails on the first crash, leaving the input in
# fuzz/artifacts/TARGET/ (turn it into a regression test, then fix).
#
# Built as cargo-fuzz builds, with libFuzzer's coverage instrumentation, but on the
# stable toolchain and without AddressSanitizer (cargo-fuzz's default needs nightly):
# the code under test is safe Rust, where a bug is a panic, which libFuzzer catches.
# With cargo-fuzz installed, `cd fuzz && cargo fuzz run manifest` does the same.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest quantity gateway_request)

export CARGO_TARGET_DIR=${INVOK_FUZZ_TARGET_DIR:-/var/tmp/invok-fuzz-target}
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps RUSTFLAGS off build scripts (as cargo-fuzz does).
triple=$(rustc -vV | sed -n 's/^host: //p')
echo "fuzz: building ${targets[*]}" >&2
(cd "$root/fuzz" && cargo build --release --quiet --target "$triple" $(printf -- '--bin %s ' "${targets[@]}"))

# Seeds: every manifest of the repository, and a few edge cases per target.
seed() {
  local dir=$root/fuzz/corpus/$1
  mkdir -p "$dir"
  case $1 in
  manifest) cp "$root"/manifests/*.yaml "$dir/" ;;
  quantity) for s in 0 500ms 30s 1m30s 2h 100000h 512Mi 1.5Gi 300M 1e9 -1s; do printf '%s' "$s" >"$dir/seed-$s"; done ;;
  gateway_request) printf '/function/web/a%%2Fb?x=%%3F\0q=1\0host: a\nconnection: x-hop\nx-hop: 1\n' >"$dir/seed-1" ;;
  esac
}

for t in "${targets[@]}"; do
  seed "$t"
  mkdir -p "$root/fuzz/artifacts/$t"
  echo "fuzz: $t for ${secs}s" >&2
  "$CARGO_TARGET_DIR/$triple/release/$t" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$root/fuzz/artifacts/$t/" "$root/fuzz/corpus/$t" 2>&1 |
    grep -E '^(#[0-9]+ *DONE|Done|==[0-9]+==|thread|panicked|SUMMARY|artifact)' | tail -n 5 || true
  # libFuzzer exits non-zero on a crash; pipefail would hide which target, so check.
  if [ -n "$(find "$root/fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \))" ]; then
    echo "fuzz: $t found a failing input in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "fuzz: no crash in ${targets[*]} (${secs}s each)" >&2
