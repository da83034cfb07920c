//! What the operator says about each pool: conditions in the Kubernetes manner, the last
//! scale event, and a short history of events. Kept in memory for the admin API and the
//! command line; the controller writes it, everyone else reads snapshots.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::scaler::Reason;

/// How many events each pool keeps.
pub const EVENTS_KEPT: usize = 20;

/// A condition such as `Ready` or `Degraded`, as Kubernetes reports them.
///
/// Read back from a pool report with `Deserialize` (the command line does): every
/// operator has sent every field, so none is optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True` or `False`.
    pub status: String,
    /// A CamelCase reason such as `CrashLoopBackOff`.
    pub reason: String,
    /// A sentence for people.
    pub message: String,
}

/// One thing that happened to a pool.
///
/// Read back with `Deserialize`: every operator has sent every field, so none is
/// optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A sentence for people.
    pub message: String,
}

/// The last change of a pool's size.
///
/// Read back with `Deserialize`: every operator has sent every field, so none is
/// optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleEvent {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// `up` or `down`.
    pub direction: String,
    /// Which signal moved it.
    pub reason: Reason,
    /// Replicas before.
    pub from: usize,
    /// Replicas after.
    pub to: usize,
}

/// Everything the operator reports about one pool.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// The replica count the scaler wants.
    pub desired_replicas: usize,
    /// Why (the last decision's reason).
    pub desired_reason: Option<Reason>,
    /// The spec hash the pool converges to.
    pub spec_hash: Option<String>,
    /// The last reconcile error, if the last pass failed.
    pub last_error: Option<String>,
    /// The manifest problem that keeps the last valid spec running, if any.
    pub manifest_error: Option<String>,
    /// Reconciles run for this pool since the operator started.
    pub reconciles: u64,
    /// The pool is quiet (converged, every container idle and serving nothing) and its
    /// reconciles stopped polling: they wait for a trigger (a load-state change, a
    /// request, a Docker event, a manifest change), a deadline or the 30 s resync.
    pub quiet: bool,
    /// Consecutive failed reconciles.
    pub consecutive_errors: u32,
    /// Containers that failed since the pool last ran cleanly.
    pub recent_failures: u32,
    /// Conditions (`Ready`, `Progressing`, `Degraded`).
    pub conditions: Vec<Condition>,
    /// The last scale event.
    pub last_scale: Option<ScaleEvent>,
    /// The most recent events, oldest first.
    pub events: VecDeque<Event>,
    /// What the signals beyond CPU and memory read at the last pass.
    pub signals: SignalStatus,
    /// What the pool has used since it appeared (since the operator started).
    pub cost: Cost,
}

/// What a pool's request-rate and custom-metric signals read at its last pass, with the
/// forecast beside the rate it forecast, so a forecast that was wrong is visible.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalStatus {
    /// Requests per second the gateway counted lately (pools with
    /// `targetRequestsPerSecond`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<f64>,
    /// The rate forecast for `predictive.horizon` ahead, and the model that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<crate::forecast::Forecast>,
    /// The forecast made about one horizon ago for now: compare it with
    /// `requestRate` to see how good the forecasts are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast_for_now: Option<f64>,
    /// Each custom metric, in the spec's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_metrics: Vec<MetricStatus>,
}

/// One custom metric as the last pass read it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// The metric's name.
    pub name: String,
    /// Its sum over the ready containers whose scrape had it.
    pub sum: f64,
    /// Ready containers whose scrape failed or lacked it (these hold scale-down back).
    pub missing: usize,
}

/// What a pool has used since it appeared, summed every
/// [`crate::history::SAMPLE_EVERY`] from its containers (starting or ready) and their
/// latest usage samples. Counted from zero when the operator starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// Container-seconds: how long containers ran, summed.
    pub container_seconds: f64,
    /// CPU-seconds (core-seconds) the containers used.
    pub cpu_seconds: f64,
    /// Memory byte-seconds: resident memory times time.
    pub memory_byte_seconds: f64,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PoolStatus {
    /// Records an event, keeping the last [`EVENTS_KEPT`].
    pub fn event(
        &mut self,
        kind: &'static str,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            time: unix_now(),
            kind: kind.into(),
            reason: reason.into(),
            message: message.into(),
        });
    }

    /// Replaces the conditions.
    pub fn set_conditions(
        &mut self,
        ready: (bool, &str, String),
        progressing: (bool, &str, String),
        degraded: (bool, &str, String),
    ) {
        let cond = |kind: &str, (ok, reason, message): (bool, &str, String)| Condition {
            kind: kind.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.to_string(),
            message,
        };
        self.conditions = vec![
            cond("Ready", ready),
            cond("Progressing", progressing),
            cond("Degraded", degraded),
        ];
    }

    /// Sets `Degraded` to true with `reason` and `message` at once (a failed reconcile
    /// does not wait for the next successful pass to show), keeping the other conditions.
    pub fn set_degraded(&mut self, reason: &str, message: String) {
        let degraded = Condition {
            kind: "Degraded".into(),
            status: "True".into(),
            reason: reason.to_string(),
            message,
        };
        match self.conditions.iter_mut().find(|c| c.kind == "Degraded") {
            Some(c) => *c = degraded,
            None => self.conditions.push(degraded),
        }
    }

    /// The condition of this type, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}
