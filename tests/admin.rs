//! The admin API and metrics: readiness, effective config, clusters, exact request counts and an
//! exposition that promtool accepts.

mod support;

use support::*;

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - name: to-v2
    match: [{headers: {x-canary: {exact: \"1\"}}}]
    route: [{destination: {host: api, subset: v2}}]
  - name: main
    route: [{destination: {host: api, subset: v1}}]
";

async fn setup() -> (Backend, Backend, Weir) {
    let v1 = Backend::start("v1").await;
    let v2 = Backend::start("v2").await;
    let cfg = service_entry("api", &[("v1", &v1), ("v2", &v2)])
        + &destination_rule("api", &["v1", "v2"])
        + VS;
    let weir = Weir::start(&cfg).await;
    (v1, v2, weir)
}

#[tokio::test]
async fn metric_counts_are_exact() {
    let (_v1, _v2, weir) = setup().await;
    let c = client();
    for _ in 0..37 {
        send(&c, weir.mesh(), "api", "/", &[]).await;
    }
    for _ in 0..5 {
        send(&c, weir.mesh(), "api", "/status/503", &[("x-canary", "1")]).await;
    }
    for _ in 0..3 {
        send(&c, weir.mesh(), "unknown", "/", &[]).await;
    }
    let m = weir.metrics().await;
    let series = |labels: &str| metric_value(&m, &format!("http_requests_total{{{labels}}}"));
    assert_eq!(
        series("service=\"api\",version=\"v1\",status=\"200\",method=\"GET\",route=\"main\""),
        Some(37.0)
    );
    assert_eq!(
        series("service=\"api\",version=\"v2\",status=\"503\",method=\"GET\",route=\"to-v2\""),
        Some(5.0)
    );
    assert_eq!(
        series("service=\"\",version=\"\",status=\"404\",method=\"GET\",route=\"\""),
        Some(3.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "http_request_duration_seconds_count{service=\"api\",version=\"v1\",route=\"main\"}"
        ),
        Some(37.0)
    );
}

#[tokio::test]
async fn exposition_passes_promtool() {
    let (_v1, _v2, weir) = setup().await;
    get(weir.mesh(), "api", "/", &[]).await;
    let text = weir.metrics().await;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        // .ci/run installs promtool; without CI this check is skipped, saying so.
        assert!(std::env::var("CI").is_err(), "promtool is required in CI");
        eprintln!("promtool not installed: skipping the exposition check");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // promtool exits 0 on success; lint notes about naming are not format errors.
    assert!(
        out.status.success() || !report.contains("error"),
        "{report}\n{text}"
    );
}

#[tokio::test]
async fn ready_live_config_and_clusters() {
    let (_v1, _v2, weir) = setup().await;
    let (s, _, _) = get(weir.admin(), "admin", "/ready", &[]).await;
    assert_eq!(s, 200);
    let (s, _, _) = get(weir.admin(), "admin", "/live", &[]).await;
    assert_eq!(s, 200);
    let (_, _, body) = get(weir.admin(), "admin", "/config", &[]).await;
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["generation"], 1);
    let kinds: Vec<&str> = config["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ServiceEntry", "DestinationRule", "VirtualService"]);
    assert_eq!(config["resources"][2]["spec"]["http"][0]["name"], "to-v2");
    let source = config["resources"][2]["source"].as_str().unwrap();
    assert!(
        source.contains("mesh.yaml:") && source.ends_with(":1"),
        "{source}"
    );
    for _ in 0..3 {
        get(weir.mesh(), "api", "/", &[]).await;
    }
    let (_, _, body) = get(weir.admin(), "admin", "/clusters", &[]).await;
    let clusters: serde_json::Value = serde_json::from_str(&body).unwrap();
    let v1 = clusters["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "api|v1|9080")
        .unwrap();
    assert_eq!(v1["endpoints"][0]["total_requests"], 3);
    assert_eq!(v1["endpoints"][0]["connections"]["idle"], 1);
    let (s, _, _) = get(weir.admin(), "admin", "/nope", &[]).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn a_token_guards_every_mutating_call_and_off_loopback_one_is_required() {
    let opts = |admin: &str, token: Option<&str>| weir::run::Options {
        fleet: None,
        configs: Vec::new(),
        admin: admin.parse().unwrap(),
        mesh: "127.0.0.1:0".parse().unwrap(),
        state_dir: None,
        admin_token: token.map(str::to_owned),
        policy: weir::edge::ServerPolicy::default(),
        access_log: None,
    };
    // Reachable from other hosts without a token: refused before anything is bound.
    let refused = weir::run::Server::start(opts("0.0.0.0:0", None), None).await;
    assert!(
        matches!(refused, Err(weir::run::StartError::AdminToken(_))),
        "started without a token"
    );
    let empty = weir::config::parse_set("<test>", "").unwrap();
    let server = weir::run::Server::start(opts("127.0.0.1:0", Some("s3cret-token")), Some(empty))
        .await
        .unwrap();
    let admin = server.admin_addr();
    let call = |method: &'static str, path: &'static str, token: Option<&'static str>| async move {
        weir::admin::call_with_token(admin, method, path, token)
            .await
            .unwrap()
    };
    // Reads stay open; writes need the token.
    assert_eq!(call("GET", "/faults", None).await.0, 200);
    let (status, body) = call("POST", "/faults/disable", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        call("POST", "/faults/disable", Some("wrong-token!"))
            .await
            .0,
        401
    );
    assert_eq!(
        call("POST", "/canaries/x/rollback", Some("s3cret")).await.0,
        401
    );
    assert!(
        server.control().faults.enabled(),
        "a refused call changed something"
    );
    assert_eq!(
        call("POST", "/faults/disable", Some("s3cret-token"))
            .await
            .0,
        200
    );
    assert!(!server.control().faults.enabled());
    // The token never shows in what the API serves.
    for path in ["/config", "/clusters", "/faults", "/canaries", "/metrics"] {
        let (_, body) = call("GET", path, None).await;
        assert!(!body.contains("s3cret"), "{path} shows the token");
    }
    // The CLI reads the token from a file.
    let file = scratch_dir().join("token");
    std::fs::write(&file, "s3cret-token\n").unwrap();
    let admin = admin.to_string();
    let file = file.display().to_string();
    let out = weir_cli([
        "faults",
        "enable",
        "--admin",
        &admin,
        "--admin-token-file",
        &file,
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.control().faults.enabled());
    server.shutdown().await;
}

#[tokio::test]
async fn errors_are_json_405_says_allow_and_a_malformed_body_changes_nothing() {
    let (_v1, _v2, weir) = setup().await;
    let admin = weir.admin();
    // Errors are JSON, like the rest.
    let reply = raw(
        admin,
        "GET /nope HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
    assert!(reply.contains("content-type: application/json"), "{reply}");
    let body: serde_json::Value =
        serde_json::from_str(&reply[reply.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("not found"),
        "{body}"
    );
    // A method the path does not take: 405 with the ones it does.
    for (request, allow) in [
        ("POST /config", "GET"),
        ("GET /faults/disable", "POST"),
        ("DELETE /canaries", "GET"),
    ] {
        let reply = raw(
            admin,
            &format!(
                "{request} HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 405"), "{request}: {reply}");
        assert!(
            reply.contains(&format!("allow: {allow}\r\n")),
            "{request}: {reply}"
        );
    }
    // A mutating call's body must be empty or JSON: anything else is refused, nothing done.
    let post = |body: &str| {
        format!(
            "POST /faults/disable HTTP/1.1\r\nhost: a\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let reply = raw(admin, &post("{\"enabled\": fals")).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("\"error\""), "{reply}");
    assert!(
        weir.server.control().faults.enabled(),
        "a refused call changed something"
    );
    let reply = raw(admin, &post("{}")).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(!weir.server.control().faults.enabled());
}

#[tokio::test]
async fn build_info_and_process_metrics_are_exported() {
    let (_v1, _v2, weir) = setup().await;
    let text = weir.metrics().await;
    let build = format!(
        "weir_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric_value(&text, &build), Some(1.0), "{text}");
    let value = |name: &str| metric_value(&text, name).unwrap_or_else(|| panic!("{name}:\n{text}"));
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_cpu_seconds_total") >= 0.0);
    // This test's process started after 2026-01-01 and not in the future.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!((1_767_225_600.0..=now).contains(&started), "{started}");
}
