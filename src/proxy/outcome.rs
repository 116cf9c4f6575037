//! How a try ended, as retries, outlier detection and the endpoint's counters see it.

use std::sync::atomic::Ordering;

use http::Response;
use http::header::HeaderName;

use super::outbound::Forward;
use crate::backend::outlier::Event;
use crate::body::from_upstream::UpstreamBody;
use crate::error::{ProxyError, X_WEIR_OVERLOADED};
use crate::policy::retry::Outcome;

/// gRPC's status trailer, read from HTTP/2 responses that end in their headers.
pub(super) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

impl<'s> Forward<'s> {
    /// Classifies a try's result: how it ended (`None` for what is not the upstream's doing),
    /// recorded for outlier detection and the endpoint's counters.
    pub(super) fn observe(
        &mut self,
        result: &Result<Response<UpstreamBody>, ProxyError>,
    ) -> Option<Outcome> {
        let outcome = match result {
            Ok(resp) => Some(response_outcome(resp, self.h2)),
            Err(e) => e.outcome(),
        };
        self.reached |= match (&outcome, result) {
            (Some(o), _) => !o.never_sent(),
            (None, Err(e)) => matches!(e, ProxyError::Timeout),
            (None, Ok(_)) => true,
        };
        let outcome = outcome?;
        let failed = !matches!(outcome, Outcome::Response { status, .. } if status < 500);
        let event = match outcome {
            Outcome::Response { status, .. } => Event::Status(status),
            Outcome::TimedOut => Event::Timeout,
            _ => Event::LocalFailure,
        };
        if let Some(p) = &mut self.picked {
            if failed {
                p.endpoint.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
            self.cluster.record(p, event);
        }
        Some(outcome)
    }
}

/// How a try that got a response ended. Headers are looked at only where they can matter:
/// `grpc-status` on HTTP/2, overload markers on 503, the rate-limit marker on 429.
fn response_outcome(resp: &Response<UpstreamBody>, h2: bool) -> Outcome {
    let status = resp.status().as_u16();
    let h = resp.headers();
    Outcome::Response {
        status,
        grpc: if h2 {
            h.get(GRPC_STATUS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        } else {
            None
        },
        overloaded: status == 503
            && (h.contains_key(X_WEIR_OVERLOADED) || h.contains_key("x-envoy-overloaded")),
        ratelimited: status == 429 && h.contains_key("x-envoy-ratelimited"),
    }
}
