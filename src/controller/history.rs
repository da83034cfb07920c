//! The controller's history task: samples every pool into the dashboard's
//! [`crate::history::History`] every [`SAMPLE_EVERY`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::context::Shared;
use crate::history::{Sample, SharedHistory, SAMPLE_EVERY};
use crate::scaler::Phase;

/// Samples every pool of `shared` into `history` every [`SAMPLE_EVERY`] until
/// cancelled (the controller aborts it on shutdown).
pub(crate) async fn run<R: Send + Sync + 'static>(shared: Arc<Shared<R>>, history: SharedHistory) {
    let mut served: HashMap<String, u64> = HashMap::new();
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let seconds = now.saturating_duration_since(last).as_secs_f64();
        last = now;
        let t = unix_millis();
        let names = shared.pool_names();
        let specs = shared.pool_specs();
        let mut seen: HashMap<String, u64> = HashMap::new();
        let samples: Vec<(String, Sample)> = names
            .iter()
            .map(|pool| {
                let capacity = specs.get(pool).map_or(1.0, |s| s.template.cpu_capacity());
                let (s, used) = sample(&shared, pool, t, seconds, capacity, &served, &mut seen);
                add_cost(&shared, pool, used);
                (pool.clone(), s)
            })
            .collect();
        served = seen;
        let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
        for (pool, s) in samples {
            h.push(&pool, s);
        }
        h.retain(|name| names.contains(name));
    }
}

/// Milliseconds since the Unix epoch, now (what the page's clock reads).
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Adds what a pool used over the last tick to its status and its counters.
fn add_cost<R>(shared: &Shared<R>, pool: &str, used: [f64; 3]) {
    if used.iter().all(|v| *v <= 0.0) {
        return;
    }
    shared.pools.existing(pool, |p| {
        let c = &mut p.status.cost;
        c.container_seconds += used[0];
        c.cpu_seconds += used[1];
        c.memory_byte_seconds += used[2];
    });
    shared.metrics.record_cost(pool, used);
}

/// One pool's sample, and what it used over the last `seconds` (container-seconds,
/// CPU-seconds of `capacity`-core containers, memory byte-seconds: the containers
/// starting or ready now, at their latest usage sample, held for the whole tick).
/// `served` holds each container's count of routed requests at the
/// last sample, `seen` gets them now (a container new since then counts from zero; the
/// requests a container removed between two samples served since the first are not
/// counted). It reads the store in place, copying nothing: it runs every 2 s whether
/// or not anyone looks at the page.
fn sample<R>(
    shared: &Shared<R>,
    pool: &str,
    t: u64,
    seconds: f64,
    capacity: f64,
    served: &HashMap<String, u64>,
    seen: &mut HashMap<String, u64>,
) -> (Sample, [f64; 3]) {
    let mut used = [0.0; 3];
    let mut s = Sample {
        t,
        desired: shared
            .pools
            .existing(pool, |p| p.status.desired_replicas)
            .unwrap_or(0),
        ..Sample::default()
    };
    let (mut cpu, mut rss, mut sampled, mut routed) = (0.0, 0u64, 0u32, 0u64);
    shared.store.for_each_in(pool, |o| {
        let count = o.served.load(Ordering::Relaxed);
        routed = routed
            .saturating_add(count.saturating_sub(served.get(&o.info.id).copied().unwrap_or(0)));
        seen.insert(o.info.id.clone(), count);
        s.in_flight = s
            .in_flight
            .saturating_add(o.in_flight.load(Ordering::Relaxed));
        if matches!(o.phase(), Phase::Ready | Phase::Starting) {
            used[0] += seconds;
            if let Some(u) = o.usage {
                used[1] += u.cpu * capacity * seconds;
                used[2] += u.rss as f64 * seconds;
            }
        }
        match o.phase() {
            Phase::Ready => {
                s.ready += 1;
                if let Some(u) = o.usage {
                    cpu += u.cpu;
                    rss = rss.saturating_add(u.rss);
                    sampled += 1;
                }
            }
            Phase::Starting => s.starting += 1,
            Phase::Draining | Phase::Failed => {}
        }
    });
    if sampled > 0 {
        s.cpu = cpu / f64::from(sampled);
        s.rss = rss / u64::from(sampled);
    }
    if seconds > 0.0 {
        s.rps = routed as f64 / seconds;
    }
    (s, used)
}
