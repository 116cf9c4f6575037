//! Health checks as Kong runs them: passive checks count what proxied requests get, active
//! checks probe each target; both count successes, HTTP failures, TCP failures and timeouts per
//! target and mark it unhealthy when a count reaches its threshold. Passive checks only ever
//! take a target out ("circuit breaker"): only active checks, or an operator, bring it back.
//! An unhealthy target gets no traffic; below `threshold` percent of healthy weight the whole
//! cluster answers 503. Kong users write `healthchecks` on an upstream; Istio users the same
//! object as weir's DestinationRule extension `trafficPolicy.healthChecks`.
//!
//! Counting (Kong's): a status listed as healthy adds a success and clears the failure
//! counters; a status listed as unhealthy adds an HTTP failure and clears the successes; a
//! connection failure adds a TCP failure, a timeout a timeout. A threshold of 0 never fires.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::endpoint::EndpointStats;
use super::spec::EndpointAddr;
use super::target_health::{ActiveSpec, HealthSpec, Observed, ProbeKind};
use crate::tls::upstream::system_bundle;
use crate::tls::{ClientSpec, ClientTls, Trust};

/// One probed target.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// Where it is.
    pub(crate) addr: EndpointAddr,
    /// Its counters (health included).
    pub(crate) stats: Arc<EndpointStats>,
}

/// A cluster's health state: its targets, how many are unhealthy, and the prober (kept across
/// reloads while the cluster and its health settings stay the same).
#[derive(Debug)]
pub(crate) struct ClusterHealth {
    /// The settings.
    pub(crate) spec: HealthSpec,
    /// The cluster's name, for logs.
    name: String,
    targets: ArcSwap<Vec<Target>>,
    unhealthy: AtomicUsize,
    prober: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for ClusterHealth {
    fn drop(&mut self) {
        if let Ok(Some(task)) = self.prober.lock().map(|mut p| p.take()) {
            task.abort();
        }
    }
}

impl ClusterHealth {
    /// A cluster's health state, without targets yet.
    pub(crate) fn new(name: &str, spec: HealthSpec) -> ClusterHealth {
        ClusterHealth {
            spec,
            name: name.to_owned(),
            targets: ArcSwap::from_pointee(Vec::new()),
            unhealthy: AtomicUsize::new(0),
            prober: Mutex::new(None),
        }
    }

    /// Sets the targets (on every build of the cluster), and starts probing if it should.
    pub(crate) fn set_targets(self: &Arc<Self>, targets: Vec<Target>) {
        self.targets.store(Arc::new(targets));
        self.recount();
        let Some(active) = &self.spec.active else {
            return;
        };
        if active.healthy_interval.is_zero() && active.unhealthy_interval.is_zero() {
            return;
        }
        let Ok(mut prober) = self.prober.lock() else {
            return;
        };
        if prober.is_none() && tokio::runtime::Handle::try_current().is_ok() {
            let me = Arc::downgrade(self);
            *prober = Some(tokio::spawn(probe_loop(me, active.clone())).abort_handle());
        }
    }

    /// Whether no target is unhealthy (the common case: nothing to filter).
    pub(crate) fn all_healthy(&self) -> bool {
        self.unhealthy.load(Ordering::Relaxed) == 0
    }

    /// Whether enough of the weight is healthy to take traffic (`threshold`).
    pub(crate) fn enough(&self, weight: impl Fn(usize) -> (u32, bool), n: usize) -> bool {
        if self.spec.threshold <= 0.0 {
            return true;
        }
        let (mut healthy, mut total) = (0u64, 0u64);
        for i in 0..n {
            let (w, ok) = weight(i);
            total += u64::from(w);
            if ok {
                healthy += u64::from(w);
            }
        }
        total > 0 && healthy as f64 * 100.0 >= self.spec.threshold * total as f64
    }

    /// Counts a proxied request's outcome on `stats` (passive checks).
    pub(crate) fn passive(&self, stats: &EndpointStats, addr: &EndpointAddr, seen: Observed) {
        let Some(rules) = &self.spec.passive else {
            return;
        };
        if let Some(state) = stats.checks.observe(seen, rules, false) {
            self.changed(addr, state, "passive");
        }
    }

    /// Marks a target healthy or not by hand; false if the cluster has no such target.
    pub(crate) fn set(&self, addr: &str, healthy: bool) -> bool {
        let targets = self.targets.load();
        let Some(t) = targets.iter().find(|t| t.addr.to_string() == addr) else {
            return false;
        };
        if t.stats.checks.set(healthy) {
            self.changed(&t.addr, healthy, "operator");
        }
        true
    }

    fn changed(&self, addr: &EndpointAddr, healthy: bool, by: &str) {
        self.recount();
        if healthy {
            tracing::info!(cluster = %self.name, target = %addr, by, "Target healthy.");
        } else {
            tracing::warn!(cluster = %self.name, target = %addr, by, "Target unhealthy.");
        }
    }

    fn recount(&self) {
        let n = self
            .targets
            .load()
            .iter()
            .filter(|t| !t.stats.checks.is_healthy())
            .count();
        self.unhealthy.store(n, Ordering::Relaxed);
    }
}

/// Probes every target at its state's interval until the cluster's health state is gone.
async fn probe_loop(weak: std::sync::Weak<ClusterHealth>, active: ActiveSpec) {
    let intervals = [active.healthy_interval, active.unhealthy_interval];
    let tick = intervals
        .iter()
        .filter(|d| !d.is_zero())
        .min()
        .copied()
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    // When each target (by address) was last probed.
    let mut last: Vec<(EndpointAddr, tokio::time::Instant)> = Vec::new();
    let tls = match &active.kind {
        ProbeKind::Https { verify, .. } => {
            let trust = match system_bundle() {
                Some(bundle) if *verify => Trust::System(bundle),
                _ => Trust::Any,
            };
            let spec = ClientSpec {
                trust,
                identity: None,
                subject_alt_names: Vec::new(),
            };
            match ClientTls::new(spec) {
                Ok(tls) => Some(Arc::new(tls)),
                Err(e) => {
                    tracing::error!(error = %e, "Health probes over TLS cannot start.");
                    return;
                }
            }
        }
        _ => None,
    };
    loop {
        tokio::time::sleep(tick).await;
        let Some(health) = weak.upgrade() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let targets = health.targets.load_full();
        let mut due = Vec::new();
        for t in targets.iter() {
            let interval = if t.stats.checks.is_healthy() {
                active.healthy_interval
            } else {
                active.unhealthy_interval
            };
            if interval.is_zero() {
                continue;
            }
            let seen = last.iter_mut().find(|(a, _)| *a == t.addr);
            match seen {
                Some((_, at)) if now.duration_since(*at) < interval => {}
                Some((_, at)) => {
                    *at = now;
                    due.push(t.clone());
                }
                None => {
                    last.push((t.addr.clone(), now));
                    due.push(t.clone());
                }
            }
        }
        drop(health);
        let mut probes = tokio::task::JoinSet::new();
        for t in due {
            let (active, tls) = (active.clone(), tls.clone());
            probes.spawn(async move {
                let seen = probe(&t.addr, &active, tls.as_deref()).await;
                (t, seen)
            });
        }
        while let Some(Ok((t, seen))) = probes.join_next().await {
            let Some(health) = weak.upgrade() else {
                return;
            };
            if let Some(state) = t.stats.checks.observe(seen, &active.counting, true) {
                health.changed(&t.addr, state, "active");
            }
        }
    }
}

/// One probe: connect (and for HTTP, `GET path`, over TLS for https), within the timeout.
async fn probe(addr: &EndpointAddr, active: &ActiveSpec, tls: Option<&ClientTls>) -> Observed {
    let attempt = async {
        let stream = match addr {
            EndpointAddr::Ip(a) => TcpStream::connect(a).await,
            EndpointAddr::Dns(h, p) => TcpStream::connect((h.as_str(), *p)).await,
        }
        .map_err(|_| Observed::TcpFailure)?;
        let host = match addr {
            EndpointAddr::Ip(a) => a.to_string(),
            EndpointAddr::Dns(h, p) => format!("{h}:{p}"),
        };
        match (&active.kind, tls) {
            (ProbeKind::Tcp, _) => Ok(Observed::Status(200)),
            (ProbeKind::Https { sni, .. }, Some(tls)) => {
                let name = sni.clone().unwrap_or_else(|| match addr {
                    EndpointAddr::Ip(a) => a.ip().to_string(),
                    EndpointAddr::Dns(h, _) => h.clone(),
                });
                let name = ServerName::try_from(name).map_err(|_| Observed::TcpFailure)?;
                let stream = tls
                    .connect(stream, &name, false)
                    .await
                    .map_err(|_| Observed::TcpFailure)?;
                http_probe(stream, &host, &active.path).await
            }
            _ => http_probe(stream, &host, &active.path).await,
        }
    };
    match tokio::time::timeout(active.timeout, attempt).await {
        Ok(Ok(seen) | Err(seen)) => seen,
        Err(_) => Observed::Timeout,
    }
}

/// `GET path` on an open connection; the status of the answer.
async fn http_probe<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
) -> Result<Observed, Observed> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: weir-health-check\r\nconnection: close\r\n\r\n",
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|_| Observed::TcpFailure)?;
    let mut head = [0u8; 32];
    let mut filled = 0;
    while filled < 12 {
        match stream.read(&mut head[filled..]).await {
            Ok(0) | Err(_) => return Err(Observed::TcpFailure),
            Ok(n) => filled += n,
        }
    }
    let status = std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(Observed::TcpFailure)?;
    Ok(Observed::Status(status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::target_health::{Counting, TargetHealth};

    fn rules(successes: u32, http_failures: u32) -> Counting {
        Counting {
            healthy_statuses: vec![200],
            successes,
            unhealthy_statuses: vec![500],
            http_failures,
            tcp_failures: 0,
            timeouts: 0,
        }
    }

    #[test]
    fn failures_reach_the_threshold_and_successes_clear_them() {
        let t = TargetHealth::default();
        let r = rules(3, 3);
        let s = |c| Observed::Status(c);
        // Kong's KIC sequence: two failures, a success (clears), two failures: still healthy.
        for seen in [s(500), s(500), s(200), s(500), s(500)] {
            assert_eq!(t.observe(seen, &r, false), None);
        }
        assert!(t.is_healthy());
        assert_eq!(t.observe(s(500), &r, false), Some(false));
        assert!(!t.is_healthy());
        // Passive counting never brings it back.
        for _ in 0..10 {
            assert_eq!(t.observe(s(200), &r, false), None);
        }
        assert!(!t.is_healthy());
        // Active counting does, after `successes` of them.
        assert_eq!(t.observe(s(200), &r, true), None);
        assert_eq!(t.observe(s(200), &r, true), None);
        assert_eq!(t.observe(s(200), &r, true), Some(true));
    }

    #[test]
    fn without_counted_successes_failures_accumulate() {
        let t = TargetHealth::default();
        let r = rules(0, 3);
        let s = |c| Observed::Status(c);
        for seen in [s(500), s(500), s(200)] {
            assert_eq!(t.observe(seen, &r, false), None);
        }
        assert_eq!(t.observe(s(500), &r, false), Some(false));
    }

    #[test]
    fn statuses_not_listed_and_zero_thresholds_count_for_nothing() {
        let t = TargetHealth::default();
        let r = rules(0, 0);
        for _ in 0..100 {
            assert_eq!(t.observe(Observed::Status(502), &r, false), None);
            assert_eq!(t.observe(Observed::Status(500), &r, false), None);
            assert_eq!(t.observe(Observed::TcpFailure, &r, false), None);
        }
        assert!(t.is_healthy());
    }
}
