//! Scaler decision time: `scaler::decide` + `scaler::plan` (what one reconcile computes)
//! for pools of 10, 100 and 1000 ready containers, in three situations:
//!
//! - `steady`: mixed load (healthy, some idle not yet past the cooldown): nothing to do;
//! - `scale_up`: every container overloaded: the HPA proposal and the creates;
//! - `scale_down`: every container idle past the cooldown, light load: victims are
//!   sorted and checked one by one, then the planner trims them.
//!
//! `cargo bench --bench scaler` (add `-- --quick` for a faster, rougher run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use invok::api::{EffectiveSpec, FunctionPool, FunctionPoolSpec, ObjectMeta};
use invok::scaler::{self, ContainerView, Phase, PoolFacts, Usage};
use tokio::time::Instant;

const SIZES: [usize; 3] = [10, 100, 1000];

fn spec() -> EffectiveSpec {
    let mut spec = FunctionPool {
        api_version: "invok.dev/v1alpha1".into(),
        kind: "FunctionPool".into(),
        metadata: ObjectMeta {
            name: "bench".into(),
            ..Default::default()
        },
        spec: FunctionPoolSpec {
            image: "invok/demo-fn:latest".into(),
            ..Default::default()
        },
    }
    .validate(&Default::default())
    .expect("a valid spec");
    spec.scaling.min = 1;
    spec.scaling.max = 10_000;
    spec.scaling.cooldown_duration = Duration::from_secs(30);
    spec
}

/// A 64-hex-digit id that looks like Docker's (random-looking, distinct).
fn container_id(i: u64) -> String {
    // splitmix64, four times.
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..4)
        .map(|_| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            format!("{:016x}", z ^ (z >> 31))
        })
        .collect()
}

/// `n` ready containers; `usage(i)` gives each one's sample and idle time (seconds).
fn pool(
    spec: &EffectiveSpec,
    n: usize,
    now: Instant,
    usage: impl Fn(usize) -> (f64, Option<u64>),
) -> Vec<ContainerView> {
    let created = now - Duration::from_secs(3600);
    (0..n)
        .map(|i| {
            let (cpu, idle_for) = usage(i);
            ContainerView {
                id: container_id(i as u64),
                spec_hash: spec.spec_hash.clone(),
                phase: Phase::Ready,
                created: created + Duration::from_millis(i as u64),
                usage: Some(Usage { cpu, rss: 8 << 20 }),
                idle_since: idle_for.map(|s| now - Duration::from_secs(s)),
                in_flight: i % 3,
                pinned: false,
                metrics: Vec::new(),
            }
        })
        .collect()
}

fn decide_and_plan(
    spec: &EffectiveSpec,
    views: &[ContainerView],
    facts: &PoolFacts,
    now: Instant,
) -> scaler::Plan {
    let d = scaler::decide(spec, views, facts, now);
    scaler::plan(&spec.spec_hash, views, d.replicas, &d.victims)
}

fn bench(c: &mut Criterion) {
    let spec = spec();
    // Instants far enough from the clock's origin for the subtractions above.
    let now = Instant::now() + Duration::from_secs(7200);
    let mut group = c.benchmark_group("decide+plan");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let facts = PoolFacts {
            replicas: n,
            ..Default::default()
        };
        // Healthy, with every fifth container idle for less than the cooldown.
        let steady = pool(&spec, n, now, |i| {
            if i % 5 == 0 {
                (0.05, Some(5))
            } else {
                (0.4, None)
            }
        });
        let d = scaler::decide(&spec, &steady, &facts, now);
        assert_eq!(d.replicas, n, "steady: nothing to do");
        group.bench_with_input(BenchmarkId::new("steady", n), &steady, |b, v| {
            b.iter(|| decide_and_plan(&spec, black_box(v), &facts, now))
        });

        let hot = pool(&spec, n, now, |_| (0.95, None));
        let p = decide_and_plan(&spec, &hot, &facts, now);
        assert!(p.create > 0, "scale_up: creates");
        group.bench_with_input(BenchmarkId::new("scale_up", n), &hot, |b, v| {
            b.iter(|| decide_and_plan(&spec, black_box(v), &facts, now))
        });

        let cold = pool(&spec, n, now, |i| (0.01, Some(60 + (i % 50) as u64)));
        let cold: Vec<ContainerView> = cold
            .into_iter()
            .map(|mut c| {
                c.in_flight = 0;
                c
            })
            .collect();
        let p = decide_and_plan(&spec, &cold, &facts, now);
        assert!(!p.remove.is_empty(), "scale_down: removals");
        group.bench_with_input(BenchmarkId::new("scale_down", n), &cold, |b, v| {
            b.iter(|| decide_and_plan(&spec, black_box(v), &facts, now))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
