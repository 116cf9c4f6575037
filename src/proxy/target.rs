//! The upstream request's target: the authority a request is routed by, and the URI and `Host`
//! each protocol wants (origin-form and `Host` for HTTP/1.1, an absolute URI for HTTP/2).

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Uri, Version};

use bytes::Bytes;
use http::Response;

use crate::body::to_client::ResponseBody;
use crate::body::to_upstream::Body;
use crate::error::{HTTPS_REDIRECT_STATUS, local_response};
use crate::route::Rule;
use crate::route::matcher::{RequestMatch, StrMatcher};

/// The regex of the matched block's path, whose captures hashing and templates read.
pub(super) fn route_regex(block: Option<&RequestMatch>) -> Option<&regex::Regex> {
    match &block?.uri.as_ref()?.matcher {
        StrMatcher::Regex(re) => Some(re),
        _ => None,
    }
}

/// Turns a request's target into the other protocol's form: origin-form and `Host` for
/// HTTP/1.1, an absolute URI for HTTP/2. False if it cannot be done.
pub(super) fn retarget(req: &mut Request<Body>, h2: bool) -> bool {
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
pub(super) fn head_of(req: &Request<Body>) -> Request<()> {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    head
}

/// The authority to route by: the absolute-form target's, or `Host` (HTTP/2: `:authority`).
pub(super) fn authority_of<B>(req: &Request<B>) -> Option<&str> {
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
pub(super) fn target_uri(
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
pub(super) fn set_form(
    parts: &mut http::request::Parts,
    pq: Option<PathAndQuery>,
    h2: bool,
) -> bool {
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

pub(super) fn strip_userinfo(authority: &str) -> &str {
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// The answer of a listener with `httpsRedirect`: 301 to the same host (default port) and path.
pub(super) fn https_redirect(authority: &str, pq: &str) -> Response<ResponseBody> {
    let host = strip_userinfo(authority);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let mut resp = local_response(HTTPS_REDIRECT_STATUS, Bytes::new());
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{pq}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

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
