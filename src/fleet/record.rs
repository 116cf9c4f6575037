//! An instance's record in the store (`P/instances/ID`, under the instance's lease): what
//! `/fleet` shows of it and what the drivers of rollouts count.

use serde::{Deserialize, Serialize};

use crate::rollout::shared::InstanceCounts;

/// An instance's record in the store.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    /// Its admin API's address.
    pub(crate) admin: String,
    /// The store revision whose resources it serves.
    pub(crate) revision: i64,
    /// Whether it is ready.
    #[serde(default)]
    pub(crate) ready: bool,
    /// weir's version.
    #[serde(default)]
    pub(crate) version: String,
    /// Its id, when it started and last wrote, and its traffic of the versions under rollout.
    #[serde(flatten)]
    pub(crate) counts: InstanceCounts,
}
