//! The store's resources and rollouts, read once and then watched from the next revision.
//!
//! The watch starts at the revision after the read, never at "now", so that a write made
//! between the two is not missed (apache/apisix#9951, #13067). A change of resources is applied
//! whole through the one apply path; a store whose resources do not validate is rejected whole
//! (the previous configuration keeps serving; `/config` and the log name the keys at fault).
//! When the watch is lost (etcd restarted, its history compacted past the revision, the network
//! cut), the instance keeps serving, reads everything again after a jittered backoff, and
//! applies it as one change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::member::{Fleet, now_ms, seat_from_driver};
use crate::control::Change;
use crate::store::etcd::{EtcdError, Kv};
use crate::store::keys::Watched;
use crate::store::resources::written_at_ms;
use crate::store::watch::{Event, Watch};

/// The keys of one rollout.
#[derive(Clone, Debug, Default)]
struct RolloutKeys {
    state: Option<Kv>,
    driver: Option<Kv>,
    command: Option<Kv>,
}

/// The watched range as read at one revision.
#[derive(Debug, Default)]
pub(crate) struct Read {
    /// The revision.
    pub(crate) revision: i64,
    resources: BTreeMap<String, String>,
    marker: Option<Kv>,
    rollouts: HashMap<String, RolloutKeys>,
}

impl Read {
    /// Takes in a key-value of the watched range (`None`: deleted).
    fn take(&mut self, fleet: &Fleet, key: &str, kv: Option<Kv>) {
        match fleet.keys.classify(key) {
            Watched::Written => self.marker = kv,
            Watched::Resource => match kv {
                Some(kv) => {
                    self.resources.insert(kv.key, kv.value);
                }
                None => {
                    self.resources.remove(key);
                }
            },
            Watched::State(c) => self.rollouts.entry(c.to_owned()).or_default().state = kv,
            Watched::Driver(c) => self.rollouts.entry(c.to_owned()).or_default().driver = kv,
            Watched::Command(c) => self.rollouts.entry(c.to_owned()).or_default().command = kv,
            Watched::Other => {}
        }
    }

    /// The resources as config texts named by their keys.
    pub(crate) fn files(&self) -> Vec<(Arc<str>, Arc<str>)> {
        self.resources
            .iter()
            .map(|(k, v)| (Arc::from(k.as_str()), Arc::from(v.as_str())))
            .collect()
    }
}

/// Reads the watched range.
pub(crate) async fn first_read(fleet: &Fleet) -> Result<Read, EtcdError> {
    let (start, end) = fleet.keys.watched();
    let (revision, kvs) = fleet.etcd.range(&start, Some(&end)).await?;
    let mut read = Read {
        revision,
        ..Read::default()
    };
    for kv in kvs {
        let key = kv.key.clone();
        read.take(fleet, &key, Some(kv));
    }
    Ok(read)
}

/// Applies the resources of `read` (at `revision`); true if they are served.
pub(crate) async fn apply(fleet: &Fleet, read: &Read, revision: i64) -> bool {
    let Some(control) = fleet.control.upgrade() else {
        return false;
    };
    let serving = control.generation() > 0;
    match control.apply(Change::Texts(read.files())).await {
        Ok(_) => {
            fleet.set_applied(revision);
            if let Some(at) = read.marker.as_ref().and_then(written_at_ms) {
                let delay = now_ms().saturating_sub(at) as f64 / 1000.0;
                fleet.metrics.apply_delay.observe(delay);
            }
            control.set_ready(true);
            tracing::info!(revision, store = %fleet.url, "Store resources applied.");
            true
        }
        Err(errors) => {
            fleet.metrics.apply_errors.inc();
            if !serving {
                for e in &errors {
                    tracing::error!("{e}");
                }
            }
            tracing::error!(
                revision,
                errors = errors.len(),
                "The store's resources were rejected; the previous configuration keeps serving."
            );
            false
        }
    }
}

/// Tells the rollouts what the store says of them.
fn seat_all(fleet: &Fleet, read: &Read) {
    let lease = fleet.lease();
    let mut names: Vec<String> = read.rollouts.keys().cloned().collect();
    names.extend(fleet.seat_names());
    names.sort();
    names.dedup();
    for canary in names {
        let keys = read.rollouts.get(&canary).cloned().unwrap_or_default();
        seat(fleet, &canary, &keys, lease);
    }
}

fn seat(fleet: &Fleet, canary: &str, keys: &RolloutKeys, lease: i64) {
    let mut vacant = false;
    fleet.update_seat(canary, |s| {
        s.state = keys
            .state
            .as_ref()
            .map(|kv| (kv.value.clone(), kv.mod_revision));
        s.command = keys.command.as_ref().and_then(|kv| {
            let v: serde_json::Value = serde_json::from_str(&kv.value).ok()?;
            Some((v.get("command")?.as_str()?.to_owned(), kv.mod_revision))
        });
        match &keys.driver {
            Some(kv) => seat_from_driver(s, fleet, lease, kv),
            None => {
                vacant = s.driver.is_some() || s.fence.is_some();
                s.driver = None;
                s.fence = None;
            }
        }
    });
    if vacant {
        fleet.campaign.notify_one();
    }
}

/// Reads, applies and watches until weir stops; `first` is a read already applied.
pub(super) async fn run(fleet: Arc<Fleet>, mut first: Option<Read>) {
    let mut backoff = Backoff::default();
    // The resources last tried, and whether they were served.
    let mut tried: Option<(BTreeMap<String, String>, bool)> = first
        .as_ref()
        .map(|r| (r.resources.clone(), fleet.applied() == r.revision));
    loop {
        let mut read = match first.take() {
            Some(r) => r,
            None => match first_read(&fleet).await {
                Ok(r) => r,
                Err(e) => {
                    fleet.set_connected(false);
                    tracing::debug!(error = %e, "Cannot read the store.");
                    backoff.wait().await;
                    continue;
                }
            },
        };
        fleet.set_connected(true);
        seat_all(&fleet, &read);
        let served = match &tried {
            Some((resources, ok)) if *resources == read.resources => *ok,
            _ => apply(&fleet, &read, read.revision).await,
        };
        if served {
            fleet.set_applied(read.revision);
        }
        tried = Some((read.resources.clone(), served));
        let (start, end) = fleet.keys.watched();
        let mut watch = match Watch::open(&fleet.etcd, &start, &end, read.revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot watch the store.");
                backoff.wait().await;
                continue;
            }
        };
        backoff = Backoff::default();
        let end = loop {
            let batch = tokio::select! {
                b = watch.next() => b,
                () = fleet.resync.notified() => break "the store was lost; reading it again".to_owned(),
            };
            let (revision, events) = match batch {
                Ok(b) => b,
                Err(e) => break e.to_string(),
            };
            let mut resources_changed = false;
            let mut rollouts = Vec::new();
            for event in events {
                let key = event.key().to_owned();
                let class = fleet.keys.classify(&key);
                match class {
                    Watched::Resource | Watched::Written => resources_changed = true,
                    Watched::State(c) | Watched::Driver(c) | Watched::Command(c) => {
                        rollouts.push(c.to_owned());
                    }
                    Watched::Other => {}
                }
                let kv = match event {
                    Event::Put(kv) => Some(kv),
                    Event::Delete(_) => None,
                };
                read.take(&fleet, &key, kv);
            }
            read.revision = revision;
            let lease = fleet.lease();
            rollouts.sort();
            rollouts.dedup();
            for canary in rollouts {
                let keys = read.rollouts.get(&canary).cloned().unwrap_or_default();
                seat(&fleet, &canary, &keys, lease);
            }
            let changed = tried.as_ref().is_none_or(|(r, _)| *r != read.resources);
            let served = if resources_changed && changed {
                let ok = apply(&fleet, &read, revision).await;
                tried = Some((read.resources.clone(), ok));
                ok
            } else {
                tried.as_ref().is_some_and(|(_, ok)| *ok)
            };
            if served {
                fleet.set_applied(revision);
            }
        };
        tracing::warn!(store = %fleet.url, "Store watch ended ({end}); keeping the configuration and reading again.");
        backoff.wait().await;
    }
}

/// Jittered exponential backoff between reconnections: 100 ms doubling to 5 s, each wait drawn
/// from its upper half, so that a fleet does not come back at etcd all at once.
#[derive(Default)]
struct Backoff {
    tries: u32,
}

impl Backoff {
    async fn wait(&mut self) {
        let ceiling = Duration::from_millis(100)
            .saturating_mul(1 << self.tries.min(6))
            .min(Duration::from_secs(5));
        self.tries += 1;
        let half = ceiling / 2;
        let jitter = half.mul_f64(fastrand::f64());
        tokio::time::sleep(half + jitter).await;
    }
}
