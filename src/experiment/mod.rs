//! A/B experiments judged on business goals: a controller task per `Experiment` looks at its
//! counts every second, judges them with a test that stays valid however often it is looked
//! at (`stats.rs`, `verdict.rs`), watches the sample ratio and the guardrails, and concludes:
//! the winner's canary (a Canary written into the configuration by [`Experiments::patch`],
//! run by the rollout controller), everyone to the control, or participants left where they
//! are. The request path's side (assignment, counting) is `crate::policy::experiment`.

mod controller;
pub(crate) mod pool;
pub(crate) mod spec;
pub(crate) mod stats;
mod status;
pub(crate) mod verdict;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde_json::{Value, json};

use crate::config::experiment::OnConclusion;
use crate::config::generate::GENERATED_BY;
use crate::config::validate::winner_canary;
use crate::config::{Metadata, Resource, ResourceSet, Spec};
use crate::control::change::Steer;
use crate::rollout::command::lock;
use crate::rollout::shared::Side;
use pool::Pool;
use spec::ExperimentSpec;
pub(crate) use status::Phase;
use status::State;

/// One experiment's controller.
struct Running {
    spec: ExperimentSpec,
    /// The versions its guardrails compare (service host, version).
    sides: Vec<Side>,
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
    /// In a fleet: the store every instance shares (set once, before the first apply).
    pool: OnceLock<Arc<dyn Pool>>,
}

/// What an operator may tell an experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// End it now, everyone to the control.
    Stop,
    /// End it now with the leading variant as the winner.
    Conclude,
}

impl Command {
    /// The command's name, as in an admin path.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Command::Stop => "stop",
            Command::Conclude => "conclude",
        }
    }

    /// The command named in an admin path.
    pub(crate) fn parse(name: &str) -> Option<Command> {
        match name {
            "stop" => Some(Command::Stop),
            "conclude" => Some(Command::Conclude),
            _ => None,
        }
    }
}

/// Why a command was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// No experiment of that name.
    #[error("no such experiment: {0}")]
    Unknown(String),
    /// The experiment has ended.
    #[error("experiment {0} has ended ({1:?}): nothing to {2}")]
    Ended(String, Phase, &'static str),
    /// The fleet's store could not take it.
    #[error("the store did not take the command: {0}")]
    Store(String),
}

impl Experiments {
    /// Experiments whose state is kept under `state_dir`, if given.
    pub(crate) fn new(state_dir: Option<PathBuf>) -> Experiments {
        Experiments {
            running: Mutex::default(),
            dir: state_dir.map(|d| d.join("experiments")),
            pool: OnceLock::new(),
        }
    }

    /// Makes the experiments part of a fleet: every instance's counts are added up, and one
    /// instance judges each experiment, through `pool`.
    pub(crate) fn share(&self, pool: Arc<dyn Pool>) {
        let _ = self.pool.set(pool);
    }

    /// Every experiment's seat in a fleet, with the versions its guardrails compare.
    pub(crate) fn seats(&self) -> Vec<(String, Vec<Side>)> {
        lock(&self.running)
            .iter()
            .map(|(name, r)| (pool::seat(name), r.sides.clone()))
            .collect()
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
            let guardrails = controller::guardrails_of(&spec, set);
            let mut sides: Vec<Side> = guardrails
                .iter()
                .flat_map(|g| [g.treatment.clone(), g.control.clone()])
                .collect();
            sides.sort();
            sides.dedup();
            let task = tokio::spawn(controller::drive(controller::Job {
                control: control.clone(),
                spec: spec.clone(),
                state: state.clone(),
                wake: wake.clone(),
                dir: self.dir.clone(),
                guardrails,
                pool: self.pool.get().cloned(),
            }));
            running.insert(
                name,
                Running {
                    spec,
                    sides,
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

    /// Tells an experiment to stop or conclude now: its controller (in a fleet, its judge,
    /// through the store) acts at once.
    pub(crate) async fn command(&self, name: &str, cmd: Command) -> Result<(), CommandError> {
        {
            let running = lock(&self.running);
            let r = running
                .get(name)
                .ok_or_else(|| CommandError::Unknown(name.to_owned()))?;
            let mut state = lock(&r.state);
            if state.phase != Phase::Running {
                return Err(CommandError::Ended(
                    name.to_owned(),
                    state.phase,
                    cmd.name(),
                ));
            }
            if self.pool.get().is_none() {
                state.pending = Some(cmd);
                drop(state);
                r.wake.notify_one();
                return Ok(());
            }
        }
        let Some(pool) = self.pool.get() else {
            return Ok(());
        };
        pool.command(&pool::seat(name), cmd.name())
            .await
            .map(|_| ())
            .map_err(CommandError::Store)
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
