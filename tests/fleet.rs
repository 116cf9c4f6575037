//! Fleet mode end to end: a real etcd on loopback, several weir instances sharing it, `weir
//! apply` / `get` / `delete`, outages of the store, and rollouts driven by one elected instance.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::etcd::EtcdServer;
use support::*;

/// The lease of the instances under test, in seconds.
const LEASE: u64 = 2;

/// Options of an in-process instance of the fleet at `url`.
fn options(url: &str, id: &str, state_dir: Option<PathBuf>) -> weir::run::Options {
    weir::run::Options {
        configs: Vec::new(),
        fleet: Some(weir::run::FleetOptions {
            url: url.parse().unwrap(),
            instance_id: id.to_owned(),
            lease_seconds: LEASE,
        }),
        admin: "127.0.0.1:0".parse().unwrap(),
        mesh: "127.0.0.1:0".parse().unwrap(),
        state_dir,
        admin_token: None,
        policy: weir::edge::ServerPolicy::default(),
        access_log: None,
    }
}

async fn instance(url: &str, id: &str, state_dir: Option<PathBuf>) -> weir::run::Server {
    match weir::run::Server::start(options(url, id, state_dir), None).await {
        Ok(s) => s,
        Err(e) => panic!("instance {id} did not start: {e}"),
    }
}

/// `weir apply --store URL -f FILE` with `yaml` in FILE.
async fn apply(url: &str, yaml: &str) -> std::process::Output {
    let file = scratch_dir().join("apply.yaml");
    std::fs::write(&file, yaml).unwrap();
    weir_cli(["apply", "--store", url, "-f", file.to_str().unwrap()]).await
}

async fn apply_ok(url: &str, yaml: &str) {
    let out = apply(url, yaml).await;
    assert!(
        out.status.success(),
        "apply failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `shop`, with versions v1 and v2, all of its traffic on `to`.
fn shop(v1: &Backend, v2: &Backend, to: &str) -> String {
    service_entry("shop", &[("v1", v1), ("v2", v2)])
        + &destination_rule("shop", &["v1", "v2"])
        + &format!(
            "# all of shop's traffic on {to}
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [shop]
  http:
  - route:
    - destination: {{host: shop, subset: {to}}}
"
        )
}

/// Waits up to `secs` for `check` to hold.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// Which backend answers a GET of `shop` on `mesh` (empty on an error).
async fn answer(mesh: SocketAddr) -> String {
    let (status, h, _) = get(mesh, "shop", "/", &[]).await;
    if status == 200 {
        backend_of(&h)
    } else {
        format!("status {status}")
    }
}

async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = weir::admin::call(admin, "GET", path).await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Requests to every mesh address in turn until stopped; counts answers that are not 200.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(meshes: Vec<SocketAddr>, host: &'static str, path: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, n, f) = (stop.clone(), sent.clone(), failed.clone());
        let task = tokio::spawn(async move {
            let c = client();
            while !s.load(Ordering::Relaxed) {
                for m in &meshes {
                    let (status, _, _) = send(&c, *m, host, path, &[]).await;
                    n.fetch_add(1, Ordering::Relaxed);
                    if status != 200 {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Load {
            stop,
            sent,
            failed,
            task,
        }
    }

    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_converge_on_every_apply_under_load() {
    let etcd = EtcdServer::start();
    let url = etcd.url("/converge");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &shop(&v1, &v2, "v1")).await;
    let mut fleet = Vec::new();
    for id in ["a", "b", "c"] {
        fleet.push(instance(&url, id, None).await);
    }
    let meshes: Vec<SocketAddr> = fleet.iter().map(|s| s.mesh_addr()).collect();
    for m in &meshes {
        assert_eq!(answer(*m).await, "v1");
    }
    let load = Load::start(meshes.clone(), "shop", "/");
    let sent = load.sent.clone();
    let at_least = |n: usize| {
        let sent = sent.clone();
        move || {
            let sent = sent.clone();
            async move { sent.load(Ordering::Relaxed) >= n }
        }
    };
    // The applies happen under load: it is running before the first and after the last.
    eventually(10, "the load is under way", at_least(20)).await;
    for (round, to) in ["v2", "v1", "v2"].into_iter().enumerate() {
        apply_ok(&url, &shop(&v1, &v2, to)).await;
        for m in &meshes {
            eventually(5, &format!("round {round}: {m} serves {to}"), || async {
                answer(*m).await == to
            })
            .await;
        }
    }
    let after = load.sent.load(Ordering::Relaxed) + 20;
    eventually(10, "the load goes on after the applies", at_least(after)).await;
    let (sent, failed) = load.stop().await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during the applies"
    );
    // Every instance is in the fleet, at the store's revision.
    let view = admin_json(fleet[0].admin_addr(), "/fleet").await;
    let applied = view["appliedRevision"].as_i64().unwrap();
    eventually(5, "the records show one revision", || async {
        let v = admin_json(fleet[1].admin_addr(), "/fleet").await;
        let instances = v["instances"].as_array().unwrap().clone();
        instances.len() == 3
            && instances
                .iter()
                .all(|i| i["revision"].as_i64() >= Some(applied))
    })
    .await;
    let config = admin_json(fleet[2].admin_addr(), "/config").await;
    assert_eq!(config["store"]["url"], url);
    assert!(config["store"]["revision"].as_i64() >= Some(applied));
    let m = weir::admin::call(fleet[0].admin_addr(), "GET", "/metrics")
        .await
        .unwrap()
        .1;
    let series = |name: &str| format!("{name}{{store=\"{url}\"}}");
    assert_eq!(metric_value(&m, &series("weir_store_connected")), Some(1.0));
    assert!(
        metric_value(&m, &series("weir_store_apply_delay_seconds_count")) >= Some(3.0),
        "{m}"
    );
    for s in fleet {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_change_is_refused_whole() {
    let etcd = EtcdServer::start();
    let url = etcd.url("/invalid");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &shop(&v1, &v2, "v1")).await;
    let before = weir_cli(["get", "--store", &url]).await;
    // A VirtualService naming a subset nobody defines, beside a good change: nothing is written.
    let bad = shop(&v1, &v2, "v2")
        + "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: shop, subset: v9}\n";
    let out = apply(&url, &bad).await;
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("apply.yaml:") && stdout.contains("subset `v9`"),
        "{stdout}"
    );
    let after = weir_cli(["get", "--store", &url]).await;
    assert_eq!(
        before.stdout, after.stdout,
        "a refused apply wrote something"
    );
    // As written, comments kept.
    assert!(String::from_utf8_lossy(&after.stdout).contains("# all of shop's traffic on v1"));
    let one = weir_cli(["get", "--store", &url, "virtualservices", "shop"]).await;
    assert!(String::from_utf8_lossy(&one.stdout).contains("subset: v1"));
    // The same mistake written around weir: every instance refuses it and keeps serving.
    let server = instance(&url, "a", None).await;
    let key = "/invalid/resources/VirtualService/default/cart";
    etcd.put(key, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: shop, subset: v9}\n");
    let admin = server.admin_addr();
    eventually(5, "the rejection shows on /config", || async {
        let c = admin_json(admin, "/config").await;
        c["lastAttempt"]["result"] == "rejected"
            && c["lastAttempt"]["errors"]
                .to_string()
                .contains(&format!("{key}:8:"))
    })
    .await;
    assert_eq!(answer(server.mesh_addr()).await, "v1");
    let m = weir::admin::call(admin, "GET", "/metrics").await.unwrap().1;
    assert_eq!(
        metric_value(
            &m,
            &format!("weir_store_apply_errors_total{{store=\"{url}\"}}")
        ),
        Some(1.0)
    );
    // Deleting it (the rest validates) brings the store back; a delete that would leave the
    // rest invalid is refused.
    let refused = weir_cli(["delete", "--store", &url, "DestinationRule", "shop"]).await;
    assert!(!refused.status.success());
    let out = weir_cli(["delete", "--store", &url, "virtualservice", "cart"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    apply_ok(&url, &shop(&v1, &v2, "v2")).await;
    eventually(5, "the fixed store is applied", || async {
        answer(server.mesh_addr()).await == "v2"
    })
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_ride_out_etcd_outages_restarts_and_compaction() {
    let mut etcd = EtcdServer::start();
    let url = etcd.url("/outage");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &shop(&v1, &v2, "v1")).await;
    let fleet = [
        instance(&url, "a", None).await,
        instance(&url, "b", None).await,
    ];
    etcd.stop();
    let series = format!("weir_store_connected{{store=\"{url}\"}}");
    for s in &fleet {
        let admin = s.admin_addr();
        eventually(10, "the instance sees the store gone", || async {
            let m = weir::admin::call(admin, "GET", "/metrics").await.unwrap().1;
            metric_value(&m, &series) == Some(0.0)
        })
        .await;
        assert_eq!(
            answer(s.mesh_addr()).await,
            "v1",
            "an instance stopped serving"
        );
        let (status, _) = weir::admin::call(admin, "GET", "/ready").await.unwrap();
        assert_eq!(status, 200);
    }
    // No write reaches a store that is down.
    assert!(!apply(&url, &shop(&v1, &v2, "v2")).await.status.success());
    etcd.restart();
    apply_ok(&url, &shop(&v1, &v2, "v2")).await;
    for s in &fleet {
        eventually(15, "the instance resyncs after etcd's restart", || async {
            answer(s.mesh_addr()).await == "v2"
        })
        .await;
    }
    // History compacted away and etcd restarted once more: they read everything again.
    for to in ["v1", "v2", "v1"] {
        apply_ok(&url, &shop(&v1, &v2, to)).await;
    }
    etcd.compact();
    etcd.restart();
    apply_ok(&url, &shop(&v1, &v2, "v2")).await;
    for s in &fleet {
        eventually(15, "the instance resyncs after compaction", || async {
            answer(s.mesh_addr()).await == "v2"
        })
        .await;
    }
    for s in fleet {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_started_while_etcd_is_down_serves_its_last_config() {
    let mut etcd = EtcdServer::start();
    let url = etcd.url("/down");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &shop(&v1, &v2, "v2")).await;
    let state = scratch_dir();
    let first = instance(&url, "a", Some(state.clone())).await;
    assert_eq!(answer(first.mesh_addr()).await, "v2");
    first.shutdown().await;
    etcd.stop();
    let again = instance(&url, "a", Some(state)).await;
    assert_eq!(answer(again.mesh_addr()).await, "v2");
    let (ready, _) = weir::admin::call(again.admin_addr(), "GET", "/ready")
        .await
        .unwrap();
    assert_eq!(ready, 200);
    // Without a kept configuration it starts, not ready, and waits for the store.
    let empty = instance(&url, "b", None).await;
    let (ready, _) = weir::admin::call(empty.admin_addr(), "GET", "/ready")
        .await
        .unwrap();
    assert_eq!(ready, 503);
    etcd.restart();
    apply_ok(&url, &shop(&v1, &v2, "v1")).await;
    for s in [&again, &empty] {
        eventually(15, "the instance catches up with the store", || async {
            answer(s.mesh_addr()).await == "v1"
        })
        .await;
    }
    let (ready, _) = weir::admin::call(empty.admin_addr(), "GET", "/ready")
        .await
        .unwrap();
    assert_eq!(ready, 200);
    again.shutdown().await;
    empty.shutdown().await;
}

/// `shop` under a Canary (v1 primary, v2 canary), stepping `step`% every `interval`, checked on
/// its success rate over the same interval.
fn canary(v1: &Backend, v2: &Backend, interval: &str, step: u32, max: u32) -> String {
    service_entry("shop", &[("v1", v1), ("v2", v2)])
        + &destination_rule("shop", &["v1", "v2"])
        + &shop_canary(&format!(
            "interval: {interval}
threshold: 2
stepWeight: {step}
maxWeight: {max}
metrics:
- name: request-success-rate
  interval: {interval}
  thresholdRange: {{min: 99}}"
        ))
}

/// The rollout `shop` as `admin` shows it.
async fn rollout(admin: SocketAddr) -> serde_json::Value {
    admin_json(admin, "/canaries/shop").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_drives_and_commands_reach_it_from_any_instance() {
    let etcd = EtcdServer::start();
    let url = etcd.url("/drive");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &canary(&v1, &v2, "1m", 10, 50)).await;
    let fleet = [
        instance(&url, "a", None).await,
        instance(&url, "b", None).await,
        instance(&url, "c", None).await,
    ];
    let admin = |i: usize| fleet[i].admin_addr();
    eventually(10, "every instance names one driver", || async {
        let mut drivers = Vec::new();
        for i in 0..3 {
            drivers.push(admin_json(admin(i), "/fleet").await["canaries"][0]["driver"].clone());
        }
        drivers[0].is_string() && drivers.iter().all(|d| *d == drivers[0])
    })
    .await;
    let view = admin_json(admin(0), "/fleet").await;
    let driver = view["canaries"][0]["driver"].as_str().unwrap().to_owned();
    let here: Vec<bool> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(admin_json(admin(i), "/fleet").await["canaries"][0]["drivenHere"] == true);
        }
        v
    };
    assert_eq!(here.iter().filter(|h| **h).count(), 1, "drivers: {here:?}");
    // A command sent to an instance that does not drive the rollout takes effect everywhere.
    let follower = here.iter().position(|h| !h).unwrap();
    let (status, body) = weir::admin::call(admin(follower), "POST", "/canaries/shop/pause")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"taken\": true"), "{body}");
    for i in 0..3 {
        eventually(5, "every instance shows the pause", || async {
            rollout(admin(i)).await["status"]["paused"] == true
        })
        .await;
        assert_eq!(rollout(admin(i)).await["driver"], driver.as_str());
    }
    // The Canary deleted from the store: its driver steps down and takes its state along.
    assert!(etcd.get("/drive/rollouts/shop/state").is_some());
    let out = weir_cli(["delete", "--store", &url, "canary", "shop"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(5, "the rollout's keys are gone", || async {
        etcd.get("/drive/rollouts/shop/state").is_none()
            && etcd.get("/drive/rollouts/shop/driver").is_none()
    })
    .await;
    for s in fleet {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_judges_the_traffic_of_the_whole_fleet() {
    let etcd = EtcdServer::start();
    let url = etcd.url("/judge");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &canary(&v1, &v2, "1s", 20, 60)).await;
    let fleet = [
        instance(&url, "a", None).await,
        instance(&url, "b", None).await,
    ];
    eventually(10, "a driver is elected", || async {
        admin_json(fleet[0].admin_addr(), "/fleet").await["canaries"][0]["driver"].is_string()
    })
    .await;
    let driving = |v: &serde_json::Value| v["canaries"][0]["drivenHere"] == true;
    let d = if driving(&admin_json(fleet[0].admin_addr(), "/fleet").await) {
        0
    } else {
        1
    };
    let follower = &fleet[1 - d];
    // Only the follower carries traffic, and the canary fails every request: the driver sees
    // none of it itself, so only the fleet's counts can roll the canary back.
    let load = Load::start(vec![follower.mesh_addr()], "shop", "/fail/v2");
    let admin = fleet[d].admin_addr();
    eventually(30, "the canary is rolled back", || async {
        rollout(admin).await["phase"] == "Failed"
    })
    .await;
    let status = rollout(admin).await;
    let events = status["events"].to_string();
    assert!(events.contains("request-success-rate"), "{events}");
    load.stop().await;
    for s in fleet {
        s.shutdown().await;
    }
}

/// A `weir run` process of the fleet at `url`.
struct Process {
    child: std::process::Child,
    admin: SocketAddr,
    mesh: SocketAddr,
}

impl Process {
    fn start(url: &str, id: &str) -> Process {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mesh: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--store", url, "--instance-id", id])
            .args(["--store-lease", &LEASE.to_string()])
            .args([
                "--admin",
                &admin.to_string(),
                "--mesh-listen",
                &mesh.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Process { child, admin, mesh }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_killed_mid_rollout_hands_over_and_no_step_is_taken_twice() {
    let etcd = EtcdServer::start();
    let url = etcd.url("/kill");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &canary(&v1, &v2, "2s", 10, 50)).await;
    let mut fleet: Vec<Process> = ["a", "b", "c"]
        .iter()
        .map(|id| Process::start(&url, id))
        .collect();
    for p in &fleet {
        let admin = p.admin;
        eventually(10, "the instance is ready", || async {
            matches!(
                weir::admin::call(admin, "GET", "/ready").await,
                Ok((200, _))
            )
        })
        .await;
    }
    let load = Load::start(fleet.iter().map(|p| p.mesh).collect(), "shop", "/");
    let first = fleet[0].admin;
    eventually(30, "the rollout reaches 20%", || async {
        rollout(first).await["canaryWeight"].as_u64() >= Some(20)
    })
    .await;
    let view = admin_json(first, "/fleet").await;
    let driver = view["canaries"][0]["driver"].as_str().unwrap().to_owned();
    let index = ["a", "b", "c"].iter().position(|id| *id == driver).unwrap();
    let (sent, failed) = load.stop().await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed before the kill"
    );
    let mut dead = fleet.remove(index);
    dead.child.kill().unwrap(); // SIGKILL
    dead.child.wait().unwrap();
    let killed = std::time::Instant::now();
    let load = Load::start(fleet.iter().map(|p| p.mesh).collect(), "shop", "/");
    let survivor = fleet[0].admin;
    eventually(LEASE + 5, "another instance drives", || async {
        let v = admin_json(survivor, "/fleet").await;
        v["canaries"][0]["driver"]
            .as_str()
            .is_some_and(|d| d != driver)
    })
    .await;
    let handover = killed.elapsed();
    eventually(60, "the rollout is promoted", || async {
        rollout(survivor).await["phase"] == "Succeeded"
    })
    .await;
    let (sent, failed) = load.stop().await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed after the kill"
    );
    let status = rollout(survivor).await;
    let events: Vec<String> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    for w in [10, 20, 30, 40, 50] {
        let step = format!("Advance shop canary weight {w}");
        let n = events.iter().filter(|m| **m == step).count();
        assert_eq!(n, 1, "`{step}` happened {n} times: {events:#?}");
    }
    eprintln!("hand-over after SIGKILL: {handover:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_prometheus_config_and_template_judge_the_whole_fleet() {
    let etcd = EtcdServer::start();
    let url = etcd.url("/prom");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &shop(&v1, &v2, "v1")).await;
    let fleet = [
        instance(&url, "a", None).await,
        instance(&url, "b", None).await,
    ];
    // deploy/prometheus/prometheus.yml, discovering the fleet from instance a, scraping faster.
    let shipped = include_str!("../deploy/prometheus/prometheus.yml");
    let config = shipped
        .replace("127.0.0.1:15000", &fleet[0].admin_addr().to_string())
        .replace("127.0.0.1:15010", &fleet[1].admin_addr().to_string())
        .replace("127.0.0.1:15020", &fleet[0].admin_addr().to_string())
        .replace("5s", "1s")
        .replace("15s", "1s");
    assert_ne!(config, shipped);
    let prometheus = Prometheus::start_with(&config).await;
    let up = format!("http://{}/api/v1/query?query=sum(up)", prometheus.addr);
    eventually(30, "Prometheus scrapes both instances", || async {
        let r =
            weir::control::call::call(http::Method::GET, &up, None, Duration::from_secs(2)).await;
        r.is_ok_and(|r| r.body.contains("\"2\""))
    })
    .await;
    let template = include_str!("../deploy/prometheus/metric-template.yaml")
        .replace("127.0.0.1:9090", &prometheus.addr.to_string());
    let with_template = canary(&v1, &v2, "1s", 20, 60).replace(
        "    metrics:
    - name: request-success-rate
      interval: 1s
      thresholdRange: {min: 99}
",
        "    metrics:
    - name: fleet-error-rate
      templateRef: {name: fleet-error-rate}
      templateVariables: {version: v2}
      thresholdRange: {max: 1}
      interval: 5s
",
    );
    apply_ok(&url, &format!("{with_template}---\n{template}")).await;
    eventually(10, "a driver is elected", || async {
        admin_json(fleet[0].admin_addr(), "/fleet").await["canaries"][0]["driver"].is_string()
    })
    .await;
    let view = admin_json(fleet[0].admin_addr(), "/fleet").await;
    let d = if view["canaries"][0]["drivenHere"] == true {
        0
    } else {
        1
    };
    // Only the other instance carries traffic, and the canary fails it all.
    let load = Load::start(vec![fleet[1 - d].mesh_addr()], "shop", "/fail/v2");
    let admin = fleet[d].admin_addr();
    eventually(
        40,
        "the canary is rolled back on the fleet's numbers",
        || async { rollout(admin).await["phase"] == "Failed" },
    )
    .await;
    let events = rollout(admin).await["events"].to_string();
    assert!(events.contains("fleet-error-rate 100.00"), "{events}");
    load.stop().await;
    for s in fleet {
        s.shutdown().await;
    }
}

/// `shop` (v1, v2) all on v1, under an experiment: control (v1) against new-ui (v2), 50/50 by
/// cookie, judged on purchases (a POST to /checkout) and guarded by the success rate.
fn experiment(v1: &Backend, v2: &Backend) -> String {
    shop(v1, v2, "v1")
        + "---
apiVersion: weir.io/v1alpha1
kind: Experiment
metadata: {name: new-checkout}
spec:
  targetRef: {apiVersion: networking.istio.io/v1beta1, kind: VirtualService, name: shop}
  variants:
  - {name: control, subset: v1, weight: 50}
  - {name: new-ui, subset: v2, weight: 50}
  assignment: {cookieName: weir-exp}
  goals:
  - name: purchase
    match: [{uri: {prefix: /checkout}, method: {exact: POST}}]
  primaryGoal: purchase
  guardrails:
  - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1s}
  minUsersPerVariant: 1000000
  onConclusion: rollout
  rollout: {analysis: {interval: 1s, threshold: 5, stepWeight: 50, maxWeight: 100}}
"
}

/// The experiment cookie set by a response (`name=value`).
fn experiment_cookie(h: &http::HeaderMap) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("weir-exp="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// `n` users, each seen by every instance in turn: a first visit, a second on the next
/// instance, and, at the rate of the version shown (v1: 10%, v2: 30%), a purchase on the next,
/// some of them twice on different instances. Returns the users and buyers per version.
async fn shoppers(meshes: &[SocketAddr], n: usize) -> (HashMap<String, u64>, HashMap<String, u64>) {
    let mut rng = fastrand::Rng::with_seed(19);
    let c = client();
    let (mut users, mut buyers) = (HashMap::new(), HashMap::new());
    for i in 0..n {
        let at = |k: usize| meshes[(i + k) % meshes.len()];
        let (s, h, _) = send(&c, at(0), "shop", "/", &[]).await;
        assert_eq!(s, 200);
        let version = backend_of(&h);
        let mut jar = experiment_cookie(&h).expect("a new participant gets the cookie");
        *users.entry(version.clone()).or_default() += 1;
        let (_, again, _) = send(&c, at(1), "shop", "/", &[("cookie", &jar)]).await;
        assert_eq!(
            backend_of(&again),
            version,
            "another instance, the same variant"
        );
        assert!(experiment_cookie(&again).is_none());
        if rng.f64() < if version == "v1" { 0.1 } else { 0.3 } {
            for k in 0..if rng.bool() { 2 } else { 1 } {
                let (s, h, _) = request(
                    &c,
                    at(2 + k),
                    "POST",
                    "shop",
                    "/checkout",
                    &[("cookie", &jar)],
                    bytes::Bytes::from_static(b"{}"),
                )
                .await;
                assert_eq!(s, 200);
                assert_eq!(backend_of(&h), version);
                jar = experiment_cookie(&h).unwrap_or(jar);
            }
            *buyers.entry(version).or_default() += 1;
        }
    }
    (users, buyers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_experiment_counts_every_instance_and_one_instance_judges_it() {
    let etcd = EtcdServer::start();
    let url = etcd.url("/xp");
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    apply_ok(&url, &experiment(&v1, &v2)).await;
    let a = instance(&url, "a", None).await;
    let b = instance(&url, "b", None).await;
    let (users, buyers) = shoppers(&[a.mesh_addr(), b.mesh_addr()], 400).await;
    let counted = |x: &serde_json::Value, users: &HashMap<String, u64>| {
        (0..2).all(|v| {
            let version = ["v1", "v2"][v];
            let variant = &x["variants"][v];
            variant["users"].as_u64() == users.get(version).copied()
                && variant["goals"]["purchase"]["conversions"].as_u64()
                    == buyers.get(version).copied()
        })
    };
    // Every instance shows the fleet's counts: exactly what the users did, wherever they went.
    for s in [&a, &b] {
        eventually(10, "the fleet's counts", || async {
            counted(
                &admin_json(s.admin_addr(), "/experiments/new-checkout").await,
                &users,
            )
        })
        .await;
    }
    let judges = |v: serde_json::Value| v["experiments"][0].clone();
    let (ja, jb) = (
        judges(admin_json(a.admin_addr(), "/fleet").await),
        judges(admin_json(b.admin_addr(), "/fleet").await),
    );
    assert_eq!(ja["name"], "new-checkout");
    assert_eq!(ja["judge"], jb["judge"], "{ja} {jb}");
    assert!(
        ja["judgedHere"] != jb["judgedHere"],
        "exactly one judge: {ja} {jb}"
    );
    assert!(etcd.get("/xp/experiments/new-checkout/a").is_some());
    assert!(etcd.get("/xp/experiments/new-checkout/b").is_some());
    // The judge leaves: the other takes over, and the counts of the one that left still count.
    let (judge, other) = if ja["judgedHere"] == true {
        (a, b)
    } else {
        (b, a)
    };
    judge.shutdown().await;
    eventually(10, "the other instance judges", || async {
        judges(admin_json(other.admin_addr(), "/fleet").await)["judgedHere"] == true
    })
    .await;
    // A new participant on the one left joins the counts.
    let c = client();
    let (_, h, _) = send(&c, other.mesh_addr(), "shop", "/", &[]).await;
    let mut users = users.clone();
    *users.entry(backend_of(&h)).or_default() += 1;
    eventually(10, "the counts of every instance, gone or not", || async {
        counted(
            &admin_json(other.admin_addr(), "/experiments/new-checkout").await,
            &users,
        )
    })
    .await;
    // A third instance follows the stored state; a command sent to it reaches the judge.
    let third = instance(&url, "c", None).await;
    eventually(10, "the newcomer shows the fleet's counts", || async {
        counted(
            &admin_json(third.admin_addr(), "/experiments/new-checkout").await,
            &users,
        )
    })
    .await;
    let (status, body) = weir::admin::call(
        third.admin_addr(),
        "POST",
        "/experiments/new-checkout/conclude",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let x: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(x["phase"], "Concluded", "{x}");
    assert_eq!(x["decision"]["winner"], "new-ui", "{x}");
    for s in [&other, &third] {
        eventually(5, "every instance shows the conclusion", || async {
            let x = admin_json(s.admin_addr(), "/experiments/new-checkout").await;
            x["phase"] == "Concluded" && x["rollout"] == "new-checkout"
        })
        .await;
        eventually(5, "the winner's canary runs", || async {
            weir::admin::call(s.admin_addr(), "GET", "/canaries/new-checkout")
                .await
                .is_ok_and(|(status, _)| status == 200)
        })
        .await;
    }
    // A concluded experiment takes no command.
    let (status, _) =
        weir::admin::call(other.admin_addr(), "POST", "/experiments/new-checkout/stop")
            .await
            .unwrap();
    assert_eq!(status, 409);
    // Deleted from the store: its judge takes its state and counts along.
    let out = weir_cli(["delete", "--store", &url, "experiment", "new-checkout"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(10, "the experiment's keys are gone", || async {
        etcd.get("/xp/rollouts/experiments/new-checkout/state")
            .is_none()
            && etcd.get("/xp/experiments/new-checkout/a").is_none()
    })
    .await;
    other.shutdown().await;
    third.shutdown().await;
}
