//! Gateway pick latency: `ObservedStore::pick` (the routing decision made for every
//! request) with 1, 10, 100 and 1000 ready containers in the pool asked for.
//!
//! - `mixed`: the store holds 1000 containers in all, the rest in 99 other pools (some
//!   of them starting or draining), as an operator running many pools does: with 10 in
//!   the pool asked for, that is 1,000 containers in 100 pools;
//! - `alone`: the store holds only the pool asked for.
//!
//! Containers carry mixed samples (idle, healthy, a few overloaded) and a few requests
//! in flight. Each iteration picks once and releases the request at once, so the
//! counters stay where they were. The seed promises a pick under 1 ms.
//!
//! `cargo bench --bench pick` (add `-- --quick` for a faster, rougher run).

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use invok::api::EffectiveSpec;
use invok::controller::ObservedStore;
use invok::runtime::{ContainerInfo, RunState};
use invok::scaler::Usage;
use tokio::time::Instant;

const SIZES: [usize; 4] = [1, 10, 100, 1000];
const TOTAL: usize = 1000;
const OTHER_POOLS: usize = 99;
const POOL: &str = "web";

fn spec() -> EffectiveSpec {
    let manifest = "apiVersion: invok.dev/v1alpha1\nkind: FunctionPool\nmetadata:\n  name: web\nspec:\n  image: invok/demo-fn:latest\n  scaling:\n    cpuOverloadThreshold: 0.70\n    memoryOverloadThreshold: 300M\n    cooldownCpuThreshold: 0.10\n";
    invok::manifest::load_str(Path::new("web.yaml"), manifest, &Default::default())
        .pools
        .remove(POOL)
        .expect("a valid manifest")
        .spec
}

fn info(pool: &str, i: usize, state: RunState) -> ContainerInfo {
    ContainerInfo {
        id: format!("{:064x}", i * 7919 + 1),
        name: format!("invok-{pool}-{i:05}"),
        pool: pool.to_string(),
        spec_hash: "0123456789abcdef".to_string(),
        state,
        host_port: Some(20_000 + i as u16),
        created: SystemTime::UNIX_EPOCH + Duration::from_secs(i as u64),
        image: "invok/demo-fn:latest".to_string(),
        labels: Default::default(),
        pinned: false,
    }
}

/// A store with `n` ready containers of `POOL`, plus `others` containers of other pools
/// (mostly ready, some starting, some draining).
fn store(spec: &EffectiveSpec, n: usize, others: usize) -> ObservedStore {
    let store = ObservedStore::new();
    let mut list: Vec<ContainerInfo> = (0..n).map(|i| info(POOL, i, RunState::Running)).collect();
    list.extend((0..others).map(|j| {
        let pool = format!("other-{}", j % OTHER_POOLS);
        info(&pool, n + j, RunState::Running)
    }));
    let ids: Vec<(String, String)> = list
        .iter()
        .map(|c| (c.id.clone(), c.pool.clone()))
        .collect();
    store.apply_list(list, Instant::now());
    let now = Instant::now();
    for (k, (id, pool)) in ids.iter().enumerate() {
        if pool != POOL && k % 10 == 0 {
            continue; // starting
        }
        assert!(store.mark_ready(id));
        if pool != POOL && k % 10 == 1 {
            store.mark_draining(id, invok::scaler::RemoveReason::Surplus);
            continue;
        }
        // Mostly healthy, every seventh idle, every eleventh overloaded.
        let cpu = match k % 77 {
            k if k % 11 == 0 => 0.9,
            k if k % 7 == 0 => 0.05,
            k => 0.2 + (k as f64) / 200.0,
        };
        store.record_usage(id, Usage { cpu, rss: 16 << 20 }, spec, now);
        if let Some(o) = store.get(id) {
            o.in_flight.store(k % 3, Ordering::Relaxed);
        }
    }
    store
}

fn bench(c: &mut Criterion) {
    let spec = spec();
    let mut group = c.benchmark_group("pick");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (label, total) in [("mixed", TOTAL), ("alone", 0)] {
        for n in SIZES {
            let others = total.saturating_sub(n);
            let store = store(&spec, n, others);
            assert_eq!(store.len(), n + others);
            let probe = store.pick(POOL, None).expect("a ready container");
            probe.in_flight.fetch_sub(1, Ordering::Relaxed);
            group.bench_with_input(BenchmarkId::new(label, n), &store, |b, store| {
                b.iter(|| {
                    let route = store.pick(black_box(POOL), None).expect("a pick");
                    route.in_flight.fetch_sub(1, Ordering::Relaxed);
                    route
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
