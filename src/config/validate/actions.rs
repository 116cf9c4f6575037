//! A rule's action (forward with weights, redirect, direct response) and its destinations.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn action(
        &mut self,
        r: &Resource,
        route: &istio::HttpRoute,
        label: &str,
    ) -> Option<Action> {
        let kinds = [
            !route.route.is_empty(),
            route.redirect.is_some(),
            route.direct_response.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 if route.delegate.is_some() => {
                self.err(
                    r,
                    route.pos,
                    "delegate is not supported: inline the delegate's rules",
                );
                return None;
            }
            0 => {
                self.err(
                    r,
                    route.pos,
                    "an HTTP route needs one of route, redirect, directResponse",
                );
                return None;
            }
            1 => {}
            _ => {
                self.err(
                    r,
                    route.pos,
                    "route, redirect and directResponse are mutually exclusive",
                );
                return None;
            }
        }
        if route.rewrite.is_some() && (route.redirect.is_some() || route.direct_response.is_some())
        {
            self.err(
                r,
                route.pos,
                "rewrite cannot be combined with redirect or directResponse",
            );
        }
        if let Some(rd) = &route.redirect {
            return self.redirect(r, rd).map(Action::Redirect);
        }
        if let Some(dr) = &route.direct_response {
            let status = self.status(r, dr.pos, dr.status)?;
            let body = self.http_body(r, dr.body.as_ref())?;
            return Some(Action::Direct { status, body });
        }
        let several = route.route.len() > 1;
        let mut dests = Vec::new();
        for d in &route.route {
            let weight = match d.weight {
                Some(w) => w,
                None if several => 0,
                None => 100,
            };
            let Some((host, subset, port)) = self.check_destination(r, &d.destination) else {
                continue;
            };
            let headers = self.header_edits(r, d.headers.as_ref());
            dests.push(self.dest(&host, subset.as_deref(), port, label, headers, weight));
        }
        if dests.len() != route.route.len() {
            return None;
        }
        if dests.iter().all(|d| d.weight == 0) {
            self.err(
                r,
                route.pos,
                "the route's destinations have a total weight of 0: give at least one a weight",
            );
            return None;
        }
        Some(Action::Forward(Split::new(dests)))
    }

    pub(super) fn dest(
        &mut self,
        host: &str,
        subset: Option<&str>,
        port: Option<u16>,
        label: &str,
        headers: HeaderEdits,
        weight: u32,
    ) -> WeightedDest {
        let cluster = self.cluster(host, subset, port);
        let stats = self.stats_id(host, subset.unwrap_or(""), label);
        WeightedDest {
            cluster,
            weight,
            headers,
            stats,
        }
    }

    /// An `HTTPBody`: text, or base64 bytes.
    pub(super) fn http_body(
        &mut self,
        r: &Resource,
        body: Option<&istio::HttpBody>,
    ) -> Option<Bytes> {
        let Some(b) = body else {
            return Some(Bytes::new());
        };
        match (&b.string, &b.bytes) {
            (Some(s), None) => Some(Bytes::from(s.clone())),
            (None, Some(b64)) => match base64_decode(b64) {
                Some(v) => Some(Bytes::from(v)),
                None => {
                    self.err(r, b.pos, "body.bytes is not valid base64");
                    None
                }
            },
            _ => {
                self.err(r, b.pos, "body takes exactly one of `string`, `bytes`");
                None
            }
        }
    }

    /// Checks a destination; returns its host, subset and port.
    pub(super) fn check_destination(
        &mut self,
        r: &Resource,
        d: &istio::Destination,
    ) -> Option<(String, Option<String>, Option<u16>)> {
        let host = d.host.value.to_ascii_lowercase();
        if host.is_empty() {
            return None; // reported while decoding
        }
        let Some(service) = self.services.get(&host) else {
            self.err(
                r,
                d.host.pos,
                format!("destination host `{host}` is not declared by any ServiceEntry"),
            );
            return None;
        };
        let ports: Vec<u32> = service.entry.ports.iter().map(|p| p.number).collect();
        let port = match &d.port {
            Some(p) if !ports.contains(&p.number) => {
                self.err(
                    r,
                    p.pos,
                    format!(
                        "service `{host}` has no port {} (ports: {ports:?})",
                        p.number
                    ),
                );
                return None;
            }
            Some(p) => Some(p.number as u16),
            None => None,
        };
        if let Some(subset) = &d.subset {
            let defined = self
                .rules
                .get(&host)
                .is_some_and(|(_, dr)| dr.subsets.iter().any(|s| s.name.value == subset.value));
            if !defined {
                self.err(
                    r,
                    subset.pos,
                    format!(
                        "subset `{}` of `{host}` is not defined by a DestinationRule",
                        subset.value
                    ),
                );
                return None;
            }
        }
        Some((host, d.subset.as_ref().map(|s| s.value.clone()), port))
    }

    pub(super) fn stats_id(&mut self, service: &str, version: &str, route: &str) -> usize {
        let key = StatsKey {
            service: service.to_owned(),
            version: version.to_owned(),
            route: route.to_owned(),
        };
        if let Some(&id) = self.stats_ids.get(&key) {
            return id;
        }
        self.stats.push(key.clone());
        self.stats_ids.insert(key, self.stats.len() - 1);
        self.stats.len() - 1
    }
}
