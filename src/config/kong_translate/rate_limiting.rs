//! Kong's `rate-limiting` plugin (local policy) as weir's `rateLimit`.

use super::entities::{At, Errors};
use super::plugins::config_of;
use crate::config::decode::Spanned;
use crate::config::istio::RateLimitSettings;
use crate::config::kong::KongPlugin;

/// Kong's `rate-limiting` (local policy) as weir's `rateLimit`, counting under `scope`.
pub(super) fn rate_limit(
    plugin: &(At, KongPlugin),
    scope: String,
    e: &mut Errors<'_>,
) -> Option<RateLimitSettings> {
    let (at, p) = plugin;
    pub(super) const KEYS: [&str; 20] = [
        "second",
        "minute",
        "hour",
        "day",
        "month",
        "year",
        "limit_by",
        "header_name",
        "path",
        "policy",
        "fault_tolerant",
        "hide_client_headers",
        "error_code",
        "error_message",
        "sync_rate",
        "redis",
        "redis_host",
        "redis_port",
        "redis_timeout",
        "redis_database",
    ];
    let (pos, config) = config_of(plugin, &KEYS, e);
    let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    if let Some(policy) = text("policy")
        && policy != "local"
    {
        e.at(
            at,
            pos,
            format!("rate-limiting: policy {policy} is not supported (weir counts locally: policy local)"),
        );
        return None;
    }
    let mut count = |key: &str| match config.get(key) {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                e.at(
                    at,
                    pos,
                    format!("rate-limiting: {key} must be a whole number above 0"),
                );
                None
            }
        },
    };
    let settings = RateLimitSettings {
        pos: p.pos,
        second: count("second"),
        minute: count("minute"),
        hour: count("hour"),
        day: count("day"),
        month: count("month"),
        year: count("year"),
        limit_by: Some(Spanned {
            pos,
            value: text("limit_by").unwrap_or_else(|| "consumer".to_owned()),
        }),
        header_name: text("header_name"),
        path: text("path"),
        hide_client_headers: config.get("hide_client_headers").and_then(|v| v.as_bool()),
        error_code: config
            .get("error_code")
            .and_then(|v| v.as_u64())
            .map(|c| c as u16),
        error_message: text("error_message"),
        scope: Some(scope),
    };
    Some(settings)
}
