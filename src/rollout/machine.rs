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

use serde::{Deserialize, Serialize};

use super::analysis::{CheckResult, Verdict};
use super::spec::{HookKind, RolloutSpec, Strategy};

/// Events kept per rollout.
const EVENTS_KEPT: usize = 100;

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
    /// The whole finding.
    #[serde(default)]
    pub(crate) message: String,
}

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
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
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
                message: c.describe(),
            })
            .collect();
        if let Some(failed) = checks.iter().find(|c| c.verdict == Verdict::Fail) {
            self.failed_check(failed.describe());
            return false;
        }
        if let Some(unsure) = checks.iter().find(|c| c.verdict == Verdict::Inconclusive) {
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
mod tests {
    use super::*;
    use crate::rollout::spec::Side;
    use std::collections::HashMap;
    use std::time::Duration;

    fn side(subset: &str) -> Side {
        Side {
            host: "api".into(),
            subset: Some(subset.into()),
        }
    }

    fn spec() -> RolloutSpec {
        RolloutSpec {
            name: "api".into(),
            namespace: "default".into(),
            virtual_service: "api".into(),
            primary: side("v1"),
            canary: side("v2"),
            deployment: false,
            interval: Duration::from_secs(1),
            threshold: 2,
            steps: vec![10, 20, 30],
            step_promotion: None,
            checks: Vec::new(),
            skip_analysis: false,
            strategy: Strategy::Canary,
            iterations: 0,
            matches: Vec::new(),
            mirror: None,
            hooks: Vec::new(),
            affinity: None,
        }
    }

    /// Scripted answers: the next verdict of the checks and of each hook kind (default: pass),
    /// and a log of the calls made.
    #[derive(Default)]
    struct Script {
        verdict: Option<Verdict>,
        hooks: HashMap<&'static str, bool>,
        calls: Vec<&'static str>,
    }

    impl Env for Script {
        async fn hook(&mut self, kind: HookKind, _: &Status) -> Result<(), String> {
            self.calls.push(kind.name());
            match self.hooks.get(kind.name()) {
                Some(false) => Err("answered 403".into()),
                Some(true) => Ok(()),
                // Absent hooks: a gate is open, the rollback hook is not asked.
                None => Ok(()),
            }
        }

        async fn checks(&mut self) -> Vec<CheckResult> {
            self.calls.push("checks");
            let verdict = self.verdict.unwrap_or(Verdict::Pass);
            vec![CheckResult {
                name: "request-success-rate".into(),
                verdict,
                value: (verdict != Verdict::Inconclusive).then_some(97.0),
                sample: 100,
                min: Some(99.0),
                max: None,
                versus: None,
                query: None,
            }]
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn revisions(canary: &str) -> Revisions {
        Revisions {
            canary: Some(canary.into()),
            primary: Some("p1".into()),
        }
    }

    fn step(m: &mut Machine, s: &mut Script, v: Verdict) -> u32 {
        s.verdict = Some(v);
        block_on(m.step(revisions("r1"), s));
        m.status.routing.canary_weight
    }

    fn started(spec: RolloutSpec) -> (Machine, Script) {
        let mut m = Machine::new(spec);
        let mut s = Script::default();
        block_on(m.step(Revisions::default(), &mut s));
        assert_eq!(m.status.phase, Phase::Initialized);
        // No canary endpoints yet: nothing moves.
        block_on(m.step(Revisions::default(), &mut s));
        assert_eq!(m.status.phase, Phase::Initialized);
        (m, s)
    }

    fn messages(m: &Machine) -> Vec<&str> {
        m.status.events.iter().map(|e| e.message.as_str()).collect()
    }

    #[test]
    fn a_healthy_canary_steps_up_and_is_promoted() {
        let (mut m, mut s) = started(spec());
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 10);
        assert_eq!(m.status.phase, Phase::Progressing);
        // The first step runs no checks (no traffic reached the canary yet).
        assert_eq!(
            s.calls,
            ["confirm-rollout", "pre-rollout", "confirm-traffic-increase"]
        );
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 20);
        // Inconclusive holds the weight and is counted, not failed.
        assert_eq!(step(&mut m, &mut s, Verdict::Inconclusive), 20);
        assert_eq!(
            (m.status.inconclusive_checks, m.status.failed_checks),
            (1, 0)
        );
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 30);
        // Past the last step: promotion, all at once, then finalising, then done.
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 100);
        assert_eq!(m.status.phase, Phase::Finalising);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 100);
        assert_eq!(m.status.phase, Phase::Succeeded);
        assert_eq!(m.status.iterations, 3);
        assert!(
            messages(&m)
                .iter()
                .any(|e| e.starts_with("Promotion completed!"))
        );
    }

    #[test]
    fn threshold_failed_checks_roll_back() {
        let (mut m, mut s) = started(spec());
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 10);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 20);
        assert_eq!(step(&mut m, &mut s, Verdict::Fail), 20);
        assert_eq!(m.status.phase, Phase::Progressing);
        assert_eq!(step(&mut m, &mut s, Verdict::Fail), 0);
        assert_eq!(m.status.phase, Phase::Failed);
        let ev = messages(&m);
        let n = ev.len();
        assert_eq!(
            ev[n - 2],
            "Rolling back api failed checks threshold reached 2"
        );
        assert!(ev[n - 1].starts_with("Canary failed!"));
        assert!(
            ev[n - 3].starts_with("Halt api advancement request-success-rate 97.00 (range >= 99"),
            "{}",
            ev[n - 3]
        );
        assert_eq!(m.status.events.back().unwrap().kind, "Warning");
        // Failed stays failed until a new revision, which starts over.
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 0);
        s.verdict = Some(Verdict::Pass);
        block_on(m.step(revisions("r2"), &mut s));
        assert_eq!(m.status.routing.canary_weight, 10);
        assert_eq!(
            (m.status.phase, m.status.failed_checks),
            (Phase::Progressing, 0)
        );
        assert!(messages(&m).contains(&"New revision detected! Restarting analysis for v2."));
    }

    #[test]
    fn step_weight_promotion_and_operator_commands() {
        let (mut m, mut s) = started(RolloutSpec {
            steps: vec![50],
            step_promotion: Some(25),
            ..spec()
        });
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 50);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 75);
        assert_eq!(m.status.phase, Phase::Promoting);
        m.pause(true);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 75);
        m.pause(false);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 100);
        // Rollback and promote are immediate.
        let (mut m, mut s) = started(spec());
        step(&mut m, &mut s, Verdict::Pass);
        m.roll_back();
        assert_eq!(
            (m.status.phase, m.status.routing.canary_weight),
            (Phase::Failed, 0)
        );
        let (mut m, mut s) = started(spec());
        step(&mut m, &mut s, Verdict::Pass);
        m.promote();
        assert_eq!(m.status.routing.canary_weight, 100);
        step(&mut m, &mut s, Verdict::Pass);
        assert_eq!(m.status.phase, Phase::Succeeded);
    }

    #[test]
    fn gates_hold_the_rollout_until_approved() {
        let (mut m, mut s) = started(spec());
        s.hooks.insert("confirm-rollout", false);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 0);
        assert_eq!(m.status.phase, Phase::Waiting);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 0);
        s.hooks.insert("confirm-rollout", true);
        s.hooks.insert("confirm-traffic-increase", false);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 0);
        assert_eq!(m.status.phase, Phase::Progressing);
        s.hooks.insert("confirm-traffic-increase", true);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 10);
        step(&mut m, &mut s, Verdict::Pass);
        step(&mut m, &mut s, Verdict::Pass);
        assert_eq!(m.status.routing.canary_weight, 30);
        // At the last step, promotion waits for its gate while the checks keep running.
        s.hooks.insert("confirm-promotion", false);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 30);
        assert_eq!(m.status.phase, Phase::WaitingPromotion);
        s.calls.clear();
        assert_eq!(step(&mut m, &mut s, Verdict::Fail), 30);
        assert_eq!(s.calls, ["rollout", "checks"]);
        assert_eq!(m.status.failed_checks, 1);
        s.hooks.insert("confirm-promotion", true);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 100);
        assert_eq!(m.status.phase, Phase::Finalising);
    }

    #[test]
    fn failing_hooks_count_as_failed_checks_and_a_rollback_hook_rolls_back() {
        let (mut m, mut s) = started(spec());
        s.hooks.insert("pre-rollout", false);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 0);
        assert_eq!(m.status.failed_checks, 1);
        assert!(
            messages(&m)
                .last()
                .unwrap()
                .contains("pre-rollout check failed: answered 403")
        );
        s.hooks.insert("pre-rollout", true);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 10);
        s.hooks.insert("rollout", false);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 0);
        assert_eq!(m.status.phase, Phase::Failed);

        let mut with_rollback = spec();
        with_rollback.hooks.push(crate::rollout::spec::HookSpec {
            kind: HookKind::Rollback,
            name: "stop".into(),
            url: "http://127.0.0.1:1/".into(),
            timeout: Duration::from_secs(1),
            retries: 0,
            metadata: Default::default(),
        });
        let (mut m, mut s) = started(with_rollback);
        s.hooks.insert("rollback", false);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 10);
        s.hooks.insert("rollback", true);
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 0);
        assert!(messages(&m).contains(&"Rolling back api manual webhook invoked"));
    }

    #[test]
    fn ab_testing_and_blue_green_count_iterations() {
        let (mut m, mut s) = started(RolloutSpec {
            strategy: Strategy::AbTesting,
            iterations: 2,
            ..spec()
        });
        step(&mut m, &mut s, Verdict::Pass);
        assert_eq!(
            m.status.routing,
            Routing {
                canary_weight: 0,
                matched: true,
                mirror: false
            }
        );
        assert_eq!(
            messages(&m).last().unwrap(),
            &"Advance api canary iteration 1/2"
        );
        step(&mut m, &mut s, Verdict::Pass);
        assert_eq!(m.status.iterations, 2);
        step(&mut m, &mut s, Verdict::Pass);
        assert_eq!(m.status.phase, Phase::Finalising);
        assert_eq!(m.status.routing.canary_weight, 100);
        assert!(!m.status.routing.matched);

        let (mut m, mut s) = started(RolloutSpec {
            strategy: Strategy::BlueGreen,
            iterations: 3,
            mirror: Some(50.0),
            ..spec()
        });
        step(&mut m, &mut s, Verdict::Pass);
        assert!(m.status.routing.mirror);
        assert_eq!(m.status.routing.canary_weight, 0);
        step(&mut m, &mut s, Verdict::Fail);
        step(&mut m, &mut s, Verdict::Pass);
        step(&mut m, &mut s, Verdict::Pass);
        assert_eq!(m.status.iterations, 3);
        step(&mut m, &mut s, Verdict::Pass);
        assert_eq!(
            (
                m.status.phase,
                m.status.routing.canary_weight,
                m.status.routing.mirror
            ),
            (Phase::Finalising, 100, false)
        );
        assert!(messages(&m).contains(&"Stop traffic mirroring."));
    }

    #[test]
    fn a_deployment_target_returns_to_the_primary_once_it_is_updated() {
        let (mut m, mut s) = started(RolloutSpec {
            deployment: true,
            steps: vec![50],
            ..spec()
        });
        step(&mut m, &mut s, Verdict::Pass);
        step(&mut m, &mut s, Verdict::Pass);
        step(&mut m, &mut s, Verdict::Pass);
        assert_eq!(m.status.phase, Phase::Succeeded);
        assert_eq!(m.status.routing.canary_weight, 100);
        // The primary unchanged: traffic stays on the canary.
        assert_eq!(step(&mut m, &mut s, Verdict::Pass), 100);
        // The new version deployed as the primary: all traffic back to it.
        block_on(m.step(
            Revisions {
                canary: Some("r1".into()),
                primary: Some("p2".into()),
            },
            &mut s,
        ));
        assert_eq!(m.status.routing.canary_weight, 0);
        assert_eq!(m.status.phase, Phase::Succeeded);
        assert!(messages(&m).last().unwrap().starts_with("v1 was updated"));
    }

    #[test]
    fn skip_analysis_promotes_at_once() {
        let (mut m, mut s) = started(RolloutSpec {
            skip_analysis: true,
            ..spec()
        });
        assert_eq!(step(&mut m, &mut s, Verdict::Fail), 100);
        assert_eq!(m.status.phase, Phase::Succeeded);
        assert!(!s.calls.contains(&"checks"));
    }

    #[test]
    fn the_status_survives_a_round_trip_through_json() {
        let (mut m, mut s) = started(spec());
        step(&mut m, &mut s, Verdict::Pass);
        step(&mut m, &mut s, Verdict::Fail);
        let text = serde_json::to_string(&m.status).unwrap();
        assert!(text.contains("\"canaryWeight\":10"), "{text}");
        let back: Status = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m.status);
    }
}
