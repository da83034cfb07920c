//! Regression tests: scaling on the request rate (issue 17).

use std::time::Duration;

use invok::forecast::RateHistory;
use tokio::time::Instant;

/// Bug (found by the simulation's check that a steady request rate is met): a pool that
/// slept read no request rate at its next pass. A quiet pool passes only every 30 s, or
/// when something wakes it; the rate needed two samples of the arrival count within its
/// 6 s window, so the pass after the gap read none, judged the pool quiet (no rate), and
/// it slept again: a pool at zero whose requests kept waking it once never scaled on its
/// rate. The pass after a gap reads the rate over the gap.
#[test]
fn a_pool_that_slept_reads_its_request_rate_at_the_next_pass() {
    let start = Instant::now();
    let window = Duration::from_secs(6);
    let mut h = RateHistory::new(window);
    h.record(start, 0);
    // 30 s asleep, 600 requests meanwhile.
    h.record(start + Duration::from_secs(30), 600);
    assert_eq!(h.rate(window), Some(20.0));
}
