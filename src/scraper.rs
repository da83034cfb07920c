//! The custom-metrics scraper: the function's own view of its load.
//!
//! A pool's `customMetrics` name gauges its function serves in Prometheus' text format
//! (a queue's depth, jobs in progress). Every `pollInterval` this loop GETs each ready
//! container's metrics page (one request per distinct path, a short timeout, a few
//! containers at a time), sums each metric's samples over their label sets, and records
//! the values in the observed store, where the scaler reads them
//! ([`crate::scaler::ContainerView::metrics`]). A pool is woken when a reading changes,
//! so a quiet pool notices a queue that grows while its CPU stays idle.
//!
//! A scrape that fails (no answer in time, not 2xx, the metric absent or not a finite
//! number) records the metric as missing, never as zero: the scaler does not scale a
//! pool down on what it cannot see (stricter than the HPA, which counts a pod without
//! the metric at its target on scale-down).
//!
//! Like the sampler, it sees nothing of the controller: it gets the runtime, the store,
//! the specs and a trigger ([`run`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::api::EffectiveSpec;
use crate::runtime::{ContainerInfo, Runtime};
use crate::sampler::SpecLookup;
use crate::scaler::Phase;
use crate::scheduler::Trigger;
use crate::store::ObservedStore;

/// Scrapes in flight at once, over all pools.
const CONCURRENT: usize = 16;
/// The loop never ticks faster than this.
const MIN_TICK: Duration = Duration::from_millis(200);
/// How long one scrape may take: half the pool's pollInterval, within these bounds.
const TIMEOUT_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// The sum of the samples of metric `name` in a Prometheus text page, over every label
/// set; `None` when the page has no sample of it or one that is not a finite number
/// (NaN means "no value" there; an infinite queue is not a load to divide).
///
/// Written by hand: the crates that parse the whole exposition format pull regex and a
/// date library in for what is here a line filter.
///
/// ```
/// use invok::scraper::gauge_sum;
/// let page = "# TYPE queue_depth gauge\nqueue_depth{queue=\"a\"} 3\nqueue_depth{queue=\"b\"} 4.5\nqueue_depth_max 9\n";
/// assert_eq!(gauge_sum(page, "queue_depth"), Some(7.5));
/// assert_eq!(gauge_sum(page, "jobs"), None);
/// ```
pub fn gauge_sum(text: &str, name: &str) -> Option<f64> {
    let mut sum: Option<f64> = None;
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = match rest.as_bytes().first() {
            Some(b'{') => match after_labels(rest) {
                Some(r) => r,
                // A line cut short: not a sample.
                None => continue,
            },
            Some(b' ' | b'\t') => rest,
            // A longer name (queue_depth_max), or no value.
            _ => continue,
        };
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        let v: f64 = value.parse().ok()?;
        if !v.is_finite() {
            return None;
        }
        sum = Some(sum.unwrap_or(0.0) + v);
    }
    sum
}

/// What follows the label set `{...}` at the start of `s`, honouring quoted values
/// (which may hold `}` and escaped quotes); `None` when it never closes.
fn after_labels(s: &str) -> Option<&str> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return s.get(i + 1..),
            _ => {}
        }
    }
    None
}

/// Names a pool's custom-metric list (names and paths, in order): readings are matched
/// to metrics by position, so readings taken for another list (before a manifest edit
/// the scraper has not caught up with) must not be read as this one's.
pub fn metrics_key(spec: &EffectiveSpec) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for m in &spec.scaling.custom_metrics {
        (&m.name, &m.path).hash(&mut h);
    }
    h.finish()
}

/// How long one scrape of a pool may take.
fn timeout_of(spec: &EffectiveSpec) -> Duration {
    (spec.scaling.poll_interval / 2).clamp(TIMEOUT_BOUNDS.0, TIMEOUT_BOUNDS.1)
}

/// Scrapes until cancelled (the controller aborts it on shutdown): the ready containers
/// of every pool `specs` declares with custom metrics, each pool every pollInterval;
/// readings go to `store`, and `trigger` wakes a pool whose readings changed.
pub async fn run<R: Runtime>(
    runtime: Arc<R>,
    store: Arc<ObservedStore>,
    specs: SpecLookup,
    trigger: Trigger,
) {
    let mut next: HashMap<String, Instant> = HashMap::new();
    loop {
        let specs: BTreeMap<String, Arc<EffectiveSpec>> = specs()
            .into_iter()
            .filter(|(_, s)| !s.scaling.custom_metrics.is_empty())
            .collect();
        next.retain(|pool, _| specs.contains_key(pool));
        let now = Instant::now();
        let mut due = Vec::new();
        for (pool, spec) in &specs {
            if next.get(pool).is_some_and(|t| *t > now) {
                continue;
            }
            next.insert(pool.clone(), now + spec.scaling.poll_interval);
            for o in store.pool(pool) {
                if o.phase() == Phase::Ready {
                    due.push((pool.clone(), o.info, spec.clone()));
                }
            }
        }
        let runtime = &runtime;
        let mut scrapes = futures_util::stream::iter(due)
            .map(|(pool, info, spec)| async move {
                let values = scrape(runtime.as_ref(), &info, &spec).await;
                (pool, info.id, metrics_key(&spec), values)
            })
            .buffer_unordered(CONCURRENT);
        while let Some((pool, id, key, values)) = scrapes.next().await {
            if store.record_metrics(&id, key, values) {
                trigger.now(&pool);
            }
        }
        let tick = specs
            .values()
            .map(|s| s.scaling.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(1))
            .max(MIN_TICK);
        tokio::time::sleep(tick).await;
    }
}

/// One container's reading of each of its pool's custom metrics, in the spec's order:
/// one request per distinct path.
pub async fn scrape<R: Runtime>(
    runtime: &R,
    container: &ContainerInfo,
    spec: &EffectiveSpec,
) -> Vec<Option<f64>> {
    let metrics = &spec.scaling.custom_metrics;
    let mut pages: HashMap<&str, Option<String>> = HashMap::new();
    for m in metrics {
        if !pages.contains_key(m.path.as_str()) {
            let page = runtime.scrape(container, &m.path, timeout_of(spec)).await;
            pages.insert(m.path.as_str(), page);
        }
    }
    metrics
        .iter()
        .map(|m| {
            pages
                .get(m.path.as_str())
                .and_then(|p| p.as_deref())
                .and_then(|p| gauge_sum(p, &m.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_of_every_label_set_are_summed_and_other_names_ignored() {
        let page = "\
# HELP queue_depth Jobs waiting.
# TYPE queue_depth gauge
queue_depth{queue=\"a\",note=\"has } and \\\" in it\"} 3 1700000000000
queue_depth{queue=\"b\"} 4
queue_depth_total 100
queue_depthx 7
other 1
   queue_depth 1e1
";
        assert_eq!(gauge_sum(page, "queue_depth"), Some(17.0));
        assert_eq!(gauge_sum(page, "other"), Some(1.0));
    }

    #[test]
    fn a_missing_metric_or_a_value_that_is_not_a_number_is_no_reading() {
        assert_eq!(gauge_sum("", "q"), None);
        assert_eq!(gauge_sum("# q 5\n", "q"), None);
        assert_eq!(gauge_sum("q NaN\n", "q"), None);
        assert_eq!(gauge_sum("q +Inf\n", "q"), None);
        assert_eq!(gauge_sum("q 1\nq five\n", "q"), None);
        // A label set cut short is not a sample.
        assert_eq!(gauge_sum("q{a=\"1\" 5\n", "q"), None);
        assert_eq!(gauge_sum("q\n", "q"), None);
    }

    #[test]
    fn zero_is_a_reading() {
        assert_eq!(gauge_sum("q 0\n", "q"), Some(0.0));
        assert_eq!(gauge_sum("q{} -0\n", "q"), Some(0.0));
    }

    proptest::proptest! {
        /// Whatever a function serves, the parse never panics and a reading is finite.
        #[test]
        fn any_page_parses_to_a_finite_reading_or_none(page in "(q|q\\{[a-z=\",\\\\}]*\\}|#|x)?[ 0-9.eE+-]{0,12}(\n(q|q\\{[a-z=\",\\\\}]*\\}|#)[ 0-9.naNINfi+-]{0,12}){0,6}") {
            if let Some(v) = gauge_sum(&page, "q") {
                proptest::prop_assert!(v.is_finite());
            }
        }
    }
}
