//! Wiring: binds listeners and the admin API, applies configuration, watches files and signals.
//!
//! Every change (file reload, SIGHUP, admin call, demo step) goes through [`Control::apply`]:
//! load, validate whole, bind any new Gateway listeners, build the snapshot, swap it atomically.
//! A change that fails anywhere is rejected whole and the old snapshot keeps serving.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Mutex, mpsc};

use crate::backend::BackendState;
use crate::config::{self, ConfigError, ResourceSet, yaml::Pos};
use crate::edge::ServerPolicy;
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::policy::fault::FaultSwitch;
use crate::proxy::Proxy;
use crate::rollout::Rollouts;
use crate::snapshot::Snapshot;

/// How long file events are collected before a reload.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);

/// Command-line settings of `weir run`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Config files or directories.
    pub configs: Vec<PathBuf>,
    /// Admin API address.
    pub admin: SocketAddr,
    /// Mesh listener address.
    pub mesh: SocketAddr,
    /// Where state that survives restarts is kept.
    pub state_dir: Option<PathBuf>,
    /// The admin API's bearer token (required when it binds off loopback).
    pub admin_token: Option<String>,
    /// Limits and deadlines for clients.
    pub policy: ServerPolicy,
}

/// A change to apply.
#[derive(Debug)]
pub enum Change {
    /// Re-read the config files.
    Reload,
    /// Serve exactly these resources.
    Replace(ResourceSet),
    /// Serve the current resources with the rollouts' current weights.
    Weights,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The initial configuration is invalid.
    #[error("invalid configuration ({} errors)", .0.len())]
    Config(Vec<ConfigError>),
    /// An address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The admin API would be reachable off this host without a token.
    #[error(
        "the admin API on {0} is reachable from other hosts: give it a token with --admin-token-file, or bind it to loopback"
    )]
    AdminToken(SocketAddr),
}

/// The control plane: current snapshot, runtime state and the apply path.
pub struct Control {
    snapshot: Arc<ArcSwap<Snapshot>>,
    /// The fault-injection kill switch (kept across reloads).
    pub faults: Arc<FaultSwitch>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    backends: BackendState,
    proxy: Arc<Proxy>,
    mesh: SocketAddr,
    configs: Vec<PathBuf>,
    gateways: Mutex<HashMap<SocketAddr, Listener>>,
    ready: AtomicBool,
    /// Progressive-delivery controllers.
    pub rollouts: Rollouts,
    /// Where the last good configuration is kept, if anywhere.
    state_dir: Option<PathBuf>,
    /// The resources as written (before rollout weights), for [`Change::Weights`].
    source: std::sync::Mutex<Arc<ResourceSet>>,
    me: std::sync::Weak<Control>,
}

impl Control {
    /// The snapshot being served.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The mesh listener's address.
    pub fn mesh_addr(&self) -> SocketAddr {
        self.mesh
    }

    /// Whether config is loaded and listeners are bound.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Validates and applies a change; returns the new generation.
    pub async fn apply(&self, change: Change) -> Result<u64, Vec<ConfigError>> {
        let mut gateways = self.gateways.lock().await;
        let result = self.apply_locked(change, &mut gateways).await;
        match &result {
            Ok(generation) => {
                self.metrics.reload(true, *generation);
                tracing::info!(generation, "Configuration applied.");
            }
            Err(errors) => {
                self.metrics.reload(false, 0);
                for e in errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "Configuration rejected; the previous one keeps serving."
                );
            }
        }
        result
    }

    async fn apply_locked(
        &self,
        change: Change,
        gateways: &mut HashMap<SocketAddr, Listener>,
    ) -> Result<u64, Vec<ConfigError>> {
        let new_source = !matches!(change, Change::Weights);
        let source = match change {
            Change::Reload => {
                let (set, errors) = config::read_paths(&self.configs);
                if !errors.is_empty() {
                    // Decoding errors, plus whatever validation finds in the rest.
                    let mut all = errors;
                    if let Err(more) = config::validate(&set, self.mesh) {
                        all.extend(more);
                    }
                    all.sort();
                    all.dedup();
                    return Err(all);
                }
                Arc::new(set)
            }
            Change::Replace(set) => Arc::new(set),
            Change::Weights => self
                .source
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        };
        let plan = self.rollouts.plan(&source);
        let set = self.rollouts.patch(&plan, &source);
        let model = config::validate(&set, self.mesh)?;
        let mut fresh = Vec::new();
        for l in model.listeners.iter().skip(1) {
            if gateways.contains_key(&l.addr) || fresh.iter().any(|(a, _)| *a == l.addr) {
                continue;
            }
            match Listener::bind(l.addr).await {
                Ok(socket) => fresh.push((l.addr, socket)),
                Err(e) => {
                    return Err(vec![ConfigError {
                        file: format!("Gateway {}", l.gateway.as_deref().unwrap_or("?")).into(),
                        pos: Pos::default(),
                        message: format!("cannot listen on {}: {e}", l.addr),
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
        self.snapshot.store(Arc::new(snap));
        *self.source.lock().unwrap_or_else(|e| e.into_inner()) = source.clone();
        if new_source
            && let Some(dir) = &self.state_dir
            && let Err(e) = crate::state::save_last_good(dir, &source)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot keep the last good configuration.");
        }
        self.rollouts.commit(plan, &self.me);
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

/// A running weir: mesh listener, Gateway listeners, admin API and watchers.
pub struct Server {
    control: Arc<Control>,
    mesh: Listener,
    mesh_addr: SocketAddr,
    admin_addr: SocketAddr,
    admin: tokio::task::JoinHandle<()>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl Server {
    /// Binds, applies the initial config (the files, or `initial` when given) and starts serving.
    pub async fn start(opts: Options, initial: Option<ResourceSet>) -> Result<Server, StartError> {
        if !opts.admin.ip().is_loopback() && opts.admin_token.is_none() {
            return Err(StartError::AdminToken(opts.admin));
        }
        let mesh_socket = Listener::bind(opts.mesh)
            .await
            .map_err(|e| StartError::Bind(opts.mesh, e))?;
        let mesh_addr = mesh_socket
            .local_addr()
            .map_err(|e| StartError::Bind(opts.mesh, e))?;
        let admin_socket = Listener::bind(opts.admin)
            .await
            .map_err(|e| StartError::Bind(opts.admin, e))?;
        let admin_addr = admin_socket
            .local_addr()
            .map_err(|e| StartError::Bind(opts.admin, e))?;
        let metrics = Arc::new(Metrics::new());
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::empty(mesh_addr, &metrics)));
        let faults = Arc::new(FaultSwitch::default());
        let proxy = Arc::new(Proxy::new(
            snapshot.clone(),
            faults.clone(),
            opts.policy.clone(),
        ));
        let control = Arc::new_cyclic(|me| Control {
            snapshot,
            faults,
            metrics,
            backends: BackendState::default(),
            proxy: proxy.clone(),
            mesh: mesh_addr,
            configs: opts.configs.clone(),
            gateways: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            rollouts: Rollouts::new(opts.state_dir.clone()),
            state_dir: opts.state_dir.clone(),
            source: std::sync::Mutex::new(Arc::default()),
            me: me.clone(),
        });
        let initial_from_files = initial.is_none();
        let change = match initial {
            Some(set) => Change::Replace(set),
            None => Change::Reload,
        };
        if let Err(errors) = control.apply(change).await {
            // Files that no longer validate: serve the last configuration that did, if one
            // was kept, until they are fixed (the watcher reloads them).
            let kept = opts
                .state_dir
                .as_deref()
                .and_then(crate::state::load_last_good);
            match kept {
                Some(Ok(set)) if initial_from_files => {
                    control
                        .apply(Change::Replace(set))
                        .await
                        .map_err(|_| StartError::Config(errors))?;
                    tracing::warn!(
                        state_dir = ?opts.state_dir,
                        "The config files were rejected: serving the last good configuration until they are fixed."
                    );
                }
                _ => return Err(StartError::Config(errors)),
            }
        }
        let mesh = Listener::start(mesh_socket, mesh_addr, false, proxy);
        let token = opts.admin_token.as_deref().map(Arc::from);
        let admin = tokio::spawn(crate::admin::serve(admin_socket, control.clone(), token));
        let watcher = if opts.configs.is_empty() {
            None
        } else {
            watch_files(&opts.configs, control.clone())
        };
        control.ready.store(true, Ordering::Release);
        tracing::info!(mesh = %mesh_addr, admin = %admin_addr, "weir is serving.");
        Ok(Server {
            control,
            mesh,
            mesh_addr,
            admin_addr,
            admin,
            watcher,
        })
    }

    /// The mesh listener's address.
    pub fn mesh_addr(&self) -> SocketAddr {
        self.mesh_addr
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The control plane.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Applies a change (see [`Control::apply`]).
    pub async fn apply(&self, change: Change) -> Result<u64, Vec<ConfigError>> {
        self.control.apply(change).await
    }

    /// Serves until SIGINT or SIGTERM; SIGHUP reloads the files.
    pub async fn run(self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading.");
                    let _ = self.control.apply(Change::Reload).await;
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("Shutting down: draining connections.");
        self.shutdown().await;
        Ok(())
    }

    /// Stops every listener, letting open connections finish.
    pub async fn shutdown(self) {
        self.control.ready.store(false, Ordering::Release);
        drop(self.watcher);
        self.admin.abort();
        let gateways: Vec<Listener> = self
            .control
            .gateways
            .lock()
            .await
            .drain()
            .map(|(_, l)| l)
            .collect();
        let mut stops = vec![tokio::spawn(self.mesh.stop())];
        stops.extend(gateways.into_iter().map(|l| tokio::spawn(l.stop())));
        for s in stops {
            let _ = s.await;
        }
    }
}

/// Watches the config paths (their directories, so editors' atomic renames are seen) and
/// reloads after a short quiet period.
fn watch_files(paths: &[PathBuf], control: Arc<Control>) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let files: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let relevant = files.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let hit = event.paths.iter().any(|p| {
            relevant.iter().any(|f| {
                p == f || (f.is_dir() && p.parent() == Some(f.as_path()) && config::is_yaml(p))
            })
        });
        if hit {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch config files; reload with SIGHUP.");
            return None;
        }
    };
    for f in &files {
        let dir = if f.is_dir() {
            f.clone()
        } else {
            f.parent().map(PathBuf::from).unwrap_or_default()
        };
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(path = %dir.display(), error = %e, "Cannot watch directory.");
        }
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(RELOAD_DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let _ = control.apply(Change::Reload).await;
        }
    });
    Some(watcher)
}
