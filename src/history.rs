//! The dashboard's memory (`GET /` and `GET /api/v1/history` on the admin API): each
//! pool's size and load, sampled every [`SAMPLE_EVERY`] over the last [`WINDOW`] (by the
//! controller's history task), in a ring of bounded length per pool. In memory only: an operator restart starts it
//! empty, and a pool that is gone takes its history with it.
//!
//! The scaling events with their reasons are the pools' own (`events` in
//! `/api/v1/pools`); this module keeps what changes every tick.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

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
