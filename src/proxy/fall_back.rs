//! The rule's fallbacks, run when the forwarding loop's final result is a failure: the stale
//! cache, the backup service, the fixed response.

use http::Response;
use http::header::HeaderValue;
use tokio::time::Instant;

use super::answer::cached_response;
use super::outbound::Forward;
use super::target::retarget;
use crate::body::from_upstream::UpstreamBody;
use crate::body::to_client::ResponseBody;
use crate::error::{ProxyError, local_response};
use crate::metrics::FallbackKind;
use crate::policy::fallback::X_WEIR_FALLBACK;
use crate::upstream::UpstreamError;

impl<'s> Forward<'s> {
    /// Whether a final result goes to the rule's fallbacks: a 5xx, or an error that is not the
    /// client's.
    pub(super) fn falls_back(&self, result: &Result<Response<UpstreamBody>, ProxyError>) -> bool {
        self.rule.fallback.is_some()
            && match result {
                Ok(resp) => resp.status().is_server_error(),
                Err(ProxyError::Upstream(UpstreamError::ClientBody(_))) => false,
                Err(_) => true,
            }
    }

    /// The fallbacks, in order: the stale cache, the backup service, the fixed response; if
    /// none answers, the request's own result. The circuit breaker is told of the request's
    /// own failure first, whatever answers it.
    pub(super) async fn fall_back(
        mut self,
        result: Result<Response<UpstreamBody>, ProxyError>,
    ) -> Response<ResponseBody> {
        self.report(&result);
        let Some(fb) = self.rule.fallback.as_deref() else {
            return self.finish(result);
        };
        let stats = &self.snap.stats[self.dest.stats];
        if let (Some(i), Some(key)) = (fb.cache, &self.cache_key)
            && let Some(hit) = self.snap.caches[i].get(key, Instant::now())
        {
            stats.fell_back(FallbackKind::StaleCache);
            // Kept as sent: the rule's edits are in already.
            return self.fallen_back(cached_response(hit, true), FallbackKind::StaleCache, false);
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
            let h2 = self.cluster.spec.protocol.h2(self.h2);
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
                stats.fell_back(FallbackKind::Backup);
                let mut resp = self.finish(backup);
                resp.headers_mut().insert(
                    X_WEIR_FALLBACK,
                    HeaderValue::from_static(FallbackKind::Backup.label()),
                );
                return resp;
            }
            (self.cluster, self.dest) = (cluster, first);
        }
        if let Some(fixed) = &fb.response {
            stats.fell_back(FallbackKind::Static);
            let mut resp = local_response(fixed.status, fixed.body.clone());
            for (k, v) in &fixed.headers {
                resp.headers_mut().insert(k, v.clone());
            }
            return self.fallen_back(resp, FallbackKind::Static, true);
        }
        self.finish(result)
    }
}
