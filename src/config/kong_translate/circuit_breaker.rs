//! The seed's `circuit-breaker` plugin as weir's DestinationRule extension `circuitBreaker`.

use super::entities::{At, Errors, Kong, Service};
use super::plugins::config_of;
use crate::config::decode::Dur;
use crate::config::istio::CircuitBreakerSettings;
use crate::config::kong::KongPlugin;
use std::time::Duration;

/// The `circuit-breaker` plugin that applies to a service: its own, else a global one.
pub(super) fn breaker_plugin<'k>(kong: &'k Kong, s: &'k Service) -> Option<&'k (At, KongPlugin)> {
    let on =
        |(_, p): &&(At, KongPlugin)| p.name.value == "circuit-breaker" && p.enabled != Some(false);
    s.plugins
        .iter()
        .find(on)
        .or_else(|| kong.plugins.iter().find(on))
}

/// The seed's `circuit-breaker` config (seconds): the DestinationRule extension, and the
/// request timeout (`timeout`).
pub(super) fn breaker_settings(
    plugin: &(At, KongPlugin),
    e: &mut Errors<'_>,
) -> (CircuitBreakerSettings, Option<Duration>) {
    let (at, p) = plugin;
    pub(super) const KEYS: [&str; 5] = [
        "failure_threshold",
        "window_size",
        "timeout",
        "recovery_timeout",
        "half_open_requests",
    ];
    let (pos, config) = config_of(plugin, &KEYS, e);
    let mut number = |key: &str, default: f64| -> f64 {
        match config.get(key) {
            None => default,
            Some(v) => match v.as_f64() {
                Some(n) if n > 0.0 => n,
                _ => {
                    e.at(
                        at,
                        pos,
                        format!("circuit-breaker: {key} must be a number above 0"),
                    );
                    default
                }
            },
        }
    };
    let settings = CircuitBreakerSettings {
        pos: p.pos,
        failure_threshold: Some(number("failure_threshold", 5.0) as u32),
        window_size: Some(Dur(Duration::from_secs_f64(number("window_size", 60.0)))),
        recovery_timeout: Some(Dur(Duration::from_secs_f64(number(
            "recovery_timeout",
            60.0,
        )))),
        half_open_requests: Some(number("half_open_requests", 1.0) as u32),
    };
    let timeout = config
        .get("timeout")
        .map(|_| Duration::from_secs_f64(number("timeout", 30.0)));
    (settings, timeout)
}
