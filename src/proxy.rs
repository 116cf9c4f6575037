//! The request path: one function, [`Proxy::handle`], runs the steps in order.
//!
//! snapshot -> authority -> route (host, first matching rule) -> action -> for forwards:
//! rewrite, header edits, weighted split, endpoint pick, upstream send under the rule's deadline
//! -> response edits -> metrics. Errors become responses only in [`crate::error`].

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::backend::Protocol;
use crate::error::{ProxyError, local_response};
use crate::policy::headers::strip_hop_by_hop;
use crate::policy::split::Split;
use crate::route::matcher::RequestView;
use crate::route::{Action, Matched};
use crate::snapshot::Snapshot;
use crate::upstream::{Body, UpstreamBody};

type BoxError = Box<dyn StdError + Send + Sync>;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Facts about the downstream connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's bound address (its identity in the snapshot).
    pub listener: SocketAddr,
    /// Whether this listener faces untrusted clients (a Gateway): `x-forwarded-proto` is then
    /// overwritten rather than kept.
    pub edge: bool,
}

/// The proxy: reads the current snapshot for each request.
pub struct Proxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
}

impl Proxy {
    /// A proxy serving whatever `snapshot` holds.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Proxy {
        Proxy { snapshot }
    }

    /// Handles one request, start to response headers.
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<ResponseBody> {
        let start = Instant::now();
        let snap = self.snapshot.load_full();
        let method = req.method().clone();
        let Some(table) = snap.table(conn.listener) else {
            return local(
                &snap,
                None,
                &method,
                start,
                ProxyError::NoRoute.to_response(),
            );
        };
        let Some(authority) = authority_of(&req) else {
            let resp = ProxyError::MissingHost.to_response();
            return local(&snap, None, &method, start, resp);
        };
        let authority = authority.to_owned();
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let view = RequestView::new(
            pq,
            method.as_str(),
            &authority,
            "http",
            conn.listener.port(),
            req.headers(),
        );
        let Some(Matched { rule, block }) = table.find(&view) else {
            drop(view);
            let resp = ProxyError::NoRoute.to_response();
            return local(&snap, None, &method, start, resp);
        };
        match &rule.action {
            Action::Direct { status, body } => {
                let mut resp = local_response(*status, body.clone());
                rule.headers.response.apply(resp.headers_mut());
                local(&snap, Some(rule.local_stats), &method, start, resp)
            }
            Action::Redirect(rd) => {
                let location = rd.location("http", &authority, view.path, view.query, block);
                let mut resp = local_response(rd.code, Bytes::new());
                if let Ok(v) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                rule.headers.response.apply(resp.headers_mut());
                local(&snap, Some(rule.local_stats), &method, start, resp)
            }
            Action::Forward(split) => {
                let path = rule
                    .rewrite
                    .as_ref()
                    .and_then(|rw| rw.path(view.path, block));
                let path_and_query = match (path, view.query) {
                    (Some(p), Some(q)) => Some(format!("{p}?{q}")),
                    (p, _) => p,
                };
                drop(view);
                let deadline = rule.timeout.map(|t| start + t);
                let fwd = Forward {
                    snap: &snap,
                    split,
                    rule,
                    authority,
                    path_and_query,
                    deadline,
                    start,
                    conn,
                };
                fwd.run(req).await
            }
        }
    }
}

/// Everything a forwarded request carries through its steps.
struct Forward<'s> {
    snap: &'s Arc<Snapshot>,
    split: &'s Split,
    rule: &'s crate::route::Rule,
    authority: String,
    path_and_query: Option<String>,
    deadline: Option<Instant>,
    start: Instant,
    conn: ConnInfo,
}

impl Forward<'_> {
    async fn run(self, req: Request<Incoming>) -> Response<ResponseBody> {
        let method = req.method().clone();
        let dest = self.split.pick();
        let cluster = &self.snap.clusters[dest.cluster];
        let Some(endpoint) = cluster.pick() else {
            let resp = ProxyError::NoHealthyUpstream.to_response();
            return local(self.snap, Some(dest.stats), &method, self.start, resp);
        };
        let h2 = match cluster.spec.protocol {
            Protocol::Http1 => false,
            Protocol::Http2 => true,
            Protocol::Client => req.version() == Version::HTTP_2,
        };
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        forwarded_headers(&mut parts.headers, &self.conn);
        self.rule.headers.request.apply(&mut parts.headers);
        dest.headers.request.apply(&mut parts.headers);
        let authority = match &self.rule.rewrite.as_ref().and_then(|r| r.authority.clone()) {
            Some(a) => a.to_str().unwrap_or_default().to_owned(),
            None => self.authority,
        };
        let pq = match self.path_and_query {
            Some(pq) => pq,
            None => parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        };
        let uri = if h2 {
            parts.headers.remove(header::HOST);
            parts.version = Version::HTTP_2;
            Uri::builder()
                .scheme("http")
                .authority(authority.as_str())
                .path_and_query(pq)
                .build()
        } else {
            if let Ok(host) = HeaderValue::from_str(&authority) {
                parts.headers.insert(header::HOST, host);
            }
            parts.version = Version::HTTP_11;
            Uri::builder().path_and_query(pq).build()
        };
        let Ok(uri) = uri else {
            let resp = ProxyError::MissingHost.to_response();
            return local(self.snap, Some(dest.stats), &method, self.start, resp);
        };
        parts.uri = uri;
        let pool = if h2 { &endpoint.h2 } else { &endpoint.h1 };
        let stats = &endpoint.stats;
        stats.active.fetch_add(1, Ordering::Relaxed);
        stats.total.fetch_add(1, Ordering::Relaxed);
        let send = pool.send(
            Request::from_parts(parts, Body::Incoming(body)),
            cluster.spec.connect_timeout,
        );
        let result = match self.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, send).await {
                Ok(r) => r.map_err(ProxyError::from),
                Err(_) => Err(ProxyError::Timeout),
            },
            None => send.await.map_err(ProxyError::from),
        };
        stats.active.fetch_sub(1, Ordering::Relaxed);
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(cluster = %cluster.spec.name, endpoint = %endpoint.spec.addr, error = %e, "Upstream request failed.");
                return local(
                    self.snap,
                    Some(dest.stats),
                    &method,
                    self.start,
                    e.to_response(),
                );
            }
        };
        if resp.status().is_server_error() {
            stats.failures.fetch_add(1, Ordering::Relaxed);
        }
        strip_hop_by_hop(resp.headers_mut());
        self.rule.headers.response.apply(resp.headers_mut());
        dest.headers.response.apply(resp.headers_mut());
        self.snap.stats[dest.stats].count(&method, resp.status().as_u16());
        let recorder = Recorder {
            snap: self.snap.clone(),
            stats: dest.stats,
            start: self.start,
        };
        resp.map(|inner| ResponseBody::upstream(inner, recorder, self.deadline))
    }
}

/// The authority to route by: the absolute-form target's, or `Host` (HTTP/2: `:authority`).
fn authority_of<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(header::HOST)?.to_str().ok()?,
    };
    let host = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

/// `x-forwarded-for`, `x-forwarded-proto` and `x-request-id`, as Envoy sets them.
fn forwarded_headers(headers: &mut http::HeaderMap, conn: &ConnInfo) {
    let ip = conn.peer.ip().to_string();
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if conn.edge || !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !headers.contains_key(X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID, request_id());
    }
}

/// A random (version 4) UUID.
fn request_id() -> HeaderValue {
    let n = fastrand::u128(..);
    let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{n:032x}");
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("0"))
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

/// Observes the request duration once the response body is finished (or dropped).
struct Recorder {
    snap: Arc<Snapshot>,
    stats: usize,
    start: Instant,
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

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: UpstreamBody,
        recorder: Option<Recorder>,
        deadline: Option<Pin<Box<Sleep>>>,
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

    fn upstream(inner: UpstreamBody, recorder: Recorder, deadline: Option<Instant>) -> Self {
        let mut body = ResponseBody {
            kind: Kind::Upstream {
                inner,
                recorder: Some(recorder),
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            },
        };
        if let Kind::Upstream {
            inner, recorder, ..
        } = &mut body.kind
            && inner.is_end_stream()
        {
            recorder.take();
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
            } => {
                if let Some(d) = deadline
                    && d.as_mut().poll(cx).is_ready()
                {
                    recorder.take();
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                        recorder.take();
                    }
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => {
                        recorder.take();
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
