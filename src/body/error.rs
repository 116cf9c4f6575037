//! Why a body could not be read to its end, on any side of the proxy.

use std::io;

/// Why a body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The connection failed.
    #[error("body: {0}")]
    Io(#[from] io::Error),
    /// The body broke its framing (bad chunk, closed early).
    #[error("body: {0}")]
    Malformed(&'static str),
    /// The client took longer than the request timeout to send it.
    #[error("body: request timeout")]
    TimedOut,
    /// The body is longer than the route allows.
    #[error("request body too large")]
    TooLarge,
    /// An HTTP/2 stream failed.
    #[error("body: {0}")]
    H2(#[from] hyper::Error),
}
