//! Checks of a canary's traffic over a window: each passes, fails, or is inconclusive when the
//! canary had too few requests to judge (Flagger halts on "no values found" instead).
//!
//! `error-rate-vs-primary` compares the canary with the primary over the same window: a
//! one-sided two-proportion test, in its exact form (Fisher's), so that it stays right at the
//! small counts a canary sees early. Its value is the confidence, in percent, that the canary's
//! error rate is higher than the primary's; it fails above the configured confidence. A
//! significant difference fails even below [`MIN_SAMPLE`] canary requests (the exact test
//! bounds false alarms at any size); an insignificant one passes only from [`MIN_SAMPLE`] up.

use crate::metrics::VersionSample;

use super::spec::{CheckKind, CheckSpec};

/// Fewest canary responses in a window for a check to judge them.
pub(crate) const MIN_SAMPLE: u64 = 10;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the range.
    Pass,
    /// Outside it.
    Fail,
    /// Too few requests to judge.
    Inconclusive,
}

impl Verdict {
    /// The name in the API and metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A check's result, with what it saw.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CheckResult {
    /// The metric.
    pub(crate) name: String,
    /// The verdict.
    pub(crate) verdict: Verdict,
    /// The measured value.
    pub(crate) value: Option<f64>,
    /// Canary responses in the window.
    pub(crate) sample: u64,
    /// The range it was held to.
    pub(crate) min: Option<f64>,
    /// The range it was held to.
    pub(crate) max: Option<f64>,
    /// Comparative checks: the error rates seen, canary and primary, in percent, and the
    /// primary's requests.
    pub(crate) versus: Option<Versus>,
    /// Query checks: the provider's error, empty when it answered.
    pub(crate) query: Option<String>,
    /// Why the traffic could not be counted (a fleet instance's counts are missing).
    pub(crate) incomplete: Option<String>,
}

/// What a comparative check saw.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Versus {
    /// The canary's error rate, percent.
    pub(crate) canary_errors: f64,
    /// The primary's error rate, percent.
    pub(crate) primary_errors: f64,
    /// The primary's responses in the window.
    pub(crate) primary_sample: u64,
}

impl CheckResult {
    /// One line for events and logs.
    pub(crate) fn describe(&self) -> String {
        let range = match (self.min, self.max) {
            (Some(a), Some(b)) => format!("[{a}, {b}]"),
            (Some(a), None) => format!(">= {a}"),
            (None, Some(b)) => format!("<= {b}"),
            (None, None) => "any".to_owned(),
        };
        if let Some(why) = &self.incomplete {
            return format!("{}: {why} (inconclusive)", self.name);
        }
        if let Some(error) = &self.query {
            return match (self.value, error.is_empty()) {
                (Some(v), _) => format!(
                    "{} {v:.2} (range {range}, from the provider): {}",
                    self.name,
                    self.verdict.name()
                ),
                (None, true) => {
                    format!("{}: the query returned no values (inconclusive)", self.name)
                }
                (None, false) => format!("{}: {error} (fail)", self.name),
            };
        }
        if let Some(v) = &self.versus {
            let judged = match self.value {
                Some(c) => format!(
                    "worse with {c:.2}% confidence (limit {}%)",
                    self.max.unwrap_or(100.0)
                ),
                None => "too few requests to judge".to_owned(),
            };
            return format!(
                "{}: canary {:.2}% errors of {} requests vs primary {:.2}% of {}: {judged}: {}",
                self.name,
                v.canary_errors,
                self.sample,
                v.primary_errors,
                v.primary_sample,
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
pub(crate) fn evaluate(
    spec: &CheckSpec,
    canary: &VersionSample,
    primary: &VersionSample,
) -> CheckResult {
    let (mut min, mut max, mut versus) = (spec.min, spec.max, None);
    let value = match &spec.kind {
        CheckKind::Query { .. } => None,
        _ if canary.requests == 0 => None,
        &CheckKind::VsPrimary { confidence } => {
            (min, max) = (None, Some(confidence * 100.0));
            versus = Some(Versus {
                canary_errors: error_percent(canary),
                primary_errors: error_percent(primary),
                primary_sample: primary.requests,
            });
            let worse = 100.0 * (1.0 - fisher_greater(canary, primary));
            let significant = worse > confidence * 100.0;
            (primary.requests >= MIN_SAMPLE && (significant || canary.requests >= MIN_SAMPLE))
                .then_some(worse)
        }
        _ if canary.requests < MIN_SAMPLE => None,
        CheckKind::SuccessRate => canary.success_rate(),
        CheckKind::Duration => canary.quantile_ms(0.99),
    };
    CheckResult {
        name: spec.name.clone(),
        verdict: verdict(value, min, max),
        value,
        sample: canary.requests,
        min,
        max,
        versus,
        query: None,
        incomplete: None,
    }
}

/// A check whose traffic could not be counted: inconclusive, saying why.
pub(crate) fn incomplete(spec: &CheckSpec, why: String) -> CheckResult {
    CheckResult {
        name: spec.name.clone(),
        verdict: Verdict::Inconclusive,
        value: None,
        sample: 0,
        min: spec.min,
        max: spec.max,
        versus: None,
        query: None,
        incomplete: Some(why),
    }
}

/// A value against its range; no value is inconclusive.
fn verdict(value: Option<f64>, min: Option<f64>, max: Option<f64>) -> Verdict {
    match value {
        None => Verdict::Inconclusive,
        Some(v) if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) => Verdict::Fail,
        Some(_) => Verdict::Pass,
    }
}

fn error_percent(s: &VersionSample) -> f64 {
    if s.requests == 0 {
        return 0.0;
    }
    100.0 * s.errors as f64 / s.requests as f64
}

/// Judges a provider query's answer: `Ok(None)` (no data) is inconclusive, an error fails the
/// check (as in Flagger: a metric that cannot be read is no evidence of health).
pub(crate) fn judge_query(spec: &CheckSpec, answer: Result<Option<f64>, String>) -> CheckResult {
    let (verdict, value, error) = match answer {
        Ok(value) => (verdict(value, spec.min, spec.max), value, None),
        Err(e) => (Verdict::Fail, None, Some(e)),
    };
    CheckResult {
        name: spec.name.clone(),
        verdict,
        value,
        sample: 0,
        min: spec.min,
        max: spec.max,
        versus: None,
        query: Some(error.unwrap_or_default()),
        incomplete: None,
    }
}

/// Fisher's one-sided exact p-value: the chance, were both versions equally good, that the
/// canary would draw at least as many of all the errors as it did (a hypergeometric tail).
fn fisher_greater(canary: &VersionSample, primary: &VersionSample) -> f64 {
    let (n1, e1) = (canary.requests, canary.errors.min(canary.requests));
    let (n, k) = (
        n1 + primary.requests,
        e1 + primary.errors.min(primary.requests),
    );
    let ln_all = ln_choose(n, n1);
    let term = |x: u64| (ln_choose(k, x) + ln_choose(n - k, n1 - x) - ln_all).exp();
    // Terms fall away from the mode; past it, stop when they no longer count.
    let mode = (n1 + 1) * (k + 1) / (n + 2);
    let mut p = 0.0;
    for x in e1..=k.min(n1) {
        if n1 - x > n - k {
            continue;
        }
        let t = term(x);
        p += t;
        if x > mode && t < p * 1e-17 {
            break;
        }
    }
    p.min(1.0)
}

fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// ln(n!): exact below 20, Stirling's series (error below 1e-12) above.
fn ln_factorial(n: u64) -> f64 {
    if n < 20 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x.powi(3))
        + 1.0 / (1260.0 * x.powi(5))
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
    fn fisher_exact_tail() {
        // 2 errors of 10 against none of 90: C(10,2) / C(100,2) = 45 / 4950.
        let p = fisher_greater(&sample(10, 2), &sample(90, 0));
        assert!((p - 45.0 / 4950.0).abs() < 1e-9, "{p}");
        // No errors in the canary: nothing is worse.
        assert!((fisher_greater(&sample(10, 0), &sample(90, 5)) - 1.0).abs() < 1e-9);
        // Large counts stay finite and agree with the normal approximation (z = 9.1).
        let p = fisher_greater(&sample(10_000, 200), &sample(90_000, 900));
        assert!(p < 1e-15, "{p}");
        let p = fisher_greater(&sample(1000, 10), &sample(9000, 90));
        assert!((0.3..0.7).contains(&p), "{p}");
        assert!((ln_factorial(25) - 58.003_605_222_980_52).abs() < 1e-9);
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
