//! VirtualService rules: matches, policies, mirrors and session affinity, and the default rule of
//! a host without one.

use super::*;

impl<'a> Checker<'a> {
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
            let experiment = match &action {
                Action::Forward(_) => self.rule_experiment(r, route, &label),
                _ => None,
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
                experiment,
                access: self.kong_scope(r, route).map(|i| Box::from([i])),
            });
        }
        rules
    }

    /// weir's `sessionAffinity` (Flagger's fields): the cohort cookie.
    pub(super) fn affinity(
        &mut self,
        r: &Resource,
        sa: &crate::config::istio::SessionAffinity,
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
    pub(super) fn mirrors(
        &mut self,
        r: &Resource,
        route: &istio::HttpRoute,
        label: &str,
    ) -> Vec<Mirror> {
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
            experiment: None,
            access: None,
        }
    }
}
