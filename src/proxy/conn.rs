//! Facts about the downstream connection a request came on, and how the path tells that its
//! client has gone.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use http::HeaderValue;

/// Facts about the downstream connection a request came on.
#[derive(Clone, Debug)]
pub(crate) struct ConnInfo {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// The listener's bound address (its identity in the snapshot).
    pub(crate) listener: SocketAddr,
    /// Whether this listener faces untrusted clients (a Gateway): `x-forwarded-proto` is then
    /// overwritten rather than kept.
    pub(crate) edge: bool,
    /// Whether the connection is TLS (the request's scheme is `https`).
    pub(crate) tls: bool,
    /// The client's IP as a header value, made once per connection for `x-forwarded-for`.
    pub(super) peer_ip: HeaderValue,
    /// The client's identity, from the certificate it showed a MUTUAL gateway
    /// (`cluster.local/ns/NS/sa/SA` of a SPIFFE URI).
    pub(crate) principal: Option<std::sync::Arc<str>>,
}

impl ConnInfo {
    /// Facts about a connection accepted from `peer` on `listener`.
    pub(crate) fn new(peer: SocketAddr, listener: SocketAddr, edge: bool) -> ConnInfo {
        let ip = peer.ip().to_string();
        ConnInfo {
            peer,
            listener,
            edge,
            tls: false,
            peer_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
            principal: None,
        }
    }

    /// The same connection, with TLS terminated.
    pub(crate) fn over_tls(self) -> ConnInfo {
        ConnInfo { tls: true, ..self }
    }

    /// The same connection, whose client is known by its certificate.
    pub(crate) fn with_principal(self, principal: Option<std::sync::Arc<str>>) -> ConnInfo {
        ConnInfo { principal, ..self }
    }

    /// The scheme of requests on this connection.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Tells whether a client has gone away (closed its connection) while its request waits.
pub(crate) trait ClientGone: Send {
    /// Ready once the client is gone.
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}
