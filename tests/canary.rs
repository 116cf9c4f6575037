//! Progressive delivery end to end: a Canary over a VirtualService's subsets, live traffic,
//! builtin checks; a healthy canary is promoted step by step, a faulty one rolled back; operator
//! commands; webhooks; A/B testing; a rollout that survives a restart.
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

fn config(v1: &Backend, v2: &Backend, analysis: &str) -> String {
    config_weighted(v1, v2, 10, analysis)
}

/// The VirtualService gives v2 `v2_weight` of its own; the Canary's `analysis` block is
/// completed with a 1 s interval, threshold 2 and a success-rate check.
fn config_weighted(v1: &Backend, v2: &Backend, v2_weight: u32, analysis: &str) -> String {
    let v1_weight = 100 - v2_weight;
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
      weight: {v1_weight}
    - destination: {{host: api-service, subset: v2}}
      weight: {v2_weight}
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
{analysis}
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
        Load::with_headers(weir, path, &[])
    }

    fn with_headers(weir: &Weir, path: &'static str, headers: &'static [(&str, &str)]) -> Load {
        Load::run(weir, "api-service", path, headers)
    }

    fn with_host(weir: &Weir, host: &'static str) -> Load {
        Load::run(weir, host, "/", &[])
    }

    fn run(
        weir: &Weir,
        host: &'static str,
        path: &'static str,
        headers: &'static [(&str, &str)],
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, addr) = (stop.clone(), weir.mesh());
        tokio::spawn(async move {
            let c = client();
            while !flag.load(Ordering::Relaxed) {
                let _ = send(&c, addr, host, path, headers).await;
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
    status_of(weir, "api-service").await
}

async fn status_of(weir: &Weir, name: &str) -> serde_json::Value {
    let (s, _, body) = get(weir.admin(), "admin", &format!("/canaries/{name}"), &[]).await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits (up to 20 s) for the canary to reach `phase`; returns its status.
async fn wait_for(weir: &Weir, phase: &str) -> serde_json::Value {
    wait_for_named(weir, "api-service", phase).await
}

async fn wait_for_named(weir: &Weir, name: &str, phase: &str) -> serde_json::Value {
    for _ in 0..200 {
        let s = status_of(weir, name).await;
        if s["phase"] == phase {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reached {phase}: {:#}", status_of(weir, name).await);
}

/// Which version answers 100 requests.
async fn shares(weir: &Weir) -> (usize, usize) {
    shares_with(weir, &[]).await
}

/// Which version answers 100 requests with `headers`.
async fn shares_with(weir: &Weir, headers: &[(&str, &str)]) -> (usize, usize) {
    let c = client();
    let mut out = (0, 0);
    for _ in 0..100 {
        let (_, h, _) = send(&c, weir.mesh(), "api-service", "/", headers).await;
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

/// A webhook receiver: answers each path with the status set for it (200 by default) and
/// records every call's path and JSON payload.
#[derive(Clone, Default)]
struct Hooks {
    answers: Arc<Mutex<HashMap<String, u16>>>,
    calls: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    addr: Option<std::net::SocketAddr>,
}

impl Hooks {
    async fn start() -> Hooks {
        use http_body_util::BodyExt;
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hooks = Hooks {
            addr: Some(socket.local_addr().unwrap()),
            ..Hooks::default()
        };
        let me = hooks.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = socket.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let me = me.clone();
                            async move {
                                let path = req.uri().path().to_owned();
                                let body = req.into_body().collect().await?.to_bytes();
                                let json = serde_json::from_slice(&body)
                                    .unwrap_or(serde_json::Value::Null);
                                me.calls.lock().unwrap().push((path.clone(), json));
                                let status = *me.answers.lock().unwrap().get(&path).unwrap_or(&200);
                                let mut resp = http::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::new(),
                                ));
                                *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                                Ok::<_, hyper::Error>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        hooks
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.unwrap())
    }

    fn answer(&self, path: &str, status: u16) {
        self.answers.lock().unwrap().insert(path.to_owned(), status);
    }

    fn calls_to(&self, path: &str) -> Vec<serde_json::Value> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn event_messages(status: &serde_json::Value) -> Vec<String> {
    status["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn webhooks_gate_and_follow_the_rollout() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let hooks = Hooks::start().await;
    hooks.answer("/confirm-rollout", 403);
    hooks.answer("/confirm-promotion", 403);
    let webhooks = format!(
        "    stepWeight: 50
    maxWeight: 50
    webhooks:
    - {{name: gate, type: confirm-rollout, url: '{}'}}
    - {{name: acceptance, type: pre-rollout, url: '{}', timeout: 5s, metadata: {{cmd: smoke}}}}
    - {{name: load, url: '{}'}}
    - {{name: promote-gate, type: confirm-promotion, url: '{}'}}
    - {{name: done, type: post-rollout, url: '{}'}}
    - {{name: feed, type: event, url: '{}'}}",
        hooks.url("/confirm-rollout"),
        hooks.url("/pre"),
        hooks.url("/rollout"),
        hooks.url("/confirm-promotion"),
        hooks.url("/post"),
        hooks.url("/event"),
    );
    let weir = Weir::start(&config_weighted(&v1, &v2, 0, &webhooks)).await;
    let _load = Load::start(&weir, "/");
    // The confirm-rollout gate holds the rollout: no traffic reaches the canary.
    let waiting = wait_for(&weir, "Waiting").await;
    assert_eq!(waiting["canaryWeight"], 0);
    assert!(hooks.calls_to("/pre").is_empty());
    hooks.answer("/confirm-rollout", 200);
    // Analysis runs at 50 %, then promotion waits for its gate while checks keep running.
    let held = wait_for(&weir, "WaitingPromotion").await;
    assert_eq!(held["canaryWeight"], 50);
    let pre = hooks.calls_to("/pre");
    assert_eq!(pre.len(), 1, "{pre:?}");
    assert_eq!(pre[0]["name"], "api-service");
    assert_eq!(pre[0]["namespace"], "default");
    assert_eq!(pre[0]["phase"], "Progressing");
    assert_eq!(pre[0]["metadata"]["cmd"], "smoke");
    assert!(pre[0]["checksum"].as_str().is_some_and(|c| !c.is_empty()));
    hooks.answer("/confirm-promotion", 200);
    let done = wait_for(&weir, "Succeeded").await;
    assert_eq!(done["canaryWeight"], 100);
    assert!(!hooks.calls_to("/rollout").is_empty());
    // Post-rollout and event webhooks are sent off the controller's path: give them a moment.
    for _ in 0..50 {
        if !hooks.calls_to("/post").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post = hooks.calls_to("/post");
    assert_eq!(post.len(), 1);
    assert_eq!(post[0]["phase"], "Succeeded");
    let events: Vec<String> = hooks
        .calls_to("/event")
        .iter()
        .map(|e| e["metadata"]["eventMessage"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("New revision detected!")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("Halt api-service advancement: waiting for approval")),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_failing_rollout_webhook_rolls_back() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let hooks = Hooks::start().await;
    hooks.answer("/rollout", 500);
    let analysis = format!(
        "    stepWeight: 10
    webhooks:
    - {{name: tests, type: rollout, url: '{}', retries: 1}}",
        hooks.url("/rollout")
    );
    let weir = Weir::start(&config_weighted(&v1, &v2, 0, &analysis)).await;
    let _load = Load::start(&weir, "/");
    let failed = wait_for(&weir, "Failed").await;
    assert_eq!(failed["failedChecks"], 2);
    let events = event_messages(&failed);
    assert!(
        events.iter().any(|e| e
            .contains("rollout check failed: webhook tests answered 500 (failed checks 1 of 2)")),
        "{events:#?}"
    );
    // One call and one retry per failed check.
    assert_eq!(hooks.calls_to("/rollout").len(), 4);
    assert_eq!(shares(&weir).await, (100, 0));
}

#[tokio::test]
async fn ab_testing_sends_matching_requests_to_the_canary() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    // Iterations enough that the routing checks below finish while it progresses, even on
    // a loaded machine.
    let analysis = "    iterations: 8
    match:
    - headers:
        x-canary: {exact: insider}
    - headers:
        cookie: {regex: '^(.*?;)?(type=insider)(;.*)?$'}";
    let weir = Weir::start(&config_weighted(&v1, &v2, 0, analysis)).await;
    let _load = Load::with_headers(&weir, "/", &[("x-canary", "insider")]);
    let s = wait_for(&weir, "Progressing").await;
    assert_eq!(s["strategy"], "AbTesting");
    // Deterministic routing: only matching requests reach the canary.
    assert_eq!(
        shares_with(&weir, &[("x-canary", "insider")]).await,
        (0, 100)
    );
    assert_eq!(
        shares_with(&weir, &[("X-Canary", "insider")]).await,
        (0, 100)
    );
    assert_eq!(
        shares_with(&weir, &[("x-canary", "Insider")]).await,
        (100, 0)
    );
    assert_eq!(
        shares_with(&weir, &[("cookie", "type=insider")]).await,
        (0, 100)
    );
    assert_eq!(
        shares_with(&weir, &[("cookie", "a=b;type=insider")]).await,
        (0, 100)
    );
    // The regex trap: a space after `;` (as browsers send) does not match.
    assert_eq!(
        shares_with(&weir, &[("cookie", "a=b; type=insider")]).await,
        (100, 0)
    );
    assert_eq!(shares(&weir).await, (100, 0));
    let done = wait_for(&weir, "Succeeded").await;
    assert_eq!(done["iterations"], 8);
    let events = event_messages(&done);
    for k in 1..=8 {
        let e = format!("Advance api-service canary iteration {k}/8");
        assert!(events.contains(&e), "{e} in {events:#?}");
    }
    assert_eq!(shares(&weir).await, (0, 100));
}

#[tokio::test]
async fn a_rollout_resumes_at_the_same_step_after_a_restart() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let state = scratch_dir();
    let cfg = config_weighted(&v1, &v2, 0, "    stepWeight: 20\n    maxWeight: 80");
    let weir = Weir::start_with_state(&cfg, Some(state.clone())).await;
    let _load = Load::start(&weir, "/");
    wait_for(&weir, "Progressing").await;
    assert_eq!(
        weir::admin::call(weir.admin(), "POST", "/canaries/api-service/pause")
            .await
            .unwrap()
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = status(&weir).await;
    let weight = before["canaryWeight"].as_u64().unwrap();
    assert!((20..=80).contains(&weight), "{before:#}");
    let file = state.join("canary-api-service.json");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(saved["status"]["canaryWeight"], weight);
    drop(_load);

    let weir = weir.restart().await;
    // The first config served after the restart already has the kept weights.
    let after = status(&weir).await;
    assert_eq!(after["canaryWeight"], weight);
    assert_eq!(after["phase"], "Progressing");
    assert_eq!(after["status"]["paused"], true);
    assert_eq!(event_messages(&after), event_messages(&before));
    let (_, on_v2) = shares(&weir).await;
    assert!(
        (1..=60).contains(&on_v2),
        "v2 got {on_v2} of 100 at weight {weight}"
    );
    // It carries on from there.
    let _load = Load::start(&weir, "/");
    weir::admin::call(weir.admin(), "POST", "/canaries/api-service/resume")
        .await
        .unwrap();
    let done = wait_for(&weir, "Succeeded").await;
    let advances: Vec<String> = event_messages(&done)
        .into_iter()
        .filter(|e| e.starts_with("Advance"))
        .collect();
    assert_eq!(advances.len(), 4, "each step taken once: {advances:#?}");
    // Without the Canary its state is forgotten.
    let without = &cfg[..cfg.find("---\napiVersion: flagger.app").unwrap()];
    assert!(weir.rewrite(without).await);
    assert!(!file.exists());
}

/// Runs `weir canary ARGS --admin ADDR`; returns success and the output.
async fn cli(weir: &Weir, args: &[&str]) -> (bool, String) {
    let admin = weir.admin().to_string();
    let tail = ["--admin", admin.as_str()];
    let out = weir_cli(["canary"].iter().chain(args).chain(&tail).copied()).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test]
async fn the_cli_lists_shows_watches_and_controls_rollouts() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let weir = Weir::start(&config(&v1, &v2, "    stepWeight: 10\n    maxWeight: 90")).await;
    let _load = Load::start(&weir, "/");
    wait_for(&weir, "Progressing").await;
    let (ok, list) = cli(&weir, &["list"]).await;
    assert!(ok, "{list}");
    assert!(list.starts_with("NAME"), "{list}");
    assert!(
        list.lines().nth(1).unwrap().starts_with("api-service "),
        "{list}"
    );
    let (ok, out) = cli(&weir, &["pause", "api-service"]).await;
    assert!(ok && out.contains("pause sent"), "{out}");
    let (ok, status) = cli(&weir, &["status", "api-service"]).await;
    assert!(ok, "{status}");
    assert!(status.contains("Canary strategy): v1 -> v2"), "{status}");
    assert!(status.contains("PAUSED"), "{status}");
    assert!(
        status.contains("Advance api-service canary weight 10"),
        "{status}"
    );
    // watch follows until the rollout ends: a rollback while it watches ends it with 1.
    let admin = weir.admin();
    let rollback = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        weir::admin::call(admin, "POST", "/canaries/api-service/rollback").await
    });
    let (ok, watched) = cli(&weir, &["watch", "api-service"]).await;
    assert!(!ok, "{watched}");
    assert!(
        watched.contains("Rolling back api-service by an operator"),
        "{watched}"
    );
    assert!(watched.contains("Failed"), "{watched}");
    assert_eq!(rollback.await.unwrap().unwrap().0, 200);
    let (ok, out) = cli(&weir, &["promote", "nope"]).await;
    assert!(!ok && out.contains("no such canary: nope"), "{out}");
}

/// What clients saw of a release: when the canary first failed, how many 5xx they got.
#[derive(Default)]
struct Seen {
    first_error: Option<std::time::Instant>,
    errors: u64,
    canary_after_rollback: u64,
}

/// The scenario: a canary answering 20 % errors, 100 requests a second (open loop),
/// interval 1 s, threshold 3, stepWeight 10, with `metrics`. Returns the seconds from the
/// first error a client saw to the rollback, and the errors clients saw.
async fn rollback_figures(metrics: &str) -> (f64, u64) {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let cfg = service_entry("api-service", &[("v1", &v1), ("v2", &v2)])
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
      weight: 100
    - destination: {{host: api-service, subset: v2}}
      weight: 0
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
    threshold: 3
    stepWeight: 10
    metrics:
{metrics}
"
        );
    let weir = Weir::start(&cfg).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let rolled_back = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (seen, rolled_back, stop, addr) =
            (seen.clone(), rolled_back.clone(), stop.clone(), weir.mesh());
        tokio::spawn(async move {
            let c = client();
            let mut every = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::Relaxed) {
                every.tick().await;
                let (c, seen, rolled_back) = (c.clone(), seen.clone(), rolled_back.clone());
                tokio::spawn(async move {
                    let (s, h, _) = send(&c, addr, "api-service", "/fail-every/v2/5", &[]).await;
                    let mut seen = seen.lock().unwrap();
                    if s.is_server_error() {
                        seen.errors += 1;
                        seen.first_error.get_or_insert_with(std::time::Instant::now);
                    }
                    if backend_of(&h) == "v2" && rolled_back.load(Ordering::Relaxed) {
                        seen.canary_after_rollback += 1;
                    }
                });
            }
        })
    };
    let failed = wait_for(&weir, "Failed").await;
    let at = std::time::Instant::now();
    // Requests already on their way may still land on v2; afterwards none do.
    tokio::time::sleep(Duration::from_millis(200)).await;
    rolled_back.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(failed["failedChecks"], 3);
    let rollback_time = failed["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message"].as_str().unwrap().starts_with("Rolling back"))
        .unwrap()["time"]
        .as_f64()
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.canary_after_rollback, 0,
        "the canary got traffic after the rollback"
    );
    // Both clocks are read now: the wall clock of the event, the monotonic one of the error.
    let wall_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let first_error_wall = wall_now - seen.first_error.unwrap().elapsed().as_secs_f64();
    let _ = at;
    (rollback_time - first_error_wall, seen.errors)
}

#[tokio::test]
async fn a_canary_with_a_fifth_of_errors_is_rolled_back_by_the_success_rate() {
    let (secs, errors) = rollback_figures(
        "    - name: request-success-rate
      thresholdRange: {min: 99}",
    )
    .await;
    println!(
        "request-success-rate: rollback {secs:.2} s after the first error; {errors} errors seen"
    );
}

#[tokio::test]
async fn a_canary_with_a_fifth_of_errors_is_rolled_back_by_the_comparison_with_the_primary() {
    let (secs, errors) = rollback_figures(
        "    - name: error-rate-vs-primary
      confidence: 99",
    )
    .await;
    println!(
        "error-rate-vs-primary: rollback {secs:.2} s after the first error; {errors} errors seen"
    );
}

#[tokio::test]
async fn a_canary_as_good_as_a_flawed_primary_passes_the_comparison() {
    // Both versions answer 500 to one request in 20: a fixed floor of 99 % would roll the canary
    // back; compared with the primary, it is no worse, and it is promoted.
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let analysis = "    stepWeight: 25
    maxWeight: 50
    metrics:
    - name: error-rate-vs-primary
      confidence: 99";
    let cfg = config_weighted(&v1, &v2, 0, analysis).replace(
        "    metrics:\n    - name: request-success-rate\n      interval: 1s\n      thresholdRange: {min: 99}\n",
        "",
    );
    assert!(cfg.contains("error-rate-vs-primary") && !cfg.contains("request-success-rate"));
    let weir = Weir::start(&cfg).await;
    let _load = Load::start(&weir, "/fail-every/all/20");
    let done = wait_for(&weir, "Succeeded").await;
    assert_eq!(done["failedChecks"], 0, "{:#?}", event_messages(&done));
    // The primary's errors were seen and weighed.
    let checks = &done["status"]["lastChecks"];
    let message = checks[0]["message"].as_str().unwrap();
    assert!(
        message.contains("vs primary ") && !message.contains("vs primary 0.00%"),
        "{checks:#}"
    );
    assert_eq!(checks[0]["result"], "pass");
}

#[tokio::test]
async fn blue_green_with_mirroring_analyses_copies_then_switches_at_once() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let analysis = "    iterations: 3
    mirror: true
    mirrorWeight: 100";
    let weir = Weir::start(&config_weighted(&v1, &v2, 0, analysis)).await;
    let _load = Load::start(&weir, "/");
    let s = wait_for(&weir, "Progressing").await;
    assert_eq!(s["strategy"], "BlueGreen");
    for _ in 0..50 {
        if status(&weir).await["status"]["mirror"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Users get v1 only while v2 sees copies of their requests.
    let seen_by_v2 = v2.hits();
    assert_eq!(shares(&weir).await, (100, 0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(v2.hits() >= seen_by_v2 + 100, "v2 saw no copies");
    let done = wait_for(&weir, "Succeeded").await;
    let events = event_messages(&done);
    assert!(
        events.contains(&"Advance api-service canary iteration 3/3".to_owned()),
        "{events:#?}"
    );
    assert!(events.contains(&"Stop traffic mirroring.".to_owned()));
    // The checks judged the mirrored traffic (v2 had no other).
    let checks = &done["status"]["lastChecks"];
    assert_eq!(checks[0]["result"], "pass", "{checks:#}");
    assert_eq!(shares(&weir).await, (0, 100));
}

/// The Flagger tutorial's Canary (istio-progressive-delivery.md), verbatim.
const PODINFO_CANARY: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  # deployment reference
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  # the maximum time in seconds for the canary deployment
  # to make progress before it is rollback (default 600s)
  progressDeadlineSeconds: 60
  # HPA reference (optional)
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: podinfo
  service:
    # service port number
    port: 9898
    # container port number or name (optional)
    targetPort: 9898
    # Istio gateways (optional)
    gateways:
    - istio-system/public-gateway
    # Istio virtual service host names (optional)
    hosts:
    - app.example.com
    # Istio traffic policy (optional)
    trafficPolicy:
      tls:
        # use ISTIO_MUTUAL when mTLS is enabled
        mode: DISABLE
    # Istio retry policy (optional)
    retries:
      attempts: 3
      perTryTimeout: 1s
      retryOn: \"gateway-error,connect-failure,refused-stream\"
  analysis:
    # schedule interval (default 60s)
    interval: 1m
    # max number of failed metric checks before rollback
    threshold: 5
    # max traffic percentage routed to canary
    # percentage (0-100)
    maxWeight: 50
    # canary increment step
    # percentage (0-100)
    stepWeight: 10
    metrics:
    - name: request-success-rate
      # minimum req success rate (non 5xx responses)
      # percentage (0-100)
      thresholdRange:
        min: 99
      interval: 1m
    - name: request-duration
      # maximum req duration P99
      # milliseconds
      thresholdRange:
        max: 500
      interval: 30s
    # testing (optional)
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
        timeout: 30s
        metadata:
          type: bash
          cmd: \"curl -sd 'test' http://podinfo-canary:9898/token | grep token\"
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 5s
        metadata:
          cmd: \"hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/\"
";

/// The tutorial's world on loopback: podinfo-primary and podinfo-canary, and the load tester
/// (a webhook receiver) as mesh services.
fn podinfo(primary: &Backend, canary: &Backend, tester: &Hooks, canary_yaml: &str) -> String {
    let tester_port = tester.addr.unwrap().port();
    service_entry("podinfo-primary", &[("primary", primary)])
        + &service_entry("podinfo-canary", &[("canary", canary)])
        + &loopback_service("flagger-loadtester.test", "HTTP", &[tester_port])
        + canary_yaml
}

#[tokio::test]
async fn the_flagger_tutorial_canary_runs_on_a_deployment_target() {
    let primary = Backend::start("podinfo-6.0.0").await;
    let canary = Backend::start("podinfo-6.0.1").await;
    let tester = Hooks::start().await;
    // Verbatim, it loads: weir writes the apex routing Flagger would.
    let weir = Weir::start(&podinfo(&primary, &canary, &tester, PODINFO_CANARY)).await;
    let (_, _, config) = get(weir.admin(), "admin", "/config", &[]).await;
    assert!(config.contains("weir.io/generated-by"), "{config}");
    for host in ["podinfo", "app.example.com"] {
        let (s, h, _) = send(&client(), weir.mesh(), host, "/", &[]).await;
        assert_eq!(
            (s.as_u16(), backend_of(&h)),
            (200, "podinfo-6.0.0".to_owned())
        );
    }
    // Scaled in time (Flagger's docs allow it: intervals of 1 s), it runs to promotion.
    let fast = PODINFO_CANARY
        .replace("interval: 1m", "interval: 1s")
        .replace("interval: 30s", "interval: 1s");
    assert!(
        weir.rewrite(&podinfo(&primary, &canary, &tester, &fast))
            .await
    );
    let load = Load::with_host(&weir, "podinfo");
    let done = wait_for_named(&weir, "podinfo", "Succeeded").await;
    let events = event_messages(&done);
    for w in [10, 20, 30, 40, 50] {
        let e = format!("Advance podinfo canary weight {w}");
        assert!(events.contains(&e), "{e} in {events:#?}");
    }
    assert!(!events.iter().any(|e| e.starts_with("Halt")), "{events:#?}");
    // The webhooks reached the load tester through the mesh, with Flagger's payload.
    let calls = tester.calls_to("/");
    assert!(calls.len() >= 5, "{calls:?}");
    assert_eq!(calls[0]["name"], "podinfo");
    assert_eq!(calls[0]["namespace"], "test");
    assert_eq!(calls[0]["metadata"]["type"], "bash");
    // Promoted: all traffic on podinfo-canary, until the new version is deployed as the primary.
    assert_eq!(done["canaryWeight"], 100);
    assert_eq!(answered_by(&weir, "podinfo").await, "podinfo-6.0.1");
    drop(load);
    let updated = Backend::start("podinfo-6.0.1-primary").await;
    assert!(
        weir.rewrite(&podinfo(&updated, &canary, &tester, &fast))
            .await
    );
    for _ in 0..50 {
        if status_of(&weir, "podinfo").await["canaryWeight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = status_of(&weir, "podinfo").await;
    assert_eq!(
        (after["phase"].as_str(), after["canaryWeight"].as_u64()),
        (Some("Succeeded"), Some(0))
    );
    assert_eq!(answered_by(&weir, "podinfo").await, "podinfo-6.0.1-primary");
    assert_eq!(
        answered_by(&weir, "app.example.com").await,
        "podinfo-6.0.1-primary"
    );
}

/// The backend that answers a request for `host`.
async fn answered_by(weir: &Weir, host: &str) -> String {
    let (_, h, _) = send(&client(), weir.mesh(), host, "/", &[]).await;
    backend_of(&h)
}

#[tokio::test]
async fn a_metric_template_is_queried_on_a_real_prometheus() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    // weir first (Prometheus scrapes its admin API), then the Canary with the template.
    let without = config_weighted(&v1, &v2, 0, "    stepWeight: 10");
    let without = &without[..without.find("---\napiVersion: flagger.app").unwrap()];
    let weir = Weir::start(without).await;
    let prometheus = Prometheus::start(weir.admin()).await;
    let with = format!(
        "{without}---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: error-rate}}
spec:
  provider: {{type: prometheus, address: 'http://{}'}}
  query: |
    100 * sum(rate(http_requests_total{{service=\"{{{{ service }}}}\", version=\"{{{{ variables.version }}}}\", status=~\"5..\"}}[{{{{ interval }}}}]))
      / sum(rate(http_requests_total{{service=\"{{{{ service }}}}\", version=\"{{{{ variables.version }}}}\"}}[{{{{ interval }}}}]))
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
    stepWeight: 20
    metrics:
    - name: error-rate
      templateRef: {{name: error-rate}}
      templateVariables: {{version: v2}}
      thresholdRange: {{max: 1}}
      interval: 5s
",
        prometheus.addr
    );
    // The canary answers 500 to everything: Prometheus sees it, the template fails it.
    let _load = Load::start(&weir, "/fail/v2");
    assert!(weir.rewrite(&with).await);
    let failed = wait_for(&weir, "Failed").await;
    let events = event_messages(&failed);
    assert!(
        events
            .iter()
            .any(|e| e.contains("error-rate 100.00 (range <= 1, from the provider): fail")),
        "{events:#?}"
    );
    assert_eq!(shares(&weir).await, (100, 0));
}

#[tokio::test]
async fn session_affinity_gives_canary_users_a_cohort_cookie() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let analysis = "    stepWeight: 50
    maxWeight: 50
    sessionAffinity: {cookieName: flagger-cookie, maxAge: 60, sameSite: Lax}";
    let weir = Weir::start(&config_weighted(&v1, &v2, 0, analysis)).await;
    let _load = Load::start(&weir, "/");
    wait_for(&weir, "Progressing").await;
    for _ in 0..50 {
        if status(&weir).await["canaryWeight"] == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, h, _) = send(&client(), weir.mesh(), "api-service", "/", &[]).await;
    let set = h
        .get("set-cookie")
        .expect("a cohort cookie")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set.starts_with("flagger-cookie=")
            && set.contains("Max-Age=60")
            && set.contains("SameSite=Lax"),
        "{set}"
    );
    // With it, the same version every time.
    let cookie = set.split(';').next().unwrap().to_owned();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let (_, h, _) = send(
            &client(),
            weir.mesh(),
            "api-service",
            "/",
            &[("cookie", &cookie)],
        )
        .await;
        seen.insert(backend_of(&h));
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
}

/// The Flagger A/B tutorial's Canary (istio-ab-testing.md), verbatim.
const PODINFO_AB: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  # deployment reference
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  # the maximum time in seconds for the canary deployment
  # to make progress before it is rollback (default 600s)
  progressDeadlineSeconds: 60
  # HPA reference (optional)
  autoscalerRef:
    apiVersion: autoscaling/v2
    kind: HorizontalPodAutoscaler
    name: podinfo
  service:
    # container port
    port: 9898
    # Istio gateways (optional)
    gateways:
    - istio-system/public-gateway
    # Istio virtual service host names (optional)
    hosts:
    - app.example.com
    # Istio traffic policy (optional)
    trafficPolicy:
      tls:
        # use ISTIO_MUTUAL when mTLS is enabled
        mode: DISABLE
  analysis:
    # schedule interval (default 60s)
    interval: 1m
    # total number of iterations
    iterations: 10
    # max number of failed iterations before rollback
    threshold: 2
    # canary match condition
    match:
      - headers:
          user-agent:
            regex: \".*Firefox.*\"
      - headers:
          cookie:
            regex: \"^(.*?;)?(type=insider)(;.*)?$\"
    metrics:
    - name: request-success-rate
      # minimum req success rate (non 5xx responses)
      # percentage (0-100)
      thresholdRange:
        min: 99
      interval: 1m
    - name: request-duration
      # maximum req duration P99
      # milliseconds
      thresholdRange:
        max: 500
      interval: 30s
    # generate traffic during analysis
    webhooks:
      - name: load-test
        url: http://flagger-loadtester.test/
        timeout: 15s
        metadata:
          cmd: \"hey -z 1m -q 10 -c 2 -H 'Cookie: type=insider' http://podinfo.test:9898/\"
";

#[tokio::test]
async fn the_flagger_ab_tutorial_canary_routes_firefox_and_insiders_to_the_canary() {
    let primary = Backend::start("podinfo-6.0.0").await;
    let canary = Backend::start("podinfo-6.0.1").await;
    let tester = Hooks::start().await;
    // Scaled in time (1 s intervals, 3 iterations); otherwise verbatim.
    let fast = PODINFO_AB
        .replace("interval: 1m", "interval: 1s")
        .replace("interval: 30s", "interval: 1s")
        .replace("iterations: 10", "iterations: 3");
    let weir = Weir::start(&podinfo(&primary, &canary, &tester, &fast)).await;
    static INSIDER: [(&str, &str); 1] = [("cookie", "type=insider")];
    let _load = Load::run(&weir, "podinfo", "/", &INSIDER);
    let s = wait_for_named(&weir, "podinfo", "Progressing").await;
    assert_eq!(s["strategy"], "AbTesting");
    for _ in 0..50 {
        if status_of(&weir, "podinfo").await["iterations"].as_u64() >= Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
    for (headers, expected) in [
        (vec![("user-agent", firefox)], "podinfo-6.0.1"),
        (vec![("cookie", "type=insider")], "podinfo-6.0.1"),
        (vec![("cookie", "a=b; type=insider")], "podinfo-6.0.0"),
        (vec![("user-agent", "Chrome")], "podinfo-6.0.0"),
    ] {
        for host in ["podinfo", "app.example.com"] {
            let (_, h, _) = send(&client(), weir.mesh(), host, "/", &headers).await;
            assert_eq!(backend_of(&h), expected, "{host} {headers:?}");
        }
    }
    let done = wait_for_named(&weir, "podinfo", "Succeeded").await;
    let events = event_messages(&done);
    assert!(
        events.contains(&"Advance podinfo canary iteration 3/3".to_owned()),
        "{events:#?}"
    );
    assert_eq!(answered_by(&weir, "podinfo").await, "podinfo-6.0.1");
}

#[tokio::test]
async fn a_bad_canary_edit_is_rejected_and_the_rollout_carries_on() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let weir = Weir::start(&config(&v1, &v2, "    stepWeight: 10\n    maxWeight: 90")).await;
    let _load = Load::start(&weir, "/");
    wait_for(&weir, "Progressing").await;
    weir::admin::call(weir.admin(), "POST", "/canaries/api-service/pause")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = status(&weir).await;
    let generation = weir.generation();
    let bad = config(
        &v1,
        &v2,
        "    stepWeight: 10\n    maxWeight: 500\n    webhooks: [{name: x, url: 'ftp://x'}]",
    );
    assert!(!weir.rewrite(&bad).await, "a bad Canary was applied");
    assert_eq!(weir.generation(), generation);
    let after = status(&weir).await;
    assert_eq!(after["canaryWeight"], before["canaryWeight"]);
    assert_eq!(after["status"]["paused"], true);
    assert_eq!(event_messages(&after), event_messages(&before));
}

#[tokio::test]
async fn the_initial_routing_is_served_from_the_first_request_it_is_shown() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    // A long interval: nothing but the initialization happens during the test. The
    // VirtualService's own weights (90/10) must not stay live once the status says 0 %.
    let yaml =
        config(&v1, &v2, "").replace("interval: 1s\n    threshold", "interval: 1h\n    threshold");
    let weir = Weir::start(&yaml).await;
    let s = wait_for(&weir, "Initialized").await;
    assert_eq!(s["canaryWeight"], 0);
    // 200 requests at 10 % would all miss v2 with odds of 0.9^200, about 7e-10.
    let (first, second) = shares(&weir).await;
    let (third, fourth) = shares(&weir).await;
    assert_eq!((first + third, second + fourth), (200, 0));
}

#[tokio::test]
async fn a_virtual_service_without_the_canary_subset_gets_it_at_weight_zero() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    // The VirtualService routes to the primary only, as many do before a first rollout.
    let only_primary = config(&v1, &v2, "    stepWeight: 50\n    maxWeight: 50").replace(
        "    - destination: {host: api-service, subset: v1}
      weight: 90
    - destination: {host: api-service, subset: v2}
      weight: 10
",
        "    - destination: {host: api-service, subset: v1}
",
    );
    assert!(!only_primary.contains("subset: v2}"), "{only_primary}");
    let weir = Weir::start(&only_primary).await;
    let _load = Load::start(&weir, "/");
    // The rollout moves weight to the canary it added: v2 gets traffic at its step.
    wait_for(&weir, "Succeeded").await;
    let (_, v2_share) = shares(&weir).await;
    assert_eq!(v2_share, 100, "promoted: all traffic on v2");
    // A canary subset no DestinationRule defines is refused, at the Canary's field.
    let undefined = only_primary.replace("canarySubset: v2", "canarySubset: v9");
    let set = weir::config::parse_set("c.yaml", &undefined).unwrap();
    let errors = weir::config::validate(&set, "127.0.0.1:15001".parse().unwrap()).unwrap_err();
    assert!(
        errors.iter().any(|e| e
            .to_string()
            .contains("subset `v9` of `api-service` is not defined")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn the_apex_routing_is_bound_as_flagger_binds_it_and_takes_over_a_virtual_service() {
    let primary = Backend::start("podinfo-primary").await;
    let canary = Backend::start("podinfo-canary").await;
    let tester = Hooks::start().await;
    let port = free_port();
    let gateway = loopback_gateway("public-gateway", port);
    // With gateways, the apex VirtualService is on them only (hosts `*` included), not on
    // the mesh: Flagger binds it to `mesh` only when there are none.
    let on_gateway = PODINFO_CANARY
        .replace("- istio-system/public-gateway", "- public-gateway")
        .replace("- app.example.com", "- \"*\"");
    let weir =
        Weir::start(&(gateway.clone() + &podinfo(&primary, &canary, &tester, &on_gateway))).await;
    let edge: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (s, h, _) = get(edge, "anything.example", "/", &[]).await;
    assert_eq!(
        (s.as_u16(), backend_of(&h).as_str()),
        (200, "podinfo-primary")
    );
    let (s, _, _) = get(weir.mesh(), "podinfo", "/", &[]).await;
    assert_eq!(s, 404, "not on the mesh");
    drop(weir);
    // A VirtualService of the apex name is taken over, with a warning.
    let own = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: podinfo}
spec:
  hosts: [podinfo]
  http:
  - route: [{destination: {host: podinfo-canary}}]
---
";
    let yaml = own.to_owned() + &podinfo(&primary, &canary, &tester, PODINFO_CANARY);
    let set = weir::config::parse_set("c.yaml", &yaml).unwrap();
    let model = weir::config::validate(&set, "127.0.0.1:15001".parse().unwrap()).unwrap();
    assert!(
        model
            .warnings
            .iter()
            .any(|w| w.contains("VirtualService `podinfo` is taken over by Canary `podinfo`")),
        "{:?}",
        model.warnings
    );
    let weir = Weir::start(&yaml).await;
    assert_eq!(answered_by(&weir, "podinfo").await, "podinfo-primary");
}
