//! Resources weir writes for the user, as Flagger writes them in a cluster: the apex routing of
//! a `Canary` whose `targetRef` is a Deployment (or DaemonSet).
//!
//! For `targetRef: {kind: Deployment, name: X}` the primary and the canary are the services
//! `X-primary` and `X-canary` (declared with ServiceEntries), and weir adds:
//! - a VirtualService `X` for the hosts `X` and `service.hosts`, on the `service.gateways` the
//!   config defines (`mesh` only when listed; the mesh alone without gateways), with one route
//!   (`service.match`, `retries`, `timeout`, `headers`, `corsPolicy`, `rewrite` passed
//!   through) to `X-primary` (weight 100) and `X-canary` (weight 0); a VirtualService `X` of
//!   the config's own is taken over (replaced, with a warning), as Flagger takes it over;
//! - DestinationRules for `X-primary` and `X-canary` with `service.trafficPolicy`, unless the
//!   config has its own for those hosts.
//!
//! Generated resources carry the Canary's file and position (errors point at the Canary) and
//! the annotation [`GENERATED_BY`]. The rollout controller then manages the route's weights as
//! it does for a VirtualService target.

use super::decode::Spanned;
use super::istio::{
    Destination, DestinationRule, HttpRoute, HttpRouteDestination, PortSelector, ServiceEntry,
    VirtualService,
};
use super::resource::{Metadata, Resource, ResourceSet, Spec, short_ref};

/// The annotation on generated resources: `Canary/NAME`.
pub const GENERATED_BY: &str = "weir.io/generated-by";

/// The mesh pseudo-gateway.
const MESH: &str = "mesh";

/// The services of a Deployment target `name`: primary and canary.
pub fn deployment_services(name: &str) -> (String, String) {
    (format!("{name}-primary"), format!("{name}-canary"))
}

/// Adds the apex routing of every Canary with a Deployment target.
pub fn apex_routing(set: &mut ResourceSet) {
    let mut generated = Vec::new();
    // VirtualServices the Canaries take over: their index, the Canary's place and name.
    let mut taken_over: Vec<(usize, String, String)> = Vec::new();
    for r in &set.resources {
        let Spec::Canary(c) = &r.spec else { continue };
        if !matches!(c.target_ref.kind.value.as_str(), "Deployment" | "DaemonSet") {
            continue;
        }
        let name = c.target_ref.name.value.to_ascii_lowercase();
        let svc = c.service.clone().unwrap_or_default();
        let (primary, canary) = deployment_services(&name);
        // Undeclared services are reported by validation, at the Canary; nothing is generated.
        if !(declared(set, &primary) && declared(set, &canary)) {
            continue;
        }
        let pos = c.service.as_ref().map_or(c.target_ref.name.pos, |s| s.pos);
        let meta = |resource: &str| Metadata {
            pos,
            name: Some(Spanned {
                pos,
                value: resource.to_owned(),
            }),
            namespace: r.metadata.namespace.clone(),
            annotations: [(GENERATED_BY.to_owned(), format!("Canary/{}", r.name()))].into(),
            ..Metadata::default()
        };
        let has = |kind: &str, test: &dyn Fn(&Resource) -> bool| {
            set.resources
                .iter()
                .any(|x| x.spec.kind() == kind && test(x))
        };
        // A VirtualService of the apex name that weir did not write is taken over, as Flagger
        // takes it over: the Canary's routing replaces it.
        if let Some(own) = set.resources.iter().position(|x| {
            x.spec.kind() == "VirtualService"
                && x.name() == name
                && !x.metadata.annotations.contains_key(GENERATED_BY)
        }) {
            taken_over.push((own, r.location(), r.name().to_owned()));
        }
        {
            let mut hosts = vec![name.clone()];
            hosts.extend(svc.hosts.iter().filter(|h| **h != name).cloned());
            // As Flagger binds it: to `service.gateways` (those the config defines; `mesh` only
            // when listed), to the mesh alone when there are none.
            let gateways: Vec<String> = svc
                .gateways
                .iter()
                .filter(|g| *g == MESH || gateway_defined(set, g))
                .cloned()
                .collect();
            let port = svc.port.filter(|&p| declares_port(set, &primary, p));
            let to = |host: &str, weight| HttpRouteDestination {
                pos,
                destination: Destination {
                    pos,
                    host: Spanned {
                        pos,
                        value: host.to_owned(),
                    },
                    subset: None,
                    port: port.map(|number| PortSelector { pos, number }),
                },
                weight: Some(weight),
                headers: None,
            };
            let route = HttpRoute {
                pos,
                name: Some(name.clone()),
                matches: svc.matches.clone(),
                route: vec![to(&primary, 100), to(&canary, 0)],
                rewrite: svc.rewrite.clone(),
                timeout: svc.timeout,
                retries: svc.retries.clone(),
                headers: svc.headers.clone(),
                cors_policy: svc.cors_policy.clone(),
                ..HttpRoute::default()
            };
            let vs = VirtualService {
                pos,
                hosts,
                gateways,
                http: vec![route],
                ..VirtualService::default()
            };
            generated.push(resource(r, meta(&name), Spec::VirtualService(vs)));
        }
        if let Some(policy) = &svc.traffic_policy {
            for host in [&primary, &canary] {
                if has(
                    "DestinationRule",
                    &|x| matches!(&x.spec, Spec::DestinationRule(d) if d.host.value.eq_ignore_ascii_case(host)),
                ) {
                    continue;
                }
                let dr = DestinationRule {
                    pos,
                    host: Spanned {
                        pos,
                        value: host.clone(),
                    },
                    traffic_policy: Some(policy.clone()),
                    ..DestinationRule::default()
                };
                generated.push(resource(r, meta(host), Spec::DestinationRule(dr)));
            }
        }
    }
    taken_over.sort_by_key(|(i, _, _)| std::cmp::Reverse(*i));
    taken_over.dedup_by_key(|(i, _, _)| *i);
    for (i, canary_at, canary) in taken_over {
        let own = set.resources.remove(i);
        set.warnings.push(format!(
            "{}: VirtualService `{}` is taken over by Canary `{canary}` ({canary_at}), as Flagger takes it over: the Canary's routing replaces it",
            own.location(),
            own.name()
        ));
    }
    set.resources.extend(generated);
}

fn resource(canary: &Resource, metadata: Metadata, spec: Spec) -> Resource {
    Resource {
        file: canary.file.clone(),
        pos: metadata.pos,
        api_version: "networking.istio.io/v1beta1".to_owned(),
        kind: spec.kind(),
        metadata,
        spec,
    }
}

/// Whether `gateway` (`mesh`, or a `[namespace/]name` reference) names a Gateway of `set`.
pub fn gateway_defined(set: &ResourceSet, gateway: &str) -> bool {
    gateway == MESH
        || set
            .resources
            .iter()
            .any(|x| matches!(x.spec, Spec::Gateway(_)) && x.name() == short_ref(gateway))
}

/// Whether a ServiceEntry declares `host`.
pub fn declared(set: &ResourceSet, host: &str) -> bool {
    entry_with(set, host, |_| true)
}

/// Whether a ServiceEntry for `host` declares port `number`.
fn declares_port(set: &ResourceSet, host: &str, number: u32) -> bool {
    entry_with(set, host, |se| se.ports.iter().any(|p| p.number == number))
}

fn entry_with(set: &ResourceSet, host: &str, test: impl Fn(&ServiceEntry) -> bool) -> bool {
    set.resources.iter().any(|r| match &r.spec {
        Spec::ServiceEntry(se) => {
            se.hosts.iter().any(|h| h.value.eq_ignore_ascii_case(host)) && test(se)
        }
        _ => false,
    })
}
