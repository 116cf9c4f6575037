//! ServiceEntry and DestinationRule checks, and the cluster specs they produce.

use super::*;
use crate::backend::breaker::BreakerSpec;
use crate::backend::health::{ActiveSpec, Counting, HealthSpec, ProbeKind};
use crate::config::kong;

impl<'a> Checker<'a> {
    // === ServiceEntry ===

    pub(super) fn service_entry(&mut self, r: &'a Resource, se: &'a ServiceEntry) {
        if se.hosts.is_empty() {
            self.err(r, se.pos, "ServiceEntry needs at least one host");
        }
        if se.ports.is_empty() {
            self.err(r, se.pos, "ServiceEntry needs at least one port");
        }
        let mut port_names = HashSet::new();
        for p in &se.ports {
            if !(1..=65535).contains(&p.number) {
                self.err(
                    r,
                    p.pos,
                    format!("port {} is out of range 1-65535", p.number),
                );
            }
            if let Some(name) = &p.name
                && !port_names.insert(name.as_str())
            {
                self.err(r, p.pos, format!("duplicate port name `{name}`"));
            }
            if let Some(proto) = &p.protocol
                && !matches!(
                    proto.to_ascii_uppercase().as_str(),
                    "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB"
                )
            {
                self.warn(
                    r,
                    p.pos,
                    format!("port protocol {proto} is proxied as HTTP"),
                );
            }
        }
        let resolution = se.resolution.unwrap_or_default();
        for ep in &se.endpoints {
            let a = &ep.address;
            if a.value.starts_with("unix://") {
                self.err(r, a.pos, "unix socket endpoints are not supported");
            } else if a.value.parse::<IpAddr>().is_err() && resolution == istio::Resolution::Static
            {
                self.err(
                    r,
                    a.pos,
                    format!(
                        "endpoint `{}` is not an IP address (resolution STATIC)",
                        a.value
                    ),
                );
            }
            for (name, port) in &ep.ports {
                if !port_names.contains(name.as_str()) {
                    self.err(
                        r,
                        ep.pos,
                        format!("endpoint port `{name}` names no service port"),
                    );
                }
                if !(1..=65535).contains(port) {
                    self.err(r, ep.pos, format!("port {port} is out of range 1-65535"));
                }
            }
        }
        if se.workload_selector.is_some() {
            self.err(
                r,
                se.pos,
                "workloadSelector needs Kubernetes; list `endpoints` instead",
            );
        }
        for host in &se.hosts {
            let h = host.value.to_ascii_lowercase();
            if h.contains('*') {
                self.err(r, host.pos, "wildcard ServiceEntry hosts are not supported");
                continue;
            }
            if let Some(other) = self.services.get(&h) {
                let at = other.res.location();
                self.err(
                    r,
                    host.pos,
                    format!("host `{h}` is already declared at {at}"),
                );
                continue;
            }
            self.services.insert(
                h.clone(),
                Service {
                    entry: se,
                    res: r,
                    host: h,
                },
            );
        }
    }

    // === DestinationRule ===

    pub(super) fn destination_rule(&mut self, r: &'a Resource, dr: &'a DestinationRule) {
        let host = dr.host.value.to_ascii_lowercase();
        if host.is_empty() {
            return; // reported while decoding
        }
        if !self.services.contains_key(&host) {
            self.err(
                r,
                dr.host.pos,
                format!("DestinationRule host `{host}` is not declared by any ServiceEntry"),
            );
        }
        if let Some((other, _)) = self.rules.get(&host) {
            let at = other.location();
            self.err(
                r,
                dr.host.pos,
                format!("host `{host}` already has a DestinationRule (at {at})"),
            );
            return;
        }
        let mut names = HashSet::new();
        for s in &dr.subsets {
            if !names.insert(s.name.value.as_str()) {
                self.err(
                    r,
                    s.name.pos,
                    format!("duplicate subset `{}`", s.name.value),
                );
            }
            if let Some(tp) = &s.traffic_policy {
                self.traffic_policy(r, tp);
            }
        }
        if let Some(tp) = &dr.traffic_policy {
            self.traffic_policy(r, tp);
        }
        self.rules.insert(host, (r, dr));
    }

    pub(super) fn traffic_policy(&mut self, r: &Resource, tp: &istio::TrafficPolicy) {
        let port_lbs = tp
            .port_level_settings
            .iter()
            .filter_map(|p| p.load_balancer.as_ref());
        for lb in tp.load_balancer.iter().chain(port_lbs) {
            self.load_balancer(r, lb);
        }
        if let Some(od) = &tp.outlier_detection {
            for (v, name) in [
                (od.max_ejection_percent, "maxEjectionPercent"),
                (od.min_health_percent, "minHealthPercent"),
            ] {
                if v.is_some_and(|v| v > 100) {
                    self.err(r, od.pos, format!("{name} must be between 0 and 100"));
                }
            }
            for code in &od.outlier_detection_http_error_codes {
                if !(100..=599).contains(code) {
                    self.err(r, od.pos, format!("{code} is not an HTTP status code"));
                }
            }
        }
        let port_tls = tp.port_level_settings.iter().filter_map(|p| p.tls.as_ref());
        for tls in tp.tls.iter().chain(port_tls) {
            self.client_tls(r, tls);
        }
        if let Some(h) = &tp.health_checks {
            self.health_checks(r, h);
        }
        if let Some(b) = &tp.circuit_breaker {
            if b.failure_threshold == Some(0) {
                self.err(
                    r,
                    b.pos,
                    "circuitBreaker.failureThreshold must be at least 1",
                );
            }
            if b.window_size.is_some_and(|d| d.0.is_zero()) {
                self.err(r, b.pos, "circuitBreaker.windowSize must be above 0");
            }
        }
        if let Some(budget) = &tp.retry_budget
            && budget
                .percent
                .is_some_and(|p| !(0.0..=100.0).contains(&p.0))
        {
            self.err(
                r,
                budget.pos,
                "retryBudget.percent must be between 0 and 100",
            );
        }
        for pl in &tp.port_level_settings {
            if pl.port.is_none() {
                self.err(r, pl.pos, "portLevelSettings entry needs a port");
            }
        }
    }

    /// Health-check settings within Kong's ranges.
    fn health_checks(&mut self, r: &Resource, h: &kong::Healthchecks) {
        if h.threshold.is_some_and(|t| !(0.0..=100.0).contains(&t)) {
            self.err(r, h.pos, "healthchecks.threshold must be between 0 and 100");
        }
        let mut statuses: Vec<(Pos, &[u16])> = Vec::new();
        let mut counts: Vec<(Pos, Option<u32>)> = Vec::new();
        if let Some(a) = &h.active {
            if let Some(k) = &a.kind
                && !matches!(k.value.as_str(), "http" | "https" | "tcp")
            {
                self.err(
                    r,
                    k.pos,
                    format!(
                        "active check type {}: weir probes http, https and tcp",
                        k.value
                    ),
                );
            }
            if a.kind.as_ref().is_some_and(|k| k.value == "https")
                && a.https_verify_certificate != Some(false)
                && crate::tls::client::system_bundle().is_none()
            {
                self.err(
                    r,
                    a.pos,
                    "https probes verify against the system CA bundle, and none was found (set SSL_CERT_FILE, or https_verify_certificate: false)",
                );
            }
            if a.timeout.is_some_and(|t| t <= 0.0) {
                self.err(r, a.pos, "active.timeout must be above 0");
            }
            if let Some(x) = &a.healthy {
                statuses.push((x.pos, x.http_statuses.as_deref().unwrap_or_default()));
                counts.push((x.pos, x.successes));
            }
            if let Some(x) = &a.unhealthy {
                statuses.push((x.pos, x.http_statuses.as_deref().unwrap_or_default()));
                counts.extend([x.http_failures, x.tcp_failures, x.timeouts].map(|c| (x.pos, c)));
            }
        }
        if let Some(p) = &h.passive {
            if let Some(x) = &p.healthy {
                statuses.push((x.pos, x.http_statuses.as_deref().unwrap_or_default()));
                counts.push((x.pos, x.successes));
            }
            if let Some(x) = &p.unhealthy {
                statuses.push((x.pos, x.http_statuses.as_deref().unwrap_or_default()));
                counts.extend([x.http_failures, x.tcp_failures, x.timeouts].map(|c| (x.pos, c)));
            }
        }
        for (pos, list) in statuses {
            if let Some(bad) = list.iter().find(|s| !(100..=999).contains(*s)) {
                self.err(r, pos, format!("{bad} is not an HTTP status code"));
            }
        }
        for (pos, count) in counts {
            if count.is_some_and(|c| c > 255) {
                self.err(r, pos, "health-check counters go from 0 to 255");
            }
        }
    }

    fn load_balancer(&mut self, r: &Resource, lb: &istio::LoadBalancerSettings) {
        if lb.simple == Some(istio::SimpleLb::Passthrough) {
            self.err(r, lb.pos, "loadBalancer PASSTHROUGH is not supported");
        }
        if let Some(ch) = &lb.consistent_hash {
            if lb.simple.is_some() {
                self.err(
                    r,
                    lb.pos,
                    "loadBalancer takes one of simple and consistentHash",
                );
            }
            self.hash_key(r, ch);
            if let Some(f) = &ch.fallback {
                self.hash_key(r, f);
                if f.fallback.is_some() || f.ring_hash.is_some() || f.maglev.is_some() {
                    self.err(
                        r,
                        f.pos,
                        "consistentHash.fallback is one key, without fallback, ringHash or maglev",
                    );
                }
            }
            if ch.ring_hash.is_some() && ch.maglev.is_some() {
                self.err(r, ch.pos, "consistentHash takes one of ringHash and maglev");
            }
            if let Some(size) = ch.maglev.as_ref().and_then(|m| m.table_size)
                && !is_prime(size)
            {
                self.err(r, ch.pos, format!("maglev.tableSize {size} is not a prime"));
            }
            let ring = ch
                .ring_hash
                .as_ref()
                .and_then(|h| h.minimum_ring_size)
                .or(ch.minimum_ring_size);
            if let Some(size) = ring
                .into_iter()
                .chain(ch.maglev.as_ref().and_then(|m| m.table_size))
                .find(|&s| s > MAX_TABLE_SIZE)
            {
                self.err(
                    r,
                    ch.pos,
                    format!("hash table size {size} is above {MAX_TABLE_SIZE}"),
                );
            }
        }
        if let Some(w) = &lb.warmup {
            if w.duration.is_none() {
                self.err(r, w.pos, "warmup needs a duration");
            }
            if w.minimum_percent
                .is_some_and(|p| !(0.0..=100.0).contains(&p.0))
            {
                self.err(r, w.pos, "warmup.minimumPercent must be between 0 and 100");
            }
            if w.aggression.is_some_and(|a| a.0 < 1.0) {
                self.err(r, w.pos, "warmup.aggression must be at least 1");
            }
        }
    }

    /// Exactly one well-formed request key.
    fn hash_key(&mut self, r: &Resource, ch: &istio::ConsistentHashLb) {
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip == Some(true),
            ch.http_query_parameter_name.is_some(),
            ch.use_path == Some(true),
            ch.uri_capture.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            self.err(
                r,
                ch.pos,
                "consistentHash takes one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName, usePath, uriCapture",
            );
        }
        if let Some(h) = &ch.http_header_name
            && HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            self.err(r, ch.pos, format!("`{h}` is not a header name"));
        }
        if let Some(c) = &ch.http_cookie
            && (c.name.is_empty() || c.name.contains([';', '=', ' ', ',']))
        {
            self.err(r, c.pos, format!("`{}` is not a cookie name", c.name));
        }
        if let Some(name) = &ch.uri_capture
            && (name.is_empty()
                || name.starts_with(|c: char| c.is_ascii_digit())
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            self.err(r, ch.pos, format!("`{name}` is not a capture group name"));
        }
    }

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

/// Health checks with Kong's defaults for what is not set; `None` when nothing is enabled
/// (every threshold and interval 0, Kong's default).
fn health_spec(h: &kong::Healthchecks) -> Option<HealthSpec> {
    let secs = |s: Option<f64>| Duration::from_secs_f64(s.unwrap_or(0.0).max(0.0));
    let active = h.active.as_ref().and_then(|a| {
        let healthy = a.healthy.clone().unwrap_or_default();
        let unhealthy = a.unhealthy.clone().unwrap_or_default();
        let spec = ActiveSpec {
            kind: match a.kind.as_ref().map(|k| k.value.as_str()) {
                Some("tcp") => ProbeKind::Tcp,
                Some("https") => ProbeKind::Https {
                    sni: a.https_sni.clone(),
                    verify: a.https_verify_certificate != Some(false),
                },
                _ => ProbeKind::Http,
            },
            path: a.http_path.clone().unwrap_or_else(|| "/".to_owned()),
            timeout: Duration::from_secs_f64(a.timeout.unwrap_or(1.0).max(0.001)),
            healthy_interval: secs(healthy.interval),
            unhealthy_interval: secs(unhealthy.interval),
            counting: Counting {
                healthy_statuses: healthy.http_statuses.unwrap_or_else(|| vec![200, 302]),
                successes: healthy.successes.unwrap_or(0),
                unhealthy_statuses: unhealthy
                    .http_statuses
                    .unwrap_or_else(|| vec![429, 404, 500, 501, 502, 503, 504, 505]),
                http_failures: unhealthy.http_failures.unwrap_or(0),
                tcp_failures: unhealthy.tcp_failures.unwrap_or(0),
                timeouts: unhealthy.timeouts.unwrap_or(0),
            },
        };
        (!spec.healthy_interval.is_zero() || !spec.unhealthy_interval.is_zero()).then_some(spec)
    });
    let passive = h.passive.as_ref().and_then(|p| {
        let healthy = p.healthy.clone().unwrap_or_default();
        let unhealthy = p.unhealthy.clone().unwrap_or_default();
        let counting = Counting {
            healthy_statuses: healthy
                .http_statuses
                .unwrap_or_else(|| (200..=208).chain([226]).chain(300..=308).collect()),
            successes: healthy.successes.unwrap_or(0),
            unhealthy_statuses: unhealthy
                .http_statuses
                .unwrap_or_else(|| vec![429, 500, 503]),
            http_failures: unhealthy.http_failures.unwrap_or(0),
            tcp_failures: unhealthy.tcp_failures.unwrap_or(0),
            timeouts: unhealthy.timeouts.unwrap_or(0),
        };
        (counting.http_failures > 0 || counting.tcp_failures > 0 || counting.timeouts > 0)
            .then_some(counting)
    });
    let threshold = h.threshold.unwrap_or(0.0);
    (active.is_some() || passive.is_some() || threshold > 0.0).then_some(HealthSpec {
        active,
        passive,
        threshold,
    })
}

/// Outlier detection with Istio's defaults for what is not set.
fn outlier_policy(od: &istio::OutlierDetection) -> OutlierPolicy {
    let d = OutlierPolicy::default();
    let dur = |v: Option<crate::config::decode::Dur>, default| v.map_or(default, |v| v.0);
    OutlierPolicy {
        consecutive_5xx: od
            .consecutive_5xx_errors
            .or(od.consecutive_errors)
            .unwrap_or(d.consecutive_5xx),
        consecutive_gateway: od.consecutive_gateway_errors.unwrap_or(0),
        consecutive_local: od
            .consecutive_local_origin_failures
            .unwrap_or(d.consecutive_local),
        split_local_origin: od.split_external_local_origin_errors.unwrap_or(false),
        interval: dur(od.interval, d.interval),
        base_ejection: dur(od.base_ejection_time, d.base_ejection),
        max_ejection_percent: od.max_ejection_percent.unwrap_or(d.max_ejection_percent),
        min_health_percent: od.min_health_percent.unwrap_or(d.min_health_percent),
        error_codes: od
            .outlier_detection_http_error_codes
            .iter()
            .map(|&c| c as u16)
            .collect(),
    }
}

/// `consistentHash` as weir runs it; `None` when no key is set (reported by validation).
fn hash_policy(ch: &istio::ConsistentHashLb) -> Option<HashPolicy> {
    let algo = match (&ch.maglev, &ch.ring_hash) {
        (Some(m), _) => HashAlgo::Maglev(m.table_size.unwrap_or(DEFAULT_MAGLEV_SIZE)),
        (None, ring) => HashAlgo::Ring(
            ring.as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size)
                .unwrap_or(DEFAULT_RING_SIZE),
        ),
    };
    Some(HashPolicy {
        key: hash_key(ch)?,
        fallback: ch.fallback.as_deref().and_then(hash_key),
        algo,
    })
}

/// The request key `ch` names.
fn hash_key(ch: &istio::ConsistentHashLb) -> Option<HashKey> {
    Some(if let Some(h) = &ch.http_header_name {
        HashKey::Header(HeaderName::from_bytes(h.as_bytes()).ok()?)
    } else if let Some(c) = &ch.http_cookie {
        HashKey::Cookie {
            name: c.name.clone(),
            path: c.path.clone(),
            ttl: c.ttl.map(|t| t.0),
        }
    } else if ch.use_source_ip == Some(true) {
        HashKey::SourceIp
    } else if ch.use_path == Some(true) {
        HashKey::Path
    } else if let Some(name) = &ch.uri_capture {
        HashKey::UriCapture(name.clone())
    } else {
        HashKey::Query(ch.http_query_parameter_name.clone()?)
    })
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}
