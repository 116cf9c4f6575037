//! `GET /fleet`: the live instances (each one's id, admin address, the store revision it
//! serves, when it last wrote its record) and, per Canary, the instance driving it (per
//! Experiment, the instance judging it); and
//! `GET /fleet/targets`, the same instances as Prometheus' HTTP service discovery reads them.

use serde_json::{Value, json};

use super::member::{Fleet, now_ms};
use super::record::Record;
use crate::rollout::shared::Shared;

/// The live instances' records, by id, and the store's revision.
async fn records(fleet: &Fleet) -> Result<(i64, Vec<Record>), String> {
    let (revision, kvs) = fleet
        .etcd
        .range_prefix(&fleet.keys.instances())
        .await
        .map_err(|e| e.to_string())?;
    let mut records: Vec<Record> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_str(&kv.value).ok())
        .collect();
    records.sort_by(|a, b| a.counts.id.cmp(&b.counts.id));
    Ok((revision, records))
}

/// Prometheus' HTTP service discovery: one target group per live instance (its admin address,
/// labelled with its id).
pub(crate) async fn targets_json(fleet: &Fleet) -> Result<Value, String> {
    let (_, records) = records(fleet).await?;
    Ok(Value::Array(
        records
            .iter()
            .map(|r| json!({"targets": [r.admin], "labels": {"weir_instance": r.counts.id}}))
            .collect(),
    ))
}

/// The fleet as this instance sees it; `Err` if the store cannot be read.
pub(crate) async fn fleet_json(fleet: &Fleet) -> Result<Value, String> {
    let (revision, records) = records(fleet).await?;
    let now = now_ms();
    let instances: Vec<Value> = records
        .into_iter()
        .map(|r| {
            json!({
                "id": r.counts.id,
                "admin": r.admin,
                "revision": r.revision,
                "ready": r.ready,
                "version": r.version,
                "startedMs": r.counts.started_ms,
                "lastSeenMs": r.counts.seen_ms,
                "lastSeenAgoMs": now.saturating_sub(r.counts.seen_ms),
                "self": r.counts.id == fleet.id,
            })
        })
        .collect();
    let (mut canaries, mut experiments) = (Vec::new(), Vec::new());
    for (name, _) in fleet.running() {
        let seat = fleet.seat(&name).borrow().clone();
        match name.strip_prefix("experiments/") {
            Some(x) => experiments
                .push(json!({"name": x, "judge": seat.driver, "judgedHere": seat.fence.is_some()})),
            None => canaries.push(
                json!({"name": name, "driver": seat.driver, "drivenHere": seat.fence.is_some()}),
            ),
        }
    }
    Ok(json!({
        "store": fleet.url.to_string(),
        "instance": fleet.id,
        "connected": fleet.connected(),
        "storeRevision": revision,
        "appliedRevision": fleet.applied(),
        "instances": instances,
        "canaries": canaries,
        "experiments": experiments,
    }))
}
