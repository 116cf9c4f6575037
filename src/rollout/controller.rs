//! The controller task of one rollout: a machine step every interval, operator commands as they
//! come; after each change it saves the state, applies the routing, and tells the webhooks.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::analysis::{self, CheckResult};
use super::command::{Command, lock};
use super::hooks::{self, Mesh};
use super::machine::{Env, Machine, Revisions};
use super::prometheus;
use super::shared::{FleetHistory, side_key, window as window_of};
use super::spec::{CheckKind, HookKind, RolloutSpec, Side};
use super::status::{Phase, Status};
use super::store::Store;
use crate::control::change::{Change, Steer};
use crate::metrics::VersionSample;
use crate::snapshot::Snapshot;

/// Readings of the canary's and the primary's counters, oldest first.
type History = VecDeque<(Instant, VersionSample, VersionSample)>;

/// Runs one rollout until its task is aborted or weir stops.
pub(super) async fn drive(
    control: Weak<dyn Steer>,
    shared: Arc<Mutex<Machine>>,
    shown: Arc<Mutex<Status>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    store: Store,
) {
    let spec = lock(&shared).spec.clone();
    let mut history = History::new();
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(c) = control.upgrade() {
        let status = lock(&shared).status.clone();
        publish_state(&*c, &spec, &status);
    }
    loop {
        let before = lock(&shared).clone();
        let after = tokio::select! {
            _ = ticker.tick() => {
                let Some(control) = control.upgrade() else { return };
                let revisions = revisions(&control.snapshot(), &spec);
                record(&*control, &spec, &mut history);
                // The step runs on a copy: a command that comes while it waits on a webhook
                // drops the step and acts at once.
                let mut m = before.clone();
                let mesh = Mesh { snap: control.snapshot(), addr: control.mesh_addr() };
                let mut env = Live { control: &*control, spec: &spec, counts: Counts::Local(&history), mesh };
                tokio::select! {
                    () = m.step(revisions, &mut env) => m,
                    cmd = commands.recv() => {
                        let Some(cmd) = cmd else { return };
                        command(before.clone(), cmd)
                    }
                }
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return };
                command(before.clone(), cmd)
            }
        };
        if after.status == before.status {
            continue;
        }
        let Some(control) = control.upgrade() else {
            return;
        };
        settle(&*control, &shared, &shown, &store, &before, after).await;
        let mesh = Mesh {
            snap: control.snapshot(),
            addr: control.mesh_addr(),
        };
        notify(&spec, &before.status, &lock(&shown).clone(), mesh);
    }
}

/// Makes a new state real: keeps it, applies its routing (when it changed, or when the rollout
/// leaves Initializing: until then its VirtualService keeps its own weights), shows it once in
/// place. Followers in a fleet settle the states their driver stored the same way.
pub(super) async fn settle(
    control: &dyn Steer,
    shared: &Mutex<Machine>,
    shown: &Mutex<Status>,
    store: &Store,
    before: &Machine,
    after: Machine,
) {
    let spec = after.spec.clone();
    *lock(shared) = after.clone();
    let (saving, status) = (store.clone(), after.status.clone());
    let saved = tokio::task::spawn_blocking(move || saving.save(&after.spec, &status)).await;
    if let Ok(Err(e)) = saved {
        tracing::error!(canary = %spec.name, error = %e, "Cannot save rollout state.");
    }
    let status = lock(shared).status.clone();
    let initialized =
        before.status.phase == Phase::Initializing && status.phase != Phase::Initializing;
    if (status.routing != before.status.routing || initialized)
        && let Err(errors) = control.apply(Change::Weights).await
    {
        // The config went bad meanwhile; the routing is applied with the next change.
        tracing::error!(
            canary = %spec.name,
            errors = errors.len(),
            "Canary routing not applied."
        );
    }
    publish_state(control, &spec, &status);
    *lock(shown) = status;
}

pub(super) fn publish_state(control: &dyn Steer, spec: &RolloutSpec, status: &Status) {
    control.metrics().canary_state(
        &spec.name,
        status.routing.canary_weight,
        status.phase.status_code(),
    );
}

/// Applies an operator command.
pub(super) fn command(mut m: Machine, cmd: Command) -> Machine {
    match cmd {
        Command::Promote => m.promote(),
        Command::Rollback => m.roll_back(),
        Command::Pause => m.pause(true),
        Command::Resume => m.pause(false),
    }
    m
}

/// Sends new events to the `event` webhooks, and a finished rollout to the `post-rollout` ones,
/// off the controller's path.
pub(super) fn notify(spec: &RolloutSpec, before: &Status, after: &Status, mesh: Mesh) {
    let new = (after.events_total - before.events_total).min(after.events.len() as u64) as usize;
    let events: Vec<_> = after
        .events
        .iter()
        .skip(after.events.len() - new)
        .cloned()
        .collect();
    let finished = after.phase.finished() && after.phase != before.phase;
    let wants_events = spec.has_hook(HookKind::Event) && !events.is_empty();
    if !(wants_events || finished && spec.has_hook(HookKind::PostRollout)) {
        return;
    }
    let (spec, status) = (spec.clone(), after.clone());
    tokio::spawn(async move {
        if finished && let Err(why) = hooks::run(&spec, HookKind::PostRollout, &status, &mesh).await
        {
            tracing::warn!(canary = %spec.name, "Post-rollout: {why}");
        }
        hooks::send_events(&spec, &status, &events, &mesh).await;
    });
}

/// Takes a reading of the canary's and the primary's counters, keeping as many as the longest
/// metric window needs.
fn record(control: &dyn Steer, spec: &RolloutSpec, history: &mut History) {
    let now = Instant::now();
    let side = |s: &Side| control.metrics().version(&s.host, s.version()).sample();
    let (canary, primary) = (side(&spec.canary), side(&spec.primary));
    history.push_back((now, canary, primary));
    trim(history, spec, |r| r.0);
}

/// Drops the readings older than the longest metric window of `spec` needs (keeping one
/// beyond it, and two at least); each was taken at `at`.
pub(super) fn trim<T>(history: &mut VecDeque<T>, spec: &RolloutSpec, at: impl Fn(&T) -> Instant) {
    let longest = spec
        .checks
        .iter()
        .map(|c| c.window)
        .max()
        .unwrap_or_default();
    let now = Instant::now();
    while history.len() > 2
        && history
            .get(1)
            .is_some_and(|r| now.duration_since(at(r)) > longest)
    {
        history.pop_front();
    }
}

/// Where builtin checks count traffic.
pub(super) enum Counts<'a> {
    /// This instance's own counters.
    Local(&'a History),
    /// Every live instance's, read from the fleet's store; counts older than the `u64` (ms)
    /// are missing.
    Fleet(&'a FleetHistory, u64),
}

impl Counts<'_> {
    /// The canary's and the primary's traffic over the last `window`, or why it is unknown.
    fn window(
        &self,
        spec: &RolloutSpec,
        window: std::time::Duration,
    ) -> Option<Result<(VersionSample, VersionSample), String>> {
        match self {
            Counts::Local(history) => {
                let (now, canary, primary) = history.back()?;
                let (_, c0, p0) = nearest(history, *now, window, |r| r.0);
                Some(Ok((canary.since(c0), primary.since(p0))))
            }
            Counts::Fleet(history, stale_ms) => {
                let (now, now_ms, newest) = history.back()?;
                let (_, old_ms, oldest) = nearest(history, *now, window, |r| r.0);
                let key = |s: &Side| side_key(&s.host, s.version());
                Some(window_of(
                    (*old_ms, oldest),
                    (*now_ms, newest),
                    &key(&spec.canary),
                    &key(&spec.primary),
                    *stale_ms,
                ))
            }
        }
    }
}

/// The reading of `history` (not empty) nearest to `window` before `now` (ticks drift by a
/// little), each taken at `at`.
fn nearest<T>(
    history: &VecDeque<T>,
    now: Instant,
    window: std::time::Duration,
    at: impl Fn(&T) -> Instant,
) -> &T {
    let since = now.checked_sub(window).unwrap_or(now);
    history
        .iter()
        .min_by_key(|r| {
            let t = at(r);
            t.max(since).duration_since(t.min(since))
        })
        .unwrap_or(&history[0])
}

/// The world as the machine sees it: webhooks over HTTP, checks over the counters.
pub(super) struct Live<'a> {
    pub(super) control: &'a dyn Steer,
    pub(super) spec: &'a RolloutSpec,
    pub(super) counts: Counts<'a>,
    pub(super) mesh: Mesh,
}

impl Env for Live<'_> {
    async fn hook(&mut self, kind: HookKind, status: &Status) -> Result<(), String> {
        hooks::run(self.spec, kind, status, &self.mesh).await
    }

    async fn checks(&mut self) -> Vec<CheckResult> {
        let mut results = Vec::with_capacity(self.spec.checks.len());
        for c in &self.spec.checks {
            let result = match &c.kind {
                CheckKind::Query {
                    provider,
                    address,
                    query,
                } => {
                    let answer = if provider == "prometheus" {
                        prometheus::query(address, query, self.mesh.route(address)).await
                    } else {
                        Err(format!(
                            "provider `{provider}` is not supported (prometheus is)"
                        ))
                    };
                    analysis::judge_query(c, answer)
                }
                _ => match self.counts.window(self.spec, c.window) {
                    None => return Vec::new(),
                    Some(Ok((canary, primary))) => analysis::evaluate(c, &canary, &primary),
                    Some(Err(why)) => analysis::incomplete(c, why),
                },
            };
            self.control.metrics().canary_check(
                &self.spec.name,
                &result.name,
                result.verdict.name(),
            );
            results.push(result);
        }
        results
    }
}

/// Both versions' revisions.
pub(super) fn revisions(snap: &Snapshot, spec: &RolloutSpec) -> Revisions {
    Revisions {
        canary: revision(snap, &spec.canary),
        primary: revision(snap, &spec.primary),
    }
}

/// A version's revision: its endpoints and their labels, or `None` without endpoints.
fn revision(snap: &Snapshot, side: &Side) -> Option<String> {
    let cluster = snap.clusters.iter().find(|c| {
        c.spec.service == side.host && c.spec.subset == side.subset && !c.spec.endpoints.is_empty()
    })?;
    let mut parts: Vec<String> = cluster
        .spec
        .endpoints
        .iter()
        .map(|e| format!("{}{:?}", e.addr, e.labels))
        .collect();
    parts.sort();
    Some(format!(
        "{:016x}",
        crate::backend::hash::hash_bytes(parts.join(",").as_bytes())
    ))
}
