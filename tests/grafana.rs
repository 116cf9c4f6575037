//! deploy/grafana/weir.json: well formed for Grafana's dashboard schema, and every panel's
//! query returns data from a real Prometheus (Debian's) scraping a weir that carries traffic
//! through a rollout. (No Grafana server can be installed here; Grafana runs these queries as
//! they are, with its variables substituted.)

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use support::*;

const DASHBOARD: &str = include_str!("../deploy/grafana/weir.json");

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("deploy/grafana/weir.json is not JSON")
}

/// Every query of every panel (rows hold none).
fn queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn the_dashboard_is_well_formed_for_grafana() {
    let d = dashboard();
    assert!(d["uid"].is_string() && d["title"].is_string());
    assert!(d["schemaVersion"].as_u64() >= Some(36));
    // The datasource is an input, chosen when the dashboard is imported.
    let inputs = d["__inputs"].as_array().unwrap();
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus")
    );
    let mut ids = HashSet::new();
    let mut cells = HashSet::new();
    for p in d["panels"].as_array().unwrap() {
        let id = p["id"].as_u64().expect("a panel without an id");
        assert!(ids.insert(id), "panel id {id} twice");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(
            x + w <= 24 && w > 0 && h > 0,
            "panel {id} does not fit the 24-column grid"
        );
        // Panels do not overlap.
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "panel {id} overlaps another at {cx},{cy}"
                );
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {id}");
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {id}");
            assert!(t["refId"].is_string() && t["expr"].is_string());
        }
    }
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["service", "primary", "canary"]);
    // Every variable a query uses is defined (or is one of Grafana's own).
    for (title, q) in queries(&d) {
        for word in q.split('$').skip(1) {
            let name: String = word
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                vars.contains(&name.as_str()) || name.starts_with("__"),
                "{title}: ${name}"
            );
        }
    }
}

/// A query as Grafana sends it with `$service=shop`, `$primary=v1`, `$canary=v2`.
fn substitute(q: &str) -> String {
    q.replace("$service", "shop")
        .replace("$primary", "v1")
        .replace("$canary", "v2")
        .replace("$__rate_interval", "10s")
}

async fn prometheus_get(prom: std::net::SocketAddr, path_and_query: &str) -> Value {
    let url = format!("http://{prom}{path_and_query}");
    let r = weir::control::call::call(http::Method::GET, &url, None, Duration::from_secs(5))
        .await
        .unwrap();
    serde_json::from_str(&r.body).unwrap_or(Value::Null)
}

fn encode(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_has_data_on_a_real_prometheus() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let config = service_entry("shop", &[("v1", &v1), ("v2", &v2)])
        + "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
" + &shop_canary(
        "interval: 1s
threshold: 5
stepWeight: 10
maxWeight: 50
metrics:
- name: request-success-rate
  interval: 1s
  thresholdRange: {min: 90}",
    );
    let weir = Weir::start(&config).await;
    let prometheus = Prometheus::start(weir.admin()).await;
    let mesh = weir.mesh();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let load = tokio::spawn(async move {
        let c = client();
        let mut i = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            // One request in 50 fails, so that the error panels have errors to show.
            let path = if i.is_multiple_of(50) {
                "/status/503"
            } else {
                "/"
            };
            let _ = send(&c, mesh, "shop", path, &[]).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let d = dashboard();
    let mut missing = queries(&d);
    for _ in 0..60 {
        let mut still = Vec::new();
        for (title, q) in missing {
            let v = prometheus_get(
                prometheus.addr,
                &format!("/api/v1/query?query={}", encode(&substitute(&q))),
            )
            .await;
            let has_data = v["status"] == "success"
                && v["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty());
            assert_ne!(v["status"], "error", "{title}: `{q}`: {v}");
            if !has_data {
                still.push((title, q));
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(missing.is_empty(), "panels without data: {missing:#?}");
    // The variables' queries (Grafana's label_values) find the service and both versions.
    let services = prometheus_get(
        prometheus.addr,
        "/api/v1/label/service/values?match[]=http_requests_total",
    )
    .await;
    assert!(
        services["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "shop"),
        "{services}"
    );
    let versions = prometheus_get(
        prometheus.addr,
        &format!(
            "/api/v1/label/version/values?match[]={}",
            encode("http_requests_total{service=\"shop\"}")
        ),
    )
    .await;
    for v in ["v1", "v2"] {
        assert!(
            versions["data"].as_array().unwrap().iter().any(|x| x == v),
            "{versions}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
}
