//! The dashboard on the admin port: `GET /` serves a page (its script and style embedded in the
//! binary: no CDN, works offline) that polls `GET /dashboard/data` once a second and draws it.
//! The data is what the other admin views say (rollouts, experiments, clusters, faults, the
//! fleet), the access-control policies in force with their decisions, the
//! routes with the weights in force, and each version's recent time series. The page's buttons
//! send the same `POST`s as the command line, with the admin token when one is set.

use serde_json::{Value, json};

use super::series::Series;
use super::views::{access_json, clusters_json, faults_json, prune};
use crate::config::Spec;
use crate::config::changes::words;
use crate::control::Control;
use crate::fleet::{Fleet, fleet_json};

/// The page.
pub(super) const INDEX: &str = include_str!("dashboard/index.html");
/// Its script.
pub(super) const APP: &str = include_str!("dashboard/app.js");
/// Its style.
pub(super) const STYLE: &str = include_str!("dashboard/style.css");

/// Everything the page draws.
pub(super) async fn data(control: &Control, fleet: Option<&Fleet>, series: &Series) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let fleet = match fleet {
        Some(f) => Some(fleet_json(f).await.unwrap_or_else(|e| json!({"error": e}))),
        None => None,
    };
    let canaries = control
        .rollouts
        .json(None)
        .and_then(|v| v.get("canaries").cloned())
        .unwrap_or_else(|| json!([]));
    let experiments = control
        .experiments
        .json(None)
        .and_then(|v| v.get("experiments").cloned())
        .unwrap_or_else(|| json!([]));
    json!({
        "now": now,
        "generation": control.generation(),
        "ready": control.is_ready(),
        "services": services(control),
        "versions": series.json(),
        "canaries": canaries,
        "experiments": experiments,
        "access": access_json(control),
        "clusters": clusters_json(control),
        "faults": faults_json(control),
        "fleet": fleet,
    })
}

/// Every VirtualService's routes with the weights in force (a rollout's included).
fn services(control: &Control) -> Value {
    let snap = control.snapshot();
    let mut out = Vec::new();
    for r in &snap.resources.resources {
        let Spec::VirtualService(vs) = &r.spec else {
            continue;
        };
        let routes: Vec<Value> = vs
            .http
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let destinations: Vec<Value> = route
                    .route
                    .iter()
                    .map(|d| {
                        json!({
                            "host": d.destination.host.value,
                            "subset": d.destination.subset.as_ref().map(|s| &s.value),
                            "weight": d.weight,
                        })
                    })
                    .collect();
                let matches: Vec<String> = route
                    .matches
                    .iter()
                    .map(|m| words(&prune(serde_json::to_value(m).unwrap_or(Value::Null))))
                    .collect();
                json!({
                    "name": route.name.clone().unwrap_or_else(|| format!("{}/{i}", r.name())),
                    "match": matches.join(" or "),
                    "destinations": destinations,
                })
            })
            .collect();
        out.push(json!({
            "host": vs.hosts.join(", "),
            "virtualService": r.name(),
            "routes": routes,
        }));
    }
    Value::Array(out)
}
