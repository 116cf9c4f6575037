//! Why an upstream request failed.

use std::io;

use crate::body::error::BodyError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an upstream request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The TCP connection could not be made.
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// The TCP connection took longer than the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The TLS handshake failed (the upstream's certificate did not verify, or it refused
    /// weir's).
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    /// The HTTP handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The request was refused before it was sent (HTTP/2 refused stream, closed connection).
    #[error("request not sent: {0}")]
    NotSent(#[source] BoxError),
    /// The connection failed after the request was sent, before a response arrived.
    #[error("upstream reset: {0}")]
    Reset(#[source] BoxError),
    /// The upstream's response broke HTTP/1.1 (malformed head, conflicting framing).
    #[error("invalid upstream response: {0}")]
    BadResponse(&'static str),
    /// A read or write on the connection made no progress within the cluster's read or write
    /// timeout (Kong's `read_timeout`, `write_timeout`).
    #[error("upstream {0} timed out")]
    Timeout(&'static str),
    /// The client's request body failed while it was being sent (the client went away, or
    /// broke its framing).
    #[error("client request body: {0}")]
    ClientBody(#[source] BodyError),
}

impl UpstreamError {
    /// Whether the request never reached the upstream (safe to retry for any method).
    pub(crate) fn never_sent(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect(_)
                | UpstreamError::ConnectTimeout
                | UpstreamError::Tls(_)
                | UpstreamError::Handshake(_)
                | UpstreamError::NotSent(_)
        )
    }
}
