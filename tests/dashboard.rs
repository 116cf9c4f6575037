//! The dashboard on the admin port: its files and data, the guard against other sites' pages,
//! and the page itself driven in a real browser (Debian's Chromium through playwright-core:
//! tests/browser/dashboard.mjs) against a weir carrying traffic through a rollout.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::*;

const TOKEN: &str = "dashboard-test-token";

/// `shop` under a Canary stepping 5% a second, judged on its success rate; `web` under an
/// A/B experiment.
fn rollout(v1: &Backend, v2: &Backend) -> String {
    service_entry("web", &[("v1", v1), ("v2", v2)])
        + &destination_rule("web", &["v1", "v2"])
        + "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route: [{destination: {host: web, subset: v1}}]
---
apiVersion: weir.io/v1alpha1
kind: Experiment
metadata: {name: new-ui}
spec:
  targetRef: {kind: VirtualService, name: web}
  variants: [{name: control, subset: v1}, {name: new-ui, subset: v2}]
  goals: [{name: signup, responseHeader: x-weir-goal}]
  minUsersPerVariant: 1000000
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  action: AUDIT
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
" + &service_entry("shop", &[("v1", v1), ("v2", v2)])
        + &destination_rule("shop", &["v1", "v2"])
        + &shop_canary(
            "interval: 1s
threshold: 3
stepWeight: 5
maxWeight: 95
metrics:
- name: request-success-rate
  interval: 1s
  thresholdRange: {min: 99}",
        )
}

async fn start(yaml: &str) -> weir::run::Server {
    let config = scratch_dir().join("mesh.yaml");
    std::fs::write(&config, yaml).unwrap();
    let opts = weir::run::Options {
        admin_token: Some(TOKEN.to_owned()),
        ..options(config)
    };
    weir::run::Server::start(opts, None).await.unwrap()
}

/// Requests to `shop` from four clients until dropped.
struct Load(Arc<AtomicBool>);

impl Load {
    fn start(mesh: std::net::SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..4 {
            let flag = stop.clone();
            tokio::spawn(async move {
                let c = client();
                while !flag.load(Ordering::Relaxed) {
                    let _ = send(&c, mesh, "shop", "/", &[]).await;
                    let _ = send(&c, mesh, "web", "/", &[("x-reply-goal", "signup")]).await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
        }
        Load(stop)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_data_are_served_from_the_binary() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let weir = start(&rollout(&v1, &v2)).await;
    let admin = weir.admin_addr();
    let (status, headers, page) = get(admin, "admin", "/", &[]).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<script src=\"/dashboard/app.js\">"),
        "{page}"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads something from elsewhere"
    );
    let (status, headers, script) = get(admin, "admin", "/dashboard/app.js", &[]).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(
        !script.contains("innerHTML"),
        "the script builds no HTML from strings"
    );
    // The data: routes with their weights, the rollout, and per-version series once traffic
    // flows.
    let _load = Load::start(weir.mesh_addr());
    let mut data = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, _, body) = get(admin, "admin", "/dashboard/data", &[]).await;
        data = serde_json::from_str(&body).unwrap();
        let moving = data["versions"].as_array().unwrap().iter().any(|v| {
            v["version"] == "v1"
                && v["points"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p[1].as_f64() > Some(0.0))
        });
        if moving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v1_points = data["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["service"] == "shop" && v["version"] == "v1")
        .unwrap_or_else(|| panic!("no series for shop v1: {data:#}"))["points"]
        .clone();
    let p = v1_points.as_array().unwrap().last().unwrap();
    assert!(p[1].as_f64() > Some(0.0), "{p}");
    assert_eq!(p[2].as_f64(), Some(100.0), "{p}");
    let shop = data["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["host"] == "shop")
        .unwrap_or_else(|| panic!("no service shop: {data:#}"));
    assert_eq!(shop["routes"][0]["name"], "all");
    assert_eq!(data["experiments"][0]["name"], "new-ui");
    assert_eq!(data["experiments"][0]["variants"][1]["name"], "new-ui");
    assert_eq!(data["canaries"][0]["name"], "shop");
    assert_eq!(data["canaries"][0]["sides"]["canary"]["version"], "v2");
    assert!(data["fleet"].is_null());
    // The same numbers in a terminal.
    let top = weir_cli(["top", "--admin", &admin.to_string(), "--once"]).await;
    let table = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{table}");
    assert!(table.starts_with("SERVICE"), "{table}");
    let v1_row = table
        .lines()
        .find(|l| l.starts_with("shop") && l.contains(" v1 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(v1_row.contains("100.00"), "{table}");
    assert!(table.contains("rollout shop: "), "{table}");
    // A POST sent by another site's page is refused, even with the token; the page's own goes.
    let refused = request(
        &client(),
        admin,
        "POST",
        &admin.to_string(),
        "/canaries/shop/pause",
        &[
            ("origin", "http://evil.example"),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(refused.0, 403, "{}", refused.2);
    let own = request(
        &client(),
        admin,
        "POST",
        &admin.to_string(),
        "/canaries/shop/pause",
        &[
            ("origin", &format!("http://{admin}")),
            ("authorization", &format!("Bearer {TOKEN}")),
        ],
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(own.0, 200, "{}", own.2);
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_and_rolls_back_in_a_real_browser() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let weir = start(&rollout(&v1, &v2)).await;
    let _load = Load::start(weir.mesh_addr());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    let node_modules = std::path::Path::new(dir).join("node_modules/playwright-core");
    assert!(
        node_modules.exists(),
        "the browser test needs `npm ci --prefix tests/browser` and Debian's chromium (scripts/test.sh installs both)"
    );
    let admin = format!("http://{}", weir.admin_addr());
    let mut cmd = std::process::Command::new("node");
    cmd.arg("dashboard.mjs")
        .current_dir(dir)
        .env("ADMIN", &admin)
        .env("TOKEN", TOKEN)
        .env("EXPERIMENT", "new-ui")
        .env("POLICY", "default/audit-web");
    // WEIR_DASHBOARD_SCREENSHOT=docs/dashboard.png (and WEIR_DASHBOARD_SCREENSHOT_AFTER=20)
    // refreshes the picture in the docs.
    if let Ok(path) = std::env::var("WEIR_DASHBOARD_SCREENSHOT") {
        cmd.env("SCREENSHOT", path);
        let after = std::env::var("WEIR_DASHBOARD_SCREENSHOT_AFTER").unwrap_or_default();
        cmd.env("SCREENSHOT_AFTER", after);
    }
    // The browser runs beside weir, which lives on this test's runtime.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("\"what\":\"ok\""), "{said}");
    // The page's rollback went through the admin API.
    let (_, _, body) = get(weir.admin_addr(), "admin", "/canaries/shop", &[]).await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["phase"], "Failed", "{status:#}");
    weir.shutdown().await;
}
