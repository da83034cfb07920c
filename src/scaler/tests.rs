use super::*;
use crate::api::{
    CustomMetric, FunctionPool, FunctionPoolSpec, ObjectMeta, Predictive, Scaling, ScalingDefaults,
};
use proptest::prelude::*;

const HASH: &str = "new";

fn spec(min: u32, max: u32) -> EffectiveSpec {
    spec_with(Scaling {
        min_containers: Some(min),
        max_containers: Some(max),
        ..Default::default()
    })
}

fn spec_with(scaling: Scaling) -> EffectiveSpec {
    let mut s = FunctionPool {
        api_version: "invok.dev/v1alpha1".into(),
        kind: "FunctionPool".into(),
        metadata: ObjectMeta {
            name: "web".into(),
            ..Default::default()
        },
        spec: FunctionPoolSpec {
            image: "img".into(),
            scaling: Some(scaling),
            ..Default::default()
        },
    }
    .validate(&ScalingDefaults::default())
    .unwrap();
    s.spec_hash = HASH.into();
    s
}

fn t0() -> Instant {
    // A fixed origin far enough from "now" that subtracting cooldowns never underflows.
    Instant::now() + Duration::from_secs(100_000)
}

fn ready(id: &str, cpu: f64) -> ContainerView {
    ContainerView {
        id: id.into(),
        spec_hash: HASH.into(),
        phase: Phase::Ready,
        created: t0(),
        usage: Some(Usage {
            cpu,
            rss: 10_000_000,
        }),
        idle_since: None,
        in_flight: 0,
        pinned: false,
        metrics: Vec::new(),
    }
}

fn idle(id: &str, since: Instant) -> ContainerView {
    ContainerView {
        idle_since: Some(since),
        ..ready(id, 0.01)
    }
}

fn facts(replicas: usize) -> PoolFacts {
    PoolFacts {
        replicas,
        ..Default::default()
    }
}

#[test]
fn classification_follows_the_seeds_thresholds() {
    let s = spec(1, 10);
    let u = |cpu, rss| Usage { cpu, rss };
    assert_eq!(classify(&s, u(0.71, 0)), LoadState::Overloaded);
    assert_eq!(classify(&s, u(0.70, 0)), LoadState::Healthy);
    assert_eq!(classify(&s, u(0.3, 300_000_001)), LoadState::Overloaded);
    assert_eq!(classify(&s, u(0.09, 0)), LoadState::Idle);
    assert_eq!(classify(&s, u(0.10, 0)), LoadState::Healthy);
    // Memory over the threshold wins over idle CPU.
    assert_eq!(classify(&s, u(0.0, 400_000_000)), LoadState::Overloaded);
}

#[test]
fn below_min_is_raised_and_above_max_is_lowered() {
    let s = spec(2, 4);
    let d = decide(&s, &[], &facts(0), t0());
    assert_eq!((d.replicas, d.reason), (2, Reason::BelowMin));
    let d = decide(&s, &[], &facts(9), t0());
    assert_eq!((d.replicas, d.reason), (4, Reason::AboveMax));
}

#[test]
fn scale_up_needs_every_ready_container_overloaded() {
    let s = spec(1, 10);
    let d = decide(&s, &[ready("a", 0.95), ready("b", 0.5)], &facts(2), t0());
    assert_eq!((d.replicas, d.reason), (2, Reason::Steady));
    let d = decide(&s, &[ready("a", 0.95), ready("b", 0.9)], &facts(2), t0());
    assert_eq!((d.replicas, d.reason), (3, Reason::Cpu)); // ceil(1.85 / 0.7)
}

#[test]
fn scale_up_is_sized_by_the_hpa_formula_and_capped_at_max() {
    let s = spec(1, 10);
    // One container at 4.2 cores' worth of a 0.7 threshold needs 6.
    let d = decide(&s, &[ready("a", 4.2)], &facts(1), t0());
    assert_eq!(d.replicas, 6);
    let d = decide(&s, &[ready("a", 100.0)], &facts(1), t0());
    assert_eq!(d.replicas, 10);
}

#[test]
fn memory_proposal_wins_when_larger() {
    let s = spec(1, 10);
    let mut c = ready("a", 0.2);
    c.usage = Some(Usage {
        cpu: 0.2,
        rss: 1_000_000_000,
    });
    let d = decide(&s, &[c], &facts(1), t0());
    assert_eq!((d.replicas, d.reason), (4, Reason::Memory)); // ceil(1e9 / 3e8)
}

#[test]
fn containers_still_starting_count_as_capacity() {
    let s = spec(1, 10);
    let mut starting = ready("b", 0.0);
    starting.phase = Phase::Starting;
    starting.usage = None;
    // The first decision went to 2; while b starts, a is still hot: no second answer.
    let d = decide(&s, &[ready("a", 0.9), starting], &facts(2), t0());
    assert_eq!(d.replicas, 2);
}

#[test]
fn at_max_with_everything_overloaded_raises_the_alert() {
    let s = spec(1, 2);
    let d = decide(&s, &[ready("a", 0.9), ready("b", 0.9)], &facts(2), t0());
    assert_eq!(d.replicas, 2);
    assert!(d.at_max_overloaded);
}

#[test]
fn missing_metrics_never_cause_a_scale_down_or_up() {
    let s = spec(1, 10);
    let now = t0();
    let mut unsampled = ready("b", 0.0);
    unsampled.usage = None;
    let long_ago = now - Duration::from_secs(600);
    let d = decide(
        &s,
        &[idle("a", long_ago), unsampled.clone()],
        &facts(2),
        now,
    );
    assert_eq!(d.replicas, 2);
    let d = decide(&s, &[ready("a", 0.99), unsampled], &facts(2), now);
    assert_eq!(d.replicas, 2);
}

#[test]
fn idle_containers_go_after_the_cooldown_longest_idle_first() {
    let s = spec(1, 10);
    let now = t0();
    let cs = [
        idle("a", now - Duration::from_secs(40)),
        idle("b", now - Duration::from_secs(100)),
        idle("c", now - Duration::from_secs(10)),
    ];
    let d = decide(&s, &cs, &facts(3), now);
    assert_eq!((d.replicas, d.reason), (1, Reason::Idle));
    assert_eq!(d.victims, ["b", "a"]);
}

#[test]
fn no_scale_down_within_the_cooldown_after_a_scale_up() {
    let s = spec(1, 10);
    let now = t0();
    let cs = [
        idle("a", now - Duration::from_secs(100)),
        idle("b", now - Duration::from_secs(100)),
    ];
    let f = PoolFacts {
        replicas: 2,
        last_scale_up: Some(now - Duration::from_secs(5)),
        ..Default::default()
    };
    assert_eq!(decide(&s, &cs, &f, now).replicas, 2);
    let f = PoolFacts {
        last_scale_up: Some(now - Duration::from_secs(31)),
        ..f
    };
    assert_eq!(decide(&s, &cs, &f, now).replicas, 1);
}

#[test]
fn scale_down_keeps_the_survivors_under_the_cpu_threshold() {
    let s = spec(1, 10);
    let now = t0();
    // Two idle-ish containers and one at 0.65: removing both idle ones would put 0.65+2*0.09 on one.
    let mut a = idle("a", now - Duration::from_secs(100));
    a.usage = Some(Usage { cpu: 0.09, rss: 0 });
    let mut b = idle("b", now - Duration::from_secs(90));
    b.usage = Some(Usage { cpu: 0.09, rss: 0 });
    let d = decide(&s, &[a, b, ready("c", 0.65)], &facts(3), now);
    assert_eq!(d.victims, ["a"]);
    assert_eq!(d.replicas, 2);
}

#[test]
fn a_min_zero_pool_goes_to_zero_only_without_requests() {
    let s = spec(0, 3);
    let now = t0();
    let d = decide(
        &s,
        &[idle("a", now - Duration::from_secs(100))],
        &facts(1),
        now,
    );
    assert_eq!(d.replicas, 0);
    let mut busy = idle("a", now - Duration::from_secs(100));
    busy.in_flight = 1;
    assert_eq!(decide(&s, &[busy], &facts(1), now).replicas, 1);
}

#[test]
fn waiting_requests_start_a_zero_pool_sized_by_target_concurrency() {
    let s = spec(0, 5);
    let f = PoolFacts {
        replicas: 0,
        last_scale_up: None,
        waiting_requests: 1,
        ..Default::default()
    };
    let d = decide(&s, &[], &f, t0());
    assert_eq!((d.replicas, d.reason), (1, Reason::Demand));
    // A burst without a concurrency target starts one container, not one per request.
    let burst = PoolFacts {
        waiting_requests: 10,
        ..f.clone()
    };
    assert_eq!(decide(&s, &[], &burst, t0()).replicas, 1);
    let s = spec_with(Scaling {
        min_containers: Some(0),
        max_containers: Some(5),
        target_concurrency: Some(3),
        ..Default::default()
    });
    let f = PoolFacts {
        waiting_requests: 10,
        ..f
    };
    assert_eq!(decide(&s, &[], &f, t0()).replicas, 4);
}

#[test]
fn target_concurrency_scales_up_before_cpu_does() {
    let s = spec_with(Scaling {
        target_concurrency: Some(2),
        ..Default::default()
    });
    let mut a = ready("a", 0.2);
    a.in_flight = 7;
    let d = decide(&s, &[a], &facts(1), t0());
    assert_eq!((d.replicas, d.reason), (4, Reason::Concurrency));
}

#[test]
fn containers_idle_by_cpu_but_serving_requests_stay_under_a_concurrency_target() {
    // Four containers serving slow, CPU-light requests (a function waiting on I/O): all
    // idle by CPU past the cooldown, 6 requests in flight, a target of 2 per container.
    let s = spec_with(Scaling {
        target_concurrency: Some(2),
        ..Default::default()
    });
    let long_ago = t0() - Duration::from_secs(600);
    let pool = |in_flight: [usize; 4]| -> Vec<ContainerView> {
        ["a", "b", "c", "d"]
            .iter()
            .zip(in_flight)
            .map(|(id, n)| ContainerView {
                in_flight: n,
                ..idle(id, long_ago)
            })
            .collect()
    };
    // 6 in flight need 3 containers: one of the four may go, not more.
    let d = decide(&s, &pool([2, 2, 2, 0]), &facts(4), t0());
    assert_eq!(d.replicas, 3, "{d:?}");
    // 8 in flight need all four: none goes, though each is idle by CPU.
    let d = decide(&s, &pool([2, 2, 4, 0]), &facts(4), t0());
    assert_eq!(d.replicas, 4, "{d:?}");
    // What is left is then stable: no scale-up asks the removed container back.
    let d = decide(&s, &pool([2, 2, 2, 0])[..3], &facts(3), t0());
    assert_eq!(d.replicas, 3, "{d:?}");
    // A dip of this instant does not count: 7 were in flight a moment ago, within the
    // cooldown, and 3 containers cannot take 7 under the target.
    let peak = PoolFacts {
        recent_peak_in_flight: 7,
        ..facts(4)
    };
    let d = decide(&s, &pool([2, 2, 2, 0]), &peak, t0());
    assert_eq!(d.replicas, 4, "{d:?}");
    // Without a target, requests do not hold CPU-idle containers (the seed's rule).
    let d = decide(&spec(1, 10), &pool([2, 2, 2, 0]), &facts(4), t0());
    assert_eq!(d.replicas, 3, "{d:?}");
}

fn view(id: &str, hash: &str, phase: Phase) -> ContainerView {
    ContainerView {
        spec_hash: hash.into(),
        phase,
        ..ready(id, 0.3)
    }
}

#[test]
fn plan_creates_up_to_replicas_and_replaces_failed_containers() {
    let cs = [
        view("a", HASH, Phase::Ready),
        view("b", HASH, Phase::Failed),
    ];
    let p = plan(HASH, &cs, 3, &[]);
    assert_eq!(p.create, 2);
    assert_eq!(p.remove, [("b".to_string(), RemoveReason::Failed)]);
}

#[test]
fn plan_removes_surplus_victims_first_then_starting() {
    let cs = [
        view("a", HASH, Phase::Ready),
        view("b", HASH, Phase::Ready),
        view("c", HASH, Phase::Starting),
        view("d", HASH, Phase::Draining),
    ];
    let p = plan(HASH, &cs, 1, &["b".to_string()]);
    assert_eq!(p.create, 0);
    let ids: Vec<_> = p.remove.iter().map(|(id, _)| id.as_str()).collect();
    // d is draining: an earlier removal failed, so it is tried again.
    assert_eq!(ids, ["d", "b", "c"]);
    assert_eq!(p.remove[0].1, RemoveReason::Retry);
}

#[test]
fn a_rollout_replaces_one_container_at_a_time_new_ready_before_old_goes() {
    // Simulate a rollout of 3 containers, applying each plan with new containers
    // becoming ready one pass later.
    let mut cs: Vec<ContainerView> = (0..3)
        .map(|i| view(&format!("old{i}"), "old", Phase::Ready))
        .collect();
    let mut next = 0;
    for _ in 0..20 {
        let p = plan(HASH, &cs, 3, &[]);
        let ready_before = cs.iter().filter(|c| c.phase == Phase::Ready).count();
        assert!(
            p.create <= 1,
            "more than one new container at a time: {p:?}"
        );
        for c in cs.iter_mut() {
            if c.phase == Phase::Starting {
                c.phase = Phase::Ready;
            }
        }
        cs.retain(|c| !p.remove.iter().any(|(id, _)| *id == c.id));
        let ready_after = cs.iter().filter(|c| c.phase == Phase::Ready).count();
        assert!(
            ready_after >= 3.min(ready_before),
            "ready dropped from {ready_before} to {ready_after}"
        );
        for _ in 0..p.create {
            cs.push(view(&format!("new{next}"), HASH, Phase::Starting));
            next += 1;
        }
    }
    assert!(cs
        .iter()
        .all(|c| c.spec_hash == HASH && c.phase == Phase::Ready));
    assert_eq!(cs.len(), 3);
    assert_eq!(next, 3, "exactly three new containers were made");
}

#[test]
fn outdated_containers_that_are_not_ready_go_at_once() {
    let cs = [
        view("a", "old", Phase::Starting),
        view("b", "old", Phase::Ready),
    ];
    let p = plan(HASH, &cs, 1, &[]);
    assert_eq!(p.remove, [("a".to_string(), RemoveReason::Outdated)]);
    assert_eq!(p.create, 1);
}

#[test]
fn a_plan_with_nothing_to_do_is_empty() {
    let cs = [
        view("a", HASH, Phase::Ready),
        view("b", HASH, Phase::Starting),
    ];
    assert!(plan(HASH, &cs, 2, &[]).is_empty());
}

#[test]
fn the_idle_deadline_points_at_the_next_cooldown_expiry() {
    let s = spec(1, 10);
    let now = t0();
    let cs = [
        idle("a", now - Duration::from_secs(10)),
        idle("b", now - Duration::from_secs(25)),
    ];
    assert_eq!(
        next_idle_deadline(&s, &cs, now),
        Some(Duration::from_secs(5))
    );
}

// ---- properties -------------------------------------------------------------------------

/// Usage and idle time of one container, biased to the edges that bit: idle past the
/// cooldown (the underflow of lowering max on an idle `min: 0` pool), overloaded, no
/// sample at all, and anything in between.
fn arb_usage() -> impl Strategy<Value = (Option<(f64, u64)>, Option<u64>)> {
    prop_oneof![
        3 => (0.0f64..0.05, 30u64..200).prop_map(|(cpu, idle)| (Some((cpu, 1_000_000)), Some(idle))),
        2 => (0.8f64..3.0, 0u64..800_000_000).prop_map(|(cpu, rss)| (Some((cpu, rss)), None)),
        1 => Just((None, None)),
        3 => (
            prop::option::weighted(0.85, (0.0f64..3.0, 0u64..800_000_000)),
            prop::option::of(0u64..200),
        ),
    ]
}

fn arb_container(i: usize) -> impl Strategy<Value = ContainerView> {
    (
        prop_oneof![
            2 => Just(Phase::Starting),
            5 => Just(Phase::Ready),
            1 => Just(Phase::Failed),
            2 => Just(Phase::Draining)
        ],
        arb_usage(),
        prop_oneof![2 => Just(0usize), 1 => 0usize..6],
        prop::bool::weighted(0.2),
        // A custom metric's reading: mostly present (zero often), sometimes missing.
        prop_oneof![2 => Just(Some(0.0)), 3 => (0.0f64..50.0).prop_map(Some), 1 => Just(None)],
    )
        .prop_map(move |(phase, (usage, idle_for), in_flight, old, metric)| {
            let now = t0();
            ContainerView {
                id: format!("c{i}"),
                spec_hash: if old { "old".into() } else { HASH.into() },
                phase,
                created: now - Duration::from_secs(i as u64),
                usage: usage.map(|(cpu, rss)| Usage { cpu, rss }),
                idle_since: idle_for.map(|s| now - Duration::from_secs(s)),
                in_flight,
                pinned: false,
                metrics: vec![metric],
            }
        })
}

/// Pools biased to the edges: `min = 0`, `min = max`, `max = 1`, more containers than
/// max, and a replica target above max (max just lowered), equal to it, or zero.
fn arb_pool() -> impl Strategy<Value = (EffectiveSpec, Vec<ContainerView>, PoolFacts)> {
    arb_pool_with(arb_signals())
}

/// [`arb_pool`] with the signals beyond CPU drawn from `signals`.
fn arb_pool_with(
    signals: impl Strategy<Value = Signals>,
) -> impl Strategy<Value = (EffectiveSpec, Vec<ContainerView>, PoolFacts)> {
    (
        prop_oneof![3 => Just(0u32), 2 => 0u32..5],
        prop_oneof![2 => Just(1u32), 1 => Just(0u32), 3 => 1u32..12],
        0usize..12,
        prop::option::of(0u64..100),
        prop_oneof![3 => Just(0usize), 1 => 0usize..4],
        prop::option::of(1u32..5),
        signals,
    )
        .prop_flat_map(|(min, extra, n, since_up, waiting, conc, signals)| {
            // extra = 0 gives min = max.
            let max = (min + extra).max(1);
            let cs: Vec<_> = (0..n).map(arb_container).collect();
            let replicas = prop_oneof![Just(n), Just(max as usize), Just(0usize), 0usize..15];
            (
                Just((min, max, since_up, waiting, conc, signals)),
                cs,
                replicas,
            )
        })
        .prop_map(
            |((min, max, since_up, waiting, conc, signals), cs, replicas)| {
                let (rps, rate, forecast, custom) = signals;
                let s = spec_with(Scaling {
                    min_containers: Some(min),
                    max_containers: Some(max),
                    target_concurrency: conc,
                    target_requests_per_second: rps,
                    custom_metrics: custom
                        .map(|target| CustomMetric {
                            name: "queue".into(),
                            path: None,
                            target_per_container: target,
                        })
                        .into_iter()
                        .collect(),
                    predictive: forecast.map(|_| Predictive::default()),
                    ..Default::default()
                });
                let f = PoolFacts {
                    replicas,
                    last_scale_up: since_up.map(|s| t0() - Duration::from_secs(s)),
                    waiting_requests: waiting,
                    recent_peak_in_flight: 0,
                    request_rate: rate,
                    forecast_rate: forecast.flatten(),
                };
                (s, cs, f)
            },
        )
}

/// The signals beyond CPU: `(targetRequestsPerSecond, measured rate, forecast (outer
/// None: not predictive), custom metric target)`.
type Signals = (Option<f64>, Option<f64>, Option<Option<f64>>, Option<f64>);

/// No signal, the rate, or a custom metric.
fn arb_signals() -> impl Strategy<Value = Signals> {
    prop_oneof![
        3 => Just((None, None, None, None)),
        2 => rate_signals(),
        2 => metric_signals(),
    ]
}

/// The request rate (and a forecast or not), biased to none, zero, and rates far over
/// what max containers serve.
fn rate_signals() -> impl Strategy<Value = Signals> {
    let rate = prop_oneof![2 => Just(None), 2 => Just(Some(0.0)), 3 => (0.0f64..200.0).prop_map(Some), 1 => Just(Some(1e12))];
    let forecast = prop::option::of(prop::option::of(prop_oneof![Just(0.0), 0.0f64..500.0]));
    (prop_oneof![Just(1.0), 0.5f64..50.0], rate, forecast)
        .prop_map(|(t, r, f)| (Some(t), r, f, None))
}

/// A custom metric (each container's reading comes from [`arb_container`]).
fn metric_signals() -> impl Strategy<Value = Signals> {
    prop_oneof![Just(1.0), 0.5f64..20.0].prop_map(|t| (None, None, None, Some(t)))
}

/// A steady total CPU load spread evenly over the ready containers.
fn spread(cs: &mut [ContainerView], load: f64, now: Instant) {
    let n = cs.iter().filter(|c| c.phase == Phase::Ready).count().max(1) as f64;
    for c in cs.iter_mut().filter(|c| c.phase == Phase::Ready) {
        let cpu = load / n;
        c.usage = Some(Usage {
            cpu,
            rss: 1_000_000,
        });
        if cpu < 0.10 {
            c.idle_since.get_or_insert(now);
        } else {
            c.idle_since = None;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decisions_stay_within_min_and_max((s, cs, f) in arb_pool()) {
        let d = decide(&s, &cs, &f, t0());
        prop_assert!(d.replicas >= s.scaling.min && d.replicas <= s.scaling.max, "{d:?}");
        let p = plan(HASH, &cs, d.replicas, &d.victims);
        let removed = |c: &ContainerView| p.remove.iter().any(|(id, _)| *id == c.id);
        let kept = |hash_new: bool| cs.iter()
            .filter(|c| matches!(c.phase, Phase::Starting | Phase::Ready) && !removed(c) && (c.spec_hash == HASH) == hash_new)
            .count();
        // New-spec containers never exceed the target; old ones stay only while they
        // carry capacity the new ones do not yet have, never more than the target.
        prop_assert!(kept(true) + p.create <= d.replicas.max(1), "new {} + create {} > {} {p:?}", kept(true), p.create, d.replicas);
        prop_assert!(kept(false) <= d.replicas, "old kept {} > {} {p:?}", kept(false), d.replicas);
    }

    #[test]
    fn only_idle_ready_containers_are_chosen_for_scale_down((s, cs, f) in arb_pool()) {
        let d = decide(&s, &cs, &f, t0());
        for v in &d.victims {
            let c = cs.iter().find(|c| c.id == *v).unwrap();
            prop_assert_eq!(c.phase, Phase::Ready);
            prop_assert_eq!(c.in_flight, 0);
            prop_assert_eq!(classify(&s, c.usage.unwrap()), LoadState::Idle);
        }
    }

    #[test]
    fn missing_metrics_never_scale_down((s, mut cs, f) in arb_pool(), hole in 0usize..12) {
        let ready: Vec<usize> = (0..cs.len()).filter(|&i| cs[i].phase == Phase::Ready).collect();
        prop_assume!(!ready.is_empty());
        cs[ready[hole % ready.len()]].usage = None;
        let d = decide(&s, &cs, &f, t0());
        prop_assert!(d.replicas >= f.replicas.clamp(s.scaling.min, s.scaling.max));
        prop_assert!(d.victims.is_empty());
    }

    #[test]
    fn more_load_never_means_fewer_containers((s, cs, f) in arb_pool(), extra in 0.0f64..2.0) {
        let lo = decide(&s, &cs, &f, t0());
        let mut hotter = cs.clone();
        for c in hotter.iter_mut() {
            if let Some(u) = c.usage.as_mut() {
                u.cpu += extra;
                if u.cpu >= 0.10 { c.idle_since = None; }
            }
        }
        let hi = decide(&s, &hotter, &f, t0());
        prop_assert!(hi.replicas >= lo.replicas, "lo={lo:?} hi={hi:?}");
    }

    #[test]
    fn a_step_of_load_reaches_its_target_in_one_decision(k in 1.01f64..12.0, max in 1u32..16) {
        let s = spec(1, max);
        let load = k * s.scaling.cpu_overload_threshold;
        let d = decide(&s, &[ready("a", load)], &facts(1), t0());
        let want = (k - 1e-9).ceil() as usize;
        prop_assert_eq!(d.replicas, want.min(max as usize));
    }

    #[test]
    fn steady_load_settles_and_never_flaps(load in 0.0f64..6.0, start in 1usize..10, max in 1u32..10) {
        let s = spec(1, max);
        let mut now = t0();
        let mut cs: Vec<ContainerView> = (0..start.min(max as usize)).map(|i| ready(&format!("c{i}"), 0.0)).collect();
        let mut f = facts(cs.len());
        let mut history = Vec::new();
        for tick in 0..200 {
            spread(&mut cs, load, now);
            let d = decide(&s, &cs, &f, now);
            if d.replicas > f.replicas { f.last_scale_up = Some(now); }
            f.replicas = d.replicas;
            let p = plan(HASH, &cs, d.replicas, &d.victims);
            cs.retain(|c| !p.remove.iter().any(|(id, _)| *id == c.id));
            for i in 0..p.create { cs.push(ready(&format!("t{tick}-{i}"), 0.0)); }
            history.push(cs.len());
            now += Duration::from_secs(2);
        }
        let tail = &history[100..];
        prop_assert!(tail.iter().all(|n| *n == tail[0]), "count still moves: {history:?}");
        let n = tail[0] as f64;
        prop_assert!(load / n <= 0.70 + 1e-9 || tail[0] == max as usize, "settled overloaded at {n}");
        // Settled at the smallest count the load allows, unless the cooldown keeps more
        // because removing one would overload the rest.
        if tail[0] > 1 {
            prop_assert!(load / n >= 0.10 || load / (n - 1.0) >= 0.70, "kept {n} idle containers for load {load}");
        }
    }
}

/// A pool scaling on the request rate (`target` per container), with cooldown 30 s.
fn rate_spec(target: f64, predictive: bool) -> EffectiveSpec {
    spec_with(Scaling {
        min_containers: Some(1),
        max_containers: Some(10),
        target_requests_per_second: Some(target),
        predictive: predictive.then(Predictive::default),
        ..Default::default()
    })
}

fn rate_facts(replicas: usize, rate: f64, forecast: Option<f64>) -> PoolFacts {
    PoolFacts {
        request_rate: Some(rate),
        forecast_rate: forecast,
        ..facts(replicas)
    }
}

#[test]
fn the_request_rate_asks_for_rate_over_target_containers() {
    let s = rate_spec(50.0, false);
    let cs = [ready("a", 0.05)];
    let d = decide(&s, &cs, &rate_facts(1, 120.0, None), t0());
    assert_eq!((d.replicas, d.reason), (3, Reason::RequestRate));
    // At the target exactly: enough.
    let d = decide(&s, &cs, &rate_facts(1, 50.0, None), t0());
    assert_eq!((d.replicas, d.reason), (1, Reason::Steady));
    // Far over max: max.
    let d = decide(&s, &cs, &rate_facts(1, 1e12, None), t0());
    assert_eq!((d.replicas, d.reason), (10, Reason::RequestRate));
}

#[test]
fn idle_containers_go_only_down_to_what_the_rate_still_asks_for() {
    let s = rate_spec(50.0, false);
    let long_ago = t0() - Duration::from_secs(600);
    let cs: Vec<_> = (0..4).map(|i| idle(&format!("c{i}"), long_ago)).collect();
    // 120 requests/s want 3 of the 4 idle-by-CPU containers.
    let d = decide(&s, &cs, &rate_facts(4, 120.0, None), t0());
    assert_eq!((d.replicas, d.victims.len()), (3, 1), "{d:?}");
    // No rate: down to min.
    let d = decide(&s, &cs, &rate_facts(4, 0.0, None), t0());
    assert_eq!((d.replicas, d.reason), (1, Reason::Idle));
}

#[test]
fn the_forecast_scales_up_ahead_and_never_down() {
    let s = rate_spec(10.0, true);
    let cs = [ready("a", 0.05)];
    let d = decide(&s, &cs, &rate_facts(1, 5.0, Some(35.0)), t0());
    assert_eq!((d.replicas, d.reason), (4, Reason::Predictive));
    // The observed rate asks more than the forecast: the rate's reason.
    let d = decide(&s, &cs, &rate_facts(1, 45.0, Some(35.0)), t0());
    assert_eq!((d.replicas, d.reason), (5, Reason::RequestRate));
    // A forecast of less than the rate lowers nothing.
    let long_ago = t0() - Duration::from_secs(600);
    let idle4: Vec<_> = (0..4).map(|i| idle(&format!("c{i}"), long_ago)).collect();
    let d = decide(&s, &idle4, &rate_facts(4, 35.0, Some(0.0)), t0());
    assert_eq!(d.replicas, 4, "{d:?}");
}

fn metric_spec(target: f64) -> EffectiveSpec {
    spec_with(Scaling {
        min_containers: Some(1),
        max_containers: Some(10),
        custom_metrics: vec![CustomMetric {
            name: "queue_depth".into(),
            path: None,
            target_per_container: target,
        }],
        ..Default::default()
    })
}

fn with_metric(mut c: ContainerView, v: Option<f64>) -> ContainerView {
    c.metrics = vec![v];
    c
}

#[test]
fn a_custom_metric_asks_for_its_sum_over_target_containers() {
    let s = metric_spec(10.0);
    let cs = [
        with_metric(ready("a", 0.05), Some(25.0)),
        with_metric(ready("b", 0.05), Some(20.0)),
    ];
    let d = decide(&s, &cs, &facts(2), t0());
    assert_eq!((d.replicas, d.reason), (5, Reason::CustomMetric));
}

#[test]
fn a_missing_custom_metric_holds_scale_down_and_still_lets_the_others_scale_up() {
    let s = metric_spec(10.0);
    let long_ago = t0() - Duration::from_secs(600);
    let quiet = |id: &str, v| with_metric(idle(id, long_ago), v);
    let all_read = [
        quiet("a", Some(0.0)),
        quiet("b", Some(0.0)),
        quiet("c", Some(0.0)),
    ];
    let d = decide(&s, &all_read, &facts(3), t0());
    assert_eq!((d.replicas, d.reason), (1, Reason::Idle), "{d:?}");
    // One scrape failed: its value is unknown, not zero.
    let one_missing = [
        quiet("a", Some(0.0)),
        quiet("b", None),
        quiet("c", Some(0.0)),
    ];
    let d = decide(&s, &one_missing, &facts(3), t0());
    assert_eq!((d.replicas, d.victims.len()), (3, 0), "{d:?}");
    // Never scraped yet: the same.
    let d = decide(
        &s,
        &[idle("a", long_ago), idle("b", long_ago)],
        &facts(2),
        t0(),
    );
    assert_eq!(d.replicas, 2, "{d:?}");
    // What is read still counts up.
    let up = [quiet("a", Some(45.0)), quiet("b", None)];
    let d = decide(&s, &up, &facts(2), t0());
    assert_eq!((d.replicas, d.reason), (5, Reason::CustomMetric));
}

/// What a signal asks for, capped at max: `ceil(load / target)`.
fn asks(load: f64, target: f64, max: usize) -> usize {
    (((load / target) - 1e-9).ceil().max(0.0) as usize).min(max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every signal must agree before a scale-down: the decision never goes below what
    /// the rate, the forecast or a fully read custom metric asks for (within max).
    #[test]
    fn no_decision_goes_below_what_a_signal_asks((s, cs, f) in arb_pool()) {
        let d = decide(&s, &cs, &f, t0());
        let max = s.scaling.max;
        if let Some(t) = s.scaling.target_requests_per_second {
            prop_assert!(d.replicas >= asks(f.request_rate.unwrap_or(0.0), t, max), "rate: {d:?} {f:?}");
            if let Some(ahead) = f.forecast_rate {
                prop_assert!(d.replicas >= asks(ahead, t, max), "forecast: {d:?} {f:?}");
            }
        }
        for (i, m) in s.scaling.custom_metrics.iter().enumerate() {
            let sum: f64 = cs.iter().filter(|c| c.phase == Phase::Ready)
                .filter_map(|c| c.metrics.get(i).copied().flatten()).sum();
            prop_assert!(d.replicas >= asks(sum, m.target_per_container, max), "metric: {d:?}");
        }
    }

    /// A forecast never scales down: the same pool with a forecast added never ends
    /// with fewer containers than without one.
    #[test]
    fn a_forecast_never_lowers_the_count((s, cs, f) in arb_pool_with(rate_signals()), ahead in prop_oneof![Just(0.0), 0.0f64..500.0]) {
        let without = decide(&s, &cs, &PoolFacts { forecast_rate: None, ..f.clone() }, t0());
        let with = decide(&s, &cs, &PoolFacts { forecast_rate: Some(ahead), ..f }, t0());
        prop_assert!(with.replicas >= without.replicas, "{with:?} < {without:?}");
    }

    /// A missing custom metric on any ready container never lets the pool shrink.
    #[test]
    fn a_missing_custom_metric_never_scales_down((s, mut cs, f) in arb_pool_with(metric_signals()), hole in 0usize..12) {
        let ready: Vec<usize> = (0..cs.len()).filter(|&i| cs[i].phase == Phase::Ready).collect();
        prop_assume!(!ready.is_empty());
        cs[ready[hole % ready.len()]].metrics = vec![None];
        let d = decide(&s, &cs, &f, t0());
        let before = f.replicas.clamp(s.scaling.min, s.scaling.max);
        prop_assert!(d.replicas >= before, "{d:?} from {before}");
        prop_assert!(d.victims.is_empty(), "{d:?}");
    }

    /// More requests never mean fewer containers.
    #[test]
    fn a_higher_rate_never_means_fewer_containers((s, cs, f) in arb_pool_with(rate_signals()), extra in prop_oneof![Just(0.0), 0.0f64..300.0]) {
        let lo = decide(&s, &cs, &f, t0());
        let rate = f.request_rate.unwrap_or(0.0) + extra;
        let hi = decide(&s, &cs, &PoolFacts { request_rate: Some(rate), ..f }, t0());
        prop_assert!(hi.replicas >= lo.replicas, "{hi:?} < {lo:?}");
    }
}

proptest! {
    /// The bug that created over a thousand containers: a pool whose containers are all
    /// idle past the cooldown has its max lowered below their count (and min to 0). Run
    /// decide and plan to a fixed point: the pool never grows, and ends within max.
    #[test]
    fn lowering_max_below_idle_containers_only_ever_shrinks_the_pool(
        n in 1usize..12,
        min in prop_oneof![3 => Just(0u32), 1 => 0u32..3],
        max in 1u32..4,
        replicas in 0usize..12,
    ) {
        let min = min.min(max);
        let s = spec(min, max);
        let mut now = t0();
        let mut cs: Vec<ContainerView> = (0..n).map(|i| {
            let mut c = ready(&format!("c{i}"), 0.01);
            c.idle_since = Some(now - Duration::from_secs(1_000));
            c
        }).collect();
        // The target was at most what ran before max was lowered.
        let mut f = facts(replicas.min(n));
        for step in 0..20 {
            let d = decide(&s, &cs, &f, now);
            prop_assert!((s.scaling.min..=s.scaling.max).contains(&d.replicas), "{d:?}");
            f.replicas = d.replicas;
            let p = plan(HASH, &cs, d.replicas, &d.victims);
            let before = cs.len();
            cs.retain(|c| !p.remove.iter().any(|(id, _)| *id == c.id));
            for i in 0..p.create {
                let mut c = ready(&format!("s{step}-{i}"), 0.01);
                c.idle_since = Some(now);
                cs.push(c);
            }
            prop_assert!(cs.len() <= before.max(min as usize), "grew {before} -> {} ({p:?})", cs.len());
            now += Duration::from_secs(2);
        }
        prop_assert!(cs.len() <= max as usize && cs.len() >= min as usize, "ended with {}", cs.len());
    }
}

proptest! {
    /// Whatever order new containers become ready in, and whatever the target, a rollout
    /// never lowers ready capacity below min(target, what was ready).
    #[test]
    fn rollouts_never_lower_ready_capacity(
        olds in 1usize..6,
        replicas in 1usize..6,
        readiness in prop::collection::vec(prop::bool::ANY, 60),
    ) {
        let mut cs: Vec<ContainerView> = (0..olds).map(|i| view(&format!("old{i}"), "old", Phase::Ready)).collect();
        let mut next = 0;
        for become_ready in readiness {
            let ready_before = cs.iter().filter(|c| c.phase == Phase::Ready).count();
            let p = plan(HASH, &cs, replicas, &[]);
            cs.retain(|c| !p.remove.iter().any(|(id, _)| *id == c.id));
            let ready_after = cs.iter().filter(|c| c.phase == Phase::Ready).count();
            prop_assert!(ready_after >= replicas.min(ready_before), "ready {ready_before} -> {ready_after} ({p:?})");
            for _ in 0..p.create {
                cs.push(view(&format!("new{next}"), HASH, Phase::Starting));
                next += 1;
            }
            // Sometimes the oldest starting container becomes ready.
            if become_ready {
                if let Some(c) = cs.iter_mut().find(|c| c.phase == Phase::Starting) {
                    c.phase = Phase::Ready;
                }
            }
        }
    }
}

/// The bug: `minContainers: 0, maxContainers: 1` on a pool with two containers idle past
/// the cooldown. The scale-down loop computed `replicas - victims - 1` with more idle
/// candidates than the clamped target and wrapped to `usize::MAX` in release.
#[test]
fn more_idle_candidates_than_the_lowered_max_never_underflow() {
    let s = spec(0, 1);
    let now = t0();
    let cs: Vec<ContainerView> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            let mut c = ready(id, 0.01);
            c.idle_since = Some(now - Duration::from_secs(1_000));
            c
        })
        .collect();
    let d = decide(&s, &cs, &facts(2), now);
    assert!(d.replicas <= 1, "{d:?}");
    let p = plan(HASH, &cs, d.replicas, &d.victims);
    assert_eq!(p.create, 0, "{p:?}");
    assert_eq!(p.remove.len(), 3 - d.replicas, "{p:?}");
}
