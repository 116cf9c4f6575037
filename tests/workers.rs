//! Per-core workers (`weir run --workers N`, and the default of one per core): each worker
//! accepts on a socket of its own per listener (`SO_REUSEPORT`), connections spread over them,
//! and an address another process holds is still refused, not shared.
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// The weir binary with `--workers 2`, serving a service on `mesh`.
struct Process(Child);

impl Process {
    fn spawn(backend: &Backend, mesh: SocketAddr, stderr: Stdio) -> Process {
        let config = scratch_dir().join("mesh.yaml");
        std::fs::write(&config, service_entry("svc", &[("v1", backend)])).unwrap();
        Process::spawn_with(&config, mesh, stderr)
    }

    fn spawn_with(config: &std::path::Path, mesh: SocketAddr, stderr: Stdio) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--workers", "2", "--config"])
            .arg(config)
            .args(["--admin", "127.0.0.1:0", "--mesh-listen", &mesh.to_string()])
            .env("WEIR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Process(child)
    }

    /// Each worker thread's voluntary context switches (a parked worker woken by work).
    fn worker_wakeups(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let tasks = format!("/proc/{}/task", self.0.id());
        for task in std::fs::read_dir(tasks).unwrap() {
            let dir = task.unwrap().path();
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let name = name.trim().to_owned();
            if !name.starts_with("weir-worker-") {
                continue;
            }
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            let switches = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap();
            out.push((name, switches));
        }
        out.sort();
        out
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Listening sockets on `port` in /proc/net/tcp (state 0A).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&local) && f[3] == "0A"
        })
        .count()
}

/// A weir with two workers serving `backend` on a free port, once it answers.
async fn serving(backend: &Backend) -> (Process, SocketAddr) {
    let mesh = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let weir = Process::spawn(backend, mesh, Stdio::null());
    until_serving(mesh).await;
    (weir, mesh)
}

/// `n` connections to `addr` one after the other, each with one request answered 200.
async fn one_request_per_connection(addr: SocketAddr, n: usize) {
    for i in 0..n {
        let request = format!("GET /{i} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n");
        let answer = raw(addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
}

/// Waits (20 seconds at most) until `addr` refuses connections.
async fn until_refused(addr: SocketAddr) {
    let began = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{addr} still accepts"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn until_serving(mesh: SocketAddr) {
    let began = Instant::now();
    loop {
        // Not yet listening is refused; `raw` is only asked once something listens.
        if tokio::net::TcpStream::connect(mesh).await.is_ok() {
            let answer = raw(
                mesh,
                "GET / HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n",
            )
            .await;
            if answer.starts_with("HTTP/1.1 200 ") {
                return;
            }
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "weir never served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn two_workers_each_accept_on_their_own_socket_and_share_the_connections() {
    let backend = Backend::start("v1").await;
    let (weir, mesh) = serving(&backend).await;
    assert_eq!(listening_sockets(mesh.port()), 2, "one socket per worker");
    let before = weir.worker_wakeups();
    assert_eq!(
        before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["weir-worker-0", "weir-worker-1"]
    );
    // 200 connections, one request each, one after the other: the kernel hashes each to one
    // socket, and the worker behind it wakes for it. The chance that either worker gets fewer
    // than 20 of 200 is below 1e-30.
    one_request_per_connection(mesh, 200).await;
    let after = weir.worker_wakeups();
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert!(
            a - b >= 20,
            "{name} woke {} times for 200 connections",
            a - b
        );
    }
    assert!(backend.hits() >= 200);
}

#[tokio::test]
async fn an_address_held_by_another_weir_is_refused_not_shared() {
    let backend = Backend::start("v1").await;
    let (_first, mesh) = serving(&backend).await;
    let mut second = Process::spawn(&backend, mesh, Stdio::piped());
    let began = Instant::now();
    let status = loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "a second weir is running on {mesh}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains(&mesh.to_string()), "{stderr}");
    assert_eq!(
        listening_sockets(mesh.port()),
        2,
        "still the first weir's two"
    );
}

#[tokio::test]
async fn a_gateway_listener_added_and_removed_by_a_reload_is_served_by_every_worker_then_freed() {
    let backend = Backend::start("v1").await;
    let mesh = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let edge = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = scratch_dir().join("mesh.yaml");
    let services = service_entry("svc", &[("v1", &backend)]);
    std::fs::write(&config, &services).unwrap();
    let _weir = Process::spawn_with(&config, mesh, Stdio::null());
    until_serving(mesh).await;
    assert_eq!(listening_sockets(edge.port()), 0);
    // The Gateway comes with a reload: the control plane binds it, and each worker listens.
    let on_edge = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: [\"*\"]
  gateways: [edge]
  http:
  - route: [{destination: {host: svc}}]
";
    let with_gateway = format!(
        "{services}{}{on_edge}",
        loopback_gateway("edge", edge.port())
    );
    std::fs::write(&config, with_gateway).unwrap();
    until_serving(edge).await;
    assert_eq!(listening_sockets(edge.port()), 2, "one socket per worker");
    one_request_per_connection(edge, 50).await;
    // Gone with the next reload: every worker's socket is closed, and the mesh keeps serving.
    std::fs::write(&config, &services).unwrap();
    until_refused(edge).await;
    assert_eq!(
        listening_sockets(edge.port()),
        0,
        "every worker's socket closed"
    );
    until_serving(mesh).await;
}
