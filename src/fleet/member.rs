//! This instance's membership of a fleet: what the sync and heartbeat tasks share (the store,
//! the lease, the connection state, the revision served, the rollouts' seats), and the
//! rollouts' view of it ([`Shared`]): who drives each, the fenced writes of its driver, the
//! operators' commands and the fleet's traffic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::{Notify, watch};

use super::record::Record;
use crate::control::Control;
use crate::experiment::pool::Pool;
use crate::metrics::StoreMetrics;
use crate::rollout::shared::{InstanceCounts, Pending, SaveError, Seat, Shared, Side, side_key};
use crate::store::etcd::{Compare, Etcd, Kv, Op};
use crate::store::keys::Keys;
use crate::store::{FleetOptions, StoreUrl};

/// How often an instance renews its lease and rewrites its record.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// This instance's membership of a fleet.
pub(crate) struct Fleet {
    pub(crate) url: StoreUrl,
    pub(crate) etcd: Etcd,
    pub(crate) keys: Keys,
    pub(crate) id: String,
    pub(crate) admin: SocketAddr,
    pub(crate) lease_seconds: u64,
    /// When this run started (ms since the epoch).
    pub(crate) started_ms: u64,
    /// The lease held (0: none).
    lease: AtomicI64,
    connected: AtomicBool,
    /// The store revision whose resources are served (0: none yet).
    applied: AtomicI64,
    pub(crate) metrics: StoreMetrics,
    seats: Mutex<HashMap<String, watch::Sender<Seat>>>,
    pub(crate) control: Weak<Control>,
    /// Wakes the sync task to read everything again.
    pub(crate) resync: Notify,
    /// Wakes the heartbeat to run the elections now (a driver's key went away).
    pub(crate) campaign: Notify,
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fleet {
    /// Membership of the fleet `opts` names, for `control` (whose admin API is at `admin`).
    pub(crate) fn new(opts: FleetOptions, control: &Arc<Control>, admin: SocketAddr) -> Arc<Fleet> {
        let metrics = control.metrics.store(&opts.url.to_string());
        Arc::new(Fleet {
            etcd: Etcd::new(opts.url.endpoints.clone()),
            keys: Keys::new(&opts.url.prefix),
            url: opts.url,
            id: opts.instance_id,
            admin,
            lease_seconds: opts.lease_seconds,
            started_ms: now_ms(),
            lease: AtomicI64::new(0),
            connected: AtomicBool::new(false),
            applied: AtomicI64::new(0),
            metrics,
            seats: Mutex::new(HashMap::new()),
            control: Arc::downgrade(control),
            resync: Notify::new(),
            campaign: Notify::new(),
        })
    }

    /// Leaves the fleet: ends the lease, so the rollouts this instance drives pass to another
    /// at once.
    pub(crate) async fn leave(&self) {
        let lease = self.lease.swap(0, Ordering::AcqRel);
        if lease != 0 {
            let _ = self.etcd.revoke(lease).await;
        }
    }

    /// Whether the store answers.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn set_connected(&self, up: bool) {
        let was = self.connected.swap(up, Ordering::AcqRel);
        self.metrics.connected.set(i64::from(up));
        if was != up {
            if up {
                tracing::info!(store = %self.url, "The store answers.");
            } else {
                tracing::warn!(store = %self.url, "The store does not answer: serving the last configuration.");
            }
        }
    }

    /// The store revision whose resources are served.
    pub(crate) fn applied(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    pub(crate) fn set_applied(&self, revision: i64) {
        self.applied.store(revision, Ordering::Release);
        self.metrics.revision.set(revision);
    }

    pub(crate) fn lease(&self) -> i64 {
        self.lease.load(Ordering::Acquire)
    }

    /// Takes a new lease (0: none); fences of the old one are void.
    pub(crate) fn set_lease(&self, lease: i64) {
        let old = self.lease.swap(lease, Ordering::AcqRel);
        if old != lease {
            for tx in lock(&self.seats).values() {
                tx.send_if_modified(|s| s.fence.take().is_some());
            }
        }
    }

    /// The seat of `canary`, made if new.
    fn sender(&self, canary: &str) -> watch::Sender<Seat> {
        lock(&self.seats)
            .entry(canary.to_owned())
            .or_insert_with(|| watch::channel(Seat::default()).0)
            .clone()
    }

    /// Changes the seat of `canary`; tells its watchers if it changed.
    pub(crate) fn update_seat(&self, canary: &str, change: impl FnOnce(&mut Seat)) {
        self.sender(canary).send_if_modified(|s| {
            let before = s.clone();
            change(s);
            *s != before
        });
    }

    /// Every seat's canary name.
    pub(crate) fn seat_names(&self) -> Vec<String> {
        lock(&self.seats).keys().cloned().collect()
    }

    /// The seats this instance takes part in, with the versions whose traffic their checks
    /// judge: the rollouts it runs, by Canary name, and its experiments (`experiments/NAME`).
    pub(crate) fn running(&self) -> Vec<(String, Vec<Side>)> {
        let Some(control) = self.control.upgrade() else {
            return Vec::new();
        };
        let mut seats: Vec<(String, Vec<Side>)> = control
            .rollouts
            .statuses()
            .into_iter()
            .map(|(spec, _)| {
                let sides = [&spec.canary, &spec.primary]
                    .map(|s| (s.host.clone(), s.version().to_owned()))
                    .to_vec();
                (spec.name, sides)
            })
            .collect();
        seats.extend(control.experiments.seats());
        seats
    }
}

impl Shared for Fleet {
    fn seat(&self, canary: &str) -> watch::Receiver<Seat> {
        self.sender(canary).subscribe()
    }

    fn stored(&self, canary: &str) -> Option<String> {
        let seats = lock(&self.seats);
        seats
            .get(canary)?
            .borrow()
            .state
            .as_ref()
            .map(|(t, _)| t.clone())
    }

    fn save(
        &self,
        canary: &str,
        fence: i64,
        state: String,
        consumed: Option<i64>,
    ) -> Pending<'_, Result<(), SaveError>> {
        let canary = canary.to_owned();
        Box::pin(async move {
            let driver = self.keys.driver(&canary);
            let put = Op::Put(self.keys.state(&canary), state.clone(), 0);
            let (ok, revision, _) = self
                .etcd
                .txn(&[Compare::Created(driver, fence)], &[put], &[])
                .await
                .map_err(|e| SaveError::Store(e.to_string()))?;
            if !ok {
                self.update_seat(&canary, |s| s.fence = None);
                return Err(SaveError::Lost);
            }
            self.update_seat(&canary, |s| s.state = Some((state, revision)));
            if let Some(rev) = consumed {
                let key = self.keys.command(&canary);
                let done = self
                    .etcd
                    .txn(
                        &[Compare::Modified(key.clone(), rev)],
                        &[Op::Delete(key)],
                        &[],
                    )
                    .await;
                if let Err(e) = done {
                    tracing::warn!(canary, error = %e, "Cannot clear a command that was carried out.");
                }
            }
            Ok(())
        })
    }

    fn command(&self, canary: &str, command: &'static str) -> Pending<'_, Result<i64, String>> {
        let canary = canary.to_owned();
        Box::pin(async move {
            let value = json!({"command": command, "from": self.id, "atMs": now_ms()});
            let revision = self
                .etcd
                .put(&self.keys.command(&canary), &value.to_string(), 0)
                .await
                .map_err(|e| e.to_string())?;
            // Seen here at once, not only when the watch brings it back.
            self.update_seat(&canary, |s| {
                s.command = Some((command.to_owned(), revision))
            });
            Ok(revision)
        })
    }

    fn traffic(&self, sides: Vec<Side>) -> Pending<'_, Result<Vec<InstanceCounts>, String>> {
        Box::pin(async move {
            let (_, kvs) = self
                .etcd
                .range_prefix(&self.keys.instances())
                .await
                .map_err(|e| e.to_string())?;
            let wanted: Vec<String> = sides.iter().map(|(h, v)| side_key(h, v)).collect();
            let mut out = Vec::new();
            for kv in kvs {
                match serde_json::from_str::<Record>(&kv.value) {
                    Ok(r) => {
                        let mut c = r.counts;
                        c.traffic.retain(|k, _| wanted.contains(k));
                        out.push(c);
                    }
                    Err(e) => {
                        tracing::warn!(key = kv.key, error = %e, "Unreadable instance record.")
                    }
                }
            }
            Ok(out)
        })
    }

    fn stale_after(&self) -> Duration {
        // An instance that cannot write its record cannot renew its lease either, so its record
        // goes within the lease; older ones are the moment before that, or a stalled writer.
        Duration::from_secs(self.lease_seconds) + 2 * HEARTBEAT
    }
}

/// A seat as the driver key `kv` says: driven by this instance (under its current lease, with
/// the key's fence) or by another.
pub(crate) fn seat_from_driver(seat: &mut Seat, fleet: &Fleet, lease: i64, kv: &Kv) {
    seat.driver = Some(kv.value.clone());
    seat.fence =
        (kv.value == fleet.id && kv.lease == lease && lease != 0).then_some(kv.create_revision);
}

impl Pool for Fleet {
    fn publish(&self, experiment: &str, tally: String) -> Pending<'_, Result<(), String>> {
        let key = self.keys.tally(experiment, &self.id);
        Box::pin(async move {
            self.etcd
                .put(&key, &tally, 0)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }

    fn own(&self, experiment: &str) -> Pending<'_, Result<Option<String>, String>> {
        let key = self.keys.tally(experiment, &self.id);
        Box::pin(async move {
            let (_, kvs) = self
                .etcd
                .range(&key, None)
                .await
                .map_err(|e| e.to_string())?;
            Ok(kvs.into_iter().next().map(|kv| kv.value))
        })
    }

    fn tallies(&self, experiment: &str) -> Pending<'_, Result<Vec<String>, String>> {
        let prefix = self.keys.tallies(experiment);
        Box::pin(async move {
            let (_, kvs) = self
                .etcd
                .range_prefix(&prefix)
                .await
                .map_err(|e| e.to_string())?;
            Ok(kvs.into_iter().map(|kv| kv.value).collect())
        })
    }
}
