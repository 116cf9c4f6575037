//! Kong's `cors` plugin as Istio's `corsPolicy`.

use super::entities::{At, Errors};
use super::plugins::config_of;
use crate::config::decode::{Dur, Spanned};
use crate::config::istio::{CorsPolicy, StringMatch, UnmatchedPreflights};
use crate::config::kong::KongPlugin;
use std::time::Duration;

/// Kong's `cors` as Istio's `corsPolicy`.
pub(super) fn cors(plugin: &(At, KongPlugin), e: &mut Errors<'_>) -> Option<CorsPolicy> {
    let (at, p) = plugin;
    pub(super) const KEYS: [&str; 9] = [
        "origins",
        "methods",
        "headers",
        "exposed_headers",
        "credentials",
        "max_age",
        "preflight_continue",
        "private_network",
        "allow_origin_absent",
    ];
    let (pos, config) = config_of(plugin, &KEYS, e);
    let list = |key: &str| -> Vec<String> {
        config
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let flag = |key: &str| config.get(key).and_then(|v| v.as_bool()) == Some(true);
    if flag("private_network") {
        e.at(at, pos, "cors: private_network is not supported yet");
        return None;
    }
    let mut origins = list("origins");
    if origins.is_empty() {
        origins.push("*".to_owned());
    }
    let allow_origins = origins
        .iter()
        .map(|o| {
            if o == "*" {
                StringMatch::Regex(Spanned {
                    pos,
                    value: ".*".to_owned(),
                })
            } else if o.chars().any(|c| "^$*+?()[]{}|\\".contains(c)) {
                // Kong tests a regex without `:` against the origin's host alone.
                let value = if o.contains(':') {
                    o.clone()
                } else {
                    format!("[a-zA-Z][a-zA-Z0-9+.-]*://(?:{o})(?::[0-9]+)?")
                };
                StringMatch::Regex(Spanned { pos, value })
            } else {
                StringMatch::Exact(o.clone())
            }
        })
        .collect();
    let mut methods = list("methods");
    if methods.is_empty() {
        methods = [
            "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
        ]
        .map(str::to_owned)
        .to_vec();
    }
    Some(CorsPolicy {
        pos: p.pos,
        allow_origins,
        allow_methods: methods,
        allow_headers: list("headers"),
        expose_headers: list("exposed_headers"),
        max_age: config
            .get("max_age")
            .and_then(|v| v.as_f64())
            .map(|s| Dur(Duration::from_secs_f64(s.max(0.0)))),
        allow_credentials: Some(flag("credentials")),
        // Kong answers every preflight; one from an origin not allowed gets no origin header.
        unmatched_preflights: Some(UnmatchedPreflights::Ignore),
        mirror_request_headers: Some(true),
        forward_preflights: Some(flag("preflight_continue")),
        ..CorsPolicy::default()
    })
}
