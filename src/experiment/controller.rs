//! An experiment's controller: every second it reads the counts from the snapshot being
//! served, judges them, checks the guardrails and ends the experiment when it is decided.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::spec::ExperimentSpec;
use super::status::{self, Phase, Sample, State, now};
use super::verdict::{self, Decision};
use super::{Command, after};
use crate::config::ResourceSet;
use crate::config::experiment::OnConclusion;
use crate::config::validate::winner_canary;
use crate::control::change::{Change, Steer};
use crate::metrics::VersionSample;
use crate::rollout::analysis::{self, Verdict};
use crate::rollout::command::lock;
use crate::rollout::spec::{CheckKind, CheckSpec, RolloutSpec};

/// Time between looks.
const LOOK: Duration = Duration::from_secs(1);
/// Time between the queries of goals measured by Prometheus.
const QUERY_EVERY: Duration = Duration::from_secs(10);

/// Per Prometheus goal (by index), each variant's rate as last measured.
type Measured = Vec<(usize, Vec<Option<f64>>)>;

/// A guardrail of one treatment: the check, the two versions' counters, and the reading at
/// the start of its window.
struct Guardrail {
    variant: String,
    check: CheckSpec,
    treatment: (String, String),
    control: (String, String),
    since: Option<(Instant, VersionSample, VersionSample)>,
}

/// Runs until aborted (the experiment is removed or changed).
pub(super) async fn drive(
    control: Weak<dyn Steer>,
    spec: ExperimentSpec,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    dir: Option<PathBuf>,
) {
    let mut guardrails = None;
    let mut measured: Measured = Vec::new();
    let mut queried: Option<Instant> = None;
    // The winner's subset whose canary the configuration was last made to hold: after a
    // restart a concluded experiment's canary is put back by the first look.
    let mut applied: Option<String> = None;
    let mut tick = tokio::time::interval(LOOK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = wake.notified() => {}
        }
        let Some(steer) = control.upgrade() else {
            return;
        };
        let snap = steer.snapshot();
        let guardrails = guardrails.get_or_insert_with(|| guardrails_of(&spec, &snap.resources));
        let Some(e) = snap.experiments.iter().find(|e| e.design.name == spec.name) else {
            continue;
        };
        let running = lock(&state).phase == Phase::Running;
        if running && !spec.queries.is_empty() && queried.is_none_or(|t| t.elapsed() >= QUERY_EVERY)
        {
            queried = Some(Instant::now());
            let age = Duration::from_secs_f64((now() - lock(&state).started).max(1.0));
            let (rates, errors) = measure(&spec, age).await;
            measured = rates;
            if !errors.is_empty() {
                lock(&state).event(
                    "Warning",
                    format!("Goal query failed: {}", errors.join("; ")),
                );
            }
        }
        let rolled = {
            let mut st = lock(&state);
            if !st.restored {
                // Counts kept across a restart join those of this process.
                if e.live.counts().users.iter().all(|&u| u == 0) {
                    e.live.add(&st.counts);
                }
                st.restored = true;
            }
            if st.phase == Phase::Running {
                let mut counts = e.live.counts();
                for (g, rates) in &measured {
                    for (v, rate) in rates.iter().enumerate() {
                        if let Some(r) = rate {
                            let users = counts.users[v];
                            counts.conversions[v][*g] =
                                ((r.clamp(0.0, 1.0) * users as f64).round() as u64).min(users);
                        }
                    }
                }
                look(&spec, &mut st, &counts, guardrails, steer.as_ref());
            }
            e.live.set_routing(st.routing(&spec));
            st.rolled_out(&spec)
        };
        {
            let st = lock(&state);
            status::save(dir.as_deref(), &spec, &st);
        }
        if rolled != applied {
            applied.clone_from(&rolled);
            // The winner's canary joins the configuration (or leaves it).
            if let Err(errors) = steer.apply(Change::Weights).await {
                let mut st = lock(&state);
                st.event(
                    "Warning",
                    format!(
                        "The canary of the winner could not be applied: {}",
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                );
            }
        }
    }
}

/// Runs the queries of the goals measured by Prometheus, for every variant: the rates, and
/// what failed.
async fn measure(spec: &ExperimentSpec, age: Duration) -> (Measured, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (g, q) in &spec.queries {
        let mut rates = Vec::with_capacity(spec.variants.len());
        for v in 0..spec.variants.len() {
            let query = q.render(spec, v, age);
            match crate::rollout::prometheus::query(&q.address, &query, None).await {
                Ok(rate) => rates.push(rate),
                Err(e) => {
                    errors.push(format!(
                        "{} for {}: {e}",
                        spec.goals[*g].0, spec.variants[v].0
                    ));
                    rates.push(None);
                }
            }
        }
        out.push((*g, rates));
    }
    (out, errors)
}

/// One look: the counts judged, the guardrails checked, the experiment ended when decided.
fn look(
    spec: &ExperimentSpec,
    st: &mut State,
    counts: &crate::policy::experiment::Counts,
    guardrails: &mut [Guardrail],
    steer: &dyn Steer,
) {
    let weights = spec.weights();
    if weights != st.srm_weights {
        st.srm_from.clone_from(&counts.users);
        st.srm_weights.clone_from(&weights);
        st.event(
            "Normal",
            format!("Weights changed to {weights:?}: new participants follow them; nobody moves."),
        );
    }
    let since: Vec<u64> = counts
        .users
        .iter()
        .zip(&st.srm_from)
        .map(|(u, f)| u.saturating_sub(*f))
        .collect();
    let was_mismatch = st.judged.as_ref().is_some_and(|j| j.srm.mismatch);
    let judged = verdict::judge(spec, counts, &since, &weights, &mut st.tests);
    st.counts = counts.clone();
    let p = spec.primary;
    st.sample(Sample {
        time: now(),
        variants: (0..spec.variants.len())
            .map(|v| {
                let g = &judged.goals[v][p];
                let rate = g.value.as_ref().map_or(g.rate, |x| x.mean);
                (counts.users[v], rate, g.interval)
            })
            .collect(),
    });
    if judged.srm.mismatch && !was_mismatch {
        st.event("Warning", judged.decision.reason.clone());
    }
    let decision = judged.decision.clone();
    st.judged = Some(judged);
    match st.pending.take() {
        Some(Command::Stop) => {
            return stop(
                spec,
                st,
                format!("stopped by an operator: {}", decision.reason),
            );
        }
        Some(Command::Conclude) => {
            let leader = leader(spec, st);
            let reason = format!(
                "concluded by an operator with {leader} leading: {}",
                decision.reason
            );
            return end(
                spec,
                st,
                Phase::Concluded,
                Decision {
                    winner: Some(leader),
                    confidence: decision.confidence,
                    reason,
                },
            );
        }
        None => {}
    }
    if let Some(failed) = check_guardrails(spec, guardrails, steer) {
        return stop(
            spec,
            st,
            format!(
                "guardrail failed: {failed}; everyone back on {}",
                spec.variants[0].0
            ),
        );
    }
    if decision.winner.is_some() {
        return end(spec, st, Phase::Concluded, decision);
    }
    if let Some(max) = spec.max_duration
        && now() - st.started >= max.as_secs_f64()
    {
        return stop(
            spec,
            st,
            format!(
                "no winner within maxDuration ({}s): {}",
                max.as_secs(),
                decision.reason
            ),
        );
    }
    st.decision = decision;
}

/// The variant ahead on the primary goal.
fn leader(spec: &ExperimentSpec, st: &State) -> String {
    let p = spec.primary;
    let best = st
        .judged
        .as_ref()
        .and_then(|j| {
            (0..spec.variants.len()).max_by(|&a, &b| {
                let m = |v: usize| {
                    let g = &j.goals[v][p];
                    g.value.as_ref().map_or(g.rate, |x| x.mean)
                };
                m(a).total_cmp(&m(b))
            })
        })
        .unwrap_or(0);
    spec.variants[best].0.clone()
}

/// Ends the experiment without a winner: every participant to the control.
fn stop(spec: &ExperimentSpec, st: &mut State, reason: String) {
    let decision = Decision {
        winner: None,
        confidence: None,
        reason,
    };
    end(spec, st, Phase::Stopped, decision);
}

fn end(spec: &ExperimentSpec, st: &mut State, phase: Phase, decision: Decision) {
    st.phase = phase;
    st.ended = Some(now());
    st.decision = decision;
    let then = match (phase, after(spec, st.decision.winner.as_deref())) {
        (Phase::Stopped, _) | (_, OnConclusion::Stop) => {
            format!("every participant goes to {}", spec.variants[0].0)
        }
        (_, OnConclusion::Rollout) => format!(
            "rolling {} out with Canary {}",
            st.decision.winner.as_deref().unwrap_or_default(),
            spec.name
        ),
        (_, OnConclusion::None) => {
            "participants stay on their variants; nothing more is counted".to_owned()
        }
    };
    let kind = if phase == Phase::Stopped {
        "Warning"
    } else {
        "Normal"
    };
    let message = format!(
        "Experiment {}: {}; {then}.",
        if phase == Phase::Stopped {
            "stopped"
        } else {
            "concluded"
        },
        st.decision.reason
    );
    st.event(kind, message);
}

/// The guardrails of every treatment, from the Canary metric checks they are written as.
fn guardrails_of(spec: &ExperimentSpec, set: &ResourceSet) -> Vec<Guardrail> {
    let mut out = Vec::new();
    if spec.resource.guardrails.is_empty() {
        return out;
    }
    let mut x = spec.resource.clone();
    x.rollout = None;
    for (name, subset, _) in spec.variants.iter().skip(1) {
        let canary = winner_canary(&x, subset);
        let Some(rs) = RolloutSpec::from_canary(&spec.name, None, &canary, set) else {
            continue;
        };
        for check in rs
            .checks
            .iter()
            .filter(|c| !matches!(c.kind, CheckKind::Query { .. }))
        {
            out.push(Guardrail {
                variant: name.clone(),
                check: check.clone(),
                treatment: (rs.canary.host.clone(), rs.canary.version().to_owned()),
                control: (rs.primary.host.clone(), rs.primary.version().to_owned()),
                since: None,
            });
        }
    }
    out
}

/// Checks each guardrail whose window has passed; the first failure, described.
fn check_guardrails(
    spec: &ExperimentSpec,
    guardrails: &mut [Guardrail],
    steer: &dyn Steer,
) -> Option<String> {
    let now = Instant::now();
    for g in guardrails {
        let t = steer
            .metrics()
            .version(&g.treatment.0, &g.treatment.1)
            .sample();
        let c = steer.metrics().version(&g.control.0, &g.control.1).sample();
        let Some((at, t0, c0)) = &g.since else {
            g.since = Some((now, t, c));
            continue;
        };
        if now.duration_since(*at) < g.check.window {
            continue;
        }
        let result = analysis::evaluate(&g.check, &t.since(t0), &c.since(c0));
        steer
            .metrics()
            .canary_check(&spec.name, &result.name, result.verdict.name());
        g.since = Some((now, t, c));
        if result.verdict == Verdict::Fail {
            return Some(format!("{} on {}", result.describe(), g.variant));
        }
    }
    None
}
