//! What may change the configuration being served, and what the rollout controller may do to
//! the control plane.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{ConfigError, ResourceSet};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// A change to apply.
#[derive(Debug)]
pub enum Change {
    /// Re-read the config files.
    Reload,
    /// Serve exactly these resources.
    Replace(ResourceSet),
    /// Serve the resources of these texts, each named by where it came from (a fleet's store:
    /// one document per key, named by its key).
    Texts(Vec<(std::sync::Arc<str>, std::sync::Arc<str>)>),
    /// Serve the current resources with the rollouts' current weights.
    Weights,
}

/// What a rollout controller sees of the control plane and may do to it: read the snapshot
/// and the metrics, and apply its weights through the one apply path. (The control plane owns
/// the rollouts; they reach it only through this, so that neither imports the other.)
pub(crate) trait Steer: Send + Sync {
    /// The snapshot being served.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// The mesh listener's address (where webhooks of the rollout reach services).
    fn mesh_addr(&self) -> SocketAddr;
    /// The metrics, whose per-version totals the analysis reads.
    fn metrics(&self) -> &Metrics;
    /// Applies a change; returns the new generation.
    fn apply(&self, change: Change) -> Applying<'_>;
}

/// A change being applied.
pub(crate) type Applying<'a> =
    Pin<Box<dyn Future<Output = Result<u64, Vec<ConfigError>>> + Send + 'a>>;
