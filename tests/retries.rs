//! Retries and timeouts on real sockets: the Istio retries page's checks (attempts, retryOn,
//! perTryTimeout, the default policy, previous hosts), body replay, the idempotency rule and
//! the retry budget.
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;

/// A ServiceEntry `flaky` with one endpoint per port (protocol HTTP or HTTP2), and a
/// VirtualService whose one rule carries `policy` (YAML lines at rule level).
fn config(ports: &[u16], protocol: &str, policy: &str) -> String {
    loopback_service("flaky", protocol, ports)
        + &format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: flaky}}
spec:
  hosts: [flaky]
  http:
  - route: [{{destination: {{host: flaky}}}}]
{policy}
"
        )
}

/// A port nothing listens on (connections are refused).
async fn refused_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// GET with a known request id; returns the status and how many tries `b` saw of it.
async fn tries_of(weir: &Weir, b: &Backend, path: &str, id: &str) -> (u16, usize) {
    let (s, _, _) = get(weir.mesh(), "flaky", path, &[("x-request-id", id)]).await;
    (s.as_u16(), b.tries.of(id))
}

#[tokio::test]
async fn attempts_and_retry_on() {
    let b = Backend::start("flaky").await;
    let port = b.addr.port();
    let weir = Weir::start(&config(&[port], "HTTP", "    retries: {attempts: 3}")).await;
    // Two 503s then 200: three tries. Ten 503s: 1 + attempts tries, then the 503.
    assert_eq!(tries_of(&weir, &b, "/flaky/2/503", "a").await, (200, 3));
    assert_eq!(tries_of(&weir, &b, "/flaky/10/503", "b").await, (503, 4));
    // retryOn unset keeps the default conditions: 500 is not one of them.
    assert_eq!(tries_of(&weir, &b, "/flaky/10/500", "c").await, (500, 1));

    let gw = "    retries: {attempts: 3, retryOn: 'gateway-error,connect-failure,refused-stream'}";
    assert!(weir.rewrite(&config(&[port], "HTTP", gw)).await);
    assert_eq!(tries_of(&weir, &b, "/flaky/10/500", "d").await, (500, 1));
    for (i, code) in [502, 503, 504].iter().enumerate() {
        let id = format!("e{i}");
        let path = format!("/flaky/10/{code}");
        assert_eq!(tries_of(&weir, &b, &path, &id).await, (*code, 4));
    }
    // Bare status codes and retriable-4xx.
    let codes = "    retries: {attempts: 2, retryOn: '500,retriable-4xx'}";
    assert!(weir.rewrite(&config(&[port], "HTTP", codes)).await);
    assert_eq!(tries_of(&weir, &b, "/flaky/1/500", "f").await, (200, 2));
    assert_eq!(tries_of(&weir, &b, "/flaky/1/409", "g").await, (200, 2));
    assert_eq!(tries_of(&weir, &b, "/flaky/1/502", "h").await, (502, 1));
    // attempts 0: no retries at all (not "the default").
    let off = "    retries: {attempts: 0}";
    assert!(weir.rewrite(&config(&[port], "HTTP", off)).await);
    assert_eq!(tries_of(&weir, &b, "/flaky/10/503", "i").await, (503, 1));

    let m = weir.metrics().await;
    let series =
        |r: &str| format!("weir_retries_total{{service=\"flaky\",version=\"\",result=\"{r}\"}}");
    // Retries that succeeded: a's last, f's, g's.
    assert_eq!(metric_value(&m, &series("success")), Some(3.0), "{m}");
    assert!(metric_value(&m, &series("failure")).unwrap() >= 10.0, "{m}");
}

#[tokio::test]
async fn the_default_policy_retries_connect_failures_and_503_on_another_host() {
    let b = Backend::start("healthy").await;
    let dead = refused_port().await;
    // No retries block: Istio's default policy.
    let weir = Weir::start(&config(&[dead, b.addr.port()], "HTTP", "")).await;
    for i in 0..20 {
        let (s, h, _) = get(weir.mesh(), "flaky", "/", &[]).await;
        assert_eq!(
            (s.as_u16(), backend_of(&h).as_str()),
            (200, "healthy"),
            "request {i}"
        );
    }
    // 503 retried twice, 500 not at all.
    let weir = Weir::start(&config(&[b.addr.port()], "HTTP", "")).await;
    assert_eq!(tries_of(&weir, &b, "/flaky/10/503", "x").await, (503, 3));
    assert_eq!(tries_of(&weir, &b, "/flaky/10/500", "y").await, (500, 1));
}

#[tokio::test]
async fn retries_go_to_another_host() {
    let bad = Backend::start("bad").await;
    let good = Backend::start("good").await;
    let weir = Weir::start(&config(&[bad.addr.port(), good.addr.port()], "HTTP", "")).await;
    for i in 0..20 {
        let (s, h, _) = get(weir.mesh(), "flaky", "/status/503", &[]).await;
        // The good backend answers /status/503 with 503 too: what matters is who answered
        // last, and that no request took more than two tries.
        assert_eq!(s.as_u16(), 503, "request {i}");
        let _ = h;
    }
    // Every request tried both hosts once before its last try: never the same host twice in a
    // row, so each host saw between 20 and 40 of the 60 tries.
    let (nb, ng) = (bad.hits(), good.hits());
    assert_eq!(nb + ng, 60);
    assert!((20..=40).contains(&nb), "bad {nb} good {ng}");
    // With one host that always fails and one that works, every request succeeds, and the
    // failing host sees each request at most once.
    let policy = "    retries: {attempts: 2, retryOn: 5xx}";
    let weir = Weir::start(&config(
        &[bad.addr.port(), good.addr.port()],
        "HTTP",
        policy,
    ))
    .await;
    let before = bad.hits();
    for i in 0..20 {
        let (s, h, _) = get(weir.mesh(), "flaky", "/fail/bad", &[]).await;
        assert_eq!(
            (s.as_u16(), backend_of(&h).as_str()),
            (200, "good"),
            "request {i}"
        );
    }
    assert!(bad.hits() - before <= 20);
}

#[tokio::test]
async fn per_try_timeout_and_the_request_timeout_bounding_all_tries() {
    let b = Backend::start("slow").await;
    let port = b.addr.port();
    let policy = "    retries: {attempts: 3, perTryTimeout: 200ms, retryOn: gateway-error}";
    let weir = Weir::start(&config(&[port], "HTTP", policy)).await;
    // The first try hangs and is cut at 200 ms; the second answers at once.
    let t = Instant::now();
    let (s, _) = tries_of(&weir, &b, "/slow-first/3000", "a").await;
    let took = t.elapsed();
    assert_eq!((s, b.tries.of("a")), (200, 2));
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");

    // timeout 500ms over tries of 300ms against a backend that always takes 3 s: 504 at the
    // request's deadline, after at most two tries.
    let policy = "    timeout: 500ms\n    retries: {attempts: 3, perTryTimeout: 300ms, retryOn: gateway-error}";
    assert!(weir.rewrite(&config(&[port], "HTTP", policy)).await);
    let t = Instant::now();
    let (s, n) = tries_of(&weir, &b, "/delay/3000", "b").await;
    let took = t.elapsed();
    assert_eq!(s, 504);
    assert!((1..=2).contains(&n), "{n} tries");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
}

#[tokio::test]
async fn bodies_are_replayed_and_unsafe_requests_are_not_retried_once_sent() {
    let b = Backend::start("echo").await;
    let port = b.addr.port();
    let weir = Weir::start(&config(
        &[port],
        "HTTP",
        "    retries: {attempts: 2, retryOn: 5xx}",
    ))
    .await;
    let c = client();
    let body: String = (0..10 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let post = |id: &'static str, key: Option<&'static str>, body: String, path: &'static str| {
        let c = c.clone();
        let addr = weir.mesh();
        async move {
            let mut h = vec![("x-request-id", id)];
            if let Some(k) = key {
                h.push(("idempotency-key", k));
            }
            request(&c, addr, "POST", "flaky", path, &h, Bytes::from(body)).await
        }
    };
    // With an idempotency key, the POST is retried and the second try gets the same body.
    let (s, _, echoed) = post("a", Some("k1"), body.clone(), "/flaky/1/503").await;
    assert_eq!((s.as_u16(), b.tries.of("a")), (200, 2));
    let echoed: serde_json::Value = serde_json::from_str(&echoed).unwrap();
    assert_eq!(echoed["try"], 2);
    assert_eq!(echoed["body"].as_str().unwrap(), body);
    // Without one, a POST that reached the upstream is not sent again.
    let (s, _, _) = post("b", None, body.clone(), "/flaky/1/503").await;
    assert_eq!((s.as_u16(), b.tries.of("b")), (503, 1));
    // A body larger than the replay bound is forwarded whole, and not retried.
    let big: String = "x".repeat(100 * 1024);
    let (s, _, echoed) = post("c", Some("k2"), big.clone(), "/flaky/1/503").await;
    assert_eq!((s.as_u16(), b.tries.of("c")), (503, 1));
    let _ = echoed;
    let (s, _, echoed) = post("d", Some("k3"), big.clone(), "/").await;
    let echoed: serde_json::Value = serde_json::from_str(&echoed).unwrap();
    assert_eq!(
        (s.as_u16(), echoed["body"].as_str().unwrap().len()),
        (200, big.len())
    );

    // Chunked bodies (no length known up front): a small one is kept and replayed, a large
    // one is forwarded whole (what was read while trying to keep it, then the rest).
    let chunked = |id: &str, body: &str| {
        let mut raw_req = format!(
            "POST /flaky/1/503 HTTP/1.1\r\nhost: flaky\r\nx-request-id: {id}\r\nidempotency-key: {id}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        for part in body.as_bytes().chunks(8000) {
            raw_req.push_str(&format!(
                "{:x}\r\n{}\r\n",
                part.len(),
                String::from_utf8_lossy(part)
            ));
        }
        raw_req.push_str("0\r\n\r\n");
        raw_req
    };
    let answer = raw(weir.mesh(), &chunked("f", &body)).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..100.min(answer.len())]
    );
    assert_eq!(b.tries.of("f"), 2);
    assert!(answer.contains(&body));
    let answer = raw(weir.mesh(), &chunked("g", &big)).await;
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "{}",
        &answer[..100.min(answer.len())]
    );
    assert_eq!(b.tries.of("g"), 1);
    assert!(
        answer.contains(&big),
        "the large chunked body arrived whole"
    );

    // The route may opt in (weir's retryNonIdempotent).
    let opt_in = "    retries: {attempts: 2, retryOn: 5xx, retryNonIdempotent: true}";
    assert!(weir.rewrite(&config(&[port], "HTTP", opt_in)).await);
    let (s, _, _) = post("e", None, body.clone(), "/flaky/1/503").await;
    assert_eq!((s.as_u16(), b.tries.of("e")), (200, 2));
}

#[tokio::test]
async fn unsafe_requests_are_retried_when_they_never_reached_an_upstream() {
    let b = Backend::start("healthy").await;
    let dead = refused_port().await;
    let weir = Weir::start(&config(&[dead, b.addr.port()], "HTTP", "")).await;
    let c = client();
    for i in 0..10 {
        let (s, h, echoed) = request(
            &c,
            weir.mesh(),
            "POST",
            "flaky",
            "/",
            &[],
            Bytes::from_static(b"payment"),
        )
        .await;
        assert_eq!(
            (s.as_u16(), backend_of(&h).as_str()),
            (200, "healthy"),
            "{i}"
        );
        assert!(echoed.contains("\"body\":\"payment\""), "{echoed}");
    }
    assert_eq!(b.hits(), 10, "each POST reached the upstream once");
}

#[tokio::test]
async fn http2_upstream_requests_are_rebuilt_for_retries() {
    let b = Backend::start("h2").await;
    let weir = Weir::start(&config(
        &[b.addr.port()],
        "HTTP2",
        "    retries: {attempts: 2}",
    ))
    .await;
    let (s, _, echoed) = get(
        weir.mesh(),
        "flaky",
        "/flaky/1/503",
        &[("x-request-id", "h")],
    )
    .await;
    assert_eq!((s.as_u16(), b.tries.of("h")), (200, 2));
    assert!(echoed.contains("HTTP/2.0"), "{echoed}");
}

#[tokio::test]
async fn the_retry_budget_stops_a_retry_storm() {
    let b = Backend::start("down").await;
    let weir = Weir::start(&config(
        &[b.addr.port()],
        "HTTP",
        "    retries: {attempts: 3, retryOn: 5xx}",
    ))
    .await;
    // 500 requests at concurrency 10 against a backend that fails them all. Without a budget it
    // would see 2,000; the budget allows 20 % of 500 or the floor of 100 per 10 s window.
    let n = 500;
    let c = client();
    let mut tasks = Vec::new();
    for w in 0..10 {
        let (c, addr) = (c.clone(), weir.mesh());
        tasks.push(tokio::spawn(async move {
            for i in 0..n / 10 {
                let (s, _, _) = send(&c, addr, "flaky", "/status/503", &[]).await;
                assert_eq!(s.as_u16(), 503, "worker {w} request {i}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = b.hits();
    assert!(
        (n..=n + 100).contains(&seen),
        "backend saw {seen} for {n} requests"
    );
    let m = weir.metrics().await;
    let exhausted =
        "weir_retries_total{service=\"flaky\",version=\"\",result=\"budget_exhausted\"}";
    // Each request past the budget is counted once, when its first retry is refused.
    let refused = metric_value(&m, exhausted).unwrap();
    assert!(refused >= 400.0, "{m}");
}
