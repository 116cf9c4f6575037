//! Progressive delivery: a controller task per Flagger `Canary` moves traffic between a
//! VirtualService's primary and canary subsets, checks the canary's live traffic at every step,
//! and promotes or rolls back on its own.
//!
//! Weights change through the same apply path as a config reload: the controller records the
//! canary weight, and [`Rollouts::patch`] writes it into the VirtualService before validation,
//! so every change is validated whole and swapped atomically.

pub(crate) mod analysis;
pub(crate) mod command;
mod controller;
mod elected;
mod hooks;
pub(crate) mod machine;
pub(crate) mod plan;
pub(crate) mod prometheus;
pub(crate) mod shared;
pub(crate) mod spec;
pub(crate) mod status;
pub(crate) mod store;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::mpsc;

use crate::config::decode::Spanned;
use crate::config::istio::{HttpMatchRequest, HttpRoute, Percent, VirtualService};
use crate::config::{ResourceSet, Spec};
use crate::control::change::Steer;
use command::{Command, lock};
use machine::Machine;
use shared::Shared;
use spec::{RolloutSpec, Strategy};
use status::{Phase, Routing, Status};
use store::Store;

/// One running rollout.
struct Rollout {
    /// The machine as it decides (its routing is what the next apply writes).
    machine: Arc<Mutex<Machine>>,
    /// Its status as served: updated once the routing it decided is applied, so that the API
    /// never shows a phase whose traffic is not in place yet.
    shown: Arc<Mutex<Status>>,
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
pub(crate) struct Rollouts {
    running: Mutex<HashMap<String, Rollout>>,
    store: Store,
    /// In a fleet: the store every instance shares (set once, before the first apply).
    fleet: std::sync::OnceLock<Arc<dyn Shared>>,
}

/// The rollouts a new config asks for: prepared before the config is applied (their routing is
/// part of it), started once it is.
pub(crate) struct Plan {
    specs: HashMap<String, RolloutSpec>,
    /// Rollouts to (re)start: new ones, resumed from the state file or from a Canary edit.
    fresh: HashMap<String, Machine>,
}

impl Rollouts {
    /// Rollouts whose state is kept in `state_dir`, if given.
    pub(crate) fn new(state_dir: Option<PathBuf>) -> Rollouts {
        Rollouts {
            running: Mutex::default(),
            store: Store::new(state_dir),
            fleet: std::sync::OnceLock::new(),
        }
    }

    /// Makes the rollouts part of a fleet: one instance drives each, through `fleet`.
    pub(crate) fn share(&self, fleet: Arc<dyn Shared>) {
        let _ = self.fleet.set(fleet);
    }

    /// The state a fleet's store holds for `spec`'s rollout, if any.
    fn stored(&self, spec: &RolloutSpec) -> Option<Status> {
        let text = self.fleet.get()?.stored(&spec.name)?;
        store::decode(spec, text.as_bytes())
            .ok()
            .flatten()
            .map(|(s, _)| s)
    }

    /// What `set` asks for. A changed Canary with the same target carries its status over (as
    /// Flagger, an edited analysis does not restart the rollout); a new one resumes from its
    /// state file, if any.
    pub(crate) fn plan(&self, set: &ResourceSet) -> Plan {
        let specs = specs(set);
        let running = lock(&self.running);
        let mut fresh = HashMap::new();
        for (name, spec) in &specs {
            let current = running.get(name).map(|r| lock(&r.machine).clone());
            let machine = match current {
                Some(m) if m.spec == *spec => continue,
                Some(m) if same_target(&m.spec, spec) => Machine::resume(spec.clone(), m.status),
                _ => match self.stored(spec).or_else(|| self.store.load(spec)) {
                    Some(status) => Machine::resume(spec.clone(), status),
                    None => Machine::new(spec.clone()),
                },
            };
            fresh.insert(name.clone(), machine);
        }
        Plan { specs, fresh }
    }

    /// `set` with the routing of every planned rollout written into its VirtualService.
    /// A Canary that `set` no longer has sets nothing, so its VirtualService has its own
    /// weights back in the same apply.
    pub(crate) fn patch(&self, plan: &Plan, set: &Arc<ResourceSet>) -> Arc<ResourceSet> {
        let running = lock(&self.running);
        let routings: Vec<(RolloutSpec, Routing)> = plan
            .specs
            .keys()
            .filter_map(|name| {
                let m = match plan.fresh.get(name) {
                    Some(m) => m.clone(),
                    None => lock(&running.get(name)?.machine).clone(),
                };
                (m.status.phase != Phase::Initializing).then_some((m.spec, m.status.routing))
            })
            .collect();
        if routings.is_empty() {
            return set.clone();
        }
        let mut out = ResourceSet::clone(set);
        for (spec, routing) in &routings {
            for r in &mut out.resources {
                if r.name() == spec.virtual_service
                    && let Spec::VirtualService(vs) = &mut r.spec
                {
                    route(vs, spec, *routing);
                }
            }
        }
        Arc::new(out)
    }

    /// Starts the planned rollouts and stops those the applied config no longer has.
    pub(crate) fn commit(&self, plan: Plan, control: &Weak<dyn Steer>) {
        let mut running = lock(&self.running);
        let before = running.len();
        running.retain(|name, _| plan.specs.contains_key(name) && !plan.fresh.contains_key(name));
        // The state directory is tidied when the set of rollouts changes (and at the first
        // apply), not at every weight change.
        let changed = before == 0 || running.len() < before || !plan.fresh.is_empty();
        for (name, machine) in plan.fresh {
            let shown = Arc::new(Mutex::new(machine.status.clone()));
            let machine = Arc::new(Mutex::new(machine));
            let (tx, rx) = mpsc::unbounded_channel();
            let task = match self.fleet.get() {
                Some(fleet) => tokio::spawn(elected::drive(
                    control.clone(),
                    machine.clone(),
                    shown.clone(),
                    fleet.clone(),
                    self.store.clone(),
                )),
                None => tokio::spawn(controller::drive(
                    control.clone(),
                    machine.clone(),
                    shown.clone(),
                    rx,
                    self.store.clone(),
                )),
            };
            running.insert(
                name,
                Rollout {
                    machine,
                    shown,
                    commands: tx,
                    task,
                },
            );
        }
        if changed {
            let names: Vec<&str> = plan.specs.keys().map(String::as_str).collect();
            self.store.retain(&names);
        }
    }

    /// Sends an operator command to the rollout's controller; in a fleet, queues it in the
    /// store for the instance that drives the rollout, and waits (up to `wait`) until that
    /// instance has taken it. `Ok(false)`: queued, not yet taken.
    pub(crate) async fn command(
        &self,
        name: &str,
        cmd: Command,
        wait: std::time::Duration,
    ) -> Result<bool, String> {
        let Some(fleet) = self.fleet.get() else {
            let sent = lock(&self.running)
                .get(name)
                .is_some_and(|r| r.commands.send(cmd).is_ok());
            return if sent {
                Ok(true)
            } else {
                Err(format!("no such canary: {name}"))
            };
        };
        let queued = fleet.command(name, cmd.name()).await?;
        let mut seat = fleet.seat(name);
        let taken = tokio::time::timeout(wait, async {
            loop {
                if seat
                    .borrow_and_update()
                    .command
                    .as_ref()
                    .is_none_or(|(_, rev)| *rev != queued)
                {
                    return;
                }
                if seat.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(taken.await.is_ok())
    }

    /// Every rollout's status, by name.
    pub(crate) fn statuses(&self) -> Vec<(RolloutSpec, Status)> {
        let mut out: Vec<(RolloutSpec, Status)> = lock(&self.running)
            .values()
            .map(|r| {
                let spec = lock(&r.machine).spec.clone();
                (spec, lock(&r.shown).clone())
            })
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    /// The JSON of `GET /canaries/NAME` (or of every rollout, for `GET /canaries`).
    pub(crate) fn json(&self, name: Option<&str>) -> Option<Value> {
        let all = self.statuses();
        let view = |(spec, status): &(RolloutSpec, Status)| {
            json!({
                "name": spec.name,
                "namespace": spec.namespace,
                "target": spec.virtual_service,
                "service": spec.canary.host,
                "primary": spec.primary.to_string(),
                "canary": spec.canary.to_string(),
                "sides": {
                    "primary": {"service": spec.primary.host, "version": spec.primary.version()},
                    "canary": {"service": spec.canary.host, "version": spec.canary.version()},
                },
                "strategy": spec.strategy,
                "intervalMs": spec.interval.as_millis() as u64,
                "threshold": spec.threshold,
                "steps": spec.steps,
                "maxIterations": spec.iterations,
                "checks": spec.checks.iter().map(|c| &c.name).collect::<Vec<_>>(),
                "status": status,
                "phase": status.phase,
                "canaryWeight": status.routing.canary_weight,
                "failedChecks": status.failed_checks,
                "iterations": status.iterations,
                "events": status.events,
                "driver": self.fleet.get().map(|f| f.seat(&spec.name).borrow().driver.clone()),
            })
        };
        match name {
            None => Some(json!({"canaries": all.iter().map(view).collect::<Vec<_>>()})),
            Some(n) => all.iter().find(|(s, _)| s.name == n).map(view),
        }
    }
}

fn same_target(a: &RolloutSpec, b: &RolloutSpec) -> bool {
    (&a.virtual_service, &a.primary, &a.canary) == (&b.virtual_service, &b.primary, &b.canary)
}

/// The rollouts `set` asks for, by Canary name.
fn specs(set: &ResourceSet) -> HashMap<String, RolloutSpec> {
    set.resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Canary(c) => {
                let ns = r.metadata.namespace.as_deref();
                RolloutSpec::from_canary(r.name(), ns, c, set).map(|s| (r.name().to_owned(), s))
            }
            _ => None,
        })
        .collect()
}

/// Gives a route that sends to the primary but not to the canary the canary's destination,
/// at weight 0 (the primary's, with the canary's subset), as Flagger's own VirtualService has
/// both: the rollout then moves weight between them.
fn add_canary(r: &mut HttpRoute, spec: &RolloutSpec) {
    if r.route.iter().any(|d| spec.canary.is(&d.destination)) {
        return;
    }
    let Some(primary) = r.route.iter().find(|d| spec.primary.is(&d.destination)) else {
        return;
    };
    let mut canary = primary.clone();
    canary.destination.subset = spec.canary.subset.as_ref().map(|s| Spanned {
        pos: primary.pos,
        value: s.clone(),
    });
    canary.weight = Some(0);
    r.route.push(canary);
}

/// Writes `routing` into the routes of `vs` that have both versions: `100 - w` on the primary and
/// `w` on the canary (with the Canary's `sessionAffinity`, a cohort cookie keeps users on one
/// version: [`crate::policy::affinity`]); for A/B testing, a copy of the route, first, that
/// sends the Canary's matching requests to the canary; for blue-green, a mirror to the canary.
fn route(vs: &mut VirtualService, spec: &RolloutSpec, routing: Routing) {
    let mut out = Vec::with_capacity(vs.http.len() + 1);
    for mut r in std::mem::take(&mut vs.http) {
        add_canary(&mut r, spec);
        let canary = r
            .route
            .iter()
            .find(|d| spec.canary.is(&d.destination))
            .map(|d| d.destination.clone());
        let has_primary = r.route.iter().any(|d| spec.primary.is(&d.destination));
        let Some(canary) = canary.filter(|_| has_primary) else {
            out.push(r);
            continue;
        };
        let weigh = |r: &mut HttpRoute, w: u32| {
            for d in &mut r.route {
                if spec.primary.is(&d.destination) {
                    d.weight = Some(100 - w);
                } else if spec.canary.is(&d.destination) {
                    d.weight = Some(w);
                }
            }
        };
        if routing.matched && spec.strategy == Strategy::AbTesting {
            let mut ab = r.clone();
            ab.name = Some(format!(
                "{}-canary",
                r.name.as_deref().unwrap_or(&spec.name)
            ));
            ab.matches = merge_matches(&r.matches, &spec.matches);
            weigh(&mut ab, 100);
            out.push(ab);
        }
        weigh(&mut r, routing.canary_weight);
        if (1..100).contains(&routing.canary_weight) && spec.affinity.is_some() {
            r.session_affinity.clone_from(&spec.affinity);
        }
        if routing.mirror {
            r.mirror = Some(canary);
            r.mirrors.clear();
            r.mirror_percentage = spec.mirror.map(|value| Percent {
                value,
                ..Percent::default()
            });
        }
        out.push(r);
    }
    vs.http = out;
}

/// The A/B route's conditions: each of the Canary's `match` blocks within each of the route's
/// own (the Canary's conditions win where both set one).
fn merge_matches(route: &[HttpMatchRequest], canary: &[HttpMatchRequest]) -> Vec<HttpMatchRequest> {
    if route.is_empty() {
        return canary.to_vec();
    }
    let mut out = Vec::with_capacity(route.len() * canary.len());
    for r in route {
        for c in canary {
            let mut m = r.clone();
            let fields = [
                (&mut m.uri, &c.uri),
                (&mut m.scheme, &c.scheme),
                (&mut m.method, &c.method),
                (&mut m.authority, &c.authority),
            ];
            for (to, from) in fields {
                if from.is_some() {
                    to.clone_from(from);
                }
            }
            if c.port.is_some() {
                m.port = c.port;
            }
            if c.ignore_uri_case.is_some() {
                m.ignore_uri_case = c.ignore_uri_case;
            }
            m.headers.extend(c.headers.clone());
            m.query_params.extend(c.query_params.clone());
            m.without_headers.extend(c.without_headers.clone());
            m.source_labels.extend(c.source_labels.clone());
            if !c.gateways.is_empty() {
                m.gateways.clone_from(&c.gateways);
            }
            out.push(m);
        }
    }
    out
}
