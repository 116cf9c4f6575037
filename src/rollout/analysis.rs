//! Checks of a canary's traffic over a window: each passes, fails, or is inconclusive when the
//! canary had too few requests to judge (Flagger halts on "no values found" instead).
//!
//! `error-rate-vs-primary` compares the canary with the primary over the same window: a
//! one-sided two-proportion z-test (pooled), failing when the canary's error rate is higher with
//! the configured confidence. Its value is the z score; the limit is the normal quantile of the
//! confidence (2.33 at 99 %).

use crate::metrics::VersionSample;

use super::spec::{CheckKind, CheckSpec};

/// Fewest canary responses in a window for a check to judge them.
pub const MIN_SAMPLE: u64 = 10;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the range.
    Pass,
    /// Outside it.
    Fail,
    /// Too few requests to judge.
    Inconclusive,
}

impl Verdict {
    /// The name in the API and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A check's result, with what it saw.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    /// The metric.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The measured value.
    pub value: Option<f64>,
    /// Canary responses in the window.
    pub sample: u64,
    /// The range it was held to.
    pub min: Option<f64>,
    /// The range it was held to.
    pub max: Option<f64>,
    /// Comparative checks: the error rates seen, canary and primary, in percent, and the
    /// primary's requests.
    pub versus: Option<Versus>,
}

/// What a comparative check saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Versus {
    /// The canary's error rate, percent.
    pub canary_errors: f64,
    /// The primary's error rate, percent.
    pub primary_errors: f64,
    /// The primary's responses in the window.
    pub primary_sample: u64,
}

impl CheckResult {
    /// One line for events and logs.
    pub fn describe(&self) -> String {
        let range = match (self.min, self.max) {
            (Some(a), Some(b)) => format!("[{a}, {b}]"),
            (Some(a), None) => format!(">= {a}"),
            (None, Some(b)) => format!("<= {b}"),
            (None, None) => "any".to_owned(),
        };
        if let (Some(z), Some(v)) = (self.value, &self.versus) {
            return format!(
                "{}: canary {:.2}% errors of {} requests vs primary {:.2}% of {} (z {:.2}, limit {:.2}): {}",
                self.name,
                v.canary_errors,
                self.sample,
                v.primary_errors,
                v.primary_sample,
                z,
                self.max.unwrap_or(f64::INFINITY),
                self.verdict.name()
            );
        }
        match self.value {
            Some(v) => format!(
                "{} {:.2} (range {range}, {} requests): {}",
                self.name,
                v,
                self.sample,
                self.verdict.name()
            ),
            None => format!(
                "{}: {} requests, too few to judge (inconclusive)",
                self.name, self.sample
            ),
        }
    }
}

/// Runs one check over the canary's and the primary's traffic in its window.
pub fn evaluate(spec: &CheckSpec, canary: &VersionSample, primary: &VersionSample) -> CheckResult {
    let (mut min, mut max, mut versus) = (spec.min, spec.max, None);
    let value = if canary.requests < MIN_SAMPLE {
        None
    } else {
        match spec.kind {
            CheckKind::SuccessRate => canary.success_rate(),
            CheckKind::Duration => canary.quantile_ms(0.99),
            CheckKind::VsPrimary { confidence } => {
                (min, max) = (None, Some(normal_quantile(confidence)));
                versus = Some(Versus {
                    canary_errors: error_percent(canary),
                    primary_errors: error_percent(primary),
                    primary_sample: primary.requests,
                });
                (primary.requests >= MIN_SAMPLE).then(|| z_score(canary, primary))
            }
        }
    };
    let verdict = match value {
        None => Verdict::Inconclusive,
        Some(v) if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) => Verdict::Fail,
        Some(_) => Verdict::Pass,
    };
    CheckResult {
        name: spec.name.clone(),
        verdict,
        value,
        sample: canary.requests,
        min,
        max,
        versus,
    }
}

fn error_percent(s: &VersionSample) -> f64 {
    if s.requests == 0 {
        return 0.0;
    }
    100.0 * s.errors as f64 / s.requests as f64
}

/// The pooled two-proportion z score of the canary's error rate over the primary's: positive
/// when the canary is worse; 0 when neither had an error.
fn z_score(canary: &VersionSample, primary: &VersionSample) -> f64 {
    let (n1, n2) = (canary.requests as f64, primary.requests as f64);
    let (p1, p2) = (canary.errors as f64 / n1, primary.errors as f64 / n2);
    let pooled = (canary.errors + primary.errors) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 { 0.0 } else { (p1 - p2) / se }
}

/// The standard normal quantile of `p` in (0, 1) (Acklam's rational approximation, relative
/// error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
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
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const LOW: f64 = 0.02425;
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::VersionStats;
    use std::time::Duration;

    fn spec(kind: CheckKind, min: Option<f64>, max: Option<f64>) -> CheckSpec {
        CheckSpec {
            name: "m".into(),
            kind,
            window: Duration::from_secs(60),
            min,
            max,
        }
    }

    #[test]
    fn success_rate_and_duration_against_their_ranges() {
        let v = VersionStats::default();
        for i in 0..100 {
            v.record(if i < 3 { 500 } else { 200 }, Duration::from_millis(20));
        }
        let w = v.sample();
        let none = VersionSample::default();
        let r = evaluate(&spec(CheckKind::SuccessRate, Some(99.0), None), &w, &none);
        assert_eq!((r.verdict, r.value), (Verdict::Fail, Some(97.0)));
        let r = evaluate(&spec(CheckKind::SuccessRate, Some(95.0), None), &w, &none);
        assert_eq!(r.verdict, Verdict::Pass);
        let r = evaluate(&spec(CheckKind::Duration, None, Some(500.0)), &w, &none);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.describe());
        let r = evaluate(&spec(CheckKind::Duration, None, Some(5.0)), &w, &none);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.describe());
    }

    #[test]
    fn too_few_requests_are_inconclusive() {
        let v = VersionStats::default();
        for _ in 0..MIN_SAMPLE - 1 {
            v.record(500, Duration::from_millis(1));
        }
        let none = VersionSample::default();
        let r = evaluate(
            &spec(CheckKind::SuccessRate, Some(99.0), None),
            &v.sample(),
            &none,
        );
        assert_eq!((r.verdict, r.value), (Verdict::Inconclusive, None));
        assert!(r.describe().contains("inconclusive"));
    }

    fn sample(requests: u64, errors: u64) -> VersionSample {
        VersionSample {
            requests,
            errors,
            durations: Vec::new(),
        }
    }

    #[test]
    fn normal_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.95, 1.644854),
            (0.975, 1.959964),
            (0.99, 2.326348),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-5, "{p}");
            assert!((normal_quantile(1.0 - p) + z).abs() < 1e-5, "{p}");
        }
        assert!((normal_quantile(0.999_999) - 4.753424).abs() < 1e-5);
    }

    #[test]
    fn the_comparative_check_fails_only_a_significantly_worse_canary() {
        let vs = spec(CheckKind::VsPrimary { confidence: 0.99 }, None, None);
        // 2 errors in 10 canary requests against none in 90: z = 4.3 > 2.33.
        let r = evaluate(&vs, &sample(10, 2), &sample(90, 0));
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.describe());
        assert!(
            r.describe()
                .contains("canary 20.00% errors of 10 requests vs primary 0.00% of 90")
        );
        // The same error rate on both sides passes, however many requests.
        let r = evaluate(&vs, &sample(1000, 10), &sample(9000, 90));
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.describe());
        // A little worse, on little traffic, is not significant...
        let r = evaluate(&vs, &sample(100, 2), &sample(900, 9));
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.describe());
        // ... but is on a lot of it.
        let r = evaluate(&vs, &sample(10_000, 200), &sample(90_000, 900));
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.describe());
        // A better canary passes; no errors anywhere passes.
        assert_eq!(
            evaluate(&vs, &sample(100, 0), &sample(900, 90)).verdict,
            Verdict::Pass
        );
        assert_eq!(
            evaluate(&vs, &sample(100, 0), &sample(900, 0)).verdict,
            Verdict::Pass
        );
        // Too little traffic on either side is inconclusive.
        let r = evaluate(&vs, &sample(100, 50), &sample(5, 0));
        assert_eq!(r.verdict, Verdict::Inconclusive);
    }
}
