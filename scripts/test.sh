#!/usr/bin/env bash
# The whole test suite, as CI runs it: makes Docker answer, builds the demo image, then
# checks formatting, lints, and runs every test (unit, property, real-Docker integration,
# chaos, the dashboard in a browser, doc tests), builds every example, then a 2-minute
# soak, a bounded fuzz run, the Kubernetes exports, the metrics and the monitoring/ rules
# and dashboard against promtool.
set -euo pipefail
cd "$(dirname "$0")/.."

# Builds outside the clone are reused between runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/invok-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

bash scripts/docker-up.sh
bash scripts/build-demo-image.sh >/dev/null
# The dashboard's browser test (tests/dashboard.rs): Debian's chromium, node and
# playwright-core, installed once.
bash scripts/browser-setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets --quiet
echo "== doc tests"
cargo test --doc --quiet
echo "== soak (2 minutes)"
# Sawtooth, bursty and steady load on three pools; fails on any failed request. The
# 30-minute figures in README come from `scripts/soak.sh 30m` on a release build.
INVOK_BIN="$CARGO_TARGET_DIR/debug/invok" SOAK_PROFILE=debug bash scripts/soak.sh 2m
echo "== fuzz (20 s per target)"
# The fuzz targets of fuzz/ (manifest loader, quantities and durations, the gateway's
# path and headers), each from its corpus for a bounded time; fails on any crash. Builds
# in its own target directory (libFuzzer's instrumentation), reused between runs.
bash scripts/fuzz.sh 20
echo "== kubernetes-validate"
# The exported CRD and objects of every example, against the API schemas of three
# Kubernetes versions (strict: unknown fields fail). Uses the binary the tests built.
k8s_out="$(mktemp -d)"
"$CARGO_TARGET_DIR/debug/invok" export crd > "$k8s_out/functionpool.crd.yaml"
"$CARGO_TARGET_DIR/debug/invok" export kubernetes -f manifests/ -o "$k8s_out/objects" > /dev/null
python3 scripts/validate-k8s.py "$k8s_out/functionpool.crd.yaml" "$k8s_out"/objects/*.yaml
rm -rf "$k8s_out"
echo "== promtool check metrics"
# What a running operator serves on /metrics, checked and linted by Prometheus' own tool.
# promtool ships in Debian's prometheus package (installed once; its service is not
# started). The metrics test writes its scrape to INVOK_METRICS_SNAPSHOT.
if ! command -v promtool >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
metrics_snapshot="$(mktemp)"
INVOK_METRICS_SNAPSHOT="$metrics_snapshot" cargo test --quiet --test metrics -- --exact metrics_status_and_readyz_describe_a_running_pool
if [ ! -s "$metrics_snapshot" ]; then
    echo "the metrics test wrote no snapshot to $metrics_snapshot" >&2
    exit 1
fi
if ! promtool check metrics < "$metrics_snapshot"; then
    echo "promtool check metrics failed on the scrape above ($metrics_snapshot)" >&2
    exit 1
fi
echo "promtool: $(grep -c '^# TYPE' "$metrics_snapshot") metric families, no problems"
echo "== monitoring/: alert rules and the Grafana dashboard"
promtool check rules monitoring/alerts.yaml
(cd monitoring && promtool test rules alerts.test.yaml)
# Every metric a rule or the Grafana dashboard queries is one the operator serves (a
# renamed metric would leave an alert that never fires, a panel that stays empty).
for name in $(grep -hv '^ *#' monitoring/alerts.yaml monitoring/grafana-dashboard.json | grep -oE 'invok_[a-z_]+' | sort -u); do
    # A histogram's series add _bucket to its family's name; a counter's family is
    # declared with or without _total, depending on the encoder.
    family=${name%_bucket}
    if ! grep -qE "^# TYPE (${family}|${family%_total}) " "$metrics_snapshot"; then
        echo "monitoring/ queries $name, which /metrics does not serve" >&2
        exit 1
    fi
done
# Every query of the dashboard parses as PromQL (promtool checks a rule file of them,
# its variable $pool given a value).
dashboard_rules="$(mktemp --suffix=.yaml)"
python3 scripts/dashboard-queries.py monitoring/grafana-dashboard.json > "$dashboard_rules"
promtool check rules "$dashboard_rules"
rm -f "$dashboard_rules"
echo "monitoring: $(grep -c '^ *- alert:' monitoring/alerts.yaml) alert rules (their tests pass), the Grafana dashboard's queries parse, every metric they query is served"
rm -f "$metrics_snapshot"
