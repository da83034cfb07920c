//! Deterministic simulation of the whole operator, after FoundationDB's simulation
//! testing and TigerBeetle's VOPR: the real controller (scheduler, stores, reconcile,
//! scaler, sampler, manifest loading, probes, shutdown) runs against the fault-injecting
//! in-memory runtime on tokio's paused clock; each seed draws a sequence of steps
//! (manifest edits good and broken, load, container deaths, Docker faults and outages,
//! operator crashes and SIGTERMs) and the invariants are checked after every step.
//!
//! ```text
//! INVOK_SIM_SEED=<seed>      run one seed (verbose with INVOK_SIM_VERBOSE=1)
//! INVOK_SIM_SEEDS=<n>        how many seeds (default 500), from INVOK_SIM_BASE (default 0)
//! INVOK_SIM_STEPS=<n>        steps per seed (default 200)
//! INVOK_SIM_KEEP=<i,j,...>   run only these steps of the seed (a shrunk reproduction)
//! INVOK_SIM_THREADS=<n>      seeds in parallel (default 2), one current-thread runtime each
//! INVOK_SIM_SHRINK=0         do not shrink failing seeds
//! INVOK_SIM_LOG=<filter>     with INVOK_SIM_SEED: the operator's log (RUST_LOG syntax),
//!                            stamped with virtual time
//! ```
//!
//! A failing seed prints its one-line reproduction.

mod sim;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sim::steps::{generate, Planned};
use sim::{run_seed, shrink, Failure};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(x) => Some(x),
        Err(_) => panic!("{name}={v:?} is not a number"),
    }
}

const DEFAULT_STEPS: usize = 200;
/// Shrinking runs at most this many variants of a failing seed.
const SHRINK_BUDGET: usize = 60;
/// Failing seeds shrunk and printed in full in a multi-seed run.
const SHRUNK_PER_RUN: usize = 3;

fn reproduction(seed: u64, steps: usize, keep: Option<&BTreeSet<usize>>) -> String {
    let mut line = format!("INVOK_SIM_SEED={seed}");
    if steps != DEFAULT_STEPS {
        line += &format!(" INVOK_SIM_STEPS={steps}");
    }
    if let Some(k) = keep {
        let list: Vec<String> = k.iter().map(|i| i.to_string()).collect();
        line += &format!(" INVOK_SIM_KEEP={}", list.join(","));
    }
    line + " cargo test --test simulation"
}

fn print_steps(plan: &[Planned], keep: &BTreeSet<usize>, failed_at: usize) {
    for i in keep {
        let mark = if *i == failed_at {
            "  <- fails here"
        } else {
            ""
        };
        eprintln!("    {i:>3}: {}{mark}", plan[*i]);
    }
}

fn describe(seed: u64, f: &Failure, total: usize) -> String {
    format!(
        "seed {seed} failed at step {} of {total} ({:.1} s virtual): [{}] {}",
        f.step,
        f.at.as_secs_f64(),
        f.invariant,
        f.detail
    )
}

/// Prints a failing seed: its reproduction, shrunk when that is cheap, and its steps.
fn report(seed: u64, steps: usize, plan: &[Planned], f: &Failure, do_shrink: bool) {
    eprintln!("\nsimulation: {}", describe(seed, f, plan.len()));
    eprintln!("  reproduce: {}", reproduction(seed, steps, None));
    let (keep, last) = if do_shrink {
        shrink(seed, plan, f, SHRINK_BUDGET)
    } else {
        ((0..=f.step).collect(), f.clone())
    };
    if do_shrink && keep.len() <= f.step {
        eprintln!(
            "  shrunk to {} step(s): {}\n  shrunk failure: [{}] {}",
            keep.len(),
            reproduction(seed, steps, Some(&keep)),
            last.invariant,
            last.detail
        );
    }
    print_steps(plan, &keep, last.step);
}

#[test]
fn simulation() {
    sim::install_panic_hook();
    let steps: usize = env("INVOK_SIM_STEPS").unwrap_or(DEFAULT_STEPS);
    let do_shrink = env::<u8>("INVOK_SIM_SHRINK").unwrap_or(1) != 0;
    let verbose = env::<u8>("INVOK_SIM_VERBOSE").unwrap_or(0) != 0;

    if let Some(seed) = env::<u64>("INVOK_SIM_SEED") {
        let keep: Option<BTreeSet<usize>> = std::env::var("INVOK_SIM_KEEP").ok().map(|v| {
            v.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse().expect("INVOK_SIM_KEEP: step indices"))
                .collect()
        });
        if let Ok(filter) = std::env::var("INVOK_SIM_LOG") {
            sim::install_log(&filter);
        }
        let plan = generate(seed, steps);
        let t = sim::wall_clock();
        let out = run_seed(seed, &plan, keep.as_ref(), verbose);
        let secs = t.elapsed().as_secs_f64();
        // Replays the seed to show whether it is deterministic on this build.
        let again = run_seed(
            seed,
            &plan,
            keep.as_ref(),
            env::<u8>("INVOK_SIM_VERBOSE").unwrap_or(0) > 1,
        );
        eprintln!(
            "simulation: seed {seed}: {} steps in {secs:.2} s ({:.0} steps/s), {:.0} s virtual, {} creates, {} directory reads; replay {}",
            out.steps_run,
            out.steps_run as f64 / secs.max(1e-9),
            out.virtual_time.as_secs_f64(),
            out.creates,
            out.reads,
            // Container names are drawn by the controller's own RNG: compare what
            // happened (the digest of starts, removals and times) and which invariant
            // broke where, not the names in the message.
            if again.digest == out.digest
                && again.failure.as_ref().map(|f| (f.step, f.invariant, f.at))
                    == out.failure.as_ref().map(|f| (f.step, f.invariant, f.at))
            {
                "identical"
            } else {
                "diverged (see the notes on determinism in tests/sim/mod.rs)"
            }
        );
        if let Some(f) = &out.failure {
            match &keep {
                Some(k) => {
                    eprintln!("\nsimulation: {}", describe(seed, f, plan.len()));
                    print_steps(&plan, k, f.step);
                }
                None => report(seed, steps, &plan, f, do_shrink),
            }
            panic!(
                "simulation: seed {seed} failed: [{}] {}",
                f.invariant, f.detail
            );
        }
        return;
    }

    let seeds: u64 = env("INVOK_SIM_SEEDS").unwrap_or(500);
    let base: u64 = env("INVOK_SIM_BASE").unwrap_or(0);
    let threads: usize = env("INVOK_SIM_THREADS").unwrap_or(2).max(1);
    let next = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<(u64, Failure)>>> = Arc::default();
    let totals = Arc::new(Mutex::new((0usize, Duration::ZERO, 0usize)));
    let t = sim::wall_clock();
    let workers: Vec<_> = (0..threads)
        .map(|w| {
            let (next, failures, totals) = (next.clone(), failures.clone(), totals.clone());
            std::thread::Builder::new()
                .name(format!("sim-{w}"))
                .spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= seeds {
                        break;
                    }
                    let seed = base + i;
                    let plan = generate(seed, steps);
                    let out = run_seed(seed, &plan, None, false);
                    {
                        let mut t = totals.lock().unwrap();
                        t.0 += out.steps_run;
                        t.1 += out.virtual_time;
                        t.2 += out.creates;
                    }
                    if let Some(f) = out.failure {
                        eprintln!("simulation: {}", describe(seed, &f, plan.len()));
                        eprintln!("  reproduce: {}", reproduction(seed, steps, None));
                        failures.lock().unwrap().push((seed, f));
                    }
                })
                .expect("thread")
        })
        .collect();
    for w in workers {
        w.join()
            .expect("a simulation thread panicked outside a seed");
    }
    let secs = t.elapsed().as_secs_f64();
    let (steps_run, virtual_time, creates) = *totals.lock().unwrap();
    let mut failures = std::mem::take(&mut *failures.lock().unwrap());
    failures.sort_by_key(|(s, _)| *s);
    eprintln!(
        "simulation: {seeds} seeds x {steps} steps: {steps_run} steps in {secs:.1} s on {threads} thread(s) = {:.0} steps/s, {:.1} seeds/s; {:.1} h of virtual time, {creates} creates; {} failing seed(s)",
        steps_run as f64 / secs.max(1e-9),
        seeds as f64 / secs.max(1e-9),
        virtual_time.as_secs_f64() / 3600.0,
        failures.len()
    );
    if failures.is_empty() {
        return;
    }
    let mut by_invariant: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for (seed, f) in &failures {
        by_invariant.entry(f.invariant).or_default().push(*seed);
    }
    for (inv, seeds) in &by_invariant {
        eprintln!(
            "  [{inv}]: {} seed(s), e.g. {:?}",
            seeds.len(),
            &seeds[..seeds.len().min(8)]
        );
    }
    // Shrink and print the first failing seed of each invariant (a few at most).
    let mut shown = BTreeSet::new();
    for (seed, f) in &failures {
        if shown.len() >= SHRUNK_PER_RUN {
            break;
        }
        if shown.insert(f.invariant) {
            let plan = generate(*seed, steps);
            report(*seed, steps, &plan, f, do_shrink);
        }
    }
    panic!(
        "simulation: {} of {seeds} seeds failed; first: {}",
        failures.len(),
        reproduction(failures[0].0, steps, None)
    );
}
