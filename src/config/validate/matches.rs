//! The parts of a route rule: match blocks, redirects, rewrites, header edits, status codes.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn status(&mut self, r: &Resource, pos: Pos, code: u32) -> Option<StatusCode> {
        match u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(s) if (200..=599).contains(&code) => Some(s),
            _ => {
                self.err(
                    r,
                    pos,
                    format!("{code} is not a valid HTTP status (200-599)"),
                );
                None
            }
        }
    }

    pub(super) fn redirect(&mut self, r: &Resource, rd: &istio::HttpRedirect) -> Option<Redirect> {
        let code = match rd.redirect_code {
            None => StatusCode::MOVED_PERMANENTLY,
            Some(c) => {
                let s = self.status(r, rd.pos, c)?;
                if !s.is_redirection() {
                    self.err(r, rd.pos, format!("redirectCode {c} is not a 3xx status"));
                    return None;
                }
                s
            }
        };
        if rd.uri.is_some() && rd.prefix_rewrite.is_some() {
            self.err(
                r,
                rd.pos,
                "redirect takes `uri` or `prefixRewrite`, not both",
            );
        }
        let port = match rd.port {
            Some(p) if p == 0 || p > 65535 => {
                self.err(r, rd.pos, format!("port {p} is out of range 1-65535"));
                return None;
            }
            p => p.map(|p| p as u16),
        };
        Some(Redirect {
            uri: rd.uri.as_deref().map(Into::into),
            prefix_rewrite: rd.prefix_rewrite.as_deref().map(Into::into),
            authority: rd.authority.as_deref().map(Into::into),
            port,
            default_port: rd.derive_port == Some(istio::DerivePort::FromProtocolDefault),
            scheme: rd.scheme.as_deref().map(Into::into),
            code,
        })
    }

    pub(super) fn rewrite(&mut self, r: &Resource, rw: &istio::HttpRewrite) -> Option<Rewrite> {
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            self.err(
                r,
                rw.pos,
                "rewrite takes `uri` or `uriRegexRewrite`, not both",
            );
            return None;
        }
        let uri_regex = match &rw.uri_regex_rewrite {
            Some(rr) => match regex::RegexBuilder::new(&rr.pattern.value)
                .size_limit(crate::route::matcher::REGEX_SIZE_LIMIT)
                .build()
            {
                Ok(re) => Some((re, re2_replacement(&rr.rewrite))),
                Err(e) => {
                    self.err(r, rr.pattern.pos, format!("invalid regex: {e}"));
                    return None;
                }
            },
            None => None,
        };
        let authority = match rw.authority.as_deref().map(HeaderValue::from_str) {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                self.err(r, rw.pos, "rewrite.authority is not a valid host");
                return None;
            }
            None => None,
        };
        Some(Rewrite {
            uri: rw.uri.as_deref().map(Into::into),
            uri_regex,
            authority,
            kong_join: rw.kong_path_join == Some(true),
        })
    }

    pub(super) fn header_edits(&mut self, r: &Resource, h: Option<&istio::Headers>) -> HeaderEdits {
        let Some(h) = h else {
            return HeaderEdits::default();
        };
        HeaderEdits {
            request: self.header_ops(r, h.request.as_ref()),
            response: self.header_ops(r, h.response.as_ref()),
        }
    }

    pub(super) fn header_ops(
        &mut self,
        r: &Resource,
        ops: Option<&istio::HeaderOperations>,
    ) -> HeaderOps {
        let Some(ops) = ops else {
            return HeaderOps::default();
        };
        let pairs = |map: &BTreeMap<String, String>, this: &mut Self| {
            map.iter()
                .filter_map(|(k, v)| {
                    let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes());
                    let value = HeaderValue::from_str(v);
                    match (name, value) {
                        (Ok(n), Ok(v)) => Some((n, v)),
                        _ => {
                            this.err(r, ops.pos, format!("invalid header `{k}: {v}`"));
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        };
        let set = pairs(&ops.set, self);
        let add = pairs(&ops.add, self);
        let remove = ops
            .remove
            .iter()
            .filter_map(
                |k| match HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()) {
                    Ok(n) => Some(n),
                    Err(_) => {
                        self.err(r, ops.pos, format!("invalid header name `{k}`"));
                        None
                    }
                },
            )
            .collect();
        HeaderOps { set, add, remove }
    }

    pub(super) fn string_match(
        &mut self,
        r: &Resource,
        m: &StringMatch,
        lower: bool,
    ) -> Option<StrMatcher> {
        Some(match m {
            StringMatch::Exact(s) if lower => StrMatcher::Exact(s.to_ascii_lowercase().into()),
            StringMatch::Prefix(s) if lower => StrMatcher::Prefix(s.to_ascii_lowercase().into()),
            StringMatch::Exact(s) => StrMatcher::Exact(s.as_str().into()),
            StringMatch::Prefix(s) => StrMatcher::Prefix(s.as_str().into()),
            StringMatch::Present => StrMatcher::Present,
            StringMatch::Regex(re) => match compile_regex(&re.value) {
                Ok(re) => StrMatcher::Regex(re),
                Err(e) => {
                    let msg = e.to_string().replace('\n', " ");
                    self.err(r, re.pos, format!("invalid regex `{}`: {msg}", re.value));
                    return None;
                }
            },
        })
    }

    pub(super) fn request_match(
        &mut self,
        r: &Resource,
        m: &istio::HttpMatchRequest,
    ) -> Option<RequestMatch> {
        let ignore_case = m.ignore_uri_case == Some(true);
        let uri = match &m.uri {
            Some(StringMatch::Present) => None,
            Some(u) => Some(UriMatch {
                matcher: self.string_match(r, u, ignore_case)?,
                ignore_case,
            }),
            None => None,
        };
        let opt = |this: &mut Self, s: &Option<StringMatch>| match s {
            Some(s) => this.string_match(r, s, false).map(Some),
            None => Some(None),
        };
        let scheme = opt(self, &m.scheme)?;
        let method = opt(self, &m.method)?;
        let authority = opt(self, &m.authority)?;
        let mut headers = Vec::new();
        let mut without_headers = Vec::new();
        for (map, out) in [
            (&m.headers, &mut headers),
            (&m.without_headers, &mut without_headers),
        ] {
            for (k, v) in map {
                let Ok(name) = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()) else {
                    self.err(r, m.pos, format!("invalid header name `{k}`"));
                    continue;
                };
                if let Some(sm) = self.string_match(r, v, false) {
                    out.push((name, sm));
                }
            }
        }
        let mut query_params = Vec::new();
        for (k, v) in &m.query_params {
            if let Some(sm) = self.string_match(r, v, false) {
                query_params.push((k.as_str().into(), sm));
            }
        }
        let port = match m.port {
            Some(p) if p == 0 || p > 65535 => {
                self.err(r, m.pos, format!("port {p} is out of range 1-65535"));
                None
            }
            p => p.map(|p| p as u16),
        };
        if !m.source_labels.is_empty() || m.source_namespace.is_some() {
            self.warn(
                r,
                m.pos,
                "sourceLabels and sourceNamespace need Kubernetes workloads; ignored",
            );
        }
        Some(RequestMatch {
            uri,
            scheme,
            method,
            authority,
            headers,
            without_headers,
            query_params,
            port,
            gateways: m.gateways.iter().map(|g| g.as_str().into()).collect(),
        })
    }

    /// `fault`: delays and aborts with their shares.
    pub(super) fn fault(&mut self, r: &Resource, f: &istio::HttpFaultInjection) -> Option<Fault> {
        let delay = f.delay.as_ref().and_then(|d| {
            let share = self.fault_share(r, d.pos, d.percentage.as_ref(), d.percent);
            match (d.fixed_delay, d.exponential_delay) {
                (Some(delay), _) => Some(fault::Delay {
                    delay: delay.0,
                    per_million: share?,
                }),
                (None, Some(_)) => {
                    self.warn(
                        r,
                        d.pos,
                        "exponentialDelay is not supported; no delay is injected",
                    );
                    None
                }
                (None, None) => {
                    self.err(r, d.pos, "fault delay needs fixedDelay");
                    None
                }
            }
        });
        let abort = f.abort.as_ref().and_then(|a| {
            let share = self.fault_share(r, a.pos, a.percentage.as_ref(), a.percent);
            let (status, grpc_status) = match (a.http_status, &a.grpc_status, &a.http2_error) {
                (Some(s), None, None) => (self.status(r, a.pos, s)?, None),
                (None, Some(g), None) => {
                    let Some(code) = grpc_code(g) else {
                        self.err(r, a.pos, format!("unknown grpcStatus {g:?}"));
                        return None;
                    };
                    (StatusCode::OK, Some(code))
                }
                (None, None, Some(_)) => {
                    self.warn(
                        r,
                        a.pos,
                        "http2Error aborts are not supported; no abort is injected",
                    );
                    return None;
                }
                _ => {
                    self.err(
                        r,
                        a.pos,
                        "fault abort takes one of httpStatus, grpcStatus, http2Error",
                    );
                    return None;
                }
            };
            Some(fault::Abort {
                status,
                grpc_status,
                per_million: share?,
            })
        });
        (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
    }

    /// `percentage` (preferred) or the deprecated integer `percent`, as parts per million. As in
    /// Istio, a fault without either injects nothing (said as a warning).
    fn fault_share(
        &mut self,
        r: &Resource,
        pos: Pos,
        percentage: Option<&istio::Percent>,
        percent: Option<u32>,
    ) -> Option<u32> {
        let value = match (percentage, percent) {
            (Some(p), _) => p.value,
            (None, Some(p)) => f64::from(p),
            (None, None) => {
                self.warn(
                    r,
                    pos,
                    "fault without percentage injects nothing (as in Istio)",
                );
                0.0
            }
        };
        if !(0.0..=100.0).contains(&value) {
            self.err(r, pos, "percentage must be between 0 and 100");
            return None;
        }
        Some(fault::per_million(value))
    }
}

/// A gRPC status by name (`UNAVAILABLE`) or number (`14`).
fn grpc_code(s: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    match s.parse::<u32>() {
        Ok(n) if n < 17 => Some(n),
        Ok(_) => None,
        Err(_) => NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32),
    }
}
