//! Checks of a canary's traffic over a window: each passes, fails, or is inconclusive when the
//! canary had too few requests to judge (Flagger halts on "no values found" instead).

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

/// Runs one check over the canary's traffic in its window.
pub fn evaluate(spec: &CheckSpec, window: &VersionSample) -> CheckResult {
    let value = if window.requests < MIN_SAMPLE {
        None
    } else {
        match spec.kind {
            CheckKind::SuccessRate => window.success_rate(),
            CheckKind::Duration => window.quantile_ms(0.99),
        }
    };
    let verdict = match value {
        None => Verdict::Inconclusive,
        Some(v) if spec.min.is_some_and(|m| v < m) || spec.max.is_some_and(|m| v > m) => {
            Verdict::Fail
        }
        Some(_) => Verdict::Pass,
    };
    CheckResult {
        name: spec.name.clone(),
        verdict,
        value,
        sample: window.requests,
        min: spec.min,
        max: spec.max,
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
        let r = evaluate(&spec(CheckKind::SuccessRate, Some(99.0), None), &w);
        assert_eq!((r.verdict, r.value), (Verdict::Fail, Some(97.0)));
        let r = evaluate(&spec(CheckKind::SuccessRate, Some(95.0), None), &w);
        assert_eq!(r.verdict, Verdict::Pass);
        let r = evaluate(&spec(CheckKind::Duration, None, Some(500.0)), &w);
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.describe());
        let r = evaluate(&spec(CheckKind::Duration, None, Some(5.0)), &w);
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.describe());
    }

    #[test]
    fn too_few_requests_are_inconclusive() {
        let v = VersionStats::default();
        for _ in 0..MIN_SAMPLE - 1 {
            v.record(500, Duration::from_millis(1));
        }
        let r = evaluate(&spec(CheckKind::SuccessRate, Some(99.0), None), &v.sample());
        assert_eq!((r.verdict, r.value), (Verdict::Inconclusive, None));
        assert!(r.describe().contains("inconclusive"));
    }
}
