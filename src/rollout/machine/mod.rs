//! The rollout state machine, with Flagger's phases and rules, free of I/O and clocks: the
//! controller calls [`Machine::step`] once per interval with the canary's revision and an
//! [`Env`] that runs webhooks and metric checks when the machine asks for them, and applies the
//! routing the machine leaves behind.
//!
//! ```text
//! Initializing -> Initialized -(new revision)-> [Waiting: confirm-rollout] -> Progressing
//!   -(analysis passes at the last step / iteration)-> [WaitingPromotion: confirm-promotion]
//!   -> Promoting -> Finalising -> Succeeded
//! Progressing | Waiting | WaitingPromotion -(threshold failed checks, rollback hook)-> Failed
//! ```
//! A new canary revision starts the analysis again, whatever the phase.

use std::collections::VecDeque;
use std::future::Future;
use std::time::SystemTime;

use super::analysis::{CheckResult, Verdict};
use super::spec::{HookKind, RolloutSpec, Strategy};
use super::status::{CheckView, EVENTS_KEPT, Event, Phase, ROUNDS_KEPT, Round, Routing, Status};

/// What the machine asks of the world. Each call happens only when Flagger's rules need it.
pub(crate) trait Env {
    /// Calls every webhook of `kind`, in order: `Ok` when all answered 2xx (or none exist),
    /// else why not.
    fn hook(
        &mut self,
        kind: HookKind,
        status: &Status,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Runs the metric checks over their windows.
    fn checks(&mut self) -> impl Future<Output = Vec<CheckResult>> + Send;
}

/// What the versions run: their endpoints and labels, `None` while one has no endpoints.
#[derive(Clone, Debug, Default)]
pub(crate) struct Revisions {
    /// The canary's.
    pub(crate) canary: Option<String>,
    /// The primary's.
    pub(crate) primary: Option<String>,
}

/// The machine of one rollout.
#[derive(Clone, Debug)]
pub(crate) struct Machine {
    /// The rollout.
    pub(crate) spec: RolloutSpec,
    /// Where it is.
    pub(crate) status: Status,
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Machine {
    /// A rollout that has not set its routing up yet.
    pub(crate) fn new(spec: RolloutSpec) -> Machine {
        Machine {
            spec,
            status: Status {
                phase: Phase::Initializing,
                routing: Routing::default(),
                failed_checks: 0,
                inconclusive_checks: 0,
                iterations: 0,
                paused: false,
                confirmed: false,
                revision: String::new(),
                primary_revision: String::new(),
                last_checks: Vec::new(),
                events: VecDeque::new(),
                events_total: 0,
                timeline: VecDeque::new(),
            },
        }
    }

    /// Resumes from a kept status (after a restart, or with an edited Canary).
    pub(crate) fn resume(spec: RolloutSpec, status: Status) -> Machine {
        Machine { spec, status }
    }

    fn event(&mut self, message: String) {
        self.record("Normal", message);
    }

    fn warning(&mut self, message: String) {
        self.record("Warning", message);
    }

    fn record(&mut self, kind: &str, message: String) {
        tracing::info!(canary = %self.spec.name, "{message}");
        let time = now();
        self.status.events.push_back(Event {
            time,
            kind: kind.to_owned(),
            message,
        });
        self.status.events_total += 1;
        while self.status.events.len() > EVENTS_KEPT {
            self.status.events.pop_front();
        }
    }

    fn route(&mut self, canary_weight: u32, matched: bool, mirror: bool) {
        self.status.routing = Routing {
            canary_weight,
            matched,
            mirror,
        };
    }

    /// One step, taken every interval.
    pub(crate) async fn step(&mut self, revisions: Revisions, env: &mut impl Env) {
        if self.status.paused {
            return;
        }
        if self.status.phase == Phase::Initializing {
            self.status.phase = Phase::Initialized;
            self.route(0, false, false);
            self.event(format!(
                "Initialization done! {} routes all traffic to {}.",
                self.spec.virtual_service, self.spec.primary
            ));
            return;
        }
        if self.status.phase == Phase::Succeeded && self.spec.deployment {
            self.primary_updated(revisions.primary.as_deref());
        }
        // Without canary endpoints there is nothing to analyse; the routing stays.
        let Some(revision) = revisions.canary else {
            return;
        };
        if revision != self.status.revision {
            self.restart(revision);
        }
        match self.status.phase {
            Phase::Initializing | Phase::Initialized | Phase::Succeeded | Phase::Failed => {}
            Phase::Waiting | Phase::Progressing | Phase::WaitingPromotion => {
                self.progress(env).await
            }
            Phase::Promoting => self.promote_step(),
            Phase::Finalising => {
                self.status.phase = Phase::Succeeded;
                self.status.primary_revision = revisions.primary.unwrap_or_default();
                self.event(format!(
                    "Promotion completed! {} serves all traffic of {}.",
                    self.spec.canary, self.spec.virtual_service
                ));
            }
        }
    }

    /// Deployment targets, after promotion: traffic stays on the canary until the primary's
    /// endpoints change (the new version was deployed as the primary), then returns to it.
    fn primary_updated(&mut self, primary: Option<&str>) {
        let Some(now) = primary else { return };
        if self.status.routing.canary_weight == 0 || now == self.status.primary_revision {
            return;
        }
        self.status.primary_revision = now.to_owned();
        self.route(0, false, false);
        self.event(format!(
            "{} was updated: routing all traffic back to it.",
            self.spec.primary
        ));
    }

    /// A new revision: the analysis starts over, with all traffic on the primary.
    fn restart(&mut self, revision: String) {
        let again = !self.status.revision.is_empty();
        self.status.revision = revision;
        self.status.failed_checks = 0;
        self.status.inconclusive_checks = 0;
        self.status.iterations = 0;
        self.status.confirmed = false;
        self.status.last_checks.clear();
        self.status.timeline.clear();
        self.status.phase = Phase::Progressing;
        self.route(0, false, false);
        self.event(format!(
            "New revision detected! {} {}.",
            if again {
                "Restarting analysis for"
            } else {
                "Progressing canary analysis for"
            },
            self.spec.canary
        ));
    }

    /// Whether the analysis of this revision has not begun yet.
    fn at_start(&self) -> bool {
        self.status.routing == Routing::default() && self.status.iterations == 0
    }

    async fn progress(&mut self, env: &mut impl Env) {
        if self.spec.has_hook(HookKind::Rollback)
            && env.hook(HookKind::Rollback, &self.status).await.is_ok()
        {
            return self.fail("manual webhook invoked");
        }
        if !self.status.confirmed {
            if let Err(why) = env.hook(HookKind::ConfirmRollout, &self.status).await {
                return self.wait_in(Phase::Waiting, &format!("approval ({why})"));
            }
            self.status.confirmed = true;
            self.status.phase = Phase::Progressing;
            self.event(format!(
                "Starting canary analysis for {}.",
                self.spec.canary
            ));
        }
        if self.spec.skip_analysis {
            self.route(100, false, false);
            self.status.phase = Phase::Succeeded;
            self.event(format!(
                "Promotion completed! Canary analysis was skipped for {}; all traffic to it.",
                self.spec.canary
            ));
            return;
        }
        if self.at_start() {
            // Before any traffic reaches the canary: the pre-rollout webhooks.
            if let Err(why) = env.hook(HookKind::PreRollout, &self.status).await {
                return self.failed_check(format!("pre-rollout check failed: {why}"));
            }
        } else if !self.analyse(env).await {
            return;
        }
        match self.spec.strategy {
            Strategy::Canary => {
                let weight = self.status.routing.canary_weight;
                if weight < self.spec.max_weight() {
                    let next = self
                        .spec
                        .steps
                        .iter()
                        .copied()
                        .find(|&w| w > weight)
                        .unwrap_or(100);
                    if let Err(why) = env
                        .hook(HookKind::ConfirmTrafficIncrease, &self.status)
                        .await
                    {
                        self.event(format!(
                            "Halt {} advancement: waiting for approval to increase the canary weight to {next} ({why})",
                            self.spec.name
                        ));
                        return;
                    }
                    self.route(next, false, false);
                    self.event(format!("Advance {} canary weight {next}", self.spec.name));
                    return;
                }
            }
            Strategy::AbTesting | Strategy::BlueGreen => {
                if self.status.iterations < self.spec.iterations {
                    self.status.iterations += 1;
                    let ab = self.spec.strategy == Strategy::AbTesting;
                    self.route(0, ab, !ab && self.spec.mirror.is_some());
                    self.event(format!(
                        "Advance {} canary iteration {}/{}",
                        self.spec.name, self.status.iterations, self.spec.iterations
                    ));
                    return;
                }
            }
        }
        if let Err(why) = env.hook(HookKind::ConfirmPromotion, &self.status).await {
            return self.wait_in(
                Phase::WaitingPromotion,
                &format!("promotion approval ({why})"),
            );
        }
        self.status.phase = Phase::Promoting;
        self.event(format!(
            "Promoting {}: analysis passed (failed checks {} of {}).",
            self.spec.canary, self.status.failed_checks, self.spec.threshold
        ));
        self.promote_step();
    }

    /// Holds in a waiting phase for a gate; the event is recorded once, on entering it.
    fn wait_in(&mut self, phase: Phase, what: &str) {
        if self.status.phase != phase {
            self.status.phase = phase;
            self.event(format!(
                "Halt {} advancement: waiting for {what}",
                self.spec.name
            ));
        }
    }

    /// Runs the rollout webhooks and the metric checks; true when the canary may advance.
    async fn analyse(&mut self, env: &mut impl Env) -> bool {
        if let Err(why) = env.hook(HookKind::Rollout, &self.status).await {
            self.failed_check(format!("rollout check failed: {why}"));
            return false;
        }
        let checks = env.checks().await;
        self.status.last_checks = checks
            .iter()
            .map(|c| CheckView {
                metric: c.name.clone(),
                result: c.verdict.name().to_owned(),
                value: c.value,
                sample: c.sample,
                min: c.min,
                max: c.max,
                message: c.describe(),
            })
            .collect();
        let failed = checks.iter().find(|c| c.verdict == Verdict::Fail);
        let unsure = checks.iter().find(|c| c.verdict == Verdict::Inconclusive);
        let outcome = match (failed, unsure) {
            (Some(_), _) => "fail",
            (None, Some(_)) => "hold",
            (None, None) => "pass",
        };
        self.status.timeline.push_back(Round {
            time: now(),
            weight: self.status.routing.canary_weight,
            checks: self.status.last_checks.clone(),
            outcome: outcome.to_owned(),
        });
        while self.status.timeline.len() > ROUNDS_KEPT {
            self.status.timeline.pop_front();
        }
        if let Some(failed) = failed {
            self.failed_check(failed.describe());
            return false;
        }
        if let Some(unsure) = unsure {
            self.status.inconclusive_checks += 1;
            self.event(format!(
                "Hold {} advancement: {}",
                self.spec.name,
                unsure.describe()
            ));
            return false;
        }
        if self.spec.strategy == Strategy::Canary {
            self.status.iterations += 1;
        }
        true
    }

    /// Counts a failed check; rolls back at the threshold.
    fn failed_check(&mut self, why: String) {
        self.status.failed_checks += 1;
        self.event(format!(
            "Halt {} advancement {why} (failed checks {} of {})",
            self.spec.name, self.status.failed_checks, self.spec.threshold
        ));
        if self.status.failed_checks >= self.spec.threshold {
            let n = self.status.failed_checks;
            self.fail(&format!("failed checks threshold reached {n}"));
        }
    }

    fn promote_step(&mut self) {
        let next = match self.spec.step_promotion {
            Some(s) if self.spec.strategy == Strategy::Canary => {
                (self.status.routing.canary_weight + s).min(100)
            }
            _ => 100,
        };
        if next >= 100 {
            self.status.phase = Phase::Finalising;
            if self.status.routing.mirror {
                self.event("Stop traffic mirroring.".to_owned());
            }
            self.event(format!("Routing all traffic to {}.", self.spec.canary));
        } else {
            self.event(format!("Promotion: canary weight {next}"));
        }
        self.route(next, false, false);
    }

    fn fail(&mut self, why: &str) {
        self.status.phase = Phase::Failed;
        self.route(0, false, false);
        self.warning(format!("Rolling back {} {why}", self.spec.name));
        self.warning(format!(
            "Canary failed! All traffic on {}.",
            self.spec.primary
        ));
    }

    /// Operator command: promote now, whatever the step (a pause ends).
    pub(crate) fn promote(&mut self) {
        self.status.paused = false;
        self.status.phase = Phase::Finalising;
        self.route(100, false, false);
        self.event(format!(
            "Promoted by an operator: all traffic to {}.",
            self.spec.canary
        ));
    }

    /// Operator command: roll back now, whatever the step (a pause ends).
    pub(crate) fn roll_back(&mut self) {
        self.status.paused = false;
        self.fail("by an operator");
    }

    /// Operator command: stop or restart taking steps.
    pub(crate) fn pause(&mut self, paused: bool) {
        self.status.paused = paused;
        self.event(if paused { "Paused." } else { "Resumed." }.to_owned());
    }
}

#[cfg(test)]
mod tests;
