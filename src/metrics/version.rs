//! Running totals per (service, version), which canary analysis reads as samples.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::families::BUCKETS;

/// Running totals of one (service, version) for canary analysis: responses, server errors,
/// and a duration histogram (the buckets of `http_request_duration_seconds`). Read as
/// [`VersionSample`]s; differences between two samples describe the time between them.
#[derive(Debug, Default)]
pub(crate) struct VersionStats {
    requests: AtomicU64,
    errors: AtomicU64,
    durations: [AtomicU64; BUCKETS.len() + 1],
}

/// A reading of [`VersionStats`].
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct VersionSample {
    /// Responses.
    pub(crate) requests: u64,
    /// Responses with a 5xx status.
    pub(crate) errors: u64,
    /// Durations per bucket of [`BUCKETS`] (the last: above every bucket).
    pub(crate) durations: Vec<u64>,
}

impl VersionStats {
    /// Reads the totals.
    pub(crate) fn sample(&self) -> VersionSample {
        VersionSample {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            durations: self
                .durations
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// Counts responses and durations directly.
    #[cfg(test)]
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        self.count(status);
        self.observe(elapsed);
    }

    pub(super) fn count(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        self.durations[i].fetch_add(1, Ordering::Relaxed);
    }
}

impl VersionSample {
    /// What happened between `earlier` and this sample.
    pub(crate) fn since(&self, earlier: &VersionSample) -> VersionSample {
        VersionSample {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            durations: self
                .durations
                .iter()
                .zip(earlier.durations.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// This sample and `other` together (two instances' counts).
    pub(crate) fn add(&mut self, other: &VersionSample) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.durations.len() < other.durations.len() {
            self.durations.resize(other.durations.len(), 0);
        }
        for (a, b) in self.durations.iter_mut().zip(&other.durations) {
            *a += b;
        }
    }

    /// The share of responses that were not server errors, in percent.
    pub(crate) fn success_rate(&self) -> Option<f64> {
        (self.requests > 0)
            .then(|| (self.requests - self.errors) as f64 * 100.0 / self.requests as f64)
    }

    /// The `q` quantile of durations, in milliseconds (the upper bound of its bucket, as
    /// Prometheus' `histogram_quantile` interpolates within it).
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.durations.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut seen = 0u64;
        for (i, &n) in self.durations.iter().enumerate() {
            let below = seen as f64;
            seen += n;
            if seen as f64 >= rank && n > 0 {
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                let Some(&upper) = BUCKETS.get(i) else {
                    return Some(lower * 1000.0);
                };
                let within = (rank - below) / n as f64;
                return Some((lower + (upper - lower) * within) * 1000.0);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_samples_give_rates_and_quantiles_between_readings() {
        let v = VersionStats::default();
        v.record(200, Duration::from_millis(3));
        let first = v.sample();
        for i in 0..100 {
            let status = if i < 5 { 503 } else { 200 };
            v.record(status, Duration::from_millis(if i < 99 { 2 } else { 400 }));
        }
        let window = v.sample().since(&first);
        assert_eq!((window.requests, window.errors), (100, 5));
        assert_eq!(window.success_rate(), Some(95.0));
        // 99 of 100 in the 1-2.5 ms bucket: the p99 is within it; the p100 is the slow one.
        let p99 = window.quantile_ms(0.99).unwrap();
        assert!((1.0..=2.5).contains(&p99), "{p99}");
        let max = window.quantile_ms(1.0).unwrap();
        assert!((250.0..=500.0).contains(&max), "{max}");
        assert_eq!(VersionSample::default().success_rate(), None);
    }
}
