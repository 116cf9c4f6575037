//! A target's health as Kong counts it: the settings of passive and active checks, and each
//! target's counts of successes, failures and timeouts against them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What counts, and how much of it turns a target's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Counting {
    /// Statuses that count as successes.
    pub(crate) healthy_statuses: Vec<u16>,
    /// Successes that make a target healthy (and, passively, clear failures); 0: never.
    pub(crate) successes: u32,
    /// Statuses that count as HTTP failures.
    pub(crate) unhealthy_statuses: Vec<u16>,
    /// HTTP failures that make a target unhealthy; 0: never.
    pub(crate) http_failures: u32,
    /// TCP failures that make a target unhealthy; 0: never.
    pub(crate) tcp_failures: u32,
    /// Timeouts that make a target unhealthy; 0: never.
    pub(crate) timeouts: u32,
}

/// Active probes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ActiveSpec {
    /// What a probe does.
    pub(crate) kind: ProbeKind,
    /// The probe's path.
    pub(crate) path: String,
    /// The probe's deadline.
    pub(crate) timeout: Duration,
    /// Between probes of a healthy target (zero: not probed).
    pub(crate) healthy_interval: Duration,
    /// Between probes of an unhealthy target (zero: not probed).
    pub(crate) unhealthy_interval: Duration,
    /// What the probes' answers count as.
    pub(crate) counting: Counting,
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ProbeKind {
    /// Connect only.
    Tcp,
    /// `GET path` over plain HTTP/1.1.
    Http,
    /// `GET path` over TLS.
    Https {
        /// The SNI name (default: the target's host).
        sni: Option<String>,
        /// Check the certificate against the system's CAs.
        verify: bool,
    },
}

/// A cluster's health checks.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HealthSpec {
    /// Active probes, if any.
    pub(crate) active: Option<ActiveSpec>,
    /// Passive counting, if any.
    pub(crate) passive: Option<Counting>,
    /// Least healthy share of the weight, in percent, to take traffic at all.
    pub(crate) threshold: f64,
}

/// What one request or probe came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Observed {
    /// An HTTP status.
    Status(u16),
    /// The connection failed.
    TcpFailure,
    /// No answer in time.
    Timeout,
}

#[derive(Debug, Default)]
struct Counters {
    successes: u32,
    http_failures: u32,
    tcp_failures: u32,
    timeouts: u32,
}

/// One target's health (kept with its endpoint's counters, across reloads).
#[derive(Debug)]
pub(crate) struct TargetHealth {
    healthy: AtomicBool,
    counters: Mutex<Counters>,
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth {
            healthy: AtomicBool::new(true),
            counters: Mutex::new(Counters::default()),
        }
    }
}

impl TargetHealth {
    /// Whether the target takes traffic.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Sets the state by hand (counters cleared); true if it changed.
    pub(crate) fn set(&self, healthy: bool) -> bool {
        if let Ok(mut c) = self.counters.lock() {
            *c = Counters::default();
        }
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// Counts one observation; `Some(state)` when it turned the target. Passive counting
    /// (`may_recover` false) never makes a target healthy.
    pub(crate) fn observe(
        &self,
        seen: Observed,
        rules: &Counting,
        may_recover: bool,
    ) -> Option<bool> {
        let Ok(mut c) = self.counters.lock() else {
            return None;
        };
        let reached = |count: u32, threshold: u32| threshold > 0 && count >= threshold;
        let healthy = self.is_healthy();
        if !healthy && !may_recover {
            // Requests still in flight when it was taken out: passive counting is over.
            return None;
        }
        match seen {
            Observed::Status(s) if rules.healthy_statuses.contains(&s) => {
                c.successes = c.successes.saturating_add(1);
                // Kong: successes clear the failures only when they count for something.
                if rules.successes > 0 {
                    c.http_failures = 0;
                    c.tcp_failures = 0;
                    c.timeouts = 0;
                }
                if !healthy && may_recover && reached(c.successes, rules.successes) {
                    *c = Counters::default();
                    self.healthy.store(true, Ordering::Relaxed);
                    return Some(true);
                }
                None
            }
            Observed::Status(s) if rules.unhealthy_statuses.contains(&s) => {
                c.successes = 0;
                c.http_failures = c.http_failures.saturating_add(1);
                let reached = reached(c.http_failures, rules.http_failures);
                self.fail(&mut c, healthy, reached)
            }
            Observed::Status(_) => None,
            Observed::TcpFailure => {
                c.successes = 0;
                c.tcp_failures = c.tcp_failures.saturating_add(1);
                let reached = reached(c.tcp_failures, rules.tcp_failures);
                self.fail(&mut c, healthy, reached)
            }
            Observed::Timeout => {
                c.successes = 0;
                c.timeouts = c.timeouts.saturating_add(1);
                let reached = reached(c.timeouts, rules.timeouts);
                self.fail(&mut c, healthy, reached)
            }
        }
    }

    fn fail(&self, c: &mut Counters, healthy: bool, reached: bool) -> Option<bool> {
        if healthy && reached {
            *c = Counters::default();
            self.healthy.store(false, Ordering::Relaxed);
            return Some(false);
        }
        None
    }
}
