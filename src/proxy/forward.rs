//! The forwarding loop: a try (admission by the pool limits, the exchange under its deadline),
//! then its outcome settled at once (outlier detection, counters, whether a retry follows and
//! where), the backoff between tries; and the response made of the final result.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Response;
use http::header::{self, HeaderValue};
use tokio::time::Instant;

use super::outbound::{Forward, Retrying, Stop};
use super::target::head_of;
use crate::backend::Cluster;
use crate::backend::limits::{Admission, Admit, Waiting};
use crate::backend::outlier::Event;
use crate::body::from_upstream::UpstreamBody;
use crate::body::to_client::{Recorder, ResponseBody};
use crate::error::ProxyError;
use crate::metrics::{Overflow, RetryResult};
use crate::policy::cache::X_CACHE_STATUS;
use crate::policy::fallback::Tee;
use crate::policy::headers::strip_hop_by_hop;
use crate::policy::retry::Outcome;
use crate::upstream::UpstreamError;

/// How the forwarding loop ended.
// Consumed where it is made; boxing the common variant would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Ended {
    /// With the result of its last try.
    Tried(Result<Response<UpstreamBody>, ProxyError>),
    /// The request's deadline came while it waited to retry.
    Expired,
}

impl<'s> Forward<'s> {
    /// The circuit breaker's admission, taken once for the whole request; while it is open
    /// nothing is forwarded.
    pub(super) fn enter_breaker(&mut self) -> ControlFlow<Stop<'s>> {
        if let Some(b) = &self.cluster.breaker {
            match b.admit() {
                Some(t) => self.ticket = Some(t),
                None => return ControlFlow::Break(Stop::Fail(ProxyError::CircuitOpen)),
            }
        }
        ControlFlow::Continue(())
    }

    /// Keeps a body that a retry may send again, before the first try consumes it (up to
    /// [`super::outbound::REPLAY_LIMIT`]).
    pub(super) async fn keep_body_for_retries(&mut self) -> ControlFlow<Stop<'s>> {
        if self.had_body && self.may_resend() && self.replay.is_none() {
            // Boxed: only requests with a body that may be sent twice wait here.
            if let Err(e) = Box::pin(self.keep_body()).await {
                return ControlFlow::Break(Stop::Fail(e));
            }
        }
        ControlFlow::Continue(())
    }

    /// Tries until one try's outcome settles the request.
    pub(super) async fn forward(&mut self) -> Ended {
        loop {
            let result = self.attempt().await;
            match self.settle(result) {
                Step::Done(result) => return Ended::Tried(result),
                Step::Retry(wait) if wait.is_zero() => {}
                Step::Retry(wait) => {
                    // Boxed: backoff is the rare path.
                    if !Box::pin(self.backoff(wait)).await {
                        return Ended::Expired;
                    }
                }
            }
        }
    }
}

/// What follows a try.
// Consumed where it is made; boxing the common variant would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Step {
    /// Answer with this.
    Done(Result<Response<UpstreamBody>, ProxyError>),
    /// Try again after this wait.
    Retry(Duration),
}

impl<'s> Forward<'s> {
    /// One try: admission by the connection-pool limits, then the exchange under the try's
    /// deadline (the request's, or sooner with `perTryTimeout`).
    pub(super) async fn attempt(&mut self) -> Result<Response<UpstreamBody>, ProxyError> {
        if self.h2 && self.template.is_none() && self.may_resend() {
            self.template = Some(Box::new(head_of(&self.req)));
        }
        self.tries += 1;
        if let Some(gate) = &self.cluster.gate {
            self.admission = Some(match gate.admit(self.h2) {
                Admit::Now(a) => a,
                Admit::Wait(waiting) => {
                    self.cluster.metrics.pending.inc();
                    // Boxed: waiting for a connection is the overloaded case.
                    Box::pin(queue(waiting, self.deadline)).await?
                }
                Admit::Overflow(limit) => {
                    self.cluster.metrics.overflowed(limit);
                    return Err(ProxyError::Overflow(limit));
                }
            });
        }
        let Some(picked) = &self.picked else {
            return Err(ProxyError::NoHealthyUpstream);
        };
        let endpoint = picked.endpoint;
        endpoint.stats.active.fetch_add(1, Ordering::Relaxed);
        endpoint.stats.total.fetch_add(1, Ordering::Relaxed);
        let pool = if self.h2 { &endpoint.h2 } else { &endpoint.h1 };
        let spec = &self.cluster.spec;
        let try_deadline = match self.rule.retry.per_try_timeout {
            Some(t) => {
                let d = Instant::now() + t;
                Some(self.deadline.map_or(d, |whole| whole.min(d)))
            }
            None => self.deadline,
        };
        // Two arms rather than a future held in a local and again inside the timeout, which
        // would carry the exchange twice.
        let result = match try_deadline {
            Some(d) => match tokio::time::timeout_at(d, pool.send(&mut self.req, spec)).await {
                Ok(r) => r.map_err(ProxyError::from),
                Err(_) if Some(d) == self.deadline => {
                    // The request's deadline: the upstream did not answer in time.
                    if let Some(p) = &mut self.picked {
                        self.cluster.record(p, Event::Timeout);
                    }
                    Err(ProxyError::Timeout)
                }
                Err(_) => Err(ProxyError::TryTimeout),
            },
            None => pool
                .send(&mut self.req, spec)
                .await
                .map_err(ProxyError::from),
        };
        endpoint.stats.active.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// Classifies a try's result (outlier detection, counters) and decides whether another try
    /// follows: the policy's conditions and attempts, the idempotency rule, a body that can be
    /// sent again, `maxRetries`, the retry budget, and an endpoint to send it to.
    pub(super) fn settle(&mut self, result: Result<Response<UpstreamBody>, ProxyError>) -> Step {
        self.retrying = None;
        let Some(outcome) = self.observe(&result) else {
            return Step::Done(result);
        };
        let failed = !matches!(outcome, Outcome::Response { status, .. } if status < 500);
        let policy = &self.rule.retry;
        let again = policy.retries(&outcome, self.safe);
        let metrics = &self.cluster.metrics;
        if self.tries > 1 {
            let result = if failed || again {
                RetryResult::Failure
            } else {
                RetryResult::Success
            };
            metrics.retried(result);
        }
        let replayable = !self.had_body || self.replay.is_some() || outcome.never_sent();
        if !again || self.tries > policy.attempts || !replayable {
            return Step::Done(result);
        }
        if policy.ignore_previous_hosts
            && let Some(p) = &self.picked
        {
            self.tried |= 1 << (p.index % 64);
        }
        let Some(next) = self.cluster.pick(self.tried, self.hash) else {
            return Step::Done(result);
        };
        if let Err(refused) = self.allow_retry(&outcome) {
            metrics.retried(refused);
            return Step::Done(result);
        }
        self.picked = Some(next);
        // An unread response closes its connection.
        drop(result);
        self.admission = None;
        if !outcome.never_sent() {
            self.rebuild_request();
        }
        Step::Retry(policy.backoff(self.tries, |k| fastrand::u64(..k)))
    }

    /// Takes the retry's slot under `maxRetries` and its share of the retry budget; a retry of
    /// a request that never reached an upstream costs neither. The error is why none is made.
    pub(super) fn allow_retry(&mut self, outcome: &Outcome) -> Result<(), RetryResult> {
        if outcome.never_sent() {
            return Ok(());
        }
        let cluster: &'s Cluster = self.cluster;
        let slot = match &cluster.gate {
            Some(gate) => match gate.retry() {
                Some(slot) => Some(slot),
                None => {
                    cluster.metrics.overflowed(Overflow::Retries);
                    return Err(RetryResult::Overflow);
                }
            },
            None => None,
        };
        let budget = cluster
            .budget
            .withdraw(Instant::now(), cluster.in_flight())
            .ok_or(RetryResult::BudgetExhausted)?;
        self.retrying = Some(Retrying {
            _budget: budget,
            _slot: slot,
        });
        Ok(())
    }

    /// Waits before a retry; false if the request's deadline comes first.
    pub(super) async fn backoff(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        match self.deadline {
            Some(d) if d <= until => {
                tokio::time::sleep_until(d).await;
                false
            }
            _ => {
                tokio::time::sleep_until(until).await;
                true
            }
        }
    }

    /// Tells the circuit breaker how the request ended (once): a 5xx or no response is a
    /// failure; the client's own failures count for nothing.
    pub(super) fn report(&mut self, result: &Result<Response<UpstreamBody>, ProxyError>) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        match result {
            Ok(resp) => ticket.done(!resp.status().is_server_error()),
            Err(ProxyError::Upstream(UpstreamError::ClientBody(_))) => {}
            Err(_) => ticket.done(false),
        }
    }

    /// The response to send downstream, from the upstream's or from the error.
    pub(super) fn finish(
        mut self,
        result: Result<Response<UpstreamBody>, ProxyError>,
    ) -> Response<ResponseBody> {
        self.report(&result);
        crate::http1::recycle(std::mem::take(self.req.headers_mut()));
        let mut resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                let endpoint = self
                    .picked
                    .as_ref()
                    .map(|p| p.endpoint.spec.addr.to_string());
                tracing::debug!(cluster = %self.cluster.spec.name, endpoint = ?endpoint, tries = self.tries, error = %e, "Upstream request failed.");
                return self.answer(e.to_response());
            }
        };
        strip_hop_by_hop(resp.headers_mut());
        self.expose(resp.status(), resp.headers_mut());
        for cookie in self.set_cookie.take().into_iter().flat_map(Vec::from) {
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
        self.rule.headers.response.apply(resp.headers_mut());
        self.dest.headers.response.apply(resp.headers_mut());
        if let Some(extra) = self.extra.take() {
            resp.headers_mut().extend(*extra);
        }
        self.snap.stats[self.dest.stats].count(&self.method, resp.status().as_u16());
        let recorder = Recorder {
            snap: self.snap.clone(),
            stats: self.dest.stats,
            start: self.start,
            _admission: self.admission.take(),
        };
        // Kept: a response the rule's response cache takes, else a good one for the stale
        // cache of its fallback.
        let (store, ttl) = match (&self.rule.response_cache, &self.rule.fallback) {
            (Some(rc), _) => match rc.keep_for(resp.status(), resp.headers()) {
                Some(ttl) => (Some(rc.store), rc.cache_control.then_some(ttl)),
                None => {
                    // A request the cache looked up whose answer it may not keep.
                    if rc.show_headers && self.cache_key.is_some() {
                        resp.headers_mut()
                            .insert(X_CACHE_STATUS, HeaderValue::from_static("Bypass"));
                    }
                    (None, None)
                }
            },
            (None, Some(fb)) if resp.status().is_success() => (fb.cache, None),
            _ => (None, None),
        };
        let tee = match (store, self.cache_key.take()) {
            (Some(i), Some(key)) => Some(Box::new(Tee::new(
                self.snap.caches[i].clone(),
                key.into(),
                (resp.status(), resp.headers().clone()),
                ttl,
            ))),
            _ => None,
        };
        let mut resp =
            resp.map(|inner| ResponseBody::upstream(inner, recorder, self.deadline, tee));
        self.describe(&mut resp);
        resp
    }
}

/// Waits in the pending queue for a connection, until the request's deadline.
async fn queue(waiting: Waiting, deadline: Option<Instant>) -> Result<Admission, ProxyError> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, waiting.ready())
            .await
            .map_err(|_| ProxyError::Timeout),
        None => Ok(waiting.ready().await),
    }
}
