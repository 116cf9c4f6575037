//! Flagger resources: Canary targets, metrics, webhooks and session affinity.

use super::*;

impl<'a> Checker<'a> {
    /// A Deployment target `X`: the services `X-primary` and `X-canary` must be declared, and a
    /// VirtualService `X` the config writes itself must route to both.
    pub(super) fn deployment_target(&mut self, r: &Resource, canary: &Canary, set: &ResourceSet) {
        let target = &canary.target_ref.name;
        let name = target.value.to_ascii_lowercase();
        let (primary, canary_host) = generate::deployment_services(&name);
        for host in [&primary, &canary_host] {
            if !generate::declared(set, host) {
                self.err(
                    r,
                    target.pos,
                    format!("a Deployment target `{name}` needs its service `{host}` declared with a ServiceEntry"),
                );
            }
        }
        let own = set.resources.iter().find_map(|x| match &x.spec {
            Spec::VirtualService(vs)
                if x.name() == name
                    && !x.metadata.annotations.contains_key(generate::GENERATED_BY) =>
            {
                Some(vs)
            }
            _ => None,
        });
        if let Some(vs) = own {
            let routes_to = |host: &str| {
                vs.http
                    .iter()
                    .flat_map(|h| &h.route)
                    .any(|d| d.destination.host.value.eq_ignore_ascii_case(host))
            };
            if !(routes_to(&primary) && routes_to(&canary_host)) {
                self.err(
                    r,
                    target.pos,
                    format!("VirtualService `{name}` must route to `{primary}` and `{canary_host}` (or leave it out: weir generates it)"),
                );
            }
        }
        if let Some(svc) = &canary.service {
            for g in &svc.gateways {
                if !generate::gateway_defined(set, g) {
                    self.warn(
                        r,
                        svc.pos,
                        format!("gateway `{g}` is not defined: the routing generated for `{name}` goes without it"),
                    );
                }
            }
        }
    }

    pub(super) fn canary(&mut self, r: &Resource, canary: &Canary, set: &ResourceSet) {
        if let Some(svc) = &canary.service
            && svc.delegation == Some(true)
        {
            self.err(
                r,
                svc.pos,
                "service.delegation is not supported: weir has no parent VirtualServices to merge a delegate into",
            );
        }
        let target = &canary.target_ref;
        // Without a targetRef (line 0: not in the file) decoding has said so, at the spec's
        // place; there is no target to check.
        if target.kind.pos.line == 0 {
            return;
        }
        match target.kind.value.as_str() {
            "VirtualService" => {
                let vs = set.resources.iter().find_map(|x| match &x.spec {
                    Spec::VirtualService(vs) if x.name() == target.name.value => Some(vs),
                    _ => None,
                });
                let Some(vs) = vs else {
                    self.err(
                        r,
                        target.name.pos,
                        format!("VirtualService `{}` is not defined", target.name.value),
                    );
                    return;
                };
                for (field, subset) in [
                    ("primarySubset", &canary.primary_subset),
                    ("canarySubset", &canary.canary_subset),
                ] {
                    let Some(subset) = subset else {
                        self.err(
                            r,
                            canary.pos,
                            format!("a VirtualService target needs `{field}`"),
                        );
                        continue;
                    };
                    let used = vs.http.iter().flat_map(|h| &h.route).any(|d| {
                        d.destination.subset.as_ref().map(|s| &s.value) == Some(&subset.value)
                    });
                    // A route to the primary without the canary gets the canary at weight 0 when
                    // the rollout routes (as Flagger's own VirtualService has both): only the
                    // primary must be there.
                    if !used && field == "canarySubset" {
                        // It is added next to the primary: its subset must be defined there.
                        let primary = canary.primary_subset.as_ref().and_then(|p| {
                            vs.http.iter().flat_map(|h| &h.route).find(|d| {
                                d.destination.subset.as_ref().map(|s| &s.value) == Some(&p.value)
                            })
                        });
                        if let Some(primary) = primary {
                            let mut dest = primary.destination.clone();
                            dest.subset = Some(subset.clone());
                            self.check_destination(r, &dest);
                        }
                    }
                    if !used && field == "primarySubset" {
                        self.err(
                            r,
                            subset.pos,
                            format!(
                                "subset `{}` is not a destination of VirtualService `{}`",
                                subset.value, target.name.value
                            ),
                        );
                    }
                }
            }
            "Deployment" | "DaemonSet" => self.deployment_target(r, canary, set),
            other => self.err(
                r,
                target.kind.pos,
                format!("targetRef kind `{other}` is not supported (VirtualService or Deployment)"),
            ),
        }
        if let Some(analysis) = &canary.analysis {
            for m in &analysis.metrics {
                let builtin = matches!(
                    m.name.value.as_str(),
                    "request-success-rate" | "request-duration" | "error-rate-vs-primary"
                );
                if let Some(c) = m.confidence
                    && !(c > 50.0 && c < 100.0)
                {
                    self.err(
                        r,
                        m.pos,
                        "confidence must be a percentage above 50 and below 100",
                    );
                }
                match &m.template_ref {
                    Some(t) => {
                        let found = set.resources.iter().any(|x| {
                            matches!(x.spec, Spec::MetricTemplate(_)) && x.name() == t.name.value
                        });
                        if !found {
                            self.err(r, t.name.pos, format!("MetricTemplate `{}` is not defined", t.name.value));
                        }
                    }
                    None if !builtin && m.query.is_none() => self.err(
                        r,
                        m.name.pos,
                        format!(
                            "metric `{}` is not builtin (request-success-rate, request-duration, error-rate-vs-primary) and has no templateRef",
                            m.name.value
                        ),
                    ),
                    None => {}
                }
            }
            for w in &analysis.webhooks {
                let kind = w.kind.as_deref().unwrap_or("rollout");
                if !matches!(
                    kind,
                    "confirm-rollout"
                        | "pre-rollout"
                        | "rollout"
                        | "confirm-traffic-increase"
                        | "confirm-promotion"
                        | "post-rollout"
                        | "rollback"
                        | "event"
                ) {
                    self.err(r, w.pos, format!("unknown webhook type `{kind}`"));
                }
            }
            if let Some(sa) = &analysis.session_affinity {
                self.affinity(r, sa);
            }
            if analysis.max_weight.is_some_and(|w| w > 100) {
                self.err(r, analysis.pos, "maxWeight must be at most 100");
            }
        }
        if let Some(a) = &canary.analysis {
            for m in a.metrics.iter().filter(|m| m.template_ref.is_none()) {
                if m.query.is_some() && canary.metrics_server.is_none() {
                    self.err(
                        r,
                        m.pos,
                        format!(
                            "metric `{}` has a query but the Canary has no metricsServer to run it on",
                            m.name.value
                        ),
                    );
                }
            }
            for m in &a.metrics {
                let Some(t) = &m.template_ref else { continue };
                let template = set.resources.iter().find_map(|x| match &x.spec {
                    Spec::MetricTemplate(mt) if x.name() == t.name.value => Some(mt),
                    _ => None,
                });
                let Some(template) = template else { continue };
                let p = &template.provider;
                if p.kind.value != "prometheus" {
                    self.warn(
                        r,
                        m.pos,
                        format!(
                            "metric `{}`: provider `{}` is not supported (prometheus is); the check will fail",
                            m.name.value, p.kind.value
                        ),
                    );
                } else if !p
                    .address
                    .as_deref()
                    .is_some_and(|a| a.starts_with("http://"))
                {
                    self.err(
                        r,
                        m.pos,
                        format!(
                            "metric `{}`: MetricTemplate `{}` needs an http:// provider address",
                            m.name.value, t.name.value
                        ),
                    );
                }
            }
            for w in &a.webhooks {
                if w.url.starts_with("https://") {
                    self.warn(
                        r,
                        w.pos,
                        format!(
                            "webhook `{}`: https is not supported yet; calls will fail",
                            w.name
                        ),
                    );
                } else if !w.url.starts_with("http://") || w.url.parse::<http::Uri>().is_err() {
                    self.err(
                        r,
                        w.pos,
                        format!("webhook `{}`: `{}` is not an http:// URL", w.name, w.url),
                    );
                }
            }
            if a.iterations.is_some_and(|i| i > 0) && !a.matches.is_empty() {
                for m in &a.matches {
                    self.request_match(r, m);
                }
            }
        }
    }
}
