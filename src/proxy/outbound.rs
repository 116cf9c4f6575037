//! A request on its way upstream, with what its tries and its response will need; and keeping
//! its body, so that a retry can send it again.

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request};
use tokio::time::Instant;

use crate::access_log::Flags;
use crate::backend::breaker::Ticket;
use crate::backend::budget::InFlight;
use crate::backend::limits::{Admission, RetrySlot};
use crate::backend::{Cluster, Picked};
use crate::body::to_upstream::Body;
use crate::error::ProxyError;
use crate::policy::experiment::Exposure;
use crate::policy::fault::Abort;
use crate::policy::split::WeightedDest;
use crate::route::Rule;
use crate::snapshot::Snapshot;

/// A request on its way upstream, with what its response will need.
pub(super) struct Forward<'s> {
    pub(super) snap: &'s Arc<Snapshot>,
    pub(super) rule: &'s Rule,
    pub(super) dest: &'s WeightedDest,
    pub(super) cluster: &'s Cluster,
    /// The endpoint of the current (or next) try; `None` when none can take it.
    pub(super) picked: Option<Picked<'s>>,
    pub(super) h2: bool,
    pub(super) req: Request<Body>,
    pub(super) method: Method,
    pub(super) deadline: Option<Instant>,
    pub(super) start: Instant,
    /// Tries made.
    pub(super) tries: u32,
    /// Endpoints tried, a bit per index (for `retryIgnorePreviousHosts`).
    pub(super) tried: u64,
    /// The request may be sent twice (idempotent, an idempotency key, or the route opts in).
    pub(super) safe: bool,
    /// The request came with a body.
    pub(super) had_body: bool,
    /// The body, kept to be sent again.
    pub(super) replay: Option<Bytes>,
    /// The head of an HTTP/2 request (which a try consumes), kept to be sent again.
    pub(super) template: Option<Box<Request<()>>>,
    /// The try's connection-pool slots, held until its response has been read.
    pub(super) admission: Option<Admission>,
    /// The retry under way, counted against the retry budget and `maxRetries`.
    pub(super) retrying: Option<Retrying<'s>>,
    /// The request's consistent-hash key.
    pub(super) hash: Option<u64>,
    /// Cookies generated for this client (cohort, consistent hash).
    pub(super) set_cookie: Option<Box<[HeaderValue]>>,
    /// An experiment's participant: what the response is to count (boxed: rare).
    pub(super) exposure: Option<Box<Exposure>>,
    /// Some try may have reached an upstream.
    pub(super) reached: bool,
    /// Where a good response to this GET is kept for the stale-cache fallback.
    pub(super) cache_key: Option<Box<str>>,
    /// The circuit breaker's admission, reported with the final outcome.
    pub(super) ticket: Option<Ticket>,
    /// Headers for the response (CORS, rate limits).
    pub(super) extra: Option<Box<http::HeaderMap>>,
    /// The access log's flags gathered on the way (an injected fault, a fallback).
    pub(super) flags: Flags,
}

/// A retry's place in the budget and under `maxRetries`, given back when its try ends.
pub(super) struct Retrying<'s> {
    pub(super) _budget: InFlight<'s>,
    pub(super) _slot: Option<RetrySlot>,
}

/// Why a step of the request path stops it before the forwarding loop.
pub(super) enum Stop<'s> {
    /// Answered with this error.
    Fail(ProxyError),
    /// The client left while its request waited.
    ClientGone,
    /// An injected abort.
    Abort(&'s Abort),
}

/// Request bodies up to this size are kept in memory, to be sent again by a retry.
pub(super) const REPLAY_LIMIT: usize = 64 * 1024;

impl<'s> Forward<'s> {
    /// Whether the next try could be followed by a retry that sends the request again.
    pub(super) fn may_resend(&self) -> bool {
        self.safe && self.tries < self.rule.retry.attempts
    }

    /// Reads the request body into memory to replay it, up to [`REPLAY_LIMIT`]. A longer body
    /// is forwarded as it comes (what was read first, then the rest) and is not replayed.
    pub(super) async fn keep_body(&mut self) -> Result<(), ProxyError> {
        let body = std::mem::replace(self.req.body_mut(), Body::empty());
        let held = body
            .hold(REPLAY_LIMIT)
            .await
            .map_err(|e| ProxyError::Upstream(crate::upstream::UpstreamError::ClientBody(e)))?;
        if let Body::Full(Some(kept)) = &held {
            self.replay = Some(kept.clone());
        }
        *self.req.body_mut() = held;
        Ok(())
    }

    /// Makes the request whole again after a try that sent it: the kept body, and for HTTP/2
    /// (whose try consumed the request) the kept head.
    pub(super) fn rebuild_request(&mut self) {
        let body = match &self.replay {
            Some(b) => Body::Full(Some(b.clone())),
            None => Body::empty(),
        };
        match &self.template {
            Some(head) => self.req = (**head).clone().map(|()| body),
            None => *self.req.body_mut() = body,
        }
    }
}
