//! Connection-pool limits and outlier detection on real sockets: the Istio circuit-breaking
//! task (checked by counters and invariants, not percentages), ejection, half-open recovery,
//! every endpoint ejected, and panic mode.
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;

const HTTPBIN_DR: &str = "apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
";

fn httpbin(b: &Backend) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  resolution: STATIC
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]
---
{HTTPBIN_DR}",
        b.addr.port()
    )
}

/// fortio's `load -c workers -qps 0 -n calls`: each worker makes its share of the calls in
/// turn on its own keep-alive connection. Returns (200s, 503s), checking every 503 is weir's
/// overflow answer.
async fn load(weir: &Weir, workers: usize, calls: usize, path: &'static str) -> (usize, usize) {
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let addr = weir.mesh();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let (mut ok, mut shed) = (0, 0);
            for _ in 0..calls / workers {
                let (s, h, _) = send(&c, addr, "httpbin:8000", path, &[]).await;
                match s.as_u16() {
                    200 => ok += 1,
                    503 => {
                        assert_eq!(h.get("x-weir-overloaded").unwrap(), "true");
                        shed += 1;
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
            (ok, shed)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (ok, shed) = t.await.unwrap();
        total.0 += ok;
        total.1 += shed;
    }
    total
}

#[tokio::test]
async fn the_istio_circuit_breaking_task() {
    let b = Backend::start("httpbin").await;
    let weir = Weir::start(&httpbin(&b)).await;
    // fortio curl: one call.
    let (s, _, _) = get(weir.mesh(), "httpbin:8000", "/get", &[]).await;
    assert_eq!(s, 200);
    // -c 2 -n 20: almost all get through.
    let (ok2, shed2) = load(&weir, 2, 20, "/get").await;
    assert_eq!(ok2 + shed2, 20);
    assert!(ok2 >= 10, "{ok2} x 200, {shed2} x 503");
    // -c 3 -n 30 against a backend slow enough for the three to overlap: one is served, one
    // waits, the third is turned away at once.
    let (ok3, shed3) = load(&weir, 3, 30, "/delay/50").await;
    assert_eq!(ok3 + shed3, 30);
    assert!((8..=20).contains(&shed3), "{ok3} x 200, {shed3} x 503");
    assert!(ok3 >= 10, "{ok3} x 200, {shed3} x 503");
    // Nothing shed reached httpbin, and it never had two requests at once.
    assert_eq!(b.hits(), 1 + ok2 + ok3);
    assert_eq!(b.tries.max_in_flight.load(Ordering::SeqCst), 1);
    // The overflow counter counts exactly the 503s; some requests waited.
    let m = weir.metrics().await;
    let overflow =
        "weir_upstream_overflow_total{service=\"httpbin\",version=\"\",limit=\"pending\"}";
    assert_eq!(
        metric_value(&m, overflow),
        Some((shed2 + shed3) as f64),
        "{m}"
    );
    let pending = "weir_upstream_pending_total{service=\"httpbin\",version=\"\"}";
    assert!(metric_value(&m, pending).unwrap() >= 1.0, "{m}");
    // Overflow is not an upstream failure: with consecutive5xxErrors 1 and a 3 minute ejection,
    // counting it would have ejected httpbin.
    for i in 0..20 {
        let (s, _, _) = get(weir.mesh(), "httpbin:8000", "/get", &[]).await;
        assert_eq!(s, 200, "request {i} after the load");
    }
    let clusters = get(weir.admin(), "admin", "/clusters", &[]).await.2;
    assert!(
        clusters.contains("\"state\": \"closed\"") || clusters.contains("\"state\":\"closed\""),
        "{clusters}"
    );
}

/// Two endpoints `a` and `b` of `shop`, with `outlier` as the DestinationRule's
/// outlierDetection.
fn shop(a: &Backend, b: &Backend, outlier: &str) -> String {
    loopback_service("shop", "HTTP", &[a.addr.port(), b.addr.port()])
        + &format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop}}
spec:
  host: shop
  trafficPolicy:
    outlierDetection: {outlier}
"
        )
}

/// Sends `/fail/<name>` until the backend of that name has answered it once.
async fn fail_once(weir: &Weir, backend: &Backend) {
    let path = format!("/fail/{}", backend.name);
    let before = backend.hits();
    for _ in 0..10 {
        let _ = get(weir.mesh(), "shop", &path, &[]).await;
        if backend.hits() > before {
            return;
        }
    }
    panic!("{} never got a request", backend.name);
}

#[tokio::test]
async fn ejection_recovery_and_every_endpoint_ejected() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let od =
        "{consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 400ms, maxEjectionPercent: 100}";
    let weir = Weir::start(&shop(&a, &b, od)).await;
    fail_once(&weir, &a).await;
    // a is ejected: the next 40 go to b.
    let a_before = a.hits();
    for _ in 0..40 {
        let (s, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
        assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "b"));
    }
    assert_eq!(a.hits(), a_before);
    let clusters = get(weir.admin(), "admin", "/clusters", &[]).await.2;
    let v: serde_json::Value = serde_json::from_str(&clusters).unwrap();
    let eps = &v["clusters"][0]["endpoints"];
    let a_addr = a.addr.to_string();
    let a_ep = eps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == a_addr.as_str())
        .unwrap();
    assert_eq!(a_ep["state"], "open", "{clusters}");
    assert_eq!(a_ep["ejection_reason"], "consecutive_5xx");
    assert!(a_ep["back_in_ms"].as_u64().unwrap() <= 400);
    let m = weir.metrics().await;
    let state = format!(
        "weir_endpoint_state{{service=\"shop\",version=\"\",endpoint=\"{a_addr}\",state=\"open\"}}"
    );
    assert_eq!(metric_value(&m, &state), Some(1.0), "{m}");
    let ejections = format!(
        "weir_outlier_ejections_total{{service=\"shop\",version=\"\",endpoint=\"{a_addr}\",reason=\"consecutive_5xx\"}}"
    );
    assert_eq!(metric_value(&m, &ejections), Some(1.0), "{m}");

    // After the ejection time a takes a probe; its success closes it and traffic is shared.
    tokio::time::sleep(Duration::from_millis(450)).await;
    for _ in 0..10 {
        let (s, _, _) = get(weir.mesh(), "shop", "/", &[]).await;
        assert_eq!(s, 200);
    }
    assert!(a.hits() > a_before, "a never came back");
    let m = weir.metrics().await;
    let closed = format!(
        "weir_endpoint_state{{service=\"shop\",version=\"\",endpoint=\"{a_addr}\",state=\"closed\"}}"
    );
    assert_eq!(metric_value(&m, &closed), Some(1.0), "{m}");

    // Both fail once: both ejected, and weir answers 503 itself without forwarding.
    fail_once(&weir, &a).await;
    fail_once(&weir, &b).await;
    let hits = (a.hits(), b.hits());
    let (s, _, body) = get(weir.mesh(), "shop", "/", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (503, "no healthy upstream"));
    assert_eq!(
        (a.hits(), b.hits()),
        hits,
        "a request reached an ejected endpoint"
    );
}

#[tokio::test]
async fn panic_mode_and_max_ejection_percent() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    // minHealthPercent 50: with both ejected the pool is used anyway.
    let od = "{consecutive5xxErrors: 1, baseEjectionTime: 1m, maxEjectionPercent: 100, minHealthPercent: 50}";
    let weir = Weir::start(&shop(&a, &b, od)).await;
    fail_once(&weir, &a).await;
    fail_once(&weir, &b).await;
    let (s, _, _) = get(weir.mesh(), "shop", "/", &[]).await;
    assert_eq!(s, 200, "panic mode routes to the ejected endpoints");
    // maxEjectionPercent 50 of two: only one is ever ejected.
    let od = "{consecutive5xxErrors: 1, baseEjectionTime: 1m, maxEjectionPercent: 50}";
    let weir = Weir::start(&shop(&a, &b, od)).await;
    fail_once(&weir, &a).await;
    fail_once(&weir, &b).await;
    for _ in 0..10 {
        let (s, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
        assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "b"));
    }
}

#[tokio::test]
async fn a_reload_without_outlier_detection_brings_ejected_endpoints_back() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let od = "{consecutive5xxErrors: 1, baseEjectionTime: 1m, maxEjectionPercent: 100}";
    let weir = Weir::start(&shop(&a, &b, od)).await;
    fail_once(&weir, &a).await;
    let before = a.hits();
    for _ in 0..4 {
        get(weir.mesh(), "shop", "/", &[]).await;
    }
    assert_eq!(a.hits(), before, "a is ejected");
    let plain = shop(&a, &b, "{}").replace("    outlierDetection: {}\n", "");
    let plain = plain.replace("  trafficPolicy:\n", "");
    assert!(weir.rewrite(&plain).await);
    for _ in 0..4 {
        let (s, _, _) = get(weir.mesh(), "shop", "/", &[]).await;
        assert_eq!(s, 200);
    }
    assert_eq!(a.hits(), before + 2, "round robin includes a again");
}
