//! The machine driven through whole rollouts with a scripted environment.

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
            incomplete: None,
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
