//! A `Canary` as the controller runs it: what is released, how weights move, what is checked.

use std::time::Duration;

use crate::config::flagger::{Canary, CanaryMetric};
use crate::config::{ResourceSet, Spec};

/// Flagger's default analysis interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Flagger's default metric window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// A rollout of a canary subset of a VirtualService's destination.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutSpec {
    /// The Canary's name.
    pub name: String,
    /// The VirtualService whose weights are managed.
    pub virtual_service: String,
    /// The destination host of the managed routes.
    pub service: String,
    /// The stable subset.
    pub primary: String,
    /// The new subset.
    pub canary: String,
    /// Time between steps.
    pub interval: Duration,
    /// Failed checks that roll back.
    pub threshold: u32,
    /// Canary weights to go through, in order (the last is the highest before promotion).
    pub steps: Vec<u32>,
    /// Weight added per interval while promoting (`None`: all at once).
    pub step_promotion: Option<u32>,
    /// Checks run at every step.
    pub checks: Vec<CheckSpec>,
    /// Promote without analysis.
    pub skip_analysis: bool,
}

/// One metric check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckSpec {
    /// The metric's name.
    pub name: String,
    /// What is measured.
    pub kind: CheckKind,
    /// The window measured.
    pub window: Duration,
    /// Lowest passing value.
    pub min: Option<f64>,
    /// Highest passing value.
    pub max: Option<f64>,
}

/// What a check measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// `request-success-rate`: % of the canary's responses that are not 5xx.
    SuccessRate,
    /// `request-duration`: the canary's p99, in ms.
    Duration,
}

impl RolloutSpec {
    /// The spec of a validated Canary whose target is a VirtualService; `None` for other
    /// targets (not run yet) or a VirtualService without the subsets.
    pub fn from_canary(name: &str, c: &Canary, set: &ResourceSet) -> Option<RolloutSpec> {
        if c.target_ref.kind.value != "VirtualService" {
            return None;
        }
        let vs_name = &c.target_ref.name.value;
        let primary = c.primary_subset.as_ref()?.value.clone();
        let canary = c.canary_subset.as_ref()?.value.clone();
        let service = set.resources.iter().find_map(|r| match &r.spec {
            Spec::VirtualService(vs) if r.name() == vs_name => vs
                .http
                .iter()
                .flat_map(|h| &h.route)
                .find(|d| d.destination.subset.as_ref().map(|s| &s.value) == Some(&canary))
                .map(|d| d.destination.host.value.to_ascii_lowercase()),
            _ => None,
        })?;
        let a = c.analysis.as_ref();
        let max_weight = a.and_then(|a| a.max_weight).unwrap_or(100).min(100);
        let steps = match a {
            Some(a) if !a.step_weights.is_empty() => a
                .step_weights
                .iter()
                .copied()
                .filter(|&w| w <= 100)
                .collect(),
            _ => {
                let step = a.and_then(|a| a.step_weight).unwrap_or(10).max(1);
                (1..)
                    .map(|i| i * step)
                    .take_while(|&w| w <= max_weight)
                    .collect()
            }
        };
        Some(RolloutSpec {
            name: name.to_owned(),
            virtual_service: vs_name.clone(),
            service,
            primary,
            canary,
            interval: a
                .and_then(|a| a.interval)
                .map_or(DEFAULT_INTERVAL, |d| d.0.max(Duration::from_secs(1))),
            threshold: a.and_then(|a| a.threshold).unwrap_or(1).max(1),
            steps,
            step_promotion: a.and_then(|a| a.step_weight_promotion).filter(|&s| s > 0),
            checks: a
                .map(|a| a.metrics.iter().filter_map(check).collect())
                .unwrap_or_default(),
            skip_analysis: c.skip_analysis.unwrap_or(false),
        })
    }
}

/// A builtin metric check; `None` for template and query metrics (not run yet).
fn check(m: &CanaryMetric) -> Option<CheckSpec> {
    let kind = match m.name.value.as_str() {
        "request-success-rate" => CheckKind::SuccessRate,
        "request-duration" => CheckKind::Duration,
        _ => return None,
    };
    if m.template_ref.is_some() || m.query.is_some() {
        return None;
    }
    let (mut min, mut max) = m
        .threshold_range
        .as_ref()
        .map_or((None, None), |r| (r.min, r.max));
    // The legacy `threshold`: a floor for the success rate, a ceiling for the duration.
    if let Some(t) = m.threshold
        && min.is_none()
        && max.is_none()
    {
        match kind {
            CheckKind::SuccessRate => min = Some(t),
            CheckKind::Duration => max = Some(t),
        }
    }
    Some(CheckSpec {
        name: m.name.value.clone(),
        kind,
        window: m.interval.map_or(DEFAULT_WINDOW, |d| d.0),
        min,
        max,
    })
}
