//! Test harness: real backends and a real weir on loopback.
#![allow(dead_code, unreachable_pub, missing_docs)]

#[path = "../../src/store/test_etcd.rs"]
pub mod etcd;
pub mod pki;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers with its name in `x-backend` and echoes the request (and its body)
/// as JSON. `/status/<code>` answers that code; `/delay/<ms>` waits first; `/flaky/<k>/<code>`
/// answers `code` to the first `k` tries of each `x-request-id`, then 200; `/slow-first/<ms>`
/// waits on the first try of each request id only; `/fail/<name>` answers 500 from the backend
/// of that name and 200 from the others; `/fail-every/<name>/<k>` answers 500 from that
/// backend (or from every one, for `all`) to every k-th request it gets; `/slow-on/<name>/<ms>` waits on that backend only.
/// Tries are counted per request id.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub tries: Tries,
    /// TLS handshakes it completed (TLS backends only).
    pub handshakes: Arc<std::sync::Mutex<Vec<Handshake>>>,
    task: tokio::task::JoinHandle<()>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

/// Tries seen per `x-request-id`, and the most requests in flight at once.
#[derive(Clone, Default)]
pub struct Tries {
    by_id: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
}

impl Tries {
    /// Counts a try of `id`; returns its number (1 for the first).
    fn count(&self, id: &str) -> usize {
        let mut m = self.by_id.lock().unwrap();
        let n = m.entry(id.to_owned()).or_default();
        *n += 1;
        *n
    }

    /// Tries of one request id.
    pub fn of(&self, id: &str) -> usize {
        self.by_id.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

impl Drop for Backend {
    /// Stops listening and closes every connection.
    fn drop(&mut self) {
        self.task.abort();
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// What a TLS backend saw of one handshake.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    pub client_certificate: bool,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Backend::serve(name, None).await
    }

    /// A backend behind TLS with this server configuration.
    pub async fn start_tls(name: &str, config: Arc<rustls::ServerConfig>) -> Backend {
        Backend::serve(name, Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn serve(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let tries = Tries::default();
        let handshakes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, h, t) = (name.to_owned(), hits.clone(), tries.clone());
        let seen = handshakes.clone();
        let conns = Arc::new(std::sync::Mutex::new(Vec::new()));
        let live = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = socket.accept().await else {
                    continue;
                };
                let (n, h, t) = (n.clone(), h.clone(), t.clone());
                let (tls, seen) = (tls.clone(), seen.clone());
                let conn = tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (n, h, t) = (n.clone(), h.clone(), t.clone());
                        async move { Ok::<_, Infallible>(answer(&n, &h, &t, req).await) }
                    });
                    let server = auto::Builder::new(TokioExecutor::new());
                    let Some(tls) = tls else {
                        let _ = server.serve_connection(TokioIo::new(stream), svc).await;
                        return;
                    };
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let session = stream.get_ref().1;
                    seen.lock().unwrap().push(Handshake {
                        sni: session.server_name().map(str::to_owned),
                        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
                        client_certificate: session.peer_certificates().is_some(),
                    });
                    let _ = server.serve_connection(TokioIo::new(stream), svc).await;
                });
                let mut live = live.lock().unwrap();
                live.retain(|c: &tokio::task::AbortHandle| !c.is_finished());
                live.push(conn.abort_handle());
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            hits,
            tries,
            handshakes,
            task,
            conns,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn answer(
    name: &str,
    hits: &AtomicUsize,
    tries: &Tries,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let hit = hits.fetch_add(1, Ordering::SeqCst) + 1;
    let now = tries.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    tries.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _flight = Flight(&tries.in_flight);
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let try_number = tries.count(&id);
    let path = req.uri().path().to_owned();
    let reply_cache_control = req.headers().get("x-reply-cache-control").cloned();
    let reply_goal = req.headers().get("x-reply-goal").cloned();
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        status = StatusCode::from_u16(code.parse().unwrap_or(500)).unwrap();
    }
    if let Some(rest) = path.strip_prefix("/flaky/") {
        let (k, code) = rest.split_once('/').unwrap_or((rest, "503"));
        if try_number <= k.parse().unwrap_or(0) {
            status = StatusCode::from_u16(code.parse().unwrap_or(503)).unwrap();
        }
    }
    if path.strip_prefix("/fail/") == Some(name) {
        status = StatusCode::INTERNAL_SERVER_ERROR;
    }
    // `/fail-every/NAME/K`: backend NAME answers 500 to every K-th request it gets.
    if let Some((who, k)) = path
        .strip_prefix("/fail-every/")
        .and_then(|r| r.split_once('/'))
        && (who == name || who == "all")
        && hit.is_multiple_of(k.parse().unwrap_or(1))
    {
        status = StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Some((who, ms)) = path
        .strip_prefix("/slow-on/")
        .and_then(|r| r.split_once('/'))
        && who == name
    {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(ms) = path.strip_prefix("/slow-first/")
        && try_number == 1
    {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let (method, uri, version) = (req.method().clone(), req.uri().to_string(), req.version());
    let sent = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    // `/bytes/N`: a body of N bytes.
    if let Some(n) = path.strip_prefix("/bytes/") {
        let body = Bytes::from(vec![b'x'; n.parse().unwrap_or(0)]);
        return Response::new(Full::new(body));
    }
    let body = serde_json::json!({
        "backend": name,
        "method": method.as_str(),
        "uri": uri,
        "version": format!("{version:?}"),
        "headers": headers,
        "try": try_number,
        "body": String::from_utf8_lossy(&sent),
    });
    let mut resp = Response::builder()
        .status(status)
        .header("x-backend", name)
        .header("content-type", "application/json")
        .header("connection", "keep-alive")
        .header("x-hop", "drop-me");
    // `x-reply-cache-control: V` asks for `cache-control: V` on the answer.
    if let Some(v) = reply_cache_control {
        resp = resp.header("cache-control", v);
    }
    // `x-reply-goal: V` asks for `x-weir-goal: V` (an experiment's goal) on the answer.
    if let Some(v) = reply_goal {
        resp = resp.header("x-weir-goal", v);
    }
    resp.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// Leaves the in-flight count when the request ends, answered or cancelled.
struct Flight<'a>(&'a AtomicUsize);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs the `weir` binary with `args`, off the runtime (a weir under test lives on it).
pub async fn weir_cli<I, S>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Options of an in-process weir on loopback serving `config`, otherwise the defaults.
pub fn options(config: PathBuf) -> weir::run::Options {
    weir::run::Options {
        configs: vec![config],
        fleet: None,
        admin: "127.0.0.1:0".parse().unwrap(),
        mesh: "127.0.0.1:0".parse().unwrap(),
        state_dir: None,
        admin_token: None,
        policy: weir::edge::ServerPolicy::default(),
        access_log: None,
    }
}

/// A unique scratch directory.
pub fn scratch_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    // Process ids come round again: a directory an earlier run left under the same name
    // would hand this test its files (an access log it appends to, with the old lines in).
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// weir running in-process on loopback with a config file it watches.
pub struct Weir {
    pub server: weir::run::Server,
    pub config: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub policy: weir::edge::ServerPolicy,
}

impl Weir {
    pub async fn start(yaml: &str) -> Weir {
        Weir::start_with_state(yaml, None).await
    }

    /// Starts weir keeping its state in `state_dir`.
    pub async fn start_with_state(yaml: &str, state_dir: Option<PathBuf>) -> Weir {
        let dir = scratch_dir();
        let config = dir.join("mesh.yaml");
        std::fs::write(&config, yaml).unwrap();
        Weir::serve(config, state_dir, weir::edge::ServerPolicy::default()).await
    }

    /// Starts weir holding clients to `policy`.
    pub async fn start_with_policy(yaml: &str, policy: weir::edge::ServerPolicy) -> Weir {
        let config = scratch_dir().join("mesh.yaml");
        std::fs::write(&config, yaml).unwrap();
        Weir::serve(config, None, policy).await
    }

    /// Stops weir (as SIGTERM does) and starts it again on the same files.
    pub async fn restart(self) -> Weir {
        let Weir {
            server,
            config,
            state_dir,
            policy,
        } = self;
        server.shutdown().await;
        Weir::serve(config, state_dir, policy).await
    }

    async fn serve(
        config: PathBuf,
        state_dir: Option<PathBuf>,
        policy: weir::edge::ServerPolicy,
    ) -> Weir {
        let opts = weir::run::Options {
            fleet: None,
            configs: vec![config.clone()],
            admin: "127.0.0.1:0".parse().unwrap(),
            mesh: "127.0.0.1:0".parse().unwrap(),
            state_dir: state_dir.clone(),
            admin_token: None,
            policy: policy.clone(),
            access_log: None,
        };
        let server = match weir::run::Server::start(opts, None).await {
            Ok(s) => s,
            Err(weir::run::StartError::Config(errors)) => {
                panic!(
                    "config rejected: {}",
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            }
            Err(e) => panic!("{e}"),
        };
        Weir {
            server,
            config,
            state_dir,
            policy,
        }
    }

    pub fn mesh(&self) -> SocketAddr {
        self.server.mesh_addr()
    }

    pub fn admin(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    pub fn generation(&self) -> u64 {
        self.server.control().generation()
    }

    /// Rewrites the config file atomically and waits until weir has tried to apply it.
    pub async fn rewrite(&self, yaml: &str) -> bool {
        let before = self.generation();
        let failures = self.reload_failures().await;
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if self.generation() > before {
                return true;
            }
            if self.reload_failures().await > failures {
                return false;
            }
        }
        panic!("config change was not picked up");
    }

    pub async fn metrics(&self) -> String {
        let (_, _, body) = get(self.admin(), "admin", "/metrics", &[]).await;
        body
    }

    pub async fn reload_failures(&self) -> u64 {
        metric_value(
            &self.metrics().await,
            "weir_config_reloads_total{result=\"failure\"}",
        )
        .unwrap_or(0.0) as u64
    }
}

/// The value of one exposition line that starts with `series`.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends a GET with `client`; returns status, headers and body.
pub async fn send(
    client: &TestClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    request(client, addr, "GET", host, path, headers, Bytes::new()).await
}

/// Sends a request with `client`; returns status, headers and body.
pub async fn request(
    client: &TestClient,
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> (StatusCode, http::HeaderMap, String) {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client
        .request(b.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let h = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, h, String::from_utf8_lossy(&body).into_owned())
}

/// One GET on a fresh client.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    send(&client(), addr, host, path, headers).await
}

/// A free loopback port (bound, then let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Which backend answered (`x-backend`).
pub fn backend_of(headers: &http::HeaderMap) -> String {
    headers
        .get("x-backend")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Sends raw bytes on a new connection and reads until the peer closes.
pub async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn version_of(body: &str) -> Version {
    if body.contains("\"HTTP/2.0\"") {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    }
}

/// A ServiceEntry for `host` with one endpoint per (version, backend).
pub fn service_entry(host: &str, endpoints: &[(&str, &Backend)]) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}}}\nspec:\n  hosts: [{host}]\n  resolution: STATIC\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  endpoints:\n"
    );
    for (version, b) in endpoints {
        out.push_str(&format!(
            "  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{version: {version}}}}}\n",
            b.addr.port()
        ));
    }
    out.push_str("---\n");
    out
}

/// A ServiceEntry for `host` (service port 80, `protocol`) with one loopback endpoint per port.
pub fn loopback_service(host: &str, protocol: &str, ports: &[u16]) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {host}}}\nspec:\n  hosts: [{host}]\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: {protocol}}}]\n  endpoints:"
    );
    if ports.is_empty() {
        out.push_str(" []");
    }
    out.push('\n');
    for p in ports {
        out.push_str(&format!(
            "  - {{address: 127.0.0.1, ports: {{http: {p}}}}}\n"
        ));
    }
    out.push_str("---\n");
    out
}

/// A Gateway `name` with one plain HTTP server on loopback `port`, for every host.
pub fn loopback_gateway(name: &str, port: u16) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [\"*\"]
---
"
    )
}

/// A VirtualService `shop` whose route `all` sends everything to v1, under a Flagger Canary
/// (v1 the primary, v2 the canary) whose `analysis` is `analysis` (its fields, one per line,
/// without indentation).
pub fn shop_canary(analysis: &str) -> String {
    let analysis: String = analysis.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [shop]
  http:
  - name: all
    route:
    - destination: {{host: shop, subset: v1}}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: shop}}
spec:
  targetRef: {{apiVersion: networking.istio.io/v1, kind: VirtualService, name: shop}}
  primarySubset: v1
  canarySubset: v2
  analysis:
{analysis}"
    )
}

/// A DestinationRule with subsets named after `version` labels.
pub fn destination_rule(host: &str, versions: &[&str]) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {host}}}\nspec:\n  host: {host}\n  subsets:\n"
    );
    for v in versions {
        out.push_str(&format!("  - name: {v}\n    labels: {{version: {v}}}\n"));
    }
    out.push_str("---\n");
    out
}

/// One HTTP/2 (prior knowledge) request to `addr` with `:authority` = `host`.
pub async fn h2_get(addr: SocketAddr, host: &str, path: &str) -> (StatusCode, String) {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://{host}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A Prometheus server (Debian's `prometheus`), scraping `target` every second or as configured;
/// stopped on drop.
pub struct Prometheus {
    child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl Prometheus {
    pub async fn start(target: std::net::SocketAddr) -> Prometheus {
        Prometheus::start_with(&format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
- job_name: weir
  static_configs: [{{targets: ['{target}']}}]
"
        ))
        .await
    }

    /// Prometheus with the configuration `yaml`.
    pub async fn start_with(yaml: &str) -> Prometheus {
        let dir = scratch_dir();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, yaml).unwrap();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the prometheus server (Debian package `prometheus`; .ci/run installs it)");
        let p = Prometheus { child, addr };
        for _ in 0..200 {
            let ready = weir::control::call::call(
                http::Method::GET,
                &format!("http://{addr}/-/ready"),
                None,
                Duration::from_secs(1),
            )
            .await;
            if ready.is_ok_and(|r| r.status == 200) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus did not become ready on {addr}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `weir validate FILE` printed, after checking that it refused the file.
pub async fn validate_refuses(file: &std::path::Path) -> String {
    let out = weir_cli(["validate", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// Asserts that `text` has an error at `FILE_NAME:LINE:` saying `what`.
pub fn assert_error_at(text: &str, file_name: &str, line: u32, what: &str) {
    let needle = format!("{file_name}:{line}:");
    assert!(
        text.lines()
            .any(|l| l.contains(&needle) && l.contains(what)),
        "no `{what}` at line {line} in:\n{text}"
    );
}
