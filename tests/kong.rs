//! Kong's dialect: the declarative config and the seed's Kong kinds, translated into weir's
//! model and run against real backends: weighted targets, Kong's route priority, strip_path,
//! preserve_host, the seed's canary and A/B examples, plugin checks, and Kong beside Istio.
mod support;

use support::*;

/// The seed's canary example, verbatim (Korean comments included).
const SEED_CANARY: &str = "# Kong Service 정의
apiVersion: configuration.konghq.com/v1
kind: KongService
metadata:
  name: api-service
spec:
  protocol: http
  host: api-backend
  port: 80

---
# Upstream 정의 (가중치 기반)
apiVersion: configuration.konghq.com/v1
kind: KongUpstream
metadata:
  name: api-backend
spec:
  targets:
    - target: api-v1:80
      weight: 90  # 기존 버전 90%
    - target: api-v2:80
      weight: 10  # 카나리 10%
  algorithm: weighted-round-robin

---
# Route 정의
apiVersion: configuration.konghq.com/v1
kind: KongRoute
metadata:
  name: api-route
spec:
  service: api-service
  paths:
    - /api
";

/// The seed's A/B example, verbatim.
const SEED_AB: &str = "# 헤더 기반 라우팅
apiVersion: configuration.konghq.com/v1
kind: KongRoute
metadata:
  name: api-beta-route
spec:
  service: api-v2-service
  paths:
    - /api
  headers:
    X-User-Group:
      - beta
      - premium

---
# 기본 라우팅
apiVersion: configuration.konghq.com/v1
kind: KongRoute
metadata:
  name: api-default-route
spec:
  service: api-v1-service
  paths:
    - /api
";

/// Writes `yaml` as a Kong file, and checks that `weir validate` rejects it with each of
/// `expected` (`line:column: message`) at the file's path.
async fn assert_rejected(yaml: &str, expected: &[&str]) {
    let dir = scratch_dir();
    let file = dir.join("kong.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = weir_cli(["validate", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let f = file.display().to_string();
    for e in expected {
        assert!(
            text.contains(&format!("{f}:{e}")),
            "missing {e} in:\n{text}"
        );
    }
}

/// `n` GETs of `path` on `host`; how many each backend answered.
async fn spread(weir: &Weir, host: &str, path: &str, n: usize) -> (usize, usize, usize) {
    let c = client();
    let (mut a, mut b, mut other) = (0, 0, 0);
    for _ in 0..n {
        let (status, h, _) = send(&c, weir.mesh(), host, path, &[]).await;
        assert_eq!(status, 200);
        match backend_of(&h).as_str() {
            "t1" | "v1" => a += 1,
            "t2" | "v2" => b += 1,
            _ => other += 1,
        }
    }
    (a, b, other)
}

fn declarative(t1: &Backend, t2: &Backend, t3: &Backend) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: example_service
  host: example_upstream
  protocol: http
  routes:
  - name: mock
    paths: [/mock]
  - name: keep
    paths: [/keep]
    strip_path: false
    preserve_host: true
- name: based
  url: http://example_upstream/base/
  routes:
  - name: based
    paths: [/based]
- name: joined
  url: http://example_upstream/anything
  routes:
  - name: joined
    paths: [/test]
upstreams:
- name: example_upstream
  algorithm: round-robin
  targets:
  - target: 127.0.0.1:{}
    weight: 100
  - target: 127.0.0.1:{}
    weight: 50
  - target: 127.0.0.1:{}
    weight: 0
"#,
        t1.addr.port(),
        t2.addr.port(),
        t3.addr.port()
    )
}

#[tokio::test]
async fn weighted_targets_share_by_weight_and_weight_zero_gets_nothing() {
    let (t1, t2, t3) = (
        Backend::start("t1").await,
        Backend::start("t2").await,
        Backend::start("t3").await,
    );
    let weir = Weir::start(&declarative(&t1, &t2, &t3)).await;
    let (a, b, other) = spread(&weir, "anything.example", "/mock/anything", 600).await;
    // Kong's load-balancing task: t1 in [354, 446] of 600 (p = 2/3, 4 sigma).
    assert!((354..=446).contains(&a), "t1 {a}, t2 {b}");
    assert_eq!(a + b, 600);
    assert_eq!(other, 0);
    assert_eq!(t3.hits(), 0);
}

#[tokio::test]
async fn strip_path_service_path_and_preserve_host() {
    let (t1, t2, t3) = (
        Backend::start("t1").await,
        Backend::start("t2").await,
        Backend::start("t3").await,
    );
    let weir = Weir::start(&declarative(&t1, &t2, &t3)).await;
    let c = client();
    let seen = |body: &str| -> (String, String) {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        (
            v["uri"].as_str().unwrap().to_owned(),
            v["headers"]["host"].as_str().unwrap_or("").to_owned(),
        )
    };
    for (path, uri, host) in [
        // strip_path (default): the matched prefix goes; Host is the service's.
        ("/mock/anything?x=1", "/anything?x=1", "example_upstream"),
        ("/mock", "/", "example_upstream"),
        // strip_path: false, preserve_host: true.
        ("/keep/a", "/keep/a", "client.example"),
        // The service's path goes first.
        ("/based/a", "/base/a", "example_upstream"),
        // Nothing after the route's path: the service's path, without its trailing slash (as
        // Kong's v0 join gives it).
        ("/based", "/base", "example_upstream"),
        // path_handling v0 (Kong's default): one slash between the service's path and what
        // follows the route's.
        ("/testreq", "/anything/req", "example_upstream"),
        ("/test", "/anything", "example_upstream"),
        ("/test/req?q=1", "/anything/req?q=1", "example_upstream"),
    ] {
        let (status, _, body) = send(&c, weir.mesh(), "client.example", path, &[]).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(seen(&body), (uri.to_owned(), host.to_owned()), "{path}");
    }
    // No route: Kong's 404.
    let (status, _, _) = send(&c, weir.mesh(), "client.example", "/other", &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn routes_are_ranked_as_kong_ranks_them_not_by_order() {
    let backends = [
        Backend::start("plain").await,
        Backend::start("header").await,
        Backend::start("long").await,
        Backend::start("regex").await,
        Backend::start("host").await,
        Backend::start("method").await,
    ];
    let mut yaml = String::from("_format_version: \"3.0\"\nservices:\n");
    for b in &backends {
        yaml.push_str(&format!(
            "- name: {n}\n  url: http://127.0.0.1:{p}\n",
            n = b.name,
            p = b.addr.port()
        ));
    }
    // Written least specific first: Kong's ranking, not the order, decides.
    yaml.push_str(
        r#"routes:
- {name: plain, service: plain, paths: [/api]}
- {name: long, service: long, paths: [/api/v1/users]}
- {name: regex, service: regex, paths: ["~/api/v[0-9]+/items$"], regex_priority: 5}
- {name: header, service: header, paths: [/api], headers: {x-user-group: [beta, premium]}}
- {name: host, service: host, paths: [/api], hosts: [shop.example.com]}
- {name: method, service: method, paths: [/api], hosts: [shop.example.com], methods: [POST]}
"#,
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    for (host, path, headers, want) in [
        ("a.example", "/api/x", vec![], "plain"),
        ("a.example", "/api/v1/users/7", vec![], "long"),
        ("a.example", "/api/v2/items", vec![], "regex"),
        (
            "a.example",
            "/api/x",
            vec![("X-User-Group", "Premium")],
            "header",
        ),
        (
            "a.example",
            "/api/x",
            vec![("X-User-Group", "other")],
            "plain",
        ),
        // A host outranks a header (more kinds of conditions count first, then plain hosts).
        (
            "shop.example.com",
            "/api/x",
            vec![("x-user-group", "beta")],
            "host",
        ),
    ] {
        let (status, h, body) = send(&c, weir.mesh(), host, path, &headers).await;
        assert_eq!(status, 200, "{host}{path}: {body}");
        assert_eq!(backend_of(&h), want, "{host}{path} {headers:?}");
    }
    let (status, h, _) = request(
        &c,
        weir.mesh(),
        "POST",
        "shop.example.com",
        "/api/x",
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(backend_of(&h), "method");
}

#[tokio::test]
async fn the_seed_canary_sends_a_tenth_to_v2() {
    // The seed's file loads as written.
    let dir = scratch_dir();
    let file = dir.join("seed-canary.yaml");
    std::fs::write(&file, SEED_CANARY).unwrap();
    let out = weir_cli(["validate", file.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Run with the targets on loopback.
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let yaml = SEED_CANARY
        .replace("api-v1:80", &format!("127.0.0.1:{}", v1.addr.port()))
        .replace("api-v2:80", &format!("127.0.0.1:{}", v2.addr.port()));
    let weir = Weir::start(&yaml).await;
    let (a, b, _) = spread(&weir, "api.example", "/api/users", 1000).await;
    // Weighted round robin: exactly 900 / 100 over whole cycles of 100.
    assert_eq!((a, b), (900, 100));
}

#[tokio::test]
async fn the_seed_ab_routes_send_beta_and_premium_users_to_v2() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let services = format!(
        "apiVersion: configuration.konghq.com/v1
kind: KongService
metadata: {{name: api-v1-service}}
spec: {{host: 127.0.0.1, port: {}}}
---
apiVersion: configuration.konghq.com/v1
kind: KongService
metadata: {{name: api-v2-service}}
spec: {{host: 127.0.0.1, port: {}}}
---
",
        v1.addr.port(),
        v2.addr.port()
    );
    let weir = Weir::start(&(services + SEED_AB)).await;
    let c = client();
    for (group, want) in [
        (Some("beta"), "v2"),
        (Some("premium"), "v2"),
        (Some("basic"), "v1"),
        (None, "v1"),
    ] {
        let headers: Vec<(&str, &str)> = group.map(|g| ("X-User-Group", g)).into_iter().collect();
        let (status, h, _) = send(&c, weir.mesh(), "api.example", "/api/items", &headers).await;
        assert_eq!(status, 200);
        assert_eq!(backend_of(&h), want, "{group:?}");
    }
}

#[tokio::test]
async fn kong_and_istio_run_side_by_side() {
    let (t1, t2, t3) = (
        Backend::start("t1").await,
        Backend::start("t2").await,
        Backend::start("t3").await,
    );
    let istio_backend = Backend::start("reviews-v1").await;
    let mut yaml = declarative(&t1, &t2, &t3);
    yaml.push_str("---\n");
    yaml.push_str(&service_entry("reviews", &[("v1", &istio_backend)]));
    let weir = Weir::start(&yaml).await;
    let c = client();
    // The Istio service keeps its host; every other host goes to Kong's routes.
    let (status, h, _) = send(&c, weir.mesh(), "reviews", "/mock/x", &[]).await;
    assert_eq!(
        (status.as_u16(), backend_of(&h).as_str()),
        (200, "reviews-v1")
    );
    let (status, h, _) = send(&c, weir.mesh(), "else.example", "/mock/x", &[]).await;
    assert_eq!(status, 200);
    assert!(matches!(backend_of(&h).as_str(), "t1" | "t2"));
}

#[tokio::test]
async fn bad_kong_configs_are_rejected_with_positions() {
    assert_rejected(
        r#"_format_version: "3.0"
services:
- name: s
  host: up
  plugins:
  - name: no-such-plugin
  routes:
  - name: r
    paths: [api]
    hosts: ["a.*.b"]
routes:
- name: orphan
  service: missing
  paths: [/x]
upstreams:
- name: up
  algorithm: fastest
  targets:
  - target: 127.0.0.1:1
    weight: 70000
"#,
        &[
            "6:11: unknown plugin `no-such-plugin`",
            "9:13: path `api` must start with /",
            "10:13: host `a.*.b`: a wildcard must be the leftmost or the rightmost label",
            "13:12: no service named `missing`",
            "17:14: algorithm `fastest`",
            "20:13: weight 70000 is not between 0 and 65535",
        ],
    )
    .await;
}

/// An upstream of `targets` with these `healthchecks` (a YAML flow mapping), behind `/mock`.
fn with_checks(targets: &[&Backend], checks: &str) -> String {
    let mut yaml = format!(
        "_format_version: \"3.0\"
services:
- name: svc
  host: example_upstream
  routes:
  - {{name: mock, paths: [/mock]}}
upstreams:
- name: example_upstream
  healthchecks: {checks}
  targets:
"
    );
    for t in targets {
        yaml.push_str(&format!("  - target: 127.0.0.1:{}\n", t.addr.port()));
    }
    yaml
}

async fn set_health(weir: &Weir, target: &Backend, state: &str) -> u16 {
    let path = format!(
        "/upstreams/example_upstream/targets/127.0.0.1:{}/{state}",
        target.addr.port()
    );
    weir::admin::call(weir.admin(), "PUT", &path)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn passive_checks_take_a_failing_target_out_for_good() {
    let (t1, t2) = (Backend::start("t1").await, Backend::start("t2").await);
    let weir = Weir::start(&with_checks(
        &[&t1, &t2],
        "{passive: {healthy: {successes: 3}, unhealthy: {http_failures: 3}}}",
    ))
    .await;
    let c = client();
    // t1 answers 500 to /fail/t1: its third failure takes it out (Kong counts 500 by default).
    let mut failures = 0;
    for _ in 0..20 {
        let (status, _, _) = send(&c, weir.mesh(), "x", "/mock/fail/t1", &[]).await;
        if status == 500 {
            failures += 1;
        }
    }
    assert_eq!(failures, 3);
    let (a, b, _) = spread(&weir, "x", "/mock/fail/t1", 300).await;
    assert_eq!((a, b), (0, 300));
    // No automatic recovery with passive checks only; an operator brings it back.
    let clusters = raw(
        weir.admin(),
        "GET /clusters HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(clusters.contains("\"healthy\": false"), "{clusters}");
    assert_eq!(set_health(&weir, &t1, "healthy").await, 204);
    let (a, b, _) = spread(&weir, "x", "/mock/ok", 300).await;
    assert!(a > 50 && b > 50, "{a} {b}");
    // 502 and 504 are not counted by default.
    let (t3, t4) = (Backend::start("t1").await, Backend::start("t2").await);
    let weir = Weir::start(&with_checks(
        &[&t3, &t4],
        "{passive: {unhealthy: {http_failures: 1}}}",
    ))
    .await;
    for _ in 0..10 {
        send(&c, weir.mesh(), "x", "/mock/status/502", &[]).await;
    }
    let (a, b, _) = spread(&weir, "x", "/mock/ok", 100).await;
    assert_eq!(a + b, 100);
    assert!(a > 0 && b > 0);
}

#[tokio::test]
async fn with_every_target_unhealthy_weir_answers_503_itself() {
    let (t1, t2) = (Backend::start("t1").await, Backend::start("t2").await);
    let weir = Weir::start(&with_checks(
        &[&t1, &t2],
        "{passive: {unhealthy: {http_failures: 1}}}",
    ))
    .await;
    assert_eq!(set_health(&weir, &t1, "unhealthy").await, 204);
    assert_eq!(set_health(&weir, &t2, "unhealthy").await, 204);
    let before = t1.hits() + t2.hits();
    let (status, _, _) = send(&client(), weir.mesh(), "x", "/mock/ok", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(t1.hits() + t2.hits(), before);
    // Unknown targets and upstreams are 404.
    let (code, _) = weir::admin::call(
        weir.admin(),
        "PUT",
        "/upstreams/example_upstream/targets/127.0.0.1:1/healthy",
    )
    .await
    .unwrap();
    assert_eq!(code, 404);
}

#[tokio::test]
async fn threshold_takes_the_whole_upstream_out_below_its_share() {
    let t: Vec<Backend> = futures_targets(5).await;
    let refs: Vec<&Backend> = t.iter().collect();
    let weir = Weir::start(&with_checks(
        &refs,
        "{threshold: 55, passive: {unhealthy: {http_failures: 1}}}",
    ))
    .await;
    let c = client();
    set_health(&weir, &t[0], "unhealthy").await;
    set_health(&weir, &t[1], "unhealthy").await;
    // 60 % healthy: serving.
    let (status, _, _) = send(&c, weir.mesh(), "x", "/mock/ok", &[]).await;
    assert_eq!(status, 200);
    set_health(&weir, &t[2], "unhealthy").await;
    // 40 %: the upstream is down.
    let (status, _, _) = send(&c, weir.mesh(), "x", "/mock/ok", &[]).await;
    assert_eq!(status, 503);
}

async fn futures_targets(n: usize) -> Vec<Backend> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(Backend::start(&format!("t{i}")).await);
    }
    out
}

#[tokio::test]
async fn active_checks_bring_a_tripped_target_back() {
    let (t1, t2) = (Backend::start("t1").await, Backend::start("t2").await);
    let weir = Weir::start(&with_checks(
        &[&t1, &t2],
        "{active: {http_path: /status/200, healthy: {interval: 0.1, successes: 3}, unhealthy: {interval: 0.1, http_failures: 3}}, passive: {unhealthy: {http_failures: 1}}}",
    ))
    .await;
    // A failure on t1 takes it out at once (passive, threshold 1); the probes (GET
    // /status/200, 200 each) bring it back after 3 successes.
    trip_t1_then_await_probes(&weir, "/mock", 20).await;
}

/// Fails one request on t1 (behind `prefix`), checks that `n` requests then all avoid it, and
/// waits (up to 5 s) for active probes to bring it back.
async fn trip_t1_then_await_probes(weir: &Weir, prefix: &str, n: usize) {
    let c = client();
    let fail = format!("{prefix}/fail/t1");
    let ok = format!("{prefix}/ok");
    while send(&c, weir.mesh(), "x", &fail, &[]).await.0 != 500 {}
    let (a, _, _) = spread(weir, "x", &ok, n).await;
    assert_eq!(a, 0);
    let mut back = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if spread(weir, "x", &ok, 4).await.0 > 0 {
            back = true;
            break;
        }
    }
    assert!(back, "t1 never came back");
}

#[tokio::test]
async fn istio_users_get_the_same_checks_from_a_destination_rule() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let yaml = service_entry("reviews", &[("v1", &v1), ("v2", &v2)])
        + "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    healthChecks: {passive: {unhealthy: {http_failures: 2}}}
";
    let weir = Weir::start(&yaml).await;
    let c = client();
    let mut failures = 0;
    for _ in 0..20 {
        if send(&c, weir.mesh(), "reviews", "/fail/v1", &[]).await.0 == 500 {
            failures += 1;
        }
    }
    assert_eq!(failures, 2);
    let (a, b, _) = spread(&weir, "reviews", "/ok", 50).await;
    assert_eq!((a, b), (0, 50));
    let path = format!(
        "/upstreams/reviews/targets/127.0.0.1:{}/healthy",
        v1.addr.port()
    );
    let (code, _) = weir::admin::call(weir.admin(), "POST", &path)
        .await
        .unwrap();
    assert_eq!(code, 204);
    let (a, _, _) = spread(&weir, "reviews", "/ok", 50).await;
    assert!(a > 0);
}

/// The seed's circuit-breaker example, verbatim.
const SEED_BREAKER: &str = "# Kong Circuit Breaker 플러그인
apiVersion: configuration.konghq.com/v1
kind: KongPlugin
metadata:
  name: circuit-breaker
plugin: circuit-breaker
config:
  # 실패 임계값
  failure_threshold: 5
  # 타임아웃 (초)
  timeout: 30
  # 복구 시도 간격 (초)
  recovery_timeout: 60
  # 모니터링 윈도우 (초)
  window_size: 60

---
# Service에 플러그인 적용
apiVersion: configuration.konghq.com/v1
kind: KongService
metadata:
  name: api-service
  annotations:
    konghq.com/plugins: circuit-breaker
";

#[tokio::test]
async fn the_seed_circuit_breaker_opens_after_five_failures_and_fails_fast() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let canary = SEED_CANARY
        .replace("api-v1:80", &format!("127.0.0.1:{}", v1.addr.port()))
        .replace("api-v2:80", &format!("127.0.0.1:{}", v2.addr.port()));
    let weir = Weir::start(&format!("{canary}---\n{SEED_BREAKER}")).await;
    let c = client();
    // Five failures (500s from either version): the breaker opens.
    for _ in 0..5 {
        let (status, _, _) = send(&c, weir.mesh(), "api.example", "/api/status/500", &[]).await;
        assert_eq!(status, 500);
    }
    let hits = v1.hits() + v2.hits();
    for _ in 0..20 {
        let (status, _, body) = send(&c, weir.mesh(), "api.example", "/api/ok", &[]).await;
        assert_eq!(status, 503);
        assert!(body.contains("circuit breaker open"), "{body}");
    }
    assert_eq!(v1.hits() + v2.hits(), hits, "nothing forwarded while open");
    let clusters = raw(
        weir.admin(),
        "GET /clusters HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(clusters.contains("\"state\": \"open\""), "{clusters}");
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "weir_circuit_breaker_state{service=\"api-backend\",version=\"\",state=\"open\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "weir_circuit_breaker_rejected_total{service=\"api-backend\",version=\"\"}"
        ),
        Some(20.0)
    );
}

#[tokio::test]
async fn a_destination_rule_breaker_half_opens_and_closes_on_a_good_trial() {
    let v1 = Backend::start("v1").await;
    let yaml = service_entry("reviews", &[("v1", &v1)])
        + "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    circuitBreaker: {failureThreshold: 2, windowSize: 10s, recoveryTimeout: 300ms}
";
    let weir = Weir::start(&yaml).await;
    let c = client();
    for _ in 0..2 {
        send(&c, weir.mesh(), "reviews", "/status/500", &[]).await;
    }
    assert_eq!(send(&c, weir.mesh(), "reviews", "/ok", &[]).await.0, 503);
    // After the recovery time one trial passes; it succeeds and the breaker closes.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(send(&c, weir.mesh(), "reviews", "/ok", &[]).await.0, 200);
    for _ in 0..5 {
        assert_eq!(send(&c, weir.mesh(), "reviews", "/ok", &[]).await.0, 200);
    }
}

#[tokio::test]
async fn request_termination_answers_for_the_upstream() {
    let t1 = Backend::start("t1").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{port}
  routes:
  - name: closed
    paths: [/closed]
    plugins:
    - name: request-termination
      config: {{status_code: 403, message: "So long and thanks for all the fish!"}}
  - name: maintenance
    paths: [/maint]
    plugins:
    - name: request-termination
      config: {{status_code: 503, body: "<h1>back soon</h1>", content_type: text/html, trigger: x-maintenance}}
"#,
        port = t1.addr.port()
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    let (status, h, body) = send(&c, weir.mesh(), "x", "/closed/a", &[]).await;
    assert_eq!(status, 403);
    assert_eq!(
        body,
        r#"{"message":"So long and thanks for all the fish!"}"#
    );
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    // With a trigger, only requests carrying it are answered.
    let (status, h, body) = send(&c, weir.mesh(), "x", "/maint/a", &[("x-maintenance", "1")]).await;
    assert_eq!(
        (status.as_u16(), body.as_str()),
        (503, "<h1>back soon</h1>")
    );
    assert_eq!(h["content-type"], "text/html");
    let (status, h, _) = send(&c, weir.mesh(), "x", "/maint/a", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(backend_of(&h), "t1");
    assert_eq!(t1.hits(), 1);
}

#[tokio::test]
async fn rate_limiting_counts_per_client_and_answers_429_with_kong_headers() {
    let t1 = Backend::start("t1").await;
    // Yearly limits: a window boundary cannot fall inside the test.
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{port}
  plugins:
  - name: rate-limiting
    config: {{year: 3, limit_by: ip, policy: local}}
  routes:
  - {{name: a, paths: [/a]}}
  - {{name: b, paths: [/b]}}
  - name: per-user
    paths: [/user]
    plugins:
    - name: rate-limiting
      config: {{year: 1, limit_by: header, header_name: x-user, hide_client_headers: true}}
"#,
        port = t1.addr.port()
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    // The service's limit is shared by its routes.
    for (path, remaining) in [("/a/1", "2"), ("/b/1", "1"), ("/a/2", "0")] {
        let (status, h, _) = send(&c, weir.mesh(), "x", path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(h["x-ratelimit-limit-year"], "3");
        assert_eq!(h["x-ratelimit-remaining-year"], remaining);
        assert_eq!(h["ratelimit-remaining"], remaining);
    }
    let (status, h, body) = send(&c, weir.mesh(), "x", "/b/2", &[]).await;
    assert_eq!(status, 429);
    assert_eq!(body, r#"{"message":"API rate limit exceeded"}"#);
    assert_eq!(h["ratelimit-remaining"], "0");
    assert!(h.contains_key("retry-after"));
    assert_eq!(t1.hits(), 3);
    // The route's own plugin wins over the service's, per header value, headers hidden.
    for (user, want) in [("ann", 200), ("bob", 200), ("ann", 429)] {
        let (status, h, _) = send(&c, weir.mesh(), "x", "/user", &[("x-user", user)]).await;
        assert_eq!(status.as_u16(), want, "{user}");
        assert!(!h.contains_key("x-ratelimit-limit-year"));
    }
}

#[tokio::test]
async fn cors_answers_preflights_and_decorates_allowed_origins() {
    let t1 = Backend::start("t1").await;
    // Kong's plugin, and Istio's corsPolicy on another host.
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{port}
  routes:
  - name: api
    hosts: [kong.example]
    paths: [/api]
    plugins:
    - name: cors
      config: {{origins: ["https://app.example.com"], methods: [GET, POST], headers: [x-token], exposed_headers: [x-trace], credentials: true, max_age: 600}}
  - name: open
    hosts: [kong.example]
    paths: [/open]
    plugins:
    - name: cors
      config: {{origins: [".*\\.example\\.com"]}}
  - name: upstream-answers
    hosts: [kong.example]
    paths: [/delegated]
    plugins:
    - name: cors
      config: {{preflight_continue: true}}
---
{se}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web}}
spec:
  hosts: [web]
  http:
  - corsPolicy:
      allowOrigins: [{{regex: "https://.*\\.example\\.org"}}]
      allowMethods: [GET]
      unmatchedPreflights: IGNORE
    route: [{{destination: {{host: web}}}}]
"#,
        port = t1.addr.port(),
        se = service_entry("web", &[("v1", &t1)]),
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    let preflight = |origin: &'static str| {
        vec![
            ("origin", origin),
            ("access-control-request-method", "POST"),
        ]
    };
    // A preflight from an allowed origin: answered, not forwarded.
    let (status, h, _) = request(
        &c,
        weir.mesh(),
        "OPTIONS",
        "kong.example",
        "/api/x",
        &preflight("https://app.example.com"),
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET,POST");
    assert_eq!(h["access-control-allow-headers"], "x-token");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(t1.hits(), 0);
    // An actual request: forwarded, decorated.
    let (status, h, _) = send(
        &c,
        weir.mesh(),
        "kong.example",
        "/api/x",
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-expose-headers"], "x-trace");
    // Another origin: no CORS headers.
    let (_, h, _) = send(
        &c,
        weir.mesh(),
        "kong.example",
        "/api/x",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(!h.contains_key("access-control-allow-origin"));
    // Kong answers a preflight from an origin it does not allow too, without the origin header.
    let before = t1.hits();
    let options = |path: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let c = c.clone();
        let mesh = weir.mesh();
        async move {
            request(
                &c,
                mesh,
                "OPTIONS",
                "kong.example",
                path,
                &headers,
                bytes::Bytes::new(),
            )
            .await
        }
    };
    let (status, h, _) = options("/api/x", preflight("https://evil.example")).await;
    assert_eq!(status, 200);
    assert!(!h.contains_key("access-control-allow-origin"));
    assert_eq!(t1.hits(), before);
    // Without `headers`, Kong allows what the preflight asks for, and its default methods.
    let mut asks = preflight("https://shop.example.com");
    asks.push((
        "access-control-request-headers",
        "content-type,authorization",
    ));
    let (status, h, _) = options("/open/x", asks).await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type,authorization"
    );
    assert_eq!(
        h["access-control-allow-methods"],
        "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
    );
    assert_eq!(t1.hits(), before);
    // preflight_continue: the upstream answers the preflight, and weir adds nothing.
    let (status, h, _) = options("/delegated/x", preflight("https://any.example")).await;
    assert_eq!(status, 200);
    assert_eq!(backend_of(&h), "t1");
    assert!(!h.contains_key("access-control-allow-origin"));
    assert_eq!(t1.hits(), before + 1);
    // Istio: regex origins; an unmatched preflight is answered without CORS headers (IGNORE).
    let hits = t1.hits();
    let (status, h, _) = request(
        &c,
        weir.mesh(),
        "OPTIONS",
        "web",
        "/",
        &preflight("https://shop.example.org"),
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.org");
    let (status, h, _) = request(
        &c,
        weir.mesh(),
        "OPTIONS",
        "web",
        "/",
        &preflight("https://other.com"),
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!h.contains_key("access-control-allow-origin"));
    assert_eq!(t1.hits(), hits);
}

#[tokio::test]
async fn request_transformer_changes_method_headers_query_and_path() {
    let t1 = Backend::start("t1").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{port}
  routes:
  - name: t
    paths: [/t]
    plugins:
    - name: request-transformer
      config:
        http_method: POST
        remove: {{headers: [x-secret], querystring: [debug]}}
        rename: {{headers: ["x-old:x-new"]}}
        replace: {{uri: /replaced, querystring: ["v:2"]}}
        add: {{headers: ["x-added:yes", "x-old-kept:no"], querystring: ["extra:1"]}}
        append: {{headers: ["x-multi:b"]}}
"#,
        port = t1.addr.port()
    );
    let weir = Weir::start(&yaml).await;
    let (status, _, body) = send(
        &client(),
        weir.mesh(),
        "x",
        "/t/anything?debug=1&v=1",
        &[("x-secret", "s"), ("x-old", "o"), ("x-multi", "a")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/replaced?v=2&extra=1");
    let h = &v["headers"];
    assert!(h.get("x-secret").is_none());
    assert!(h.get("x-old").is_none());
    assert_eq!(h["x-new"], "o");
    assert_eq!(h["x-added"], "yes");
    // Appended after the client's (the backend's echo keeps the last value of a name).
    assert_eq!(h["x-multi"], "b");
}

#[tokio::test]
async fn request_transformer_templates_read_the_request_as_it_arrived() {
    let t1 = Backend::start("t1").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{port}
  routes:
  - name: users
    paths: ["~/users/(?<id>[0-9]+)"]
    plugins:
    - name: request-transformer
      config:
        remove: {{headers: [x-client]}}
        replace: {{uri: "/v2/accounts/$(uri_captures.id)"}}
        add:
          headers:
          - "x-user-id:$(uri_captures['id'])"
          - "x-lang:$(headers.accept_language or 'en')"
          - "x-was:$(headers[\"X-Client\"])/$(query_params.q)"
          querystring: ["client:$(headers.x_client)"]
"#,
        port = t1.addr.port()
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    let (status, _, body) = send(
        &c,
        weir.mesh(),
        "x",
        "/users/42/orders?q=shoes",
        &[("x-client", "mobile app&co"), ("accept-language", "ko")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["uri"], "/v2/accounts/42?q=shoes&client=mobile%20app%26co");
    let h = &v["headers"];
    assert_eq!(h["x-user-id"], "42");
    assert_eq!(h["x-lang"], "ko");
    // Templates read the request as it arrived, before `remove` took x-client away.
    assert_eq!(h["x-was"], "mobile app&co/shoes");
    assert!(h.get("x-client").is_none());
    // Missing values: the default, or nothing.
    let (_, _, body) = send(&c, weir.mesh(), "x", "/users/7", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["uri"], "/v2/accounts/7?client");
    assert_eq!(v["headers"]["x-lang"], "en");
    assert_eq!(v["headers"]["x-was"], "/");

    // Expressions weir does not read are config errors at their line.
    assert_rejected(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:1
  routes:
  - name: r
    paths: [/r]
    plugins:
    - name: request-transformer
      config:
        add:
          headers: ["x-a:$(os.getenv('HOME'))", "x-b:$(headers.x"]
"#,
        &[
        "12:21: template `$(os.getenv('HOME'))`: weir reads headers, query_params and uri_captures",
        "12:49: `$(headers.x`: `$(` without `)`",
        ],
    )
    .await;
}

#[tokio::test]
async fn proxy_cache_answers_from_memory_until_the_ttl() {
    let t1 = Backend::start("t1").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{port}
  routes:
  - name: cached
    paths: [/c]
    plugins:
    - name: proxy-cache
      config: {{strategy: memory, cache_ttl: 300, vary_query_params: [page], vary_headers: [x-lang]}}
"#,
        port = t1.addr.port()
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    let get = |path: &'static str, lang: &'static str| {
        let c = c.clone();
        let mesh = weir.mesh();
        async move { send(&c, mesh, "x", path, &[("x-lang", lang)]).await }
    };
    let (status, h, first) = get("/c/item?page=1&utm=a", "en").await;
    assert_eq!(status, 200);
    assert_eq!(h["x-cache-status"], "Miss");
    // Same key (utm is not part of it): from memory, the upstream not asked.
    let (_, h, again) = get("/c/item?utm=b&page=1", "en").await;
    assert_eq!(h["x-cache-status"], "Hit");
    assert!(h.contains_key("age"));
    assert_eq!(again, first);
    assert_eq!(t1.hits(), 1);
    // Another page or language: another key.
    assert_eq!(
        get("/c/item?page=2", "en").await.1["x-cache-status"],
        "Miss"
    );
    assert_eq!(
        get("/c/item?page=1", "fr").await.1["x-cache-status"],
        "Miss"
    );
    assert_eq!(t1.hits(), 3);
    // Not cacheable: a POST bypasses; a 500 is not kept.
    let (_, h, _) = request(
        &c,
        weir.mesh(),
        "POST",
        "x",
        "/c/item",
        &[],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(h["x-cache-status"], "Bypass");
    for _ in 0..2 {
        let (status, h, _) = get("/c/status/500", "en").await;
        assert_eq!(status, 500);
        assert_eq!(h["x-cache-status"], "Bypass");
    }
}

#[tokio::test]
async fn proxy_cache_with_cache_control_follows_both_sides_directives() {
    let t1 = Backend::start("t1").await;
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{port}
  routes:
  - name: cached
    paths: [/c]
    plugins:
    - name: proxy-cache
      config: {{strategy: memory, cache_control: true}}
"#,
        port = t1.addr.port()
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    let get = |path: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let c = c.clone();
        let mesh = weir.mesh();
        async move { send(&c, mesh, "x", path, &headers).await }
    };
    let status_of = |h: &http::HeaderMap| h["x-cache-status"].to_str().unwrap().to_owned();
    // The upstream's directives: no-store, private, and no lifetime at all are not kept.
    for (path, cc) in [
        ("/c/no-store", "no-store"),
        ("/c/private", "private, max-age=60"),
        ("/c/no-lifetime", "public"),
        ("/c/zero", "max-age=0"),
    ] {
        for _ in 0..2 {
            let (_, h, _) = get(path, vec![("x-reply-cache-control", cc)]).await;
            assert_eq!(status_of(&h), "Bypass", "{cc}");
        }
    }
    assert_eq!(t1.hits(), 8);
    // A lifetime of its own (s-maxage over max-age): kept.
    let fresh = vec![("x-reply-cache-control", "max-age=1, s-maxage=600")];
    assert_eq!(status_of(&get("/c/kept", fresh.clone()).await.1), "Miss");
    assert_eq!(status_of(&get("/c/kept", fresh.clone()).await.1), "Hit");
    assert_eq!(t1.hits(), 9);
    // The client's directives: no-cache and credentials bypass; min-fresh beyond what is
    // left refreshes the copy (and keeps the new one).
    let mut no_cache = fresh.clone();
    no_cache.push(("cache-control", "no-cache"));
    assert_eq!(status_of(&get("/c/kept", no_cache).await.1), "Bypass");
    let mut creds = fresh.clone();
    creds.push(("authorization", "Bearer x"));
    assert_eq!(status_of(&get("/c/kept", creds).await.1), "Bypass");
    let mut picky = fresh.clone();
    picky.push(("cache-control", "min-fresh=3600"));
    assert_eq!(status_of(&get("/c/kept", picky).await.1), "Refresh");
    let mut easy = fresh.clone();
    easy.push(("cache-control", "max-age=60, min-fresh=10"));
    assert_eq!(status_of(&get("/c/kept", easy).await.1), "Hit");
    assert_eq!(t1.hits(), 12);
    // only-if-cached without a copy: 504, nothing forwarded.
    let (status, _, _) = get("/c/never", vec![("cache-control", "only-if-cached")]).await;
    assert_eq!(status, 504);
    assert_eq!(t1.hits(), 12);
}

#[tokio::test]
async fn weir_import_kong_prints_istio_resources_that_load_again() {
    let (t1, t2, t3) = (
        Backend::start("t1").await,
        Backend::start("t2").await,
        Backend::start("t3").await,
    );
    let dir = scratch_dir();
    let file = dir.join("kong.yaml");
    std::fs::write(&file, declarative(&t1, &t2, &t3)).unwrap();
    let out = weir_cli(["import", "kong", file.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let istio = String::from_utf8(out.stdout).unwrap();
    for kind in [
        "kind: ServiceEntry",
        "kind: DestinationRule",
        "kind: VirtualService",
    ] {
        assert!(istio.contains(kind), "{kind} missing in:\n{istio}");
    }
    assert!(istio.contains("weight: 50"), "{istio}");
    // What it prints is a config weir runs the same way.
    let weir = Weir::start(&istio).await;
    let (a, b, _) = spread(&weir, "anything.example", "/mock/x", 300).await;
    assert_eq!(a + b, 300);
    assert!((170..=230).contains(&a), "{a}");
}

#[tokio::test]
async fn kong_retries_transport_failures_only() {
    let live = Backend::start("t1").await;
    let dead = free_port();
    let config = |retries: u32| {
        format!(
            r#"_format_version: "3.0"
services:
- name: svc
  host: up
  retries: {retries}
  connect_timeout: 1000
  routes:
  - {{name: r, paths: [/]}}
upstreams:
- name: up
  targets:
  - target: 127.0.0.1:{dead}
  - target: 127.0.0.1:{live}
"#,
            live = live.addr.port()
        )
    };
    let weir = Weir::start(&config(5)).await;
    let c = client();
    // The dead target refuses connections: every request is retried onto the live one.
    for _ in 0..20 {
        assert_eq!(send(&c, weir.mesh(), "x", "/ok", &[]).await.0, 200);
    }
    // A response is never retried, whatever its status.
    let hits = live.hits();
    let mut fives = 0;
    for _ in 0..10 {
        if send(&c, weir.mesh(), "x", "/status/503", &[]).await.0 == 503 {
            fives += 1;
        }
    }
    assert_eq!(fives, 10);
    assert_eq!(live.hits() - hits, 10);
    // Without retries, the requests that meet the dead target fail.
    assert!(weir.rewrite(&config(0)).await);
    let mut failed = 0;
    for _ in 0..20 {
        if send(&c, weir.mesh(), "x", "/ok", &[]).await.0 != 200 {
            failed += 1;
        }
    }
    assert!(failed > 0);
}

#[tokio::test]
async fn https_probes_bring_a_target_back_over_tls() {
    let pki = support::pki::Pki::new();
    pki.issue("web", &["web.internal"]);
    let config = || support::pki::server_config(&pki, "web", &[b"http/1.1"], None);
    let (t1, t2) = (
        Backend::start_tls("t1", config()).await,
        Backend::start_tls("t2", config()).await,
    );
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: svc
  host: secure_upstream
  protocol: https
  port: 443
  routes:
  - {{name: s, paths: [/s]}}
upstreams:
- name: secure_upstream
  healthchecks:
    active:
      type: https
      https_verify_certificate: false
      http_path: /status/200
      healthy: {{interval: 0.1, successes: 2}}
      unhealthy: {{interval: 0.1}}
    passive: {{unhealthy: {{http_failures: 1}}}}
  targets:
  - target: 127.0.0.1:{}
  - target: 127.0.0.1:{}
"#,
        t1.addr.port(),
        t2.addr.port()
    );
    let weir = Weir::start(&yaml).await;
    trip_t1_then_await_probes(&weir, "/s", 10).await;
    // The probes spoke TLS to it.
    assert!(t1.handshakes.lock().unwrap().len() > 2);
}

#[tokio::test]
async fn wildcard_hosts_on_either_side() {
    let (a, b) = (
        Backend::start("prefix").await,
        Backend::start("suffix").await,
    );
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: prefix
  url: http://127.0.0.1:{}
  routes: [{{name: p, hosts: ["shop.*"]}}]
- name: suffix
  url: http://127.0.0.1:{}
  routes: [{{name: s, hosts: ["*.example.com"]}}]
"#,
        a.addr.port(),
        b.addr.port()
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    for (host, want) in [
        ("shop.example.org", Some("prefix")),
        ("api.example.com", Some("suffix")),
        ("other.org", None),
    ] {
        let (status, h, _) = send(&c, weir.mesh(), host, "/", &[]).await;
        match want {
            Some(w) => assert_eq!(backend_of(&h), w, "{host}"),
            None => assert_eq!(status, 404, "{host}"),
        }
    }
}

#[tokio::test]
async fn plugin_config_errors_point_at_the_field() {
    assert_rejected(
        r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:1
  routes:
  - name: r
    paths: [/r]
    plugins:
    - name: proxy-cache
      config:
        strategy: redis
    - name: request-transformer
      config:
        add:
          headers: ["no-colon"]
    - name: rate-limiting
      config: {minute: 5, burst: 2}
"#,
        &[
            "11:19: strategy redis: weir caches in memory",
            "15:21: add.headers: `no-colon` is not name:value",
            "17:15: rate-limiting: unknown field `burst`",
        ],
    )
    .await;
}

/// Which backend of three answered each of `paths` sent with `headers`.
async fn targets_of(weir: &Weir, paths: &[String], headers: &[(&str, &str)]) -> Vec<String> {
    let c = client();
    let mut seen = Vec::new();
    for p in paths {
        let (status, h, _) = send(&c, weir.mesh(), "hash.example", p, headers).await;
        assert_eq!(status, 200, "{p}");
        seen.push(backend_of(&h));
    }
    seen
}

#[tokio::test]
async fn consistent_hashing_on_uri_captures_paths_cookies_with_fallbacks() {
    let t: Vec<Backend> = futures_targets(3).await;
    let targets: String = t
        .iter()
        .map(|b| format!("  - target: 127.0.0.1:{}\n", b.addr.port()))
        .collect();
    let yaml = format!(
        r#"_format_version: "3.0"
services:
- name: users
  host: by-user
  routes:
  - name: users
    paths: ["~/users/(?<user>[a-z0-9]+)", /static]
- name: paths
  host: by-path
  routes:
  - name: paths
    paths: [/files]
- name: cookies
  host: by-cookie
  routes:
  - name: cookies
    paths: [/cart]
upstreams:
- name: by-user
  algorithm: consistent-hashing
  hash_on: uri_capture
  hash_on_uri_capture: user
  hash_fallback: header
  hash_fallback_header: X-Tenant
  targets:
{targets}- name: by-path
  algorithm: consistent-hashing
  hash_on: consumer
  hash_fallback: path
  targets:
{targets}- name: by-cookie
  algorithm: consistent-hashing
  hash_on: cookie
  hash_on_cookie: cart-id
  hash_on_cookie_path: /cart
  targets:
{targets}"#
    );
    let weir = Weir::start(&yaml).await;
    let same = |seen: &[String]| seen.iter().all(|s| *s == seen[0]);

    // The capture decides: one user's requests stay on one target whatever follows it.
    let alice: Vec<String> = (0..12).map(|i| format!("/users/alice/item/{i}")).collect();
    assert!(same(&targets_of(&weir, &alice, &[]).await));
    let users: Vec<String> = (0..30).map(|i| format!("/users/u{i}/profile")).collect();
    let spread = targets_of(&weir, &users, &[]).await;
    assert!(!same(&spread), "30 users all on {}", spread[0]);
    // No capture on /static: the fallback header decides.
    let statics: Vec<String> = (0..12).map(|i| format!("/static/{i}.css")).collect();
    assert!(same(
        &targets_of(&weir, &statics, &[("x-tenant", "acme")]).await
    ));

    // `consumer` never names one in weir, so the fallback (the path) decides.
    let one_file = vec!["/files/report.pdf".to_owned(); 12];
    assert!(same(&targets_of(&weir, &one_file, &[]).await));
    let files: Vec<String> = (0..30).map(|i| format!("/files/f{i}")).collect();
    assert!(!same(&targets_of(&weir, &files, &[]).await));

    // A request without the cookie gets one (Kong's session cookie on the configured path);
    // sending it back keeps the client on one target.
    let c = client();
    let (status, h, _) = send(&c, weir.mesh(), "hash.example", "/cart", &[]).await;
    assert_eq!(status, 200);
    let set = h["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("cart-id=") && set.contains("Path=/cart"),
        "{set}"
    );
    assert!(!set.contains("Max-Age"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let carts = vec!["/cart".to_owned(); 12];
    let seen = targets_of(&weir, &carts, &[("cookie", &cookie)]).await;
    assert!(same(&seen));
    // The first answer (which set the cookie) came from the same target.
    assert_eq!(backend_of(&h), seen[0]);
}

#[tokio::test]
async fn kong_hash_rules_are_checked_as_kong_checks_them() {
    assert_rejected(
        r#"_format_version: "3.0"
upstreams:
- name: a
  algorithm: consistent-hashing
  hash_fallback: ip
- name: b
  algorithm: consistent-hashing
  hash_on: cookie
  hash_on_cookie: c
  hash_fallback: ip
- name: c
  algorithm: consistent-hashing
  hash_on: header
  hash_on_header: X-A
  hash_fallback: header
  hash_fallback_header: x-a
- name: d
  algorithm: consistent-hashing
  hash_on: query_arg
- name: e
  algorithm: consistent-hashing
  hash_on: consumer
  hash_fallback: route
"#,
        &[
            "5:18: hash_fallback must be none when hash_on is none",
            "10:18: hash_fallback must be none when hash_on is cookie",
            "15:18: hash_fallback must differ from hash_on (header)",
            "19:12: hash_on query_arg needs hash_on_query_arg",
            "23:18: hash_fallback `route`: expected none, consumer",
        ],
    )
    .await;
}

#[tokio::test]
async fn read_timeout_bounds_the_wait_for_the_upstream_and_is_retried() {
    let (t1, t2) = (Backend::start("t1").await, Backend::start("t2").await);
    let config = |retries: u32| {
        format!(
            r#"_format_version: "3.0"
services:
- name: s
  host: up
  retries: {retries}
  read_timeout: 200
  write_timeout: 200
  routes:
  - {{name: r, paths: [/]}}
upstreams:
- name: up
  targets:
  - target: 127.0.0.1:{}
  - target: 127.0.0.1:{}
"#,
            t1.addr.port(),
            t2.addr.port()
        )
    };
    let weir = Weir::start(&config(5)).await;
    let c = client();
    // t1 takes 5 s to answer: each try on it gives up after 200 ms of silence and goes to t2.
    for _ in 0..6 {
        let (status, h, _) = send(&c, weir.mesh(), "x", "/slow-on/t1/5000", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(backend_of(&h), "t2");
    }
    assert!(t1.hits() >= 2, "t1 was tried {} times", t1.hits());
    // Without retries the requests that meet t1 get Kong's 504.
    assert!(weir.rewrite(&config(0)).await);
    let mut timed_out = 0;
    for _ in 0..6 {
        let (status, _, body) = send(&c, weir.mesh(), "x", "/slow-on/t1/5000", &[]).await;
        if status == 504 {
            assert_eq!(body, "upstream read timed out");
            timed_out += 1;
        } else {
            assert_eq!(status, 200);
        }
    }
    assert!(timed_out >= 2, "{timed_out} of 6 timed out");
    // A slow answer within the timeout between reads is waited for.
    let (status, _, _) = send(&c, weir.mesh(), "x", "/delay/50", &[]).await;
    assert_eq!(status, 200);
}

#[test]
fn comments_and_ignored_fields_load_as_kong_loads_them() {
    // Kong lets every entity of a declarative file carry `_comment` and `_ignore`.
    let yaml = r#"_format_version: "3.0"
_comment: generated by deck
_ignore: [anything, {goes: here}]
services:
- name: api
  _comment: the API
  url: http://api-upstream
  routes:
  - name: api
    _comment: ["one", "two"]
    paths: [/api]
    plugins:
    - name: rate-limiting
      _ignore: {note: kept out}
      config: {minute: 5, policy: local}
upstreams:
- name: api-upstream
  _comment: pool
  targets:
  - target: 127.0.0.1:8080
    _comment: the only one
"#;
    let set = weir::config::parse_set("kong.yaml", yaml).unwrap();
    weir::config::validate(&set, "127.0.0.1:15001".parse().unwrap()).unwrap();
    // Elsewhere an unknown field is still an error.
    let bad = yaml.replace("_comment: pool", "comment: pool");
    let errors = weir::config::parse_set("kong.yaml", &bad).unwrap_err();
    assert!(
        errors[0].to_string().contains("unknown field `comment`"),
        "{}",
        errors[0]
    );
}

#[tokio::test]
async fn configs_as_kong_and_the_seed_write_them_load() {
    let b = Backend::start("svc").await;
    let warnings = |yaml: &str| {
        let set = weir::config::parse_set("k.yaml", yaml).unwrap();
        weir::config::validate(&set, "127.0.0.1:15001".parse().unwrap())
            .unwrap()
            .warnings
    };
    // A service without a name, as Kong allows: its routes still reach it.
    let unnamed = format!(
        "_format_version: \"3.0\"\nservices:\n- url: http://127.0.0.1:{}\n  routes:\n  - paths: [/a]\n",
        b.addr.port()
    );
    let weir = Weir::start(&unnamed).await;
    let (status, h, _) = get(weir.mesh(), "any.example", "/a/x", &[]).await;
    assert_eq!((status.as_u16(), backend_of(&h).as_str()), (200, "svc"));
    // The seed's circuit-breaker snippet alone: its metadata-only KongService is the
    // Kubernetes Service of that name, said so.
    let seed = warnings(SEED_BREAKER);
    assert!(
        seed.iter()
            .any(|w| w.contains("KongService `api-service` has no spec") && w.contains("port 80")),
        "{seed:?}"
    );
    // A KongPlugin nothing attaches, naming a plugin weir does not run: loads, with a warning.
    let lone = warnings(
        "apiVersion: configuration.konghq.com/v1\nkind: KongPlugin\nmetadata: {name: auth}\nplugin: oauth2\n",
    );
    assert!(
        lone.iter()
            .any(|w| w.contains("KongPlugin `auth` is attached to nothing")
                && w.contains("`oauth2`")),
        "{lone:?}"
    );
}

#[tokio::test]
async fn paths_of_older_formats_that_are_regexes_are_regexes() {
    let b = Backend::start("svc").await;
    let yaml = |version: &str| {
        format!(
            "_format_version: \"{version}\"
services:
- name: users
  url: http://127.0.0.1:{}
  routes:
  - name: profile
    paths: [\"/users/\\\\d+/profile\", /plain]
",
            b.addr.port()
        )
    };
    // 1.1 (and 2.1): Kong 3 reads the first path as the regex it was (`~/users/\\d+/profile`).
    let weir = Weir::start(&yaml("1.1")).await;
    for (path, status) in [
        ("/users/42/profile", 200),
        ("/users/x/profile", 404),
        ("/plain/a", 200),
    ] {
        let (s, _, _) = get(weir.mesh(), "any.example", path, &[]).await;
        assert_eq!(s, status, "1.1 {path}");
    }
    // 3.0: a path without `~` is a plain prefix.
    let weir = Weir::start(&yaml("3.0")).await;
    let (s, _, _) = get(weir.mesh(), "any.example", "/users/42/profile", &[]).await;
    assert_eq!(s, 404, "3.0");
}

#[tokio::test]
async fn kong_parts_weir_does_not_run_are_refused_with_the_reason() {
    let yaml = "_format_version: \"3.0\"
certificates:
- cert: cert
  key: key
vaults:
- name: env
  prefix: my-env
services:
- name: s
  url: http://127.0.0.1:8080
  routes:
  - name: r
    expression: 'http.path ^= \"/a\"'
";
    assert_rejected(
        yaml,
        &[
            "3:3: certificates are not supported: serve TLS with an Istio Gateway server's `tls`",
            "6:3: vaults are not supported: weir reads its secrets from files",
            "13:17: expression routes (the expressions router) are not supported",
        ],
    )
    .await;
}
