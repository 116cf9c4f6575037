//! An experiment's controller: every second it reads the counts from the snapshot being
//! served, judges them, checks the guardrails and ends the experiment when it is decided.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use tokio::sync::watch;

use super::pool::{self, Pool};
use super::spec::ExperimentSpec;
use super::status::{self, Phase, Sample, State, now};
use super::verdict::{self, Decision, Judged, Tests};
use super::{Command, after};
use crate::config::ResourceSet;
use crate::config::experiment::OnConclusion;
use crate::config::validate::winner_canary;
use crate::control::change::{Change, Steer};
use crate::metrics::VersionSample;
use crate::policy::experiment::{Counts, Live};
use crate::rollout::analysis::{self, Verdict};
use crate::rollout::command::lock;
use crate::rollout::shared::{InstanceCounts, Seat, Side, side_key, window};
use crate::rollout::spec::{CheckKind, CheckSpec, RolloutSpec};

/// Time between looks.
const LOOK: Duration = Duration::from_secs(1);
/// Time between the queries of goals measured by Prometheus.
const QUERY_EVERY: Duration = Duration::from_secs(10);

/// Per Prometheus goal (by index), each variant's rate as last measured.
type Measured = Vec<(usize, Vec<Option<f64>>)>;

/// A guardrail of one treatment: the check, the two versions (service host, version), and
/// the reading at the start of its window.
pub(super) struct Guardrail {
    variant: String,
    check: CheckSpec,
    pub(super) treatment: Side,
    pub(super) control: Side,
    since: Option<(Instant, Reading)>,
}

/// The traffic of a guardrail's two versions, as read at the start of a window.
enum Reading {
    /// This instance's totals of the treatment and the control.
    Here(VersionSample, VersionSample),
    /// Every live instance's totals, and when they were read (ms since the epoch).
    Fleet(u64, Vec<InstanceCounts>),
}

/// The fleet's traffic of the guardrails' versions, as the judge read it.
struct FleetTraffic {
    at_ms: u64,
    counts: Vec<InstanceCounts>,
    /// How old an instance's record may be before its counts are taken as missing.
    stale_ms: u64,
}

/// What a controller runs on.
pub(super) struct Job {
    pub(super) control: Weak<dyn Steer>,
    pub(super) spec: ExperimentSpec,
    pub(super) state: Arc<Mutex<State>>,
    /// Wakes the controller (an operator's command).
    pub(super) wake: Arc<Notify>,
    /// Where the state is kept across restarts.
    pub(super) dir: Option<PathBuf>,
    pub(super) guardrails: Vec<Guardrail>,
    /// In a fleet: the store every instance shares.
    pub(super) pool: Option<Arc<dyn Pool>>,
}

/// Runs until aborted (the experiment is removed or changed).
pub(super) async fn drive(job: Job) {
    let Job {
        control,
        spec,
        state,
        wake,
        dir,
        mut guardrails,
        pool,
    } = job;
    let mut member = pool.map(|pool| Member::new(pool, &spec));
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
        let Some(e) = snap.experiments.iter().find(|e| e.design.name == spec.name) else {
            continue;
        };
        // Whose counts are judged: this instance's alone, or the fleet's when it judges.
        let counts = match &mut member {
            None => {
                // Counts kept across a restart join those of this process.
                e.live.restore(&lock(&state).counts);
                Some(e.live.counts())
            }
            Some(m) => {
                m.share(&spec, &e.live).await;
                m.follow(&spec, &state);
                match m.fence() {
                    Some(_) => m.total(&spec).await,
                    None => None,
                }
            }
        };
        let running = lock(&state).phase == Phase::Running;
        if let Some(mut counts) = counts {
            if running
                && !spec.queries.is_empty()
                && queried.is_none_or(|t| t.elapsed() >= QUERY_EVERY)
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
            with_measured(&mut counts, &measured);
            match &mut member {
                None => {
                    let mut st = lock(&state);
                    if st.phase == Phase::Running {
                        look(
                            &spec,
                            &mut st,
                            &counts,
                            &mut guardrails,
                            steer.as_ref(),
                            None,
                        );
                    }
                }
                Some(m) => {
                    let traffic = match running && !guardrails.is_empty() {
                        true => m.traffic(&guardrails).await,
                        false => None,
                    };
                    let (command, consumed) = m.command();
                    let mut next = lock(&state).clone();
                    next.pending = command;
                    if next.phase == Phase::Running {
                        let traffic = traffic.as_ref();
                        look(
                            &spec,
                            &mut next,
                            &counts,
                            &mut guardrails,
                            steer.as_ref(),
                            traffic,
                        );
                    }
                    next.pending = None;
                    // Taken only once it is stored: a judge that lost its seat decided nothing.
                    if m.save(&spec, &next, consumed).await {
                        *lock(&state) = next;
                    }
                }
            }
        } else if let Some(m) = &member {
            m.show(&spec, &mut lock(&state));
        }
        let rolled = {
            let st = lock(&state);
            e.live.set_routing(st.routing(&spec));
            status::save(dir.as_deref(), &spec, &st);
            st.rolled_out(&spec)
        };
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

/// The conversions of goals measured by Prometheus, as rates of each variant's participants.
fn with_measured(counts: &mut Counts, measured: &Measured) {
    for (g, rates) in measured {
        for (v, rate) in rates.iter().enumerate() {
            if let Some(r) = rate {
                let users = counts.users[v];
                counts.conversions[v][*g] =
                    ((r.clamp(0.0, 1.0) * users as f64).round() as u64).min(users);
            }
        }
    }
}

/// This instance's part in an experiment of a fleet.
struct Member {
    pool: Arc<dyn Pool>,
    seat_name: String,
    seat: watch::Receiver<Seat>,
    design: Vec<String>,
    /// This instance's totals as last written to the store.
    published: Option<Counts>,
    /// The revision of the stored state last taken in (or written here).
    adopted: i64,
    /// The stored state as last written here.
    saved: Option<String>,
    /// The revision of the last command carried out.
    handled: i64,
}

impl Member {
    fn new(pool: Arc<dyn Pool>, spec: &ExperimentSpec) -> Member {
        let seat_name = pool::seat(&spec.name);
        Member {
            seat: pool.seat(&seat_name),
            seat_name,
            pool,
            design: status::design(spec),
            published: None,
            adopted: 0,
            saved: None,
            handled: 0,
        }
    }

    /// Set while this instance judges: the fence its writes carry.
    fn fence(&self) -> Option<i64> {
        self.seat.borrow().fence
    }

    /// Carries on from this instance's totals in the store (once, after a start), then
    /// writes its totals when they changed. Nothing is written before the stored totals are
    /// read: a restarted instance would overwrite them with fewer.
    async fn share(&mut self, spec: &ExperimentSpec, live: &Live) {
        let (k, g) = (spec.variants.len(), spec.goals.len());
        if !live.restored() {
            match self.pool.own(&spec.name).await {
                Ok(text) => {
                    let kept = text.and_then(|t| pool::read(&t, &self.design, k, g));
                    live.restore(&kept.unwrap_or_default());
                }
                Err(e) => {
                    tracing::debug!(experiment = %spec.name, error = %e, "Cannot read this instance's counts.");
                    return;
                }
            }
        }
        let own = live.counts();
        if self.published.as_ref() == Some(&own) {
            return;
        }
        let tally = pool::Tally {
            design: self.design.clone(),
            counts: own.clone(),
        };
        let text = serde_json::to_string(&tally).unwrap_or_default();
        match self.pool.publish(&spec.name, text).await {
            Ok(()) => self.published = Some(own),
            Err(e) => {
                tracing::debug!(experiment = %spec.name, error = %e, "Cannot write this instance's counts.");
            }
        }
    }

    /// Takes in the state the judge stored, if newer than the one held.
    fn follow(&mut self, spec: &ExperimentSpec, state: &Mutex<State>) {
        let Some((text, rev)) = self.seat.borrow().state.clone() else {
            return;
        };
        if rev <= self.adopted {
            return;
        }
        self.adopted = rev;
        match serde_json::from_str::<State>(&text) {
            Ok(stored) if stored.design == self.design => lock(state).take_stored(stored),
            // Of the experiment before it was changed: its judge writes the new one.
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(experiment = %spec.name, error = %e, "Unreadable experiment state in the store.");
            }
        }
    }

    /// The fleet's counts: every instance's totals added up.
    async fn total(&self, spec: &ExperimentSpec) -> Option<Counts> {
        match self.pool.tallies(&spec.name).await {
            Ok(tallies) => Some(pool::sum(
                &tallies,
                &self.design,
                spec.variants.len(),
                spec.goals.len(),
            )),
            Err(e) => {
                tracing::debug!(experiment = %spec.name, error = %e, "Cannot read the fleet's counts.");
                None
            }
        }
    }

    /// The fleet's traffic of the guardrails' versions, now.
    async fn traffic(&self, guardrails: &[Guardrail]) -> Option<FleetTraffic> {
        let sides = guardrails
            .iter()
            .flat_map(|g| [g.treatment.clone(), g.control.clone()])
            .collect();
        let counts = self.pool.traffic(sides).await.ok()?;
        Some(FleetTraffic {
            at_ms: (now() * 1000.0) as u64,
            counts,
            stale_ms: self.pool.stale_after().as_millis() as u64,
        })
    }

    /// An operator's command queued for the judge, and its revision, if not yet carried out.
    fn command(&mut self) -> (Option<Command>, Option<i64>) {
        let Some((name, rev)) = self.seat.borrow().command.clone() else {
            return (None, None);
        };
        if rev <= self.handled {
            return (None, None);
        }
        (Command::parse(&name), Some(rev))
    }

    /// Stores `next` as the judge (with the command at `consumed` carried out); whether it
    /// was stored.
    async fn save(&mut self, spec: &ExperimentSpec, next: &State, consumed: Option<i64>) -> bool {
        let Some(fence) = self.fence() else {
            return false;
        };
        let text = serde_json::to_string(next).unwrap_or_default();
        if self.saved.as_deref() == Some(text.as_str()) && consumed.is_none() {
            return true;
        }
        match self
            .pool
            .save(&self.seat_name, fence, text.clone(), consumed)
            .await
        {
            Ok(()) => {
                self.saved = Some(text);
                if let Some((_, rev)) = &self.seat.borrow().state {
                    self.adopted = self.adopted.max(*rev);
                }
                if let Some(rev) = consumed {
                    self.handled = rev;
                }
                true
            }
            Err(e) => {
                tracing::debug!(experiment = %spec.name, error = %e, "Cannot store the experiment's state.");
                false
            }
        }
    }

    /// Shows the stored counts as judged, without deciding anything (the judge decides).
    fn show(&self, spec: &ExperimentSpec, st: &mut State) {
        let counts = st.counts.clone();
        let mut tests = st.tests.clone();
        observe(spec, st, &counts, &mut tests);
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

/// One look: the counts judged, the guardrails checked, the experiment ended when decided;
/// `fleet`: the fleet's traffic for the guardrails (else this instance's).
fn look(
    spec: &ExperimentSpec,
    st: &mut State,
    counts: &Counts,
    guardrails: &mut [Guardrail],
    steer: &dyn Steer,
    fleet: Option<&FleetTraffic>,
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
    let was_mismatch = st.judged.as_ref().is_some_and(|j| j.srm.mismatch);
    let mut tests = std::mem::take(&mut st.tests);
    let judged = observe(spec, st, counts, &mut tests);
    st.tests = tests;
    if judged.srm.mismatch && !was_mismatch {
        st.event("Warning", judged.decision.reason.clone());
    }
    let decision = judged.decision;
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
    if let Some(failed) = check_guardrails(spec, guardrails, steer, fleet) {
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

/// Judges `counts` (the tests carried on in `tests`) and keeps the judgement and a second of
/// history.
fn observe(spec: &ExperimentSpec, st: &mut State, counts: &Counts, tests: &mut Tests) -> Judged {
    let since: Vec<u64> = counts
        .users
        .iter()
        .zip(&st.srm_from)
        .map(|(u, f)| u.saturating_sub(*f))
        .collect();
    let judged = verdict::judge(spec, counts, &since, &st.srm_weights, tests);
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
    st.judged = Some(judged.clone());
    judged
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
pub(super) fn guardrails_of(spec: &ExperimentSpec, set: &ResourceSet) -> Vec<Guardrail> {
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

/// Checks each guardrail whose window has passed, on the fleet's traffic when `fleet` is
/// given; the first failure, described. A window whose counts are not all known (an
/// instance's record is stale) is not judged.
fn check_guardrails(
    spec: &ExperimentSpec,
    guardrails: &mut [Guardrail],
    steer: &dyn Steer,
    fleet: Option<&FleetTraffic>,
) -> Option<String> {
    let now = Instant::now();
    for g in guardrails {
        let reading = match fleet {
            Some(f) => Reading::Fleet(f.at_ms, f.counts.clone()),
            None => {
                let m = steer.metrics();
                Reading::Here(
                    m.version(&g.treatment.0, &g.treatment.1).sample(),
                    m.version(&g.control.0, &g.control.1).sample(),
                )
            }
        };
        let Some((at, old)) = &g.since else {
            g.since = Some((now, reading));
            continue;
        };
        if now.duration_since(*at) < g.check.window {
            continue;
        }
        let samples = match (old, &reading, fleet) {
            (Reading::Here(t0, c0), Reading::Here(t, c), _) => Ok((t.since(t0), c.since(c0))),
            (Reading::Fleet(old_ms, old), Reading::Fleet(new_ms, new), Some(f)) => window(
                (*old_ms, old),
                (*new_ms, new),
                &side_key(&g.treatment.0, &g.treatment.1),
                &side_key(&g.control.0, &g.control.1),
                f.stale_ms,
            ),
            _ => Err("the window began under another judge".to_owned()),
        };
        g.since = Some((now, reading));
        let (t, c) = match samples {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(experiment = %spec.name, guardrail = %g.check.name, "Not judged: {e}.");
                continue;
            }
        };
        let result = analysis::evaluate(&g.check, &t, &c);
        steer
            .metrics()
            .canary_check(&spec.name, &result.name, result.verdict.name());
        if result.verdict == Verdict::Fail {
            return Some(format!("{} on {}", result.describe(), g.variant));
        }
    }
    None
}
