//! The rollout state machine, with Flagger's phases, free of I/O and clocks: the controller
//! feeds it one analysis step per interval (check results, whether the canary has endpoints)
//! and commands, and applies the canary weight it returns.
//!
//! ```text
//! Initializing -> Initialized -> Progressing -(checks pass at the last step)-> Promoting
//!   -> Finalising -> Succeeded;   Progressing -(threshold failed checks)-> Failed
//! ```
//! A new canary revision starts again from Progressing.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::Serialize;

use super::analysis::{CheckResult, Verdict};
use super::spec::RolloutSpec;

/// Events kept per rollout.
const EVENTS_KEPT: usize = 100;

/// Flagger's canary phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Phase {
    /// Routing is being set up: everything to the primary.
    Initializing,
    /// Routing set up; waiting for a canary revision.
    Initialized,
    /// Shifting traffic step by step, checking at each.
    Progressing,
    /// Checks passed at the last step: moving all traffic to the canary.
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
    pub fn status_code(self) -> i64 {
        match self {
            Phase::Succeeded => 1,
            Phase::Failed => 2,
            _ => 0,
        }
    }
}

/// A recorded event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub time: f64,
    /// What happened, with the values that decided it.
    pub message: String,
}

/// What the API shows and the state file keeps.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Phase.
    pub phase: Phase,
    /// Share of traffic on the canary, in percent.
    pub canary_weight: u32,
    /// Failed checks in this revision's analysis.
    pub failed_checks: u32,
    /// Inconclusive checks in this revision's analysis.
    pub inconclusive_checks: u32,
    /// Analysis steps passed.
    pub iterations: u32,
    /// Paused by an operator: no step is taken.
    pub paused: bool,
    /// The canary revision being analysed.
    pub revision: String,
    /// The last checks run.
    pub last_checks: Vec<CheckView>,
    /// Recent events, oldest first.
    pub events: VecDeque<Event>,
}

/// A check as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckView {
    /// Metric.
    pub metric: String,
    /// `pass`, `fail` or `inconclusive`.
    pub result: &'static str,
    /// Measured value.
    pub value: Option<f64>,
    /// Canary requests in the window.
    pub sample: u64,
}

/// One analysis step's input.
#[derive(Debug, Default)]
pub struct Step {
    /// Check results over the past window.
    pub checks: Vec<CheckResult>,
    /// The canary revision (its endpoints and labels), or `None` when it has no endpoints.
    pub revision: Option<String>,
}

/// The machine of one rollout.
#[derive(Debug)]
pub struct Machine {
    /// The rollout.
    pub spec: RolloutSpec,
    /// Where it is.
    pub status: Status,
}

impl Machine {
    /// A rollout that has not set its routing up yet.
    pub fn new(spec: RolloutSpec) -> Machine {
        Machine {
            spec,
            status: Status {
                phase: Phase::Initializing,
                canary_weight: 0,
                failed_checks: 0,
                inconclusive_checks: 0,
                iterations: 0,
                paused: false,
                revision: String::new(),
                last_checks: Vec::new(),
                events: VecDeque::new(),
            },
        }
    }

    /// Resumes from a kept status (after a restart).
    pub fn resume(spec: RolloutSpec, status: Status) -> Machine {
        Machine { spec, status }
    }

    fn event(&mut self, message: String) {
        tracing::info!(canary = %self.spec.name, "{message}");
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.status.events.push_back(Event { time, message });
        while self.status.events.len() > EVENTS_KEPT {
            self.status.events.pop_front();
        }
    }

    fn set_weight(&mut self, weight: u32) -> Option<u32> {
        if weight == self.status.canary_weight {
            return None;
        }
        self.status.canary_weight = weight;
        Some(weight)
    }

    /// One analysis step; returns the canary weight to apply when it changes.
    pub fn step(&mut self, input: Step) -> Option<u32> {
        // A new revision (re)starts the analysis, whatever the phase (as Flagger does).
        if let Some(rev) = &input.revision
            && *rev != self.status.revision
            && self.status.phase != Phase::Initializing
        {
            self.status.revision = rev.clone();
            self.status.failed_checks = 0;
            self.status.inconclusive_checks = 0;
            self.status.iterations = 0;
            self.status.phase = Phase::Progressing;
            self.event(format!(
                "New revision detected! Starting canary analysis for {}.",
                self.spec.canary
            ));
            let first = self.spec.steps.first().copied().unwrap_or(100);
            self.event(format!("Advance {} canary weight {first}", self.spec.name));
            self.status.canary_weight = first;
            return Some(first);
        }
        if self.status.paused {
            return None;
        }
        match self.status.phase {
            Phase::Initializing => {
                self.status.phase = Phase::Initialized;
                self.event(format!(
                    "Initialization done! {} routes all traffic to {}.",
                    self.spec.virtual_service, self.spec.primary
                ));
                self.status.canary_weight = 0;
                Some(0)
            }
            Phase::Initialized | Phase::Succeeded | Phase::Failed => None,
            Phase::Progressing => self.analyse(input.checks),
            Phase::Promoting => {
                let next = match self.spec.step_promotion {
                    Some(s) => (self.status.canary_weight + s).min(100),
                    None => 100,
                };
                if next >= 100 {
                    self.status.phase = Phase::Finalising;
                    self.event(format!("Routing all traffic to {}.", self.spec.canary));
                } else {
                    self.event(format!("Promotion: canary weight {next}"));
                }
                self.set_weight(next)
            }
            Phase::Finalising => {
                self.status.phase = Phase::Succeeded;
                self.event("Promotion completed!".to_owned());
                None
            }
        }
    }

    fn analyse(&mut self, checks: Vec<CheckResult>) -> Option<u32> {
        self.status.last_checks = checks
            .iter()
            .map(|c| CheckView {
                metric: c.name.clone(),
                result: c.verdict.name(),
                value: c.value,
                sample: c.sample,
            })
            .collect();
        if !self.spec.skip_analysis {
            if let Some(failed) = checks.iter().find(|c| c.verdict == Verdict::Fail) {
                self.status.failed_checks += 1;
                self.event(format!(
                    "Halt advancement: {} (failed checks {} of {})",
                    failed.describe(),
                    self.status.failed_checks,
                    self.spec.threshold
                ));
                if self.status.failed_checks >= self.spec.threshold {
                    return self.rollback("failed checks threshold reached");
                }
                return None;
            }
            if let Some(unsure) = checks.iter().find(|c| c.verdict == Verdict::Inconclusive) {
                self.status.inconclusive_checks += 1;
                self.event(format!("Hold: {}", unsure.describe()));
                return None;
            }
        }
        self.status.iterations += 1;
        let weight = self.status.canary_weight;
        match self.spec.steps.iter().copied().find(|&w| w > weight) {
            Some(next) => {
                self.event(format!("Advance {} canary weight {next}", self.spec.name));
                self.set_weight(next)
            }
            None => {
                self.status.phase = Phase::Promoting;
                self.event(format!(
                    "Checks passed at weight {weight}: promoting {}.",
                    self.spec.canary
                ));
                self.step(Step::default())
            }
        }
    }

    fn rollback(&mut self, why: &str) -> Option<u32> {
        self.status.phase = Phase::Failed;
        self.event(format!(
            "Rolling back {}: {why}; all traffic to {}.",
            self.spec.name, self.spec.primary
        ));
        self.status.canary_weight = 0;
        Some(0)
    }

    /// Operator command: promote now, whatever the step (a pause ends).
    pub fn promote(&mut self) -> Option<u32> {
        self.status.paused = false;
        self.status.phase = Phase::Finalising;
        self.event(format!(
            "Promoted by an operator: all traffic to {}.",
            self.spec.canary
        ));
        self.status.canary_weight = 100;
        Some(100)
    }

    /// Operator command: roll back now, whatever the step (a pause ends).
    pub fn roll_back(&mut self) -> Option<u32> {
        self.status.paused = false;
        self.rollback("rolled back by an operator")
    }

    /// Operator command: stop or restart taking steps.
    pub fn pause(&mut self, paused: bool) {
        self.status.paused = paused;
        self.event(if paused { "Paused." } else { "Resumed." }.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::analysis::CheckResult;
    use std::time::Duration;

    fn spec() -> RolloutSpec {
        RolloutSpec {
            name: "api".into(),
            virtual_service: "api".into(),
            service: "api".into(),
            primary: "v1".into(),
            canary: "v2".into(),
            interval: Duration::from_secs(1),
            threshold: 2,
            steps: vec![10, 20, 30],
            step_promotion: None,
            checks: Vec::new(),
            skip_analysis: false,
        }
    }

    fn check(verdict: Verdict) -> Vec<CheckResult> {
        vec![CheckResult {
            name: "request-success-rate".into(),
            verdict,
            value: (verdict != Verdict::Inconclusive).then_some(97.0),
            sample: 100,
            min: Some(99.0),
            max: None,
        }]
    }

    fn step(m: &mut Machine, v: Verdict) -> Option<u32> {
        m.step(Step {
            checks: check(v),
            revision: Some("r1".into()),
        })
    }

    #[test]
    fn a_healthy_canary_steps_up_and_is_promoted() {
        let mut m = Machine::new(spec());
        assert_eq!(m.step(Step::default()), Some(0));
        assert_eq!(m.status.phase, Phase::Initialized);
        // No canary endpoints yet: nothing moves.
        assert_eq!(m.step(Step::default()), None);
        assert_eq!(step(&mut m, Verdict::Pass), Some(10));
        assert_eq!(m.status.phase, Phase::Progressing);
        assert_eq!(step(&mut m, Verdict::Pass), Some(20));
        // Inconclusive holds the weight and is counted, not failed.
        assert_eq!(step(&mut m, Verdict::Inconclusive), None);
        assert_eq!(
            (m.status.inconclusive_checks, m.status.failed_checks),
            (1, 0)
        );
        assert_eq!(step(&mut m, Verdict::Pass), Some(30));
        // Past the last step: promotion, all at once, then finalising, then done.
        assert_eq!(step(&mut m, Verdict::Pass), Some(100));
        assert_eq!(m.status.phase, Phase::Finalising);
        assert_eq!(step(&mut m, Verdict::Pass), None);
        assert_eq!(m.status.phase, Phase::Succeeded);
        assert_eq!(m.status.iterations, 3);
        assert!(
            m.status
                .events
                .iter()
                .any(|e| e.message == "Promotion completed!")
        );
    }

    #[test]
    fn threshold_failed_checks_roll_back() {
        let mut m = Machine::new(spec());
        m.step(Step::default());
        assert_eq!(step(&mut m, Verdict::Pass), Some(10));
        assert_eq!(step(&mut m, Verdict::Pass), Some(20));
        assert_eq!(step(&mut m, Verdict::Fail), None);
        assert_eq!(m.status.phase, Phase::Progressing);
        assert_eq!(step(&mut m, Verdict::Fail), Some(0));
        assert_eq!(m.status.phase, Phase::Failed);
        let last = &m.status.events.back().unwrap().message;
        assert!(last.contains("Rolling back"), "{last}");
        let halt = &m.status.events[m.status.events.len() - 2].message;
        assert!(halt.contains("97.00") && halt.contains(">= 99"), "{halt}");
        // Failed stays failed until a new revision.
        assert_eq!(step(&mut m, Verdict::Pass), None);
        let again = m.step(Step {
            checks: Vec::new(),
            revision: Some("r2".into()),
        });
        assert_eq!(again, Some(10));
        assert_eq!(
            (m.status.phase, m.status.failed_checks),
            (Phase::Progressing, 0)
        );
    }

    #[test]
    fn step_weight_promotion_and_operator_commands() {
        let mut m = Machine::new(RolloutSpec {
            steps: vec![50],
            step_promotion: Some(25),
            ..spec()
        });
        m.step(Step::default());
        assert_eq!(step(&mut m, Verdict::Pass), Some(50));
        assert_eq!(step(&mut m, Verdict::Pass), Some(75));
        assert_eq!(m.status.phase, Phase::Promoting);
        m.pause(true);
        assert_eq!(step(&mut m, Verdict::Pass), None);
        m.pause(false);
        assert_eq!(step(&mut m, Verdict::Pass), Some(100));
        // Rollback and promote are immediate.
        let mut m = Machine::new(spec());
        m.step(Step::default());
        step(&mut m, Verdict::Pass);
        assert_eq!(m.roll_back(), Some(0));
        assert_eq!(m.status.phase, Phase::Failed);
        let mut m = Machine::new(spec());
        m.step(Step::default());
        step(&mut m, Verdict::Pass);
        assert_eq!(m.promote(), Some(100));
        assert_eq!(step(&mut m, Verdict::Pass), None);
        assert_eq!(m.status.phase, Phase::Succeeded);
    }
}
