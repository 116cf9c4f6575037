//! Progressive delivery: a controller task per Flagger `Canary` moves traffic between a
//! VirtualService's primary and canary subsets, checks the canary's live traffic at every step,
//! and promotes or rolls back on its own.
//!
//! Weights change through the same apply path as a config reload: the controller records the
//! canary weight, and [`Rollouts::patch`] writes it into the VirtualService before validation,
//! so every change is validated whole and swapped atomically.

pub mod analysis;
pub mod machine;
pub mod spec;

use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{ResourceSet, Spec};
use crate::metrics::VersionSample;
use crate::run::{Change, Control};
use crate::snapshot::Snapshot;
use machine::{Machine, Status, Step};
use spec::RolloutSpec;

/// An operator command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Promote now.
    Promote,
    /// Roll back now.
    Rollback,
    /// Stop taking steps.
    Pause,
    /// Take steps again.
    Resume,
}

impl Command {
    /// The command named in an admin path.
    pub fn parse(name: &str) -> Option<Command> {
        Some(match name {
            "promote" => Command::Promote,
            "rollback" => Command::Rollback,
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            _ => return None,
        })
    }
}

/// One running rollout.
struct Rollout {
    machine: Arc<Mutex<Machine>>,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rollout {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every rollout, by Canary name.
#[derive(Default)]
pub struct Rollouts {
    running: Mutex<HashMap<String, Rollout>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Rollouts {
    /// Starts a controller for each new or changed Canary of `set`, and stops those whose
    /// Canary is gone or changed.
    pub fn sync(&self, set: &ResourceSet, control: &Weak<Control>) {
        let specs = specs(set);
        let mut running = lock(&self.running);
        running.retain(|name, r| specs.get(name) == Some(&lock(&r.machine).spec));
        for (name, spec) in specs {
            if running.contains_key(&name) {
                continue;
            }
            let machine = Arc::new(Mutex::new(Machine::new(spec)));
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(drive(control.clone(), machine.clone(), rx));
            running.insert(
                name,
                Rollout {
                    machine,
                    commands: tx,
                    task,
                },
            );
        }
    }

    /// `set` with the weights of every rollout whose Canary it still has (unchanged) written
    /// into its VirtualService: routes with both subsets get `100 - w` on the primary and `w`
    /// on the canary. A Canary that `set` removes or changes sets no weights, so its
    /// VirtualService has its own weights back in the same apply.
    pub fn patch(&self, set: &Arc<ResourceSet>) -> Arc<ResourceSet> {
        let specs = specs(set);
        let weights: Vec<(RolloutSpec, u32)> = lock(&self.running)
            .iter()
            .filter_map(|(name, r)| {
                let m = lock(&r.machine);
                (m.status.phase != machine::Phase::Initializing && specs.get(name) == Some(&m.spec))
                    .then(|| (m.spec.clone(), m.status.canary_weight))
            })
            .collect();
        if weights.is_empty() {
            return set.clone();
        }
        let mut out = ResourceSet::clone(set);
        for (spec, w) in &weights {
            for r in &mut out.resources {
                if r.name() != spec.virtual_service {
                    continue;
                }
                let Spec::VirtualService(vs) = &mut r.spec else {
                    continue;
                };
                for route in &mut vs.http {
                    let subset_of = |d: &crate::config::istio::HttpRouteDestination| {
                        d.destination.subset.as_ref().map(|s| s.value.clone())
                    };
                    let has = |name: &str| {
                        route
                            .route
                            .iter()
                            .any(|d| subset_of(d).as_deref() == Some(name))
                    };
                    if !(has(&spec.primary) && has(&spec.canary)) {
                        continue;
                    }
                    for d in &mut route.route {
                        match subset_of(d) {
                            Some(s) if s == spec.primary => d.weight = Some(100 - w),
                            Some(s) if s == spec.canary => d.weight = Some(*w),
                            _ => {}
                        }
                    }
                }
            }
        }
        Arc::new(out)
    }

    /// Sends an operator command; false if there is no such rollout.
    pub fn command(&self, name: &str, cmd: Command) -> bool {
        lock(&self.running)
            .get(name)
            .is_some_and(|r| r.commands.send(cmd).is_ok())
    }

    /// Every rollout's status, by name.
    pub fn statuses(&self) -> Vec<(RolloutSpec, Status)> {
        let mut out: Vec<(RolloutSpec, Status)> = lock(&self.running)
            .values()
            .map(|r| {
                let m = lock(&r.machine);
                (m.spec.clone(), m.status.clone())
            })
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    /// The JSON of `GET /canaries/NAME` (or of every rollout, for `GET /canaries`).
    pub fn json(&self, name: Option<&str>) -> Option<Value> {
        let all = self.statuses();
        let view = |(spec, status): &(RolloutSpec, Status)| {
            json!({
                "name": spec.name,
                "target": spec.virtual_service,
                "service": spec.service,
                "primary": spec.primary,
                "canary": spec.canary,
                "intervalMs": spec.interval.as_millis() as u64,
                "threshold": spec.threshold,
                "steps": spec.steps,
                "status": status,
                "phase": status.phase,
                "canaryWeight": status.canary_weight,
                "failedChecks": status.failed_checks,
                "iterations": status.iterations,
                "events": status.events,
            })
        };
        match name {
            None => Some(json!({"canaries": all.iter().map(view).collect::<Vec<_>>()})),
            Some(n) => all.iter().find(|(s, _)| s.name == n).map(view),
        }
    }
}

/// The rollouts `set` asks for, by Canary name.
fn specs(set: &ResourceSet) -> HashMap<String, RolloutSpec> {
    set.resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Canary(c) => {
                RolloutSpec::from_canary(r.name(), c, set).map(|s| (r.name().to_owned(), s))
            }
            _ => None,
        })
        .collect()
}

/// The canary revision: its endpoints and their labels, or `None` without endpoints.
fn revision(snap: &Snapshot, spec: &RolloutSpec) -> Option<String> {
    let cluster = snap.clusters.iter().find(|c| {
        c.spec.service == spec.service && c.spec.subset.as_deref() == Some(spec.canary.as_str())
    })?;
    if cluster.spec.endpoints.is_empty() {
        return None;
    }
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

/// The controller of one rollout: a step every interval, commands as they come.
async fn drive(
    control: Weak<Control>,
    machine: Arc<Mutex<Machine>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let spec = lock(&machine).spec.clone();
    let longest = spec
        .checks
        .iter()
        .map(|c| c.window)
        .max()
        .unwrap_or_default();
    let mut samples: VecDeque<(Instant, VersionSample)> = VecDeque::new();
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let changed = tokio::select! {
            _ = ticker.tick() => {
                let Some(control) = control.upgrade() else { return };
                let snap = control.snapshot();
                let stats = control.metrics.version(&spec.service, &spec.canary);
                let now = Instant::now();
                let current = stats.sample();
                let checks = spec
                    .checks
                    .iter()
                    .map(|c| {
                        let since = now.checked_sub(c.window).unwrap_or(now);
                        let base = samples
                            .iter()
                            .rev()
                            .find(|(t, _)| *t <= since)
                            .or(samples.front())
                            .map(|(_, s)| s.clone())
                            .unwrap_or_else(|| current.clone());
                        analysis::evaluate(c, &current.since(&base))
                    })
                    .collect::<Vec<_>>();
                for c in &checks {
                    control.metrics.canary_check(&spec.name, &c.name, c.verdict.name());
                }
                samples.push_back((now, current));
                while samples.len() > 2
                    && samples.get(1).is_some_and(|(t, _)| now.duration_since(*t) > longest)
                {
                    samples.pop_front();
                }
                let input = Step { checks, revision: revision(&snap, &spec) };
                lock(&machine).step(input)
            }
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return };
                let mut m = lock(&machine);
                match cmd {
                    Command::Promote => m.promote(),
                    Command::Rollback => m.roll_back(),
                    Command::Pause => { m.pause(true); None }
                    Command::Resume => { m.pause(false); None }
                }
            }
        };
        let Some(control) = control.upgrade() else {
            return;
        };
        let status = lock(&machine).status.clone();
        control
            .metrics
            .canary_state(&spec.name, status.canary_weight, status.phase.status_code());
        if changed.is_some() {
            apply_weights(&control, &spec.name).await;
        }
    }
}

/// Applies the current weights; a rejected change (the config went bad meanwhile) is retried
/// at the next step.
async fn apply_weights(control: &Control, name: &str) {
    if let Err(errors) = control.apply(Change::Weights).await {
        tracing::error!(
            canary = name,
            errors = errors.len(),
            "Canary weights not applied."
        );
    }
}
