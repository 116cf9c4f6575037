//! Listeners: accept loops serving HTTP/1.1 and HTTP/2 (h2c, prior knowledge) with hyper.
//!
//! Each bound address runs one task; stopping it stops accepting and lets open connections
//! finish (up to a drain deadline), which is what reloads that remove a Gateway server need.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::proxy::{ConnInfo, Proxy};

/// How long open connections may take to finish when a listener stops.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// A running listener.
pub struct Listener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    /// Starts serving a bound socket. `key` is the address the snapshot knows it by.
    pub fn start(socket: TcpListener, key: SocketAddr, edge: bool, proxy: Arc<Proxy>) -> Listener {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(socket, key, edge, proxy, stopped));
        Listener {
            addr: key,
            stop,
            task,
        }
    }

    /// The address the snapshot knows this listener by.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and drains open connections.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(
    socket: TcpListener,
    key: SocketAddr,
    edge: bool,
    proxy: Arc<Proxy>,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let info = ConnInfo::new(peer, key, edge);
        let proxy = proxy.clone();
        let service = service_fn(move |req| proxy.clone().handle(req, info.clone()));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(peer = %peer, error = %e, "Connection ended with an error.");
            }
        });
    }
    drop(socket);
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listener = %key, "Drain deadline passed with connections still open.");
    }
}
