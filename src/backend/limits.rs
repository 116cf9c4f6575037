//! Connection-pool limits of a cluster (Istio's circuit breaking): `maxConnections` with
//! `http1MaxPendingRequests` waiting for one, `http2MaxRequests` and `maxRetries`.
//!
//! A request beyond them is answered by weir at once with 503 and `x-weir-overloaded: true`:
//! never forwarded, never retried, and never counted as an upstream failure. Limits are per weir
//! instance, as Envoy's are per proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Overflow;

/// Limits as configured (`None`: unlimited, Istio's default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct PoolLimits {
    /// HTTP/1.1 connections in use at once (`tcp.maxConnections`); each carries one request.
    pub(crate) max_connections: Option<u32>,
    /// Requests waiting for a connection (`http.http1MaxPendingRequests`).
    pub(crate) max_pending: Option<u32>,
    /// Requests in flight (`http.http2MaxRequests`, applied to both protocols as Envoy does).
    pub(crate) max_requests: Option<u32>,
    /// Retries in flight (`http.maxRetries`).
    pub(crate) max_retries: Option<u32>,
}

impl PoolLimits {
    /// Whether any limit is set.
    pub(crate) fn any(&self) -> bool {
        *self != PoolLimits::default()
    }
}

/// The live counters of one cluster's limits.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: PoolLimits,
    connections: Option<Arc<Semaphore>>,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
}

/// What admission decided without waiting.
pub(crate) enum Admit {
    /// Go ahead.
    Now(Admission),
    /// Wait for a connection (the pending queue has room).
    Wait(Waiting),
    /// Turned away.
    Overflow(Overflow),
}

impl Gate {
    /// Counters for `limits`.
    pub(crate) fn new(limits: PoolLimits) -> Gate {
        Gate {
            limits,
            connections: limits
                .max_connections
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            pending: AtomicU32::new(0),
            requests: AtomicU32::new(0),
            retries: AtomicU32::new(0),
        }
    }

    /// Requests in flight, and requests waiting for a connection.
    pub(crate) fn load(&self) -> (u32, u32) {
        (
            self.requests.load(Ordering::Relaxed),
            self.pending.load(Ordering::Relaxed),
        )
    }

    /// Admits one try. HTTP/2 tries share one connection and take no connection slot.
    pub(crate) fn admit(self: &Arc<Self>, h2: bool) -> Admit {
        if let Some(max) = self.limits.max_requests
            && !take(&self.requests, max)
        {
            return Admit::Overflow(Overflow::Requests);
        }
        let mut admission = Admission {
            gate: self.clone(),
            counts_request: self.limits.max_requests.is_some(),
            _connection: None,
        };
        let Some(sem) = self.connections.as_ref().filter(|_| !h2) else {
            return Admit::Now(admission);
        };
        match sem.clone().try_acquire_owned() {
            Ok(permit) => {
                admission._connection = Some(permit);
                Admit::Now(admission)
            }
            Err(_) => match self.limits.max_pending {
                Some(max) if !take(&self.pending, max) => Admit::Overflow(Overflow::Pending),
                max => {
                    if max.is_none() {
                        self.pending.fetch_add(1, Ordering::Relaxed);
                    }
                    Admit::Wait(Waiting {
                        _queued: Queued(self.clone()),
                        admission,
                        sem: sem.clone(),
                    })
                }
            },
        }
    }

    /// Takes a retry slot (`maxRetries`); `None` when they are all in use.
    pub(crate) fn retry(self: &Arc<Self>) -> Option<RetrySlot> {
        match self.limits.max_retries {
            Some(max) if !take(&self.retries, max) => None,
            Some(_) => Some(RetrySlot { gate: self.clone() }),
            None => Some(RetrySlot { gate: self.clone() }),
        }
    }
}

/// Adds one to `n` unless it is at `max`.
fn take(n: &AtomicU32, max: u32) -> bool {
    n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        (v < max).then_some(v + 1)
    })
    .is_ok()
}

/// A try admitted: its slots are held until it is dropped (when the response has been read).
#[derive(Debug)]
pub(crate) struct Admission {
    gate: Arc<Gate>,
    counts_request: bool,
    _connection: Option<OwnedSemaphorePermit>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.counts_request {
            self.gate.requests.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A try in the pending queue.
pub(crate) struct Waiting {
    admission: Admission,
    sem: Arc<Semaphore>,
    _queued: Queued,
}

impl Waiting {
    /// Waits for a connection slot, in arrival order.
    pub(crate) async fn ready(self) -> Admission {
        let Waiting {
            mut admission,
            sem,
            _queued,
        } = self;
        // The semaphore is never closed.
        admission._connection = sem.acquire_owned().await.ok();
        admission
    }
}

/// A place in the pending queue, left when dropped (also when the wait is abandoned).
struct Queued(Arc<Gate>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A retry counted against `maxRetries` until dropped.
#[derive(Debug)]
pub(crate) struct RetrySlot {
    gate: Arc<Gate>,
}

impl Drop for RetrySlot {
    fn drop(&mut self) {
        if self.gate.limits.max_retries.is_some() {
            self.gate.retries.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(conns: u32, pending: u32) -> Arc<Gate> {
        Arc::new(Gate::new(PoolLimits {
            max_connections: Some(conns),
            max_pending: Some(pending),
            ..PoolLimits::default()
        }))
    }

    #[tokio::test]
    async fn one_connection_one_waiting_the_rest_overflow() {
        let g = gate(1, 1);
        let Admit::Now(first) = g.admit(false) else {
            panic!("first")
        };
        let Admit::Wait(second) = g.admit(false) else {
            panic!("second")
        };
        assert!(matches!(g.admit(false), Admit::Overflow(Overflow::Pending)));
        assert_eq!(g.load().1, 1);
        let waiting = tokio::spawn(second.ready());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(g.load().1, 0);
        // The queue has room again; the connection is still taken.
        assert!(matches!(g.admit(false), Admit::Wait(_)));
        drop(second);
        assert!(matches!(g.admit(false), Admit::Now(_)));
    }

    #[tokio::test]
    async fn http2_tries_take_no_connection_slot() {
        let g = gate(1, 0);
        let _a = g.admit(false);
        assert!(matches!(g.admit(true), Admit::Now(_)));
        assert!(matches!(g.admit(false), Admit::Overflow(Overflow::Pending)));
    }

    #[test]
    fn requests_and_retries_are_counted_while_held() {
        let g = Arc::new(Gate::new(PoolLimits {
            max_requests: Some(2),
            max_retries: Some(1),
            ..PoolLimits::default()
        }));
        let a = g.admit(true);
        let _b = g.admit(false);
        assert!(matches!(
            g.admit(false),
            Admit::Overflow(Overflow::Requests)
        ));
        drop(a);
        assert!(matches!(g.admit(false), Admit::Now(_)));
        let r = g.retry().unwrap();
        assert!(g.retry().is_none());
        drop(r);
        assert!(g.retry().is_some());
    }

    #[tokio::test]
    async fn an_abandoned_wait_leaves_the_queue() {
        let g = gate(1, 1);
        let _first = g.admit(false);
        let Admit::Wait(w) = g.admit(false) else {
            panic!()
        };
        let fut = Box::pin(w.ready());
        let _ = futures_poll_once(fut).await;
        assert_eq!(g.load().1, 0);
        assert!(matches!(g.admit(false), Admit::Wait(_)));
    }

    /// Polls a future once and drops it.
    async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> bool {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll(cx).is_ready())
        })
        .await
    }
}
