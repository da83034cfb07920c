//! The steps a seed draws, and the generator, biased towards the edges that bit: zero,
//! equal bounds, max lowered below the live count, everything idle, everything failing.
//!
//! A step is an intention resolved against the state when it runs ("edit pool web",
//! "kill two containers"), so any subset of a seed's steps still runs: that is what lets
//! a failing seed shrink.

use std::fmt;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{Break, BREAKS, FILES, IMAGES, POOLS};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    Min(u32),
    Max(u32),
    MinMax(u32, u32),
    /// max below the live count (the runaway), min to 0 or not.
    MaxBelowLive {
        min_zero: bool,
    },
    Image(usize),
    Env(u8),
    Thresholds {
        cpu: u32,
        idle: u32,
        mem_mb: u32,
    },
    Cooldown(u32),
    Poll(u32),
    Cpus(Option<u32>),
    /// The signals beyond CPU: targetRequestsPerSecond (and predictive on it), and a
    /// custom metric's targetPerContainer.
    Signals {
        rps: Option<u32>,
        predictive: bool,
        metric: Option<u32>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FileBreak {
    NotUtf8,
    Garbage,
    Empty,
    CommentsOnly,
    Truncated(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LoadLevel {
    Idle,
    Low,
    Medium,
    High,
    /// Far beyond what max containers can carry.
    Extreme,
    /// Memory over the threshold, CPU low.
    MemoryHeavy,
}

pub const LEVELS: [LoadLevel; 6] = [
    LoadLevel::Idle,
    LoadLevel::Low,
    LoadLevel::Medium,
    LoadLevel::High,
    LoadLevel::Extreme,
    LoadLevel::MemoryHeavy,
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Profile {
    None,
    Light,
    Heavy,
    CreatesFail,
    StartsFail,
    CrashLoop,
    RemovesFail,
    EventsLost,
    NeverReady,
    Timeouts,
    Flaky,
    /// Every scrape of a custom metric fails.
    ScrapesFail,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Declares the pool in `file` if no file does (else: edits it).
    Add {
        pool: usize,
        file: usize,
    },
    Edit {
        pool: usize,
        change: Change,
    },
    Break {
        pool: usize,
        kind: Break,
    },
    /// Writes the pool's document valid again.
    Fix {
        pool: usize,
    },
    /// Declares the pool a second time, in another file.
    Duplicate {
        pool: usize,
        file: usize,
    },
    BreakFile {
        file: usize,
        kind: FileBreak,
    },
    /// Truncates a file, lets the operator read it, then rewrites it after `gap`.
    Truncate {
        file: usize,
        cut: f64,
        gap: Duration,
    },
    /// Writes a broken file clean again.
    FixFile {
        file: usize,
    },
    Delete {
        pool: usize,
    },
    DeleteFile {
        file: usize,
    },
    /// Moves a pool's document to another file in one change.
    Move {
        pool: usize,
        to: usize,
    },
    RenameFile {
        from: usize,
        to: usize,
    },
    /// Adds a document of another API group to a file.
    ForeignDoc {
        file: usize,
    },
    Load {
        pool: usize,
        level: LoadLevel,
    },
    LoadAll(LoadLevel),
    /// Holds `n` requests on the pool's containers through the gateway's pick for
    /// `hold` (until a quiet step or an operator restart ends them sooner).
    Requests {
        pool: usize,
        n: usize,
        hold: Duration,
    },
    Kill {
        n: usize,
    },
    KillPool {
        pool: usize,
    },
    Faults(Profile),
    Outage {
        secs: u64,
    },
    DaemonRestart {
        down_secs: u64,
    },
    /// The operator is killed (its run future dropped) and restarted after `down`.
    Crash {
        down: Duration,
    },
    /// SIGTERM; a new operator starts after `down`.
    Sigterm {
        down: Duration,
    },
    /// The gateway could not reach a container of the pool (`kill`: because it died).
    Unreachable {
        pool: usize,
        kill: bool,
    },
    /// A container of another instance, or an unlabelled one, appears.
    Foreign {
        other_instance: bool,
        pool: usize,
    },
    /// No faults, stable load: every valid pool must converge.
    Quiet,
}

/// A step and the virtual time that passes after it.
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    pub step: Step,
    pub wait: Duration,
}

impl fmt::Display for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |i: &usize| POOLS[*i];
        let file = |i: &usize| FILES[*i];
        match &self.step {
            Step::Add { pool, file: fi } => write!(f, "add {} in {}", p(pool), file(fi))?,
            Step::Edit { pool, change } => write!(f, "edit {}: {change:?}", p(pool))?,
            Step::Break { pool, kind } => write!(f, "break {}: {kind:?}", p(pool))?,
            Step::Fix { pool } => write!(f, "fix {}", p(pool))?,
            Step::Duplicate { pool, file: fi } => {
                write!(f, "duplicate {} into {}", p(pool), file(fi))?
            }
            Step::BreakFile { file: fi, kind } => write!(f, "break file {}: {kind:?}", file(fi))?,
            Step::Truncate { file: fi, cut, gap } => write!(
                f,
                "truncate {} at {:.0}% for {gap:?}",
                file(fi),
                cut * 100.0
            )?,
            Step::FixFile { file: fi } => write!(f, "fix file {}", file(fi))?,
            Step::Delete { pool } => write!(f, "delete {}", p(pool))?,
            Step::DeleteFile { file: fi } => write!(f, "delete file {}", file(fi))?,
            Step::Move { pool, to } => write!(f, "move {} to {}", p(pool), file(to))?,
            Step::RenameFile { from, to } => write!(f, "rename {} to {}", file(from), file(to))?,
            Step::ForeignDoc { file: fi } => write!(f, "foreign document in {}", file(fi))?,
            Step::Load { pool, level } => write!(f, "load {} {level:?}", p(pool))?,
            Step::LoadAll(level) => write!(f, "load all {level:?}")?,
            Step::Requests { pool, n, hold } => {
                write!(f, "{n} requests held on {} for {hold:?}", p(pool))?
            }
            Step::Kill { n } => write!(f, "kill {n} containers")?,
            Step::KillPool { pool } => write!(f, "kill every container of {}", p(pool))?,
            Step::Faults(profile) => write!(f, "faults {profile:?}")?,
            Step::Outage { secs } => write!(f, "Docker outage for {secs}s")?,
            Step::DaemonRestart { down_secs } => {
                write!(f, "dockerd restart (down {down_secs}s, containers die)")?
            }
            Step::Crash { down } => write!(f, "operator crash, restart after {down:?}")?,
            Step::Sigterm { down } => write!(f, "SIGTERM, restart after {down:?}")?,
            Step::Unreachable { pool, kill } => write!(
                f,
                "gateway cannot reach a container of {}{}",
                p(pool),
                if *kill { " (it died)" } else { "" }
            )?,
            Step::Foreign {
                other_instance,
                pool,
            } => write!(
                f,
                "foreign container ({}) named after {}",
                if *other_instance {
                    "another instance"
                } else {
                    "unlabelled"
                },
                p(pool)
            )?,
            Step::Quiet => write!(f, "quiet period")?,
        }
        write!(f, "; wait {:?}", self.wait)
    }
}

fn pick<T: Copy>(rng: &mut StdRng, weighted: &[(u32, T)]) -> T {
    let total: u32 = weighted.iter().map(|(w, _)| w).sum();
    let mut x = rng.random_range(0..total);
    for (w, v) in weighted {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    weighted[weighted.len() - 1].1
}

fn min_value(rng: &mut StdRng) -> u32 {
    pick(rng, &[(4, 0), (3, 1), (2, 2), (1, 3)])
}

fn max_value(rng: &mut StdRng) -> u32 {
    pick(rng, &[(3, 1), (3, 2), (2, 3), (1, 5), (1, 8)])
}

fn change(rng: &mut StdRng) -> Change {
    match rng.random_range(0..23) {
        0..=2 => Change::Min(min_value(rng)),
        3..=5 => Change::Max(max_value(rng)),
        6..=7 => {
            let v = max_value(rng);
            // Equal bounds.
            Change::MinMax(v, v)
        }
        8..=9 => Change::MinMax(min_value(rng), max_value(rng)),
        10..=11 => Change::MaxBelowLive {
            min_zero: rng.random_bool(0.6),
        },
        12..=13 => Change::Image(rng.random_range(0..IMAGES.len())),
        14 => Change::Env(rng.random_range(0..4)),
        15..=16 => Change::Thresholds {
            cpu: pick(rng, &[(1, 30), (2, 70), (1, 95), (1, 100)]),
            idle: pick(rng, &[(1, 1), (2, 10), (1, 29)]),
            mem_mb: pick(rng, &[(1, 50), (3, 300), (1, 2000)]),
        },
        17 => Change::Cooldown(pick(rng, &[(1, 1), (2, 5), (2, 10), (1, 30)])),
        18 => Change::Poll(pick(rng, &[(1, 500), (2, 1000), (2, 2000), (1, 5000)])),
        20..=22 => {
            let rps = pick(rng, &[(1, None), (1, Some(1)), (2, Some(20))]);
            Change::Signals {
                rps,
                predictive: rps.is_some() && rng.random_bool(0.5),
                metric: pick(rng, &[(1, None), (1, Some(1)), (2, Some(10))]),
            }
        }
        _ => Change::Cpus(pick(
            rng,
            &[(2, None), (1, Some(25)), (1, Some(50)), (1, Some(200))],
        )),
    }
}

fn wait(rng: &mut StdRng) -> Duration {
    // Mostly short (the loop's own timers: probes, polls, relists), sometimes past a
    // cooldown, a startup timeout or a hung call (60 s).
    let ms = pick(
        rng,
        &[
            (10, 0),
            (10, 20),
            (15, 250),
            (25, 1000),
            (20, 2000),
            (10, 5000),
            (3, 15_000),
            (1, 60_000),
        ],
    );
    Duration::from_millis(ms)
}

fn down(rng: &mut StdRng) -> Duration {
    Duration::from_millis(pick(rng, &[(3, 0), (2, 100), (2, 2000), (1, 20_000)]))
}

/// The steps of `seed`: the same every time.
pub fn generate(seed: u64, count: usize) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let pool = |rng: &mut StdRng| pick(rng, &[(4, 0), (3, 1), (2, 2), (2, 3)]);
    let file = |rng: &mut StdRng| rng.random_range(0..FILES.len());
    let mut steps = Vec::with_capacity(count + 1);
    for i in 0..count {
        let step = if i < 3 {
            // Start with some pools.
            Step::Add {
                pool: pool(&mut rng),
                file: file(&mut rng),
            }
        } else {
            match rng.random_range(0..100) {
                0..=17 => Step::Edit {
                    pool: pool(&mut rng),
                    change: change(&mut rng),
                },
                18..=21 => Step::Add {
                    pool: pool(&mut rng),
                    file: file(&mut rng),
                },
                22..=28 => Step::Break {
                    pool: pool(&mut rng),
                    kind: BREAKS[rng.random_range(0..BREAKS.len())],
                },
                29..=33 => Step::Fix {
                    pool: pool(&mut rng),
                },
                34 => Step::Duplicate {
                    pool: pool(&mut rng),
                    file: file(&mut rng),
                },
                35..=36 => Step::BreakFile {
                    file: file(&mut rng),
                    kind: match rng.random_range(0..5) {
                        0 => FileBreak::NotUtf8,
                        1 => FileBreak::Garbage,
                        2 => FileBreak::Empty,
                        3 => FileBreak::CommentsOnly,
                        _ => FileBreak::Truncated(rng.random::<f64>()),
                    },
                },
                37..=38 => Step::Truncate {
                    file: file(&mut rng),
                    cut: rng.random::<f64>(),
                    gap: Duration::from_millis(pick(&mut rng, &[(2, 0), (2, 30), (1, 500)])),
                },
                39..=40 => Step::FixFile {
                    file: file(&mut rng),
                },
                41..=43 => Step::Delete {
                    pool: pool(&mut rng),
                },
                44 => Step::DeleteFile {
                    file: file(&mut rng),
                },
                45..=47 => Step::Move {
                    pool: pool(&mut rng),
                    to: file(&mut rng),
                },
                48 => Step::RenameFile {
                    from: file(&mut rng),
                    to: file(&mut rng),
                },
                49 => Step::ForeignDoc {
                    file: file(&mut rng),
                },
                50..=57 => Step::Load {
                    pool: pool(&mut rng),
                    level: LEVELS[rng.random_range(0..LEVELS.len())],
                },
                58..=61 => Step::LoadAll(pick(
                    &mut rng,
                    &[
                        (3, LoadLevel::Idle),
                        (3, LoadLevel::Extreme),
                        (1, LoadLevel::Medium),
                        (1, LoadLevel::MemoryHeavy),
                    ],
                )),
                62..=65 => Step::Kill {
                    n: pick(&mut rng, &[(3, 1), (2, 2), (1, 5)]),
                },
                66 => Step::KillPool {
                    pool: pool(&mut rng),
                },
                67..=72 => Step::Faults(pick(
                    &mut rng,
                    &[
                        (3, Profile::None),
                        (3, Profile::Light),
                        (2, Profile::Heavy),
                        (1, Profile::CreatesFail),
                        (1, Profile::StartsFail),
                        (1, Profile::CrashLoop),
                        (1, Profile::RemovesFail),
                        (1, Profile::EventsLost),
                        (1, Profile::NeverReady),
                        (1, Profile::Timeouts),
                        (1, Profile::Flaky),
                        (2, Profile::ScrapesFail),
                    ],
                )),
                73..=75 => Step::Outage {
                    secs: pick(&mut rng, &[(2, 1), (2, 5), (2, 20), (1, 90)]),
                },
                76 => Step::DaemonRestart {
                    down_secs: pick(&mut rng, &[(1, 0), (2, 3), (1, 15)]),
                },
                77..=80 => Step::Crash {
                    down: down(&mut rng),
                },
                81..=82 => Step::Sigterm {
                    down: down(&mut rng),
                },
                83..=86 => Step::Unreachable {
                    pool: pool(&mut rng),
                    kill: rng.random_bool(0.3),
                },
                87 => Step::Foreign {
                    other_instance: rng.random_bool(0.6),
                    pool: pool(&mut rng),
                },
                88 => Step::Requests {
                    pool: pool(&mut rng),
                    n: pick(&mut rng, &[(2, 1), (2, 3), (1, 10)]),
                    hold: Duration::from_millis(pick(
                        &mut rng,
                        &[(1, 100), (2, 2_000), (2, 20_000)],
                    )),
                },
                89 => Step::Quiet,
                _ => Step::Edit {
                    pool: pool(&mut rng),
                    change: Change::MaxBelowLive {
                        min_zero: rng.random_bool(0.7),
                    },
                },
            }
        };
        steps.push(Planned {
            step,
            wait: wait(&mut rng),
        });
    }
    // Every seed ends quiet, then stops: everything must converge and shut down.
    steps.push(Planned {
        step: Step::Quiet,
        wait: Duration::ZERO,
    });
    steps.push(Planned {
        step: Step::Sigterm {
            down: Duration::ZERO,
        },
        wait: Duration::ZERO,
    });
    steps
}
