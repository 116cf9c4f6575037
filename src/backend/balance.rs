//! Load-balancing algorithms (`loadBalancer.simple`).

/// A load-balancing algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Lb {
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
    pub(crate) fn name(self) -> &'static str {
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
pub(crate) struct Warmup {
    /// The window.
    pub(crate) duration: std::time::Duration,
    /// Share at the start, in percent (default 10).
    pub(crate) min_percent: f64,
    /// How fast the share grows: 1 is linear, larger is faster at first (default 1).
    pub(crate) aggression: f64,
}

impl Warmup {
    /// The share of its traffic an endpoint this old gets, from 0 to 1.
    pub(crate) fn factor(&self, age: std::time::Duration) -> f64 {
        if age >= self.duration {
            return 1.0;
        }
        let t = age.as_secs_f64().max(1.0) / self.duration.as_secs_f64();
        t.powf(1.0 / self.aggression.max(f64::MIN_POSITIVE))
            .max(self.min_percent / 100.0)
            .min(1.0)
    }
}

/// Weighted round robin among `n` candidates: turn `turn` of a cycle of the weights' sum, in
/// which each candidate gets exactly its weight. The turns of a cycle are visited in a
/// scattered order (a multiplicative permutation), so that a heavy candidate's turns are
/// spread over the cycle instead of coming in one run.
pub(crate) fn weighted_turn(n: usize, weight: impl Fn(usize) -> u32, turn: usize) -> usize {
    let total: u64 = (0..n).map(|k| u64::from(weight(k))).sum();
    if total == 0 {
        return turn % n;
    }
    // A prime larger than any sum of weights here, so coprime with `total`.
    const STRIDE: u64 = 2_654_435_761;
    let slot =
        (u128::from(turn as u64 % total) * u128::from(STRIDE % total) % u128::from(total)) as u64;
    pick_slot(n, weight, slot)
}

/// A candidate drawn with probability proportional to its weight.
pub(crate) fn weighted_random(n: usize, weight: impl Fn(usize) -> u32) -> usize {
    let total: u64 = (0..n).map(|k| u64::from(weight(k))).sum();
    if total == 0 {
        return fastrand::usize(..n);
    }
    pick_slot(n, weight, fastrand::u64(..total))
}

/// The candidate whose share of the weights' sum holds `slot`.
fn pick_slot(n: usize, weight: impl Fn(usize) -> u32, mut slot: u64) -> usize {
    for k in 0..n {
        let w = u64::from(weight(k));
        if slot < w {
            return k;
        }
        slot -= w;
    }
    n - 1
}

/// Power of two weighted choices: the one with fewer requests in flight per unit of weight.
/// `active` gives a candidate's requests in flight.
pub(crate) fn weighted_least_request(
    n: usize,
    weight: impl Fn(usize) -> u32 + Copy,
    active: impl Fn(usize) -> i64,
) -> usize {
    let a = weighted_random(n, weight);
    let b = weighted_random(n, weight);
    let load = |i: usize| active(i) as f64 / f64::from(weight(i).max(1));
    if load(b) < load(a) { b } else { a }
}

/// Power of two choices on requests in flight (`active` gives a candidate's), among `n` (at least
/// 2) candidates.
pub(crate) fn least_request(n: usize, active: impl Fn(usize) -> i64) -> usize {
    let a = fastrand::usize(..n);
    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
    let load = |i: usize| active(i);
    if load(b) < load(a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn weighted_turns_give_each_its_weight_per_cycle_spread_out() {
        let weights = [90u32, 10, 0, 35];
        let total: usize = weights.iter().map(|w| *w as usize).sum();
        let mut counts = [0usize; 4];
        let mut longest_run = 0;
        let mut run = 0;
        let mut last = usize::MAX;
        for turn in 0..total * 3 {
            let k = weighted_turn(4, |i| weights[i], turn);
            counts[k] += 1;
            run = if k == last { run + 1 } else { 1 };
            longest_run = longest_run.max(run);
            last = k;
        }
        assert_eq!(counts, [270, 30, 0, 105]);
        // 90 of 135 in a row would be a plain cycle; scattered, runs stay short.
        assert!(longest_run < 10, "{longest_run}");
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        fastrand::seed(7);
        let weights = [3u32, 1];
        let first = (0..40_000)
            .filter(|_| weighted_random(2, |i| weights[i]) == 0)
            .count();
        // p = 0.75, sigma ~ 87: 6 sigma bounds.
        assert!((29_480..=30_520).contains(&first), "{first}");
    }

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
