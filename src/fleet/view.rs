//! `GET /fleet`: the live instances (each one's id, admin address, the store revision it
//! serves, when it last wrote its record) and, per Canary, the instance driving it.

use serde_json::{Value, json};

use super::heartbeat::Record;
use super::{Fleet, now_ms};
use crate::rollout::shared::Shared;

/// The fleet as this instance sees it; `Err` if the store cannot be read.
pub(crate) async fn fleet_json(fleet: &Fleet) -> Result<Value, String> {
    let (revision, kvs) = fleet
        .etcd
        .range_prefix(&fleet.keys.instances())
        .await
        .map_err(|e| e.to_string())?;
    let now = now_ms();
    let mut instances: Vec<Value> = kvs
        .iter()
        .filter_map(|kv| {
            let r: Record = serde_json::from_str(&kv.value).ok()?;
            Some(json!({
                "id": r.counts.id,
                "admin": r.admin,
                "revision": r.revision,
                "ready": r.ready,
                "version": r.version,
                "startedMs": r.counts.started_ms,
                "lastSeenMs": r.counts.seen_ms,
                "lastSeenAgoMs": now.saturating_sub(r.counts.seen_ms),
                "self": r.counts.id == fleet.id,
            }))
        })
        .collect();
    instances.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let canaries: Vec<Value> = fleet
        .running()
        .into_iter()
        .map(|(name, _)| {
            let seat = fleet.seat(&name).borrow().clone();
            json!({"name": name, "driver": seat.driver, "drivenHere": seat.fence.is_some()})
        })
        .collect();
    Ok(json!({
        "store": fleet.url.to_string(),
        "instance": fleet.id,
        "connected": fleet.connected(),
        "storeRevision": revision,
        "appliedRevision": fleet.applied(),
        "instances": instances,
        "canaries": canaries,
    }))
}
