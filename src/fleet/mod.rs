//! An instance of a fleet: many weir instances that share their resources and rollouts through
//! a store (etcd), each serving the same configuration.
//!
//! - `sync.rs` reads the store's resources and rollouts once, then watches them from the next
//!   revision; every change of resources goes through the one apply path, and a lost watch
//!   (etcd restarted, history compacted, network cut) reads everything again.
//! - `heartbeat.rs` keeps the instance's lease and record (its admin address, the revision it
//!   serves, its traffic of the versions under rollout) and runs the elections of the rollouts'
//!   drivers.
//! - `member.rs` holds what they share, and answers the rollouts: who drives each, the fenced
//!   writes of its driver, the operators' commands and the fleet's traffic; `record.rs` is an
//!   instance's record; `view.rs` the admin API's views.
//!
//! Limits that Envoy keeps per instance (connection pools, breakers, rate limits) stay per
//! instance, and so does state that is not configuration (outlier ejections, health).

mod heartbeat;
mod member;
mod record;
mod sync;
mod view;

use std::sync::Arc;

pub(crate) use member::Fleet;
pub(crate) use sync::{Read, first_read};
pub(crate) use view::{fleet_json, targets_json};

/// Starts the sync and heartbeat tasks of `fleet`; `first` is the read already applied.
pub(crate) fn start(fleet: &Arc<Fleet>, first: Option<Read>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(sync::run(fleet.clone(), first)),
        tokio::spawn(heartbeat::run(fleet.clone())),
    ]
}
