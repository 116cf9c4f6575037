//! Fleet mode, measured on loopback with a real etcd and three `weir run --store` processes:
//!
//! - from `weir apply` returning to every instance serving the change (a VirtualService's
//!   direct response changes; each instance is polled until it answers the new body), over
//!   100 applies, with 1 and with 1,000 other routes in the store;
//! - from SIGKILL of a rollout's driver to the next step of the rollout, taken by another.
//!
//! `cargo bench --bench fleet_apply` (needs `etcd`; scripts/test.sh installs it). Requests per
//! second in store mode against file mode: `bench/fleet-compare.sh`.
#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::etcd::EtcdServer;
use support::{client, free_port, scratch_dir, send};

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

struct Instance {
    child: Child,
    admin: SocketAddr,
    mesh: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(url: &str, id: &str, lease: u64) -> Instance {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mesh: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(WEIR)
        .args(["run", "--store", url, "--instance-id", id, "--workers", "1"])
        .args(["--store-lease", &lease.to_string()])
        .args([
            "--admin",
            &admin.to_string(),
            "--mesh-listen",
            &mesh.to_string(),
        ])
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Instance { child, admin, mesh }
}

fn apply(url: &str, yaml: &str) {
    let file = scratch_dir().join("apply.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(WEIR)
        .args(["apply", "--store", url, "-f", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn direct(name: &str, body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [{name}]
  http:
  - directResponse: {{status: 200, body: {{string: \"{body}\"}}}}
---
"
    )
}

async fn wait_ready(instances: &[Instance]) {
    for i in instances {
        for _ in 0..400 {
            if matches!(
                weir::admin::call(i.admin, "GET", "/ready").await,
                Ok((200, _))
            ) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn apply_to_serve(etcd: &EtcdServer, routes: usize) {
    let url = etcd.url(&format!("/bench-{routes}"));
    let others: String = (0..routes).map(|i| direct(&format!("h{i}"), "x")).collect();
    apply(&url, &(others + &direct("probe", "start")));
    let fleet: Vec<Instance> = (0..3).map(|i| start(&url, &format!("i{i}"), 5)).collect();
    wait_ready(&fleet).await;
    let c = client();
    let mut samples = Vec::new();
    for n in 0..100 {
        let body = format!("apply-{n}");
        let yaml = direct("probe", &body);
        let url2 = url.clone();
        tokio::task::spawn_blocking(move || apply(&url2, &yaml))
            .await
            .unwrap();
        let returned = Instant::now();
        for i in &fleet {
            loop {
                let (_, _, got) = send(&c, i.mesh, "probe", "/", &[]).await;
                if got == body {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        samples.push(returned.elapsed());
    }
    samples.sort();
    println!(
        "apply -> all 3 instances serving, {routes} other routes in the store, 100 applies: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

async fn handover(etcd: &EtcdServer, lease: u64) {
    let url = etcd.url(&format!("/bench-handover-{lease}"));
    let backend = support::Backend::start("v").await;
    // No metrics: each step passes on its own, one a second.
    let yaml = support::service_entry("shop", &[("v1", &backend), ("v2", &backend)])
        + &support::destination_rule("shop", &["v1", "v2"])
        + &support::shop_canary("interval: 1s\nthreshold: 2\nstepWeight: 1\nmaxWeight: 99");
    apply(&url, &yaml);
    let mut fleet: Vec<Instance> = (0..3)
        .map(|i| start(&url, &format!("i{i}"), lease))
        .collect();
    wait_ready(&fleet).await;
    let weight = |admin| async move {
        let (_, body) = weir::admin::call(admin, "GET", "/canaries/shop")
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["canaryWeight"].as_u64().unwrap_or(0)
    };
    while weight(fleet[0].admin).await < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = weir::admin::call(fleet[0].admin, "GET", "/fleet")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let driver = v["canaries"][0]["driver"].as_str().unwrap().to_owned();
    let index: usize = driver[1..].parse().unwrap();
    let mut dead = fleet.remove(index);
    let before = weight(fleet[0].admin).await;
    dead.child.kill().unwrap();
    let killed = Instant::now();
    dead.child.wait().unwrap();
    let survivor = fleet[0].admin;
    while weight(survivor).await <= before {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "driver SIGKILLed -> next step by another instance (lease {lease} s, interval 1 s): {:.2} s",
        killed.elapsed().as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // 1,001 resources written in one transaction: past etcd's default of 128 operations.
    let etcd =
        EtcdServer::start_with(&["--max-txn-ops", "4096", "--max-request-bytes", "33554432"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        apply_to_serve(&etcd, 1).await;
        apply_to_serve(&etcd, 1000).await;
        handover(&etcd, 5).await;
        handover(&etcd, 2).await;
    });
}
