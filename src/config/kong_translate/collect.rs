//! Collecting a set's Kong resources (the declarative config and the seed's Kong kinds) into
//! services, routes, upstreams and plugins, each with its place.

use super::entities::{
    At, Errors, Kong, PLUGINS_ANNOTATION, RUN_PLUGINS, Route, Service, Upstream,
};
use crate::config::decode::{Opaque, Spanned};
use crate::config::kong::{KongConfig, KongPlugin, KongRoute, KongService, Named};
use crate::config::resource::{Resource, ResourceSet, Spec};
use std::collections::HashMap;
use std::sync::Arc;

pub(super) fn collect(set: &ResourceSet, e: &mut Errors<'_>) -> Kong {
    let mut kong = Kong::default();
    // KongPlugin resources by name, for the `konghq.com/plugins` annotations.
    let mut named_plugins: HashMap<&str, (At, KongPlugin)> = HashMap::new();
    for r in &set.resources {
        if let Spec::KongPlugin(p) = &r.spec {
            let at = At {
                file: r.file.clone(),
                pos: r.pos,
            };
            named_plugins.insert(r.name(), (at, p.plugin()));
        }
    }
    let annotated = |r: &Resource, e: &mut Errors<'_>| -> Vec<(At, KongPlugin)> {
        let Some(list) = r.metadata.annotations.get(PLUGINS_ANNOTATION) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for name in plugin_names(list) {
            match named_plugins.get(name) {
                Some(p) => out.push(p.clone()),
                None => e.at(
                    &At {
                        file: r.file.clone(),
                        pos: r.pos,
                    },
                    r.metadata.pos,
                    format!("{PLUGINS_ANNOTATION}: no KongPlugin named `{name}`"),
                ),
            }
        }
        out
    };
    // KongServices: one with a spec, perhaps others of the same name adding plugins only.
    let mut overlays: Vec<(String, Vec<(At, KongPlugin)>)> = Vec::new();
    for r in &set.resources {
        let at = At {
            file: r.file.clone(),
            pos: r.pos,
        };
        let name = || Spanned {
            pos: r.metadata.name.as_ref().map_or(r.pos, |n| n.pos),
            value: r.name().to_owned(),
        };
        match &r.spec {
            Spec::Kong(cfg) => {
                let version = match &cfg.format_version.value.0 {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !matches!(version.as_str(), "1.1" | "2.1" | "3.0") {
                    e.at(
                        &at,
                        cfg.format_version.pos,
                        format!("_format_version {version}: weir reads 1.1, 2.1 and 3.0"),
                    );
                }
                refuse_unsupported(cfg, &at, e);
                for s in &cfg.services {
                    // Kong names a service by its id when it has no name; weir, which keeps no
                    // ids, by its place in the file.
                    let name = match (&s.name, &s.id) {
                        (Some(n), _) => n.value.clone(),
                        (None, Some(id)) => id.clone(),
                        (None, None) => format!("service-line-{}", s.pos.line),
                    };
                    for route in &s.routes {
                        kong.routes.push(Route {
                            at: At {
                                file: r.file.clone(),
                                pos: route.pos,
                            },
                            spec: migrated(route, &version),
                            service: name.clone(),
                            plugins: with_at(&r.file, &route.plugins),
                        });
                    }
                    kong.services.push(Service {
                        name,
                        at: At {
                            file: r.file.clone(),
                            pos: s.pos,
                        },
                        spec: s.clone(),
                        plugins: with_at(&r.file, &s.plugins),
                    });
                }
                for route in &cfg.routes {
                    let Some(service) = &route.service else {
                        e.at(&at, route.pos, "a top-level route needs `service`");
                        continue;
                    };
                    kong.routes.push(Route {
                        at: At {
                            file: r.file.clone(),
                            pos: route.pos,
                        },
                        spec: migrated(route, &version),
                        service: service.0.value.clone(),
                        plugins: with_at(&r.file, &route.plugins),
                    });
                }
                for u in &cfg.upstreams {
                    kong.upstreams.push(Upstream {
                        at: At {
                            file: r.file.clone(),
                            pos: u.pos,
                        },
                        spec: u.clone(),
                    });
                }
                kong.plugins.extend(with_at(&r.file, &cfg.plugins));
            }
            Spec::KongService(spec) => {
                let plugins = annotated(r, e);
                match spec {
                    Some(spec) => kong.services.push(Service {
                        name: r.name().to_owned(),
                        at,
                        spec: spec.named(name()),
                        plugins,
                    }),
                    None => overlays.push((r.name().to_owned(), plugins)),
                }
            }
            Spec::KongUpstream(spec) => kong.upstreams.push(Upstream {
                at,
                spec: spec.named(name()),
            }),
            Spec::KongRoute(spec) => {
                let Some(service) = &spec.service else {
                    e.at(&at, spec.pos, "a KongRoute needs `service`");
                    continue;
                };
                kong.routes.push(Route {
                    at,
                    spec: spec.named(name()),
                    service: service.0.value.clone(),
                    plugins: annotated(r, e),
                });
            }
            _ => {}
        }
    }
    unattached_plugins(set, &mut kong);
    // Top-level plugins that name a service or route go to it; the rest are global.
    for (at, p) in std::mem::take(&mut kong.plugins) {
        let target =
            |r: &Option<crate::config::kong::ServiceRef>| r.as_ref().map(|x| x.0.value.clone());
        if let Some(name) = target(&p.service) {
            match kong.services.iter_mut().find(|s| s.name == name) {
                Some(s) => s.plugins.push((at, p)),
                None => e.at(
                    &at,
                    p.pos,
                    format!("plugin `{}`: no service named `{name}`", p.name.value),
                ),
            }
        } else if let Some(name) = target(&p.route) {
            let found = kong
                .routes
                .iter_mut()
                .find(|r| r.spec.name.as_ref().is_some_and(|n| n.value == name));
            match found {
                Some(r) => r.plugins.push((at, p)),
                None => e.at(
                    &at,
                    p.pos,
                    format!("plugin `{}`: no route named `{name}`", p.name.value),
                ),
            }
        } else {
            kong.plugins.push((at, p));
        }
    }
    for (name, plugins) in overlays {
        match kong.services.iter_mut().find(|s| s.name == name) {
            Some(s) => s.plugins.extend(plugins),
            None => {
                // Only metadata (the seed's circuit-breaker snippet): the service is reached as
                // the Kubernetes Service of that name would be, at its name, port 80.
                let Some(r) = set
                    .resources
                    .iter()
                    .find(|r| matches!(r.spec, Spec::KongService(None)) && r.name() == name)
                else {
                    continue;
                };
                let at = At {
                    file: r.file.clone(),
                    pos: r.pos,
                };
                kong.warnings.push(format!(
                    "{}: KongService `{name}` has no spec: weir sends its traffic to host `{name}`, port 80, as to the Kubernetes Service of that name",
                    r.location()
                ));
                let spec = KongService {
                    pos: r.pos,
                    host: Some(Spanned {
                        pos: r.pos,
                        value: name.clone(),
                    }),
                    port: Some(80),
                    ..KongService::default()
                };
                kong.services.push(Service {
                    name: name.clone(),
                    at,
                    spec: spec.named(Spanned {
                        pos: r.pos,
                        value: name,
                    }),
                    plugins,
                });
            }
        }
    }
    kong
}

/// Parts of Kong's declarative format weir refuses, each with the reason and what to write
/// instead.
fn refuse_unsupported(cfg: &KongConfig, at: &At, e: &mut Errors<'_>) {
    // An empty list asks for nothing.
    fn given(x: &Option<Spanned<Opaque>>) -> Option<&Spanned<Opaque>> {
        x.as_ref().filter(|x| match &x.value.0 {
            serde_json::Value::Null => false,
            serde_json::Value::Array(items) => !items.is_empty(),
            _ => true,
        })
    }
    if let Some(c) = given(&cfg.certificates) {
        e.at(
            at,
            c.pos,
            "certificates are not supported: serve TLS with an Istio Gateway server's `tls` (certificate files weir reloads)",
        );
    }
    if let Some(v) = given(&cfg.vaults) {
        e.at(
            at,
            v.pos,
            "vaults are not supported: weir reads its secrets from files (Gateway and DestinationRule `tls`, --admin-token-file)",
        );
    }
    let routes = cfg
        .routes
        .iter()
        .chain(cfg.services.iter().flat_map(|s| &s.routes));
    for route in routes {
        if let Some(x) = &route.expression {
            e.at(
                at,
                x.pos,
                "expression routes (the expressions router) are not supported: write paths, hosts, methods and headers, which weir ranks as Kong's traditional router does",
            );
        }
    }
}

/// A route as Kong 3 reads it: in a file of an older format (1.1, 2.1), a path that is not a
/// plain path (letters, digits, `.-_~/%`) was a regex, and is marked as one (`~`), as Kong's
/// migration of such files does.
fn migrated(route: &KongRoute, version: &str) -> KongRoute {
    let mut route = route.clone();
    if version != "3.0" {
        for p in &mut route.paths {
            let plain = p
                .value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_~/%".contains(&b));
            if !plain && !p.value.starts_with('~') {
                p.value.insert(0, '~');
            }
        }
    }
    route
}

pub(super) fn with_at(file: &Arc<str>, plugins: &[KongPlugin]) -> Vec<(At, KongPlugin)> {
    plugins
        .iter()
        .map(|p| {
            (
                At {
                    file: file.clone(),
                    pos: p.pos,
                },
                p.clone(),
            )
        })
        .collect()
}

/// The KongPlugin names a `konghq.com/plugins` annotation lists.
fn plugin_names(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// Warns of KongPlugins that nothing attaches and that name a plugin weir does not run: they
/// load, but would be refused where attached.
fn unattached_plugins(set: &ResourceSet, kong: &mut Kong) {
    let attached: Vec<&str> = set
        .resources
        .iter()
        .filter_map(|r| r.metadata.annotations.get(PLUGINS_ANNOTATION))
        .flat_map(|list| plugin_names(list))
        .collect();
    for r in &set.resources {
        let Spec::KongPlugin(p) = &r.spec else {
            continue;
        };
        let plugin = p.plugin();
        let name = plugin.name.value.as_str();
        if !attached.contains(&r.name()) && !RUN_PLUGINS.contains(&name) {
            kong.warnings.push(format!(
                "{}: KongPlugin `{}` is attached to nothing, and weir does not run `{name}` (it runs {}): attached, it would be refused",
                r.location(),
                r.name(),
                RUN_PLUGINS.join(", ")
            ));
        }
    }
}
