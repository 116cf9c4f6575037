//! The retry budget of a cluster: retries may add only a share of its request rate, so that a
//! failing backend sees about 1.2 times its offered load, never 1 + attempts times.
//!
//! Requests and retries are counted in ten buckets spanning the window. A retry is allowed while
//! the window's retries stay below `percent` of its requests, or below the floor of
//! `min_per_sec` retries per second; with a DestinationRule `retryBudget`, also while fewer than
//! `minRetryConcurrency` retries (or `percent` of the requests in flight) are under way, as Envoy
//! counts it. Retries of requests that never reached an upstream are not counted.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 10;

/// A budget as configured.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BudgetSpec {
    /// Retries as a share of requests, in percent.
    pub(crate) percent: f64,
    /// The window requests and retries are counted over.
    pub(crate) window: Duration,
    /// Retries per second always allowed.
    pub(crate) min_per_sec: u32,
    /// Retries in flight always allowed (`minRetryConcurrency`; 0 without a `retryBudget`).
    pub(crate) min_concurrency: u32,
    /// Whether retries in flight may also be `percent` of the requests in flight (Envoy's
    /// concurrency budget, on with a DestinationRule `retryBudget`).
    pub(crate) concurrency: bool,
}

// Budgets are kept across reloads by cluster and spec.
impl Eq for BudgetSpec {}

impl std::hash::Hash for BudgetSpec {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.percent.to_bits().hash(h);
        self.window.hash(h);
        self.min_per_sec.hash(h);
        self.min_concurrency.hash(h);
        self.concurrency.hash(h);
    }
}

impl Default for BudgetSpec {
    /// weir's default: 20 % over 10 s, at least 10 retries per second.
    fn default() -> Self {
        BudgetSpec {
            percent: 20.0,
            window: Duration::from_secs(10),
            min_per_sec: 10,
            min_concurrency: 0,
            concurrency: false,
        }
    }
}

#[derive(Debug, Default)]
struct Bucket {
    tick: AtomicU64,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// The live budget of one cluster.
#[derive(Debug)]
pub(crate) struct RetryBudget {
    spec: BudgetSpec,
    start: Instant,
    width: Duration,
    buckets: [Bucket; BUCKETS],
    in_flight: AtomicU32,
}

impl RetryBudget {
    /// An empty budget.
    pub(crate) fn new(spec: BudgetSpec) -> RetryBudget {
        let width = (spec.window / BUCKETS as u32).max(Duration::from_millis(1));
        RetryBudget {
            spec,
            start: Instant::now(),
            width,
            buckets: Default::default(),
            in_flight: AtomicU32::new(0),
        }
    }

    /// Its configuration.
    pub(crate) fn spec(&self) -> &BudgetSpec {
        &self.spec
    }

    fn tick(&self, now: Instant) -> u64 {
        // Ticks start at 1: a bucket at 0 has never been used.
        (now.saturating_duration_since(self.start).as_nanos() / self.width.as_nanos()) as u64 + 1
    }

    /// The bucket for `tick`, emptied first if it holds an older tick.
    fn bucket(&self, tick: u64) -> &Bucket {
        let b = &self.buckets[(tick % BUCKETS as u64) as usize];
        let seen = b.tick.load(Ordering::Relaxed);
        if seen != tick
            && b.tick
                .compare_exchange(seen, tick, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts a request (its first try).
    pub(crate) fn deposit(&self, now: Instant) {
        self.bucket(self.tick(now))
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a retry from the budget, or says it is spent. `requests_in_flight` is the
    /// cluster's current request count (for the concurrency budget). The guard counts the
    /// retry as in flight until it is dropped.
    pub(crate) fn withdraw(&self, now: Instant, requests_in_flight: u64) -> Option<InFlight<'_>> {
        let tick = self.tick(now);
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            let t = b.tick.load(Ordering::Relaxed);
            if t + (BUCKETS as u64) > tick && t <= tick {
                requests += u64::from(b.requests.load(Ordering::Relaxed));
                retries += u64::from(b.retries.load(Ordering::Relaxed));
            }
        }
        let share = self.spec.percent / 100.0;
        let floor = f64::from(self.spec.min_per_sec) * self.spec.window.as_secs_f64();
        let by_rate = (retries as f64) < (share * requests as f64).max(floor);
        let in_flight = u64::from(self.in_flight.load(Ordering::Relaxed));
        let by_concurrency = in_flight < u64::from(self.spec.min_concurrency)
            || (self.spec.concurrency && (in_flight as f64) < share * requests_in_flight as f64);
        if !(by_rate || by_concurrency) {
            return None;
        }
        self.bucket(tick).retries.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(InFlight { budget: self })
    }
}

/// A retry under way, counted against the concurrency budget until dropped.
#[derive(Debug)]
pub(crate) struct InFlight<'a> {
    budget: &'a RetryBudget,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.budget.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offers `n` requests spread over `over`, each of which wants `attempts` retries; returns
    /// the retries the budget allowed.
    async fn retries_allowed(b: &RetryBudget, n: u32, over: Duration, attempts: u32) -> u32 {
        let step = over / n;
        let mut allowed = 0;
        for _ in 0..n {
            let now = Instant::now();
            b.deposit(now);
            for _ in 0..attempts {
                match b.withdraw(now, 1) {
                    Some(_) => allowed += 1,
                    None => break,
                }
            }
            tokio::time::advance(step).await;
        }
        allowed
    }

    #[tokio::test(start_paused = true)]
    async fn retries_add_a_fifth_of_the_load() {
        // 100 requests a second for 30 s, each wanting 3 retries: after the floor's 100 in the
        // first window, retries settle at 20 % of requests (20 per second).
        let b = RetryBudget::new(BudgetSpec::default());
        let allowed = retries_allowed(&b, 3000, Duration::from_secs(30), 3).await;
        assert!((600..=700).contains(&allowed), "{allowed}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_allows_ten_retries_a_second() {
        // One request a second, each wanting 3 retries: the floor (100 per 10 s) covers them.
        let b = RetryBudget::new(BudgetSpec::default());
        let allowed = retries_allowed(&b, 20, Duration::from_secs(20), 3).await;
        assert_eq!(allowed, 60);
        // A burst of 1000 requests at once: the floor's 100 plus 20 % of 1000.
        let b = RetryBudget::new(BudgetSpec::default());
        let now = Instant::now();
        for _ in 0..1000 {
            b.deposit(now);
        }
        let allowed = (0..1000).filter(|_| b.withdraw(now, 0).is_some()).count();
        assert_eq!(allowed, 200);
    }

    #[tokio::test(start_paused = true)]
    async fn old_requests_leave_the_window() {
        let b = RetryBudget::new(BudgetSpec {
            min_per_sec: 0,
            ..BudgetSpec::default()
        });
        let now = Instant::now();
        for _ in 0..100 {
            b.deposit(now);
        }
        assert_eq!(
            (0..100).filter(|_| b.withdraw(now, 0).is_some()).count(),
            20
        );
        // Eleven seconds on, those requests no longer pay for retries.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(b.withdraw(Instant::now(), 0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn min_retry_concurrency_allows_retries_in_flight() {
        let b = RetryBudget::new(BudgetSpec {
            percent: 20.0,
            min_per_sec: 0,
            min_concurrency: 3,
            concurrency: true,
            ..BudgetSpec::default()
        });
        let now = Instant::now();
        let held: Vec<_> = (0..3).map(|_| b.withdraw(now, 0).unwrap()).collect();
        assert!(b.withdraw(now, 0).is_none());
        // 20 % of 50 requests in flight: 10 retries in flight.
        let more: Vec<_> = (0..7).map_while(|_| b.withdraw(now, 50)).collect();
        assert_eq!(more.len(), 7);
        assert!(b.withdraw(now, 50).is_none());
        drop(held);
        assert!(b.withdraw(now, 50).is_some());
    }
}
