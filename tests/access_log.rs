//! Access logs: a line per request, written when the response ends, with the route, the
//! destination, the upstream, retries and response flags; JSON or text.

mod support;

use std::time::Duration;

use support::*;

async fn start(
    yaml: &str,
    log: &std::path::Path,
    format: weir::access_log::Format,
) -> weir::run::Server {
    let config = scratch_dir().join("mesh.yaml");
    std::fs::write(&config, yaml).unwrap();
    let opts = weir::run::Options {
        access_log: Some(weir::access_log::AccessLogOptions {
            target: weir::access_log::Target::File(log.to_owned()),
            format,
        }),
        ..options(config)
    };
    weir::run::Server::start(opts, None).await.unwrap()
}

fn config(v1: &Backend) -> String {
    service_entry("shop", &[("v1", v1)])
        + &destination_rule("shop", &["v1"])
        + "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [shop]
  http:
  - name: aborted
    match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: shop, subset: v1}}]
  - name: slow
    match: [{uri: {prefix: /delay}}]
    timeout: 100ms
    route: [{destination: {host: shop, subset: v1}}]
  - name: main
    retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: shop, subset: v1}}]
"
}

/// The log's lines, once `n` are there.
async fn lines(log: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..100 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} lines in {}", log.display());
}

#[tokio::test]
async fn every_request_gets_a_json_line_with_what_happened_to_it() {
    let v1 = Backend::start("v1").await;
    let log = scratch_dir().join("access.log");
    let weir = start(&config(&v1), &log, weir::access_log::Format::Json).await;
    let mesh = weir.mesh_addr();
    let (s, _, body) = get(mesh, "shop", "/hello?x=1", &[("x-request-id", "r-ok")]).await;
    assert_eq!(s, 200);
    assert_eq!(
        get(mesh, "shop", "/abort", &[("x-request-id", "r-abort")])
            .await
            .0,
        503
    );
    assert_eq!(
        get(mesh, "shop", "/delay/1000", &[("x-request-id", "r-slow")])
            .await
            .0,
        504
    );
    assert_eq!(
        get(mesh, "shop", "/flaky/1/503", &[("x-request-id", "r-retry")])
            .await
            .0,
        200
    );
    assert_eq!(
        get(mesh, "nowhere", "/", &[("x-request-id", "r-none")])
            .await
            .0,
        404
    );
    let lines = lines(&log, 5).await;
    let by_id = |id: &str| -> serde_json::Value {
        lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["request_id"] == id)
            .unwrap_or_else(|| panic!("no line for {id}: {lines:#?}"))
    };
    let ok = by_id("r-ok");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["authority"], "shop");
    assert_eq!(ok["path"], "/hello?x=1");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["route"], "main");
    assert_eq!(ok["service"], "shop");
    assert_eq!(ok["version"], "v1");
    assert_eq!(ok["upstream"], v1.addr.to_string());
    assert_eq!(ok["retries"], 0);
    assert_eq!(ok["flags"], serde_json::json!([]));
    assert_eq!(ok["bytes_sent"], body.len());
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(ok["time"].as_str().unwrap().ends_with('Z'));
    let abort = by_id("r-abort");
    assert_eq!(
        (abort["status"].as_u64(), abort["route"].as_str()),
        (Some(503), Some("aborted"))
    );
    assert_eq!(abort["flags"], serde_json::json!(["fault"]));
    assert!(abort["upstream"].is_null(), "{abort}");
    let slow = by_id("r-slow");
    assert_eq!(slow["status"], 504);
    assert_eq!(slow["flags"], serde_json::json!(["timeout"]));
    assert!(slow["duration_ms"].as_f64().unwrap() >= 100.0, "{slow}");
    let retry = by_id("r-retry");
    assert_eq!(
        (retry["status"].as_u64(), retry["retries"].as_u64()),
        (Some(200), Some(1))
    );
    let none = by_id("r-none");
    assert_eq!(none["flags"], serde_json::json!(["no_route"]));
    assert_eq!(none["service"], "");
    weir.shutdown().await;
}

#[tokio::test]
async fn text_lines_hold_one_request_each_whatever_it_sent() {
    let v1 = Backend::start("v1").await;
    let log = scratch_dir().join("access.log");
    let weir = start(&config(&v1), &log, weir::access_log::Format::Text).await;
    let mesh = weir.mesh_addr();
    get(mesh, "shop", "/a", &[("x-request-id", "one\"two")]).await;
    let lines = lines(&log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let l = &lines[0];
    assert!(l.contains("\"GET /a HTTP/1.1\" 200 - "), "{l}");
    assert!(l.contains(" \"shop\" main shop v1 "), "{l}");
    assert!(l.contains("\"one\\\"two\""), "{l}");
    weir.shutdown().await;
}

#[tokio::test]
async fn sighup_opens_the_file_again_after_logrotate_moved_it() {
    let v1 = Backend::start("v1").await;
    let log = scratch_dir().join("access.log");
    let weir = start(&config(&v1), &log, weir::access_log::Format::Json).await;
    let mesh = weir.mesh_addr();
    get(mesh, "shop", "/before", &[]).await;
    lines(&log, 1).await;
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    weir.reopen_access_log();
    // Lines go to the new file once the writer has opened it.
    for _ in 0..100 {
        get(mesh, "shop", "/after", &[]).await;
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/after")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new = std::fs::read_to_string(&log).unwrap();
    assert!(new.contains("/after") && !new.contains("/before"), "{new}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("/before"), "{old}");
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_names_its_policy_and_no_credential_is_logged() {
    let v1 = Backend::start("v1").await;
    let dir = scratch_dir();
    let log = dir.join("access.log");
    let jwks = include_str!("data/istio-jwt/jwks.json")
        .trim()
        .replace('\'', "''");
    let yaml = config(&v1)
        + &format!(
            "---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{jwks}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: default}}
spec:
  rules:
  - from:
    - source: {{requestPrincipals: [\"*\"]}}
"
        );
    let server = start(&yaml, &log, weir::access_log::Format::Json).await;
    let mesh = server.mesh_addr();
    let token = include_str!("data/istio-jwt/demo.jwt").trim();
    assert_eq!(get(mesh, "shop", "/", &[]).await.0, 403);
    let path = format!("/?access_token={token}");
    assert_eq!(get(mesh, "shop", &path, &[]).await.0, 200);
    let bad = format!("/?access_token={}x", &token[..token.len() - 1]);
    assert_eq!(get(mesh, "shop", &bad, &[]).await.0, 401);
    let mut lines = lines(&log, 3).await;
    // A line is written once its response is out, from the thread that wrote it: on two
    // threads, the next request's line can come first. In the order the requests were sent:
    let status = |l: &String| {
        let at = ["\"status\":403,", "\"status\":200,", "\"status\":401,"];
        at.iter().position(|s| l.contains(s))
    };
    lines.sort_by_key(status);
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {lines:?}")))
        .collect();
    assert_eq!(json[0]["policy"], "none", "{}", lines[0]);
    assert_eq!(json[0]["flags"], serde_json::json!(["denied"]));
    assert!(json[1]["policy"].is_null());
    assert_eq!(json[2]["policy"], "default/jwt");
    assert_eq!(json[1]["path"], "/?access_token=REDACTED");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(&token[..40]),
        "a token in the access log: {text}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kong_key_in_the_query_is_not_logged() {
    let v1 = Backend::start("v1").await;
    let log = scratch_dir().join("access.log");
    let yaml = format!(
        "_format_version: \"3.0\"
services:
- name: s
  url: http://127.0.0.1:{}
  routes:
  - name: r
    paths: [/]
    plugins: [{{name: key-auth}}]
consumers:
- username: a
  keyauth_credentials: [{{key: a-very-secret-key}}]
",
        v1.addr.port()
    );
    let server = start(&yaml, &log, weir::access_log::Format::Text).await;
    let mesh = server.mesh_addr();
    assert_eq!(
        get(mesh, "x", "/?apikey=a-very-secret-key", &[]).await.0,
        200
    );
    assert_eq!(
        get(mesh, "x", "/?apikey=a-wrong-secret-key", &[]).await.0,
        401
    );
    let lines = lines(&log, 2).await;
    let text = lines.join("\n");
    assert!(!text.contains("secret-key"), "{text}");
    assert!(
        lines[1].contains("apikey=REDACTED") && lines[1].ends_with(" key-auth@route/r"),
        "{text}"
    );
    server.shutdown().await;
}
