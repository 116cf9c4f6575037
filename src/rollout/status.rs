//! What a rollout shows and keeps: its phase, routing, last checks and events.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Events kept per rollout.
pub(super) const EVENTS_KEPT: usize = 100;

/// Analysis rounds kept per rollout.
pub(super) const ROUNDS_KEPT: usize = 50;

/// Flagger's canary phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    /// Routing is being set up: everything to the primary.
    Initializing,
    /// Routing set up; waiting for a canary revision.
    Initialized,
    /// A `confirm-rollout` webhook has not approved the rollout yet.
    Waiting,
    /// Shifting traffic step by step, checking at each.
    Progressing,
    /// Analysis is done; a `confirm-promotion` webhook has not approved promotion yet (checks
    /// keep running).
    WaitingPromotion,
    /// Moving all traffic to the canary.
    Promoting,
    /// All traffic is on the canary.
    Finalising,
    /// Released.
    Succeeded,
    /// Rolled back: all traffic on the primary.
    Failed,
}

impl Phase {
    /// `weir_canary_status`: 0 running, 1 succeeded, 2 failed (Flagger's values).
    pub(crate) fn status_code(self) -> i64 {
        match self {
            Phase::Succeeded => 1,
            Phase::Failed => 2,
            _ => 0,
        }
    }

    /// Whether the rollout is over (until a new revision).
    pub(crate) fn finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// A recorded event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Event {
    /// Seconds since the Unix epoch.
    pub(crate) time: f64,
    /// `Normal` or `Warning`, as Kubernetes events.
    #[serde(rename = "type", default = "normal")]
    pub(crate) kind: String,
    /// What happened, with the values that decided it.
    pub(crate) message: String,
}

fn normal() -> String {
    "Normal".to_owned()
}

/// Where traffic goes; the controller writes it into the VirtualService.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Routing {
    /// Share of (unmatched) traffic on the canary, in percent.
    pub(crate) canary_weight: u32,
    /// A/B testing: requests matching the Canary's `match` go to the canary.
    pub(crate) matched: bool,
    /// Blue-green: traffic is mirrored to the canary.
    pub(crate) mirror: bool,
}

/// What the API shows and the state file keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    /// Phase.
    pub(crate) phase: Phase,
    /// Where traffic goes.
    #[serde(flatten)]
    pub(crate) routing: Routing,
    /// Failed checks in this revision's analysis.
    pub(crate) failed_checks: u32,
    /// Inconclusive checks in this revision's analysis.
    pub(crate) inconclusive_checks: u32,
    /// Analysis steps passed (A/B and blue-green: iterations done).
    pub(crate) iterations: u32,
    /// Paused by an operator: no step is taken.
    pub(crate) paused: bool,
    /// The `confirm-rollout` gate let this revision's analysis start.
    #[serde(default)]
    pub(crate) confirmed: bool,
    /// The canary revision being analysed.
    pub(crate) revision: String,
    /// Deployment targets: the primary's revision when the canary was promoted.
    #[serde(default)]
    pub(crate) primary_revision: String,
    /// The last checks run.
    pub(crate) last_checks: Vec<CheckView>,
    /// Recent events, oldest first.
    pub(crate) events: VecDeque<Event>,
    /// Events ever recorded (the controller sends the new ones to `event` webhooks).
    pub(crate) events_total: u64,
    /// This revision's analysis rounds, oldest first: the decision timeline.
    #[serde(default)]
    pub(crate) timeline: VecDeque<Round>,
}

/// One analysis of the rollout: when, at which weight, what every check measured against its
/// range, and what came of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Round {
    /// Seconds since the Unix epoch.
    pub(crate) time: f64,
    /// The canary's weight while it was measured.
    pub(crate) weight: u32,
    /// The checks.
    pub(crate) checks: Vec<CheckView>,
    /// `pass` (the step was taken), `fail` (a failed check) or `hold` (inconclusive).
    pub(crate) outcome: String,
}

/// A check as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct CheckView {
    /// Metric.
    pub(crate) metric: String,
    /// `pass`, `fail` or `inconclusive`.
    pub(crate) result: String,
    /// Measured value.
    pub(crate) value: Option<f64>,
    /// Canary requests in the window.
    pub(crate) sample: u64,
    /// The range it was held to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) min: Option<f64>,
    /// The range it was held to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max: Option<f64>,
    /// The whole finding.
    #[serde(default)]
    pub(crate) message: String,
}
