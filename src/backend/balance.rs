//! Load-balancing algorithms (`loadBalancer.simple`).

use std::sync::atomic::Ordering;

use super::Endpoint;

/// A load-balancing algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lb {
    /// Each endpoint in turn (Istio's `ROUND_ROBIN`, and weir's default).
    #[default]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// The less busy of two random endpoints (Envoy's `LEAST_REQUEST`).
    LeastRequest,
}

impl Lb {
    /// Istio's name of the algorithm.
    pub fn name(self) -> &'static str {
        match self {
            Lb::RoundRobin => "ROUND_ROBIN",
            Lb::Random => "RANDOM",
            Lb::LeastRequest => "LEAST_REQUEST",
        }
    }
}

/// Slow start (`warmup`): an endpoint new to a cluster gets a growing share of its traffic,
/// from `min_percent` to all of it over `duration` (Envoy's slow-start window).
#[derive(Clone, Debug, PartialEq)]
pub struct Warmup {
    /// The window.
    pub duration: std::time::Duration,
    /// Share at the start, in percent (default 10).
    pub min_percent: f64,
    /// How fast the share grows: 1 is linear, larger is faster at first (default 1).
    pub aggression: f64,
}

impl Warmup {
    /// The share of its traffic an endpoint this old gets, from 0 to 1.
    pub fn factor(&self, age: std::time::Duration) -> f64 {
        if age >= self.duration {
            return 1.0;
        }
        let t = age.as_secs_f64().max(1.0) / self.duration.as_secs_f64();
        t.powf(1.0 / self.aggression.max(f64::MIN_POSITIVE))
            .max(self.min_percent / 100.0)
            .min(1.0)
    }
}

/// Power of two choices on requests in flight, among `n` (at least 2) candidates.
pub fn least_request<'e>(n: usize, endpoint: impl Fn(usize) -> &'e Endpoint) -> usize {
    let a = fastrand::usize(..n);
    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
    let load = |i: usize| endpoint(i).stats.active.load(Ordering::Relaxed);
    if load(b) < load(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn warmup_grows_from_the_minimum_to_everything() {
        let w = Warmup {
            duration: Duration::from_secs(100),
            min_percent: 10.0,
            aggression: 1.0,
        };
        assert_eq!(w.factor(Duration::ZERO), 0.1);
        assert!((w.factor(Duration::from_secs(50)) - 0.5).abs() < 1e-9);
        assert_eq!(w.factor(Duration::from_secs(100)), 1.0);
        // Aggression 2: the square root of the time share.
        let fast = Warmup {
            aggression: 2.0,
            ..w.clone()
        };
        assert!((fast.factor(Duration::from_secs(25)) - 0.5).abs() < 1e-9);
    }
}
