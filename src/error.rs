//! Errors of the request path and the one table that maps them to responses.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

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
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(UpstreamError::ClientBody(_)) => StatusCode::BAD_REQUEST,
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
        local_response(self.status(), Bytes::from(body))
    }
}

/// A response made by weir, with a plain-text body.
pub fn local_response(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
