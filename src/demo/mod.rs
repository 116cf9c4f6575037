//! `weir demo`: the embedded-default main job. Three demo backends (v1, v2, and a faulty v3) and
//! weir start on loopback; a load driver sends traffic through weir while a Flagger `Canary`
//! releases v2 step by step (checks pass, it is promoted), then releases v3, whose 20 % errors
//! fail the checks and roll it back on its own. Progress is printed live; it exits 0 when both
//! releases ended as they should.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

mod backend;
mod stubs;

pub(crate) use stubs::run as stubs;

use crate::cli::view;
use crate::config;
use crate::control::Change;
use crate::run::{Options, Server};

/// Concurrent driver connections and the pause between their requests (about 400 req/s).
const DRIVERS: usize = 4;
const PAUSE: Duration = Duration::from_millis(10);
/// How long one release may take before the demo gives up.
const RELEASE_LIMIT: Duration = Duration::from_secs(60);
/// Any free port on loopback.
const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
/// Every how many requests the faulty v3 answers 500 (20 %).
const V3_FAULT_EVERY: u64 = 5;

/// The demo configuration; `{V1}`, `{V2}`, `{V3}` (ports), `{PRIMARY}` and `{CANARY}`
/// (versions) are filled in.
const TEMPLATE: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-service}
spec:
  hosts: [api-service]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: {V1}}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: {V2}}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: {V3}}, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: api-service}
spec:
  host: api-service
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: api-service}
spec:
  hosts: [api-service]
  http:
  - name: release
    route:
    - {destination: {host: api-service, subset: {PRIMARY}}, weight: 100}
    - {destination: {host: api-service, subset: {CANARY}}, weight: 0}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: api-service}
spec:
  targetRef: {apiVersion: networking.istio.io/v1beta1, kind: VirtualService, name: api-service}
  primarySubset: {PRIMARY}
  canarySubset: {CANARY}
  analysis:
    interval: 1s
    threshold: 2
    stepWeight: 20
    maxWeight: 60
    metrics:
    - name: request-success-rate
      interval: 2s
      thresholdRange: {min: 99}
    - name: error-rate-vs-primary
      interval: 2s
      confidence: 99
";

/// Counts seen by the driver.
#[derive(Default)]
struct Tally {
    by_version: [AtomicU64; 3],
    errors: AtomicU64,
    failed: AtomicU64,
    /// Milliseconds from the start to the first 5xx (0: none yet).
    first_error_ms: AtomicU64,
}

impl Tally {
    fn read(&self) -> [u64; 5] {
        let v = |i: usize| self.by_version[i].load(Ordering::Relaxed);
        [
            v(0),
            v(1),
            v(2),
            self.errors.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        ]
    }
}

/// Runs the demo.
pub(crate) async fn run() -> ExitCode {
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let ports = [
        backend::start(LOOPBACK, "v1", 0).await?,
        backend::start(LOOPBACK, "v2", 0).await?,
        backend::start(LOOPBACK, "v3", V3_FAULT_EVERY).await?,
    ];
    let set = |primary: &str, canary: &str| {
        let yaml = TEMPLATE
            .replace("{V1}", &ports[0].port().to_string())
            .replace("{V2}", &ports[1].port().to_string())
            .replace("{V3}", &ports[2].port().to_string())
            .replace("{PRIMARY}", primary)
            .replace("{CANARY}", canary);
        config::parse_set("<demo>", &yaml).map_err(errors)
    };
    let opts = Options {
        fleet: None,
        configs: Vec::new(),
        admin: "127.0.0.1:0".parse()?,
        mesh: "127.0.0.1:0".parse()?,
        state_dir: None,
        admin_token: None,
        policy: crate::edge::ServerPolicy::default(),
        access_log: None,
    };
    let server = Server::start(opts, Some(set("v1", "v2")?)).await?;
    println!(
        "weir demo: v1 on {}, v2 on {}, v3 (answers 500 to 1 request in {V3_FAULT_EVERY}) on {}",
        ports[0], ports[1], ports[2]
    );
    println!(
        "weir on {} (admin {}); meanwhile try: curl -H 'Host: api-service' http://{}/",
        server.mesh_addr(),
        server.admin_addr(),
        server.mesh_addr()
    );
    println!(
        "                     weir canary watch api-service --admin {}\n",
        server.admin_addr()
    );

    let start = Instant::now();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let drivers: Vec<_> = (0..DRIVERS)
        .map(|_| {
            tokio::spawn(drive(
                server.mesh_addr(),
                tally.clone(),
                stop.clone(),
                start,
            ))
        })
        .collect();

    println!("== release 1: v2, a healthy version, replaces v1 ==");
    let released = follow(&server, &tally, start).await?;
    if released != "Succeeded" {
        return Err(format!("v2 should have been promoted, but the rollout {released}").into());
    }
    println!("\n== release 2: v3, a faulty version, is tried against v2 ==");
    server
        .apply(Change::Replace(set("v2", "v3")?))
        .await
        .map_err(errors)?;
    let before = tally.read();
    let outcome = follow(&server, &tally, start).await?;
    let after = tally.read();
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        let _ = d.await;
    }
    if outcome != "Failed" {
        return Err(format!("v3 should have been rolled back, but the rollout {outcome}").into());
    }
    let first_error = tally.first_error_ms.load(Ordering::Relaxed);
    let rolled_back = server
        .control()
        .rollouts
        .json(Some("api-service"))
        .and_then(|v| {
            v["events"]
                .as_array()?
                .iter()
                .rev()
                .find(|e| {
                    e["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("Rolling back"))
                })
                .and_then(|e| e["time"].as_f64())
        });
    println!(
        "\ndone: v3 served {} requests, {} of them errors, before it was rolled back{}; v2 keeps all traffic.",
        after[2] - before[2],
        after[3] - before[3],
        match rolled_back {
            Some(t) if first_error > 0 => format!(
                " {:.1} s after the first error",
                t - unix_time_at(start, first_error)
            ),
            _ => String::new(),
        }
    );
    server.shutdown().await;
    if after[4] > 0 {
        return Err(format!("{} requests got no answer", after[4]).into());
    }
    Ok(())
}

/// Prints the rollout's progress and traffic every second, and its events as they come, until
/// it succeeds or fails; returns the final phase. Each release is a new rollout (its primary
/// and canary differ), whose events are counted from its first.
async fn follow(
    server: &Server,
    tally: &Tally,
    start: Instant,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut seen = 0;
    let began = Instant::now();
    let mut last = tally.read();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        // A second of traffic, then what happened in it and where the rollout stands now.
        ticker.tick().await;
        let Some(v) = server.control().rollouts.json(Some("api-service")) else {
            return Err("the rollout is gone".into());
        };
        let (events, total) = view::new_events(&v, seen);
        seen = total;
        for e in events {
            println!("    {e}");
        }
        let now = tally.read();
        let d: Vec<u64> = now.iter().zip(last).map(|(a, b)| a - b).collect();
        last = now;
        let sent = (d[0] + d[1] + d[2]).max(1) as f64;
        let pct = |n: u64| 100.0 * n as f64 / sent;
        let phase = v["phase"].as_str().unwrap_or("").to_owned();
        let weight = v["canaryWeight"].as_u64().unwrap_or(0);
        println!(
            "[{:>3}s] {:<12} {} {:>3}% canary | last second: v1 {:>3.0}%  v2 {:>3.0}%  v3 {:>3.0}%  errors {}",
            start.elapsed().as_secs(),
            phase,
            view::bar(weight),
            weight,
            pct(d[0]),
            pct(d[1]),
            pct(d[2]),
            d[3],
        );
        if phase == "Succeeded" || phase == "Failed" {
            return Ok(phase);
        }
        if began.elapsed() > RELEASE_LIMIT {
            return Err(format!("the release did not finish within {RELEASE_LIMIT:?}").into());
        }
    }
}

/// The Unix time `ms` milliseconds after `start`.
fn unix_time_at(start: Instant, ms: u64) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    now - start.elapsed().as_secs_f64() + ms as f64 / 1000.0
}

fn errors(errors: Vec<config::ConfigError>) -> Box<dyn std::error::Error> {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
        .into()
}

/// One keep-alive connection sending requests until told to stop.
async fn drive(weir: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>, start: Instant) {
    let mut sender = None;
    while !stop.load(Ordering::Relaxed) {
        if sender.is_none() {
            sender = connect(weir).await;
        }
        let Some(s) = sender.as_mut() else {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(PAUSE).await;
            continue;
        };
        let req = Request::builder()
            .uri("/")
            .header("host", "api-service")
            .body(Full::new(Bytes::new()))
            .expect("static request");
        let ok = match s.send_request(req).await {
            Ok(resp) => {
                let version = resp.headers().get("x-version").cloned();
                if resp.status().is_server_error() {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    let ms = start.elapsed().as_millis() as u64;
                    let _ = tally.first_error_ms.compare_exchange(
                        0,
                        ms.max(1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                let i = match version.as_ref().map(|v| v.as_bytes()) {
                    Some(b"v1") => 0,
                    Some(b"v2") => 1,
                    _ => 2,
                };
                tally.by_version[i].fetch_add(1, Ordering::Relaxed);
                resp.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        };
        if !ok {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            sender = None;
        }
        tokio::time::sleep(PAUSE).await;
    }
}

async fn connect(addr: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}
