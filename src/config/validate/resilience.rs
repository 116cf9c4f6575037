//! Route resilience policies: `retries`, and weir's `fallback`.

use super::*;
use crate::policy::fallback::{CacheSpec, Fallback, StaticResponse};
use crate::policy::retry::{DEFAULT_BACKOFF, RetryOn, RetryPolicy};

impl<'a> Checker<'a> {
    /// `retries`, as Istio converts it: absent gives Istio's default policy, `attempts` 0 (or
    /// unset) turns retries off, an unset `retryOn` keeps the default conditions.
    pub(super) fn retry_policy(
        &mut self,
        r: &Resource,
        retries: Option<&istio::HttpRetry>,
    ) -> RetryPolicy {
        let Some(rt) = retries else {
            return RetryPolicy::istio_default();
        };
        let mut policy = RetryPolicy::istio_default();
        policy.attempts = rt.attempts.unwrap_or(0);
        if let Some(on) = &rt.retry_on {
            let mut set = RetryOn::default();
            for cond in on.value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                if !set.add(cond) {
                    self.err(r, on.pos, format!("unknown retryOn condition `{cond}`"));
                } else if RetryOn::inert(cond) {
                    self.warn(r, on.pos, format!("retryOn `{cond}` never matches in weir"));
                }
            }
            policy.on = set;
        }
        for (name, d) in [
            ("perTryTimeout", rt.per_try_timeout),
            ("backoff", rt.backoff),
        ] {
            if d.is_some_and(|d| d.0 < Duration::from_millis(1)) {
                self.err(r, rt.pos, format!("retries.{name} must be at least 1ms"));
            }
        }
        policy.per_try_timeout = rt.per_try_timeout.map(|d| d.0);
        policy.backoff = rt.backoff.map_or(DEFAULT_BACKOFF, |d| d.0);
        policy.ignore_previous_hosts = rt.retry_ignore_previous_hosts.unwrap_or(true);
        policy.non_idempotent = rt.retry_non_idempotent.unwrap_or(false);
        policy
    }

    /// weir's `fallback`: a stale cache (kept across reloads under the VirtualService and rule
    /// names), a backup destination, a fixed response.
    pub(super) fn fallback(
        &mut self,
        r: &Resource,
        f: &istio::HttpFallback,
        label: &str,
    ) -> Option<Box<Fallback>> {
        if f.stale_cache.is_none() && f.destination.is_none() && f.response.is_none() {
            self.err(
                r,
                f.pos,
                "fallback needs one of staleCache, destination, response",
            );
            return None;
        }
        let cache = f.stale_cache.as_ref().map(|c| {
            let d = CacheSpec::default();
            for (name, v) in [
                ("maxEntries", c.max_entries),
                ("maxBodyBytes", c.max_body_bytes),
            ] {
                if v == Some(0) {
                    self.err(r, c.pos, format!("staleCache.{name} must be above 0"));
                }
            }
            let spec = CacheSpec {
                max_age: c.max_age.map_or(d.max_age, |a| a.0),
                max_entries: c.max_entries.map_or(d.max_entries, |n| n as usize),
                max_body: c.max_body_bytes.map_or(d.max_body, |n| n as usize),
            };
            self.caches.push((format!("{}/{label}", r.name()), spec));
            self.caches.len() - 1
        });
        let backup = match &f.destination {
            Some(d) => {
                let (host, subset, port) = self.check_destination(r, d)?;
                Some(self.dest(
                    &host,
                    subset.as_deref(),
                    port,
                    label,
                    HeaderEdits::default(),
                    100,
                ))
            }
            None => None,
        };
        let response = match &f.response {
            Some(resp) => {
                let status = self.status(r, resp.pos, resp.status)?;
                let body = self.http_body(r, resp.body.as_ref())?;
                let mut headers = http::HeaderMap::new();
                for (k, v) in &resp.headers {
                    match (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        (Ok(k), Ok(v)) => {
                            headers.append(k, v);
                        }
                        _ => self.err(r, resp.pos, format!("invalid header `{k}: {v}`")),
                    }
                }
                Some(StaticResponse {
                    status,
                    headers,
                    body,
                })
            }
            None => None,
        };
        Some(Box::new(Fallback {
            cache,
            backup,
            response,
        }))
    }
}
