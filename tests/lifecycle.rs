//! The weir binary's lifecycle (docs/reliability.md section 3, cases 14, 29): SIGTERM drains
//! in-flight requests and exits 0, a killed weir is back quickly with its last good config,
//! and 10,000 slow clients do not keep others out.
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// The weir binary, serving `config` on `mesh`.
struct Process {
    child: Child,
}

impl Process {
    fn spawn(config: &Path, mesh: SocketAddr) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "--config"])
            .arg(config)
            .args(["--admin", "127.0.0.1:0", "--mesh-listen", &mesh.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Process { child }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit status (at most `limit`).
    async fn exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        weir::edge::overload::resident_bytes_in(&status).unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a new connection; the raw answer (empty if refused).
async fn once(mesh: SocketAddr, path: &str) -> String {
    match TcpStream::connect(mesh).await {
        Ok(_) => {
            raw(
                mesh,
                &format!("GET {path} HTTP/1.1\r\nhost: svc\r\nconnection: close\r\n\r\n"),
            )
            .await
        }
        Err(_) => String::new(),
    }
}

/// Waits until weir answers on `mesh`; how long that took.
async fn until_serving(mesh: SocketAddr) -> Duration {
    let began = Instant::now();
    loop {
        if once(mesh, "/").await.starts_with("HTTP/1.1 200 ") {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "weir never served"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn config(backend: &Backend) -> std::path::PathBuf {
    let path = scratch_dir().join("mesh.yaml");
    std::fs::write(&path, service_entry("svc", &[("v1", backend)])).unwrap();
    path
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_closes_idle_ones_and_exits_0() {
    let backend = Backend::start("v1").await;
    let mesh = free_addr();
    let mut weir = Process::spawn(&config(&backend), mesh);
    until_serving(mesh).await;
    // An idle keep-alive connection, and a request in flight.
    let mut idle = TcpStream::connect(mesh).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    let mut busy = TcpStream::connect(mesh).await.unwrap();
    busy.write_all(b"GET /delay/1500 HTTP/1.1\r\nhost: svc\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    weir.signal("TERM");
    // The idle connection is closed, not reset.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    // No new connections.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(once(mesh, "/").await, "");
    // The request in flight finishes, told that the connection closes.
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), busy.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    assert!(out.contains("connection: close"), "{out}");
    let status = weir
        .exit(Duration::from_secs(5))
        .await
        .expect("still running");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn a_killed_weir_is_back_with_its_last_good_config_at_once() {
    let backend = Backend::start("v1").await;
    let config = config(&backend);
    let mesh = free_addr();
    let mut weir = Process::spawn(&config, mesh);
    until_serving(mesh).await;
    weir.child.kill().unwrap();
    weir.child.wait().unwrap();
    let began = Instant::now();
    let _weir = Process::spawn(&config, mesh);
    let took = until_serving(mesh).await;
    eprintln!("restart: serving again {:?} after SIGKILL", began.elapsed());
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn ten_thousand_slow_clients_do_not_keep_others_out() {
    let backend = Backend::start("v1").await;
    let mesh = free_addr();
    let weir = Process::spawn(&config(&backend), mesh);
    until_serving(mesh).await;
    let began = Instant::now();
    let mut slow = Vec::with_capacity(10_000);
    while slow.len() < 10_000 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..500 {
            batch.spawn(async move {
                let mut s = TcpStream::connect(mesh).await.ok()?;
                s.write_all(b"GET / HTTP/1.1\r\nhost: svc\r\nx-slow: ")
                    .await
                    .ok()?;
                Some(s)
            });
        }
        slow.extend(batch.join_all().await.into_iter().flatten());
        // A normal client is served meanwhile.
        assert!(once(mesh, "/").await.starts_with("HTTP/1.1 200 "));
    }
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let began = Instant::now();
        assert!(once(mesh, "/").await.starts_with("HTTP/1.1 200 "));
        worst = worst.max(began.elapsed());
    }
    eprintln!(
        "10,000 slow clients (opened in {:?}): weir resident {} MiB, slowest of 50 normal requests {worst:?}",
        began.elapsed(),
        weir.resident_bytes() >> 20
    );
    // The slow ones get 408 at their head deadline.
    for s in slow.iter_mut().step_by(997) {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
        assert!(
            out.starts_with(b"HTTP/1.1 408 "),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}
