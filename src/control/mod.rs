//! The control plane: the one apply path every configuration change takes, and the state it
//! changes.
//!
//! A file reload (the watcher in `control/watch.rs`, or SIGHUP), a fleet store's change
//! (`fleet/sync.rs`), an admin call, a rollout step and the demo all call [`Control::apply`]
//! with a [`Change`]: load, validate whole, bind any new Gateway listeners, build the
//! snapshot, swap it atomically. A change that fails anywhere is
//! rejected whole and the old snapshot keeps serving. The rollout controllers reach the control
//! plane through `change::Steer` only.
//!
//! Runtime toggles that are not configuration stay outside the apply path: the fault kill
//! switch ([`Control::faults`]) and endpoint health overrides (set through the admin API on the
//! clusters' health state).

pub mod call;
pub(crate) mod change;
pub(crate) mod jwks;
pub(crate) mod last_good;
pub(crate) mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::backend::Retained;
use crate::config::{self, ConfigError, ResourceSet, yaml::Pos};
use crate::experiment::Experiments;
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::policy::fault::FaultSwitch;
use crate::proxy::Proxy;
use crate::rollout::Rollouts;
use crate::snapshot::Snapshot;
pub use change::Change;
use change::{Applying, Steer};

/// The control plane: the snapshot being served, what outlives it, and the apply path.
pub struct Control {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// The fault-injection kill switch: a runtime toggle outside the apply path (the admin API
    /// flips it; the request path reads it), kept across reloads. Endpoint health overrides
    /// (the admin API's target health calls) are runtime toggles too, held by each cluster's
    /// health state in `backend::Retained`.
    pub faults: Arc<FaultSwitch>,
    /// Metrics registry.
    pub(crate) metrics: Arc<Metrics>,
    backends: Retained,
    proxy: Arc<Proxy>,
    mesh: SocketAddr,
    configs: Vec<PathBuf>,
    gateways: Mutex<HashMap<SocketAddr, Listener>>,
    ready: AtomicBool,
    /// Progressive-delivery controllers.
    pub(crate) rollouts: Rollouts,
    /// A/B experiments' controllers.
    pub(crate) experiments: Experiments,
    /// Where the last good configuration is kept, if anywhere.
    state_dir: Option<PathBuf>,
    /// The resources as written (before rollout weights), for [`Change::Weights`].
    source: std::sync::Mutex<Arc<ResourceSet>>,
    /// The last change tried, for `GET /config`.
    last: std::sync::Mutex<Option<Attempt>>,
    me: Weak<Control>,
}

/// A configuration change tried, and how it ended.
#[derive(Clone, Debug)]
pub(crate) struct Attempt {
    /// When.
    pub(crate) at: std::time::SystemTime,
    /// The generation it made, or every error, as `file:line:column: message`.
    pub(crate) result: Result<u64, Vec<String>>,
}

impl Control {
    /// A control plane serving `snapshot` (empty until the first change is applied) through
    /// `proxy`, with the mesh listener at `mesh`; `Reload` reads `configs`.
    pub(crate) fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        faults: Arc<FaultSwitch>,
        metrics: Arc<Metrics>,
        proxy: Arc<Proxy>,
        mesh: SocketAddr,
        configs: Vec<PathBuf>,
        state_dir: Option<PathBuf>,
    ) -> Arc<Control> {
        Arc::new_cyclic(|me| Control {
            snapshot,
            faults,
            metrics,
            backends: Retained::default(),
            proxy,
            mesh,
            configs,
            gateways: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            rollouts: Rollouts::new(state_dir.clone()),
            experiments: Experiments::new(state_dir.clone()),
            state_dir,
            source: std::sync::Mutex::new(Arc::default()),
            last: std::sync::Mutex::new(None),
            me: me.clone(),
        })
    }

    /// Says whether weir is ready (`/ready`): config loaded and listeners bound.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Takes the Gateway listeners, to stop them.
    pub(crate) async fn take_gateways(&self) -> Vec<Listener> {
        self.gateways.lock().await.drain().map(|(_, l)| l).collect()
    }

    /// The snapshot being served.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The generation of the configuration being served (1 for the first applied).
    pub fn generation(&self) -> u64 {
        self.snapshot.load().generation
    }

    /// Opens the access log's file again (SIGHUP).
    pub(crate) fn reopen_access_log(&self) {
        self.proxy.reopen_access_log();
    }

    /// The mesh listener's address.
    pub fn mesh_addr(&self) -> SocketAddr {
        self.mesh
    }

    /// Whether config is loaded and listeners are bound.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Validates and applies a change; returns the new generation. The result of a change of
    /// the configuration (a reload, an admin call; not a rollout's weights, which change no
    /// resource) is kept for `GET /config` (`lastAttempt`) and the
    /// `weir_config_last_reload_successful` gauge; errors are logged, except before the first
    /// configuration is served: whoever starts weir reports that one.
    pub async fn apply(&self, change: Change) -> Result<u64, Vec<ConfigError>> {
        let mut gateways = self.gateways.lock().await;
        let serving = self.snapshot.load().generation > 0;
        let weights = matches!(change, Change::Weights);
        let result = self.apply_locked(change, &mut gateways).await;
        self.metrics
            .reload(result.is_ok(), *result.as_ref().unwrap_or(&0));
        match &result {
            Ok(generation) => tracing::info!(generation, "Configuration applied."),
            Err(errors) if serving => {
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "Configuration rejected; the previous one keeps serving."
                );
            }
            Err(_) => {}
        }
        if weights {
            return result;
        }
        self.remember(result.as_ref().copied().map_err(Vec::as_slice));
        result
    }

    /// Records `errors` as the last change's result: when the files were rejected at start and
    /// the last good configuration serves instead, the files are what is shown as failing.
    pub(crate) fn remember_rejection(&self, errors: &[ConfigError]) {
        self.remember(Err(errors));
    }

    /// Keeps a configuration change's result for `GET /config` and the gauge.
    fn remember(&self, result: Result<u64, &[ConfigError]>) {
        self.metrics.show_last_reload(result.is_ok());
        let result = result.map_err(|errors| errors.iter().map(ToString::to_string).collect());
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Attempt {
            at: std::time::SystemTime::now(),
            result,
        });
    }

    /// The last change tried, with its result.
    pub(crate) fn last_attempt(&self) -> Option<Attempt> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn apply_locked(
        &self,
        change: Change,
        gateways: &mut HashMap<SocketAddr, Listener>,
    ) -> Result<u64, Vec<ConfigError>> {
        let new_source = !matches!(change, Change::Weights);
        let source = match change {
            Change::Reload => Arc::new(read(config::read_paths(&self.configs), self.mesh)?),
            Change::Texts(files) => Arc::new(read(config::read_texts(files), self.mesh)?),
            Change::Replace(set) => Arc::new(set),
            Change::Weights => self
                .source
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        };
        // A concluded experiment's winner is rolled out by a Canary it adds; rollouts then
        // write their weights.
        let concluded = self.experiments.patch(&source);
        let plan = self.rollouts.plan(&concluded);
        let set = self.rollouts.patch(&plan, &concluded);
        let model = config::validate(&set, self.mesh)?;
        let mut fresh = Vec::new();
        for l in model.listeners.iter().skip(1) {
            if gateways.contains_key(&l.addr) || fresh.iter().any(|(a, _)| *a == l.addr) {
                continue;
            }
            match Listener::bind(l.addr).await {
                Ok(socket) => fresh.push((l.addr, socket)),
                Err(e) => {
                    let gateway = l.gateway.as_deref().unwrap_or("?");
                    let (file, pos) = l
                        .place
                        .clone()
                        .unwrap_or_else(|| (format!("Gateway {gateway}").into(), Pos::default()));
                    return Err(vec![ConfigError {
                        file,
                        pos,
                        message: format!("Gateway `{gateway}` cannot listen on {}: {e}", l.addr),
                    }]);
                }
            }
        }
        for w in &model.warnings {
            tracing::warn!("{w}");
        }
        let generation = self.snapshot.load().generation + 1;
        let wanted: Vec<SocketAddr> = model.listeners.iter().skip(1).map(|l| l.addr).collect();
        let snap = Snapshot::build(model, set, generation, &self.backends, &self.metrics);
        jwks::watch(&snap);
        self.snapshot.store(Arc::new(snap));
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = source.clone();
        if new_source
            && let Some(dir) = &self.state_dir
            && let Err(e) = last_good::save(dir, &source)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot keep the last good configuration.");
        }
        let steer: Weak<dyn Steer> = self.me.clone();
        self.rollouts.commit(plan, &steer);
        self.experiments.commit(&source, &steer);
        for (addr, socket) in fresh {
            tracing::info!(%addr, "Gateway listener started.");
            gateways.insert(
                addr,
                Listener::start(socket, addr, true, self.proxy.clone()),
            );
        }
        let gone: Vec<SocketAddr> = gateways
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(l) = gateways.remove(&addr) {
                tracing::info!(%addr, "Gateway listener stopping.");
                tokio::spawn(l.stop());
            }
        }
        Ok(generation)
    }

    /// The addresses of the Gateway listeners.
    pub async fn gateway_addrs(&self) -> Vec<SocketAddr> {
        self.gateways.lock().await.keys().copied().collect()
    }
}

/// What was read, or its decoding errors together with whatever validation finds in the rest.
fn read(
    (set, errors): (ResourceSet, Vec<ConfigError>),
    mesh: SocketAddr,
) -> Result<ResourceSet, Vec<ConfigError>> {
    if errors.is_empty() {
        return Ok(set);
    }
    let mut all = errors;
    if let Err(more) = config::validate(&set, mesh) {
        all.extend(more);
    }
    all.sort();
    all.dedup();
    Err(all)
}

impl Steer for Control {
    fn snapshot(&self) -> Arc<Snapshot> {
        Control::snapshot(self)
    }

    fn mesh_addr(&self) -> SocketAddr {
        self.mesh
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn apply(&self, change: Change) -> Applying<'_> {
        Box::pin(Control::apply(self, change))
    }
}
