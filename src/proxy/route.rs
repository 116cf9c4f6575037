//! Routing a request: the listener's route table picks the rule, the rule's answers that need
//! no upstream are made here, and what is left becomes the upstream request to send.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body::Body as HttpBody;
use tokio::time::Instant;

use super::answer::{cached_response, local};
use super::conn::ConnInfo;
use super::forwarded::forwarded_headers;
use super::outbound::Forward;
use super::target::{authority_of, https_redirect, route_regex, target_uri};
use crate::access_log::Flags;
use crate::backend::hash::{HashInput, request_hash};
use crate::body::error::BodyError;
use crate::body::to_client::ResponseBody;
use crate::body::to_upstream::Body;
use crate::error::{PREFLIGHT_STATUS, ProxyError, local_response};
use crate::policy::access::{Facts, Granted, remote_ip};
use crate::policy::cache::Consulted;
use crate::policy::cors::CorsAction;
use crate::policy::headers::strip_hop_by_hop;
use crate::policy::retry::repeatable;
use crate::policy::split::Split;
use crate::policy::transform::TemplateInput;
use crate::route::matcher::{RequestMatch, RequestView};
use crate::route::{Action, Matched, Rule};
use crate::snapshot::Snapshot;
use crate::upstream::UpstreamError;

/// What routing decided.
// Built once per request and matched at once: boxing the forward would cost an allocation per
// request, the size difference only stack space in `respond`.
#[allow(clippy::large_enum_variant)]
pub(super) enum Routed<'s> {
    /// Forward upstream.
    Forward(Forward<'s>),
    /// A response weir made itself (direct response, redirect, or an error).
    Local(Response<ResponseBody>),
    /// Read the body first, then route again: access control looks for a credential in it.
    ReadBody(Request<Body>),
}

/// Routes a request: a response weir makes itself, or the upstream request to send.
/// `max_body` is the body limit of rules that set none.
pub(super) fn route<'s>(
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
    let Some(authority) = authority_of(&req) else {
        return Routed::Local(fail(None, req.method(), ProxyError::MissingHost));
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if listener.https_redirect && !conn.tls {
        let resp = https_redirect(authority, pq);
        return Routed::Local(local(snap, None, req.method(), start, resp));
    }
    let view = RequestView::new(
        pq,
        req.method().as_str(),
        authority,
        conn.scheme(),
        conn.listener.port(),
        req.headers(),
    );
    let Some(matched) = listener.table.find(&view) else {
        return Routed::Local(fail(None, req.method(), ProxyError::NoRoute));
    };
    let (rule, block) = (matched.rule, matched.block);
    let Answered {
        split,
        max_body,
        response_key,
        extra,
        access,
    } = match answers(
        snap,
        &req,
        conn,
        start,
        &view,
        matched,
        max_body,
        listener.trusted_hops,
    ) {
        ControlFlow::Continue(answered) => answered,
        ControlFlow::Break(Some(resp)) => return Routed::Local(resp),
        ControlFlow::Break(None) => return Routed::ReadBody(req),
    };
    // The upstream request: its destination (by weight or cohort), the endpoint (by
    // consistent hash when the cluster has one), the target (rewrite, transform), the headers
    // (hop-by-hop removed, forwarded headers, the rule's and destination's edits).
    let path_and_query = rule
        .rewrite
        .as_ref()
        .and_then(|rw| rw.path_and_query(view.path, view.query, block));
    // An experiment's participant goes to their variant (their response is counted);
    // everyone else by weight or cohort.
    let assigned = rule.experiment.as_deref().and_then(|x| {
        let e = &snap.experiments[x.experiment];
        x.assign(&e.design, &e.live, &view, req.headers())
    });
    let (dest, cohort_cookie, exposure) = match assigned {
        Some((dest, exposure)) => (dest, None, exposure.map(Box::new)),
        None => {
            let (dest, cookie) = split.pick_for(rule.affinity.as_deref(), req.headers());
            (dest, cookie, None)
        }
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
    // Where a good response is kept: the response cache's key, else the stale cache's.
    let cache_key = match &rule.fallback {
        _ if rule.response_cache.is_some() => response_key,
        Some(fb) => fb.stale_key(req.method(), authority, pq),
        None => None,
    };
    let h2 = cluster.spec.protocol.h2(req.version() == Version::HTTP_2);
    // A transform with templates is rendered from the request as it arrived.
    let rendered = rule.transform.as_deref().and_then(|t| {
        t.render_for(&TemplateInput {
            headers: req.headers(),
            query: view.query,
            path: view.path,
            uri_regex: route_regex(block),
        })
    });
    let transform = rendered.as_ref().or(rule.transform.as_deref());
    let path_and_query = match transform {
        Some(t) => t.target(path_and_query, pq),
        None => path_and_query,
    };
    let (mut parts, mut body) = req.into_parts();
    // A credential taken out of the body (Kong's `hide_credentials` with `key_in_body`).
    let new_body = crate::policy::access::new_body(&access.edits);
    if let Some(b) = new_body {
        body = Body::Full(Some(b.clone()));
    }
    if let Some(limit) = max_body
        && !body.is_end_stream()
    {
        body = Body::Limited(Box::new(body), limit);
    }
    strip_hop_by_hop(&mut parts.headers);
    forwarded_headers(&mut parts.headers, conn);
    crate::policy::access::apply(&access.edits, &mut parts.headers);
    if let Some(b) = new_body {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
    }
    rule.headers.request.apply(&mut parts.headers);
    dest.headers.request.apply(&mut parts.headers);
    if let Some(t) = transform {
        t.apply_head(&mut parts.method, &mut parts.headers);
    }
    let method = parts.method.clone();
    if !target_uri(&mut parts, rule, path_and_query, h2) {
        return Routed::Local(fail(Some(dest.stats), &method, ProxyError::MissingHost));
    }
    // A credential the route hides goes no further (Kong's `hide_credentials`).
    if let Some(pq) = parts.uri.path_and_query()
        && let Some(stripped) = crate::policy::access::strip_params(&access.edits, pq.as_str())
    {
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query = stripped.parse().ok();
        parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
    }
    let had_body = !body.is_end_stream();
    // Only methods that are not idempotent look for an idempotency key.
    let safe = rule.retry.non_idempotent || repeatable(&method, &parts.headers);
    Routed::Forward(Forward {
        flags: Flags::default(),
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
        exposure,
        reached: false,
        cache_key,
        ticket: None,
        extra,
    })
}

/// What a rule that goes upstream leaves for the upstream request.
struct Answered<'s> {
    /// The split to forward by.
    split: &'s Split,
    /// The request body limit.
    max_body: Option<u64>,
    /// The response cache's key for this request, if it looked it up.
    response_key: Option<Box<str>>,
    /// Headers for the response (CORS, rate limits, cache status).
    extra: Option<Box<HeaderMap>>,
    /// What access control established (a token removed, claims added, the consumer).
    access: Granted,
}

/// The rule's answers that need no upstream, in this order: CORS (a preflight is answered
/// before anything else, as Envoy's CORS filter runs first), access control (before anything
/// is answered or spent for a client that may not pass: a cached copy, a rate limit's
/// count), the rule's action (direct response, redirect), the body limit (a declared length
/// over it is refused before a byte of the body is read, so an `Expect: 100-continue` client
/// is never told to send it), the rate
/// limit (counted before anything else is spent on the request), the response cache (a fresh
/// copy is answered from memory). `Break(None)`: the checks need the body, unread.
// The request's pieces, each passed once from `route`; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn answers<'s>(
    snap: &'s Arc<Snapshot>,
    req: &Request<Body>,
    conn: &ConnInfo,
    start: Instant,
    view: &RequestView<'_>,
    Matched { rule, block }: Matched<'s>,
    max_body: Option<u64>,
    trusted_hops: u32,
) -> ControlFlow<Option<Response<ResponseBody>>, Answered<'s>> {
    // A response weir makes for this rule, with the headers gathered so far.
    let here = |mut resp: Response<ResponseBody>, extra: Option<Box<HeaderMap>>| {
        if let Some(extra) = extra {
            resp.headers_mut().extend(*extra);
        }
        let stats = Some(rule.local_stats);
        ControlFlow::Break(Some(local(snap, stats, req.method(), start, resp)))
    };
    let mut extra: Option<Box<HeaderMap>> = None;
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
    let mut access = Granted::default();
    if let Some(scopes) = &rule.access {
        let peer = conn.peer.ip();
        let facts = Facts {
            method: view.method,
            path: view.path,
            query: view.query,
            authority: view.authority,
            port: conn.listener.port(),
            peer,
            remote: remote_ip(req.headers(), peer, trusted_hops),
            destination: conn.listener.ip(),
            headers: req.headers(),
            principal: conn.principal.as_deref(),
            body: match req.body() {
                Body::Full(b) => Some(b.as_deref().unwrap_or_default()),
                // Beyond what is read to search (as Kong does not search a body beyond its
                // buffer).
                Body::Prefixed(..) => Some(&[]),
                b if b.is_end_stream() => Some(&[]),
                _ => None,
            },
        };
        let scopes = || scopes.iter().map(|&i| &snap.scopes[i]);
        if crate::policy::access::wants_body(scopes(), &facts) {
            return ControlFlow::Break(None);
        }
        match crate::policy::access::check(scopes(), &facts) {
            Ok(granted) => access = granted,
            Err(denial) => return here(ProxyError::Denied(denial).to_response(), extra),
        }
    }
    let split = match action(rule, conn, view, block) {
        ControlFlow::Continue(split) => split,
        ControlFlow::Break(resp) => return here(resp, extra),
    };
    let max_body = rule.max_request_bytes.or(max_body);
    if max_body.is_some_and(|limit| req.body().size_hint().lower() > limit) {
        let e = ProxyError::Upstream(UpstreamError::ClientBody(BodyError::TooLarge));
        return here(e.to_response(), None);
    }
    if let Some(i) = rule.rate_limit {
        let consumer = access.consumer.as_deref();
        match snap.limiters[i].admit(req.headers(), view.path, conn.peer.ip(), consumer) {
            ControlFlow::Continue(headers) if headers.is_empty() => {}
            ControlFlow::Continue(headers) => extra.get_or_insert_default().extend(headers),
            ControlFlow::Break(limited) => {
                let resp = ProxyError::RateLimited(Box::new(limited)).to_response();
                return here(resp, extra);
            }
        }
    }
    let mut response_key = None;
    if let Some(rc) = &rule.response_cache {
        let store = &snap.caches[rc.store];
        let method = req.method();
        match rc.consult(
            store,
            method,
            view.authority,
            view.path,
            view.query,
            req.headers(),
        ) {
            Consulted::Hit(hit, key) => {
                let mut resp = cached_response(hit, rc.show_headers);
                rc.show(resp.headers_mut(), "Hit", Some(&key));
                return here(resp, extra);
            }
            Consulted::NotCached => return here(ProxyError::NotCached.to_response(), extra),
            Consulted::Fetch(key, status) => {
                if rc.show_headers {
                    rc.show(extra.get_or_insert_default(), status, key.as_deref());
                }
                response_key = key.map(String::into_boxed_str);
            }
        }
    }
    ControlFlow::Continue(Answered {
        split,
        max_body,
        response_key,
        extra,
        access,
    })
}

/// The rule's action: the split to forward by, or the response weir answers with itself
/// (with the rule's response edits).
fn action<'s>(
    rule: &'s Rule,
    conn: &ConnInfo,
    view: &RequestView<'_>,
    block: Option<&RequestMatch>,
) -> ControlFlow<Response<ResponseBody>, &'s Split> {
    let mut resp = match &rule.action {
        Action::Forward(split) => return ControlFlow::Continue(split),
        Action::Direct { status, body } => local_response(*status, body.clone()),
        Action::Redirect(rd) => {
            let location = rd.location(conn.scheme(), view.authority, view.path, view.query, block);
            let mut resp = local_response(rd.code, Bytes::new());
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
    };
    rule.headers.response.apply(resp.headers_mut());
    ControlFlow::Break(resp)
}
