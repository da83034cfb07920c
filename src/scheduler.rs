//! The scheduler: deduplicates triggers per pool and runs reconciles, one at a time per
//! pool and a bounded number in parallel.
//!
//! As kube-runtime's `scheduler` + `runner`: a trigger for a pool that is already queued
//! is dropped; a trigger for a pool that is running is remembered and runs once after it
//! ends; a requeue is a timer, and when a pool has several timers the earliest wins.
//!
//! Written by hand: kube-runtime's scheduler and runner are tied to kube's object
//! references and streams, and tokio-util's `DelayQueue` would need a key-to-handle map
//! to keep "earliest wins" per pool; ordered maps do both in a few lines and give a
//! start order that depends on nothing but the input (so simulation seeds replay).
#![deny(clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What a reconcile asks for when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Action {
    /// Look again after this long, unless a trigger comes first.
    pub requeue_after: Option<Duration>,
}

impl Action {
    /// Look again after `d`.
    pub fn requeue(d: Duration) -> Action {
        Action {
            requeue_after: Some(d),
        }
    }

    /// The same, but looking again after `d` at the latest.
    pub fn sooner(self, d: Duration) -> Action {
        Action {
            requeue_after: Some(self.requeue_after.map_or(d, |a| a.min(d))),
        }
    }

    /// Wait for the next trigger.
    pub fn await_change() -> Action {
        Action {
            requeue_after: None,
        }
    }
}

enum Msg {
    Now(String),
    At(String, Instant),
}

/// A cheap, cloneable handle to trigger reconciles.
#[derive(Clone)]
pub struct Trigger {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Trigger {
    /// Asks for a reconcile of `pool` as soon as possible.
    pub fn now(&self, pool: &str) {
        let _ = self.tx.send(Msg::Now(pool.to_string()));
    }

    /// Asks for a reconcile of `pool` at `at` (earliest request wins).
    pub fn at(&self, pool: &str, at: Instant) {
        let _ = self.tx.send(Msg::At(pool.to_string(), at));
    }
}

/// Creates a trigger handle and the receiving end that [`run`] consumes.
pub fn channel() -> (Trigger, Receiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Trigger { tx },
        Receiver {
            rx,
            on_depth: Box::new(|_| {}),
        },
    )
}

/// The receiving end of a [`Trigger`].
pub struct Receiver {
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Told the number of pools waiting for a reconcile slot whenever it changes (the
    /// queue-depth metric), so the scheduler itself knows nothing of metrics.
    on_depth: Box<dyn Fn(usize) + Send>,
}

impl Receiver {
    /// Calls `f` with the queue depth (pools waiting for a free reconcile slot) each
    /// time it changes.
    pub fn on_queue_depth(mut self, f: impl Fn(usize) + Send + 'static) -> Receiver {
        self.on_depth = Box::new(f);
        self
    }
}

/// How much the scheduler runs at once, and how long it waits at shutdown.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Reconciles running at once (different pools); at least one.
    pub concurrency: usize,
    /// After shutdown, how long running reconciles may take to finish before they are
    /// cancelled.
    pub shutdown_grace: Duration,
}

impl From<usize> for Limits {
    /// `concurrency` reconciles at once, 3 s of shutdown grace.
    fn from(concurrency: usize) -> Limits {
        Limits {
            concurrency,
            shutdown_grace: Duration::from_secs(3),
        }
    }
}

/// `now + d`, or a far future (about 30 years) when that would overflow: a valid
/// manifest may say `pollInterval: 18446744073709551615s`, and the scheduler must not
/// panic over it.
fn deadline_after(d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

/// A reconcile that panicked or was cancelled is retried after this long (the reconcile
/// itself turns panics into errors with their own backoff; this is the last line).
const LOST_TASK_RETRY: Duration = Duration::from_secs(1);

/// The scheduler's bookkeeping. Ordered maps and sets: the order pools start in depends
/// on nothing but the input, so a simulation seed replays exactly.
#[derive(Default)]
struct State {
    /// Pools waiting for a reconcile slot, in trigger order.
    queue: VecDeque<String>,
    /// The same pools, to drop a trigger for a pool already queued.
    queued: BTreeSet<String>,
    /// Pools whose reconcile runs.
    running: BTreeSet<String>,
    /// Running pools triggered again: they run once more when they end.
    again: BTreeSet<String>,
    /// Requeue timers; a pool with several keeps the earliest.
    timers: BTreeMap<String, Instant>,
    /// Which pool each task reconciles (a task that fails reports only its id).
    task_pool: HashMap<tokio::task::Id, String>,
    /// The queue depth last reported.
    depth_told: usize,
}

impl State {
    fn enqueue(&mut self, pool: String) {
        if self.queued.insert(pool.clone()) {
            self.queue.push_back(pool);
        }
    }

    fn arm(&mut self, pool: String, at: Instant) {
        let t = self.timers.entry(pool).or_insert(at);
        *t = (*t).min(at);
    }

    /// A pool is due (triggered, or its timer fired): queue it, or run it again after
    /// the run under way.
    fn due(&mut self, pool: String) {
        if self.running.contains(&pool) {
            self.again.insert(pool);
        } else {
            self.enqueue(pool);
        }
    }

    /// Starts queued pools while there are free slots.
    fn start<F, Fut>(&mut self, limit: usize, reconcile: &F, tasks: &mut JoinSet<(String, Action)>)
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Action> + Send + 'static,
    {
        while self.running.len() < limit.max(1) {
            let Some(pool) = self.queue.pop_front() else {
                break;
            };
            self.queued.remove(&pool);
            if self.running.contains(&pool) {
                self.again.insert(pool);
                continue;
            }
            self.timers.remove(&pool);
            self.running.insert(pool.clone());
            let fut = reconcile(pool.clone());
            let name = pool.clone();
            let handle = tasks.spawn(async move { (name, fut.await) });
            self.task_pool.insert(handle.id(), pool);
        }
    }

    /// A reconcile task ended (or failed: a panic that escaped, a cancellation).
    fn finished(
        &mut self,
        done: Result<(tokio::task::Id, (String, Action)), tokio::task::JoinError>,
    ) {
        let (pool, action) = match done {
            Ok((id, (pool, action))) => {
                self.task_pool.remove(&id);
                (pool, action)
            }
            Err(e) => {
                let Some(pool) = self.task_pool.remove(&e.id()) else {
                    return;
                };
                tracing::error!(
                    pool,
                    "reconcile task failed: {e}; retrying in {LOST_TASK_RETRY:?}"
                );
                (pool, Action::requeue(LOST_TASK_RETRY))
            }
        };
        self.running.remove(&pool);
        if self.again.remove(&pool) {
            self.enqueue(pool.clone());
        }
        if let Some(after) = action.requeue_after {
            self.arm(pool, deadline_after(after));
        }
    }

    fn triggered(&mut self, msg: Msg) {
        match msg {
            Msg::Now(pool) => self.due(pool),
            Msg::At(pool, at) => self.arm(pool, at),
        }
    }

    /// Timers that fired by `now`.
    fn fire_timers(&mut self, now: Instant) {
        let fired: Vec<String> = self
            .timers
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for pool in fired {
            self.timers.remove(&pool);
            self.due(pool);
        }
    }

    /// The queue depth, when it changed since it was last told.
    fn depth_change(&mut self) -> Option<usize> {
        let changed = self.queue.len() != self.depth_told;
        self.depth_told = self.queue.len();
        changed.then_some(self.depth_told)
    }
}

/// Runs reconciles until `shutdown` resolves, then gives the running ones
/// `limits.shutdown_grace` to end (so in-flight Docker calls finish), cancels the rest
/// and returns.
///
/// A reconcile task that fails (a panic that escaped, a cancellation) never leaves its
/// pool marked running: the pool is freed and retried after `LOST_TASK_RETRY` (1 s).
pub async fn run<F, Fut>(
    mut rx: Receiver,
    limits: impl Into<Limits>,
    reconcile: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Action> + Send + 'static,
{
    let limits = limits.into();
    let mut state = State::default();
    let mut tasks: JoinSet<(String, Action)> = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        state.start(limits.concurrency, &reconcile, &mut tasks);
        if let Some(depth) = state.depth_change() {
            (rx.on_depth)(depth);
        }
        let next_timer = state.timers.values().min().copied();
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => state.finished(done),
            msg = rx.rx.recv() => {
                let Some(msg) = msg else { break };
                state.triggered(msg);
                // Take every trigger already waiting, so a burst collapses into one run.
                while let Ok(m) = rx.rx.try_recv() {
                    state.triggered(m);
                }
            }
            _ = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                state.fire_timers(Instant::now());
            }
        }
    }
    drain(tasks, limits.shutdown_grace).await;
}

/// Gives running reconciles `grace` to end, then cancels the rest.
async fn drain(mut tasks: JoinSet<(String, Action)>, grace: Duration) {
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "{} reconcile(s) still running {grace:?} after shutdown began; cancelling them",
            tasks.len()
        );
        tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Mutex;

    type Log = Arc<Mutex<Vec<(String, &'static str, Instant)>>>;

    /// A reconcile that records start and end and takes `work` of (paused) time.
    fn recorder(
        log: Log,
        work: Duration,
        action: Action,
    ) -> impl Fn(String) -> std::pin::Pin<Box<dyn Future<Output = Action> + Send>> {
        move |pool| {
            let log = log.clone();
            Box::pin(async move {
                log.lock()
                    .unwrap()
                    .push((pool.clone(), "start", Instant::now()));
                tokio::time::sleep(work).await;
                log.lock().unwrap().push((pool, "end", Instant::now()));
                action
            })
        }
    }

    fn starts(log: &Log, pool: &str) -> usize {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(p, e, _)| p == pool && *e == "start")
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn duplicate_triggers_for_a_queued_pool_run_once() {
        let log: Log = Default::default();
        let (trigger, rx) = channel();
        for _ in 0..10 {
            trigger.now("web");
        }
        let stop = tokio::time::sleep(Duration::from_secs(5));
        run(
            rx,
            4,
            recorder(
                log.clone(),
                Duration::from_millis(10),
                Action::await_change(),
            ),
            stop,
        )
        .await;
        assert_eq!(starts(&log, "web"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trigger_during_a_reconcile_runs_once_afterwards_never_concurrently() {
        let log: Log = Default::default();
        let (trigger, rx) = channel();
        trigger.now("web");
        let t = trigger.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for _ in 0..5 {
                t.now("web");
            }
        });
        let stop = tokio::time::sleep(Duration::from_secs(5));
        run(
            rx,
            4,
            recorder(
                log.clone(),
                Duration::from_millis(100),
                Action::await_change(),
            ),
            stop,
        )
        .await;
        let events = log.lock().unwrap().clone();
        assert_eq!(starts(&log, "web"), 2);
        // start, end, start, end: never two starts in a row.
        let kinds: Vec<_> = events.iter().map(|(_, e, _)| *e).collect();
        assert_eq!(kinds, ["start", "end", "start", "end"]);
    }

    #[tokio::test(start_paused = true)]
    async fn pools_run_in_parallel_up_to_the_bound() {
        let log: Log = Default::default();
        let (trigger, rx) = channel();
        for p in ["a", "b", "c", "d", "e"] {
            trigger.now(p);
        }
        let t0 = Instant::now();
        let stop = tokio::time::sleep(Duration::from_secs(5));
        run(
            rx,
            2,
            recorder(log.clone(), Duration::from_secs(1), Action::await_change()),
            stop,
        )
        .await;
        let events = log.lock().unwrap().clone();
        let ends: Vec<Duration> = events
            .iter()
            .filter(|e| e.1 == "end")
            .map(|e| e.2 - t0)
            .collect();
        assert_eq!(ends.len(), 5);
        // Two at a time: ends at 1 s, 1 s, 2 s, 2 s, 3 s.
        assert_eq!(
            ends.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            [1, 1, 2, 2, 3]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_depth_is_reported_as_pools_wait_for_a_slot_and_leave_it() {
        let log: Log = Default::default();
        let depths = Arc::new(Mutex::new(Vec::new()));
        let (trigger, rx) = channel();
        let seen = depths.clone();
        let rx = rx.on_queue_depth(move |n| seen.lock().unwrap().push(n));
        for p in ["a", "b", "c"] {
            trigger.now(p);
        }
        let stop = tokio::time::sleep(Duration::from_secs(5));
        run(
            rx,
            1,
            recorder(log.clone(), Duration::from_secs(1), Action::await_change()),
            stop,
        )
        .await;
        // One slot: two pools wait, then one, then none.
        assert_eq!(*depths.lock().unwrap(), [2, 1, 0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_runs_the_pool_again_after_the_delay() {
        let log: Log = Default::default();
        let (trigger, rx) = channel();
        trigger.now("web");
        let t0 = Instant::now();
        let stop = tokio::time::sleep(Duration::from_millis(3500));
        run(
            rx,
            1,
            recorder(
                log.clone(),
                Duration::ZERO,
                Action::requeue(Duration::from_secs(1)),
            ),
            stop,
        )
        .await;
        let events = log.lock().unwrap().clone();
        let at: Vec<u64> = events
            .iter()
            .filter(|e| e.1 == "start")
            .map(|e| (e.2 - t0).as_secs())
            .collect();
        assert_eq!(at, [0, 1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_of_several_timers_wins() {
        let log: Log = Default::default();
        let (trigger, rx) = channel();
        let t0 = Instant::now();
        trigger.at("web", t0 + Duration::from_secs(10));
        trigger.at("web", t0 + Duration::from_secs(2));
        let stop = tokio::time::sleep(Duration::from_secs(5));
        run(
            rx,
            1,
            recorder(log.clone(), Duration::ZERO, Action::await_change()),
            stop,
        )
        .await;
        let events = log.lock().unwrap().clone();
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].2 - t0).as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_running_reconciles() {
        let log: Log = Default::default();
        let (trigger, rx) = channel();
        trigger.now("web");
        let stop = tokio::time::sleep(Duration::from_millis(10));
        run(
            rx,
            1,
            recorder(log.clone(), Duration::from_secs(3), Action::await_change()),
            stop,
        )
        .await;
        let kinds: Vec<_> = log.lock().unwrap().iter().map(|e| e.1).collect();
        assert_eq!(kinds, ["start", "end"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_that_panics_frees_its_pool_and_runs_again() {
        let runs = Arc::new(Mutex::new(Vec::new()));
        let (trigger, rx) = channel();
        trigger.now("web");
        let t0 = Instant::now();
        let seen = runs.clone();
        let stop = tokio::time::sleep(Duration::from_millis(3500));
        run(
            rx,
            1,
            move |pool: String| {
                let seen = seen.clone();
                async move {
                    let n = {
                        let mut v = seen.lock().unwrap();
                        v.push(Instant::now());
                        v.len()
                    };
                    if n == 1 {
                        panic!("first reconcile of {pool} panics");
                    }
                    Action::await_change()
                }
            },
            stop,
        )
        .await;
        let at: Vec<Duration> = runs.lock().unwrap().iter().map(|t| *t - t0).collect();
        // Retried after LOST_TASK_RETRY, then it waits for a change: two runs in all.
        assert_eq!(at.len(), 2, "{at:?}");
        assert_eq!(at[1], LOST_TASK_RETRY);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_cancels_reconciles_that_outlive_the_grace() {
        let log: Log = Default::default();
        let (trigger, rx) = channel();
        trigger.now("web");
        let t0 = Instant::now();
        let stop = tokio::time::sleep(Duration::from_millis(10));
        run(
            rx,
            Limits {
                concurrency: 1,
                shutdown_grace: Duration::from_secs(2),
            },
            recorder(log.clone(), Duration::from_secs(60), Action::await_change()),
            stop,
        )
        .await;
        let elapsed = Instant::now() - t0;
        assert_eq!(
            elapsed,
            Duration::from_millis(2010),
            "shutdown took {elapsed:?}"
        );
        let kinds: Vec<_> = log.lock().unwrap().iter().map(|e| e.1).collect();
        assert_eq!(
            kinds,
            ["start"],
            "the reconcile was cancelled, not finished"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_after_an_enormous_delay_does_not_panic_the_scheduler() {
        let log: Log = Default::default();
        let (trigger, rx) = channel();
        trigger.now("web");
        let stop = tokio::time::sleep(Duration::from_secs(5));
        run(
            rx,
            1,
            recorder(log.clone(), Duration::ZERO, Action::requeue(Duration::MAX)),
            stop,
        )
        .await;
        assert_eq!(starts(&log, "web"), 1);
    }
}
