//! A runtime endpoint: its pools and the counters and states kept across reloads.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};

use tokio::time::Instant;

use crate::backend::outlier::EndpointHealth;
use crate::backend::spec::EndpointSpec;
use crate::backend::target_health::TargetHealth;
use crate::metrics::{EndpointMetrics, EndpointState};
use crate::upstream::Pool;

/// Live counters of one endpoint within one cluster, kept across reloads.
#[derive(Debug)]
pub(crate) struct EndpointStats {
    /// When a reload added this endpoint to the cluster (for slow start); `None` for endpoints
    /// the cluster had from its start.
    pub(crate) since: Option<Instant>,
    /// Requests in flight.
    pub(crate) active: AtomicI64,
    /// Requests sent.
    pub(crate) total: AtomicU64,
    /// Requests that failed (no response, or 5xx).
    pub(crate) failures: AtomicU64,
    /// Outlier-detection state.
    pub(crate) health: EndpointHealth,
    /// Health-check state (Kong's health checks).
    pub(crate) checks: TargetHealth,
}

impl EndpointStats {
    pub(super) fn new(since: Option<Instant>) -> Self {
        EndpointStats {
            since,
            active: AtomicI64::new(0),
            total: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            health: EndpointHealth::default(),
            checks: TargetHealth::default(),
        }
    }
}

/// A runtime endpoint.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Its configuration.
    pub(crate) spec: EndpointSpec,
    /// HTTP/1.1 connection pool (shared by every cluster using this address).
    pub(crate) h1: Arc<Pool>,
    /// HTTP/2 connection pool.
    pub(crate) h2: Arc<Pool>,
    /// Counters and outlier state.
    pub(crate) stats: Arc<EndpointStats>,
    /// Metric handles, with outlier detection.
    pub(super) metrics: Option<EndpointMetrics>,
}

impl Endpoint {
    pub(super) fn show_state(&self, state: EndpointState) {
        if let Some(m) = &self.metrics {
            m.show(state);
        }
    }
}
