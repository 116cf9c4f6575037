//! weir's HTTPRoute extensions that Kong's plugins also become: the response cache, the request
//! transformer and rate limits.

use super::*;

impl<'a> Checker<'a> {
    /// `responseCache` (Kong's `proxy-cache` config), compiled, with its store registered.
    pub(super) fn response_cache(
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
    pub(super) fn transform(
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
    pub(super) fn rate_limit(
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
            "ip" => LimitBy::Ip,
            "consumer" | "credential" => LimitBy::Consumer,
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
}
