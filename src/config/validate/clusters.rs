//! The cluster a destination names: its endpoints, subset and backend policies, made once per
//! (host, subset, port).

use super::balancing::{hash_policy, outlier_policy};
use super::health::health_spec;
use super::*;
use crate::backend::breaker::BreakerSpec;

impl<'a> Checker<'a> {
    /// The cluster for (host, subset, port), created on first use.
    pub(super) fn cluster(&mut self, host: &str, subset: Option<&str>, port: Option<u16>) -> usize {
        let service = &self.services[host];
        let sp = port
            .and_then(|n| service.entry.ports.iter().find(|p| p.number == n as u32))
            .or(service.entry.ports.first());
        let port_number = sp.map_or(80, |p| p.number as u16);
        let key = (host.to_owned(), subset.map(str::to_owned), port_number);
        if let Some(&id) = self.cluster_ids.get(&key) {
            return id;
        }
        let dr = self.rules.get(host).map(|(_, dr)| *dr);
        let subset_def = subset.and_then(|s| dr?.subsets.iter().find(|d| d.name.value == s));
        let selector = subset_def.map(|s| &s.labels);
        let target = sp.map_or(80, |p| p.target_port.unwrap_or(p.number) as u16);
        let port_name = sp.and_then(|p| p.name.as_deref());
        let dns = !matches!(service.entry.resolution, Some(istio::Resolution::Static));
        let mut endpoints: Vec<EndpointSpec> = service
            .entry
            .endpoints
            .iter()
            .filter(|e| {
                selector.is_none_or(|sel| sel.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
            })
            .filter_map(|e| {
                let port = port_name
                    .and_then(|n| e.ports.get(n))
                    .map_or(target, |p| *p as u16);
                let addr = match e.address.value.parse::<IpAddr>() {
                    Ok(ip) => EndpointAddr::Ip(SocketAddr::new(ip, port)),
                    Err(_) if dns => EndpointAddr::Dns(e.address.value.clone(), port),
                    Err(_) => return None,
                };
                Some(EndpointSpec {
                    addr,
                    labels: e.labels.clone(),
                    // Istio: an unset (or zero) weight is 1.
                    weight: e.weight.filter(|w| *w > 0).unwrap_or(1),
                })
            })
            .collect();
        if service.entry.endpoints.is_empty() && selector.is_none() {
            // Without endpoints the host itself is the address (resolution DNS or NONE).
            endpoints.push(EndpointSpec {
                addr: EndpointAddr::Dns(service.host.clone(), target),
                labels: BTreeMap::new(),
                weight: 1,
            });
        }
        let protocol_name = sp
            .and_then(|p| p.protocol.as_deref())
            .unwrap_or("HTTP")
            .to_ascii_uppercase();
        // Each setting comes whole from the most specific place that has it: the subset's
        // policy over the host's, a port-level setting over its policy's own (as Istio merges).
        let mut lb_settings = None;
        let mut pool = None;
        let mut outlier = None;
        let mut retry_budget = None;
        let mut tls = None;
        let mut checks = None;
        let mut breaker = None;
        for tp in [
            dr.and_then(|d| d.traffic_policy.as_ref()),
            subset_def.and_then(|s| s.traffic_policy.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            let port_level = tp.port_level_settings.iter().find(|p| {
                p.port
                    .as_ref()
                    .is_some_and(|s| s.number == port_number as u32)
            });
            lb_settings = port_level
                .and_then(|p| p.load_balancer.as_ref())
                .or(tp.load_balancer.as_ref())
                .or(lb_settings);
            pool = port_level
                .and_then(|p| p.connection_pool.as_ref())
                .or(tp.connection_pool.as_ref())
                .or(pool);
            outlier = port_level
                .and_then(|p| p.outlier_detection.as_ref())
                .or(tp.outlier_detection.as_ref())
                .or(outlier);
            retry_budget = tp.retry_budget.as_ref().or(retry_budget);
            checks = tp.health_checks.as_ref().or(checks);
            breaker = tp.circuit_breaker.as_ref().or(breaker);
            tls = port_level
                .and_then(|p| p.tls.as_ref())
                .or(tp.tls.as_ref())
                .or(tls);
        }
        let tls = match (tls, self.rules.get(host)) {
            (Some(tls), Some(&(r, _))) => self.upstream_tls(r, tls, host),
            _ => None,
        };
        let hash = lb_settings
            .and_then(|l| l.consistent_hash.as_ref())
            .and_then(hash_policy);
        let warmup = lb_settings.and_then(|l| match (&l.warmup, l.warmup_duration_secs) {
            (Some(w), _) => Some(Warmup {
                duration: w.duration?.0,
                min_percent: w.minimum_percent.map_or(10.0, |p| p.0),
                aggression: w.aggression.map_or(1.0, |a| a.0),
            }),
            (None, Some(d)) => Some(Warmup {
                duration: d.0,
                min_percent: 10.0,
                aggression: 1.0,
            }),
            (None, None) => None,
        });
        let lb = match lb_settings.and_then(|l| l.simple) {
            Some(istio::SimpleLb::Random) => Lb::Random,
            Some(istio::SimpleLb::LeastRequest | istio::SimpleLb::LeastConn) => Lb::LeastRequest,
            _ => Lb::RoundRobin,
        };
        let mut protocol = match protocol_name.as_str() {
            "HTTP2" | "GRPC" => Protocol::Http2,
            _ => Protocol::Http1,
        };
        let tcp = pool.and_then(|p| p.tcp.as_ref());
        let http = pool.and_then(|p| p.http.as_ref());
        // Zero means "not set" for every limit, as Istio translates them.
        let limit = |v: Option<u32>| v.filter(|&n| n > 0);
        let limits = PoolLimits {
            max_connections: limit(tcp.and_then(|t| t.max_connections)),
            max_pending: limit(http.and_then(|h| h.http1_max_pending_requests)),
            max_requests: limit(http.and_then(|h| h.http2_max_requests)),
            max_retries: limit(http.and_then(|h| h.max_retries)),
        };
        if let Some(h) = http {
            if h.use_client_protocol == Some(true) {
                protocol = Protocol::Client;
            } else if h.h2_upgrade_policy == Some(istio::H2UpgradePolicy::Upgrade) {
                protocol = Protocol::Http2;
            }
        }
        let connect_timeout = tcp
            .and_then(|t| t.connect_timeout)
            .map_or(DEFAULT_CONNECT_TIMEOUT, |t| t.0);
        let max_requests_per_connection = limit(http.and_then(|h| h.max_requests_per_connection));
        let idle_timeout = http
            .and_then(|h| h.idle_timeout)
            .or(tcp.and_then(|t| t.idle_timeout))
            .filter(|t| !t.0.is_zero())
            .map_or(DEFAULT_IDLE_TIMEOUT, |t| t.0);
        let outlier = outlier.map(outlier_policy);
        let budget = retry_budget.map_or_else(BudgetSpec::default, |b| BudgetSpec {
            percent: b.percent.map_or(20.0, |p| p.0),
            window: b
                .budget_interval
                .filter(|d| !d.0.is_zero())
                .map_or(BudgetSpec::default().window, |d| d.0),
            min_per_sec: 0,
            min_concurrency: b.min_retry_concurrency.unwrap_or(3),
            concurrency: true,
        });
        let name = format!("{host}|{}|{port_number}", subset.unwrap_or(""));
        self.clusters.push(ClusterSpec {
            name,
            service: host.to_owned(),
            subset: subset.map(str::to_owned),
            port: port_number,
            endpoints,
            lb,
            protocol,
            connect_timeout,
            max_requests_per_connection,
            idle_timeout,
            read_timeout: tcp
                .and_then(|t| t.read_timeout)
                .map(|t| t.0)
                .filter(|t| !t.is_zero()),
            write_timeout: tcp
                .and_then(|t| t.write_timeout)
                .map(|t| t.0)
                .filter(|t| !t.is_zero()),
            limits,
            outlier,
            budget,
            hash,
            warmup,
            tls,
            health: checks.and_then(health_spec),
            breaker: breaker.map(|b| BreakerSpec {
                failure_threshold: b.failure_threshold.unwrap_or(5).max(1),
                window: b.window_size.map_or(Duration::from_secs(60), |d| d.0),
                recovery: b.recovery_timeout.map_or(Duration::from_secs(60), |d| d.0),
                half_open_requests: b.half_open_requests.unwrap_or(1).max(1),
            }),
        });
        self.cluster_ids.insert(key, self.clusters.len() - 1);
        self.clusters.len() - 1
    }
}
