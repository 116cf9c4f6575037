//! The request path's routing must never panic, and must agree with its definitions: path
//! normalisation is idempotent and yields a clean path, and the indexed route lookup finds
//! exactly the rule a linear first-match scan finds.
//!
//! Input: line 1 the request target, line 2 the method, line 3 the authority, then
//! `name: value` header lines.
#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use weir::config::Model;
use weir::edge::EscapedSlashes;
use weir::edge::path::normalize;
use weir::route::matcher::RequestView;

/// Rules with every kind of condition, on an exact, a wildcard and the catch-all host of a
/// Gateway listener.
const CONFIG: &str = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [svc]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 127.0.0.1, ports: {http: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  servers:
  - port: {number: 18080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc, "*.example.com", "*"]
  gateways: [edge]
  http:
  - match: [{uri: {exact: /a}}, {uri: {prefix: /b/}, method: {exact: POST}}]
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /API}, ignoreUriCase: true}]
    route: [{destination: {host: svc}}]
  - match: [{uri: {regex: "/r/[0-9]+(/.*)?"}}]
    route: [{destination: {host: svc}}]
  - match: [{headers: {x-user: {exact: beta}}, uri: {prefix: /}}]
    route: [{destination: {host: svc}}]
  - match: [{headers: {x-group: {prefix: prem}, x-debug: {regex: "on|yes"}}}]
    route: [{destination: {host: svc}}]
  - match: [{withoutHeaders: {x-user: {}}, uri: {prefix: /w}}]
    route: [{destination: {host: svc}}]
  - match: [{headers: {cookie: {regex: "^(.*?;)?(canary=always)(;.*)?$"}}}]
    route: [{destination: {host: svc}}]
  - match: [{queryParams: {v: {exact: "2"}, q: {regex: "a.*"}}}]
    route: [{destination: {host: svc}}]
  - match: [{authority: {prefix: shop.}, uri: {exact: /}}]
    route: [{destination: {host: svc}}]
  - match: [{uri: {prefix: /a/b}}, {uri: {prefix: /a}}, {uri: {exact: /a/b/c}}]
    route: [{destination: {host: svc}}]
"#;

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let set = weir::config::parse_set("fuzz.yaml", CONFIG).unwrap();
        let model = weir::config::validate(&set, "127.0.0.1:15001".parse().unwrap()).unwrap();
        assert_eq!(model.listeners.len(), 2);
        model
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let method = lines.next().unwrap_or("GET");
    let authority = lines.next().unwrap_or("svc");
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((n, v)) = line.split_once(':')
            && let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.trim().as_bytes()),
                HeaderValue::from_str(v.trim()),
            )
        {
            headers.append(n, v);
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    for policy in [
        EscapedSlashes::Reject,
        EscapedSlashes::Keep,
        EscapedSlashes::Unescape,
    ] {
        if let Ok(normal) = normalize(path, policy) {
            let normal = normal.as_deref().unwrap_or(path);
            assert_eq!(
                normalize(normal, policy).unwrap(),
                None,
                "{path:?} -> {normal:?}"
            );
            if normal.starts_with('/') {
                for bad in ["//", "/./", "/../"] {
                    assert!(!normal.contains(bad), "{path:?} -> {normal:?}");
                }
                assert!(
                    !normal.ends_with("/.") && !normal.ends_with("/.."),
                    "{normal:?}"
                );
            }
        }
    }
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let table = &model().listeners[1].table;
    let view = RequestView::new(&pq, method, authority, "http", 15001, &headers);
    let found = table.find(&view).map(|m| m.rule as *const _);
    let linear = table.host(authority).and_then(|vhost| {
        vhost
            .rules
            .iter()
            .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| m.matches(&view)))
            .map(|r| r as *const _)
    });
    assert_eq!(found, linear, "{pq:?} {method:?} {authority:?} {headers:?}");
});
