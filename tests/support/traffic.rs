//! Bounded traffic through the gateway, recorded request by request for a checker.
//!
//! [`Traffic::start`] runs `workers` threads, each sending one request at a time to
//! `/function/{pool}{path}` over a new connection, until stopped or `max` has passed (so
//! it always ends). Every request becomes a [`Sent`]: when it started and ended, its
//! status (0: no answer at all), the container that answered (`X-Invok-Container`) and,
//! for errors, the gateway's JSON message. A chaos test's checker then asserts over the
//! whole history, as Jepsen's do, rather than over a sample.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request and what became of it.
#[derive(Clone, Debug)]
pub struct Sent {
    /// When it was sent.
    pub started: Instant,
    /// When its answer ended (or the connection failed).
    pub ended: Instant,
    /// The HTTP status; 0 when no answer came (refused, reset, timed out).
    pub status: u16,
    /// The container that answered, from `X-Invok-Container`.
    pub container: Option<String>,
    /// The body of an answer that was not a 2xx (the gateway's JSON error), or the
    /// connection error.
    pub error: Option<String>,
}

/// Traffic running in the background.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Sent>>>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// One request over a new connection.
pub fn send_one(port: u16, pool: &str, path: &str) -> Sent {
    let started = Instant::now();
    let result = (|| -> Result<(u16, String, String), String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = format!(
            "GET /function/{pool}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&resp).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status in {text:?}"))?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Ok((status, head.to_string(), body.to_string()))
    })();
    let ended = Instant::now();
    match result {
        Ok((status, head, body)) => Sent {
            started,
            ended,
            status,
            container: super::header_value(&head, "x-invok-container"),
            error: (!(200..300).contains(&status)).then_some(body),
        },
        Err(e) => Sent {
            started,
            ended,
            status: 0,
            container: None,
            error: Some(e),
        },
    }
}

impl Traffic {
    /// Starts `workers` senders of `path` to `pool` through the gateway on `port`.
    pub fn start(port: u16, pool: &str, path: &str, workers: usize, max: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let deadline = Instant::now() + max;
        let workers = (0..workers)
            .map(|_| {
                let (stop, log) = (stop.clone(), log.clone());
                let (pool, path) = (pool.to_string(), path.to_string());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let sent = send_one(port, &pool, &path);
                        log.lock().unwrap().push(sent);
                    }
                })
            })
            .collect();
        Traffic { stop, log, workers }
    }

    /// Requests answered so far.
    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits until `n` more requests have been answered (or `limit` passed: panics).
    pub fn wait_more(&self, n: usize, limit: Duration) {
        let target = self.count() + n;
        super::eventually(limit, &format!("{n} more requests answered"), || {
            self.count() >= target
        });
    }

    /// Stops the senders, waits for their last requests, and returns the history.
    pub fn stop(mut self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Counts by status, for messages: `{200: 812, 502: 3}`.
pub fn by_status(history: &[Sent]) -> std::collections::BTreeMap<u16, usize> {
    let mut m = std::collections::BTreeMap::new();
    for s in history {
        *m.entry(s.status).or_default() += 1;
    }
    m
}
