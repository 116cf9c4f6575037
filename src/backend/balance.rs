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

/// Power of two choices on requests in flight, among `n` (at least 2) candidates.
pub fn least_request<'e>(n: usize, endpoint: impl Fn(usize) -> &'e Endpoint) -> usize {
    let a = fastrand::usize(..n);
    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
    let load = |i: usize| endpoint(i).stats.active.load(Ordering::Relaxed);
    if load(b) < load(a) { b } else { a }
}
