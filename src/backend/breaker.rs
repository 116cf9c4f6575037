//! A circuit breaker over a whole cluster (the seed's Kong `circuit-breaker` plugin, and weir's
//! DestinationRule extension `trafficPolicy.circuitBreaker`): closed, open, half-open.
//!
//! Closed: requests pass; failures (a 5xx, or no response) are remembered for `window`; once
//! `failure_threshold` of them fall within it the breaker opens. Open: every request is
//! answered 503 at once, nothing is forwarded, until `recovery` has passed. Half-open: up to
//! `half_open_requests` trial requests at a time pass; one success closes the breaker (its
//! failures forgotten), one failure opens it again for another `recovery`. A trial request
//! abandoned before its outcome (the client left) frees its place.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::{BreakerMetrics, BreakerState};

/// The breaker's settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BreakerSpec {
    /// Failures within `window` that open the breaker.
    pub(crate) failure_threshold: u32,
    /// How long a failure counts.
    pub(crate) window: Duration,
    /// How long the breaker stays open before trying again.
    pub(crate) recovery: Duration,
    /// Trial requests at a time when half-open.
    pub(crate) half_open_requests: u32,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: VecDeque<Instant>,
    opened_at: Instant,
    trials: u32,
}

/// A cluster's breaker (kept across reloads while its settings stay the same).
#[derive(Debug)]
pub(crate) struct Breaker {
    spec: BreakerSpec,
    inner: Mutex<Inner>,
    metrics: BreakerMetrics,
}

/// A request the breaker let through; its outcome is reported with [`Ticket::done`]. Dropped
/// without one, a trial request frees its place.
#[derive(Debug)]
pub(crate) struct Ticket {
    breaker: Arc<Breaker>,
    trial: bool,
    done: bool,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(spec: BreakerSpec, metrics: BreakerMetrics) -> Breaker {
        let b = Breaker {
            spec,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: VecDeque::new(),
                opened_at: Instant::now(),
                trials: 0,
            }),
            metrics,
        };
        b.show(BreakerState::Closed);
        b
    }

    /// The settings.
    pub(crate) fn spec(&self) -> &BreakerSpec {
        &self.spec
    }

    /// The current state (an open breaker past its recovery time reads half-open).
    pub(crate) fn state(&self) -> BreakerState {
        let Ok(mut inner) = self.inner.lock() else {
            return BreakerState::Closed;
        };
        self.advance(&mut inner, Instant::now());
        inner.state
    }

    /// Lets a request through, or refuses it (`None`: answer 503).
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let Ok(mut inner) = self.inner.lock() else {
            return Some(self.ticket(false));
        };
        self.advance(&mut inner, Instant::now());
        match inner.state {
            BreakerState::Closed => Some(self.ticket(false)),
            BreakerState::HalfOpen if inner.trials < self.spec.half_open_requests.max(1) => {
                inner.trials += 1;
                Some(self.ticket(true))
            }
            _ => {
                self.metrics.rejected.inc();
                None
            }
        }
    }

    fn ticket(self: &Arc<Self>, trial: bool) -> Ticket {
        Ticket {
            breaker: self.clone(),
            trial,
            done: false,
        }
    }

    /// Open long enough: half-open.
    fn advance(&self, inner: &mut Inner, now: Instant) {
        if inner.state == BreakerState::Open
            && now.saturating_duration_since(inner.opened_at) >= self.spec.recovery
        {
            inner.state = BreakerState::HalfOpen;
            inner.trials = 0;
            self.show(BreakerState::HalfOpen);
        }
    }

    fn record(&self, trial: bool, ok: bool) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let now = Instant::now();
        if trial {
            inner.trials = inner.trials.saturating_sub(1);
        }
        match (inner.state, ok) {
            (BreakerState::Closed, true) => {}
            (BreakerState::Closed, false) => {
                while inner
                    .failures
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= self.spec.window)
                {
                    inner.failures.pop_front();
                }
                inner.failures.push_back(now);
                if inner.failures.len() >= self.spec.failure_threshold.max(1) as usize {
                    self.open(&mut inner, now);
                }
            }
            (BreakerState::HalfOpen, true) if trial => {
                inner.state = BreakerState::Closed;
                inner.failures.clear();
                self.show(BreakerState::Closed);
                tracing::info!("Circuit breaker closed.");
            }
            (BreakerState::HalfOpen, false) if trial => self.open(&mut inner, now),
            // Outcomes of requests let through before the breaker opened.
            _ => {}
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.state = BreakerState::Open;
        inner.opened_at = now;
        inner.failures.clear();
        self.show(BreakerState::Open);
        tracing::warn!(
            recovery_ms = self.spec.recovery.as_millis() as u64,
            "Circuit breaker opened."
        );
    }

    fn show(&self, state: BreakerState) {
        self.metrics.show(state);
    }

    fn release(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.trials = inner.trials.saturating_sub(1);
        }
    }
}

impl Ticket {
    /// Reports the request's outcome: `ok` unless it failed (5xx, or no response).
    pub(crate) fn done(mut self, ok: bool) {
        self.done = true;
        self.breaker.record(self.trial, ok);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done && self.trial {
            self.breaker.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Arc<Breaker> {
        let metrics = crate::metrics::Metrics::new().breaker("svc", "");
        Arc::new(Breaker::new(
            BreakerSpec {
                failure_threshold: threshold,
                window: Duration::from_secs(60),
                recovery: Duration::from_secs(60),
                half_open_requests: 1,
            },
            metrics,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn failures_within_the_window_open_it_then_a_trial_closes_it() {
        let b = breaker(5);
        for _ in 0..4 {
            b.admit().unwrap().done(false);
        }
        // Older failures fall out of the window.
        tokio::time::advance(Duration::from_secs(61)).await;
        b.admit().unwrap().done(false);
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..4 {
            b.admit().unwrap().done(false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().is_none());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(b.admit().is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let trial = b.admit().unwrap();
        // One trial at a time.
        assert!(b.admit().is_none());
        trial.done(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_it_again_and_an_abandoned_one_frees_its_place() {
        let b = breaker(1);
        b.admit().unwrap().done(false);
        tokio::time::advance(Duration::from_secs(60)).await;
        drop(b.admit().unwrap());
        let trial = b.admit().expect("the abandoned trial's place is free");
        trial.done(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.admit().is_none());
    }
}
