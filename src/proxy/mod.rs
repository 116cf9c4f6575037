//! The request path: [`Proxy::respond`] runs the steps of every request in order, one line
//! each, with the reason for its place.
//!
//! Routing ([`route`]) and the tries ([`forward`]) are synchronous but for the upstream
//! exchange and the rare waits (an injected delay, a mirror's body, a backoff, the pool's
//! queue), which are boxed so that every request's future stays small. Errors become responses
//! only in [`crate::error`]; each policy decides in its own file in [`crate::policy`] and the
//! path acts on the answer.

mod answer;
mod conn;
mod copies;
mod fall_back;
mod forward;
mod forwarded;
mod inject;
mod log_line;
mod outbound;
mod outcome;
mod route;
mod target;

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Request, Response};
use tokio::time::Instant;

use crate::access_log::AccessLog;
use crate::body::to_client::ResponseBody;
use crate::body::to_upstream::Body;
use crate::edge::ServerPolicy;
use crate::edge::overload::Overload;
use crate::error::ProxyError;
use crate::policy::fault::FaultSwitch;
use crate::snapshot::Snapshot;
use crate::tls::ServerTls;
use crate::upstream::UpstreamError;
pub(crate) use conn::{ClientGone, ConnInfo};
use forward::Ended;
use outbound::{Forward, Stop};
use route::Routed;

/// Runs a step of `fwd`'s path: when it stops the request, returns the answer to that.
macro_rules! step {
    ($fwd:ident . $($step:tt)+) => {
        if let ControlFlow::Break(stop) = $fwd.$($step)+ {
            return $fwd.stop(stop);
        }
    };
}

/// The proxy: reads the current snapshot for each request.
pub(crate) struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    faults: Arc<FaultSwitch>,
    policy: ServerPolicy,
    overload: Arc<Overload>,
    access_log: Option<Arc<AccessLog>>,
}

impl Proxy {
    /// A proxy serving whatever `snapshot` holds, injecting faults while `faults` is on, to
    /// clients held to `policy` (its memory limit is watched from now on).
    pub(crate) fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        faults: Arc<FaultSwitch>,
        policy: ServerPolicy,
        access_log: Option<Arc<AccessLog>>,
    ) -> Proxy {
        let overload = Overload::watch(policy.memory_limit);
        Proxy {
            snapshot,
            faults,
            policy,
            overload,
            access_log,
        }
    }

    /// Opens the access log's file again (SIGHUP, after logrotate moved it).
    pub(crate) fn reopen_access_log(&self) {
        if let Some(log) = &self.access_log {
            log.reopen();
        }
    }

    /// What the listeners hold clients to.
    pub(crate) fn policy(&self) -> &ServerPolicy {
        &self.policy
    }

    /// The TLS sites of the listener bound at `addr`, if it terminates TLS.
    pub(crate) fn listener_tls(&self, addr: SocketAddr) -> Option<Arc<ServerTls>> {
        self.snapshot.load().listener(addr)?.tls.clone()
    }

    /// Handles one request, start to response headers (the body streams on afterwards), on
    /// the snapshot current when it came: a reload meanwhile changes nothing for it. With an
    /// access log, the request's line is begun here and written when the response ends.
    ///
    /// `client`, when given, tells whether the client has gone away; a request waiting on an
    /// injected delay is then dropped without ever reaching the upstream.
    pub(crate) async fn serve(
        &self,
        req: Request<Body>,
        conn: &ConnInfo,
        client: Option<&mut dyn ClientGone>,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        let snap = self.snapshot.load_full();
        let Some(sink) = &self.access_log else {
            return self.respond(start, snap, req, conn, client).await;
        };
        let line = log_line::begin(&req, conn);
        let mut resp = self.respond(start, snap.clone(), req, conn, client).await;
        log_line::attach(line, &snap, &mut resp, start, sink.clone());
        resp
    }

    /// The request path, from `start` (the moment the request was read: its duration and its
    /// rule's timeout count from there), on `snap`.
    async fn respond(
        &self,
        start: Instant,
        snap: Arc<Snapshot>,
        mut req: Request<Body>,
        conn: &ConnInfo,
        client: Option<&mut dyn ClientGone>,
    ) -> Response<ResponseBody> {
        // Over the memory limit nothing new is taken on: the cheapest refusal, before any work.
        if self.overload.is_over() {
            let shed = ProxyError::Overloaded.to_response();
            return answer::local(&snap, None, req.method(), start, shed);
        }
        // The route table picks the rule; the rule's answers that need no upstream (CORS
        // preflight, direct response, redirect, body limit, rate limit, response cache) are
        // made there, before anything of an upstream is spent.
        let mut fwd = loop {
            match route::route(&snap, req, conn, start, self.policy.max_request_body) {
                Routed::Local(resp) => return resp,
                Routed::Forward(fwd) => break fwd,
                // Access control looks for a credential in the body (Kong's `key_in_body`):
                // it is read, up to 64 KiB, and the request routed again (once: a read body
                // is never asked for again). Boxed: the rare path.
                Routed::ReadBody(r) => {
                    let (parts, body) = r.into_parts();
                    match Box::pin(body.hold(outbound::REPLAY_LIMIT)).await {
                        Ok(body) => req = Request::from_parts(parts, body),
                        Err(e) => {
                            let e = ProxyError::Upstream(UpstreamError::ClientBody(e));
                            return answer::local(
                                &snap,
                                None,
                                &parts.method,
                                start,
                                e.to_response(),
                            );
                        }
                    }
                }
            }
        };
        // Faults before the breaker and the pool: a delayed request holds no connection, and
        // an aborted one is not the upstream's failure. The rule's timeout restarts after a
        // delay, as Envoy's router timer starts after its fault filter.
        step!(fwd.inject_fault(&self.faults, client).await);
        // The breaker admits once per request (it judges requests by their final outcome);
        // pool limits admit per try, in the loop, as each try holds a connection.
        step!(fwd.enter_breaker());
        // Every request earns its cluster's retry budget a share, tried or not.
        fwd.cluster.budget.deposit(fwd.start);
        // Mirrors get their copies before the request itself is sent (which consumes it).
        step!(fwd.send_copies().await);
        // A body that a retry may send again is kept before the first try consumes it.
        step!(fwd.keep_body_for_retries().await);
        // The forwarding loop: a try, then its outcome decides at once whether another
        // follows, where and after what backoff.
        match fwd.forward().await {
            // A final failure goes to the rule's fallbacks (stale cache, backup, fixed answer).
            // Boxed: the rare path.
            Ended::Tried(result) if fwd.falls_back(&result) => {
                Box::pin(fwd.fall_back(result)).await
            }
            // The upstream's response with the rule's edits, recorded as its body streams; or
            // the error's response.
            Ended::Tried(result) => fwd.finish(result),
            // The deadline came while waiting to retry: answered at once.
            Ended::Expired => fwd.finish(Err(ProxyError::Timeout)),
        }
    }
}

impl<'s> Forward<'s> {
    /// The answer to a request a step stopped before the forwarding loop.
    fn stop(self, stop: Stop<'s>) -> Response<ResponseBody> {
        match stop {
            Stop::Fail(e) => self.finish(Err(e)),
            Stop::ClientGone => self.client_gone(),
            Stop::Abort(abort) => self.abort(abort),
        }
    }
}
