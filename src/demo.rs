//! `weir demo`: the embedded-default main job. Two demo backends (v1, v2) and weir start on
//! loopback; a load driver sends traffic through weir while the weights move from v1 to v2 in
//! steps, applied through the same path a config reload takes. It ends by itself and exits 0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};

use crate::config;
use crate::run::{Change, Options, Server};

/// The weights the demo walks through (v1, v2), and how long each step lasts.
const STEPS: [(u32, u32); 5] = [(100, 0), (90, 10), (75, 25), (50, 50), (0, 100)];
const STEP: Duration = Duration::from_secs(4);
/// Concurrent driver connections and the pause between their requests (about 400 req/s).
const DRIVERS: usize = 4;
const PAUSE: Duration = Duration::from_millis(10);

/// The demo configuration; `{V1}`, `{V2}`, `{W1}`, `{W2}` are filled in.
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
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: api-service}
spec:
  host: api-service
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: api-service}
spec:
  hosts: [api-service]
  http:
  - name: canary
    route:
    - {destination: {host: api-service, subset: v1}, weight: {W1}}
    - {destination: {host: api-service, subset: v2}, weight: {W2}}
";

/// Counts seen by the driver.
#[derive(Default)]
struct Tally {
    v1: AtomicU64,
    v2: AtomicU64,
    failed: AtomicU64,
}

/// Runs the demo.
pub async fn run() -> ExitCode {
    match demo().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    let v1 = backend("v1").await?;
    let v2 = backend("v2").await?;
    let render = |w1: u32, w2: u32| {
        TEMPLATE
            .replace("{V1}", &v1.port().to_string())
            .replace("{V2}", &v2.port().to_string())
            .replace("{W1}", &w1.to_string())
            .replace("{W2}", &w2.to_string())
    };
    let set = |w1, w2| config::parse_set("<demo>", &render(w1, w2)).map_err(errors);
    let opts = Options {
        configs: Vec::new(),
        admin: "127.0.0.1:0".parse()?,
        mesh: "127.0.0.1:0".parse()?,
        state_dir: None,
    };
    let server = Server::start(opts, Some(set(STEPS[0].0, STEPS[0].1)?)).await?;
    println!(
        "weir demo: v1 on {v1}, v2 on {v2}, weir on {} (admin {})",
        server.mesh_addr(),
        server.admin_addr()
    );
    println!(
        "try it meanwhile: curl -H 'Host: api-service' http://{}/",
        server.mesh_addr()
    );
    println!(
        "                  curl http://{}/metrics\n",
        server.admin_addr()
    );

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let drivers: Vec<_> = (0..DRIVERS)
        .map(|_| tokio::spawn(drive(server.mesh_addr(), tally.clone(), stop.clone())))
        .collect();

    let mut elapsed = 0;
    let mut last = (0, 0, 0);
    for (step, (w1, w2)) in STEPS.iter().enumerate() {
        if step > 0 {
            let generation = server
                .apply(Change::Replace(set(*w1, *w2)?))
                .await
                .map_err(errors)?;
            println!("-- applied weights v1={w1} v2={w2} (config generation {generation})");
        }
        for _ in 0..STEP.as_secs() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            elapsed += 1;
            let now = (
                tally.v1.load(Ordering::Relaxed),
                tally.v2.load(Ordering::Relaxed),
                tally.failed.load(Ordering::Relaxed),
            );
            let (a, b, f) = (now.0 - last.0, now.1 - last.1, now.2 - last.2);
            last = now;
            let total = (a + b + f).max(1) as f64;
            println!(
                "[{elapsed:>2}s] weights {w1:>3}/{w2:<3} | last second: v1 {a:>4} ({:>5.1}%)  v2 {b:>4} ({:>5.1}%)  {} | success {:>5.1}%",
                100.0 * a as f64 / total,
                100.0 * b as f64 / total,
                bar(b as f64 / total),
                100.0 * (a + b) as f64 / total,
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        let _ = d.await;
    }
    let metrics = server.control().metrics.encode(false);
    println!("\nweir's own metrics (http_requests_total by version):");
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("http_requests_total{service=\"api-service\""))
    {
        println!("  {line}");
    }
    let failed = tally.failed.load(Ordering::Relaxed);
    println!(
        "\ndone: {} requests to v1, {} to v2, {failed} failed; v2 now takes all traffic.",
        tally.v1.load(Ordering::Relaxed),
        tally.v2.load(Ordering::Relaxed)
    );
    server.shutdown().await;
    if failed > 0 {
        return Err(format!("{failed} requests failed").into());
    }
    Ok(())
}

fn errors(errors: Vec<config::ConfigError>) -> Box<dyn std::error::Error> {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
        .into()
}

fn bar(share: f64) -> String {
    let n = (share * 20.0).round() as usize;
    format!("[{}{}]", "#".repeat(n), ".".repeat(20 - n.min(20)))
}

/// A demo backend answering with its version.
async fn backend(version: &'static str) -> std::io::Result<SocketAddr> {
    let socket = TcpListener::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| async move {
                let mut resp =
                    Response::new(Full::new(Bytes::from(format!("hello from {version}\n"))));
                resp.headers_mut()
                    .insert("x-version", http::HeaderValue::from_static(version));
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// One keep-alive connection sending requests until told to stop.
async fn drive(weir: SocketAddr, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
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
            Ok(resp) if resp.status().is_success() => {
                let version = resp.headers().get("x-version").cloned();
                let _ = resp.into_body().collect().await;
                match version.as_ref().map(|v| v.as_bytes()) {
                    Some(b"v1") => tally.v1.fetch_add(1, Ordering::Relaxed),
                    _ => tally.v2.fetch_add(1, Ordering::Relaxed),
                };
                true
            }
            _ => false,
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
