//! Read-only reports of the controller's state: the seed's status JSON, the detailed
//! pool reports of the admin API, and the snapshot the metrics' state families are
//! rebuilt from. One place builds them, so `/status`, `/metrics`, the command line and
//! the programmatic API always agree.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::context::Shared;
use super::status::{Condition, Cost, Event, ScaleEvent, SignalStatus};
use crate::api::EffectiveSpec;
use crate::metrics::{Format, PoolSample, Snapshot};
use crate::scaler::{LoadState, Phase, Reason};

/// One pool in the seed's status shape, plus a few fields of ours.
///
/// Read back with `Deserialize` (the command line does). Optional, because an operator
/// may not send it: `manifest_error`, sent only while a manifest is broken (and not at
/// all by operators from before it existed). Every other field every operator sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolSummary {
    /// The pool's name.
    pub function_name: String,
    /// Containers that exist (any phase but draining).
    pub container_count: usize,
    /// Ready containers between the thresholds.
    pub healthy_containers: usize,
    /// Ready containers over a threshold.
    pub overloaded_containers: usize,
    /// Ready containers under the cooldown threshold.
    pub idle_containers: usize,
    /// Containers that passed their readiness probe.
    pub ready_containers: usize,
    /// Containers not ready yet.
    pub starting_containers: usize,
    /// The replica count the scaler wants.
    pub desired_containers: usize,
    /// Why the pool's manifest is invalid (its last valid spec keeps running), when it
    /// is: a broken edit shows here, in `invok get` and in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_error: Option<String>,
}

/// The seed's `get_status()` / `GET /status` document.
///
/// Read back with `Deserialize`: both fields are the seed's, so neither is optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuntimeStatus {
    /// Pools by name.
    pub pools: BTreeMap<String, PoolSummary>,
    /// Always `autoscaling`.
    pub runtime: String,
}

/// One container in a pool report.
///
/// Read back with `Deserialize`. The `Option` fields (`status`, `cpu`, `rss`,
/// `host_port`) read as `None` when absent; every other field every operator sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerReport {
    /// Container name.
    pub name: String,
    /// Container id.
    pub id: String,
    /// Docker's state.
    pub state: crate::runtime::RunState,
    /// Invok's phase.
    pub phase: Phase,
    /// Passed its readiness probe.
    pub ready: bool,
    /// The seed's status (ready containers with a sample).
    pub status: Option<LoadState>,
    /// CPU as a fraction of its limit.
    pub cpu: Option<f64>,
    /// RSS in bytes.
    pub rss: Option<u64>,
    /// Requests in flight through the gateway.
    pub in_flight: usize,
    /// Seconds since the operator first saw it.
    pub age_seconds: u64,
    /// The loopback port its function is published on.
    pub host_port: Option<u16>,
    /// The spec hash it was created from.
    pub spec_hash: String,
}

/// Everything about one pool, for `GET /api/v1/pools/{name}` and `invok describe`.
///
/// Read back with `Deserialize`, which is how `invok get` and `invok describe` read the
/// admin API. The `Option` fields read as `None` when absent, so an operator that
/// leaves one out is still read; every other field every operator has sent since the
/// first. A field added later must be an `Option` or carry `#[serde(default)]` (as
/// [`PoolSummary::manifest_error`] does), so a newer command line reads an older
/// operator. Unknown fields are ignored, so a newer operator's additions do not break
/// an older command line; a word an enum does not know (a newer operator's new
/// [`Reason`], say) is an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolReport {
    /// The pool's name.
    pub name: String,
    /// Where its manifest is.
    pub source: Option<String>,
    /// The effective spec in force.
    pub spec: Option<EffectiveSpec>,
    /// The seed's counts.
    pub summary: PoolSummary,
    /// Why the desired count is what it is.
    pub desired_reason: Option<Reason>,
    /// The current manifest problem, if any.
    pub manifest_error: Option<String>,
    /// The last reconcile error, if the last pass failed.
    pub last_error: Option<String>,
    /// Containers, oldest first.
    pub containers: Vec<ContainerReport>,
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// The spec hash observed on the containers (distinct values).
    pub observed_spec_hashes: Vec<String>,
    /// The last scale event.
    pub last_scale: Option<ScaleEvent>,
    /// Reconciles run since the operator started.
    pub reconciles: u64,
    /// The pool is quiet and its reconciles stopped polling (see
    /// [`super::status::PoolStatus::quiet`]); `false` from an operator that predates it.
    #[serde(default)]
    pub quiet: bool,
    /// Recent events, oldest first.
    pub events: Vec<Event>,
    /// What the request-rate and custom-metric signals read at the last pass (empty
    /// from an operator that predates them).
    #[serde(default)]
    pub signals: SignalStatus,
    /// What the pool has used since it appeared (zero from an operator that predates
    /// it).
    #[serde(default)]
    pub cost: Cost,
}

impl<R> Shared<R> {
    /// The seed's status document for every pool.
    pub fn runtime_status(&self) -> RuntimeStatus {
        let pools = self
            .pool_names()
            .into_iter()
            .map(|name| {
                let s = self.summary(&name);
                (name, s)
            })
            .collect();
        RuntimeStatus {
            pools,
            runtime: "autoscaling".into(),
        }
    }

    fn summary(&self, pool: &str) -> PoolSummary {
        let containers = self.store.pool(pool);
        let mut s = PoolSummary {
            function_name: pool.to_string(),
            container_count: 0,
            healthy_containers: 0,
            overloaded_containers: 0,
            idle_containers: 0,
            ready_containers: 0,
            starting_containers: 0,
            desired_containers: self
                .pool_status(pool)
                .map(|p| p.desired_replicas)
                .unwrap_or(0),
            manifest_error: self.desired().invalid.get(pool).cloned(),
        };
        for o in &containers {
            match o.phase() {
                Phase::Draining => continue,
                Phase::Ready => s.ready_containers += 1,
                Phase::Starting => s.starting_containers += 1,
                Phase::Failed => {}
            }
            s.container_count += 1;
            if o.phase() == Phase::Ready {
                match o.load {
                    Some(LoadState::Healthy) | None => s.healthy_containers += 1,
                    Some(LoadState::Overloaded) => s.overloaded_containers += 1,
                    Some(LoadState::Idle) => s.idle_containers += 1,
                }
            }
        }
        s
    }

    /// The detailed report of one pool, if the controller knows it.
    pub fn pool_report(&self, pool: &str) -> Option<PoolReport> {
        if !self.pool_names().contains(pool) {
            return None;
        }
        let (desired, manifest_error) = {
            let d = self.desired();
            (d.pools.get(pool).cloned(), d.invalid.get(pool).cloned())
        };
        let status = self.pool_status(pool).unwrap_or_default();
        let containers: Vec<ContainerReport> = self
            .store
            .pool(pool)
            .iter()
            .map(|o| ContainerReport {
                name: o.info.name.clone(),
                id: o.info.id.clone(),
                state: o.info.state,
                phase: o.phase(),
                ready: o.phase() == Phase::Ready,
                status: if o.phase() == Phase::Ready {
                    o.load
                } else {
                    None
                },
                cpu: o.usage.map(|u| u.cpu),
                rss: o.usage.map(|u| u.rss),
                in_flight: o.in_flight.load(Ordering::Relaxed),
                age_seconds: o.first_seen.elapsed().as_secs(),
                host_port: o.info.host_port,
                spec_hash: o.info.spec_hash.clone(),
            })
            .collect();
        let mut hashes: Vec<String> = containers.iter().map(|c| c.spec_hash.clone()).collect();
        hashes.sort();
        hashes.dedup();
        Some(PoolReport {
            name: pool.to_string(),
            source: desired.as_ref().map(|d| d.source.to_string()),
            spec: desired.map(|d| (*d.spec).clone()),
            summary: self.summary(pool),
            desired_reason: status.desired_reason,
            manifest_error,
            last_error: status.last_error.clone(),
            containers,
            conditions: status.conditions.clone(),
            observed_spec_hashes: hashes,
            last_scale: status.last_scale.clone(),
            reconciles: status.reconciles,
            quiet: status.quiet,
            events: status.events.iter().cloned().collect(),
            signals: status.signals.clone(),
            cost: status.cost,
        })
    }

    /// What the metrics' state families are rebuilt from (no Docker call, no await).
    pub fn metrics_snapshot(&self) -> Snapshot {
        let bounds: BTreeMap<String, (usize, usize)> = self
            .desired()
            .pools
            .iter()
            .map(|(k, p)| (k.clone(), (p.spec.scaling.min, p.spec.scaling.max)))
            .collect();
        let manifest_errors = self.desired().errors.len();
        let pools = self
            .pool_names()
            .into_iter()
            .map(|name| {
                let mut p = PoolSample {
                    desired: self.pool_status(&name).map_or(0, |s| s.desired_replicas),
                    bounds: bounds.get(&name).copied(),
                    ..Default::default()
                };
                for o in self.store.pool(&name) {
                    p.count_state(match (o.phase(), o.load) {
                        (Phase::Starting, _) => "starting",
                        (Phase::Ready, Some(LoadState::Healthy) | None) => "healthy",
                        (Phase::Ready, Some(LoadState::Overloaded)) => "overloaded",
                        (Phase::Ready, Some(LoadState::Idle)) => "idle",
                        (Phase::Failed, _) => "failed",
                        (Phase::Draining, _) => "draining",
                    });
                    if o.phase() == Phase::Draining {
                        continue;
                    }
                    p.current += 1;
                    if o.phase() == Phase::Ready {
                        p.ready += 1;
                    }
                    if let Some(u) = o.usage {
                        p.usage.push((o.info.name.clone(), u.cpu, u.rss));
                    }
                }
                p.name = name;
                p
            })
            .collect();
        Snapshot {
            pools,
            docker_reachable: self.health.docker_status().0,
            manifest_errors,
        }
    }

    /// The `/metrics` body.
    pub fn scrape_metrics(&self, format: Format) -> String {
        self.metrics.encode(&self.metrics_snapshot(), format)
    }
}

#[cfg(test)]
mod tests;
