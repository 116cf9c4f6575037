//! A/B experiments judged on business goals: a controller task per `Experiment` looks at its
//! counts every second, judges them with a test that stays valid however often it is looked
//! at (`stats.rs`, `verdict.rs`), watches the sample ratio and the guardrails, and concludes:
//! the winner's canary (a Canary written into the configuration by [`Experiments::patch`],
//! run by the rollout controller), everyone to the control, or participants left where they
//! are. The request path's side (assignment, counting) is `crate::policy::experiment`.

mod controller;
pub(crate) mod spec;
pub(crate) mod stats;
mod status;
pub(crate) mod verdict;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use serde_json::{Value, json};

use crate::config::experiment::OnConclusion;
use crate::config::generate::GENERATED_BY;
use crate::config::validate::winner_canary;
use crate::config::{Metadata, Resource, ResourceSet, Spec};
use crate::control::change::Steer;
use crate::rollout::command::lock;
use spec::ExperimentSpec;
pub(crate) use status::Phase;
use status::State;

/// One experiment's controller.
struct Running {
    spec: ExperimentSpec,
    state: Arc<Mutex<State>>,
    /// Wakes the controller (an operator's command).
    wake: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every experiment, by name.
#[derive(Default)]
pub(crate) struct Experiments {
    running: Mutex<HashMap<String, Running>>,
    /// Where each experiment's state is kept across restarts.
    dir: Option<PathBuf>,
}

/// What an operator may tell an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// End it now, everyone to the control.
    Stop,
    /// End it now with the leading variant as the winner.
    Conclude,
}

impl Experiments {
    /// Experiments whose state is kept under `state_dir`, if given.
    pub(crate) fn new(state_dir: Option<PathBuf>) -> Experiments {
        Experiments {
            running: Mutex::default(),
            dir: state_dir.map(|d| d.join("experiments")),
        }
    }

    /// `set` with the Canary of every concluded experiment's winner that is to be rolled
    /// out (added only when `set` has no resource of that name).
    pub(crate) fn patch(&self, set: &Arc<ResourceSet>) -> Arc<ResourceSet> {
        let running = lock(&self.running);
        let mut extra = Vec::new();
        for r in &set.resources {
            let Spec::Experiment(x) = &r.spec else {
                continue;
            };
            let Some(run) = running.get(r.name()) else {
                continue;
            };
            let winner = lock(&run.state).rolled_out(&run.spec);
            if let Some(subset) = winner {
                extra.push(Resource {
                    file: r.file.clone(),
                    pos: r.pos,
                    api_version: "flagger.app/v1beta1".to_owned(),
                    kind: "Canary",
                    metadata: Metadata {
                        pos: r.metadata.pos,
                        name: r.metadata.name.clone(),
                        namespace: r.metadata.namespace.clone(),
                        annotations: [(
                            GENERATED_BY.to_owned(),
                            format!("experiment/{}", r.name()),
                        )]
                        .into(),
                        ..Metadata::default()
                    },
                    spec: Spec::Canary(winner_canary(x, &subset)),
                });
            }
        }
        if extra.is_empty() {
            return set.clone();
        }
        let mut out = ResourceSet::clone(set);
        out.resources.extend(extra);
        Arc::new(out)
    }

    /// After a configuration is applied: starts controllers for new experiments (resuming a
    /// kept state), gives changed ones their new spec, stops those it no longer has, and sets
    /// what each does to requests in the new snapshot.
    pub(crate) fn commit(&self, set: &ResourceSet, control: &Weak<dyn Steer>) {
        let specs: HashMap<String, ExperimentSpec> = set
            .resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::Experiment(x) => {
                    Some((r.name().to_owned(), ExperimentSpec::new(r.name(), x, set)))
                }
                _ => None,
            })
            .collect();
        let mut running = lock(&self.running);
        running.retain(|name, _| specs.contains_key(name));
        for (name, spec) in specs {
            if running.get(&name).is_some_and(|r| r.spec == spec) {
                continue;
            }
            let state = match running.remove(&name) {
                // Same variants and goals: the experiment goes on; else it starts over.
                Some(r) => {
                    let s = lock(&r.state).clone();
                    let same = s.design == status::design(&spec);
                    Arc::new(Mutex::new(if same { s } else { State::new(&spec) }))
                }
                None => Arc::new(Mutex::new(
                    status::load(self.dir.as_deref(), &spec).unwrap_or_else(|| State::new(&spec)),
                )),
            };
            let wake = Arc::new(tokio::sync::Notify::new());
            let task = tokio::spawn(controller::drive(
                control.clone(),
                spec.clone(),
                state.clone(),
                wake.clone(),
                self.dir.clone(),
            ));
            running.insert(
                name,
                Running {
                    spec,
                    state,
                    wake,
                    task,
                },
            );
        }
        if let Some(steer) = control.upgrade() {
            let snap = steer.snapshot();
            for e in &snap.experiments {
                if let Some(r) = running.get(&e.design.name) {
                    e.live.set_routing(lock(&r.state).routing(&r.spec));
                }
            }
        }
    }

    /// Tells an experiment to stop or conclude now; its controller acts at once.
    pub(crate) fn command(&self, name: &str, cmd: Command) -> Result<Phase, String> {
        let running = lock(&self.running);
        let r = running
            .get(name)
            .ok_or_else(|| format!("no such experiment: {name}"))?;
        let mut state = lock(&r.state);
        if state.phase != Phase::Running {
            return Err(format!(
                "experiment {name} has ended ({:?}): nothing to {}",
                state.phase,
                match cmd {
                    Command::Stop => "stop",
                    Command::Conclude => "conclude",
                }
            ));
        }
        state.pending = Some(cmd);
        drop(state);
        r.wake.notify_one();
        Ok(Phase::Running)
    }

    /// An experiment's phase.
    pub(crate) fn phase(&self, name: &str) -> Option<Phase> {
        lock(&self.running).get(name).map(|r| lock(&r.state).phase)
    }

    /// The JSON of `GET /experiments/NAME` (or of every experiment, for `GET /experiments`).
    pub(crate) fn json(&self, name: Option<&str>) -> Option<Value> {
        let running = lock(&self.running);
        let mut all: Vec<(&String, &Running)> = running.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        let view = |r: &Running| lock(&r.state).json(&r.spec);
        match name {
            None => Some(json!({
                "experiments": all.iter().map(|(_, r)| view(r)).collect::<Vec<_>>()
            })),
            Some(n) => running.get(n).map(view),
        }
    }
}

/// What a conclusion does to requests, as `policy::experiment` routes them.
pub(crate) fn after(spec: &ExperimentSpec, winner: Option<&str>) -> OnConclusion {
    match (spec.on_conclusion, winner) {
        (OnConclusion::Rollout, Some(w)) if spec.variant(w).is_some_and(|v| v > 0) => {
            OnConclusion::Rollout
        }
        (OnConclusion::None, _) => OnConclusion::None,
        _ => OnConclusion::Stop,
    }
}
