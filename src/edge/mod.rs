//! What weir enforces on the clients it serves, with safe defaults (docs/reliability.md section 5):
//! request checks done before routing (path normalisation, header names), deadlines against
//! slow clients, connection limits and the memory overload rule.
//!
//! Unlike Envoy's, these defaults are meant for the edge: a weir started with no flags is safe
//! to expose.

pub mod h2_flood;
pub mod h2_stall;
pub mod overload;
pub mod path;

use std::time::Duration;

use http::{HeaderMap, Request, Uri};

pub use path::EscapedSlashes;

/// What to do with header names holding an underscore (`x_user` next to `x-user`: upstreams
/// that treat `_` and `-` alike could be fooled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Underscores {
    /// Refuse the request with 400 (Envoy's edge advice).
    #[default]
    Reject,
    /// Drop the header, forward the rest (nginx).
    Drop,
    /// Forward it.
    Allow,
}

/// The limits and deadlines weir's listeners apply to clients.
#[derive(Clone, Debug)]
pub struct ServerPolicy {
    /// From a request's first byte to the end of its head; then 408 and close (slowloris).
    pub request_headers_timeout: Duration,
    /// From a request's head to the end of its body; then 408 and close (slow bodies).
    pub request_timeout: Duration,
    /// A connection with no request in progress, or a response write making no progress,
    /// for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections per listener; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Above this resident memory, new requests get 503 until it falls again (`None`: off).
    pub memory_limit: Option<u64>,
    /// The largest request body forwarded where a route sets none (`None`: no limit).
    pub max_request_body: Option<u64>,
    /// Header names with `_`.
    pub underscores: Underscores,
    /// `%2F` and `%5C` in paths.
    pub escaped_slashes: EscapedSlashes,
}

impl Default for ServerPolicy {
    fn default() -> ServerPolicy {
        ServerPolicy {
            request_headers_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(60),
            max_connections: 16_384,
            memory_limit: Some(2 << 30),
            max_request_body: None,
            underscores: Underscores::Reject,
            escaped_slashes: EscapedSlashes::Reject,
        }
    }
}

impl ServerPolicy {
    /// Normalises a request target's path in place; `Err` says why it is refused.
    pub fn normalize_target(&self, uri: &mut Uri) -> Result<(), path::Refused> {
        let Some(normal) = path::normalize(uri.path(), self.escaped_slashes)? else {
            return Ok(());
        };
        let mut parts = std::mem::take(uri).into_parts();
        let pq = match parts.path_and_query.as_ref().and_then(|pq| pq.query()) {
            Some(q) => format!("{normal}?{q}"),
            None => normal,
        };
        parts.path_and_query = Some(pq.parse().map_err(|_| "an invalid request target")?);
        *uri = Uri::from_parts(parts).map_err(|_| "an invalid request target")?;
        Ok(())
    }

    /// Applies the underscore rule to a header name: `Ok(true)` keeps it, `Ok(false)` drops it.
    pub fn header_name(&self, name: &[u8]) -> Result<bool, path::Refused> {
        if !name.contains(&b'_') {
            return Ok(true);
        }
        match self.underscores {
            Underscores::Reject => Err("an underscore in a header name"),
            Underscores::Drop => Ok(false),
            Underscores::Allow => Ok(true),
        }
    }

    /// The checks for a request weir did not parse itself (HTTP/2): path and header names.
    pub fn check<B>(&self, req: &mut Request<B>) -> Result<(), path::Refused> {
        self.normalize_target(req.uri_mut())?;
        if self.underscores != Underscores::Allow {
            drop_underscored(self, req.headers_mut())?;
        }
        Ok(())
    }
}

fn drop_underscored(policy: &ServerPolicy, headers: &mut HeaderMap) -> Result<(), path::Refused> {
    let mut dropped = Vec::new();
    for name in headers.keys() {
        if !policy.header_name(name.as_str().as_bytes())? {
            dropped.push(name.clone());
        }
    }
    for name in dropped {
        headers.remove(name);
    }
    Ok(())
}
