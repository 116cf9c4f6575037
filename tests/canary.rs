//! Progressive delivery end to end: a Canary over a VirtualService's subsets, live traffic,
//! builtin checks; a healthy canary is promoted step by step, a faulty one rolled back; operator
//! commands.
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::*;

fn config(v1: &Backend, v2: &Backend, steps: &str) -> String {
    service_entry("api-service", &[("v1", v1), ("v2", v2)])
        + &destination_rule("api-service", &["v1", "v2"])
        + &format!(
            "apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: api-service}}
spec:
  hosts: [api-service]
  http:
  - route:
    - destination: {{host: api-service, subset: v1}}
      weight: 90
    - destination: {{host: api-service, subset: v2}}
      weight: 10
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: api-service}}
spec:
  targetRef: {{apiVersion: networking.istio.io/v1beta1, kind: VirtualService, name: api-service}}
  primarySubset: v1
  canarySubset: v2
  analysis:
    interval: 1s
    threshold: 2
{steps}
    metrics:
    - name: request-success-rate
      interval: 1s
      thresholdRange: {{min: 99}}
"
        )
}

/// Sends requests to `path` until dropped, about 200 a second.
struct Load(Arc<AtomicBool>);

impl Load {
    fn start(weir: &Weir, path: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), weir.mesh());
        tokio::spawn(async move {
            let c = client();
            while !flag.load(Ordering::Relaxed) {
                let _ = send(&c, addr, "api-service", path, &[]).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Load(stop)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn status(weir: &Weir) -> serde_json::Value {
    let (s, _, body) = get(weir.admin(), "admin", "/canaries/api-service", &[]).await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (up to 20 s) for the canary to reach `phase`; returns its status.
async fn wait_for(weir: &Weir, phase: &str) -> serde_json::Value {
    for _ in 0..200 {
        let s = status(weir).await;
        if s["phase"] == phase {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reached {phase}: {:#}", status(weir).await);
}

/// Which version answers 100 requests.
async fn shares(weir: &Weir) -> (usize, usize) {
    let c = client();
    let mut out = (0, 0);
    for _ in 0..100 {
        let (_, h, _) = send(&c, weir.mesh(), "api-service", "/", &[]).await;
        match backend_of(&h).as_str() {
            "v1" => out.0 += 1,
            _ => out.1 += 1,
        }
    }
    out
}

#[tokio::test]
async fn a_healthy_canary_is_promoted_step_by_step() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let weir = Weir::start(&config(&v1, &v2, "    stepWeight: 25\n    maxWeight: 50")).await;
    let _load = Load::start(&weir, "/");
    let done = wait_for(&weir, "Succeeded").await;
    assert_eq!(done["canaryWeight"], 100);
    assert_eq!(done["failedChecks"], 0);
    let events: Vec<String> = done["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "Initialization done!",
        "New revision detected!",
        "Advance api-service canary weight 25",
        "Advance api-service canary weight 50",
        "Promotion completed!",
    ] {
        assert!(
            events.iter().any(|e| e.starts_with(expected)),
            "{expected} in {events:#?}"
        );
    }
    // All traffic on v2 now, and the routing says so.
    assert_eq!(shares(&weir).await, (0, 100));
    let m = weir.metrics().await;
    assert_eq!(
        metric_value(&m, "weir_canary_weight{name=\"api-service\"}"),
        Some(100.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "weir_canary_status{name=\"api-service\"}"),
        Some(1.0)
    );
    let passed = "weir_canary_checks_total{name=\"api-service\",metric=\"request-success-rate\",result=\"pass\"}";
    assert!(metric_value(&m, passed).unwrap() >= 2.0, "{m}");
}

#[tokio::test]
async fn a_faulty_canary_is_rolled_back() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let weir = Weir::start(&config(&v1, &v2, "    stepWeight: 20\n    maxWeight: 60")).await;
    // v2 answers every /fail/v2 with 500; v1 with 200.
    let _load = Load::start(&weir, "/fail/v2");
    let failed = wait_for(&weir, "Failed").await;
    assert_eq!(failed["canaryWeight"], 0);
    assert_eq!(failed["failedChecks"], 2);
    let halt = failed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .find(|m| m.starts_with("Halt api-service advancement"))
        .unwrap()
        .to_owned();
    assert!(
        halt.contains("request-success-rate 0.00 (range >= 99"),
        "{halt}"
    );
    assert_eq!(shares(&weir).await, (100, 0));
    let m = weir.metrics().await;
    assert_eq!(
        metric_value(&m, "weir_canary_status{name=\"api-service\"}"),
        Some(2.0)
    );
    // Without the Canary, the VirtualService's own weights (90/10) are back at once.
    let cfg = config(&v1, &v2, "    stepWeight: 20\n    maxWeight: 60");
    let without = &cfg[..cfg.find("---\napiVersion: flagger.app").unwrap()];
    assert!(weir.rewrite(without).await);
    let (_, on_v2) = shares(&weir).await;
    assert!((1..=30).contains(&on_v2), "v2 got {on_v2} of 100");
    let (s, _, _) = get(weir.admin(), "admin", "/canaries/api-service", &[]).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn operators_can_pause_promote_and_roll_back() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let weir = Weir::start(&config(&v1, &v2, "    stepWeight: 10\n    maxWeight: 90")).await;
    let _load = Load::start(&weir, "/");
    wait_for(&weir, "Progressing").await;
    let post = |path: &'static str| {
        let admin = weir.admin();
        async move { weir::admin::call(admin, "POST", path).await.unwrap() }
    };
    assert_eq!(post("/canaries/api-service/pause").await.0, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = status(&weir).await["canaryWeight"].clone();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let s = status(&weir).await;
    assert_eq!(s["canaryWeight"], held, "a paused rollout took a step");
    assert_eq!(s["status"]["paused"], true);
    assert_eq!(post("/canaries/api-service/rollback").await.0, 200);
    let s = wait_for(&weir, "Failed").await;
    assert_eq!(s["canaryWeight"], 0);
    assert_eq!(shares(&weir).await, (100, 0));
    assert_eq!(post("/canaries/api-service/promote").await.0, 200);
    wait_for(&weir, "Succeeded").await;
    assert_eq!(shares(&weir).await, (0, 100));
    assert_eq!(post("/canaries/api-service/dance").await.0, 404);
    assert_eq!(post("/canaries/nope/promote").await.0, 404);
    let (s, _, list) = get(weir.admin(), "admin", "/canaries", &[]).await;
    assert_eq!(s, 200);
    assert!(
        list.contains("\"name\":\"api-service\"") || list.contains("\"name\": \"api-service\""),
        "{list}"
    );
}
