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
    // The pooled rate under the null keeps V away from 0 when one side has no conversions.
    let pooled =
        (control.conversions + variant.conversions) as f64 / (control.users + variant.users) as f64;
    let v = pooled * (1.0 - pooled) * (1.0 / control.users as f64 + 1.0 / variant.users as f64);
    mixture_ratio(variant.rate() - control.rate(), v, tau2)
}

/// The mixture likelihood ratio of an observed difference `theta` with variance `v`.
pub(crate) fn mixture_ratio(theta: f64, v: f64, tau2: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let ln = 0.5 * (v / (v + tau2)).ln() + theta * theta * tau2 / (2.0 * v * (v + tau2));
    ln.min(700.0).exp()
}

/// The half-width of the always-valid confidence interval of a difference with variance `v`
/// at level `alpha`: the differences whose mixture ratio stays below `1 / alpha`.
pub(crate) fn sequence_radius(v: f64, tau2: f64, alpha: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return f64::INFINITY;
    }
    let bound = (1.0 / alpha).ln() + 0.5 * ((v + tau2) / v).ln();
    (2.0 * v * (v + tau2) / tau2 * bound).sqrt()
}

/// The Wilson score interval of `k` successes in `n` at normal quantile `z`.
pub(crate) fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The sample-ratio-mismatch test: Pearson's chi-square of the participants per variant
/// against the shares the weights ask for; its p-value (1 without participants).
pub(crate) fn sample_ratio_p(users: &[u64], weights: &[u32]) -> f64 {
    let n: u64 = users.iter().sum();
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if n == 0 || total == 0 {
        return 1.0;
    }
    let mut stat = 0.0;
    let mut df = 0usize;
    for (&u, &w) in users.iter().zip(weights) {
        let expected = n as f64 * f64::from(w) / total as f64;
        if expected > 0.0 {
            stat += (u as f64 - expected).powi(2) / expected;
            df += 1;
        } else if u > 0 {
            // Participants where the weights send none: a mismatch whatever the rest.
            return 0.0;
        }
    }
    chi_square_survival(stat, df.saturating_sub(1).max(1) as f64)
}

/// `P(X > x)` for a chi-square variable with `df` degrees of freedom: the regularised upper
/// incomplete gamma function `Q(df/2, x/2)` (series below `a + 1`, continued fraction above).
pub(crate) fn chi_square_survival(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let (a, x) = (df / 2.0, x / 2.0);
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * ln_front.exp()).clamp(0.0, 1.0)
    } else {
        // Lentz's method.
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (ln_front.exp() * h).clamp(0.0, 1.0)
    }
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        sum += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
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
            tau2: (effect * effect).max(1e-12),
        }
    }

    /// A test resumed at p-value `p`.
    pub(crate) fn resume(effect: f64, p: f64) -> AlwaysValid {
        AlwaysValid {
            p: p.clamp(0.0, 1.0),
            ..AlwaysValid::new(effect)
        }
    }

    /// The mixing variance.
    pub(crate) fn tau2(self) -> f64 {
        self.tau2
    }

    /// The p-value so far.
    pub(crate) fn p(self) -> f64 {
        self.p
    }

    /// Looks at the counts now; returns the p-value so far.
    pub(crate) fn look(&mut self, control: Arm, variant: Arm) -> f64 {
        self.p = self.p.min(1.0 / msprt_ratio(control, variant, self.tau2));
        self.p
    }

    /// Looks at a difference `theta` with variance `v`; returns the p-value so far.
    pub(crate) fn look_at(&mut self, theta: f64, v: f64) -> f64 {
        self.p = self.p.min(1.0 / mixture_ratio(theta, v, self.tau2));
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
    fn intervals_and_the_sample_ratio_test() {
        // Wilson at 95%: 10 of 100 is 5.5%..17.4%.
        let (lo, hi) = wilson(10, 100, 1.959964);
        assert!(
            (lo - 0.0552).abs() < 1e-3 && (hi - 0.1744).abs() < 1e-3,
            "{lo} {hi}"
        );
        // Chi-square survival: 3.841 at 1 df is 0.05; 5.991 at 2 df is 0.05.
        assert!((chi_square_survival(3.841, 1.0) - 0.05).abs() < 1e-3);
        assert!((chi_square_survival(5.991, 2.0) - 0.05).abs() < 1e-3);
        assert!((chi_square_survival(30.0, 1.0) - 4.3e-8).abs() < 1e-8);
        // 5,000 vs 5,000 at 50/50 fits; 5,300 vs 4,700 does not (p ~ 2e-9).
        assert!(sample_ratio_p(&[5_000, 5_000], &[50, 50]) > 0.99);
        assert!(sample_ratio_p(&[5_300, 4_700], &[50, 50]) < 1e-6);
        assert!(sample_ratio_p(&[900, 100], &[90, 10]) > 0.9);
        assert_eq!(sample_ratio_p(&[10, 1], &[1, 0]), 0.0);
    }

    #[test]
    fn a_real_difference_is_found() {
        let found = (0..50)
            .filter(|&s| sequential(1000 + s, 0.10, 0.20, 0.05, 5_000).is_some())
            .count();
        assert!(found >= 48, "{found} of 50");
    }
}
