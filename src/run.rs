//! Wiring: binds the mesh listener and the admin API, makes the control plane and applies the
//! first configuration, starts the file watcher, and turns signals into changes (SIGHUP) or a
//! drained shutdown (SIGINT, SIGTERM). Every change goes through [`Control::apply`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access_log::{AccessLog, AccessLogOptions};
use crate::config::{ConfigError, ResourceSet};
use crate::control::watch::watch_files;
use crate::control::{Change, Control, last_good};
use crate::edge::ServerPolicy;
use crate::fleet::{self, Fleet};
use crate::listener::Listener;
use crate::metrics::Metrics;
use crate::policy::fault::FaultSwitch;
use crate::proxy::Proxy;
use crate::snapshot::Snapshot;
pub use crate::store::FleetOptions;

/// Command-line settings of `weir run`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Config files or directories.
    pub configs: Vec<PathBuf>,
    /// Instead of files: the fleet's store this instance takes its resources from.
    pub fleet: Option<FleetOptions>,
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
    /// Where and how to write an access log line per request (none by default).
    pub access_log: Option<AccessLogOptions>,
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
    /// The access log cannot be opened.
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
    /// The admin API would be reachable off this host without a token.
    #[error(
        "the admin API on {0} is reachable from other hosts: give it a token with --admin-token-file, or bind it to loopback"
    )]
    AdminToken(SocketAddr),
}

/// A running weir: mesh listener, Gateway listeners, admin API and watchers.
pub struct Server {
    control: Arc<Control>,
    mesh: Listener,
    mesh_addr: SocketAddr,
    admin_addr: SocketAddr,
    admin: tokio::task::JoinHandle<()>,
    watcher: Option<notify::RecommendedWatcher>,
    /// In a fleet: membership, and its tasks.
    fleet: Option<(Arc<Fleet>, Vec<tokio::task::JoinHandle<()>>)>,
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
        // The admin API is served on the control plane's runtime: one socket, never shared.
        let admin_socket = tokio::net::TcpListener::bind(opts.admin)
            .await
            .map_err(|e| StartError::Bind(opts.admin, e))?;
        let admin_addr = admin_socket
            .local_addr()
            .map_err(|e| StartError::Bind(opts.admin, e))?;
        let metrics = Arc::new(Metrics::new());
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::empty(mesh_addr, &metrics)));
        let faults = Arc::new(FaultSwitch::default());
        let access_log = match &opts.access_log {
            Some(o) => Some(
                AccessLog::open(o, metrics.access_log_dropped()).map_err(StartError::AccessLog)?,
            ),
            None => None,
        };
        let proxy = Arc::new(Proxy::new(
            snapshot.clone(),
            faults.clone(),
            opts.policy.clone(),
            access_log,
        ));
        let control = Control::new(
            snapshot,
            faults,
            metrics,
            proxy.clone(),
            mesh_addr,
            opts.configs.clone(),
            opts.state_dir.clone(),
        );
        let fleet = match opts.fleet.clone() {
            Some(fo) => Some(join(fo, &control, admin_addr, opts.state_dir.as_deref()).await?),
            None => {
                first_config(&control, initial, opts.state_dir.as_deref()).await?;
                None
            }
        };
        let mesh = Listener::start(mesh_socket, mesh_addr, false, proxy);
        let token = opts.admin_token.as_deref().map(Arc::from);
        let admin = tokio::spawn(crate::admin::serve(
            admin_socket,
            control.clone(),
            token,
            fleet.as_ref().map(|(f, _)| f.clone()),
        ));
        let watcher = if opts.configs.is_empty() {
            None
        } else {
            watch_files(&opts.configs, control.clone())
        };
        // In a fleet that started without its store and without a kept configuration, ready
        // comes with the first configuration the store gives.
        if control.generation() > 0 {
            control.set_ready(true);
        }
        let fleet = fleet.map(|(f, first)| {
            let tasks = fleet::start(&f, first);
            (f, tasks)
        });
        tracing::info!(mesh = %mesh_addr, admin = %admin_addr, "weir is serving.");
        match crate::workers::count() {
            1 => tracing::info!("One worker: connections are served on one runtime."),
            n => tracing::info!(
                workers = n,
                "Per-core workers: each accepts on a socket of its own per listener (SO_REUSEPORT)."
            ),
        }
        Ok(Server {
            control,
            mesh,
            mesh_addr,
            admin_addr,
            admin,
            watcher,
            fleet,
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

    /// Opens the access log's file again, as SIGHUP does (after logrotate moved it).
    pub fn reopen_access_log(&self) {
        self.control.reopen_access_log();
    }

    /// The control plane.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Applies a change (see [`Control::apply`]).
    pub async fn apply(&self, change: Change) -> Result<u64, Vec<ConfigError>> {
        self.control.apply(change).await
    }

    /// In a fleet: this instance's id.
    pub fn instance_id(&self) -> Option<&str> {
        self.fleet.as_ref().map(|(f, _)| f.id.as_str())
    }

    /// Serves until SIGINT or SIGTERM; SIGHUP reloads the files and opens the access log's
    /// file again (logrotate).
    pub async fn run(self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading, and opening the access log again.");
                    self.control.reopen_access_log();
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
        // The store's sync first: a change it applied meanwhile would say ready again.
        if let Some((_, tasks)) = &self.fleet {
            for t in tasks {
                t.abort();
            }
        }
        self.control.set_ready(false);
        drop(self.watcher);
        if let Some((fleet, _)) = &self.fleet {
            // The rollouts this instance drives pass to another at once.
            fleet.leave().await;
        }
        self.admin.abort();
        let gateways = self.control.take_gateways().await;
        let mut stops = vec![tokio::spawn(self.mesh.stop())];
        stops.extend(gateways.into_iter().map(|l| tokio::spawn(l.stop())));
        for s in stops {
            let _ = s.await;
        }
    }
}

/// Applies the first configuration: `initial` when given, else the files; files that do not
/// validate give way to the last good configuration kept in `state_dir`, if any.
async fn first_config(
    control: &Control,
    initial: Option<ResourceSet>,
    state_dir: Option<&std::path::Path>,
) -> Result<(), StartError> {
    let initial_from_files = initial.is_none();
    let change = match initial {
        Some(set) => Change::Replace(set),
        None => Change::Reload,
    };
    let Err(errors) = control.apply(change).await else {
        return Ok(());
    };
    // Files that no longer validate: serve the last configuration that did, if one was kept,
    // until they are fixed (the watcher reloads them).
    match state_dir.and_then(last_good::load) {
        Some(Ok(set)) if initial_from_files => {
            serve_kept(control, set, errors, "config files").await
        }
        _ => Err(StartError::Config(errors)),
    }
}

/// Serves the kept configuration `set` in place of a rejected one (`what`, with its `errors`),
/// which stays what `/config` shows as failing: it is what the operator must fix.
async fn serve_kept(
    control: &Control,
    set: ResourceSet,
    errors: Vec<ConfigError>,
    what: &str,
) -> Result<(), StartError> {
    if control.apply(Change::Replace(set)).await.is_err() {
        return Err(StartError::Config(errors));
    }
    for e in &errors {
        tracing::error!("{e}");
    }
    control.remember_rejection(&errors);
    tracing::warn!(
        "The {what} were rejected: serving the last good configuration until they are fixed."
    );
    Ok(())
}

/// Joins a fleet: the first configuration comes from its store, or, while the store cannot be
/// reached, from the last one kept in `state_dir` (without either, the instance starts not
/// ready and waits for the store). Store contents that do not validate stop the start, as bad
/// files do, unless a kept configuration can serve.
async fn join(
    opts: FleetOptions,
    control: &Arc<Control>,
    admin: SocketAddr,
    state_dir: Option<&std::path::Path>,
) -> Result<(Arc<Fleet>, Option<fleet::Read>), StartError> {
    let fleet = Fleet::new(opts, control, admin);
    control.rollouts.share(fleet.clone());
    control.experiments.share(fleet.clone());
    let kept = || state_dir.and_then(last_good::load).and_then(Result::ok);
    match fleet::first_read(&fleet).await {
        Ok(read) => {
            fleet.set_connected(true);
            match control.apply(Change::Texts(read.files())).await {
                Ok(_) => fleet.set_applied(read.revision),
                Err(errors) => {
                    fleet.metrics.apply_errors.inc();
                    match kept() {
                        Some(set) => serve_kept(control, set, errors, "store's resources").await?,
                        None => return Err(StartError::Config(errors)),
                    }
                }
            }
            Ok((fleet, Some(read)))
        }
        Err(e) => {
            fleet.set_connected(false);
            let served = match kept() {
                Some(set) => control.apply(Change::Replace(set)).await.is_ok(),
                None => false,
            };
            if served {
                tracing::warn!(store = %fleet.url, error = %e, "The store cannot be reached: serving the last configuration applied until it can.");
            } else {
                tracing::warn!(store = %fleet.url, error = %e, "The store cannot be reached and no configuration was kept: not ready until the store answers.");
            }
            Ok((fleet, None))
        }
    }
}
