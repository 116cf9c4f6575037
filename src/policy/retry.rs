//! Retries (`HTTPRoute.retries`): which outcomes are retried, how many times, after what
//! backoff, and which requests may be retried at all.
//!
//! The budget that bounds retries per cluster is in `backend::budget`; they run in
//! the forwarding loop (`proxy/forward.rs`).

use std::time::Duration;

use http::Method;

/// Envoy's default base backoff interval.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

/// A route's retry policy.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try (0: none).
    pub attempts: u32,
    /// Bound on each try, up to its response head.
    pub per_try_timeout: Option<Duration>,
    /// Which outcomes are retried.
    pub on: RetryOn,
    /// Retries go to an endpoint not tried yet, when there is one.
    pub ignore_previous_hosts: bool,
    /// Base backoff interval.
    pub backoff: Duration,
    /// Retry requests that are not idempotent after they reached the upstream (weir's
    /// `retryNonIdempotent` extension; off by default).
    pub non_idempotent: bool,
}

impl RetryPolicy {
    /// Istio's policy for routes without a `retries` block: 2 retries on connect-failure,
    /// refused-stream, unavailable, cancelled and 503, each to another endpoint.
    pub fn istio_default() -> RetryPolicy {
        let mut on = RetryOn::default();
        for c in [
            "connect-failure",
            "refused-stream",
            "unavailable",
            "cancelled",
            "retriable-status-codes",
        ] {
            on.add(c);
        }
        on.add("503");
        RetryPolicy {
            attempts: 2,
            per_try_timeout: None,
            on,
            ignore_previous_hosts: true,
            backoff: DEFAULT_BACKOFF,
            non_idempotent: false,
        }
    }

    /// No retries (`attempts: 0`).
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            attempts: 0,
            ..RetryPolicy::istio_default()
        }
    }

    /// Whether a try that ended with `outcome` is retried (if attempts and budget allow).
    /// `safe` says the request may be sent twice: its method is idempotent, it carries an
    /// `idempotency-key`, or the route opted in. Other requests are retried only when they never
    /// reached an upstream.
    pub fn retries(&self, outcome: &Outcome, safe: bool) -> bool {
        if !safe && !outcome.never_sent() {
            return false;
        }
        self.on.matches(outcome)
    }

    /// The wait before retry number `n` (1 for the first retry): uniform in
    /// `[0, (2^n - 1) * base)`, at most ten times the base, as Envoy draws it. `draw(k)` gives
    /// a uniform number below `k`.
    pub fn backoff(&self, n: u32, draw: impl FnOnce(u64) -> u64) -> Duration {
        let base = self.backoff.as_micros().max(1) as u64;
        let span = (1u64 << n.min(20)) - 1;
        let ceiling = base.saturating_mul(span).min(base * 10);
        Duration::from_micros(draw(ceiling.max(1)))
    }
}

/// Whether a request may be sent more than once without asking: its method is idempotent
/// (RFC 9110 9.2.2), or it carries an `idempotency-key`.
pub fn repeatable(method: &Method, headers: &http::HeaderMap) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || headers.contains_key("idempotency-key")
}

/// How one try ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered.
    Response {
        /// Status.
        status: u16,
        /// `grpc-status` of a trailers-only gRPC response.
        grpc: Option<u32>,
        /// The upstream said it shed the request (`x-envoy-overloaded` / `x-weir-overloaded`):
        /// never retried, so that retries do not feed an overload.
        overloaded: bool,
        /// `x-envoy-ratelimited` was set.
        ratelimited: bool,
    },
    /// No connection could be made (refused, unreachable, connect timeout, handshake).
    ConnectFailed,
    /// The request was refused before it was sent (HTTP/2 refused stream, closed connection).
    Refused,
    /// The connection failed after the request was sent, before a response.
    Reset,
    /// The try's timeout passed before a response.
    TimedOut,
    /// The upstream's response broke the protocol.
    BadResponse,
}

impl Outcome {
    /// Whether the request never reached the upstream.
    pub fn never_sent(&self) -> bool {
        matches!(self, Outcome::ConnectFailed | Outcome::Refused)
    }
}

/// Retry conditions (`retryOn`), as a set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryOn {
    bits: u32,
    statuses: Vec<u16>,
}

const ON_5XX: u32 = 1;
const GATEWAY_ERROR: u32 = 1 << 1;
const RESET: u32 = 1 << 2;
const RESET_BEFORE_REQUEST: u32 = 1 << 3;
const CONNECT_FAILURE: u32 = 1 << 4;
const REFUSED_STREAM: u32 = 1 << 5;
const RETRIABLE_4XX: u32 = 1 << 6;
const RETRIABLE_STATUS_CODES: u32 = 1 << 7;
const ENVOY_RATELIMITED: u32 = 1 << 8;
const GRPC_CANCELLED: u32 = 1 << 9;
const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 10;
const GRPC_INTERNAL: u32 = 1 << 11;
const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 12;
const GRPC_UNAVAILABLE: u32 = 1 << 13;

/// Conditions weir knows, with their bit; the last two are accepted and never match (they need
/// Envoy settings Istio does not expose, or HTTP/3).
const CONDITIONS: [(&str, u32); 16] = [
    ("5xx", ON_5XX),
    ("gateway-error", GATEWAY_ERROR),
    ("reset", RESET),
    ("reset-before-request", RESET_BEFORE_REQUEST),
    ("connect-failure", CONNECT_FAILURE),
    ("refused-stream", REFUSED_STREAM),
    ("retriable-4xx", RETRIABLE_4XX),
    ("retriable-status-codes", RETRIABLE_STATUS_CODES),
    ("envoy-ratelimited", ENVOY_RATELIMITED),
    ("cancelled", GRPC_CANCELLED),
    ("deadline-exceeded", GRPC_DEADLINE_EXCEEDED),
    ("internal", GRPC_INTERNAL),
    ("resource-exhausted", GRPC_RESOURCE_EXHAUSTED),
    ("unavailable", GRPC_UNAVAILABLE),
    ("retriable-headers", 0),
    ("http3-post-connect-failure", 0),
];

impl RetryOn {
    /// Adds one condition (a name, or a status code, which also turns on
    /// `retriable-status-codes` as Istio does). False if it is not a condition.
    pub fn add(&mut self, cond: &str) -> bool {
        if let Ok(code) = cond.parse::<u16>() {
            if !(100..=599).contains(&code) {
                return false;
            }
            self.bits |= RETRIABLE_STATUS_CODES;
            if !self.statuses.contains(&code) {
                self.statuses.push(code);
            }
            return true;
        }
        match CONDITIONS.iter().find(|(name, _)| *name == cond) {
            Some((_, bit)) => {
                self.bits |= bit;
                true
            }
            None => false,
        }
    }

    /// Whether a condition name is one weir accepts but cannot act on.
    pub fn inert(cond: &str) -> bool {
        CONDITIONS
            .iter()
            .any(|(name, bit)| *name == cond && *bit == 0)
    }

    fn has(&self, bit: u32) -> bool {
        self.bits & bit != 0
    }

    /// Whether `outcome` is one of these conditions.
    pub fn matches(&self, outcome: &Outcome) -> bool {
        // Envoy: 5xx and gateway-error include every failure without a response.
        let any_failure = ON_5XX | GATEWAY_ERROR | RESET;
        match *outcome {
            Outcome::ConnectFailed => {
                self.has(any_failure | RESET_BEFORE_REQUEST | CONNECT_FAILURE)
            }
            Outcome::Refused => self.has(any_failure | RESET_BEFORE_REQUEST | REFUSED_STREAM),
            Outcome::Reset | Outcome::TimedOut | Outcome::BadResponse => self.has(any_failure),
            Outcome::Response {
                overloaded: true, ..
            } => false,
            Outcome::Response {
                status,
                grpc,
                ratelimited,
                ..
            } => {
                (self.has(ON_5XX) && status >= 500)
                    || (self.has(GATEWAY_ERROR) && matches!(status, 502..=504))
                    || (self.has(RETRIABLE_4XX) && status == 409)
                    || (self.has(RETRIABLE_STATUS_CODES) && self.statuses.contains(&status))
                    || (self.has(ENVOY_RATELIMITED) && ratelimited)
                    || grpc.is_some_and(|g| self.has(grpc_bit(g)))
            }
        }
    }
}

fn grpc_bit(code: u32) -> u32 {
    match code {
        1 => GRPC_CANCELLED,
        4 => GRPC_DEADLINE_EXCEEDED,
        8 => GRPC_RESOURCE_EXHAUSTED,
        13 => GRPC_INTERNAL,
        14 => GRPC_UNAVAILABLE,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(conds: &str) -> RetryOn {
        let mut on = RetryOn::default();
        for c in conds.split(',') {
            assert!(on.add(c), "{c}");
        }
        on
    }

    fn status(status: u16) -> Outcome {
        Outcome::Response {
            status,
            grpc: None,
            overloaded: false,
            ratelimited: false,
        }
    }

    #[test]
    fn gateway_error_is_502_to_504_and_failures_without_a_response() {
        let on = on("gateway-error");
        for s in [502, 503, 504] {
            assert!(on.matches(&status(s)), "{s}");
        }
        assert!(!on.matches(&status(500)));
        assert!(on.matches(&Outcome::Reset));
        assert!(on.matches(&Outcome::TimedOut));
        assert!(on.matches(&Outcome::ConnectFailed));
    }

    #[test]
    fn bare_codes_are_retriable_status_codes() {
        let on = on("503,reset");
        assert!(on.matches(&status(503)));
        assert!(!on.matches(&status(500)));
        assert!(on.matches(&Outcome::Reset));
        assert!(!RetryOn::default().add("600"));
        assert!(!RetryOn::default().add("sometimes"));
    }

    #[test]
    fn connect_failure_is_only_before_sending() {
        let on = on("connect-failure");
        assert!(on.matches(&Outcome::ConnectFailed));
        assert!(!on.matches(&Outcome::Refused));
        assert!(!on.matches(&Outcome::Reset));
        assert!(!on.matches(&status(503)));
    }

    #[test]
    fn grpc_conditions_read_grpc_status() {
        let on = on("unavailable,cancelled");
        let grpc = |g| Outcome::Response {
            status: 200,
            grpc: Some(g),
            overloaded: false,
            ratelimited: false,
        };
        assert!(on.matches(&grpc(14)));
        assert!(on.matches(&grpc(1)));
        assert!(!on.matches(&grpc(13)));
        assert!(!on.matches(&grpc(0)));
    }

    #[test]
    fn an_overloaded_upstream_is_never_retried() {
        let on = on("5xx");
        let shed = Outcome::Response {
            status: 503,
            grpc: None,
            overloaded: true,
            ratelimited: false,
        };
        assert!(!on.matches(&shed));
        assert!(on.matches(&status(503)));
    }

    #[test]
    fn the_default_policy_is_istios() {
        let p = RetryPolicy::istio_default();
        assert_eq!(p.attempts, 2);
        assert!(p.retries(&status(503), true));
        assert!(!p.retries(&status(500), true));
        assert!(!p.retries(&status(502), true));
        assert!(p.retries(&Outcome::ConnectFailed, true));
        assert!(p.retries(&Outcome::Refused, true));
        assert!(!p.retries(&Outcome::Reset, true));
    }

    #[test]
    fn unsafe_requests_are_retried_only_when_never_sent() {
        let p = RetryPolicy {
            on: on("5xx"),
            ..RetryPolicy::istio_default()
        };
        assert!(!p.retries(&status(503), false));
        assert!(!p.retries(&Outcome::Reset, false));
        assert!(p.retries(&Outcome::ConnectFailed, false));
        assert!(p.retries(&Outcome::Refused, false));
        let mut h = http::HeaderMap::new();
        assert!(!repeatable(&Method::POST, &h));
        assert!(!repeatable(&Method::PATCH, &h));
        assert!(repeatable(&Method::PUT, &h));
        h.insert("idempotency-key", http::HeaderValue::from_static("k1"));
        assert!(repeatable(&Method::POST, &h));
    }

    #[test]
    fn backoff_is_fully_jittered_and_capped_at_ten_times_the_base() {
        let p = RetryPolicy::istio_default();
        // The ceiling of each draw: 25 ms, 75 ms, 175 ms, then 250 ms (10 x 25 ms).
        let ceiling = |n| {
            let mut seen = 0;
            p.backoff(n, |k| {
                seen = k;
                0
            });
            Duration::from_micros(seen)
        };
        assert_eq!(ceiling(1), Duration::from_millis(25));
        assert_eq!(ceiling(2), Duration::from_millis(75));
        assert_eq!(ceiling(3), Duration::from_millis(175));
        assert_eq!(ceiling(4), Duration::from_millis(250));
        assert_eq!(ceiling(40), Duration::from_millis(250));
        assert_eq!(p.backoff(2, |k| k - 1), Duration::from_micros(74_999));
    }
}
