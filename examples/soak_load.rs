//! The soak's load and report (run by `scripts/soak.sh`, which starts the operator).
//!
//! Sends sawtooth, bursty and steady traffic through the gateway to the pools `saw`,
//! `burst` and `steady` for a duration, samples the operator's RSS and open file
//! descriptors, and at the end reads the operator's log for scale events and flaps (a
//! scale-down undone by a scale-up of the same pool within one cooldown, with no more
//! load offered at the scale-up than at the scale-down). Prints a
//! report; exits 1 when any request failed (any answer other than the function's own,
//! a documented 503 or 504) or the operator died.
//!
//! Plain threads and blocking sockets, one request per connection: the load is small
//! (tens of requests a second) and bounded in time, and a dependency-free client
//! measures the gateway rather than a client library.
//!
//! ```text
//! soak_load --gateway PORT --pid PID --log FILE --duration SECS [--cooldown SECS]
//! ```
#![allow(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "a load generator on the wall clock"
)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many workers of a shape send at `t` seconds into the run.
type Shape = fn(f64) -> usize;

/// One pool's traffic: its shape, its request, and the most workers it uses.
struct Load {
    pool: &'static str,
    path: &'static str,
    workers: usize,
    shape: Shape,
}

/// A 120 s sawtooth: ramps from 1 to 12 workers over 90 s, then 30 s of nothing.
fn sawtooth(t: f64) -> usize {
    let phase = t % 120.0;
    if phase < 90.0 {
        (phase / 90.0 * 12.0) as usize + 1
    } else {
        0
    }
}

/// Bursts: 16 workers for 4 s every 30 s, nothing in between.
fn bursts(t: f64) -> usize {
    if t % 30.0 < 4.0 {
        16
    } else {
        0
    }
}

fn steady(_: f64) -> usize {
    2
}

const LOADS: [Load; 3] = [
    Load {
        pool: "saw",
        path: "/?sleep=200",
        workers: 13,
        shape: sawtooth,
    },
    Load {
        pool: "burst",
        path: "/?sleep=100",
        workers: 16,
        shape: bursts,
    },
    Load {
        pool: "steady",
        path: "/?sleep=100",
        workers: 2,
        shape: steady,
    },
];

/// Statuses a client may get that are documented answers, not failures: the
/// function's own (200 here), 503 (no container in time, or the gateway full) and 504
/// (the pool's timeout).
fn failed(status: u16) -> bool {
    !matches!(status, 200 | 503 | 504)
}

fn request(port: u16, pool: &str, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let head = format!(
        "GET /function/{pool}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    let mut resp = Vec::new();
    if s.read_to_end(&mut resp).is_err() {
        return 0;
    }
    String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn rss_kb(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Seconds since midnight of a log line's leading RFC 3339 time, ANSI colours removed.
fn log_time(line: &str) -> Option<f64> {
    let plain: String = {
        let mut out = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let time = plain.split('T').nth(1)?.split('Z').next()?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Scale events per pool from the operator's log: (time, up?).
fn scale_events(log: &str) -> BTreeMap<String, Vec<(f64, bool)>> {
    let mut events: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    for line in log.lines() {
        let (pool, up) = if let Some(rest) = line.split("Successfully scaled up function ").nth(1) {
            (rest.split(' ').next(), true)
        } else if let Some(rest) = line.split(" for function ").nth(1) {
            if !line.contains("Scaled down container") {
                continue;
            }
            (rest.split_whitespace().next(), false)
        } else {
            continue;
        };
        if let (Some(pool), Some(t)) = (pool, log_time(line)) {
            events.entry(pool.to_string()).or_default().push((t, up));
        }
    }
    events
}

/// Scale-downs undone by a scale-up within `cooldown`, and among them the flaps: those
/// where the load offered at the scale-up (`offered`, by log time) was no higher than at
/// the scale-down. A pool scaled down after its load stopped and up again when load came
/// back followed the load; one scaled down and back up under the same load flapped.
fn undone(events: &[(f64, bool)], cooldown: f64, offered: impl Fn(f64) -> usize) -> (usize, usize) {
    let (mut undone, mut flaps) = (0, 0);
    for (i, (t, up)) in events.iter().enumerate() {
        if *up {
            continue;
        }
        let Some((t2, _)) = events[i + 1..].iter().find(|(_, up)| *up) else {
            continue;
        };
        if (t2 - t).rem_euclid(86_400.0) < cooldown {
            undone += 1;
            if offered(*t2) <= offered(*t) {
                flaps += 1;
            }
        }
    }
    (undone, flaps)
}

/// Seconds since midnight UTC now (the operator's log times are UTC).
fn time_of_day() -> f64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_secs_f64().rem_euclid(86_400.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let need = |name: &str| {
        arg(&args, name).unwrap_or_else(|| {
            eprintln!("usage: soak_load --gateway PORT --pid PID --log FILE --duration SECS [--cooldown SECS]");
            std::process::exit(2)
        })
    };
    let port: u16 = need("--gateway").parse().expect("--gateway PORT");
    let pid: u32 = need("--pid").parse().expect("--pid PID");
    let log = need("--log");
    let duration = Duration::from_secs(need("--duration").parse().expect("--duration SECS"));
    let cooldown: f64 =
        arg(&args, "--cooldown").map_or(30.0, |c| c.parse().expect("--cooldown SECS"));

    let start = Instant::now();
    let start_of_day = time_of_day();
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Mutex<BTreeMap<(&'static str, u16), u64>>> = Arc::default();
    let mut threads = Vec::new();
    for load in &LOADS {
        for worker in 0..load.workers {
            let (stop, counts) = (stop.clone(), counts.clone());
            let (pool, path, shape) = (load.pool, load.path, load.shape);
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if worker >= shape(start.elapsed().as_secs_f64()) {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let status = request(port, pool, path);
                    *counts.lock().unwrap().entry((pool, status)).or_default() += 1;
                }
            }));
        }
    }

    // Warm-up: the first tenth of the run, at most a minute; RSS after it is the base.
    let warm_up = (duration / 10).min(Duration::from_secs(60));
    let (mut rss_start, mut fds_start) = (None, None);
    let (mut rss_peak, mut alive) = (0u64, true);
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        let (Some(rss), Some(fds)) = (rss_kb(pid), open_fds(pid)) else {
            alive = false;
            break;
        };
        rss_peak = rss_peak.max(rss);
        if rss_start.is_none() && start.elapsed() >= warm_up {
            rss_start = Some(rss);
            fds_start = Some(fds);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let (rss_end, fds_end) = (rss_kb(pid), open_fds(pid));
    alive &= rss_end.is_some();

    let counts = counts.lock().unwrap().clone();
    let total: u64 = counts.values().sum();
    let bad: u64 = counts
        .iter()
        .filter(|((_, s), _)| failed(*s))
        .map(|(_, n)| n)
        .sum();
    println!("soak: {:?} of sawtooth, bursty and steady load", duration);
    for load in &LOADS {
        let by_status: BTreeMap<u16, u64> = counts
            .iter()
            .filter(|((p, _), _)| *p == load.pool)
            .map(|((_, s), n)| (*s, *n))
            .collect();
        println!("  {:<7} requests by status: {by_status:?}", load.pool);
    }
    println!("  requests answered: {total}, failed: {bad}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let events = scale_events(&text);
    for (pool, ev) in &events {
        let ups = ev.iter().filter(|(_, up)| *up).count();
        let shape = LOADS.iter().find(|l| l.pool == pool).map(|l| l.shape);
        let offered = |t: f64| shape.map_or(0, |f| f((t - start_of_day).rem_euclid(86_400.0)));
        let (undone, flaps) = undone(ev, cooldown, offered);
        println!(
            "  {pool:<7} scale-ups: {ups}, scale-downs: {}, undone within {cooldown} s: {undone}, flaps (undone with no more load offered): {flaps}",
            ev.len() - ups,
        );
    }
    let growth = match (rss_start, rss_end) {
        (Some(a), Some(b)) if a > 0 => (b as f64 - a as f64) * 100.0 / a as f64,
        _ => f64::NAN,
    };
    println!(
        "  operator RSS after warm-up {} KiB, at the end {} KiB ({growth:+.1}%), peak {rss_peak} KiB",
        rss_start.unwrap_or(0),
        rss_end.unwrap_or(0)
    );
    println!(
        "  operator open file descriptors after warm-up {}, at the end {}",
        fds_start.unwrap_or(0),
        fds_end.unwrap_or(0)
    );
    if !alive {
        println!("  the operator died");
    }
    if bad > 0 || !alive || total == 0 {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_down_undone_within_the_cooldown_is_a_flap() {
        let ev = [
            (10.0, true),
            (50.0, false),
            (70.0, true),
            (200.0, false),
            (300.0, true),
        ];
        let steady = |_: f64| 3;
        assert_eq!(undone(&ev, 30.0, steady), (1, 1));
        assert_eq!(undone(&ev, 101.0, steady), (2, 2));
        assert_eq!(undone(&[], 30.0, steady), (0, 0));
        // Load that stopped and came back: followed, not flapped.
        let back = |t: f64| if t < 60.0 { 0 } else { 5 };
        assert_eq!(undone(&ev, 30.0, back), (1, 0));
        // Load that fell further: the scale-up had no cause.
        let falling = |t: f64| if t < 60.0 { 5 } else { 2 };
        assert_eq!(undone(&ev, 30.0, falling), (1, 1));
    }

    #[test]
    fn scale_events_are_read_from_log_lines_with_colours() {
        let log = "\u{1b}[2m2026-12-03T10:00:05.5Z\u{1b}[0m INFO x: Successfully scaled up function saw with container invok-saw-1\n\
                   2026-12-03T10:01:00Z INFO x: Scaled down container invok-saw-1 for function saw\n\
                   2026-12-03T10:02:00Z INFO x: Created container invok-burst-2 for function burst\n";
        let ev = scale_events(log);
        assert_eq!(ev["saw"], vec![(36005.5, true), (36060.0, false)]);
        assert!(!ev.contains_key("burst"), "a create is not a scale event");
    }

    #[test]
    fn only_undocumented_answers_are_failures() {
        assert!(!failed(200) && !failed(503) && !failed(504));
        assert!(failed(0) && failed(502) && failed(500) && failed(404));
    }
}
