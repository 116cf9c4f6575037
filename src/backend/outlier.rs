//! Outlier detection (`trafficPolicy.outlierDetection`): each endpoint of a cluster is a circuit
//! breaker with three states.
//!
//! - **closed**: takes traffic; consecutive errors are counted, and reaching a threshold opens it
//!   (while the cluster's ejected share stays within `maxEjectionPercent`, one always allowed);
//! - **open**: ejected, takes nothing, for `baseEjectionTime` times the number of times it has
//!   been ejected (at most 300 s, or the base if longer);
//! - **half-open**: the ejection time is over; it admits [`HALF_OPEN_PROBES`] request at a time.
//!   A success closes it, a failure opens it again, for longer.
//!
//! Time is read only when something fails or an endpoint is not closed, and it is tokio's clock,
//! so the machine runs on a paused clock in tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::{EjectionReason, EndpointState};

/// Probe requests a half-open endpoint takes at a time.
pub(crate) const HALF_OPEN_PROBES: u32 = 1;

/// Envoy's cap on one ejection (`max_ejection_time`).
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Outlier detection as configured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutlierPolicy {
    /// Consecutive errors (5xx, or `error_codes`) that eject; 0 turns it off.
    pub(crate) consecutive_5xx: u32,
    /// Consecutive 502/503/504 that eject; 0 (the default) turns it off.
    pub(crate) consecutive_gateway: u32,
    /// Consecutive local-origin failures (connect, reset, timeout) that eject when they are
    /// counted apart (`split_local_origin`).
    pub(crate) consecutive_local: u32,
    /// Count local-origin failures apart from upstream errors (otherwise they count as 503s).
    pub(crate) split_local_origin: bool,
    /// How long it takes for one ejection to be forgotten.
    pub(crate) interval: Duration,
    /// First ejection time.
    pub(crate) base_ejection: Duration,
    /// Most of the cluster ejected at once, in percent (one endpoint always may be).
    pub(crate) max_ejection_percent: u32,
    /// Below this healthy share the cluster ignores ejections (panic mode); 0 never.
    pub(crate) min_health_percent: u32,
    /// Status codes counted as errors instead of every 5xx (`outlierDetectionHttpErrorCodes`).
    pub(crate) error_codes: Vec<u16>,
}

impl Default for OutlierPolicy {
    /// Istio's defaults.
    fn default() -> Self {
        OutlierPolicy {
            consecutive_5xx: 5,
            consecutive_gateway: 0,
            consecutive_local: 5,
            split_local_origin: false,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
            error_codes: Vec::new(),
        }
    }
}

/// What happened on one try, as outlier detection sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The upstream answered with this status.
    Status(u16),
    /// No answer: connect failure, reset, broken response.
    LocalFailure,
    /// No answer in time (a local failure too, for outlier detection).
    Timeout,
}

/// A state change, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    /// The new state.
    pub(crate) to: EndpointState,
    /// Why, for an ejection.
    pub(crate) reason: Option<EjectionReason>,
}

/// What `/clusters` shows of an endpoint.
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    /// EndpointState.
    pub(crate) state: EndpointState,
    /// Why it was last ejected.
    pub(crate) reason: Option<EjectionReason>,
    /// When an open endpoint goes half-open.
    pub(crate) until: Option<Instant>,
    /// Ejections that still count towards the next ejection time.
    pub(crate) ejections: u32,
}

/// How an endpoint was taken for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// An ordinary request (closed endpoint, or panic mode).
    Normal,
    /// One of a half-open endpoint's probes.
    Probe,
}

/// The state machine of one endpoint in one cluster; kept across reloads.
#[derive(Debug)]
pub(crate) struct EndpointHealth {
    state: AtomicU8,
    /// Some consecutive-error counter is above zero (successes skip the lock otherwise).
    counting: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    errors_5xx: u32,
    errors_gateway: u32,
    errors_local: u32,
    ejections: u32,
    until: Instant,
    closed_at: Instant,
    reason: Option<EjectionReason>,
    probes: u32,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

impl Default for EndpointHealth {
    fn default() -> Self {
        let now = Instant::now();
        EndpointHealth {
            state: AtomicU8::new(CLOSED),
            counting: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                errors_5xx: 0,
                errors_gateway: 0,
                errors_local: 0,
                ejections: 0,
                until: now,
                closed_at: now,
                reason: None,
                probes: 0,
            }),
        }
    }
}

impl EndpointHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the endpoint is closed (read without a lock).
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Relaxed) == CLOSED
    }

    /// The state as of `now` (an open endpoint whose time is over shows as half-open).
    pub(crate) fn view(&self, now: Instant) -> View {
        let inner = self.lock();
        let state = match self.state.load(Ordering::Relaxed) {
            CLOSED => EndpointState::Closed,
            OPEN if now < inner.until => EndpointState::Open,
            _ => EndpointState::HalfOpen,
        };
        View {
            state,
            reason: inner.reason,
            until: (state == EndpointState::Open).then_some(inner.until),
            ejections: inner.ejections,
        }
    }

    /// Whether a request could be sent now, without claiming anything.
    pub(crate) fn available(&self, now: Instant) -> bool {
        match self.state.load(Ordering::Relaxed) {
            CLOSED => true,
            _ => {
                let inner = self.lock();
                now >= inner.until && inner.probes < HALF_OPEN_PROBES
            }
        }
    }

    /// Takes the endpoint for one request; `None` if it is open, or half-open with its probes
    /// under way. An open endpoint whose ejection is over turns half-open here.
    pub(crate) fn claim(&self, now: Instant) -> Option<(Claim, Option<Transition>)> {
        if self.is_closed() {
            return Some((Claim::Normal, None));
        }
        let mut inner = self.lock();
        match self.state.load(Ordering::Relaxed) {
            CLOSED => Some((Claim::Normal, None)),
            OPEN if now < inner.until => None,
            state => {
                if inner.probes >= HALF_OPEN_PROBES {
                    return None;
                }
                inner.probes += 1;
                let turned = (state == OPEN).then(|| {
                    self.state.store(HALF_OPEN, Ordering::Relaxed);
                    Transition {
                        to: EndpointState::HalfOpen,
                        reason: None,
                    }
                });
                Some((Claim::Probe, turned))
            }
        }
    }

    /// A probe ended without an outcome (the request was abandoned).
    pub(crate) fn release(&self) {
        let mut inner = self.lock();
        inner.probes = inner.probes.saturating_sub(1);
    }

    /// Records how a request ended. `ejected` counts the cluster's endpoints that are not
    /// closed, out of `size`. Returns the state change, if any.
    pub(crate) fn record(
        &self,
        event: Event,
        claim: Claim,
        now: Instant,
        policy: &OutlierPolicy,
        ejected: &AtomicUsize,
        size: usize,
    ) -> Option<Transition> {
        let failed = policy.is_failure(event);
        if claim == Claim::Normal && !failed && !self.counting.load(Ordering::Relaxed) {
            return None;
        }
        let mut inner = self.lock();
        if claim == Claim::Probe {
            inner.probes = inner.probes.saturating_sub(1);
            if self.state.load(Ordering::Relaxed) != HALF_OPEN {
                return None;
            }
            return Some(if failed {
                self.eject(&mut inner, now, policy, EjectionReason::ProbeFailed)
            } else {
                inner.reset_counters();
                self.counting.store(false, Ordering::Relaxed);
                inner.closed_at = now;
                self.state.store(CLOSED, Ordering::Relaxed);
                ejected.fetch_sub(1, Ordering::Relaxed);
                Transition {
                    to: EndpointState::Closed,
                    reason: None,
                }
            });
        }
        if self.state.load(Ordering::Relaxed) != CLOSED {
            return None;
        }
        let reason = inner.count(event, policy);
        self.counting.store(
            inner.errors_5xx + inner.errors_gateway + inner.errors_local > 0,
            Ordering::Relaxed,
        );
        let reason = reason?;
        let n = ejected.load(Ordering::Relaxed);
        let allowed =
            n == 0 || (n as u64) * 100 < u64::from(policy.max_ejection_percent) * size as u64;
        if !allowed {
            return None;
        }
        ejected.fetch_add(1, Ordering::Relaxed);
        Some(self.eject(&mut inner, now, policy, reason))
    }

    fn eject(
        &self,
        inner: &mut Inner,
        now: Instant,
        policy: &OutlierPolicy,
        reason: EjectionReason,
    ) -> Transition {
        if reason != EjectionReason::ProbeFailed {
            // One ejection is forgotten for each interval spent closed since the last.
            let forgiven = match policy.interval.as_nanos() {
                0 => 0,
                i => (now.saturating_duration_since(inner.closed_at).as_nanos() / i) as u32,
            };
            inner.ejections = inner.ejections.saturating_sub(forgiven);
        }
        inner.ejections += 1;
        let cap = MAX_EJECTION.max(policy.base_ejection);
        let time = policy
            .base_ejection
            .saturating_mul(inner.ejections)
            .min(cap);
        inner.until = now + time;
        inner.reason = Some(reason);
        inner.reset_counters();
        self.counting.store(false, Ordering::Relaxed);
        self.state.store(OPEN, Ordering::Relaxed);
        Transition {
            to: EndpointState::Open,
            reason: Some(reason),
        }
    }
}

impl Inner {
    fn reset_counters(&mut self) {
        self.errors_5xx = 0;
        self.errors_gateway = 0;
        self.errors_local = 0;
    }

    /// Counts an outcome of a closed endpoint; the reason to eject, if a threshold is reached.
    fn count(&mut self, event: Event, p: &OutlierPolicy) -> Option<EjectionReason> {
        let status = match event {
            Event::LocalFailure | Event::Timeout if p.split_local_origin => {
                self.errors_local += 1;
                return (p.consecutive_local > 0 && self.errors_local >= p.consecutive_local)
                    .then_some(EjectionReason::ConsecutiveLocalOrigin);
            }
            // Counted as the 503 it turns into.
            Event::LocalFailure | Event::Timeout => 503,
            Event::Status(s) => {
                // A response means the connection worked.
                self.errors_local = 0;
                s
            }
        };
        if p.is_error(Event::Status(status)) {
            self.errors_5xx += 1;
        } else {
            self.errors_5xx = 0;
        }
        if matches!(status, 502..=504) {
            self.errors_gateway += 1;
        } else {
            self.errors_gateway = 0;
        }
        if p.consecutive_5xx > 0 && self.errors_5xx >= p.consecutive_5xx {
            Some(EjectionReason::Consecutive5xx)
        } else if p.consecutive_gateway > 0 && self.errors_gateway >= p.consecutive_gateway {
            Some(EjectionReason::ConsecutiveGateway)
        } else {
            None
        }
    }
}

impl OutlierPolicy {
    /// Whether an outcome counts as an error at all.
    fn is_error(&self, event: Event) -> bool {
        match event {
            Event::LocalFailure | Event::Timeout => true,
            Event::Status(s) if self.error_codes.is_empty() => s >= 500,
            Event::Status(s) => self.error_codes.contains(&s),
        }
    }

    /// Whether an outcome moves a counter or fails a probe.
    fn is_failure(&self, event: Event) -> bool {
        self.is_error(event)
            || (self.consecutive_gateway > 0 && matches!(event, Event::Status(502..=504)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        OutlierPolicy {
            consecutive_5xx: 3,
            base_ejection: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            max_ejection_percent: 100,
            ..OutlierPolicy::default()
        }
    }

    struct Cluster {
        eps: Vec<EndpointHealth>,
        ejected: AtomicUsize,
        policy: OutlierPolicy,
    }

    impl Cluster {
        fn new(n: usize, policy: OutlierPolicy) -> Cluster {
            Cluster {
                eps: (0..n).map(|_| EndpointHealth::default()).collect(),
                ejected: AtomicUsize::new(0),
                policy,
            }
        }

        fn send(&self, i: usize, event: Event) -> Option<Transition> {
            let now = Instant::now();
            let (claim, _) = self.eps[i].claim(now)?;
            self.eps[i].record(
                event,
                claim,
                now,
                &self.policy,
                &self.ejected,
                self.eps.len(),
            )
        }

        fn state(&self, i: usize) -> EndpointState {
            self.eps[i].view(Instant::now()).state
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_errors_open_and_time_half_opens() {
        let c = Cluster::new(2, policy());
        assert_eq!(c.send(0, Event::Status(500)), None);
        assert_eq!(c.send(0, Event::Status(503)), None);
        // A success in between starts the count again.
        assert_eq!(c.send(0, Event::Status(200)), None);
        assert_eq!(c.send(0, Event::Status(500)), None);
        assert_eq!(c.send(0, Event::Status(500)), None);
        let t = c.send(0, Event::LocalFailure).unwrap();
        assert_eq!(t.to, EndpointState::Open);
        assert_eq!(t.reason, Some(EjectionReason::Consecutive5xx));
        assert_eq!(c.ejected.load(Ordering::Relaxed), 1);
        assert!(c.eps[0].claim(Instant::now()).is_none());
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(c.state(0), EndpointState::Open);
        assert!(!c.eps[0].available(Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(c.state(0), EndpointState::HalfOpen);
        // One probe at a time.
        let (claim, turned) = c.eps[0].claim(Instant::now()).unwrap();
        assert_eq!(claim, Claim::Probe);
        assert_eq!(turned.unwrap().to, EndpointState::HalfOpen);
        assert!(c.eps[0].claim(Instant::now()).is_none());
        let t = c.eps[0].record(
            Event::Status(200),
            claim,
            Instant::now(),
            &c.policy,
            &c.ejected,
            2,
        );
        assert_eq!(t.unwrap().to, EndpointState::Closed);
        assert_eq!(c.ejected.load(Ordering::Relaxed), 0);
        assert_eq!(c.state(0), EndpointState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_for_longer() {
        let c = Cluster::new(1, policy());
        for _ in 0..3 {
            c.send(0, Event::Status(502));
        }
        assert_eq!(c.state(0), EndpointState::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        let t = c.send(0, Event::Status(500)).unwrap();
        assert_eq!(t.reason, Some(EjectionReason::ProbeFailed));
        // Second ejection: 2 x 30 s.
        let v = c.eps[0].view(Instant::now());
        assert_eq!(v.ejections, 2);
        assert_eq!(v.until, Some(Instant::now() + Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(c.state(0), EndpointState::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            c.send(0, Event::Status(200)).unwrap().to,
            EndpointState::Closed
        );
        // Ejections are forgotten one per interval spent closed: after 10 s closed, the next
        // ejection is the second again (60 s), not the third.
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..3 {
            c.send(0, Event::Status(500));
        }
        assert_eq!(c.eps[0].view(Instant::now()).ejections, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_is_capped() {
        let c = Cluster::new(1, policy());
        for _ in 0..3 {
            c.send(0, Event::Status(500));
        }
        for _ in 0..20 {
            let until = c.eps[0].view(Instant::now()).until.unwrap();
            tokio::time::advance(until - Instant::now()).await;
            c.send(0, Event::Status(500));
        }
        let v = c.eps[0].view(Instant::now());
        assert_eq!(v.until.unwrap() - Instant::now(), MAX_EJECTION);
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_keeps_endpoints_in() {
        // 50 % of two: one ejected at a time.
        let c = Cluster::new(
            2,
            OutlierPolicy {
                max_ejection_percent: 50,
                consecutive_5xx: 1,
                ..policy()
            },
        );
        assert!(c.send(0, Event::Status(500)).is_some());
        assert!(c.send(1, Event::Status(500)).is_none());
        assert_eq!(c.state(1), EndpointState::Closed);
        // 10 % (Istio's default) still ejects one.
        let c = Cluster::new(
            3,
            OutlierPolicy {
                max_ejection_percent: 10,
                consecutive_5xx: 1,
                ..policy()
            },
        );
        assert!(c.send(0, Event::Status(500)).is_some());
        assert!(c.send(1, Event::Status(500)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn gateway_and_local_origin_counters() {
        let c = Cluster::new(
            1,
            OutlierPolicy {
                consecutive_5xx: 0,
                consecutive_gateway: 2,
                ..policy()
            },
        );
        assert!(c.send(0, Event::Status(500)).is_none());
        assert!(c.send(0, Event::Status(500)).is_none());
        assert!(c.send(0, Event::Status(504)).is_none());
        // A connect failure counts as a 503 when not split.
        let t = c.send(0, Event::LocalFailure).unwrap();
        assert_eq!(t.reason, Some(EjectionReason::ConsecutiveGateway));
        // Split: local-origin failures have their own threshold and leave 5xx alone.
        let c = Cluster::new(
            1,
            OutlierPolicy {
                consecutive_5xx: 2,
                consecutive_local: 3,
                split_local_origin: true,
                ..policy()
            },
        );
        assert!(c.send(0, Event::LocalFailure).is_none());
        assert!(c.send(0, Event::LocalFailure).is_none());
        assert!(c.send(0, Event::Status(500)).is_none());
        assert!(c.send(0, Event::LocalFailure).is_none());
        let t = c.send(0, Event::Status(500)).unwrap();
        assert_eq!(t.reason, Some(EjectionReason::Consecutive5xx));
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_its_slot() {
        let c = Cluster::new(1, policy());
        for _ in 0..3 {
            c.send(0, Event::Status(500));
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        let _ = c.eps[0].claim(Instant::now()).unwrap();
        assert!(c.eps[0].claim(Instant::now()).is_none());
        c.eps[0].release();
        assert!(c.eps[0].claim(Instant::now()).is_some());
    }
}
