//! A demo backend: answers every request with its version (`VERSION: hello`, and an
//! `x-version` header), and with a 500 to one request in `fault_every` when that is not 0.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Binds `addr` (port 0: any free port) and serves until the runtime stops; returns the bound
/// address.
pub(crate) async fn start(
    addr: SocketAddr,
    version: &str,
    fault_every: u64,
) -> std::io::Result<SocketAddr> {
    let socket = TcpListener::bind(addr).await?;
    let addr = socket.local_addr()?;
    let version: Arc<str> = Arc::from(version);
    let header = HeaderValue::from_str(&version).unwrap_or(HeaderValue::from_static("unknown"));
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            let (served, version, header) = (served.clone(), version.clone(), header.clone());
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                let fault = fault_every > 0 && n.is_multiple_of(fault_every);
                let text = if fault { "injected failure" } else { "hello" };
                let mut resp =
                    Response::new(Full::new(Bytes::from(format!("{version}: {text}\n"))));
                if fault {
                    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                }
                resp.headers_mut().insert("x-version", header.clone());
                async move { Ok::<_, Infallible>(resp) }
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
