//! Route resilience policies: `retries`.

use super::*;
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
}
