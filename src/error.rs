//! Errors of the request path and the one table that maps them to responses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::backend::limits::Overflow;
use crate::http1::BodyError;
use crate::policy::retry::Outcome;
use crate::proxy::ResponseBody;
use crate::upstream::UpstreamError;

/// Why weir answered a request itself instead of forwarding the upstream's response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request has no authority to route by.
    #[error("missing host")]
    MissingHost,
    /// No rule matched.
    #[error("no route")]
    NoRoute,
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

impl ProxyError {
    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MissingHost => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
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

    /// The response weir sends for this error.
    pub fn to_response(&self) -> Response<ResponseBody> {
        let body = match self {
            ProxyError::Upstream(e) if e.never_sent() => {
                format!("upstream connect error or disconnect/reset before headers: {e}")
            }
            other => other.to_string(),
        };
        let mut resp = local_response(self.status(), Bytes::from(body));
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
    pub fn outcome(&self) -> Option<Outcome> {
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

/// Set on responses weir sheds because of a connection-pool limit or memory overload.
pub const X_WEIR_OVERLOADED: http::HeaderName = http::HeaderName::from_static("x-weir-overloaded");

/// A response made by weir, with a plain-text body.
pub fn local_response(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
