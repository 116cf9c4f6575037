//! The upstream client: a connection pool per endpoint address and protocol.
//!
//! HTTP/1.1 connections are weir's own ([`h1`]), kept in a LIFO idle list and reused only after
//! their previous response was read to the end; HTTP/2 connections (hyper's) are shared. Pools
//! are keyed by address, so they survive config reloads.

mod error;
pub(crate) mod h1;
pub(crate) mod h1_head;
mod stream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use http_body::Body as _;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::backend::{ClusterSpec, EndpointAddr};
use crate::body::from_upstream::UpstreamBody;
use crate::body::to_upstream::Body;
use crate::tls::{MaybeTls, UpstreamTls};
pub(crate) use error::UpstreamError;
use h1::{Conn, Failure, Idle, Open};
use stream::Stream;

/// Connections to one endpoint address with one protocol, plain or with one TLS setting.
#[derive(Debug)]
pub(crate) struct Pool {
    addr: EndpointAddr,
    h2: bool,
    tls: Option<UpstreamTls>,
    idle: Arc<Idle>,
    shared: Mutex<Option<http2::SendRequest<Body>>>,
    open: Arc<AtomicUsize>,
}

impl Pool {
    /// An empty pool.
    pub(crate) fn new(addr: EndpointAddr, h2: bool, tls: Option<UpstreamTls>) -> Pool {
        Pool {
            addr,
            h2,
            tls,
            idle: Arc::default(),
            shared: Mutex::new(None),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Open connections.
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 connections.
    pub(crate) fn idle_connections(&self) -> usize {
        self.idle.len()
    }

    /// Sends a request. HTTP/1.1 requests must carry an origin-form URI and a `Host` header;
    /// HTTP/2 requests an absolute URI whose authority is the one to send.
    pub(crate) async fn send(
        self: &Arc<Self>,
        req: &mut Request<Body>,
        spec: &ClusterSpec,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        if self.h2 {
            // Boxed: HTTP/2's handshake future is large and would enlarge every request's state.
            Box::pin(self.send_h2(req, spec.connect_timeout)).await
        } else {
            self.send_h1(req, spec).await
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        req: &mut Request<Body>,
        spec: &ClusterSpec,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        // An idle connection may have been closed by the upstream meanwhile. A request that was
        // not written to it goes to the next; one without a body and with an idempotent method
        // is also sent again (once) when the connection closed without replying. A new
        // connection gets no second chance. (One call site for `exchange` keeps this future
        // small: it is part of every request's state.)
        let mut resend = req.body().is_end_stream() && idempotent(req.method());
        loop {
            let (mut conn, reused) = match self.idle.take(spec.idle_timeout) {
                Some(conn) => (conn, true),
                None => {
                    // Boxed, as connecting is the rare case.
                    let io = Box::pin(self.connect(spec.connect_timeout)).await?;
                    (Conn::new(io, Open::new(&self.open)), false)
                }
            };
            conn.prepare(spec);
            match h1::exchange(conn, req, &self.idle).await {
                Ok(resp) => return Ok(resp.map(UpstreamBody::h1)),
                Err(Failure::Stale(_)) if reused => {}
                Err(Failure::Stale(e)) => return Err(UpstreamError::NotSent(Box::new(e))),
                Err(Failure::NoReply(_)) if reused && resend => resend = false,
                Err(Failure::NoReply(e)) => return Err(UpstreamError::Reset(Box::new(e))),
                Err(Failure::Failed(e)) => return Err(e),
            }
        }
    }

    async fn send_h2(
        self: &Arc<Self>,
        req: &mut Request<Body>,
        connect_timeout: Duration,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let existing = self.lock_shared().clone().filter(|s| !s.is_closed());
        let mut sender = match existing {
            Some(s) => s,
            None => {
                let io = TokioIo::new(self.connect(connect_timeout).await?);
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .map_err(UpstreamError::Handshake)?;
                self.spawn(conn);
                *self.lock_shared() = Some(sender.clone());
                sender
            }
        };
        sender
            .ready()
            .await
            .map_err(|e| UpstreamError::NotSent(Box::new(e)))?;
        let sent = std::mem::replace(req, Request::new(Body::empty()));
        match sender.try_send_request(sent).await {
            Ok(resp) => Ok(resp.map(UpstreamBody::h2)),
            Err(mut e) => Err(match e.take_message() {
                // Refused before it was sent: the request comes back whole, to be sent again.
                Some(back) => {
                    *req = back;
                    UpstreamError::NotSent(Box::new(e.into_error()))
                }
                None => UpstreamError::Reset(Box::new(e.into_error())),
            }),
        }
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Option<http2::SendRequest<Body>>> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection, with its TLS handshake done; both within the connect timeout.
    async fn connect(&self, timeout: Duration) -> Result<Stream, UpstreamError> {
        let connect = async {
            let tcp = match &self.addr {
                EndpointAddr::Ip(a) => TcpStream::connect(a).await,
                EndpointAddr::Dns(h, p) => TcpStream::connect((h.as_str(), *p)).await,
            }
            .map_err(UpstreamError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(MaybeTls::Plain(tcp));
            };
            match tls.client.connect(tcp, &tls.server_name, self.h2).await {
                Ok(s) => Ok(MaybeTls::Tls(Box::new(s))),
                Err(e) => {
                    if tls.client.should_warn() {
                        tracing::warn!(
                            endpoint = %self.addr,
                            server_name = ?tls.server_name,
                            mode = tls.client.spec().mode(),
                            error = %e,
                            "Upstream TLS handshake failed."
                        );
                    }
                    Err(UpstreamError::Tls(e))
                }
            }
        };
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)?
    }

    fn spawn<F>(&self, conn: F)
    where
        F: std::future::Future + Send + 'static,
    {
        let open = Open::new(&self.open);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(open);
        });
    }
}

/// Methods whose requests can be repeated without changing the outcome (RFC 9110 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
