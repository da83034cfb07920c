//! The dashboard's memory (`GET /` and `GET /api/v1/history` on the admin API): each
//! pool's size and load, sampled every [`SAMPLE_EVERY`] over the last [`WINDOW`], in a
//! ring of bounded length per pool. In memory only: an operator restart starts it
//! empty, and a pool that is gone takes its history with it.
//!
//! The scaling events with their reasons are the pools' own (`events` in
//! `/api/v1/pools`); this module keeps what changes every tick.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::controller::Shared;
use crate::scaler::Phase;

/// How far back the dashboard looks.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// How often a pool is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept per pool: [`WINDOW`] / [`SAMPLE_EVERY`].
pub const CAPACITY: usize = (WINDOW.as_secs() / SAMPLE_EVERY.as_secs()) as usize;

/// One look at a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// When, in milliseconds since the Unix epoch.
    pub t: u64,
    /// The replica count the scaler wants.
    pub desired: usize,
    /// Ready containers.
    pub ready: usize,
    /// Starting containers.
    pub starting: usize,
    /// Mean CPU of the ready containers with a sample, as a fraction of their limit.
    pub cpu: f64,
    /// Mean RSS of the ready containers with a sample, in bytes.
    pub rss: u64,
    /// Requests in flight through the gateway.
    pub in_flight: usize,
    /// Requests routed per second since the last sample.
    pub rps: f64,
}

/// Bounded per-pool rings of [`Sample`]s.
#[derive(Debug, Default)]
pub struct History {
    pools: BTreeMap<String, VecDeque<Sample>>,
}

impl History {
    /// Adds a sample of `pool`, dropping its oldest when it holds [`CAPACITY`].
    pub fn push(&mut self, pool: &str, sample: Sample) {
        let ring = self.pools.entry(pool.to_string()).or_default();
        while ring.len() >= CAPACITY {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// Forgets the pools `keep` does not name.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.pools.retain(|name, _| keep(name));
    }

    /// Every pool's samples, oldest first.
    pub fn pools(&self) -> &BTreeMap<String, VecDeque<Sample>> {
        &self.pools
    }
}

/// The shared [`History`] the admin API reads.
pub type SharedHistory = Arc<Mutex<History>>;

/// Samples every pool of `shared` into `history` every [`SAMPLE_EVERY`] until
/// cancelled (the controller aborts it on shutdown).
pub async fn run<R: Send + Sync + 'static>(shared: Arc<Shared<R>>, history: SharedHistory) {
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
        let mut seen: HashMap<String, u64> = HashMap::new();
        let samples: Vec<(String, Sample)> = names
            .iter()
            .map(|pool| {
                let s = sample(&shared, pool, t, seconds, &served, &mut seen);
                (pool.clone(), s)
            })
            .collect();
        served = seen;
        let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
        for (pool, s) in samples {
            h.push(&pool, s);
        }
        h.retain(|name| names.iter().any(|n| n == name));
    }
}

/// Milliseconds since the Unix epoch, now (what the page's clock reads).
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One pool's sample; `served` holds each container's count of routed requests at the
/// last sample, `seen` gets them now (a container new since then counts from zero).
fn sample<R>(
    shared: &Shared<R>,
    pool: &str,
    t: u64,
    seconds: f64,
    served: &HashMap<String, u64>,
    seen: &mut HashMap<String, u64>,
) -> Sample {
    let mut s = Sample {
        t,
        desired: shared.pool_status(pool).map_or(0, |p| p.desired_replicas),
        ..Sample::default()
    };
    let (mut cpu, mut rss, mut sampled, mut routed) = (0.0, 0u64, 0u32, 0u64);
    for o in shared.store.pool(pool) {
        let count = o.served.load(std::sync::atomic::Ordering::Relaxed);
        routed = routed
            .saturating_add(count.saturating_sub(served.get(&o.info.id).copied().unwrap_or(0)));
        seen.insert(o.info.id.clone(), count);
        s.in_flight = s
            .in_flight
            .saturating_add(o.in_flight.load(std::sync::atomic::Ordering::Relaxed));
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
    }
    if sampled > 0 {
        s.cpu = cpu / f64::from(sampled);
        s.rss = rss / u64::from(sampled);
    }
    if seconds > 0.0 {
        s.rps = routed as f64 / seconds;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pool_keeps_at_most_its_window_and_the_newest_samples() {
        let mut h = History::default();
        for t in 0..(CAPACITY as u64 * 2 + 7) {
            h.push(
                "web",
                Sample {
                    t,
                    ..Sample::default()
                },
            );
        }
        h.push(
            "api",
            Sample {
                t: 1,
                ..Sample::default()
            },
        );
        let web = &h.pools()["web"];
        assert_eq!(web.len(), CAPACITY);
        assert_eq!(web.back().unwrap().t, CAPACITY as u64 * 2 + 6);
        assert_eq!(web.front().unwrap().t, CAPACITY as u64 + 7);
        assert_eq!(h.pools()["api"].len(), 1);
        assert_eq!(CAPACITY, 450);
        h.retain(|name| name == "api");
        assert_eq!(h.pools().keys().collect::<Vec<_>>(), ["api"]);
    }
}
