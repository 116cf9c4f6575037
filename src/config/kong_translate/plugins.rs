//! The plugins a route runs: which applies (route, service, global: Kong's precedence), their
//! configs read with positions, and the check that every plugin is known and runnable.

use super::entities::{At, Errors, KNOWN_PLUGINS, Kong, RUN_PLUGINS, Route, Service};
use crate::config::kong::KongPlugin;
use crate::config::yaml::Pos;

/// The enabled plugin `name` that applies to a route: its own, else its service's, else a
/// global one (Kong's precedence).
pub(super) fn plugin_for<'k>(
    kong: &'k Kong,
    service: Option<&'k Service>,
    route: &'k Route,
    name: &str,
) -> Option<&'k (At, KongPlugin)> {
    let on = |(_, p): &&(At, KongPlugin)| p.name.value == name && p.enabled != Some(false);
    route
        .plugins
        .iter()
        .find(on)
        .or_else(|| service.and_then(|s| s.plugins.iter().find(on)))
        .or_else(|| kong.plugins.iter().find(on))
}

/// A plugin's config as a JSON object (empty when absent), and where it is written; a field
/// not in `known` is reported.
pub(super) fn config_of<'p>(
    (at, p): &'p (At, KongPlugin),
    known: &[&str],
    e: &mut Errors<'_>,
) -> (Pos, &'p serde_json::Map<String, serde_json::Value>) {
    static EMPTY: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> =
        std::sync::LazyLock::new(serde_json::Map::new);
    let pos = p.config.as_ref().map_or(p.pos, |c| c.pos);
    let config = p
        .config
        .as_ref()
        .and_then(|c| c.json.as_object())
        .unwrap_or(&EMPTY);
    for key in config.keys().filter(|k| !known.contains(&k.as_str())) {
        e.at(
            at,
            pos,
            format!(
                "{}: unknown field `{key}` (expected {})",
                p.name.value,
                known.join(", ")
            ),
        );
    }
    (pos, config)
}

pub(super) fn check_plugins(kong: &Kong, e: &mut Errors<'_>) {
    for (at, p) in kong.routes.iter().flat_map(|r| &r.plugins) {
        if p.name.value == "circuit-breaker" {
            e.at(
                at,
                p.name.pos,
                "circuit-breaker applies to a service (or to all), not to a route",
            );
        }
    }
    let all = kong
        .plugins
        .iter()
        .chain(kong.services.iter().flat_map(|s| &s.plugins))
        .chain(kong.routes.iter().flat_map(|r| &r.plugins));
    for (at, p) in all {
        let name = p.name.value.as_str();
        if !KNOWN_PLUGINS.contains(&name) {
            e.at(
                at,
                p.name.pos,
                format!(
                    "unknown plugin `{name}`: weir runs {}",
                    KNOWN_PLUGINS.join(", ")
                ),
            );
        } else if !RUN_PLUGINS.contains(&name) && p.enabled != Some(false) {
            e.at(
                at,
                p.name.pos,
                format!("plugin `{name}` is not supported yet"),
            );
        }
    }
}
