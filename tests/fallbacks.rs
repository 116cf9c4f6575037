//! Fallbacks on real sockets: the stale cache, a backup service and a fixed response, for
//! 5xx, timeouts, refused connections and no healthy upstream.
mod support;

use support::*;

/// `shop` (endpoints `primary`) and `backup`, and a VirtualService rule with `rule` lines.
fn config(primary: &[u16], backup: u16, rule: &str) -> String {
    loopback_service("shop", "HTTP", primary)
        + &loopback_service("backup", "HTTP", &[backup])
        + &format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [shop]
  http:
  - name: items
    route: [{{destination: {{host: shop}}}}]
{rule}
"
        )
}

const STATIC: &str = "      response:
        status: 200
        body: {string: '{\"items\": []}'}
        headers: {content-type: application/json}";

#[tokio::test]
async fn the_last_good_response_is_served_when_the_service_is_down() {
    let primary = Backend::start("primary").await;
    let backup = Backend::start("backup").await;
    let rule = format!("    fallback:\n      staleCache: {{maxAge: 10m}}\n{STATIC}");
    let weir = Weir::start(&config(&[primary.addr.port()], backup.addr.port(), &rule)).await;
    let (s, h, fresh) = get(weir.mesh(), "shop", "/items/7", &[]).await;
    assert_eq!((s.as_u16(), h.get("x-weir-fallback")), (200, None));
    // The service goes away: its connections are refused.
    drop(primary);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let (s, h, stale) = get(weir.mesh(), "shop", "/items/7", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(h.get("x-weir-fallback").unwrap(), "stale-cache");
    assert_eq!(backend_of(&h), "primary");
    assert!(h.get("age").is_some());
    assert_eq!(stale, fresh);
    // A GET never answered before falls through to the fixed response.
    let (s, h, body) = get(weir.mesh(), "shop", "/items/8", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (200, "{\"items\": []}"));
    assert_eq!(h.get("x-weir-fallback").unwrap(), "static");
    assert_eq!(h.get("content-type").unwrap(), "application/json");
    let m = weir.metrics().await;
    for kind in ["stale-cache", "static"] {
        let series = format!("weir_fallbacks_total{{service=\"shop\",kind=\"{kind}\"}}");
        assert_eq!(metric_value(&m, &series), Some(1.0), "{m}");
    }
    assert_eq!(backup.hits(), 0);
}

#[tokio::test]
async fn a_backup_service_takes_what_the_primary_fails() {
    let primary = Backend::start("primary").await;
    let backup = Backend::start("backup").await;
    let rule = "    fallback:\n      destination: {host: backup}";
    let weir = Weir::start(&config(&[primary.addr.port()], backup.addr.port(), rule)).await;
    // /fail/primary: the primary answers 500, the backup 200.
    let (s, h, _) = get(weir.mesh(), "shop", "/fail/primary", &[]).await;
    assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "backup"));
    assert_eq!(h.get("x-weir-fallback").unwrap(), "backup");
    // A success is the primary's own.
    let (s, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
    assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "primary"));
    assert!(h.get("x-weir-fallback").is_none());
    // When the backup fails too, the client gets the primary's answer.
    let rule = "    fallback:\n      destination: {host: backup}";
    assert!(
        weir.rewrite(&config(&[primary.addr.port()], backup.addr.port(), rule))
            .await
    );
    let (s, h, _) = get(weir.mesh(), "shop", "/status/500", &[]).await;
    assert_eq!((s.as_u16(), backend_of(&h).as_str()), (500, "primary"));
}

#[tokio::test]
async fn timeouts_and_no_healthy_upstream_fall_back() {
    let primary = Backend::start("primary").await;
    let backup = Backend::start("backup").await;
    let rule = format!("    timeout: 200ms\n    fallback:\n{STATIC}");
    let weir = Weir::start(&config(&[primary.addr.port()], backup.addr.port(), &rule)).await;
    let (s, h, _) = get(weir.mesh(), "shop", "/delay/2000", &[]).await;
    assert_eq!(
        (s.as_u16(), h["x-weir-fallback"].to_str().unwrap()),
        (200, "static")
    );
    // A service without endpoints, whose own name does not resolve.
    let weir = Weir::start(&config(&[], backup.addr.port(), &rule)).await;
    let (s, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
    assert_eq!(
        (s.as_u16(), h["x-weir-fallback"].to_str().unwrap()),
        (200, "static")
    );
    // Client errors are the client's: a 4xx is not replaced.
    let weir = Weir::start(&config(&[primary.addr.port()], backup.addr.port(), &rule)).await;
    let (s, h, _) = get(weir.mesh(), "shop", "/status/404", &[]).await;
    assert_eq!((s.as_u16(), h.get("x-weir-fallback")), (404, None));
}

#[tokio::test]
async fn a_failure_a_fallback_answers_still_counts_for_the_circuit_breaker() {
    let primary = Backend::start("primary").await;
    let backup = Backend::start("backup").await;
    let rule = format!("    fallback:\n{STATIC}");
    let breaker = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop}
spec:
  host: shop
  trafficPolicy:
    circuitBreaker: {failureThreshold: 2, windowSize: 1m, recoveryTimeout: 1m}
";
    let yaml = config(&[primary.addr.port()], backup.addr.port(), &rule) + "---\n" + breaker;
    let weir = Weir::start(&yaml).await;
    // Two 500s, each answered by the fixed response: the breaker still sees two failures.
    for _ in 0..2 {
        let (s, h, _) = get(weir.mesh(), "shop", "/status/500", &[]).await;
        assert_eq!(
            (s.as_u16(), h["x-weir-fallback"].to_str().unwrap()),
            (200, "static")
        );
    }
    let hits = primary.hits();
    // Open: refused at once, nothing reaches the primary.
    let (s, _, body) = get(weir.mesh(), "shop", "/", &[]).await;
    assert_eq!(s, 503);
    assert!(body.contains("circuit breaker open"), "{body}");
    assert_eq!(primary.hits(), hits, "nothing forwarded while open");
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "weir_circuit_breaker_state{service=\"shop\",version=\"\",state=\"open\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}
