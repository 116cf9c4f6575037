//! Every response weir makes by itself, and the one table that gives each its status.
//!
//! Errors are typed where they arise ([`UpstreamError`], [`BodyError`], the server's
//! [`Refusal`]) and reach the client only through [`ProxyError::to_response`], whose status
//! comes from [`ProxyError::status`]. The two answers that are not failures (a CORS preflight,
//! a listener's HTTPS redirect) have their statuses here too. Statuses a user configures (a
//! direct response, a redirect's code, an injected abort, a fallback's fixed response, a rate
//! limit's `error_code`) are theirs, passed through as configured.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::access_log::Flags;
use crate::body::error::BodyError;
use crate::body::to_client::ResponseBody;
use crate::metrics::Overflow;
use crate::policy::access::Denial;
use crate::policy::ratelimit::Limited;
use crate::policy::retry::Outcome;
use crate::upstream::UpstreamError;

/// Why weir answered a request itself instead of forwarding the upstream's response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The request broke HTTP or a server limit, and was refused before routing.
    #[error("{0}")]
    Refused(Refusal),
    /// The request has no authority to route by.
    #[error("missing host")]
    MissingHost,
    /// No rule matched.
    #[error("no route")]
    NoRoute,
    /// A rate limit turned the request away.
    #[error("{}", .0.message)]
    RateLimited(Box<Limited>),
    /// Access control refused the request (a bad token: 401; a policy: 403).
    #[error("{}", .0.body)]
    Denied(Box<Denial>),
    /// The client asked for a cached copy only (`only-if-cached`) and none is kept.
    #[error("not cached")]
    NotCached,
    /// The client went away while its request waited (on an injected delay).
    #[error("client closed request")]
    ClientGone,
    /// The chosen cluster has no endpoints.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    /// The whole-request deadline passed.
    #[error("upstream request timeout")]
    Timeout,
    /// One try's deadline (`perTryTimeout`) passed.
    #[error("upstream request timeout")]
    TryTimeout,
    /// A connection-pool limit turned the request away.
    #[error("upstream connect error or disconnect/reset before headers. reset reason: overflow")]
    Overflow(Overflow),
    /// The destination's circuit breaker is open.
    #[error("circuit breaker open")]
    CircuitOpen,
    /// weir is over its memory limit and takes on no new requests.
    #[error("overloaded: weir is over its memory limit")]
    Overloaded,
    /// Talking to the upstream failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// A request refused before routing because it breaks HTTP/1.1 (RFC 9112) or a server limit.
/// weir's HTTP/1.1 server answers it and closes the connection; on HTTP/2 only the stream is
/// answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Malformed: the reason says how (bad framing, a missing or repeated `Host`, ...).
    Malformed(&'static str),
    /// A head that began did not end within the request headers timeout.
    HeadTimeout,
    /// The request target is longer than the server accepts.
    TargetTooLong,
    /// The head is larger than the server accepts, or has too many fields.
    HeadTooLarge(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl Refusal {
    /// What the client is told (the response body, with a newline).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed(why) | Refusal::HeadTooLarge(why) => why,
            Refusal::HeadTimeout => "request head timeout",
            Refusal::TargetTooLong => "request target too long",
        }
    }

    /// The status sent (from [`ProxyError::status`], the one table).
    pub(crate) fn status(self) -> StatusCode {
        ProxyError::Refused(self).status()
    }
}

/// The status of a CORS preflight weir answers (Envoy's).
pub(crate) const PREFLIGHT_STATUS: StatusCode = StatusCode::OK;

/// The status of a listener's redirect to HTTPS (Istio's `httpsRedirect`).
pub(crate) const HTTPS_REDIRECT_STATUS: StatusCode = StatusCode::MOVED_PERMANENTLY;

/// nginx's code for a request whose client closed the connection before the answer; it is only
/// ever counted, as no one is left to receive it.
const CLIENT_CLOSED_REQUEST: u16 = 499;

impl ProxyError {
    /// The status sent to the client: the one table of the statuses weir decides.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::Refused(Refusal::Malformed(_)) => StatusCode::BAD_REQUEST,
            ProxyError::Refused(Refusal::HeadTimeout) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Refused(Refusal::TargetTooLong) => StatusCode::URI_TOO_LONG,
            ProxyError::Refused(Refusal::HeadTooLarge(_)) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ProxyError::MissingHost => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::RateLimited(l) => {
                StatusCode::from_u16(l.status).unwrap_or(StatusCode::TOO_MANY_REQUESTS)
            }
            // 401 for credentials that fail, 403 for a policy's denial; as the policy says
            // for the ones that set their own (Kong's ip-restriction `status`).
            ProxyError::Denied(d) => d.status,
            ProxyError::NotCached => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientGone => {
                StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ProxyError::NoHealthyUpstream => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Timeout | ProxyError::TryTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Overflow(_) | ProxyError::Overloaded | ProxyError::CircuitOpen => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Upstream(UpstreamError::ClientBody(BodyError::TimedOut)) => {
                StatusCode::REQUEST_TIMEOUT
            }
            ProxyError::Upstream(UpstreamError::ClientBody(BodyError::TooLarge)) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ProxyError::Upstream(UpstreamError::ClientBody(_)) => StatusCode::BAD_REQUEST,
            ProxyError::Upstream(UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(e) if e.never_sent() => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The access log's response flags for this error (beside the status, in the same table).
    pub(crate) fn flags(&self) -> Flags {
        match self {
            ProxyError::Refused(_) | ProxyError::MissingHost | ProxyError::NotCached => {
                Flags::default()
            }
            ProxyError::NoRoute => Flags::NO_ROUTE,
            ProxyError::RateLimited(_) => Flags::RATE_LIMITED,
            ProxyError::Denied(_) => Flags::DENIED,
            ProxyError::ClientGone => Flags::CLIENT_GONE,
            ProxyError::NoHealthyUpstream => Flags::NO_HEALTHY_UPSTREAM,
            ProxyError::Timeout | ProxyError::TryTimeout => Flags::TIMEOUT,
            ProxyError::Overflow(_) => Flags::OVERFLOW,
            ProxyError::CircuitOpen => Flags::CIRCUIT_OPEN,
            ProxyError::Overloaded => Flags::OVERLOADED,
            ProxyError::Upstream(UpstreamError::ClientBody(_)) => Flags::default(),
            ProxyError::Upstream(UpstreamError::Timeout(_)) => Flags::TIMEOUT,
            ProxyError::Upstream(_) => Flags::UPSTREAM_FAILURE,
        }
    }

    /// The response weir sends for this error.
    pub(crate) fn to_response(&self) -> Response<ResponseBody> {
        let body = match self {
            ProxyError::Upstream(e) if e.never_sent() => {
                format!("upstream connect error or disconnect/reset before headers: {e}")
            }
            ProxyError::Refused(r) => format!("{}\n", r.reason()),
            ProxyError::RateLimited(l) => {
                let body = serde_json::json!({ "message": l.message }).to_string();
                let mut resp = local_response(self.status(), Bytes::from(body));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                );
                resp.headers_mut().extend(l.headers.clone());
                resp.body_mut().meta.flags = self.flags();
                return resp;
            }
            ProxyError::Denied(d) => {
                let mut resp = local_response(self.status(), Bytes::from(d.body.clone()));
                if d.json {
                    resp.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json; charset=utf-8"),
                    );
                }
                if let Some(c) = &d.challenge {
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, c.clone());
                }
                resp.body_mut().meta.flags = self.flags();
                // The access log names the policy that decided.
                resp.extensions_mut().insert(DeniedBy(d.policy.clone()));
                return resp;
            }
            ProxyError::NotCached | ProxyError::ClientGone => String::new(),
            other => other.to_string(),
        };
        let mut resp = local_response(self.status(), Bytes::from(body));
        resp.body_mut().meta.flags = self.flags();
        if let ProxyError::Overflow(_) | ProxyError::Overloaded = self {
            // Envoy's marker, under weir's name: clients and proxies must not retry it.
            resp.headers_mut()
                .insert(X_WEIR_OVERLOADED, HeaderValue::from_static("true"));
        }
        resp
    }

    /// How a try that failed with this error ended, for retries and outlier detection; `None`
    /// for errors that are not the upstream's doing (weir's own limits, the client's body, the
    /// whole request's deadline).
    pub(crate) fn outcome(&self) -> Option<Outcome> {
        Some(match self {
            ProxyError::Upstream(e) => match e {
                UpstreamError::Connect(_)
                | UpstreamError::ConnectTimeout
                | UpstreamError::Tls(_)
                | UpstreamError::Handshake(_) => Outcome::ConnectFailed,
                UpstreamError::NotSent(_) => Outcome::Refused,
                UpstreamError::Reset(_) => Outcome::Reset,
                UpstreamError::BadResponse(_) => Outcome::BadResponse,
                UpstreamError::Timeout(_) => Outcome::TimedOut,
                UpstreamError::ClientBody(_) => return None,
            },
            ProxyError::TryTimeout => Outcome::TimedOut,
            _ => return None,
        })
    }
}

/// The policy that refused a request, on its response (for the access log).
#[derive(Clone, Debug)]
pub(crate) struct DeniedBy(pub(crate) std::sync::Arc<str>);

/// Set on responses weir sheds because of a connection-pool limit or memory overload.
pub(crate) const X_WEIR_OVERLOADED: http::HeaderName =
    http::HeaderName::from_static("x-weir-overloaded");

/// A response made by weir, with a plain-text body.
pub(crate) fn local_response(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
