//! The instance's heartbeat, once a [`HEARTBEAT`]: renew the lease (a new one when it lapsed),
//! rewrite the instance's record under it, and run the elections: for every rollout this
//! instance runs and nobody drives, try to become its driver; for every rollout it drives but
//! no longer runs, step down. An experiment's judge is elected the same way.
//!
//! An election is one transaction: create the driver key, under this instance's lease, if it
//! does not exist. The key's create revision is the driver's fence: its writes of rollout state
//! hold only while that very key exists, and the key goes with the lease.

use std::collections::HashMap;
use std::sync::Arc;

use super::member::{Fleet, HEARTBEAT, now_ms, seat_from_driver};
use super::record::Record;
use crate::rollout::shared::{InstanceCounts, Shared, side_key};
use crate::store::etcd::{Compare, Op, kvs};

/// Runs until weir stops.
pub(super) async fn run(fleet: Arc<Fleet>) {
    let mut ticker = tokio::time::interval(HEARTBEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = fleet.campaign.notified() => {}
        }
        let up = beat(&fleet).await;
        let was = fleet.connected();
        fleet.set_connected(up.is_ok());
        match up {
            Ok(()) if !was => fleet.resync.notify_one(),
            Ok(()) => {}
            Err(e) => {
                if was {
                    // The watch may hang on a cut connection: read again once etcd is back.
                    fleet.resync.notify_one();
                }
                tracing::debug!(error = %e, "Heartbeat failed.");
            }
        }
    }
}

/// One heartbeat.
async fn beat(fleet: &Fleet) -> Result<(), String> {
    let e = |e: crate::store::etcd::EtcdError| e.to_string();
    let mut lease = fleet.lease();
    if lease != 0 && fleet.etcd.keep_alive(lease).await.map_err(e)? <= 0 {
        tracing::warn!(lease, "The instance's lease lapsed: taking a new one.");
        lease = 0;
        fleet.set_lease(0);
    }
    if lease == 0 {
        // A live record under this id is another instance's, or this one's before a restart
        // (it lapses within the lease): ids must be unique.
        let (_, held) = fleet
            .etcd
            .range(&fleet.keys.instance(&fleet.id), None)
            .await
            .map_err(e)?;
        if let Some(r) = held
            .first()
            .and_then(|kv| serde_json::from_str::<Record>(&kv.value).ok())
            && r.counts.started_ms != fleet.started_ms
        {
            tracing::warn!(
                id = fleet.id,
                other = r.admin,
                "Another instance uses this instance id (or this one did before a restart): ids must be unique in a fleet."
            );
        }
        lease = fleet.etcd.grant(fleet.lease_seconds).await.map_err(e)?;
        fleet.set_lease(lease);
    }
    let running = fleet.running();
    let control = fleet.control.upgrade();
    let mut traffic = HashMap::new();
    if let Some(control) = &control {
        for (_, sides) in &running {
            for (host, version) in sides {
                let sample = control.metrics.version(host, version).sample();
                traffic.insert(side_key(host, version), sample);
            }
        }
    }
    let record = Record {
        admin: fleet.admin.to_string(),
        revision: fleet.applied(),
        ready: control.as_ref().is_some_and(|c| c.is_ready()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        counts: InstanceCounts {
            id: fleet.id.clone(),
            started_ms: fleet.started_ms,
            seen_ms: now_ms(),
            traffic,
        },
    };
    let value = serde_json::to_string(&record).unwrap_or_default();
    fleet
        .etcd
        .put(&fleet.keys.instance(&fleet.id), &value, lease)
        .await
        .map_err(e)?;
    elect(fleet, lease, &running).await.map_err(e)
}

/// Runs the elections of the rollouts this instance runs, and steps down from the others.
async fn elect(
    fleet: &Fleet,
    lease: i64,
    running: &[(String, Vec<crate::rollout::shared::Side>)],
) -> Result<(), crate::store::etcd::EtcdError> {
    for (canary, _) in running {
        let seat = fleet.seat(canary).borrow().clone();
        if seat.fence.is_some() || seat.driver.as_deref().is_some_and(|d| d != fleet.id) {
            continue;
        }
        let key = fleet.keys.driver(canary);
        let (won, revision, answers) = fleet
            .etcd
            .txn(
                &[Compare::Created(key.clone(), 0)],
                &[Op::Put(key.clone(), fleet.id.clone(), lease)],
                &[Op::Get(key)],
            )
            .await?;
        if won {
            tracing::info!(canary, "Elected to drive the rollout.");
            fleet.update_seat(canary, |s| {
                s.driver = Some(fleet.id.clone());
                s.fence = Some(revision);
            });
            continue;
        }
        let holder = answers
            .first()
            .and_then(|a| a.get("response_range"))
            .map(kvs)
            .transpose()?
            .and_then(|kvs| kvs.into_iter().next());
        if let Some(kv) = holder {
            fleet.update_seat(canary, |s| seat_from_driver(s, fleet, lease, &kv));
        }
    }
    for canary in fleet.seat_names() {
        let fence = fleet.seat(&canary).borrow().fence;
        if let Some(fence) = fence
            && !running.iter().any(|(n, _)| *n == canary)
        {
            // The Canary is gone from the configuration: its state and any command go with
            // the driver's key, fenced as every write of the driver.
            let key = fleet.keys.driver(&canary);
            let mut ops = vec![
                Op::Delete(key.clone()),
                Op::Delete(fleet.keys.state(&canary)),
                Op::Delete(fleet.keys.command(&canary)),
            ];
            // An experiment's counts go with it.
            if let Some(name) = canary.strip_prefix("experiments/") {
                ops.push(Op::DeletePrefix(fleet.keys.tallies(name)));
            }
            fleet
                .etcd
                .txn(&[Compare::Created(key, fence)], &ops, &[])
                .await?;
            fleet.update_seat(&canary, |s| {
                s.fence = None;
                s.driver = None;
            });
            tracing::info!(
                canary,
                "Stepped down: this instance no longer runs the rollout."
            );
        }
    }
    Ok(())
}
