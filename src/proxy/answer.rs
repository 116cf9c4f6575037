//! Responses weir makes itself on the request path (an error, a fallback's, a kept one),
//! recorded in the metrics as they are made.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Response};
use tokio::time::Instant;

use super::outbound::Forward;
use crate::access_log::Flags;
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
    mut resp: Response<ResponseBody>,
) -> Response<ResponseBody> {
    let s = stats.map_or(&snap.unrouted, |i| &snap.stats[i]);
    s.count(method, resp.status().as_u16());
    s.observe(start.elapsed());
    resp.body_mut().meta.stats = stats;
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
    pub(super) fn client_gone(mut self) -> Response<ResponseBody> {
        // Nobody sees this answer: an experiment's participant is not counted by it.
        self.exposure = None;
        self.answer(ProxyError::ClientGone.to_response())
    }

    /// Answers with a response weir made, recorded against the destination.
    pub(super) fn answer(mut self, mut resp: Response<ResponseBody>) -> Response<ResponseBody> {
        crate::http1::recycle(std::mem::take(self.req.headers_mut()));
        self.expose(resp.status(), resp.headers_mut());
        self.describe(&mut resp);
        local(
            self.snap,
            Some(self.dest.stats),
            &self.method,
            self.start,
            resp,
        )
    }

    /// An experiment's participant: the response is counted (a first exposure, goals met) and
    /// carries their cookie when their state changed.
    pub(super) fn expose(&mut self, status: http::StatusCode, headers: &mut http::HeaderMap) {
        let Some(x) = self.exposure.take() else {
            return;
        };
        let e = &self.snap.experiments[x.experiment];
        if let Some(cookie) = x.observe(&e.design, &e.live, status, headers) {
            headers.append(header::SET_COOKIE, cookie);
        }
    }

    /// Tells the access log what this request's path knows: the upstream of the last try, the
    /// retries, and the flags gathered on the way (those of an error are set by its response).
    pub(super) fn describe(&self, resp: &mut Response<ResponseBody>) {
        let meta = &mut resp.body_mut().meta;
        meta.stats = Some(self.dest.stats);
        // The endpoint of the last try; none when nothing was sent (an abort, a full pool).
        meta.upstream = (self.tries > 0)
            .then(|| self.picked.as_ref().map(|p| (self.dest.cluster, p.index)))
            .flatten();
        meta.retries = self.tries.saturating_sub(1);
        meta.flags = meta.flags.with(self.flags);
    }

    /// A response a fallback made, with the rule's response edits, recorded.
    pub(super) fn fallen_back(
        mut self,
        mut resp: Response<ResponseBody>,
        kind: FallbackKind,
        edit: bool,
    ) -> Response<ResponseBody> {
        resp.headers_mut()
            .insert(X_WEIR_FALLBACK, HeaderValue::from_static(kind.label()));
        self.flags = self.flags.with(Flags::FALLBACK);
        if edit {
            self.rule.headers.response.apply(resp.headers_mut());
        }
        self.answer(resp)
    }
}
