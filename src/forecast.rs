//! Predictive scaling's memory and model: each pool's request-rate history over a bounded
//! window, and a forecast of the rate a little ahead, so a pool can scale up before the
//! load arrives instead of after containers are already overloaded.
//!
//! The model is deliberately small and explainable, because its output is shown in status
//! next to the rate that was then observed:
//!
//! - [`Model::Trend`]: Holt's linear trend (double exponential smoothing) over the rates
//!   between consecutive samples; the forecast is `level + trend * horizon`.
//! - [`Model::Seasonal`]: once the history spans two candidate periods and its
//!   autocorrelation shows a strong repeating pattern, the rate observed one period before
//!   the horizon (seasonal naive), or the trend's forecast if that is higher.
//!
//! A forecast only ever adds capacity (the caller takes the larger of it and the observed
//! load), so every rule here errs high rather than low, and every value is finite and
//! non-negative whatever the samples: empty, zero, equal timestamps, huge counts, resets.
//!
//! Nothing here does IO or reads a clock: `now` comes in as an argument. Sample counts
//! and indexes are integers, so `clippy::arithmetic_side_effects` is denied as in
//! [`crate::scaler`]; the model itself is floating point.
#![deny(clippy::arithmetic_side_effects, clippy::too_many_lines)]

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The most samples a [`RateHistory`] keeps, whatever the spacing: 4096 samples of 24
/// bytes are under 100 KiB per pool, and at the usual 2-second poll they cover over two
/// hours, more than any forecasting window needs. A pool polled faster than its window
/// allows keeps the newest 4096.
pub const MAX_SAMPLES: usize = 4096;

/// Intervals (rates between consecutive samples) before any forecast: with fewer, Holt's
/// trend is the slope of two or three noisy points.
const MIN_POINTS: usize = 3;

/// The sample spacing the smoothing constants are stated for (the default pollInterval).
/// A gap of `g` seconds weighs as `g / 2` such steps, so irregular spacing smooths over
/// the same span of time as regular 2-second samples would.
const REFERENCE_GAP_SECONDS: f64 = 2.0;

/// Holt's level smoothing per 2-second step: the newest rate counts 30 %, so the level
/// forgets half of its past in two polls (0.7^2 = 0.49): it follows a rise within a few
/// polls while averaging out the Poisson noise of a single 2-second count.
const ALPHA: f64 = 0.3;

/// Holt's trend smoothing per 2-second step: the trend is multiplied by the horizon
/// (tens of seconds), so its noise is amplified most; 0.1 averages the slope over about
/// ten polls (20 s). An exact ramp is still followed without lag (Holt has no
/// steady-state error on a linear trend).
const BETA: f64 = 0.1;

/// Points of the least-squares line that starts Holt's level and trend: a slope from the
/// first two noisy points would take many polls to forget at [`BETA`] = 0.1.
const INIT_POINTS: usize = 8;

/// The shortest period looked for: shorter "patterns" are the noise of a few polls, and
/// a container starts in seconds, so a forecast cannot act on them anyway.
const MIN_PERIOD_SECONDS: f64 = 10.0;

/// Regular steps the history is resampled to before the autocorrelation: bounds its cost
/// at 300 x 150 lags whatever the sample count, at 1 s resolution over 5 minutes.
const RESAMPLE_STEPS: usize = 300;

/// The correlation between the series and itself shifted by a lag that counts as a
/// repeating pattern: 0.6 means the shifted copy explains over a third of the variance
/// (r^2 = 0.36), well above what noise produces over [`MIN_OVERLAP_POINTS`] observations.
const MIN_CORRELATION: f64 = 0.6;

/// Independent observations (sample intervals) the series and its shifted copy must
/// share for a lag to count: with 30, a correlation of 0.6 from pure noise is a one in
/// several thousand event per lag, so noise is not mistaken for a season.
const MIN_OVERLAP_POINTS: usize = 30;

/// A series whose spread (standard deviation, after removing its linear trend) is under
/// 5 % of its mean rate is flat: constant load, or a pure ramp, has no season to find
/// and only its rounding noise would correlate.
const FLAT_SPREAD: f64 = 0.05;

/// One pool's request arrivals over time.
///
/// Cumulative arrival counts sampled at the pool's pollInterval (irregular spacing
/// works), kept for `window` plus the one sample just older, so a rate over the whole
/// window has a start point. Memory is bounded twice: by the window, and by
/// [`MAX_SAMPLES`] whatever the spacing.
///
/// ```
/// use std::time::Duration;
/// use invok::forecast::{Model, RateHistory};
///
/// let start = tokio::time::Instant::now();
/// let mut history = RateHistory::new(Duration::from_secs(60));
/// for i in 0..10u64 {
///     // 20 requests every 2 s.
///     history.record(start + Duration::from_secs(2 * i), 20 * i);
/// }
/// assert_eq!(history.rate(Duration::from_secs(60)), Some(10.0));
/// let forecast = history.forecast(Duration::from_secs(30)).unwrap();
/// assert!((forecast.rate - 10.0).abs() < 1e-9);
/// assert_eq!(forecast.model, Model::Trend);
/// ```
#[derive(Clone, Debug)]
pub struct RateHistory {
    /// How far back samples are kept (the pool's forecasting window).
    window: Duration,
    /// Strictly increasing in time, non-decreasing in total (a reset clears it).
    samples: VecDeque<Sample>,
}

/// One reading of a pool's arrival counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    at: Instant,
    total: u64,
}

impl RateHistory {
    /// An empty history that keeps `window` of samples.
    pub fn new(window: Duration) -> RateHistory {
        RateHistory {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Changes the window (a manifest edit); drops what is now too old.
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
        self.prune();
    }

    /// Records the cumulative arrivals counted by `now`.
    ///
    /// A count lower than the last one (the counter was reset: a gateway restart) restarts
    /// the series rather than producing a negative rate. A sample at or before the last
    /// sample's time is ignored, so a repeated poll cannot make a zero-length interval.
    pub fn record(&mut self, now: Instant, total: u64) {
        if let Some(last) = self.samples.back() {
            if now <= last.at {
                return;
            }
            if total < last.total {
                self.samples.clear();
            }
        }
        self.samples.push_back(Sample { at: now, total });
        self.prune();
        debug_assert!(self.samples.len() <= MAX_SAMPLES);
    }

    /// Drops samples beyond the cap, then those older than the window except the one
    /// just older (the start point of a rate over the whole window).
    fn prune(&mut self) {
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
        let Some(newest) = self.samples.back().map(|s| s.at) else {
            return;
        };
        while self
            .samples
            .get(1)
            .is_some_and(|s| newest.duration_since(s.at) >= self.window)
        {
            self.samples.pop_front();
        }
    }

    /// Requests per second over the last `over`: from the oldest sample within `over` of
    /// the newest, to the newest. When no other sample lies within `over` (the samples
    /// were sparse: a pool that slept), from the one just before instead, over the longer
    /// span: a pass after a long gap still reads a rate, rather than none at every pass
    /// (which kept a sleeping pool asleep). None with fewer than two samples spanning
    /// > 0 s.
    pub fn rate(&self, over: Duration) -> Option<f64> {
        let newest = self.samples.back()?;
        let within = self
            .samples
            .iter()
            .position(|s| newest.at.duration_since(s.at) <= over)?;
        let last = self.samples.len().checked_sub(1)?;
        let start = if within == last {
            within.checked_sub(1)?
        } else {
            within
        };
        interval_rate(*self.samples.get(start)?, *newest)
    }

    /// The rates between consecutive samples as `(seconds since the first sample, rate)`
    /// points, each at the end of its interval: what the forecaster reads; exposed for
    /// tests and for the dashboard.
    pub fn points(&self) -> Vec<(f64, f64)> {
        intervals(&self.samples)
            .iter()
            .map(|i| (i.end, i.rate))
            .collect()
    }

    /// The forecast of the request rate `horizon` after the newest sample; None until the
    /// history holds three intervals.
    ///
    /// Holt's trend always (extrapolated at most as far ahead as the history reaches
    /// back); the seasonal-naive value too when a period is found, and then
    /// the higher of the two, since a forecast only ever adds capacity.
    pub fn forecast(&self, horizon: Duration) -> Option<Forecast> {
        let points = intervals(&self.samples);
        if points.len() < MIN_POINTS {
            return None;
        }
        let horizon = horizon.as_secs_f64();
        // A trend is extrapolated no further ahead than the history reaches back: a
        // slope read from 2 s of samples says little about 30 s later (the first
        // version sent a pool to max on the first requests of a ramp).
        let span = points.last().map_or(0.0, |p| p.end);
        let trend = non_negative(holt(&points).at(horizon.min(span)));
        let forecast = match seasonal_period(&self.samples, points.len()) {
            Some(period) => {
                let newest = points.last().map_or(0.0, |p| p.end);
                // The same phase of an earlier period: one period before the horizon, or
                // whole periods more when the horizon is longer than a period.
                let at = newest - period + horizon.rem_euclid(period);
                Forecast {
                    rate: trend.max(non_negative(rate_at(&points, at))),
                    model: Model::Seasonal {
                        period_seconds: period,
                    },
                }
            }
            None => Forecast {
                rate: trend,
                model: Model::Trend,
            },
        };
        debug_assert!(forecast.rate.is_finite() && forecast.rate >= 0.0);
        Some(forecast)
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No sample held yet (or since a reset cleared them, before the next one).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// A forecast and how it was made (shown in status next to the observed rate, so a
/// forecast that was wrong is visible).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Forecast {
    /// Requests per second expected at the horizon (never negative, finite).
    pub rate: f64,
    /// Which model made it.
    pub model: Model,
}

/// The model behind a [`Forecast`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Model {
    /// Holt's linear trend (level + trend * horizon).
    Trend,
    /// A repeating pattern of this period was found in the history: the rate one period
    /// before the horizon (seasonal naive), or the trend if that is higher.
    #[serde(rename_all = "camelCase")]
    Seasonal {
        /// The period found, in seconds.
        period_seconds: f64,
    },
}

/// The rate of one interval between consecutive samples.
#[derive(Clone, Copy, Debug)]
struct Interval {
    /// Seconds from the first sample to the end of the interval.
    end: f64,
    /// The interval's length in seconds (> 0: sample times strictly increase). Taken
    /// from the two instants, not from `end`s, so it stays exact far from the start.
    gap: f64,
    /// Requests per second over the interval.
    rate: f64,
}

/// Requests per second from `a` to `b`; None over no time.
fn interval_rate(a: Sample, b: Sample) -> Option<f64> {
    let seconds = b.at.duration_since(a.at).as_secs_f64();
    (seconds > 0.0).then(|| non_negative(b.total.saturating_sub(a.total) as f64 / seconds))
}

fn intervals(samples: &VecDeque<Sample>) -> Vec<Interval> {
    let Some(first) = samples.front() else {
        return Vec::new();
    };
    samples
        .iter()
        .zip(samples.iter().skip(1))
        .filter_map(|(a, b)| {
            Some(Interval {
                end: b.at.duration_since(first.at).as_secs_f64(),
                gap: b.at.duration_since(a.at).as_secs_f64(),
                rate: interval_rate(*a, *b)?,
            })
        })
        .collect()
}

/// `x` made finite and non-negative: NaN and -inf become 0, +inf the largest float.
fn non_negative(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, f64::MAX)
    }
}

/// Holt's state after the last point: the rate now and its change per second.
#[derive(Clone, Copy, Debug)]
struct Holt {
    level: f64,
    trend: f64,
}

impl Holt {
    fn at(self, horizon_seconds: f64) -> f64 {
        self.level + self.trend * horizon_seconds
    }
}

/// A smoothing constant stated per 2-second step, for a gap of `gap` seconds:
/// `1 - (1 - c)^(gap / 2)`, so two 1-second gaps smooth as much as one 2-second gap.
fn per_gap(constant: f64, gap: f64) -> f64 {
    -((gap / REFERENCE_GAP_SECONDS) * (1.0 - constant).ln()).exp_m1()
}

/// Holt's linear trend over irregularly spaced points, started from the least-squares
/// line through the first [`INIT_POINTS`].
fn holt(points: &[Interval]) -> Holt {
    let head = points.get(..INIT_POINTS).unwrap_or(points);
    let (slope, intercept) = least_squares(head.iter().map(|p| (p.end, p.rate)));
    let first = points.first().map_or(0.0, |p| p.end);
    let mut state = Holt {
        level: intercept + slope * first,
        trend: slope,
    };
    for p in points.iter().skip(1) {
        let alpha = per_gap(ALPHA, p.gap);
        let beta = per_gap(BETA, p.gap);
        let level = alpha * p.rate + (1.0 - alpha) * state.at(p.gap);
        let trend = beta * (level - state.level) / p.gap + (1.0 - beta) * state.trend;
        state = if level.is_finite() && trend.is_finite() {
            Holt { level, trend }
        } else {
            // Only reachable with rates near f64::MAX: restart flat at the newest rate.
            Holt {
                level: p.rate,
                trend: 0.0,
            }
        };
    }
    state
}

/// The least-squares line `(slope, intercept)` through `(x, y)` points; flat through the
/// mean when the x values do not spread.
fn least_squares(points: impl Iterator<Item = (f64, f64)> + Clone) -> (f64, f64) {
    let (mut n, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (x, y) in points.clone() {
        n += 1.0;
        sx += x;
        sy += y;
    }
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    if slope.is_finite() {
        (slope, my - slope * mx)
    } else {
        (0.0, my)
    }
}

/// The observed rate at `at` seconds since the first sample: the rate of the interval
/// that contains it (what was counted then, without smearing a burst's edges).
fn rate_at(points: &[Interval], at: f64) -> f64 {
    let index = points
        .partition_point(|p| p.end < at)
        .min(points.len().saturating_sub(1));
    points.get(index).map_or(0.0, |p| p.rate)
}

/// The period of a repeating pattern in the history, in seconds, if there is a strong one.
///
/// The cumulative counts are resampled to [`RESAMPLE_STEPS`] regular steps (the mean rate
/// in each: irregular samples and bounded cost), the least-squares line is removed (a
/// ramp correlates with itself at every lag), and the period is the lag of highest
/// correlation in the first run of lags from [`MIN_PERIOD_SECONDS`] to half the history
/// whose correlation reaches [`MIN_CORRELATION`], past the run around lag 0 (neighbouring
/// steps are alike in any smooth series), refined between steps by a parabola.
fn seasonal_period(samples: &VecDeque<Sample>, point_count: usize) -> Option<f64> {
    let first = samples.front()?;
    let last = samples.back()?;
    let span = last.at.duration_since(first.at).as_secs_f64();
    if span < 2.0 * MIN_PERIOD_SECONDS || point_count < MIN_OVERLAP_POINTS {
        return None;
    }
    let step = span / RESAMPLE_STEPS as f64;
    let series = detrended(resample(samples, step))?;
    let max_lag = RESAMPLE_STEPS / 2;
    let correlations: Vec<f64> = (0..=max_lag)
        .map(|lag| lag_correlation(&series, lag))
        .collect();
    let past_zero = correlations.iter().position(|&c| c < MIN_CORRELATION)?;
    let min_lag = (MIN_PERIOD_SECONDS / step).ceil() as usize;
    let mut lag = past_zero.max(min_lag);
    while lag < max_lag {
        let start = lag.saturating_add(
            correlations
                .get(lag..)?
                .iter()
                .position(|&c| c >= MIN_CORRELATION)?,
        );
        let run = correlations
            .get(start..)?
            .iter()
            .take_while(|&&c| c >= MIN_CORRELATION)
            .count();
        let end = start.saturating_add(run);
        let peak = (start..end).max_by(|&a, &b| correlations[a].total_cmp(&correlations[b]))?;
        // Fewer shared observations at longer lags: past this one, none can count.
        let shared =
            point_count.saturating_mul(RESAMPLE_STEPS.saturating_sub(peak)) / RESAMPLE_STEPS;
        if shared < MIN_OVERLAP_POINTS {
            return None;
        }
        // A run cut off by the search's bounds has its peak outside them.
        let (before, after) = (peak.checked_sub(1)?, peak.saturating_add(1));
        if peak > start || (peak == start && correlations[before] < correlations[peak]) {
            if let Some(&next) = correlations.get(after) {
                let offset = parabola_vertex(correlations[before], correlations[peak], next);
                return Some((peak as f64 + offset) * step);
            }
        }
        lag = end;
    }
    None
}

/// The mean rate in each of [`RESAMPLE_STEPS`] steps of `step` seconds, from the
/// cumulative counts interpolated linearly between samples (the rate is taken as constant
/// between two samples, as the counts show nothing finer).
fn resample(samples: &VecDeque<Sample>, step: f64) -> Vec<f64> {
    let Some(first) = samples.front() else {
        return Vec::new();
    };
    let cumulative: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| {
            (
                s.at.duration_since(first.at).as_secs_f64(),
                s.total.saturating_sub(first.total) as f64,
            )
        })
        .collect();
    let count_at = |t: f64| {
        let after = cumulative
            .partition_point(|&(x, _)| x < t)
            .clamp(1, cumulative.len().saturating_sub(1).max(1));
        let (Some(&(x0, c0)), Some(&(x1, c1))) = (
            cumulative.get(after.saturating_sub(1)),
            cumulative.get(after),
        ) else {
            return 0.0;
        };
        let fraction = if x1 > x0 {
            ((t - x0) / (x1 - x0)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        c0 + (c1 - c0) * fraction
    };
    let counts: Vec<f64> = (0..=RESAMPLE_STEPS)
        .map(|k| count_at(k as f64 * step))
        .collect();
    counts.windows(2).map(|w| (w[1] - w[0]) / step).collect()
}

/// `series` less its least-squares line; None when what remains is flat (spread under
/// [`FLAT_SPREAD`] of the mean, or no spread at all) or not finite.
fn detrended(series: Vec<f64>) -> Option<Vec<f64>> {
    let n = series.len() as f64;
    let mean = series.iter().sum::<f64>() / n;
    let (slope, intercept) = least_squares(series.iter().enumerate().map(|(k, &y)| (k as f64, y)));
    let residuals: Vec<f64> = series
        .iter()
        .enumerate()
        .map(|(k, &y)| y - (intercept + slope * k as f64))
        .collect();
    let spread = (residuals.iter().map(|r| r * r).sum::<f64>() / n).sqrt();
    let varies = spread.is_finite() && spread > FLAT_SPREAD * mean.abs();
    varies.then_some(residuals)
}

/// The Pearson correlation of `series` with itself shifted by `lag` steps, each part
/// against its own mean (so a strong pattern scores near 1 at any lag, not decaying
/// with the shrinking overlap); 0 where a part does not vary.
fn lag_correlation(series: &[f64], lag: usize) -> f64 {
    let n = series.len().saturating_sub(lag);
    let (Some(a), Some(b)) = (series.get(..n), series.get(lag..)) else {
        return 0.0;
    };
    if n < 2 {
        return 0.0;
    }
    let count = n as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / count, b.iter().sum::<f64>() / count);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    let r = cov / (va * vb).sqrt();
    if r.is_finite() && va > 0.0 && vb > 0.0 {
        r.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

/// Where between three equally spaced values the parabola through them peaks, as an
/// offset from the middle one in [-0.5, 0.5] steps.
fn parabola_vertex(before: f64, at: f64, after: f64) -> f64 {
    let curvature = before - 2.0 * at + after;
    let offset = 0.5 * (before - after) / curvature;
    if offset.is_finite() {
        offset.clamp(-0.5, 0.5)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    // Test clocks and counters are built with `+`; an overflow here fails the test loudly,
    // which is what a test wants.
    #![allow(clippy::arithmetic_side_effects)]

    use super::*;
    use proptest::prelude::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A history fed `count(t)` every `every` seconds from t = 0 to t = `until`.
    fn fed(
        window: u64,
        every: u64,
        until: u64,
        count: impl Fn(u64) -> u64,
    ) -> (Instant, RateHistory) {
        let start = Instant::now();
        let mut h = RateHistory::new(secs(window));
        for t in (0..=until).step_by(every as usize) {
            h.record(start + secs(t), count(t));
        }
        (start, h)
    }

    /// Arrivals by `t` of 20 s bursts of 50 rps starting every 60 s (at 0, 60, 120, ...).
    fn bursts(t: u64) -> u64 {
        (t / 60) * 20 * 50 + (t % 60).min(20) * 50
    }

    #[test]
    fn a_constant_rate_forecasts_that_rate() {
        let (_, h) = fed(600, 2, 120, |t| 10 * t);
        let f = h.forecast(secs(30)).unwrap();
        assert!((f.rate - 10.0).abs() < 1e-9, "{f:?}");
        assert_eq!(f.model, Model::Trend);
    }

    #[test]
    fn a_rising_ramp_is_forecast_ahead_by_slope_times_horizon() {
        // rate(t) = 1 + 0.5 t rps, so arrivals = t + t^2 / 4 (rounded down to whole requests).
        let (_, h) = fed(600, 2, 120, |t| t + t * t / 4);
        let last = h.points().last().unwrap().1;
        let f = h.forecast(secs(30)).unwrap();
        let ahead = f.rate - last;
        assert!(
            (ahead - 0.5 * 30.0).abs() <= 0.15 * 15.0,
            "last {last}, {f:?}"
        );
        assert_eq!(f.model, Model::Trend);
    }

    #[test]
    fn a_falling_ramp_never_forecasts_below_zero() {
        // rate(t) = 100 - t rps until it reaches 0 at t = 100, then nothing.
        let count = |t: u64| {
            let t = t.min(100);
            100 * t - t * t / 2
        };
        let start = Instant::now();
        let mut h = RateHistory::new(secs(600));
        for t in (0..=160).step_by(2) {
            h.record(start + secs(t), count(t));
            if let Some(f) = h.forecast(secs(60)) {
                assert!(f.rate.is_finite() && f.rate >= 0.0, "t={t} {f:?}");
                if (70..=100).contains(&t) {
                    // 60 s ahead the ramp is below zero: the forecast stops there.
                    assert_eq!(f.rate, 0.0, "t={t} {f:?}");
                }
            }
        }
    }

    #[test]
    fn a_periodic_burst_is_found_and_forecast_before_it_starts() {
        // Five minutes of 2 s samples; at t = 290 the rate is 0 and a burst starts at 300.
        let (_, h) = fed(600, 2, 290, bursts);
        assert_eq!(h.points().last().unwrap().1, 0.0);
        let f = h.forecast(secs(15)).unwrap();
        let Model::Seasonal { period_seconds } = f.model else {
            panic!("no season found: {f:?}");
        };
        assert!((period_seconds - 60.0).abs() <= 2.0, "{f:?}");
        assert!(f.rate >= 45.0, "{f:?}");
        // And no burst is forecast where none comes: 30 s after the burst at 240 began.
        let (_, h) = fed(600, 2, 270, bursts);
        let f = h.forecast(secs(10)).unwrap();
        assert!(matches!(f.model, Model::Seasonal { .. }), "{f:?}");
        assert!(f.rate < 5.0, "{f:?}");
    }

    #[test]
    fn noise_around_a_constant_rate_is_not_a_season() {
        // A fixed linear congruential generator: 20 rps +- 5, five minutes of 2 s samples.
        let mut seed: u64 = 42;
        let mut total = 0;
        let start = Instant::now();
        let mut h = RateHistory::new(secs(600));
        for t in (0..=300).step_by(2) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            total += 30 + (seed >> 33) % 21;
            h.record(start + secs(t), total);
        }
        let f = h.forecast(secs(30)).unwrap();
        assert_eq!(f.model, Model::Trend, "{f:?}");
        assert!(f.rate.is_finite() && f.rate > 0.0);
    }

    #[test]
    fn a_ramp_is_not_a_season() {
        let (_, h) = fed(600, 2, 300, |t| t * t);
        assert_eq!(h.forecast(secs(30)).unwrap().model, Model::Trend);
    }

    #[test]
    fn forecast_waits_for_three_intervals() {
        let start = Instant::now();
        let mut h = RateHistory::new(secs(60));
        assert_eq!(h.forecast(secs(10)), None);
        for i in 0..3 {
            h.record(start + secs(2 * i), 10 * i);
            assert_eq!(h.forecast(secs(10)), None);
        }
        h.record(start + secs(6), 30);
        assert!(h.forecast(secs(10)).is_some());
    }

    #[test]
    fn the_window_bounds_the_history() {
        let (_, h) = fed(60, 1, 9_999, |t| 3 * t);
        assert!(h.len() <= 62, "{}", h.len());
        // All of the window is still there, from the one sample just older.
        assert_eq!(h.rate(secs(60)), Some(3.0));
        assert_eq!(h.len(), 61);
    }

    #[test]
    fn the_sample_cap_bounds_a_finely_polled_history() {
        let start = Instant::now();
        let mut h = RateHistory::new(secs(86_400));
        for i in 0..10_000u64 {
            h.record(start + Duration::from_millis(i), i);
        }
        assert_eq!(h.len(), MAX_SAMPLES);
    }

    #[test]
    fn a_shorter_window_drops_what_is_now_too_old() {
        let (_, mut h) = fed(600, 1, 300, |t| t);
        assert_eq!(h.len(), 301);
        h.set_window(secs(10));
        assert_eq!(h.len(), 11);
        assert_eq!(h.rate(secs(600)), Some(1.0));
    }

    #[test]
    fn a_counter_reset_restarts_the_series() {
        let start = Instant::now();
        let mut h = RateHistory::new(secs(60));
        for i in 0..5 {
            h.record(start + secs(i), 1_000 + 100 * i);
        }
        h.record(start + secs(5), 7);
        assert_eq!(h.len(), 1);
        assert_eq!(h.rate(secs(60)), None);
        h.record(start + secs(6), 17);
        assert_eq!(h.rate(secs(60)), Some(10.0));
        assert!(h.points().iter().all(|&(_, r)| r >= 0.0));
    }

    #[test]
    fn samples_at_or_before_the_last_time_are_ignored() {
        let start = Instant::now();
        let mut h = RateHistory::new(secs(60));
        h.record(start + secs(2), 10);
        h.record(start + secs(2), 500);
        h.record(start + secs(1), 600);
        assert_eq!(h.len(), 1);
        h.record(start + secs(4), 30);
        assert_eq!(h.rate(secs(60)), Some(10.0));
    }

    #[test]
    fn rate_over_a_span_is_exact_on_known_counts() {
        let start = Instant::now();
        let mut h = RateHistory::new(secs(60));
        assert_eq!(h.rate(secs(10)), None);
        // Irregular spacing: 0 s, 1 s, 3 s, 7 s, 8 s.
        for (t, n) in [(0, 0), (1, 4), (3, 10), (7, 50), (8, 53)] {
            h.record(start + secs(t), n);
        }
        // Nothing else within 0 s: from the sample before.
        assert_eq!(h.rate(secs(0)), Some(3.0));
        assert_eq!(h.rate(secs(1)), Some(3.0)); // 7 s -> 8 s
        assert_eq!(h.rate(secs(5)), Some(43.0 / 5.0)); // 3 s -> 8 s
        assert_eq!(h.rate(secs(6)), Some(43.0 / 5.0)); // 1 s is 7 s back: outside
        assert_eq!(h.rate(secs(60)), Some(53.0 / 8.0)); // 0 s -> 8 s
        assert_eq!(
            h.points(),
            vec![(1.0, 4.0), (3.0, 3.0), (7.0, 10.0), (8.0, 3.0)]
        );
    }

    /// Three seconds of a steep start do not forecast thirty seconds of it.
    #[test]
    fn a_short_history_is_extrapolated_no_further_than_it_reaches_back() {
        let start = Instant::now();
        let mut h = RateHistory::new(secs(600));
        // 0, 10, 20, 30 requests/s over 0.5 s steps: a slope of 20 /s per second.
        let mut total = 0;
        for i in 0..=4u64 {
            total += i * 5;
            h.record(start + Duration::from_millis(i * 500), total);
        }
        let f = h.forecast(secs(30)).unwrap();
        // 2 s of history: at most about 30 + 20 * 2, not 30 + 20 * 30.
        assert!(f.rate < 100.0, "{f:?}");
    }

    /// A pool that slept 30 s between passes still reads a rate at the next pass (over
    /// the 30 s), not none: with none it was judged idle and slept again, for ever.
    #[test]
    fn a_rate_is_read_across_a_gap_longer_than_its_window() {
        let start = Instant::now();
        let mut h = RateHistory::new(secs(6));
        h.record(start, 100);
        h.record(start + secs(30), 400);
        assert_eq!(h.rate(secs(6)), Some(10.0));
        h.record(start + secs(31), 420);
        assert_eq!(h.rate(secs(6)), Some(20.0), "within the window again");
    }

    #[test]
    fn huge_counts_and_instants_stay_finite() {
        let start = Instant::now();
        let mut h = RateHistory::new(Duration::MAX);
        h.record(start, 0);
        h.record(start + Duration::from_nanos(1), u64::MAX / 2);
        h.record(start + Duration::from_nanos(2), u64::MAX);
        h.record(start + secs(1), u64::MAX);
        let f = h.forecast(Duration::MAX).unwrap();
        assert!(f.rate.is_finite() && f.rate >= 0.0, "{f:?}");
    }

    #[test]
    fn a_forecast_reads_back_from_camel_case_json() {
        let f = Forecast {
            rate: 12.5,
            model: Model::Seasonal {
                period_seconds: 60.0,
            },
        };
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(
            json,
            r#"{"rate":12.5,"model":{"kind":"seasonal","periodSeconds":60.0}}"#
        );
        assert_eq!(serde_json::from_str::<Forecast>(&json).unwrap(), f);
        let trend = serde_json::to_string(&Model::Trend).unwrap();
        assert_eq!(trend, r#"{"kind":"trend"}"#);
    }

    /// One poll: how long after the last, and what the counter then says.
    #[derive(Clone, Debug)]
    enum Count {
        Same,
        Add(u64),
        Reset(u64),
        Max,
    }

    fn gap() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            (1u64..5_000).prop_map(Duration::from_millis),
            Just(secs(2)),
            (1u64..100_000).prop_map(secs),
        ]
    }

    fn count() -> impl Strategy<Value = Count> {
        prop_oneof![
            Just(Count::Same),
            (0u64..200).prop_map(Count::Add),
            (0u64..u64::MAX / 4).prop_map(Count::Add),
            (0u64..10).prop_map(Count::Reset),
            Just(Count::Max),
        ]
    }

    fn duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::ZERO),
            (0u64..1_000).prop_map(secs),
            Just(Duration::MAX),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn forecasts_and_rates_stay_finite_non_negative_and_bounded(
            window in duration(),
            polls in proptest::collection::vec((gap(), count()), 0..300),
            horizon in duration(),
            over in duration(),
        ) {
            let mut now = Instant::now();
            let mut total = 0u64;
            let mut h = RateHistory::new(window);
            for (gap, count) in polls {
                now += gap;
                total = match count {
                    Count::Same => total,
                    Count::Add(n) => total.saturating_add(n),
                    Count::Reset(n) => n,
                    Count::Max => u64::MAX,
                };
                h.record(now, total);
                prop_assert!(h.len() <= MAX_SAMPLES);
                let newest = h.samples.back().unwrap().at;
                if let Some(second) = h.samples.get(1) {
                    prop_assert!(newest.duration_since(second.at) < window);
                }
                for (a, b) in h.samples.iter().zip(h.samples.iter().skip(1)) {
                    prop_assert!(a.at < b.at && a.total <= b.total);
                }
                if let Some(r) = h.rate(over) {
                    prop_assert!(r.is_finite() && r >= 0.0, "rate {r}");
                }
                for (x, r) in h.points() {
                    prop_assert!(x.is_finite() && r.is_finite() && r >= 0.0, "point ({x}, {r})");
                }
                if let Some(f) = h.forecast(horizon) {
                    prop_assert!(f.rate.is_finite() && f.rate >= 0.0, "{f:?}");
                    if let Model::Seasonal { period_seconds } = f.model {
                        prop_assert!(period_seconds.is_finite() && period_seconds > 0.0);
                    }
                }
            }
        }
    }
}
