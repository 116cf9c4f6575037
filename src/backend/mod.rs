//! Clusters (the DestinationRule level): a service host, optionally one subset, its endpoints and
//! its backend policies. [`ClusterSpec`] is the pure description built by config validation;
//! [`Cluster`] adds the runtime parts kept across reloads: connection pools, counters, outlier
//! states, limit counters and the retry budget. Picking an endpoint (balancer, consistent hash,
//! warmup, ejections, panic mode) is here too.

pub(crate) mod balance;
pub(crate) mod breaker;
pub(crate) mod budget;
mod cluster;
mod endpoint;
pub(crate) mod hash;
pub(crate) mod health;
pub(crate) mod limits;
pub(crate) mod outlier;
mod retained;
mod spec;
pub(crate) mod target_health;

pub(crate) use balance::{Lb, Warmup};
pub(crate) use cluster::{Cluster, Picked};
pub(crate) use retained::Retained;
pub(crate) use spec::{ClusterSpec, EndpointAddr, EndpointSpec, Protocol};
