//! An experiment's state: its phase, decision, tests and counts (kept in the state directory
//! across restarts), its events and recent history, and its JSON.

use std::collections::VecDeque;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::spec::ExperimentSpec;
use super::verdict::{Decision, Judged, Tests};
use super::{Command, after};
use crate::config::experiment::OnConclusion;
use crate::policy::experiment::{Counts, Routing};
use crate::rollout::status::Event;

/// Events kept.
const EVENTS_KEPT: usize = 50;
/// Samples of the history kept (one a second: ten minutes).
const HISTORY_KEPT: usize = 600;

/// Where an experiment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Phase {
    /// Assigning, counting, judging.
    Running,
    /// A winner was found (or an operator concluded it).
    Concluded,
    /// Ended without a winner: an operator, a guardrail, or `maxDuration`.
    Stopped,
}

/// One second of an experiment's primary goal, per variant: (rate, interval).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct Sample {
    /// Seconds since the Unix epoch.
    pub(crate) time: f64,
    /// Per variant: participants, rate and its interval.
    pub(crate) variants: Vec<(u64, f64, [f64; 2])>,
}

/// An experiment's state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct State {
    /// The variants and goals it counts (a kept state of another design is not resumed).
    pub(crate) design: Vec<String>,
    pub(crate) phase: Phase,
    /// Seconds since the Unix epoch.
    pub(crate) started: f64,
    pub(crate) ended: Option<f64>,
    pub(crate) decision: Decision,
    pub(crate) tests: Tests,
    /// The counts when they were last looked at.
    pub(crate) counts: Counts,
    /// Participants when the weights last changed, and those weights: the sample ratio is
    /// checked on who came since.
    pub(crate) srm_from: Vec<u64>,
    pub(crate) srm_weights: Vec<u32>,
    pub(crate) events: VecDeque<Event>,
    /// An operator's command, for the controller's next look.
    #[serde(skip)]
    pub(crate) pending: Option<Command>,
    /// The last judgement.
    #[serde(skip)]
    pub(crate) judged: Option<Judged>,
    #[serde(skip)]
    pub(crate) history: VecDeque<Sample>,
}

/// What an experiment counts: its variants and goals.
pub(crate) fn design(spec: &ExperimentSpec) -> Vec<String> {
    spec.variants
        .iter()
        .map(|v| format!("{}={}", v.0, v.1))
        .chain(spec.goals.iter().map(|g| format!("goal {} {}", g.0, g.1)))
        .collect()
}

pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl State {
    /// A new experiment's state.
    pub(crate) fn new(spec: &ExperimentSpec) -> State {
        let k = spec.variants.len();
        let g = spec.goals.len();
        let mut s = State {
            design: design(spec),
            phase: Phase::Running,
            started: now(),
            ended: None,
            decision: Decision::default(),
            tests: Tests::default(),
            counts: Counts {
                users: vec![0; k],
                conversions: vec![vec![0; g]; k],
                values: vec![vec![Default::default(); g]; k],
            },
            srm_from: vec![0; k],
            srm_weights: spec.weights(),
            events: VecDeque::new(),
            pending: None,
            judged: None,
            history: VecDeque::new(),
        };
        s.event(
            "Normal",
            format!(
                "Experiment started: {} on VirtualService {}.",
                spec.variants
                    .iter()
                    .map(|v| format!("{} ({}, weight {})", v.0, v.1, v.2))
                    .collect::<Vec<_>>()
                    .join(" vs "),
                spec.target
            ),
        );
        s
    }

    /// Records an event (and logs it).
    pub(crate) fn event(&mut self, kind: &str, message: String) {
        if kind == "Warning" {
            tracing::warn!("{message}");
        } else {
            tracing::info!("{message}");
        }
        self.events.push_back(Event {
            time: now(),
            kind: kind.to_owned(),
            message,
        });
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    /// Keeps a second of history.
    pub(crate) fn sample(&mut self, s: Sample) {
        self.history.push_back(s);
        while self.history.len() > HISTORY_KEPT {
            self.history.pop_front();
        }
    }

    /// Takes in the state its judge stored (in a fleet); what is only shown here (the last
    /// judgement, the history) stays.
    pub(crate) fn take_stored(&mut self, stored: State) {
        let judged = self.judged.take();
        let history = std::mem::take(&mut self.history);
        *self = State {
            judged,
            history,
            pending: None,
            ..stored
        };
    }

    /// What the experiment does to requests now.
    pub(crate) fn routing(&self, spec: &ExperimentSpec) -> Routing {
        match self.phase {
            Phase::Running => Routing::Running,
            Phase::Stopped => Routing::Control,
            Phase::Concluded => match after(spec, self.decision.winner.as_deref()) {
                OnConclusion::Rollout => Routing::AsIs,
                OnConclusion::Stop => Routing::Control,
                OnConclusion::None => Routing::Keep,
            },
        }
    }

    /// The winner's subset, when its canary is to run.
    pub(crate) fn rolled_out(&self, spec: &ExperimentSpec) -> Option<String> {
        let winner = self.decision.winner.as_deref()?;
        (self.phase == Phase::Concluded && after(spec, Some(winner)) == OnConclusion::Rollout)
            .then(|| spec.variant(winner).map(|v| spec.variants[v].1.clone()))
            .flatten()
    }

    /// `GET /experiments/NAME`.
    pub(crate) fn json(&self, spec: &ExperimentSpec) -> Value {
        let variants: Vec<Value> = spec
            .variants
            .iter()
            .enumerate()
            .map(|(v, (name, subset, weight))| {
                let goals: serde_json::Map<String, Value> = spec
                    .goals
                    .iter()
                    .enumerate()
                    .map(|(g, (goal, _, _))| {
                        let view = self
                            .judged
                            .as_ref()
                            .and_then(|j| j.goals.get(v)?.get(g))
                            .map_or(Value::Null, |x| json!(x));
                        (goal.clone(), view)
                    })
                    .collect();
                json!({
                    "name": name,
                    "subset": subset,
                    "weight": weight,
                    "users": self.counts.users.get(v).copied().unwrap_or(0),
                    "goals": goals,
                })
            })
            .collect();
        json!({
            "name": spec.name,
            "target": spec.target,
            "phase": self.phase,
            "routing": format!("{:?}", self.routing(spec)),
            "startedAt": self.started,
            "endedAt": self.ended,
            "primaryGoal": spec.goals[spec.primary].0,
            "confidence": 100.0 * (1.0 - spec.alpha),
            "minUsersPerVariant": spec.min_users,
            "onConclusion": spec.on_conclusion,
            "rollout": self.rolled_out(spec).map(|_| spec.name.clone()),
            "variants": variants,
            "srm": self.judged.as_ref().map(|j| json!(j.srm)),
            "decision": self.decision,
            "events": self.events,
            "history": self.history,
        })
    }
}

/// The kept state of `spec`'s experiment, if it is of the same design.
pub(crate) fn load(dir: Option<&Path>, spec: &ExperimentSpec) -> Option<State> {
    let text = std::fs::read(dir?.join(format!("{}.json", spec.name))).ok()?;
    let state: State = serde_json::from_slice(&text).ok()?;
    if state.design != design(spec) {
        return None;
    }
    Some(state)
}

/// Keeps the state (written whole, then renamed: a crash leaves the old one).
pub(crate) fn save(dir: Option<&Path>, spec: &ExperimentSpec, state: &State) {
    let Some(dir) = dir else { return };
    let result = std::fs::create_dir_all(dir).and_then(|()| {
        let tmp = dir.join(format!(".{}.json.tmp", spec.name));
        std::fs::write(&tmp, serde_json::to_vec(state).unwrap_or_default())?;
        std::fs::rename(&tmp, dir.join(format!("{}.json", spec.name)))
    });
    if let Err(e) = result {
        tracing::warn!(experiment = %spec.name, error = %e, "Cannot keep the experiment's state.");
    }
}
