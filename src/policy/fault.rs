//! Fault injection (`HTTPRoute.fault`): delays and aborts drawn per request, and the kill switch
//! that stops every fault at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio::sync::Notify;

/// One in a million: percentages are kept as parts per million, so that `0.1` (one request in a
/// thousand) and `0.0001` are exact.
pub const PER_MILLION: u32 = 1_000_000;

/// A rule's faults. Delay and abort are drawn independently (as Envoy does).
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Requests delayed before they are forwarded.
    pub delay: Option<Delay>,
    /// Requests answered by weir instead of the upstream.
    pub abort: Option<Abort>,
}

/// `fault.delay`.
#[derive(Clone, Debug, PartialEq)]
pub struct Delay {
    /// How long.
    pub delay: Duration,
    /// Share of requests, in parts per million.
    pub per_million: u32,
}

/// `fault.abort`.
#[derive(Clone, Debug, PartialEq)]
pub struct Abort {
    /// HTTP status answered (200 for a gRPC abort).
    pub status: StatusCode,
    /// gRPC status code, sent as `grpc-status` for `grpcStatus` aborts.
    pub grpc_status: Option<u32>,
    /// Share of requests, in parts per million.
    pub per_million: u32,
}

/// What was drawn for one request.
#[derive(Debug, Default)]
pub struct Drawn<'a> {
    /// Wait this long before forwarding.
    pub delay: Option<Duration>,
    /// Answer with this instead of forwarding.
    pub abort: Option<&'a Abort>,
}

impl Fault {
    /// Draws this request's faults; `roll` gives uniform numbers below [`PER_MILLION`].
    pub fn draw(&self, mut roll: impl FnMut() -> u32) -> Drawn<'_> {
        let hit = |share: u32, roll: &mut dyn FnMut() -> u32| {
            share >= PER_MILLION || (share > 0 && roll() < share)
        };
        Drawn {
            delay: self
                .delay
                .as_ref()
                .filter(|d| hit(d.per_million, &mut roll))
                .map(|d| d.delay),
            abort: self
                .abort
                .as_ref()
                .filter(|a| hit(a.per_million, &mut roll)),
        }
    }
}

/// A percentage (0-100, validated) as parts per million.
pub fn per_million(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32
}

/// The kill switch: while off, no fault is injected anywhere, and delays under way end at once.
/// It belongs to the process, not to a config, so reloads keep its position.
#[derive(Debug)]
pub struct FaultSwitch {
    enabled: AtomicBool,
    turned_off: Notify,
}

impl Default for FaultSwitch {
    fn default() -> Self {
        FaultSwitch {
            enabled: AtomicBool::new(true),
            turned_off: Notify::new(),
        }
    }
}

impl FaultSwitch {
    /// Whether faults are injected.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Turns every fault on or off, at once.
    pub fn set(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
        if !enabled {
            self.turned_off.notify_waiters();
        }
    }

    /// Waits out an injected delay, cut short if the switch is turned off meanwhile.
    pub async fn delay(&self, delay: Duration) {
        let off = self.turned_off.notified();
        tokio::pin!(off);
        // Registered before the check: a switch-off between the two is not missed.
        off.as_mut().enable();
        if !self.enabled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = off => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(delay_pct: f64, abort_pct: f64) -> Fault {
        Fault {
            delay: Some(Delay {
                delay: Duration::from_secs(7),
                per_million: per_million(delay_pct),
            }),
            abort: Some(Abort {
                status: StatusCode::SERVICE_UNAVAILABLE,
                grpc_status: None,
                per_million: per_million(abort_pct),
            }),
        }
    }

    /// Counts (delays, aborts) over `n` draws with a seeded generator.
    fn count(f: &Fault, n: u32, seed: u64) -> (u32, u32) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = (0, 0);
        for _ in 0..n {
            let d = f.draw(|| rng.u32(..PER_MILLION));
            out.0 += u32::from(d.delay.is_some());
            out.1 += u32::from(d.abort.is_some());
        }
        out
    }

    #[test]
    fn percentages_are_parts_of_a_hundred() {
        assert_eq!(per_million(100.0), PER_MILLION);
        assert_eq!(per_million(0.1), 1_000);
        assert_eq!(per_million(0.0001), 1);
        // 0 and 100 are exact, never drawn.
        assert_eq!(count(&fault(0.0, 100.0), 10_000, 1), (0, 10_000));
        // 10 % of 10,000 (sigma 30): within 6 sigma, with a fixed seed.
        let (d, a) = count(&fault(10.0, 10.0), 10_000, 7);
        assert!((820..=1180).contains(&d), "{d}");
        assert!((820..=1180).contains(&a), "{a}");
        // 0.1 % = one in a thousand: 200,000 draws give 200 (sigma 14).
        let (d, _) = count(&fault(0.1, 0.0), 200_000, 3);
        assert!((116..=284).contains(&d), "{d}");
    }

    #[test]
    fn delay_and_abort_are_drawn_independently() {
        // Both at 50 %: about a quarter of requests get both.
        let f = fault(50.0, 50.0);
        let mut rng = fastrand::Rng::with_seed(11);
        let both = (0..10_000)
            .filter(|_| {
                let d = f.draw(|| rng.u32(..PER_MILLION));
                d.delay.is_some() && d.abort.is_some()
            })
            .count();
        assert!((2_200..=2_800).contains(&both), "{both}");
    }

    #[test]
    fn the_switch_starts_on() {
        let s = FaultSwitch::default();
        assert!(s.enabled());
        s.set(false);
        assert!(!s.enabled());
    }

    #[tokio::test(start_paused = true)]
    async fn turning_the_switch_off_ends_delays_under_way() {
        let s = std::sync::Arc::new(FaultSwitch::default());
        let start = tokio::time::Instant::now();
        let waiting = tokio::spawn({
            let s = s.clone();
            async move { s.delay(Duration::from_secs(7)).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        s.set(false);
        waiting.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        // Off: no delay at all; on again: the whole delay.
        let t = tokio::time::Instant::now();
        s.delay(Duration::from_secs(7)).await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        s.set(true);
        let t = tokio::time::Instant::now();
        s.delay(Duration::from_secs(7)).await;
        assert_eq!(t.elapsed(), Duration::from_secs(7));
    }
}
