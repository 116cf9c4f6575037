//! The overload rule: while weir's resident memory is at or above the limit, new requests get
//! 503 (with `x-weir-overloaded: true`) instead of being taken on; once it falls below 95 % of the
//! limit, requests are served again. Requests already in progress are not touched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often resident memory is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Whether weir is over its memory limit.
#[derive(Debug, Default)]
pub struct Overload {
    over: AtomicBool,
}

impl Overload {
    /// Starts watching memory against `limit` (bytes); with `None`, never over.
    pub fn watch(limit: Option<u64>) -> Arc<Overload> {
        let overload = Arc::new(Overload::default());
        if let Some(limit) = limit {
            tokio::spawn(sample(Arc::downgrade(&overload), limit));
        }
        overload
    }

    /// True while new requests are to be refused.
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    /// Takes a reading of `resident` bytes against `limit`.
    fn see(&self, resident: u64, limit: u64) {
        let was = self.is_over();
        let now = if was {
            resident >= limit / 20 * 19
        } else {
            resident >= limit
        };
        if now != was {
            self.over.store(now, Ordering::Relaxed);
            if now {
                tracing::warn!(
                    resident,
                    limit,
                    "Memory over the limit: refusing new requests with 503."
                );
            } else {
                tracing::info!(
                    resident,
                    limit,
                    "Memory back under the limit: serving again."
                );
            }
        }
    }
}

async fn sample(overload: Weak<Overload>, limit: u64) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(overload) = overload.upgrade() else {
            return;
        };
        if let Some(resident) = resident_bytes() {
            overload.see(resident, limit);
        }
    }
}

/// This process's resident set size, from `/proc/self/status`.
pub fn resident_bytes() -> Option<u64> {
    resident_bytes_in(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The resident set size in a `/proc/PID/status` text.
pub fn resident_bytes_in(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_at_the_limit_and_back_below_ninety_five_percent() {
        let o = Overload::default();
        o.see(99, 100);
        assert!(!o.is_over());
        o.see(100, 100);
        assert!(o.is_over());
        o.see(96, 100);
        assert!(o.is_over(), "no flapping just under the limit");
        o.see(94, 100);
        assert!(!o.is_over());
    }

    #[test]
    fn resident_memory_is_read() {
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
