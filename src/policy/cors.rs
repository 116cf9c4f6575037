//! CORS as Envoy runs Istio's `corsPolicy` (and Kong's `cors` plugin): a preflight from an
//! allowed origin is answered by weir (200, nothing forwarded) with the allowed methods,
//! headers, max age and credentials; an actual request from an allowed origin is forwarded and
//! its response gets `Access-Control-Allow-Origin` (the request's origin), the exposed headers
//! and credentials. Requests from other origins get no CORS headers; their preflights are
//! forwarded (`unmatchedPreflights: FORWARD`, the default) or answered without them (`IGNORE`).
//! weir's extensions, for Kong's plugin: `mirrorRequestHeaders` allows what a preflight asks
//! for when no headers are listed, and `forwardPreflights` sends every preflight upstream.

use http::Method;
use http::header::{self, HeaderMap, HeaderValue};

use crate::route::matcher::StrMatcher;

/// `corsPolicy`, compiled.
#[derive(Debug)]
pub struct Cors {
    /// Allowed origins.
    pub origins: Vec<StrMatcher>,
    /// `Access-Control-Allow-Methods`.
    pub methods: Option<HeaderValue>,
    /// `Access-Control-Allow-Headers`.
    pub headers: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers`.
    pub expose: Option<HeaderValue>,
    /// `Access-Control-Max-Age`, seconds.
    pub max_age: Option<u64>,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// Preflights from other origins are forwarded (else answered without CORS headers).
    pub forward_unmatched: bool,
    /// Without `headers`, a preflight's `Access-Control-Request-Headers` are allowed.
    pub mirror_headers: bool,
    /// Every preflight is forwarded, and nothing added to its response.
    pub forward_preflights: bool,
}

/// What CORS makes of a request.
pub enum CorsAction {
    /// Not a CORS request, or from an origin not allowed: go on, add nothing.
    Pass,
    /// Answer now (a preflight).
    Answer(HeaderMap),
    /// Go on; add these headers to the response.
    Decorate(HeaderMap),
}

impl Cors {
    /// What to do with a request of `method` with `headers`.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> CorsAction {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return CorsAction::Pass;
        };
        let preflight = method == Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight && self.forward_preflights {
            return CorsAction::Pass;
        }
        let allowed = origin
            .to_str()
            .is_ok_and(|o| self.origins.iter().any(|m| m.matches(o)));
        let mut out = HeaderMap::new();
        if !allowed {
            return if preflight && !self.forward_unmatched {
                CorsAction::Answer(out)
            } else {
                CorsAction::Pass
            };
        }
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if !preflight {
            if let Some(v) = &self.expose {
                out.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
            }
            return CorsAction::Decorate(out);
        }
        if let Some(v) = &self.methods {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v.clone());
        }
        let asked = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
        match (&self.headers, asked) {
            (Some(v), _) => {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            (None, Some(v)) if self.mirror_headers => {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            _ => {}
        }
        if let Some(age) = self.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
        }
        CorsAction::Answer(out)
    }
}
