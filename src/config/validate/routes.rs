//! Gateway and VirtualService checks: listeners, route rules, actions and destinations.

use super::*;

impl<'a> Checker<'a> {
    // === Gateway ===

    pub(super) fn gateways(
        &mut self,
        set: &'a ResourceSet,
        mesh_addr: SocketAddr,
    ) -> HashMap<String, Vec<(SocketAddr, Vec<String>)>> {
        let mut out: HashMap<String, Vec<(SocketAddr, Vec<String>)>> = HashMap::new();
        let mut owners: HashMap<SocketAddr, String> = HashMap::new();
        for r in &set.resources {
            let Spec::Gateway(gw) = &r.spec else {
                continue;
            };
            self.gateway(r, gw, mesh_addr, &mut owners, &mut out);
        }
        out
    }

    pub(super) fn gateway(
        &mut self,
        r: &'a Resource,
        gw: &Gateway,
        mesh_addr: SocketAddr,
        owners: &mut HashMap<SocketAddr, String>,
        out: &mut HashMap<String, Vec<(SocketAddr, Vec<String>)>>,
    ) {
        let servers = out.entry(r.name().to_owned()).or_default();
        for s in &gw.servers {
            let number = &s.port.number;
            let Ok(port) = u16::try_from(number.value)
                .map_err(drop)
                .and_then(|p| if p == 0 { Err(()) } else { Ok(p) })
            else {
                self.err(
                    r,
                    number.pos,
                    format!("port {} is out of range 1-65535", number.value),
                );
                continue;
            };
            let ip = match &s.bind {
                None => IpAddr::from([0, 0, 0, 0]),
                Some(b) => match b.value.parse::<IpAddr>() {
                    Ok(ip) => ip,
                    Err(_) => {
                        self.err(r, b.pos, format!("bind `{}` is not an IP address", b.value));
                        continue;
                    }
                },
            };
            let protocol = s
                .port
                .protocol
                .as_deref()
                .unwrap_or("HTTP")
                .to_ascii_uppercase();
            if !matches!(protocol.as_str(), "HTTP" | "HTTPS" | "HTTP2" | "GRPC") {
                self.err(
                    r,
                    s.port.pos,
                    format!(
                        "server protocol {protocol} is not supported yet (HTTP, HTTPS, HTTP2, GRPC)"
                    ),
                );
                continue;
            }
            let Some(side) = self.server_side(r, s, &protocol) else {
                continue;
            };
            if s.hosts.is_empty() {
                self.err(r, s.pos, "a gateway server needs at least one host");
            }
            let addr = SocketAddr::new(ip, port);
            if addr == mesh_addr
                || (addr.port() == mesh_addr.port()
                    && (addr.ip().is_unspecified() || mesh_addr.ip().is_unspecified()))
            {
                self.err(
                    r,
                    number.pos,
                    format!("{addr} is the mesh listener's address"),
                );
                continue;
            }
            if let Some(owner) = owners.get(&addr)
                && owner != r.name()
            {
                self.err(
                    r,
                    number.pos,
                    format!("{addr} is already used by Gateway `{owner}`"),
                );
                continue;
            }
            owners.insert(addr, r.name().to_owned());
            servers.push((addr, s.hosts.clone()));
            self.sides
                .entry(addr)
                .or_insert((r, Vec::new()))
                .1
                .push(side);
        }
    }

    /// The listeners a VirtualService is served on, with the hosts each admits.
    pub(super) fn vs_listeners(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        hosts: &[String],
        gateways: &HashMap<String, Vec<(SocketAddr, Vec<String>)>>,
        listener_ids: &HashMap<SocketAddr, usize>,
    ) -> Vec<(usize, Vec<String>)> {
        let mut out = Vec::new();
        // Kong's routes run on the main listener, wildcard hosts included, as on Kong's proxy.
        let kong = r
            .metadata
            .annotations
            .get(GENERATED_BY)
            .is_some_and(|g| g.starts_with(KONG_PREFIX));
        if vs.gateways.is_empty() || vs.gateways.iter().any(|g| g == MESH) {
            for h in hosts {
                if h.contains('*') && !kong {
                    self.err(r, vs.pos, format!("wildcard host `{h}` needs a gateway"));
                }
            }
            out.push((0, hosts.to_vec()));
        }
        for g in vs.gateways.iter().filter(|g| *g != MESH) {
            let Some(servers) = gateways.get(short_ref(g)) else {
                self.err(r, vs.pos, format!("gateway `{g}` is not defined"));
                continue;
            };
            for (addr, server_hosts) in servers {
                let admitted: Vec<String> = hosts
                    .iter()
                    .filter(|h| server_hosts.iter().any(|s| host_allowed(s, h)))
                    .cloned()
                    .collect();
                if let Some(&id) = listener_ids.get(addr)
                    && !admitted.is_empty()
                {
                    out.push((id, admitted));
                }
            }
        }
        out
    }

    // === VirtualService ===

    pub(super) fn http_rules(
        &mut self,
        r: &Resource,
        vs: &VirtualService,
        gateway: Option<&str>,
    ) -> Vec<Rule> {
        let mut rules = Vec::new();
        for (i, route) in vs.http.iter().enumerate() {
            let mut matches = Vec::new();
            let mut skip = !route.matches.is_empty();
            for m in &route.matches {
                let applies = m.gateways.is_empty()
                    || m.gateways.iter().any(|g| match gateway {
                        None => g == MESH,
                        Some(gw) => short_ref(g) == gw,
                    });
                if let Some(compiled) = self.request_match(r, m)
                    && applies
                {
                    matches.push(compiled);
                    skip = false;
                }
            }
            let label: Arc<str> = match &route.name {
                Some(n) => n.as_str().into(),
                None => format!("{}/{i}", r.name()).into(),
            };
            let Some(action) = self.action(r, route, &label) else {
                continue;
            };

            if skip {
                continue;
            }
            let timeout = route.timeout.map(|d| d.0).filter(|d| !d.is_zero());
            let rewrite = route.rewrite.as_ref().and_then(|rw| self.rewrite(r, rw));
            let headers = self.header_edits(r, route.headers.as_ref());
            let fault = match (&route.fault, &action) {
                (Some(f), Action::Forward(_)) => self.fault(r, f),
                (Some(f), _) => {
                    self.warn(
                        r,
                        f.pos,
                        "fault applies to forwarded requests only; ignored here",
                    );
                    None
                }
                (None, _) => None,
            };
            let retry = self.retry_policy(r, route.retries.as_ref());
            let fallback = match (&route.fallback, &action) {
                (Some(f), Action::Forward(_)) => self.fallback(r, f, &label),
                (Some(f), _) => {
                    self.warn(
                        r,
                        f.pos,
                        "fallback applies to forwarded requests only; ignored here",
                    );
                    None
                }
                (None, _) => None,
            };
            let local_stats = self.stats_id("", "", &label);
            let mirrors = match &action {
                Action::Forward(_) => self.mirrors(r, route, &label),
                _ => Vec::new(),
            };
            let affinity = match (&route.session_affinity, &action) {
                (Some(sa), Action::Forward(_)) => self.affinity(r, sa).map(Box::new),
                (Some(sa), _) => {
                    self.warn(
                        r,
                        sa.pos,
                        "sessionAffinity applies to forwarded requests only; ignored here",
                    );
                    None
                }
                (None, _) => None,
            };
            let transform = match (&route.request_transformer, &action) {
                (Some(t), Action::Forward(_)) => self.transform(r, t),
                (Some(t), _) => {
                    self.warn(
                        r,
                        t.pos,
                        "requestTransformer applies to forwarded requests only; ignored here",
                    );
                    None
                }
                (None, _) => None,
            };
            let response_cache = match (&route.response_cache, &action) {
                (Some(c), Action::Forward(_)) => self.response_cache(r, c, &label),
                (Some(c), _) => {
                    self.warn(
                        r,
                        c.pos,
                        "responseCache applies to forwarded requests only; ignored here",
                    );
                    None
                }
                (None, _) => None,
            };
            let cors = match &route.cors_policy {
                Some(c) => self.cors(r, c),
                None => None,
            };
            let rate_limit = match (&route.rate_limit, &action) {
                (Some(rl), Action::Forward(_)) => self.rate_limit(r, rl, &label),
                (Some(rl), _) => {
                    self.warn(
                        r,
                        rl.pos,
                        "rateLimit applies to forwarded requests only; ignored here",
                    );
                    None
                }
                (None, _) => None,
            };
            rules.push(Rule {
                label,
                matches,
                action,
                headers,
                rewrite,
                timeout,
                fault,
                retry,
                fallback,
                local_stats,
                mirrors,
                affinity,
                max_request_bytes: route.max_request_bytes,
                rate_limit,
                cors,
                transform,
                response_cache,
            });
        }
        rules
    }

    /// `responseCache` (Kong's `proxy-cache` config), compiled, with its store registered.
    fn response_cache(
        &mut self,
        r: &Resource,
        c: &crate::config::kong::ProxyCacheConfig,
        label: &str,
    ) -> Option<Box<crate::policy::cache::ResponseCache>> {
        use crate::policy::cache::ResponseCache;
        use crate::policy::fallback::CacheSpec;
        let before = self.errors.len();
        if let Some(s) = &c.strategy
            && s.value != "memory"
        {
            self.err(
                r,
                s.pos,
                format!("strategy {}: weir caches in memory", s.value),
            );
        }
        let mut methods = Vec::new();
        for m in c
            .request_method
            .clone()
            .unwrap_or_else(|| vec!["GET".into(), "HEAD".into()])
        {
            match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => self.err(r, c.pos, format!("`{m}` is not an HTTP method")),
            }
        }
        let mut vary_headers = Vec::new();
        for h in &c.vary_headers {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => vary_headers.push(h),
                Err(_) => self.err(r, c.pos, format!("`{h}` is not a header name")),
            }
        }
        if self.errors.len() > before {
            return None;
        }
        let ttl = std::time::Duration::from_secs(c.cache_ttl.unwrap_or(300).max(1));
        let show = |name: &str| {
            c.response_headers
                .as_ref()
                .and_then(|h| h.get(name).copied())
                .unwrap_or(true)
        };
        let spec = CacheSpec {
            max_age: ttl,
            max_entries: 10_000,
            max_body: 1024 * 1024,
        };
        self.caches
            .push((format!("{}/{label}/response-cache", r.name()), spec));
        Some(Box::new(ResponseCache {
            store: self.caches.len() - 1,
            ttl,
            statuses: c
                .response_code
                .clone()
                .unwrap_or_else(|| vec![200, 301, 404]),
            methods,
            content_types: c
                .content_type
                .clone()
                .unwrap_or_else(|| vec!["text/plain".into(), "application/json".into()])
                .into_iter()
                .map(|t| {
                    t.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .collect(),
            vary_query: c.vary_query_params.clone().filter(|v| !v.is_empty()),
            vary_headers,
            ignore_uri_case: c.ignore_uri_case == Some(true),
            show_headers: show("X-Cache-Status") && show("X-Cache-Key"),
            cache_control: c.cache_control == Some(true),
        }))
    }

    /// `requestTransformer` (Kong's `request-transformer` config), compiled.
    fn transform(
        &mut self,
        r: &Resource,
        t: &crate::config::kong::RequestTransformerConfig,
    ) -> Option<Box<crate::policy::transform::RequestTransform>> {
        use crate::config::kong::TransformOps;
        use crate::policy::transform::{Ops, Template, Templated};
        let before = self.errors.len();
        let mut method = None;
        if let Some(m) = &t.http_method {
            match http::Method::from_bytes(m.value.to_ascii_uppercase().as_bytes()) {
                Ok(m) => method = Some(m),
                Err(_) => self.err(r, m.pos, format!("`{}` is not an HTTP method", m.value)),
            }
        }
        let pair = |s: &crate::config::decode::Spanned<String>| -> Option<(String, String)> {
            s.value
                .split_once(':')
                .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
        };
        // Values are read as templates; a transform without `$(...)` is made concrete.
        let mut header_ops: Ops<HeaderName, Template> = Ops::default();
        let mut query_ops: Ops<String, Template> = Ops::default();
        let mut uri = None;
        let template = |c: &mut Self, pos, text: &str| match Template::parse(text) {
            Ok(t) => Some(t),
            Err(e) => {
                c.err(r, pos, e);
                None
            }
        };
        for (kind, ops) in [
            ("remove", &t.remove),
            ("rename", &t.rename),
            ("replace", &t.replace),
            ("add", &t.add),
            ("append", &t.append),
        ] {
            let Some(ops): Option<&TransformOps> = ops.as_ref() else {
                continue;
            };
            if !ops.body.is_empty() || !ops.json_types.is_empty() {
                self.err(
                    r,
                    ops.pos,
                    format!("{kind}.body is not supported yet (weir streams bodies)"),
                );
            }
            if let Some(u) = &ops.uri {
                if kind != "replace" {
                    self.err(r, u.pos, "uri can only be replaced");
                } else if !u.value.starts_with('/') {
                    self.err(r, u.pos, "replace.uri must be a path starting with /");
                } else {
                    uri = template(self, u.pos, &u.value);
                }
            }
            for h in &ops.headers {
                let name =
                    |n: &str| -> Option<HeaderName> { HeaderName::from_bytes(n.as_bytes()).ok() };
                let bad = |c: &mut Self, what: &str| {
                    c.err(
                        r,
                        h.pos,
                        format!("{kind}.headers: `{}` is not {what}", h.value),
                    )
                };
                match kind {
                    "remove" => match name(h.value.trim()) {
                        Some(n) => header_ops.remove.push(n),
                        None => bad(self, "a header name"),
                    },
                    "rename" => match pair(h).and_then(|(a, b)| Some((name(&a)?, name(&b)?))) {
                        Some(p) => header_ops.rename.push(p),
                        None => bad(self, "old:new"),
                    },
                    _ => {
                        let parsed = pair(h).and_then(|(a, b)| {
                            let literal_ok = b.contains("$(") || HeaderValue::from_str(&b).is_ok();
                            Some((name(&a)?, b)).filter(|_| literal_ok)
                        });
                        let Some((n, v)) = parsed else {
                            bad(self, "name:value");
                            continue;
                        };
                        let Some(v) = template(self, h.pos, &v) else {
                            continue;
                        };
                        match kind {
                            "replace" => header_ops.replace.push((n, v)),
                            "add" => header_ops.add.push((n, v)),
                            _ => header_ops.append.push((n, v)),
                        }
                    }
                }
            }
            for q in &ops.querystring {
                match kind {
                    "remove" => query_ops.remove.push(q.value.trim().to_owned()),
                    "rename" => match pair(q) {
                        Some(p) => query_ops.rename.push(p),
                        None => self.err(
                            r,
                            q.pos,
                            format!("rename.querystring: `{}` is not old:new", q.value),
                        ),
                    },
                    _ => {
                        let Some((n, v)) = pair(q) else {
                            self.err(
                                r,
                                q.pos,
                                format!("{kind}.querystring: `{}` is not name:value", q.value),
                            );
                            continue;
                        };
                        let Some(v) = template(self, q.pos, &v) else {
                            continue;
                        };
                        match kind {
                            "replace" => query_ops.replace.push((n, v)),
                            "add" => query_ops.add.push((n, v)),
                            _ => query_ops.append.push((n, v)),
                        }
                    }
                }
            }
        }
        let templated = Templated {
            method,
            uri,
            headers: header_ops,
            query: query_ops,
        };
        (self.errors.len() == before).then(|| Box::new(templated.compile()))
    }

    /// weir's `rateLimit`: checked, and registered under its scope.
    fn rate_limit(
        &mut self,
        r: &Resource,
        rl: &istio::RateLimitSettings,
        label: &str,
    ) -> Option<usize> {
        use crate::policy::ratelimit::{LimitBy, Period, RateLimitSpec};
        let limits: Vec<(Period, u64)> = [
            (Period::Second, rl.second),
            (Period::Minute, rl.minute),
            (Period::Hour, rl.hour),
            (Period::Day, rl.day),
            (Period::Month, rl.month),
            (Period::Year, rl.year),
        ]
        .into_iter()
        .filter_map(|(p, n)| Some((p, n?)))
        .collect();
        if limits.is_empty() {
            self.err(
                r,
                rl.pos,
                "rateLimit needs a limit: second, minute, hour, day, month or year",
            );
            return None;
        }
        let by = match rl.limit_by.as_ref().map_or("ip", |b| b.value.as_str()) {
            "ip" | "consumer" | "credential" => LimitBy::Ip,
            "service" => LimitBy::Service,
            "path" => LimitBy::Path,
            "header" => match rl
                .header_name
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            {
                Some(h) => LimitBy::Header(h),
                None => {
                    self.err(r, rl.pos, "limitBy header needs a valid headerName");
                    return None;
                }
            },
            other => {
                let at = rl.limit_by.as_ref().map_or(rl.pos, |b| b.pos);
                self.err(
                    r,
                    at,
                    format!("limitBy {other}: expected ip, header, path, service, consumer or credential"),
                );
                return None;
            }
        };
        let status = rl.error_code.unwrap_or(429);
        if !(400..=599).contains(&status) {
            self.err(r, rl.pos, "rateLimit errorCode must be between 400 and 599");
            return None;
        }
        let spec = RateLimitSpec {
            limits,
            by,
            hide_headers: rl.hide_client_headers == Some(true),
            status,
            message: rl
                .error_message
                .clone()
                .unwrap_or_else(|| "API rate limit exceeded".to_owned()),
        };
        let scope = rl
            .scope
            .clone()
            .unwrap_or_else(|| format!("{}/{label}", r.name()));
        let key = (scope, spec);
        Some(match self.limiters.iter().position(|l| *l == key) {
            Some(i) => i,
            None => {
                self.limiters.push(key);
                self.limiters.len() - 1
            }
        })
    }

    /// weir's `sessionAffinity` (Flagger's fields): the cohort cookie.
    pub(super) fn affinity(
        &mut self,
        r: &Resource,
        sa: &crate::config::flagger::SessionAffinity,
    ) -> Option<Affinity> {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        if !token(&sa.cookie_name) {
            self.err(
                r,
                sa.pos,
                format!("cookieName `{}` is not a valid cookie name", sa.cookie_name),
            );
            return None;
        }
        if let Some(s) = &sa.same_site
            && !matches!(s.as_str(), "Strict" | "Lax" | "None")
        {
            self.err(r, sa.pos, "sameSite must be Strict, Lax or None");
            return None;
        }
        let a = Affinity::new(
            &sa.cookie_name,
            sa.max_age,
            sa.domain.as_deref(),
            sa.path.as_deref(),
            sa.http_only.unwrap_or(false),
            sa.secure.unwrap_or(false),
            sa.same_site.as_deref(),
            sa.partitioned.unwrap_or(false),
        );
        if HeaderValue::from_str(&a.attributes).is_err() {
            self.err(
                r,
                sa.pos,
                "sessionAffinity domain and path must be header-safe text",
            );
            return None;
        }
        Some(a)
    }

    /// `mirror` with `mirrorPercentage` (or the deprecated `mirrorPercent`; 100 % when
    /// neither is set, as in Istio), and each of `mirrors` with its `percentage`.
    fn mirrors(&mut self, r: &Resource, route: &istio::HttpRoute, label: &str) -> Vec<Mirror> {
        let legacy = route.mirror_percent.or(route.mirror_percent_snake);
        let share = route
            .mirror_percentage
            .as_ref()
            .map(|p| p.value)
            .or(legacy.map(f64::from))
            .unwrap_or(100.0);
        let all = route
            .mirror
            .iter()
            .map(|d| (d, share))
            .chain(route.mirrors.iter().map(|m| {
                (
                    &m.destination,
                    m.percentage.as_ref().map_or(100.0, |p| p.value),
                )
            }));
        let mut out = Vec::new();
        for (d, share) in all {
            let Some((host, subset, port)) = self.check_destination(r, d) else {
                continue;
            };
            if !(0.0..=100.0).contains(&share) {
                self.err(r, d.pos, "mirror percentage must be between 0 and 100");
                continue;
            }
            if out.len() == 64 {
                self.err(r, d.pos, "a route may have at most 64 mirrors");
                break;
            }
            let dest = self.dest(
                &host,
                subset.as_deref(),
                port,
                label,
                HeaderEdits::default(),
                0,
            );
            out.push(Mirror {
                dest,
                share: fault::per_million(share),
            });
        }
        out
    }

    pub(super) fn default_rule(&mut self, host: &str) -> Rule {
        let label: Arc<str> = "default".into();
        let dest = self.dest(host, None, None, &label, HeaderEdits::default(), 100);
        Rule {
            local_stats: self.stats_id("", "", &label),
            label,
            matches: Vec::new(),
            action: Action::Forward(Split::new(vec![dest])),
            headers: HeaderEdits::default(),
            rewrite: None,
            timeout: None,
            fault: None,
            retry: RetryPolicy::istio_default(),
            fallback: None,
            mirrors: Vec::new(),
            affinity: None,
            max_request_bytes: None,
            rate_limit: None,
            cors: None,
            transform: None,
            response_cache: None,
        }
    }

    pub(super) fn action(
        &mut self,
        r: &Resource,
        route: &istio::HttpRoute,
        label: &str,
    ) -> Option<Action> {
        let kinds = [
            !route.route.is_empty(),
            route.redirect.is_some(),
            route.direct_response.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 if route.delegate.is_some() => {
                self.err(
                    r,
                    route.pos,
                    "delegate is not supported: inline the delegate's rules",
                );
                return None;
            }
            0 => {
                self.err(
                    r,
                    route.pos,
                    "an HTTP route needs one of route, redirect, directResponse",
                );
                return None;
            }
            1 => {}
            _ => {
                self.err(
                    r,
                    route.pos,
                    "route, redirect and directResponse are mutually exclusive",
                );
                return None;
            }
        }
        if route.rewrite.is_some() && (route.redirect.is_some() || route.direct_response.is_some())
        {
            self.err(
                r,
                route.pos,
                "rewrite cannot be combined with redirect or directResponse",
            );
        }
        if let Some(rd) = &route.redirect {
            return self.redirect(r, rd).map(Action::Redirect);
        }
        if let Some(dr) = &route.direct_response {
            let status = self.status(r, dr.pos, dr.status)?;
            let body = self.http_body(r, dr.body.as_ref())?;
            return Some(Action::Direct { status, body });
        }
        let several = route.route.len() > 1;
        let mut dests = Vec::new();
        for d in &route.route {
            let weight = match d.weight {
                Some(w) => w,
                None if several => 0,
                None => 100,
            };
            let Some((host, subset, port)) = self.check_destination(r, &d.destination) else {
                continue;
            };
            let headers = self.header_edits(r, d.headers.as_ref());
            dests.push(self.dest(&host, subset.as_deref(), port, label, headers, weight));
        }
        if dests.len() != route.route.len() {
            return None;
        }
        if dests.iter().all(|d| d.weight == 0) {
            self.err(
                r,
                route.pos,
                "the route's destinations have a total weight of 0: give at least one a weight",
            );
            return None;
        }
        Some(Action::Forward(Split::new(dests)))
    }

    pub(super) fn dest(
        &mut self,
        host: &str,
        subset: Option<&str>,
        port: Option<u16>,
        label: &str,
        headers: HeaderEdits,
        weight: u32,
    ) -> WeightedDest {
        let cluster = self.cluster(host, subset, port);
        let stats = self.stats_id(host, subset.unwrap_or(""), label);
        WeightedDest {
            cluster,
            weight,
            headers,
            stats,
        }
    }

    /// An `HTTPBody`: text, or base64 bytes.
    pub(super) fn http_body(
        &mut self,
        r: &Resource,
        body: Option<&istio::HttpBody>,
    ) -> Option<Bytes> {
        let Some(b) = body else {
            return Some(Bytes::new());
        };
        match (&b.string, &b.bytes) {
            (Some(s), None) => Some(Bytes::from(s.clone())),
            (None, Some(b64)) => match base64_decode(b64) {
                Some(v) => Some(Bytes::from(v)),
                None => {
                    self.err(r, b.pos, "body.bytes is not valid base64");
                    None
                }
            },
            _ => {
                self.err(r, b.pos, "body takes exactly one of `string`, `bytes`");
                None
            }
        }
    }

    /// Checks a destination; returns its host, subset and port.
    pub(super) fn check_destination(
        &mut self,
        r: &Resource,
        d: &istio::Destination,
    ) -> Option<(String, Option<String>, Option<u16>)> {
        let host = d.host.value.to_ascii_lowercase();
        if host.is_empty() {
            return None; // reported while decoding
        }
        let Some(service) = self.services.get(&host) else {
            self.err(
                r,
                d.host.pos,
                format!("destination host `{host}` is not declared by any ServiceEntry"),
            );
            return None;
        };
        let ports: Vec<u32> = service.entry.ports.iter().map(|p| p.number).collect();
        let port = match &d.port {
            Some(p) if !ports.contains(&p.number) => {
                self.err(
                    r,
                    p.pos,
                    format!(
                        "service `{host}` has no port {} (ports: {ports:?})",
                        p.number
                    ),
                );
                return None;
            }
            Some(p) => Some(p.number as u16),
            None => None,
        };
        if let Some(subset) = &d.subset {
            let defined = self
                .rules
                .get(&host)
                .is_some_and(|(_, dr)| dr.subsets.iter().any(|s| s.name.value == subset.value));
            if !defined {
                self.err(
                    r,
                    subset.pos,
                    format!(
                        "subset `{}` of `{host}` is not defined by a DestinationRule",
                        subset.value
                    ),
                );
                return None;
            }
        }
        Some((host, d.subset.as_ref().map(|s| s.value.clone()), port))
    }

    pub(super) fn stats_id(&mut self, service: &str, version: &str, route: &str) -> usize {
        let key = StatsKey {
            service: service.to_owned(),
            version: version.to_owned(),
            route: route.to_owned(),
        };
        if let Some(&id) = self.stats_ids.get(&key) {
            return id;
        }
        self.stats.push(key.clone());
        self.stats_ids.insert(key, self.stats.len() - 1);
        self.stats.len() - 1
    }
}
