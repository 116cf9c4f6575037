//! The statistics of an experiment's decision, with no I/O: conversion rates compared with a
//! test that stays valid when the result is looked at after every user.
//!
//! A fixed-horizon test (a z-test at 95%) checked continuously declares false winners far more
//! often than 5% of the time. weir uses the mixture sequential probability ratio test (mSPRT)
//! and its always-valid p-values: Johari, Koomen, Pekelis and Walsh, "Peeking at A/B Tests: Why
//! it matters, and what to do about it", KDD 2017 (and "Always Valid Inference", Operations
//! Research 2022). With the difference of the two rates `θ̂`, its variance `V` and a normal
//! mixing distribution of variance `τ²` over the effects, the mixture likelihood ratio is
//!
//! ```text
//! Λ = sqrt(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²)))
//! ```
//!
//! and the always-valid p-value is the running minimum of `1 / Λ`: stopping the first time it
//! falls below `α` keeps the false-winner rate at most `α`, however often it is looked at.

/// The quantile of the standard normal distribution at `p` (0 < p < 1): Acklam's rational
/// approximation, relative error below 1.2e-9.
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.383_577_518_672_69e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Users per variant a fixed-horizon two-sided test needs to tell `p0` from `p1` at
/// `confidence` (e.g. 0.95) with `power` (e.g. 0.8): the textbook formula for two proportions.
pub(crate) fn fixed_sample_size(p0: f64, p1: f64, confidence: f64, power: f64) -> u64 {
    let za = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    let zb = normal_quantile(power);
    let pbar = (p0 + p1) / 2.0;
    let num =
        za * (2.0 * pbar * (1.0 - pbar)).sqrt() + zb * (p0 * (1.0 - p0) + p1 * (1.0 - p1)).sqrt();
    (num * num / ((p1 - p0) * (p1 - p0))).ceil() as u64
}

/// Two variants' counts so far: users and conversions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Arm {
    pub(crate) users: u64,
    pub(crate) conversions: u64,
}

impl Arm {
    /// The conversion rate (0 without users).
    pub(crate) fn rate(self) -> f64 {
        if self.users == 0 {
            0.0
        } else {
            self.conversions as f64 / self.users as f64
        }
    }
}

/// The mixture likelihood ratio of `variant` against `control` (the difference of their
/// rates), with mixing variance `tau2`; 1 (no evidence) until both have users and some
/// variance.
pub(crate) fn msprt_ratio(control: Arm, variant: Arm, tau2: f64) -> f64 {
    if control.users == 0 || variant.users == 0 {
        return 1.0;
    }
    let (p0, p1) = (control.rate(), variant.rate());
    // The pooled rate under the null keeps V away from 0 when one side has no conversions.
    let pooled =
        (control.conversions + variant.conversions) as f64 / (control.users + variant.users) as f64;
    let v = pooled * (1.0 - pooled) * (1.0 / control.users as f64 + 1.0 / variant.users as f64);
    if v <= 0.0 {
        return 1.0;
    }
    let theta = p1 - p0;
    let ln = 0.5 * (v / (v + tau2)).ln() + theta * theta * tau2 / (2.0 * v * (v + tau2));
    ln.min(700.0).exp()
}

/// An always-valid p-value: the running minimum of `1 / Λ` over every look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AlwaysValid {
    p: f64,
    tau2: f64,
}

impl AlwaysValid {
    /// A test whose mixing variance suits effects around `effect` (an absolute difference of
    /// rates): `τ² = effect²`.
    pub(crate) fn new(effect: f64) -> AlwaysValid {
        AlwaysValid {
            p: 1.0,
            tau2: (effect * effect).max(1e-8),
        }
    }

    /// Looks at the counts now; returns the p-value so far.
    pub(crate) fn look(&mut self, control: Arm, variant: Arm) -> f64 {
        self.p = self.p.min(1.0 / msprt_ratio(control, variant, self.tau2));
        self.p
    }
}

/// Users in each arm between looks in [`simulate`].
pub(crate) const LOOK_EVERY: u64 = 10;

/// One simulated experiment: users arrive in pairs converting at `p0` and `p1`, the test
/// (mixing variance for effects around `effect`) is looked at every [`LOOK_EVERY`] pairs;
/// the users per variant when it first fell below `alpha`, or `None` by `max`.
pub(crate) fn simulate(
    seed: u64,
    p0: f64,
    p1: f64,
    alpha: f64,
    effect: f64,
    max: u64,
) -> Option<u64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut a, mut b) = (Arm::default(), Arm::default());
    let mut test = AlwaysValid::new(effect);
    while a.users < max {
        for _ in 0..LOOK_EVERY {
            a.users += 1;
            b.users += 1;
            a.conversions += u64::from(rng.f64() < p0);
            b.conversions += u64::from(rng.f64() < p1);
        }
        if test.look(a, b) < alpha {
            return Some(a.users);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-6);
        assert!((normal_quantile(0.8) - 0.841621).abs() < 1e-6);
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        assert!((normal_quantile(0.001) + 3.090232).abs() < 1e-6);
    }

    #[test]
    fn the_textbook_sample_size() {
        // 10% -> 12% at 95% confidence and 80% power: 3,841 per variant (the usual tables
        // and calculators give 3,839-3,841 with this formula).
        let n = fixed_sample_size(0.10, 0.12, 0.95, 0.8);
        assert!((3_830..=3_850).contains(&n), "{n}");
    }

    fn sequential(seed: u64, p0: f64, p1: f64, alpha: f64, max: u64) -> Option<u64> {
        simulate(seed, p0, p1, alpha, 0.02, max)
    }

    #[test]
    fn looking_after_every_ten_users_keeps_false_winners_under_alpha() {
        // A/A at 10%: 400 seeded experiments of up to 20,000 users per variant, looked at 2,000
        // times each. A fixed-horizon z-test looked at so often declares a winner in well
        // over a third of them.
        let false_winners = (0..400)
            .filter(|&s| sequential(s, 0.1, 0.1, 0.05, 20_000).is_some())
            .count();
        assert!(false_winners <= 20, "{false_winners} of 400");
    }

    #[test]
    fn a_real_difference_is_found() {
        let found = (0..50)
            .filter(|&s| sequential(1000 + s, 0.10, 0.20, 0.05, 5_000).is_some())
            .count();
        assert!(found >= 48, "{found} of 50");
    }
}
