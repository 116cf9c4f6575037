//! Rollouts in a fleet: what a rollout needs of the store that many instances share, and how
//! it counts the fleet's traffic. The fleet (`crate::fleet`) implements [`Shared`]; the
//! rollouts never import it.
//!
//! Exactly one instance drives each Canary: the one the store's election chose. It takes the
//! steps and writes each new state, fenced by its lease (a driver that lost its lease cannot
//! write); every other instance follows the stored state and applies its weights. Operator
//! commands sent to any instance are queued in the store for the driver.
//!
//! Builtin checks judge the traffic of every live instance: each one publishes its running
//! totals of the versions under rollout in its record in the store, every second; the driver
//! reads them all at each reading and takes, per instance, the difference over the check's
//! window. An instance whose counts over the window cannot be known (its record is stale, or it
//! was already running before the oldest reading but was not in it) makes the check
//! inconclusive rather than judged on part of the traffic.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::VersionSample;

/// A future of the store's.
pub(crate) type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A version: its service host and version name.
pub(crate) type Side = (String, String);

/// What one instance's record says of the versions asked about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstanceCounts {
    /// The instance.
    pub(crate) id: String,
    /// When this run of it started (ms since the epoch): a restart resets its totals.
    pub(crate) started_ms: u64,
    /// When it wrote the record (ms since the epoch).
    pub(crate) seen_ms: u64,
    /// Running totals, by `host|version`.
    pub(crate) traffic: HashMap<String, VersionSample>,
}

/// The name of a version in an instance's record.
pub(crate) fn side_key(host: &str, version: &str) -> String {
    format!("{host}|{version}")
}

/// Where a rollout stands in the fleet.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Seat {
    /// The instance driving the rollout, if any.
    pub(crate) driver: Option<String>,
    /// Set while this instance drives it: the fence its writes carry.
    pub(crate) fence: Option<i64>,
    /// The stored state (JSON) and the revision it was written at.
    pub(crate) state: Option<(String, i64)>,
    /// A command waiting for the driver (its name), and the revision it was queued at.
    pub(crate) command: Option<(String, i64)>,
}

/// Why a driver's write did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaveError {
    /// This instance no longer drives the rollout.
    #[error("this instance no longer drives the rollout")]
    Lost,
    /// The store could not be reached.
    #[error("{0}")]
    Store(String),
}

/// What a rollout needs of the fleet's store.
pub(crate) trait Shared: Send + Sync {
    /// Where `canary` stands: who drives it and what is stored. (The fleet takes part in the
    /// election of every rollout this instance runs.)
    fn seat(&self, canary: &str) -> watch::Receiver<Seat>;
    /// The state stored for `canary`, as last read (to start from it).
    fn stored(&self, canary: &str) -> Option<String>;
    /// Writes `state` as the driver holding `fence`; then drops the command queued at
    /// `consumed`, if given.
    fn save(
        &self,
        canary: &str,
        fence: i64,
        state: String,
        consumed: Option<i64>,
    ) -> Pending<'_, Result<(), SaveError>>;
    /// Queues an operator command (its name) for the driver; returns the revision it was
    /// queued at.
    fn command(&self, canary: &str, command: &'static str) -> Pending<'_, Result<i64, String>>;
    /// Every live instance's totals of `sides`.
    fn traffic(&self, sides: Vec<Side>) -> Pending<'_, Result<Vec<InstanceCounts>, String>>;
    /// How long a record may go unwritten before its counts are taken as missing.
    fn stale_after(&self) -> std::time::Duration;
}

/// Readings of the fleet's totals, oldest first: when taken (monotonic, and ms since the
/// epoch) and what every live instance said.
pub(crate) type FleetHistory = VecDeque<(Instant, u64, Vec<InstanceCounts>)>;

/// The fleet's traffic of the two versions between `old` and `new` readings: per instance, the
/// difference of its totals (or all of them, for an instance that started since `old`). Says
/// which instance's counts are missing, if any.
pub(crate) fn window(
    old: (u64, &[InstanceCounts]),
    new: (u64, &[InstanceCounts]),
    canary: &str,
    primary: &str,
    stale_ms: u64,
) -> Result<(VersionSample, VersionSample), String> {
    let (old_ms, old) = old;
    let (new_ms, new) = new;
    let (mut c, mut p) = (VersionSample::default(), VersionSample::default());
    for i in new {
        if new_ms.saturating_sub(i.seen_ms) > stale_ms {
            return Err(format!(
                "the counts of instance {} are {} ms old",
                i.id,
                new_ms.saturating_sub(i.seen_ms)
            ));
        }
        let before = old
            .iter()
            .find(|o| o.id == i.id && o.started_ms == i.started_ms);
        let zero = VersionSample::default();
        let side = |s: &InstanceCounts, k: &str| s.traffic.get(k).cloned().unwrap_or_default();
        match before {
            Some(o) => {
                c.add(&side(i, canary).since(&side(o, canary)));
                p.add(&side(i, primary).since(&side(o, primary)));
            }
            None if i.started_ms >= old_ms => {
                c.add(&side(i, canary).since(&zero));
                p.add(&side(i, primary).since(&zero));
            }
            None => {
                return Err(format!(
                    "instance {} was not in the reading at the window's start",
                    i.id
                ));
            }
        }
    }
    Ok((c, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(id: &str, started: u64, seen: u64, c: u64, p: u64) -> InstanceCounts {
        let s = |n| VersionSample {
            requests: n,
            errors: n / 10,
            durations: vec![n],
        };
        InstanceCounts {
            id: id.into(),
            started_ms: started,
            seen_ms: seen,
            traffic: [("c".to_owned(), s(c)), ("p".to_owned(), s(p))].into(),
        }
    }

    #[test]
    fn sums_the_fleet_over_the_window() {
        let old = [
            counts("a", 0, 1000, 100, 1000),
            counts("b", 0, 1000, 50, 500),
        ];
        // b restarted after the old reading; c is new.
        let new = [
            counts("a", 0, 2000, 130, 1300),
            counts("b", 1500, 2000, 5, 40),
            counts("c", 1800, 2000, 1, 10),
        ];
        let (c, p) = window((1000, &old), (2000, &new), "c", "p", 3000).unwrap();
        assert_eq!((c.requests, p.requests), (30 + 5 + 1, 300 + 40 + 10));
        assert_eq!(c.errors, 3);
        // An instance running since before the window but not in its first reading.
        let new = [counts("a", 0, 2000, 130, 1300), counts("d", 10, 2000, 9, 9)];
        let e = window((1000, &old), (2000, &new), "c", "p", 3000).unwrap_err();
        assert!(e.contains("instance d"), "{e}");
        // Stale counts.
        let new = [counts("a", 0, 100, 130, 1300)];
        let e = window((1000, &old), (5000, &new), "c", "p", 3000).unwrap_err();
        assert!(e.contains("4900 ms old"), "{e}");
    }
}
