//! Responses weir makes itself on the request path (an error, a fallback's, a kept one),
//! recorded in the metrics as they are made.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Response};
use tokio::time::Instant;

use super::outbound::Forward;
use crate::body::to_client::ResponseBody;
use crate::error::{ProxyError, local_response};
use crate::metrics::FallbackKind;
use crate::policy::fallback::{Cached, X_WEIR_FALLBACK};
use crate::snapshot::Snapshot;

/// Records a response weir made itself.
pub(super) fn local(
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

/// A kept response, as it was sent (with `Age` if `age`).
pub(super) fn cached_response(hit: Cached, age: bool) -> Response<ResponseBody> {
    let seconds = hit.stored.elapsed().as_secs();
    let mut resp = local_response(hit.status, hit.body);
    *resp.headers_mut() = hit.headers;
    if age {
        resp.headers_mut()
            .insert(header::AGE, HeaderValue::from(seconds));
    }
    resp
}

impl<'s> Forward<'s> {
    /// The client left while its request waited: nothing is forwarded; counted as 499 (nginx's
    /// code for it), and the response goes nowhere.
    pub(super) fn client_gone(self) -> Response<ResponseBody> {
        self.answer(ProxyError::ClientGone.to_response())
    }

    /// Answers with a response weir made, recorded against the destination.
    pub(super) fn answer(mut self, resp: Response<ResponseBody>) -> Response<ResponseBody> {
        crate::http1::recycle(std::mem::take(self.req.headers_mut()));
        local(
            self.snap,
            Some(self.dest.stats),
            &self.method,
            self.start,
            resp,
        )
    }

    /// A response a fallback made, with the rule's response edits, recorded.
    pub(super) fn fallen_back(
        self,
        mut resp: Response<ResponseBody>,
        kind: FallbackKind,
        edit: bool,
    ) -> Response<ResponseBody> {
        resp.headers_mut()
            .insert(X_WEIR_FALLBACK, HeaderValue::from_static(kind.label()));
        if edit {
            self.rule.headers.response.apply(resp.headers_mut());
        }
        self.answer(resp)
    }
}
