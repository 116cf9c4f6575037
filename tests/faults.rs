//! Fault injection on real sockets: the Istio fault-injection task's rules, percentages, the
//! kill switch (admin API and CLI).
mod support;

use std::time::{Duration, Instant};

use support::*;

fn ratings(backend: &Backend, fault: &str) -> String {
    service_entry("ratings", &[("v1", backend)])
        + &destination_rule("ratings", &["v1"])
        + &format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ratings}}
spec:
  hosts: [ratings]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    fault:
{fault}
    route: [{{destination: {{host: ratings, subset: v1}}}}]
  - route: [{{destination: {{host: ratings, subset: v1}}}}]
"
        )
}

async fn post(weir: &Weir, path: &str) -> String {
    let (status, body) = weir::admin::call(weir.admin(), "POST", path).await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn abort_is_answered_by_weir_and_never_forwarded() {
    let backend = Backend::start("ratings-v1").await;
    let cfg = ratings(
        &backend,
        "      abort: {percentage: {value: 100.0}, httpStatus: 500}",
    );
    let weir = Weir::start(&cfg).await;
    let jason = [("end-user", "jason")];
    for _ in 0..5 {
        let (s, _, body) = get(weir.mesh(), "ratings", "/ratings/0", &jason).await;
        assert_eq!((s.as_u16(), body.as_str()), (500, "fault filter abort"));
    }
    assert_eq!(backend.hits(), 0, "an aborted request reached the backend");
    let (s, h, _) = get(
        weir.mesh(),
        "ratings",
        "/ratings/0",
        &[("end-user", "Jason")],
    )
    .await;
    assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "ratings-v1"));
    let m = weir.metrics().await;
    let series = "weir_faults_injected_total{service=\"ratings\",kind=\"abort\"}";
    assert_eq!(metric_value(&m, series), Some(5.0), "{m}");
    let series = "http_requests_total{service=\"ratings\",version=\"v1\",status=\"500\",method=\"GET\",route=\"ratings/0\"}";
    assert_eq!(metric_value(&m, series), Some(5.0), "{m}");
}

#[tokio::test]
async fn the_kill_switch_stops_aborts_and_cuts_delays_short() {
    let backend = Backend::start("ratings-v1").await;
    let cfg = ratings(
        &backend,
        "      abort: {percentage: {value: 100.0}, httpStatus: 503}",
    );
    let weir = Weir::start(&cfg).await;
    let jason = [("end-user", "jason")];
    assert!(
        post(&weir, "/faults/disable")
            .await
            .contains("\"enabled\": false")
    );
    let (s, _, _) = get(weir.mesh(), "ratings", "/", &jason).await;
    assert_eq!(s, 200, "fault injected while switched off");
    // The switch survives a reload.
    assert!(weir.rewrite(&cfg.replace("503", "502")).await);
    let (s, _, _) = get(weir.mesh(), "ratings", "/", &jason).await;
    assert_eq!(s, 200);
    post(&weir, "/faults/enable").await;
    let (s, _, _) = get(weir.mesh(), "ratings", "/", &jason).await;
    assert_eq!(s, 502);

    // A long delay under way ends when the switch is turned off.
    assert!(
        weir.rewrite(&ratings(
            &backend,
            "      delay: {percentage: {value: 100.0}, fixedDelay: 60s}"
        ))
        .await
    );
    let started = Instant::now();
    let mesh = weir.mesh();
    let waiting =
        tokio::spawn(async move { get(mesh, "ratings", "/", &[("end-user", "jason")]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = weir::admin::call(weir.admin(), "GET", "/faults")
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("fixedDelay") && body.contains("\"enabled\": true"),
        "{body}"
    );
    // The CLI does the same as the admin call (run off the runtime: this weir lives on it).
    let admin = weir.admin().to_string();
    let out = weir_cli(["faults", "disable", "--admin", &admin]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, h, _) = waiting.await.unwrap();
    assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "ratings-v1"));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the delay was not cut short"
    );
}

#[tokio::test]
async fn delays_happen_before_forwarding_and_only_for_the_matching_rule() {
    let backend = Backend::start("ratings-v1").await;
    // The legacy integer form of the task's older published copy.
    let cfg = ratings(&backend, "      delay: {fixedDelay: 0.3s, percent: 100}");
    let weir = Weir::start(&cfg).await;
    let started = Instant::now();
    let (s, _, _) = get(weir.mesh(), "ratings", "/", &[("end-user", "jason")]).await;
    assert_eq!(s, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let m = weir.metrics().await;
    let series = "weir_faults_injected_total{service=\"ratings\",kind=\"delay\"}";
    assert_eq!(metric_value(&m, series), Some(1.0), "{m}");
    let (s, _, _) = get(weir.mesh(), "ratings", "/", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(metric_value(&weir.metrics().await, series), Some(1.0));
}

#[tokio::test]
async fn abort_percentages_hold_over_many_requests() {
    let backend = Backend::start("ratings-v1").await;
    let cfg = ratings(
        &backend,
        "      abort: {percentage: {value: 10}, httpStatus: 503}",
    );
    let weir = Weir::start(&cfg).await;
    let c = client();
    let mut aborted = 0;
    for _ in 0..1000 {
        let (s, _, _) = send(&c, weir.mesh(), "ratings", "/", &[("end-user", "jason")]).await;
        aborted += usize::from(s == 503);
    }
    // 10 % of 1000: mean 100, sigma 9.5; the band is six sigma wide each way.
    assert!((43..=157).contains(&aborted), "{aborted}");
    assert_eq!(backend.hits(), 1000 - aborted);
}

#[tokio::test]
async fn bad_fault_configs_are_rejected_with_positions() {
    let backend = Backend::start("ratings-v1").await;
    let weir = Weir::start(&ratings(
        &backend,
        "      abort: {percentage: {value: 1}, httpStatus: 500}",
    ))
    .await;
    for bad in [
        "      abort: {percentage: {value: 150}, httpStatus: 500}",
        "      abort: {percentage: {value: 5}, grpcStatus: NOT_A_STATUS}",
        "      delay: {percentage: {value: 5}}",
        "      abort: {percentage: {value: 5}, httpStatus: 42}",
    ] {
        assert!(
            !weir.rewrite(&ratings(&backend, bad)).await,
            "{bad} accepted"
        );
    }
}

#[tokio::test]
async fn a_client_leaving_during_a_delay_is_never_forwarded() {
    use tokio::io::AsyncWriteExt;
    let backend = Backend::start("ratings-v1").await;
    let cfg = ratings(
        &backend,
        "      delay: {percentage: {value: 100}, fixedDelay: 60s}",
    );
    let weir = Weir::start(&cfg).await;
    let mut s = tokio::net::TcpStream::connect(weir.mesh()).await.unwrap();
    s.write_all(b"GET /ratings/0 HTTP/1.1\r\nhost: ratings\r\nend-user: jason\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    // The request ends as the client leaves (counted as 499), not when the delay would.
    let series = "http_requests_total{service=\"ratings\",version=\"v1\",status=\"499\",method=\"GET\",route=\"ratings/0\"}";
    let mut counted = None;
    for _ in 0..100 {
        counted = metric_value(&weir.metrics().await, series);
        if counted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, Some(1.0));
    // Were it still waiting, switching faults off would release it to the backend now.
    post(&weir, "/faults/disable").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(backend.hits(), 0, "the request reached the backend");
}
