//! Hot reload: bad configs are rejected whole and the old one keeps serving (also across a
//! restart, from the state directory); reloading under load fails no request; Gateway
//! listeners follow the config.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use support::*;

fn split(v1: &Backend, v2: &Backend, w1: u32, w2: u32) -> String {
    service_entry("api", &[("v1", v1), ("v2", v2)])
        + &destination_rule("api", &["v1", "v2"])
        + &format!(
            "apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {{name: api}}
spec:
  hosts: [api]
  http:
  - route:
    - {{destination: {{host: api, subset: v1}}, weight: {w1}}}
    - {{destination: {{host: api, subset: v2}}, weight: {w2}}}
"
        )
}

#[tokio::test]
async fn bad_reload_keeps_serving() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let weir = Weir::start(&split(&v1, &v2, 100, 0)).await;
    let generation = weir.generation();
    let bad = split(&v1, &v2, 0, 100).replace("subset: v2", "subset: v9");
    assert!(
        !weir.rewrite(&bad).await,
        "an undefined subset must be rejected"
    );
    assert_eq!(weir.generation(), generation);
    assert_eq!(weir.reload_failures().await, 1);
    for _ in 0..20 {
        let (s, h, _) = get(weir.mesh(), "api", "/", &[]).await;
        assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "v1"));
    }
    assert!(!weir.rewrite("kind: [unclosed\n").await);
    assert_eq!(weir.reload_failures().await, 2);
    assert!(weir.rewrite(&split(&v1, &v2, 0, 100)).await);
    let (_, h, _) = get(weir.mesh(), "api", "/", &[]).await;
    assert_eq!(backend_of(&h), "v2");
    let m = weir.metrics().await;
    assert_eq!(
        metric_value(&m, "weir_config_reloads_total{result=\"success\"}"),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_restart_with_bad_files_serves_the_last_good_config() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let state = scratch_dir();
    let weir = Weir::start_with_state(&split(&v1, &v2, 100, 0), Some(state.clone())).await;
    // Broken while weir runs: rejected, and the good one stays the one kept.
    let bad = split(&v1, &v2, 0, 100).replace("subset: v2", "subset: v9");
    assert!(!weir.rewrite(&bad).await);
    let weir = weir.restart().await;
    assert_eq!(weir.reload_failures().await, 1);
    let c = client();
    for _ in 0..10 {
        let (status, h, _) = send(&c, weir.mesh(), "api", "/", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(backend_of(&h), "v1");
    }
    // Fixed files are picked up as usual, and kept in turn.
    assert!(weir.rewrite(&split(&v1, &v2, 0, 100)).await);
    let (_, h, _) = send(&c, weir.mesh(), "api", "/", &[]).await;
    assert_eq!(backend_of(&h), "v2");
    std::fs::write(&weir.config, "kind: [").unwrap();
    let weir = weir.restart().await;
    let (_, h, _) = send(&c, weir.mesh(), "api", "/", &[]).await;
    assert_eq!(backend_of(&h), "v2");
    // Without a state directory there is nothing to fall back on: weir does not start.
    let opts = weir::run::Options {
        fleet: None,
        configs: vec![weir.config.clone()],
        admin: "127.0.0.1:0".parse().unwrap(),
        mesh: "127.0.0.1:0".parse().unwrap(),
        state_dir: None,
        admin_token: None,
        policy: weir::edge::ServerPolicy::default(),
        access_log: None,
    };
    assert!(matches!(
        weir::run::Server::start(opts, None).await,
        Err(weir::run::StartError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_nothing() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let weir = Arc::new(Weir::start(&split(&v1, &v2, 100, 0)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (weir, stop, ok) = (weir.clone(), stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            // Half the clients keep connections alive, half open one per request.
            let keep = client();
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let c = if i % 2 == 0 { keep.clone() } else { client() };
                let (s, _, body) = send(&c, weir.mesh(), "api", "/", &[]).await;
                if s == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failures.push(format!("{s}: {body}"));
                }
            }
            failures
        }));
    }
    let start = weir.generation();
    for i in 0..40u32 {
        let w = (i * 25) % 101;
        let cfg = split(&v1, &v2, 100 - w, w.max(1));
        weir.server
            .apply(weir::control::Change::Replace(
                weir::config::parse_set("<test>", &cfg).unwrap(),
            ))
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // And through the file watcher too.
    for w in [10, 90, 50] {
        assert!(weir.rewrite(&split(&v1, &v2, 100 - w, w)).await);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let failures = c.await.unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert!(weir.generation() >= start + 43);
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too little traffic to mean anything"
    );
}

#[tokio::test]
async fn gateway_listeners_follow_the_config() {
    let b = Backend::start("web").await;
    let port = free_port();
    let base = service_entry("web", &[("v1", &b)]);
    let with_gateway = base.clone()
        + &format!(
            "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [\"*\"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web-edge}}
spec:
  hosts: [\"www.example.com\"]
  gateways: [edge]
  http:
  - route: [{{destination: {{host: web}}}}]
"
        );
    let weir = Weir::start(&base).await;
    let gw: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(tokio::net::TcpStream::connect(gw).await.is_err());
    assert!(weir.rewrite(&with_gateway).await);
    let (s, h, body) = get(
        gw,
        "www.example.com",
        "/",
        &[
            ("x-forwarded-proto", "https"),
            ("x-envoy-upstream-rq-timeout-ms", "1"),
        ],
    )
    .await;
    assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "web"));
    // At the edge, x-forwarded-proto is weir's to set, and Envoy's headers are dropped.
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"], "http");
    assert!(
        echo["headers"]
            .get("x-envoy-upstream-rq-timeout-ms")
            .is_none()
    );
    // The gateway's VirtualService is not served on the mesh listener.
    let (s, _, _) = get(weir.mesh(), "www.example.com", "/", &[]).await;
    assert_eq!(s, 404);
    assert!(weir.rewrite(&base).await);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(gw).await.is_err());
}

#[tokio::test]
async fn the_config_endpoint_and_a_gauge_tell_when_the_files_were_rejected() {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let weir = Weir::start(&split(&v1, &v2, 100, 0)).await;
    let config = |weir: &Weir| {
        let admin = weir.admin();
        async move {
            let (s, _, body) = get(admin, "admin", "/config", &[]).await;
            assert_eq!(s, 200);
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    let last_ok = |m: &str| metric_value(m, "weir_config_last_reload_successful");
    assert_eq!(config(&weir).await["lastAttempt"]["result"], "applied");
    assert_eq!(last_ok(&weir.metrics().await), Some(1.0));
    // A Gateway whose port is taken: rejected, at the Gateway's place in the file.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let gateway = split(&v1, &v2, 100, 0) + "---\n" + &loopback_gateway("edge", port);
    assert!(!weir.rewrite(&gateway).await);
    let c = config(&weir).await;
    assert_eq!(c["lastAttempt"]["result"], "rejected", "{c:#}");
    let error = c["lastAttempt"]["errors"][0].as_str().unwrap();
    let line = gateway.lines().position(|l| l == "kind: Gateway").unwrap();
    let place = format!(
        "{}:{line}:1: Gateway `edge` cannot listen on 127.0.0.1:{port}",
        weir.config.display()
    );
    assert!(error.starts_with(&place), "{error}\nwanted {place}");
    assert_eq!(last_ok(&weir.metrics().await), Some(0.0));
    // A rollout's weights change no resource: they do not hide the rejection.
    weir.server
        .apply(weir::control::Change::Weights)
        .await
        .unwrap();
    assert_eq!(config(&weir).await["lastAttempt"]["result"], "rejected");
    assert_eq!(last_ok(&weir.metrics().await), Some(0.0));
    // The old configuration kept serving; a good one is applied and said so.
    assert_eq!(c["generation"], 1);
    assert!(weir.rewrite(&split(&v1, &v2, 0, 100)).await);
    assert_eq!(config(&weir).await["lastAttempt"]["result"], "applied");
    assert_eq!(last_ok(&weir.metrics().await), Some(1.0));
}
