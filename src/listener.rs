//! Listeners: accept loops serving HTTP/1.1 (weir's own server, [`crate::http1::server`]) and
//! HTTP/2 (h2c, prior knowledge; hyper's), told apart by the connection's first bytes.
//!
//! Each bound address runs one task; stopping it stops accepting and lets open connections
//! finish (up to a drain deadline), which is what reloads that remove a Gateway server need.

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::body::to_client::ResponseBody;
use crate::body::to_upstream::Body;
use crate::edge::h2_flood::FloodGuard;
use crate::edge::h2_stall::Stalls;
use crate::error::{ProxyError, Refusal};
use crate::http1::{self, MAX_HEAD, Reader, server};
use crate::proxy::{ConnInfo, Proxy};
use crate::{boxed, workers};

/// How long open connections may take to finish when a listener stops.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A running listener: an accept loop per worker ([`crate::workers`]), or one on the runtime
/// that started it.
pub(crate) struct Listener {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Held by each open connection: the drain waits for the count to fall back to one.
    live: Arc<()>,
    key: SocketAddr,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port). With workers the socket is made to share its
    /// address (`SO_REUSEPORT`), so that each worker binds one of its own beside it. It is
    /// first bound alone: an address another process holds (another weir too) is refused, as
    /// without workers, rather than shared with it.
    pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        let alone = TcpListener::bind(addr).await?;
        if workers::count() < 2 {
            return Ok(alone);
        }
        let bound = alone.local_addr()?;
        drop(alone);
        reuse_port_socket(bound)?.listen(BACKLOG)
    }

    /// Starts serving a bound socket. `key` is the address the snapshot knows it by.
    pub(crate) fn start(
        socket: TcpListener,
        key: SocketAddr,
        edge: bool,
        proxy: Arc<Proxy>,
    ) -> Listener {
        let (stop, stopped) = watch::channel(false);
        let live = Arc::new(());
        // The accept loop of one worker's runtime, on its own socket.
        let serve = |socket: std::io::Result<std::net::TcpListener>| {
            let (proxy, stopped, live) = (proxy.clone(), stopped.clone(), Arc::downgrade(&live));
            async move {
                match socket.and_then(TcpListener::from_std) {
                    Ok(socket) => accept_loop(socket, key, edge, proxy, stopped, live).await,
                    Err(e) => {
                        tracing::warn!(listener = %key, error = %e, "A worker cannot listen.");
                    }
                }
            }
        };
        let handles = workers::handles();
        let tasks = match socket.local_addr() {
            Ok(bound) if !handles.is_empty() => {
                // The bound socket goes to the first worker; the others' sockets are bound
                // and listening here, before this returns, so that once a listener is started
                // every worker takes its share of the connections. Each runtime watches its
                // socket from then.
                let mut first = Some(socket.into_std());
                let mut tasks = Vec::with_capacity(handles.len());
                for handle in handles {
                    let own = first.take().unwrap_or_else(|| {
                        reuse_port_socket(bound)
                            .and_then(|s| s.listen(BACKLOG))
                            .and_then(|l| l.into_std())
                    });
                    tasks.push(handle.spawn(serve(own)));
                }
                tasks
            }
            _ => {
                let weak = Arc::downgrade(&live);
                let stopped = stopped.clone();
                vec![tokio::spawn(accept_loop(
                    socket,
                    key,
                    edge,
                    proxy.clone(),
                    stopped,
                    weak,
                ))]
            }
        };
        Listener {
            stop,
            tasks,
            live,
            key,
        }
    }

    /// Stops accepting and drains open connections.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let deadline = tokio::time::Instant::now() + DRAIN_DEADLINE;
        while Arc::strong_count(&self.live) > 1 {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(listener = %self.key, "Drain deadline passed with connections still open.");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn accept_loop(
    socket: TcpListener,
    key: SocketAddr,
    edge: bool,
    proxy: Arc<Proxy>,
    mut stopped: watch::Receiver<bool>,
    live: Weak<()>,
) {
    let max = proxy.policy().max_connections;
    loop {
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            _ = stopped.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %key, error = %e, "Accept failed.");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // Each connection holds the listener's count while it lasts (the listener holds one
        // more); with the listener gone, nothing more is served.
        let Some(held) = live.upgrade() else { break };
        if Arc::strong_count(&held) - 2 >= max {
            // Over the limit: closed at once, so that the connections already open keep going.
            tracing::debug!(listener = %key, %peer, max, "Connection limit reached; closing.");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let info = ConnInfo::new(peer, key, edge);
        // The task is the connection's own future (a wrapping block would hold it twice).
        tokio::spawn(connection(
            stream,
            proxy.clone(),
            info,
            stopped.clone(),
            held,
        ));
    }
}

/// Queue of connections not yet accepted, per socket (what `TcpListener::bind` uses).
const BACKLOG: u32 = 1024;

/// A socket for `addr` with `SO_REUSEADDR` (as `TcpListener::bind` sets) and `SO_REUSEPORT`:
/// every worker's socket for one address has it.
fn reuse_port_socket(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// HTTP/2 limits (docs/reliability.md section 5): concurrent streams per connection, flow-control
/// windows, and how many streams a client may reset (rapid reset) or make weir reset before the
/// connection is closed with GOAWAY.
const H2_MAX_STREAMS: u32 = 100;
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
const H2_MAX_PENDING_RESETS: usize = 20;
const H2_MAX_LOCAL_RESETS: usize = 100;
/// A client that does not answer a keep-alive PING in this long is gone.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A request refused before routing (HTTP/2: the stream gets 400, the connection stays).
fn refuse(why: &'static str) -> http::Response<ResponseBody> {
    ProxyError::Refused(Refusal::Malformed(why)).to_response()
}

/// The HTTP/2 connection preface; a connection starting with it is h2c (prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one client connection: TLS first if the listener has it, then HTTP/1.1 with weir's
/// own server or HTTP/2 with hyper's (ALPN `h2` under TLS, the h2c preface without).
/// `live` is held while it lasts (the drain counts them).
///
/// A plain HTTP/1.1 connection is served in this task's own future, which is what an idle
/// keep-alive connection costs (docs/benchmarks.md, idle connections): everything else (TLS,
/// HTTP/2, telling the protocols apart, each request) is boxed while it runs. Not an `async
/// fn`, whose arguments are kept twice in its future (as arguments, and as the locals they
/// move into); and the stream goes into its box before the future is made, so that the future
/// does not keep room for it.
fn connection(
    stream: TcpStream,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    stop: watch::Receiver<bool>,
    live: Arc<()>,
) -> impl Future<Output = ()> {
    let tls = proxy.listener_tls(info.listener);
    // The box keeps its own handles; this future keeps the originals for HTTP/1.1.
    let (p, i, s) = (proxy.clone(), info.clone(), stop.clone());
    let first: Pin<Box<dyn Future<Output = Option<Plain>> + Send>> = match tls {
        Some(tls) => boxed::pinned(|| async move {
            over_tls(stream, tls, p, i, s).await;
            None
        }),
        // HTTP/2 with prior knowledge is served in the box that told it apart.
        None => boxed::pinned(|| plain(stream, p, i, s)),
    };
    async move {
        // Held (moved into this future) until the connection ends: the drain counts them.
        let _ = &live;
        let Some((r, w)) = first.await else {
            return;
        };
        server::serve(r, w, &proxy, &info, stop).await;
    }
}

/// A plain HTTP/1.1 connection's halves, its first bytes read.
type Plain = (
    Reader<http1::stream::ClientRead>,
    http1::stream::ClientWrite,
);

/// Serves a connection to a TLS listener: the handshake, then HTTP/2 or HTTP/1.1 as ALPN says.
async fn over_tls(
    stream: TcpStream,
    tls: Arc<crate::tls::ServerTls>,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    stop: watch::Receiver<bool>,
) {
    let peer = info.peer;
    let handshake =
        tokio::time::timeout(proxy.policy().request_headers_timeout, tls.accept(stream));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake failed.");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out.");
            return;
        }
    };
    // A MUTUAL gateway's client is known by its certificate (Istio's `principals`).
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|c| crate::tls::identity::principal(c))
        .map(std::sync::Arc::from);
    let info = info.over_tls().with_principal(principal);
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_h2(stream, Bytes::new(), proxy, info, stop).await;
    } else {
        let (r, w) = http1::stream::tls(stream);
        server::serve(Reader::new(r), w, &proxy, &info, stop).await;
    }
}

/// Tells a plain connection's protocol by its first bytes (the first within the idle timeout,
/// the rest within the request headers timeout): HTTP/2 with prior knowledge is served here;
/// HTTP/1.1 is handed back, split, to be served in the connection's own future. `None`: done
/// (HTTP/2 served, or the client closed, failed or was too slow).
async fn plain(
    stream: TcpStream,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    stop: watch::Receiver<bool>,
) -> Option<Plain> {
    let mut reader = Reader::new(stream);
    let policy = proxy.policy();
    let mut deadline = Instant::now() + policy.idle_timeout;
    while reader.filled() < H2_PREFACE.len() && H2_PREFACE.starts_with(reader.unread()) {
        let first = reader.filled() == 0;
        match tokio::time::timeout_at(deadline, poll_fn(|cx| reader.poll_fill(cx))).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
        if first {
            deadline = Instant::now() + policy.request_headers_timeout;
        }
    }
    if reader.unread().starts_with(H2_PREFACE) {
        let read = reader.take_all();
        serve_h2(reader.into_io().0, read, proxy, info, stop).await;
        return None;
    }
    let (stream, shell) = reader.into_io();
    let (r, w) = http1::stream::tcp(stream);
    Some((shell.with_io(r), w))
}

/// Serves HTTP/2 with hyper (`read`: bytes already read off `io`) until the client is done, or `stop` asks for a graceful close
/// (GOAWAY, in-flight streams finish).
async fn serve_h2<I>(
    io: I,
    read: Bytes,
    proxy: Arc<Proxy>,
    info: ConnInfo,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle = proxy.policy().idle_timeout;
    let stalls = Arc::new(Stalls::default());
    let watch = stalls.clone();
    let peer = info.peer;
    let service = service_fn(move |req: Request<Incoming>| {
        let mut req = req.map(Body::Incoming);
        let refused = proxy.policy().check(&mut req).err();
        let proxy = proxy.clone();
        let info = info.clone();
        let watch = watch.clone();
        // Built in its box: the request path's future is kilobytes, and hyper moves the
        // stream's future several times on its way into the stream's task.
        boxed::pinned(|| async move {
            let resp = match refused {
                None => proxy.serve(req, &info, None).await,
                Some(why) => refuse(why),
            };
            Ok::<_, Infallible>(resp.map(|body| watch.watch(body)))
        })
    });
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEAD as u32)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        .keep_alive_interval(idle)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .serve_connection(TokioIo::new(FloodGuard::new(io, read)), service);
    tokio::pin!(conn);
    // A response stalled by the client's window closes the connection (dropped, not drained:
    // its streams would never finish).
    let stalled = stalls.stalled(idle);
    tokio::pin!(stalled);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stalled.as_mut() => return stalled_close(peer),
        _ = stop.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn => {}
        _ = stalled => stalled_close(peer),
    }
}

fn stalled_close(peer: SocketAddr) {
    tracing::debug!(%peer, "HTTP/2 connection closed: a response waited on the client's window too long.");
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, B, C, D, E, R, F: Fn(A, B, C, D, E) -> R>(_: F) -> usize {
        std::mem::size_of::<R>()
    }

    /// An idle keep-alive connection costs its task (everything a request, TLS or HTTP/2 needs
    /// is boxed while it runs): tokio keeps the future in a cell with 104 bytes of its own,
    /// aligned to 128 bytes, so a future of at most 664 bytes makes a 768-byte task
    /// (docs/benchmarks.md, idle connections).
    #[test]
    fn an_idle_connection_task_stays_small() {
        let size = future_size(super::connection);
        assert!(size <= 664, "a connection's future is {size} bytes");
    }
}
