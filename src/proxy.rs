//! The request path: one function, [`Proxy::handle`], runs the steps in order.
//!
//! snapshot -> authority -> route (host, first matching rule) -> action -> for forwards:
//! rewrite, header edits, weighted split, endpoint pick, upstream send under the rule's deadline
//! -> response edits -> metrics. Errors become responses only in [`crate::error`].

use std::cell::RefCell;
use std::error::Error as StdError;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::header::{self, Entry, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::backend::breaker::Ticket;
use crate::backend::budget::InFlight;
use crate::backend::hash::{HashInput, request_hash};
use crate::backend::limits::{Admission, Admit, Overflow, RetrySlot, Waiting};
use crate::backend::outlier::Event;
use crate::backend::{Cluster, Picked, Protocol};
use crate::edge::ServerPolicy;
use crate::edge::overload::Overload;
use crate::error::{ProxyError, X_WEIR_OVERLOADED, local_response};
use crate::policy::cache::{Lookup, X_CACHE_KEY, X_CACHE_STATUS};
use crate::policy::cors::{CorsAction, PREFLIGHT_STATUS};
use crate::policy::fallback::{Cached, Tee, X_WEIR_FALLBACK};
use crate::policy::fault::{Abort, FaultSwitch, PER_MILLION};
use crate::policy::headers::strip_hop_by_hop;
use crate::policy::mirror;
use crate::policy::ratelimit::{LimitBy, RateLimitSpec};
use crate::policy::retry::{Outcome, repeatable};
use crate::policy::split::WeightedDest;
use crate::policy::transform::{RequestTransform, TemplateInput};
use crate::route::matcher::{RequestMatch, RequestView, StrMatcher};
use crate::route::{Action, Matched, Rule};
use crate::snapshot::Snapshot;
use crate::tls::ServerTls;
use crate::upstream::{Body, BodyError, UpstreamBody, UpstreamError};

type BoxError = Box<dyn StdError + Send + Sync>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// Facts about the downstream connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's bound address (its identity in the snapshot).
    pub listener: SocketAddr,
    /// Whether this listener faces untrusted clients (a Gateway): `x-forwarded-proto` is then
    /// overwritten rather than kept.
    pub edge: bool,
    /// Whether the connection is TLS (the request's scheme is `https`).
    pub tls: bool,
    /// The client's IP as a header value, made once per connection for `x-forwarded-for`.
    peer_ip: HeaderValue,
}

impl ConnInfo {
    /// Facts about a connection accepted from `peer` on `listener`.
    pub fn new(peer: SocketAddr, listener: SocketAddr, edge: bool) -> ConnInfo {
        let ip = peer.ip().to_string();
        ConnInfo {
            peer,
            listener,
            edge,
            tls: false,
            peer_ip: HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown")),
        }
    }

    /// The same connection, with TLS terminated.
    pub fn over_tls(self) -> ConnInfo {
        ConnInfo { tls: true, ..self }
    }

    /// The scheme of requests on this connection.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// The proxy: reads the current snapshot for each request.
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    faults: Arc<FaultSwitch>,
    policy: ServerPolicy,
    overload: Arc<Overload>,
}

impl Proxy {
    /// A proxy serving whatever `snapshot` holds, injecting faults while `faults` is on, to
    /// clients held to `policy` (its memory limit is watched from now on).
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        faults: Arc<FaultSwitch>,
        policy: ServerPolicy,
    ) -> Proxy {
        let overload = Overload::watch(policy.memory_limit);
        Proxy {
            snapshot,
            faults,
            policy,
            overload,
        }
    }

    /// What the listeners hold clients to.
    pub fn policy(&self) -> &ServerPolicy {
        &self.policy
    }

    /// The TLS sites of the listener bound at `addr`, if it terminates TLS.
    pub fn listener_tls(&self, addr: SocketAddr) -> Option<Arc<ServerTls>> {
        self.snapshot.load().listener(addr)?.tls.clone()
    }

    /// Handles one request, start to response headers.
    ///
    /// Everything but the upstream exchange is synchronous ([`route`], [`Forward::finish`]), so
    /// this future holds little besides the exchange: it is created and moved for every
    /// request, and its size is paid each time.
    ///
    /// `client`, when given, tells whether the client has gone away; a request waiting on an
    /// injected delay is then dropped without ever reaching the upstream.
    pub async fn respond(
        &self,
        req: Request<Body>,
        conn: &ConnInfo,
        client: Option<&mut dyn ClientGone>,
    ) -> Response<ResponseBody> {
        let start = Instant::now();
        let snap = self.snapshot.load_full();
        if self.overload.is_over() {
            return local(
                &snap,
                None,
                req.method(),
                start,
                ProxyError::Overloaded.to_response(),
            );
        }
        match route(&snap, req, conn, start, self.policy.max_request_body) {
            Routed::Local(resp) => resp,
            Routed::Forward(mut fwd) => {
                if let Some(fault) = &fwd.rule.fault
                    && self.faults.enabled()
                {
                    // Before the upstream request, holding nothing of the pool.
                    let drawn = fault.draw(|| fastrand::u32(..PER_MILLION));
                    let stats = &fwd.snap.stats[fwd.dest.stats];
                    if let Some(delay) = drawn.delay {
                        stats.fault_delays.inc();
                        // Boxed: a rare path, kept out of every request's state.
                        if !Box::pin(self.fault_delay(delay, client)).await {
                            return fwd.client_gone();
                        }
                        // The rule's timeout runs from here, as Envoy's router timer does.
                        fwd.deadline = fwd.rule.timeout.map(|t| Instant::now() + t);
                    }
                    if let Some(abort) = drawn.abort
                        && self.faults.enabled()
                    {
                        stats.fault_aborts.inc();
                        return fwd.abort(abort);
                    }
                }
                if let Some(b) = &fwd.cluster.breaker {
                    match b.admit() {
                        Some(t) => fwd.ticket = Some(t),
                        // Open: nothing is forwarded.
                        None => return fwd.finish(Err(ProxyError::CircuitOpen)),
                    }
                }
                fwd.cluster.budget.deposit(fwd.start);
                if !fwd.rule.mirrors.is_empty() {
                    // Boxed: only rules with mirrors copy requests.
                    if let Err(e) = Box::pin(fwd.mirror()).await {
                        return fwd.finish(Err(e));
                    }
                }
                if fwd.had_body && fwd.may_resend() && fwd.replay.is_none() {
                    // Boxed: only requests with a body that may be sent twice wait here.
                    if let Err(e) = Box::pin(fwd.keep_body()).await {
                        return fwd.finish(Err(e));
                    }
                }
                // The retry loop: one try, then its outcome decides (synchronously) whether
                // another follows.
                loop {
                    let result = fwd.attempt().await;
                    match fwd.settle(result) {
                        Step::Done(result) if fwd.falls_back(&result) => {
                            fwd.report(&result);
                            // Boxed: the rare path.
                            return Box::pin(fwd.fall_back(result)).await;
                        }
                        Step::Done(result) => return fwd.finish(result),
                        Step::Retry(wait) if wait.is_zero() => {}
                        Step::Retry(wait) => {
                            // Boxed: backoff is the rare path.
                            if !Box::pin(fwd.backoff(wait)).await {
                                return fwd.finish(Err(ProxyError::Timeout));
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Proxy {
    /// Waits out an injected delay; false if the client left meanwhile.
    async fn fault_delay(&self, delay: Duration, client: Option<&mut dyn ClientGone>) -> bool {
        let delayed = self.faults.delay(delay);
        match client {
            Some(client) => tokio::select! {
                _ = delayed => true,
                _ = poll_fn(|cx| client.poll_gone(cx)) => false,
            },
            None => {
                delayed.await;
                true
            }
        }
    }
}

/// Tells whether a client has gone away (closed its connection) while its request waits.
pub trait ClientGone: Send {
    /// Ready once the client is gone.
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

/// What routing decided.
// Built once per request and matched at once: boxing the forward would cost an allocation per
// request, the size difference only stack space in `respond`.
#[allow(clippy::large_enum_variant)]
enum Routed<'s> {
    /// Forward upstream.
    Forward(Forward<'s>),
    /// A response weir made itself (direct response, redirect, or an error).
    Local(Response<ResponseBody>),
}

/// A kept response, as it was sent (with `Age` if `age`).
fn cached_response(hit: Cached, age: bool) -> Response<ResponseBody> {
    let seconds = hit.stored.elapsed().as_secs();
    let mut resp = local_response(hit.status, hit.body);
    *resp.headers_mut() = hit.headers;
    if age {
        resp.headers_mut()
            .insert(header::AGE, HeaderValue::from(seconds));
    }
    resp
}

/// The client key a rate limiter counts a request under.
fn limit_key(spec: &RateLimitSpec, req: &Request<Body>, path: &str, conn: &ConnInfo) -> String {
    let ip = || conn.peer.ip().to_string();
    match &spec.by {
        LimitBy::Ip => ip(),
        LimitBy::Header(h) => req
            .headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map_or_else(ip, str::to_owned),
        LimitBy::Path => path.to_owned(),
        LimitBy::Service => String::new(),
    }
}

/// Routes a request: a response weir makes itself, or the upstream request to send.
/// `max_body` is the body limit of rules that set none.
fn route<'s>(
    snap: &'s Arc<Snapshot>,
    req: Request<Body>,
    conn: &ConnInfo,
    start: Instant,
    max_body: Option<u64>,
) -> Routed<'s> {
    let fail =
        |stats, method: &Method, e: ProxyError| local(snap, stats, method, start, e.to_response());
    let Some(listener) = snap.listener(conn.listener) else {
        return Routed::Local(fail(None, req.method(), ProxyError::NoRoute));
    };
    let table = &listener.table;
    let Some(authority) = authority_of(&req) else {
        return Routed::Local(fail(None, req.method(), ProxyError::MissingHost));
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if listener.https_redirect && !conn.tls {
        return Routed::Local(local(
            snap,
            None,
            req.method(),
            start,
            https_redirect(authority, pq),
        ));
    }
    let view = RequestView::new(
        pq,
        req.method().as_str(),
        authority,
        conn.scheme(),
        conn.listener.port(),
        req.headers(),
    );
    let Some(Matched { rule, block }) = table.find(&view) else {
        return Routed::Local(fail(None, req.method(), ProxyError::NoRoute));
    };
    // A response weir makes for this rule, with the headers gathered so far.
    let here = |mut resp: Response<ResponseBody>, extra: Option<Box<http::HeaderMap>>| {
        if let Some(extra) = extra {
            resp.headers_mut().extend(*extra);
        }
        Routed::Local(local(
            snap,
            Some(rule.local_stats),
            req.method(),
            start,
            resp,
        ))
    };
    // CORS: a preflight is answered here; an allowed origin's response gets its headers.
    let mut extra: Option<Box<http::HeaderMap>> = None;
    if let Some(cors) = &rule.cors {
        match cors.check(req.method(), req.headers()) {
            CorsAction::Pass => {}
            CorsAction::Answer(headers) => {
                let resp = local_response(PREFLIGHT_STATUS, Bytes::new());
                return here(resp, Some(Box::new(headers)));
            }
            CorsAction::Decorate(headers) => extra = Some(Box::new(headers)),
        }
    }
    // Break: weir answers itself (with the rule's response edits); Continue: forward.
    let decided = match &rule.action {
        Action::Forward(split) => ControlFlow::Continue(split),
        Action::Direct { status, body } => {
            ControlFlow::Break(local_response(*status, body.clone()))
        }
        Action::Redirect(rd) => {
            let location = rd.location(conn.scheme(), authority, view.path, view.query, block);
            let mut resp = local_response(rd.code, Bytes::new());
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            ControlFlow::Break(resp)
        }
    };
    let split = match decided {
        ControlFlow::Continue(split) => split,
        ControlFlow::Break(mut resp) => {
            rule.headers.response.apply(resp.headers_mut());
            return here(resp, extra);
        }
    };
    // A declared length over the body limit is refused before a byte of the body is read (an
    // `Expect: 100-continue` client is never told to send it); a chunked body, or one longer
    // than declared, fails when it crosses the limit.
    let max_body = rule.max_request_bytes.or(max_body);
    if max_body.is_some_and(|limit| req.body().size_hint().lower() > limit) {
        let e = ProxyError::Upstream(UpstreamError::ClientBody(BodyError::TooLarge));
        return Routed::Local(fail(Some(rule.local_stats), req.method(), e));
    }
    // Rate limits: counted before anything else is spent on the request.
    if let Some(i) = rule.rate_limit {
        let limiter = &snap.limiters[i];
        let verdict = limiter.check(&limit_key(limiter.spec(), &req, view.path, conn));
        if !verdict.allowed {
            let spec = limiter.spec();
            let body = serde_json::json!({ "message": spec.message }).to_string();
            let status = StatusCode::from_u16(spec.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
            let mut resp = local_response(status, Bytes::from(body));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            resp.headers_mut().extend(verdict.headers);
            return here(resp, extra);
        }
        if !verdict.headers.is_empty() {
            extra.get_or_insert_default().extend(verdict.headers);
        }
    }
    // Response cache: a fresh copy is answered from memory.
    let mut response_key = None;
    if let Some(rc) = &rule.response_cache {
        let directives = rc.directives(req.headers());
        let key = rc
            .key(
                req.method(),
                authority,
                view.path,
                view.query,
                req.headers(),
            )
            .filter(|_| rc.admits(directives.as_ref(), req.headers()));
        let status = match &key {
            Some(k) => {
                let now = Instant::now();
                let kept = snap.caches[rc.store].get(k, now);
                match rc.lookup(kept, directives.as_ref(), now) {
                    Lookup::Hit(hit) => {
                        let mut resp = cached_response(hit, rc.show_headers);
                        if rc.show_headers {
                            resp.headers_mut()
                                .insert(X_CACHE_STATUS, HeaderValue::from_static("Hit"));
                            if let Ok(v) = HeaderValue::from_str(k) {
                                resp.headers_mut().insert(X_CACHE_KEY, v);
                            }
                        }
                        return here(resp, extra);
                    }
                    Lookup::OnlyIfCached => {
                        let resp = local_response(StatusCode::GATEWAY_TIMEOUT, Bytes::new());
                        return here(resp, extra);
                    }
                    Lookup::Fetch(status) => status,
                }
            }
            None => "Bypass",
        };
        if rc.show_headers {
            let headers = extra.get_or_insert_default();
            headers.insert(X_CACHE_STATUS, HeaderValue::from_static(status));
            if let Some(v) = key.as_deref().and_then(|k| HeaderValue::from_str(k).ok()) {
                headers.insert(X_CACHE_KEY, v);
            }
        }
        response_key = key.map(String::into_boxed_str);
    }
    let path = rule
        .rewrite
        .as_ref()
        .and_then(|rw| rw.path(view.path, block));
    let path_and_query = match (path, view.query) {
        (Some(p), Some(q)) => Some(format!("{p}?{q}")),
        (p, _) => p,
    };
    let (dest, cohort_cookie) = match &rule.affinity {
        None => (split.pick(), None),
        Some(a) => match a.bucket(req.headers()) {
            Some(bucket) => (split.pick_bucket(bucket), None),
            None => {
                let (bucket, cookie) = a.assign();
                (split.pick_bucket(bucket), cookie)
            }
        },
    };
    let cluster = &snap.clusters[dest.cluster];
    let (hash, hash_cookie) = match &cluster.spec.hash {
        Some(h) => request_hash(
            h,
            &HashInput {
                headers: req.headers(),
                path: view.path,
                query: view.query,
                peer: conn.peer.ip(),
                uri_regex: route_regex(block),
            },
        ),
        None => (None, None),
    };
    let set_cookie: Vec<HeaderValue> = [cohort_cookie, hash_cookie].into_iter().flatten().collect();
    // None: the try answers "no healthy upstream" (or the rule's fallback does).
    let picked = cluster.pick(0, hash);
    let cache_key = match rule.fallback.as_ref().and_then(|f| f.cache) {
        _ if rule.response_cache.is_some() => response_key,
        Some(_) if req.method() == Method::GET => Some(format!("{authority}{pq}").into_boxed_str()),
        _ => None,
    };
    let h2 = match cluster.spec.protocol {
        Protocol::Http1 => false,
        Protocol::Http2 => true,
        Protocol::Client => req.version() == Version::HTTP_2,
    };
    // A transform with templates is rendered from the request as it arrived.
    let rendered;
    let transform = match rule.transform.as_deref() {
        Some(RequestTransform {
            templates: Some(t), ..
        }) => {
            rendered = t.render(&TemplateInput {
                headers: req.headers(),
                query: view.query,
                path: view.path,
                uri_regex: route_regex(block),
            });
            Some(&rendered)
        }
        other => other,
    };
    let path_and_query = match transform {
        Some(t) if t.touches_target() => {
            Some(t.apply_target(path_and_query.as_deref().unwrap_or(pq)))
        }
        _ => path_and_query,
    };
    let (mut parts, mut body) = req.into_parts();
    if let Some(limit) = max_body
        && !body.is_end_stream()
    {
        body = Body::Limited(Box::new(body), limit);
    }
    strip_hop_by_hop(&mut parts.headers);
    forwarded_headers(&mut parts.headers, conn);
    rule.headers.request.apply(&mut parts.headers);
    dest.headers.request.apply(&mut parts.headers);
    if let Some(t) = transform {
        t.apply_head(&mut parts.method, &mut parts.headers);
    }
    let method = parts.method.clone();
    if !target_uri(&mut parts, rule, path_and_query, h2) {
        return Routed::Local(fail(Some(dest.stats), &method, ProxyError::MissingHost));
    }
    let had_body = !body.is_end_stream();
    // Only methods that are not idempotent look for an idempotency key.
    let safe = rule.retry.non_idempotent || repeatable(&method, &parts.headers);
    Routed::Forward(Forward {
        snap,
        rule,
        dest,
        cluster,
        picked,
        h2,
        req: Request::from_parts(parts, body),
        method,
        deadline: rule.timeout.map(|t| start + t),
        start,
        tries: 0,
        tried: 0,
        safe,
        had_body,
        replay: None,
        template: None,
        admission: None,
        retrying: None,
        hash,
        set_cookie: (!set_cookie.is_empty()).then(|| set_cookie.into_boxed_slice()),
        reached: false,
        cache_key,
        ticket: None,
        extra,
    })
}

/// A request on its way upstream, with what its response will need.
struct Forward<'s> {
    snap: &'s Arc<Snapshot>,
    rule: &'s Rule,
    dest: &'s WeightedDest,
    cluster: &'s Cluster,
    /// The endpoint of the current (or next) try; `None` when none can take it.
    picked: Option<Picked<'s>>,
    h2: bool,
    req: Request<Body>,
    method: Method,
    deadline: Option<Instant>,
    start: Instant,
    /// Tries made.
    tries: u32,
    /// Endpoints tried, a bit per index (for `retryIgnorePreviousHosts`).
    tried: u64,
    /// The request may be sent twice (idempotent, an idempotency key, or the route opts in).
    safe: bool,
    /// The request came with a body.
    had_body: bool,
    /// The body, kept to be sent again.
    replay: Option<Bytes>,
    /// The head of an HTTP/2 request (which a try consumes), kept to be sent again.
    template: Option<Box<Request<()>>>,
    /// The try's connection-pool slots, held until its response has been read.
    admission: Option<Admission>,
    /// The retry under way, counted against the retry budget and `maxRetries`.
    retrying: Option<Retrying<'s>>,
    /// The request's consistent-hash key.
    hash: Option<u64>,
    /// Cookies generated for this client (cohort, consistent hash).
    set_cookie: Option<Box<[HeaderValue]>>,
    /// Some try may have reached an upstream.
    reached: bool,
    /// Where a good response to this GET is kept for the stale-cache fallback.
    cache_key: Option<Box<str>>,
    /// The circuit breaker's admission, reported with the final outcome.
    ticket: Option<Ticket>,
    /// Headers for the response (CORS, rate limits).
    extra: Option<Box<http::HeaderMap>>,
}

/// A retry's place in the budget and under `maxRetries`, given back when its try ends.
struct Retrying<'s> {
    _budget: InFlight<'s>,
    _slot: Option<RetrySlot>,
}

/// What follows a try.
// Consumed where it is made; boxing the common variant would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Answer with this.
    Done(Result<Response<UpstreamBody>, ProxyError>),
    /// Try again after this wait.
    Retry(Duration),
}

/// Request bodies up to this size are kept in memory, to be sent again by a retry.
const REPLAY_LIMIT: usize = 64 * 1024;

impl<'s> Forward<'s> {
    /// Whether the next try could be followed by a retry that sends the request again.
    fn may_resend(&self) -> bool {
        self.safe && self.tries < self.rule.retry.attempts
    }

    /// Reads the request body into memory to replay it, up to [`REPLAY_LIMIT`]. A longer body
    /// is forwarded as it comes (what was read first, then the rest) and is not replayed.
    async fn keep_body(&mut self) -> Result<(), ProxyError> {
        let body = self.req.body_mut();
        if body.size_hint().lower() > REPLAY_LIMIT as u64 {
            return Ok(());
        }
        let mut kept = BytesMut::new();
        loop {
            match poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        kept.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    return Err(ProxyError::Upstream(
                        crate::upstream::UpstreamError::ClientBody(e),
                    ));
                }
            }
            if kept.len() > REPLAY_LIMIT {
                let rest = std::mem::replace(body, Body::empty());
                *body = Body::Prefixed(Some(kept.freeze()), Box::new(rest));
                return Ok(());
            }
        }
        let kept = kept.freeze();
        self.replay = Some(kept.clone());
        *body = Body::Full(Some(kept));
        Ok(())
    }

    /// Sends copies of the request to the rule's mirrors it draws, fire and forget (see
    /// [`crate::policy::mirror`]). A body is copied when it is short enough to be kept; a
    /// longer one is not mirrored.
    async fn mirror(&mut self) -> Result<(), ProxyError> {
        // A bit per mirror drawn (held across the await instead of references).
        let chosen: u64 = self
            .rule
            .mirrors
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, m)| m.draw(|| fastrand::u32(..PER_MILLION)))
            .fold(0, |bits, (i, _)| bits | 1 << i);
        if chosen == 0 {
            return Ok(());
        }
        if self.had_body && self.replay.is_none() {
            self.keep_body().await?;
            if self.replay.is_none() {
                return Ok(());
            }
        }
        let body = self.replay.clone().unwrap_or_default();
        let timeout = self.rule.timeout.unwrap_or(MIRROR_TIMEOUT);
        let rule = self.rule;
        for (_, m) in rule
            .mirrors
            .iter()
            .enumerate()
            .filter(|(i, _)| chosen & 1 << i != 0)
        {
            let Some(slot) = mirror::slot() else {
                return Ok(());
            };
            let cluster = &self.snap.clusters[m.dest.cluster];
            let h2 = match cluster.spec.protocol {
                Protocol::Http1 => false,
                Protocol::Http2 => true,
                Protocol::Client => self.h2,
            };
            let mut copy = head_of(&self.req).map(|()| Body::Full(Some(body.clone())));
            if !shadow(&mut copy) || (h2 != self.h2 && !retarget(&mut copy, h2)) {
                continue;
            }
            let (snap, dest) = (self.snap.clone(), (m.dest.cluster, m.dest.stats));
            let method = self.method.clone();
            tokio::spawn(send_mirror(snap, dest, copy, method, timeout, slot));
        }
        Ok(())
    }

    /// One try: admission by the connection-pool limits, then the exchange under the try's
    /// deadline (the request's, or sooner with `perTryTimeout`).
    async fn attempt(&mut self) -> Result<Response<UpstreamBody>, ProxyError> {
        if self.h2 && self.template.is_none() && self.may_resend() {
            self.template = Some(Box::new(head_of(&self.req)));
        }
        self.tries += 1;
        if let Some(gate) = &self.cluster.gate {
            self.admission = Some(match gate.admit(self.h2) {
                Admit::Now(a) => a,
                Admit::Wait(waiting) => {
                    self.cluster.metrics.pending.inc();
                    // Boxed: waiting for a connection is the overloaded case.
                    Box::pin(queue(waiting, self.deadline)).await?
                }
                Admit::Overflow(limit) => {
                    self.cluster.metrics.overflow[limit as usize].inc();
                    return Err(ProxyError::Overflow(limit));
                }
            });
        }
        let Some(picked) = &self.picked else {
            return Err(ProxyError::NoHealthyUpstream);
        };
        let endpoint = picked.endpoint;
        endpoint.stats.active.fetch_add(1, Ordering::Relaxed);
        endpoint.stats.total.fetch_add(1, Ordering::Relaxed);
        let pool = if self.h2 { &endpoint.h2 } else { &endpoint.h1 };
        let spec = &self.cluster.spec;
        let try_deadline = match self.rule.retry.per_try_timeout {
            Some(t) => {
                let d = Instant::now() + t;
                Some(self.deadline.map_or(d, |whole| whole.min(d)))
            }
            None => self.deadline,
        };
        // Two arms rather than a future held in a local and again inside the timeout, which
        // would carry the exchange twice.
        let result = match try_deadline {
            Some(d) => match tokio::time::timeout_at(d, pool.send(&mut self.req, spec)).await {
                Ok(r) => r.map_err(ProxyError::from),
                Err(_) if Some(d) == self.deadline => {
                    // The request's deadline: the upstream did not answer in time.
                    if let Some(p) = &mut self.picked {
                        self.cluster.record(p, Event::Timeout);
                    }
                    Err(ProxyError::Timeout)
                }
                Err(_) => Err(ProxyError::TryTimeout),
            },
            None => pool
                .send(&mut self.req, spec)
                .await
                .map_err(ProxyError::from),
        };
        endpoint.stats.active.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Classifies a try's result (outlier detection, counters) and decides whether another try
    /// follows: the policy's conditions and attempts, the idempotency rule, a body that can be
    /// sent again, `maxRetries`, the retry budget, and an endpoint to send it to.
    fn settle(&mut self, result: Result<Response<UpstreamBody>, ProxyError>) -> Step {
        self.retrying = None;
        let Some(outcome) = self.observe(&result) else {
            return Step::Done(result);
        };
        let failed = !matches!(outcome, Outcome::Response { status, .. } if status < 500);
        let policy = &self.rule.retry;
        let again = policy.retries(&outcome, self.safe);
        let retries = &self.cluster.metrics.retries;
        if self.tries > 1 {
            retries[usize::from(failed || again)].inc();
        }
        let replayable = !self.had_body || self.replay.is_some() || outcome.never_sent();
        if !again || self.tries > policy.attempts || !replayable {
            return Step::Done(result);
        }
        if policy.ignore_previous_hosts
            && let Some(p) = &self.picked
        {
            self.tried |= 1 << (p.index % 64);
        }
        let Some(next) = self.cluster.pick(self.tried, self.hash) else {
            return Step::Done(result);
        };
        if let Err(e) = self.allow_retry(&outcome) {
            retries[e].inc();
            return Step::Done(result);
        }
        self.picked = Some(next);
        // An unread response closes its connection.
        drop(result);
        self.admission = None;
        if !outcome.never_sent() {
            self.rebuild_request();
        }
        Step::Retry(policy.backoff(self.tries, |k| fastrand::u64(..k)))
    }

    /// Classifies a try's result: how it ended (`None` for what is not the upstream's doing),
    /// recorded for outlier detection and the endpoint's counters.
    fn observe(&mut self, result: &Result<Response<UpstreamBody>, ProxyError>) -> Option<Outcome> {
        let outcome = match result {
            Ok(resp) => Some(response_outcome(resp, self.h2)),
            Err(e) => e.outcome(),
        };
        self.reached |= match (&outcome, result) {
            (Some(o), _) => !o.never_sent(),
            (None, Err(e)) => matches!(e, ProxyError::Timeout),
            (None, Ok(_)) => true,
        };
        let outcome = outcome?;
        let failed = !matches!(outcome, Outcome::Response { status, .. } if status < 500);
        let event = match outcome {
            Outcome::Response { status, .. } => Event::Status(status),
            Outcome::TimedOut => Event::Timeout,
            _ => Event::LocalFailure,
        };
        if let Some(p) = &mut self.picked {
            if failed {
                p.endpoint.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
            self.cluster.record(p, event);
        }
        Some(outcome)
    }

    /// Whether a final result goes to the rule's fallbacks: a 5xx, or an error that is not the
    /// client's.
    fn falls_back(&self, result: &Result<Response<UpstreamBody>, ProxyError>) -> bool {
        self.rule.fallback.is_some()
            && match result {
                Ok(resp) => resp.status().is_server_error(),
                Err(ProxyError::Upstream(UpstreamError::ClientBody(_))) => false,
                Err(_) => true,
            }
    }

    /// The fallbacks, in order: the stale cache, the backup service, the fixed response; if
    /// none answers, the request's own result.
    async fn fall_back(
        mut self,
        result: Result<Response<UpstreamBody>, ProxyError>,
    ) -> Response<ResponseBody> {
        let Some(fb) = self.rule.fallback.as_deref() else {
            return self.finish(result);
        };
        let stats = &self.snap.stats[self.dest.stats];
        if let (Some(i), Some(key)) = (fb.cache, &self.cache_key)
            && let Some(hit) = self.snap.caches[i].get(key, Instant::now())
        {
            stats.fallbacks[0].inc();
            // Kept as sent: the rule's edits are in already.
            return self.fallen_back(cached_response(hit, true), 0, false);
        }
        // A backup gets the request only if sending it (again) is safe and it is whole.
        let resendable = !self.reached
            || (self.safe
                && (!self.had_body || self.replay.is_some())
                && (!self.h2 || self.template.is_some()));
        if let Some(dest) = &fb.backup
            && resendable
        {
            let (cluster, first) = (self.cluster, self.dest);
            if self.reached {
                self.rebuild_request();
            }
            self.cluster = &self.snap.clusters[dest.cluster];
            self.dest = dest;
            self.picked = self.cluster.pick(0, None);
            let h2 = match self.cluster.spec.protocol {
                Protocol::Http1 => false,
                Protocol::Http2 => true,
                Protocol::Client => self.h2,
            };
            if h2 != self.h2 && !retarget(&mut self.req, h2) {
                self.picked = None;
            }
            self.h2 = h2;
            self.admission = None;
            // The backup's own time, and its answers are not kept as the route's.
            self.deadline = self.rule.timeout.map(|t| Instant::now() + t);
            self.cache_key = None;
            let backup = self.attempt().await;
            self.observe(&backup);
            if !self.falls_back(&backup) {
                stats.fallbacks[1].inc();
                let mut resp = self.finish(backup);
                resp.headers_mut()
                    .insert(X_WEIR_FALLBACK, HeaderValue::from_static("backup"));
                return resp;
            }
            (self.cluster, self.dest) = (cluster, first);
        }
        if let Some(fixed) = &fb.response {
            stats.fallbacks[2].inc();
            let mut resp = local_response(fixed.status, fixed.body.clone());
            for (k, v) in &fixed.headers {
                resp.headers_mut().insert(k, v.clone());
            }
            return self.fallen_back(resp, 2, true);
        }
        self.finish(result)
    }

    /// A response a fallback made, with the rule's response edits, recorded.
    fn fallen_back(
        self,
        mut resp: Response<ResponseBody>,
        kind: usize,
        edit: bool,
    ) -> Response<ResponseBody> {
        resp.headers_mut().insert(
            X_WEIR_FALLBACK,
            HeaderValue::from_static(crate::metrics::FALLBACK_KINDS[kind]),
        );
        if edit {
            self.rule.headers.response.apply(resp.headers_mut());
        }
        self.answer(resp)
    }

    /// Takes the retry's slot under `maxRetries` and its share of the retry budget; a retry of
    /// a request that never reached an upstream costs neither. The error is the
    /// `weir_retries_total` slot to count.
    fn allow_retry(&mut self, outcome: &Outcome) -> Result<(), usize> {
        if outcome.never_sent() {
            return Ok(());
        }
        let cluster: &'s Cluster = self.cluster;
        let slot = match &cluster.gate {
            Some(gate) => match gate.retry() {
                Some(slot) => Some(slot),
                None => {
                    cluster.metrics.overflow[Overflow::Retries as usize].inc();
                    return Err(3);
                }
            },
            None => None,
        };
        let budget = cluster
            .budget
            .withdraw(Instant::now(), cluster.in_flight())
            .ok_or(2usize)?;
        self.retrying = Some(Retrying {
            _budget: budget,
            _slot: slot,
        });
        Ok(())
    }

    /// Makes the request whole again after a try that sent it: the kept body, and for HTTP/2
    /// (whose try consumed the request) the kept head.
    fn rebuild_request(&mut self) {
        let body = match &self.replay {
            Some(b) => Body::Full(Some(b.clone())),
            None => Body::empty(),
        };
        match &self.template {
            Some(head) => self.req = (**head).clone().map(|()| body),
            None => *self.req.body_mut() = body,
        }
    }

    /// Waits before a retry; false if the request's deadline comes first.
    async fn backoff(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        match self.deadline {
            Some(d) if d <= until => {
                tokio::time::sleep_until(d).await;
                false
            }
            _ => {
                tokio::time::sleep_until(until).await;
                true
            }
        }
    }

    /// The client left while its request waited: nothing is forwarded; counted as 499 (nginx's
    /// code for it), and the response goes nowhere.
    fn client_gone(self) -> Response<ResponseBody> {
        let status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
        self.answer(local_response(status, Bytes::new()))
    }

    /// Answers with a response weir made, recorded against the destination.
    fn answer(mut self, resp: Response<ResponseBody>) -> Response<ResponseBody> {
        crate::http1::recycle(std::mem::take(self.req.headers_mut()));
        local(
            self.snap,
            Some(self.dest.stats),
            &self.method,
            self.start,
            resp,
        )
    }

    /// An injected abort, answered by weir: the upstream never sees the request.
    fn abort(self, abort: &Abort) -> Response<ResponseBody> {
        let mut resp = local_response(abort.status, Bytes::from_static(b"fault filter abort"));
        if let Some(code) = abort.grpc_status {
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert(GRPC_STATUS, HeaderValue::from(code));
            h.insert(GRPC_MESSAGE, HeaderValue::from_static("fault filter abort"));
        }
        self.rule.headers.response.apply(resp.headers_mut());
        self.answer(resp)
    }

    /// Tells the circuit breaker how the request ended (once): a 5xx or no response is a
    /// failure; the client's own failures count for nothing.
    fn report(&mut self, result: &Result<Response<UpstreamBody>, ProxyError>) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        match result {
            Ok(resp) => ticket.done(!resp.status().is_server_error()),
            Err(ProxyError::Upstream(UpstreamError::ClientBody(_))) => {}
            Err(_) => ticket.done(false),
        }
    }

    /// The response to send downstream, from the upstream's or from the error.
    fn finish(
        mut self,
        result: Result<Response<UpstreamBody>, ProxyError>,
    ) -> Response<ResponseBody> {
        self.report(&result);
        crate::http1::recycle(std::mem::take(self.req.headers_mut()));
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                let endpoint = self
                    .picked
                    .as_ref()
                    .map(|p| p.endpoint.spec.addr.to_string());
                tracing::debug!(cluster = %self.cluster.spec.name, endpoint = ?endpoint, tries = self.tries, error = %e, "Upstream request failed.");
                return self.answer(e.to_response());
            }
        };
        strip_hop_by_hop(resp.headers_mut());
        for cookie in self.set_cookie.take().into_iter().flat_map(Vec::from) {
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
        self.rule.headers.response.apply(resp.headers_mut());
        self.dest.headers.response.apply(resp.headers_mut());
        if let Some(extra) = self.extra.take() {
            resp.headers_mut().extend(*extra);
        }
        self.snap.stats[self.dest.stats].count(&self.method, resp.status().as_u16());
        let recorder = Recorder {
            snap: self.snap.clone(),
            stats: self.dest.stats,
            start: self.start,
            _admission: self.admission.take(),
        };
        // Kept: a response the rule's response cache takes, else a good one for the stale
        // cache of its fallback.
        let (store, ttl) = match (&self.rule.response_cache, &self.rule.fallback) {
            (Some(rc), _) => match rc.keep_for(resp.status(), resp.headers()) {
                Some(ttl) => (Some(rc.store), rc.cache_control.then_some(ttl)),
                None => {
                    // A request the cache looked up whose answer it may not keep.
                    if rc.show_headers && self.cache_key.is_some() {
                        resp.headers_mut()
                            .insert(X_CACHE_STATUS, HeaderValue::from_static("Bypass"));
                    }
                    (None, None)
                }
            },
            (None, Some(fb)) if resp.status().is_success() => (fb.cache, None),
            _ => (None, None),
        };
        let tee = match (store, self.cache_key.take()) {
            (Some(i), Some(key)) => Some(Box::new(Tee::new(
                self.snap.caches[i].clone(),
                key.into(),
                (resp.status(), resp.headers().clone()),
                ttl,
            ))),
            _ => None,
        };
        resp.map(|inner| ResponseBody::upstream(inner, recorder, self.deadline, tee))
    }
}

/// The regex of the matched block's path, whose captures hashing and templates read.
fn route_regex(block: Option<&RequestMatch>) -> Option<&regex::Regex> {
    match &block?.uri.as_ref()?.matcher {
        StrMatcher::Regex(re) => Some(re),
        _ => None,
    }
}

/// How long a mirrored request may take when its rule sets no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends one mirrored request and drops its response, counting it under the mirror
/// destination. It waits for no connection slot: a mirror over its pool limits is not sent.
async fn send_mirror(
    snap: Arc<Snapshot>,
    (cluster, stats): (usize, usize),
    mut req: Request<Body>,
    method: Method,
    timeout: Duration,
    _slot: mirror::Slot,
) {
    let start = Instant::now();
    let cluster = &snap.clusters[cluster];
    let h2 = req.version() == Version::HTTP_2;
    let _admission = match &cluster.gate {
        Some(gate) => match gate.admit(h2) {
            Admit::Now(a) => Some(a),
            Admit::Wait(_) | Admit::Overflow(_) => return,
        },
        None => None,
    };
    let Some(picked) = cluster.pick(0, None) else {
        return;
    };
    let pool = if h2 {
        &picked.endpoint.h2
    } else {
        &picked.endpoint.h1
    };
    let exchange = async {
        let resp = pool.send(&mut req, &cluster.spec).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            if frame.is_err() {
                break;
            }
        }
        Ok::<u16, UpstreamError>(status)
    };
    let status = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => ProxyError::from(e).to_response().status().as_u16(),
        Err(_) => StatusCode::GATEWAY_TIMEOUT.as_u16(),
    };
    let s = &snap.stats[stats];
    s.count(&method, status);
    s.observe(start.elapsed());
}

/// Marks a mirrored request's authority as Envoy does: `-shadow` after the host name (before
/// any port). False if the result is not a valid authority.
fn shadow(req: &mut Request<Body>) -> bool {
    let Some(current) = authority_of(req) else {
        return false;
    };
    let split = current
        .rfind(':')
        .filter(|&i| !current[i..].contains(']'))
        .unwrap_or(current.len());
    let shadowed = format!("{}-shadow{}", &current[..split], &current[split..]);
    if req.uri().authority().is_some() {
        let mut parts = req.uri().clone().into_parts();
        let Ok(authority) = Authority::try_from(shadowed.as_str()) else {
            return false;
        };
        parts.authority = Some(authority);
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return false,
        }
    } else {
        let Ok(host) = HeaderValue::from_str(&shadowed) else {
            return false;
        };
        req.headers_mut().insert(header::HOST, host);
    }
    true
}

/// Waits in the pending queue for a connection, until the request's deadline.
async fn queue(waiting: Waiting, deadline: Option<Instant>) -> Result<Admission, ProxyError> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, waiting.ready())
            .await
            .map_err(|_| ProxyError::Timeout),
        None => Ok(waiting.ready().await),
    }
}

/// How a try that got a response ended. Headers are looked at only where they can matter:
/// `grpc-status` on HTTP/2, overload markers on 503, the rate-limit marker on 429.
fn response_outcome(resp: &Response<UpstreamBody>, h2: bool) -> Outcome {
    let status = resp.status().as_u16();
    let h = resp.headers();
    Outcome::Response {
        status,
        grpc: if h2 {
            h.get(GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        } else {
            None
        },
        overloaded: status == 503
            && (h.contains_key(X_WEIR_OVERLOADED) || h.contains_key("x-envoy-overloaded")),
        ratelimited: status == 429 && h.contains_key("x-envoy-ratelimited"),
    }
}

/// Turns a request's target into the other protocol's form: origin-form and `Host` for
/// HTTP/1.1, an absolute URI for HTTP/2. False if it cannot be done.
fn retarget(req: &mut Request<Body>, h2: bool) -> bool {
    let (mut parts, body) = std::mem::replace(req, Request::new(Body::empty())).into_parts();
    if !h2
        && let Some(host) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, host);
    }
    let pq = parts.uri.path_and_query().cloned();
    let done = set_form(&mut parts, pq, h2);
    *req = Request::from_parts(parts, body);
    done
}

/// A copy of a request's head.
fn head_of(req: &Request<Body>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

/// The authority to route by: the absolute-form target's, or `Host` (HTTP/2: `:authority`).
fn authority_of<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(header::HOST)?.to_str().ok()?,
    };
    let host = strip_userinfo(raw);
    (!host.is_empty()).then_some(host)
}

/// Sets the upstream request target and `Host`: origin-form for HTTP/1.1 (the URI is left
/// alone when it already is and nothing rewrites it), absolute for HTTP/2 (whose `:authority`
/// replaces `Host`). The authority is the rule's rewrite, else the one the request was routed by.
/// False when no valid target can be made.
fn target_uri(
    parts: &mut http::request::Parts,
    rule: &Rule,
    path_and_query: Option<String>,
    h2: bool,
) -> bool {
    let rewritten = rule.rewrite.as_ref().and_then(|r| r.authority.clone());
    let host = match rewritten {
        Some(v) => Some(v),
        None => match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(strip_userinfo(a.as_str())).ok(),
            None => None,
        },
    };
    if let Some(host) = host {
        parts.headers.insert(header::HOST, host);
    }
    let pq = match path_and_query {
        Some(pq) => match PathAndQuery::try_from(pq) {
            Ok(pq) => Some(pq),
            Err(_) => return false,
        },
        None if h2 || parts.uri.scheme().is_some() => parts.uri.path_and_query().cloned(),
        // Origin-form already, not rewritten: forwarded as it came.
        None => None,
    };
    set_form(parts, pq, h2)
}

/// Puts a request head in its protocol's form: for HTTP/2 an absolute URI whose authority is
/// taken from `Host`; for HTTP/1.1 origin-form (`pq`, or the URI left alone without one).
fn set_form(parts: &mut http::request::Parts, pq: Option<PathAndQuery>, h2: bool) -> bool {
    let mut uri = http::uri::Parts::default();
    if h2 {
        let Some(authority) = parts
            .headers
            .remove(header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        else {
            return false;
        };
        parts.version = Version::HTTP_2;
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(authority);
        uri.path_and_query = Some(pq.unwrap_or_else(|| PathAndQuery::from_static("/")));
    } else {
        parts.version = Version::HTTP_11;
        let Some(pq) = pq else {
            return true;
        };
        uri.path_and_query = Some(pq);
    }
    match Uri::from_parts(uri) {
        Ok(u) => {
            parts.uri = u;
            true
        }
        Err(_) => false,
    }
}

/// The answer of a listener with `httpsRedirect`: 301 to the same host (default port) and path.
fn https_redirect(authority: &str, pq: &str) -> Response<ResponseBody> {
    let host = strip_userinfo(authority);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let mut resp = local_response(StatusCode::MOVED_PERMANENTLY, Bytes::new());
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{pq}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn strip_userinfo(authority: &str) -> &str {
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// `x-forwarded-for`, `x-forwarded-proto` and `x-request-id`, as Envoy sets them; at the edge,
/// `x-forwarded-proto` is overwritten and `x-envoy-*` headers removed.
fn forwarded_headers(headers: &mut http::HeaderMap, conn: &ConnInfo) {
    // Entries: each name is hashed once.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(e) => {
            e.insert(conn.peer_ip.clone());
        }
        Entry::Occupied(mut e) => {
            let ip = conn.peer_ip.as_bytes();
            let mut v = BytesMut::new();
            for prev in e.iter().filter(|p| !p.is_empty()) {
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(ip);
            if let Ok(v) = HeaderValue::from_maybe_shared(v.freeze()) {
                e.insert(v);
            }
        }
    }
    let proto = HeaderValue::from_static(conn.scheme());
    if conn.edge {
        headers.insert(X_FORWARDED_PROTO, proto);
        // Envoy's internal headers mean something to sidecars upstream; a client at the edge
        // does not get to set them.
        let internal: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("x-envoy-"))
            .cloned()
            .collect();
        for k in internal {
            headers.remove(k);
        }
    } else {
        headers.entry(X_FORWARDED_PROTO).or_insert(proto);
    }
    headers.entry(X_REQUEST_ID).or_insert_with(request_id);
}

/// A random (version 4) UUID. Ids are cut from a per-thread block, so that making one does not
/// allocate.
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const BLOCK: usize = 36 * 256;
    thread_local! {
        static IDS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    let n = fastrand::u128(..);
    let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let mut id = [b'-'; 36];
    let bytes = n.to_be_bytes();
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        id[at] = HEX[usize::from(b >> 4)];
        id[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    let bytes = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if ids.capacity() < id.len() {
            *ids = BytesMut::with_capacity(BLOCK);
        }
        ids.extend_from_slice(&id);
        ids.split_to(id.len()).freeze()
    });
    HeaderValue::from_maybe_shared(bytes).unwrap_or(HeaderValue::from_static("0"))
}

/// Records a response weir made itself.
fn local(
    snap: &Arc<Snapshot>,
    stats: Option<usize>,
    method: &Method,
    start: Instant,
    resp: Response<ResponseBody>,
) -> Response<ResponseBody> {
    let s = stats.map_or(&snap.unrouted, |i| &snap.stats[i]);
    s.count(method, resp.status().as_u16());
    s.observe(start.elapsed());
    resp
}

/// Observes the request duration once the response body is finished (or dropped), and then
/// gives back the try's connection-pool slots.
struct Recorder {
    snap: Arc<Snapshot>,
    stats: usize,
    start: Instant,
    _admission: Option<Admission>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.snap.stats[self.stats].observe(self.start.elapsed());
    }
}

/// The body of every response weir sends downstream.
pub struct ResponseBody {
    kind: Kind,
}

// The large variant is the common one (every forwarded response); boxing it would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: UpstreamBody,
        recorder: Option<Recorder>,
        deadline: Option<Pin<Box<Sleep>>>,
        /// A copy for the stale cache, kept once the body ends.
        tee: Option<Box<Tee>>,
    },
}

/// The rule's deadline passed while the response body was streaming.
#[derive(Debug, thiserror::Error)]
#[error("upstream response timed out")]
pub struct BodyTimeout;

impl ResponseBody {
    /// A body held in memory.
    pub fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(Some(bytes)),
        }
    }

    fn upstream(
        inner: UpstreamBody,
        recorder: Recorder,
        deadline: Option<Instant>,
        tee: Option<Box<Tee>>,
    ) -> Self {
        let mut body = ResponseBody {
            kind: Kind::Upstream {
                inner,
                recorder: Some(recorder),
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                tee,
            },
        };
        if let Kind::Upstream {
            inner,
            recorder,
            tee,
            ..
        } = &mut body.kind
            && inner.is_end_stream()
        {
            recorder.take();
            if let Some(t) = tee.take() {
                t.finish();
            }
        }
        body
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Upstream {
                inner,
                recorder,
                deadline,
                tee,
            } => {
                if let Some(d) = deadline
                    && d.as_mut().poll(cx).is_ready()
                {
                    recorder.take();
                    tee.take();
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                if let (Some(t), Poll::Ready(Some(Ok(frame)))) = (tee.as_mut(), &polled)
                    && let Some(data) = frame.data_ref()
                {
                    t.data(data);
                }
                match &polled {
                    Poll::Ready(None) => {
                        recorder.take();
                        if let Some(t) = tee.take() {
                            t.finish();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        recorder.take();
                        tee.take();
                    }
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => {
                        recorder.take();
                        if let Some(t) = tee.take() {
                            t.finish();
                        }
                    }
                    _ => {}
                }
                polled.map(|o| o.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        // Across block boundaries ids stay whole and distinct.
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 36 && id.as_bytes()[14] == b'4')
        );
    }

    #[test]
    fn mirrored_requests_get_a_shadow_host() {
        let mut h1 = Request::builder()
            .uri("/x")
            .header(header::HOST, "reviews:9080")
            .body(Body::empty())
            .unwrap();
        assert!(shadow(&mut h1));
        assert_eq!(h1.headers()[header::HOST], "reviews-shadow:9080");
        let mut h2 = Request::builder()
            .uri("http://[::1]/x")
            .body(Body::empty())
            .unwrap();
        assert!(shadow(&mut h2));
        assert_eq!(h2.uri().authority().unwrap().as_str(), "[::1]-shadow");
    }

    #[test]
    fn authority_prefers_absolute_form() {
        let req = Request::builder()
            .uri("http://reviews/x")
            .header("host", "other")
            .body(())
            .unwrap();
        assert_eq!(authority_of(&req), Some("reviews"));
        let req = Request::builder()
            .uri("/x")
            .header("host", "ratings:9080")
            .body(())
            .unwrap();
        assert_eq!(authority_of(&req), Some("ratings:9080"));
    }
}
