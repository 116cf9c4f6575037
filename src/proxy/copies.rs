//! Mirrored copies of a request, sent fire and forget (see [`crate::policy::mirror`]).

use std::future::poll_fn;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Uri, Version};
use http_body::Body as HttpBody;
use tokio::time::Instant;

use super::outbound::{Forward, Stop};
use super::target::{authority_of, head_of, retarget};
use crate::backend::limits::Admit;
use crate::body::to_upstream::Body;
use crate::error::ProxyError;
use crate::policy::fault::PER_MILLION;
use crate::policy::mirror;
use crate::snapshot::Snapshot;
use crate::upstream::UpstreamError;

impl<'s> Forward<'s> {
    /// Sends the copies of the rule's mirrors, if it has any.
    pub(super) async fn send_copies(&mut self) -> ControlFlow<Stop<'s>> {
        if !self.rule.mirrors.is_empty() {
            // Boxed: only rules with mirrors copy requests.
            if let Err(e) = Box::pin(self.mirror()).await {
                return ControlFlow::Break(Stop::Fail(e));
            }
        }
        ControlFlow::Continue(())
    }

    /// Sends copies of the request to the rule's mirrors it draws, fire and forget (see
    /// [`crate::policy::mirror`]). A body is copied when it is short enough to be kept; a
    /// longer one is not mirrored.
    async fn mirror(&mut self) -> Result<(), ProxyError> {
        // A bit per mirror drawn (held across the await instead of references).
        let chosen = mirror::draw_all(&self.rule.mirrors, || fastrand::u32(..PER_MILLION));
        if chosen == 0 {
            return Ok(());
        }
        if self.had_body && self.replay.is_none() {
            self.keep_body().await?;
            if self.replay.is_none() {
                return Ok(());
            }
        }
        let body = self.replay.clone().unwrap_or_default();
        let timeout = self.rule.timeout.unwrap_or(MIRROR_TIMEOUT);
        let rule = self.rule;
        for (_, m) in rule
            .mirrors
            .iter()
            .enumerate()
            .filter(|(i, _)| chosen & 1 << i != 0)
        {
            let Some(slot) = mirror::slot() else {
                return Ok(());
            };
            let cluster = &self.snap.clusters[m.dest.cluster];
            let h2 = cluster.spec.protocol.h2(self.h2);
            let mut copy = head_of(&self.req).map(|()| Body::Full(Some(body.clone())));
            if !shadow(&mut copy) || (h2 != self.h2 && !retarget(&mut copy, h2)) {
                continue;
            }
            let (snap, dest) = (self.snap.clone(), (m.dest.cluster, m.dest.stats));
            let method = self.method.clone();
            tokio::spawn(send_mirror(snap, dest, copy, method, timeout, slot));
        }
        Ok(())
    }
}

/// How long a mirrored request may take when its rule sets no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends one mirrored request and drops its response, counting it under the mirror
/// destination. It waits for no connection slot: a mirror over its pool limits is not sent.
async fn send_mirror(
    snap: Arc<Snapshot>,
    (cluster, stats): (usize, usize),
    mut req: Request<Body>,
    method: Method,
    timeout: Duration,
    _slot: mirror::Slot,
) {
    let start = Instant::now();
    let cluster = &snap.clusters[cluster];
    let h2 = req.version() == Version::HTTP_2;
    let _admission = match &cluster.gate {
        Some(gate) => match gate.admit(h2) {
            Admit::Now(a) => Some(a),
            Admit::Wait(_) | Admit::Overflow(_) => return,
        },
        None => None,
    };
    let Some(picked) = cluster.pick(0, None) else {
        return;
    };
    let pool = if h2 {
        &picked.endpoint.h2
    } else {
        &picked.endpoint.h1
    };
    let exchange = async {
        let resp = pool.send(&mut req, &cluster.spec).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            if frame.is_err() {
                break;
            }
        }
        Ok::<u16, UpstreamError>(status)
    };
    let status = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => ProxyError::from(e).to_response().status().as_u16(),
        Err(_) => ProxyError::Timeout.status().as_u16(),
    };
    let s = &snap.stats[stats];
    s.count(&method, status);
    s.observe(start.elapsed());
}

/// Marks a mirrored request's authority as Envoy does: `-shadow` after the host name (before
/// any port). False if the result is not a valid authority.
fn shadow(req: &mut Request<Body>) -> bool {
    let Some(current) = authority_of(req) else {
        return false;
    };
    let split = current
        .rfind(':')
        .filter(|&i| !current[i..].contains(']'))
        .unwrap_or(current.len());
    let shadowed = format!("{}-shadow{}", &current[..split], &current[split..]);
    if req.uri().authority().is_some() {
        let mut parts = req.uri().clone().into_parts();
        let Ok(authority) = Authority::try_from(shadowed.as_str()) else {
            return false;
        };
        parts.authority = Some(authority);
        match Uri::from_parts(parts) {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return false,
        }
    } else {
        let Ok(host) = HeaderValue::from_str(&shadowed) else {
            return false;
        };
        req.headers_mut().insert(header::HOST, host);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[test]
    fn mirrored_requests_get_a_shadow_host() {
        let mut h1 = Request::builder()
            .uri("/x")
            .header(header::HOST, "reviews:9080")
            .body(Body::empty())
            .unwrap();
        assert!(shadow(&mut h1));
        assert_eq!(h1.headers()[header::HOST], "reviews-shadow:9080");
        let mut h2 = Request::builder()
            .uri("http://[::1]/x")
            .body(Body::empty())
            .unwrap();
        assert!(shadow(&mut h2));
        assert_eq!(h2.uri().authority().unwrap().as_str(), "[::1]-shadow");
    }
}
