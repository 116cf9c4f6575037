//! ServiceEntry and DestinationRule checks, and the cluster specs they produce.

use super::*;

impl<'a> Checker<'a> {
    // === ServiceEntry ===

    pub(super) fn service_entry(&mut self, r: &'a Resource, se: &'a ServiceEntry) {
        if se.hosts.is_empty() {
            self.err(r, se.pos, "ServiceEntry needs at least one host");
        }
        if se.ports.is_empty() {
            // Istio accepts it (the port comes from elsewhere there); weir needs one to send to.
            self.warn(
                r,
                se.pos,
                "ServiceEntry has no ports: weir sends HTTP to port 80 of its endpoints (or host)",
            );
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
                self.err(
                    r,
                    a.pos,
                    "unix socket endpoints are not supported: weir connects to its upstreams over TCP",
                );
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
                self.err(
                    r,
                    host.pos,
                    "wildcard ServiceEntry hosts are not supported: they forward to the address a sidecar intercepted, and weir intercepts nothing; declare each host",
                );
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
        let wildcard = host == "*" || host.starts_with("*.");
        if wildcard {
            if let Some((other, _)) = self.wildcard_rules.get(&host) {
                let at = other.location();
                self.err(
                    r,
                    dr.host.pos,
                    format!("host `{host}` already has a DestinationRule (at {at})"),
                );
                return;
            }
        } else if !self.services.contains_key(&host) {
            self.err(
                r,
                dr.host.pos,
                format!("DestinationRule host `{host}` is not declared by any ServiceEntry"),
            );
        }
        if let Some((other, _)) = self.rules.get(&host).filter(|_| !wildcard) {
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
        if wildcard {
            self.wildcard_rules.insert(host, (r, dr));
        } else {
            self.rules.insert(host, (r, dr));
        }
    }

    /// Gives every service without a DestinationRule of its own the most specific wildcard
    /// one that matches its host (`*.foo.com` over `*.com` over `*`), as Istio does.
    pub(super) fn apply_wildcard_rules(&mut self) {
        if self.wildcard_rules.is_empty() {
            return;
        }
        let hosts: Vec<String> = self
            .services
            .keys()
            .filter(|h| !self.rules.contains_key(*h))
            .cloned()
            .collect();
        for host in hosts {
            let best = self
                .wildcard_rules
                .iter()
                .filter(|(pattern, _)| {
                    let suffix = &pattern[1..];
                    pattern.as_str() == "*" || (host.ends_with(suffix) && host.len() > suffix.len())
                })
                .max_by_key(|(pattern, _)| pattern.len());
            if let Some((_, rule)) = best {
                let rule = *rule;
                self.rules.insert(host, rule);
            }
        }
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
}
