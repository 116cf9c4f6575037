//! Route lookup at 10, 1,000 and 10,000 rules, and the weighted pick.
#![allow(missing_docs)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use weir::config::{parse_set, validate};
use weir::route::matcher::RequestView;

/// A VirtualService with `n` rules: exact, prefix and header rules, catch-all last.
fn config(n: usize) -> String {
    let mut out = String::from(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc}
spec:
  hosts: [svc]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 127.0.0.1, ports: {http: 8080}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc}
spec:
  hosts: [svc]
  http:
",
    );
    for i in 0..n {
        let m = match i % 3 {
            0 => format!("{{uri: {{exact: /exact/{i}}}}}"),
            1 => format!("{{uri: {{prefix: /prefix/{i}/}}}}"),
            _ => format!("{{uri: {{prefix: /h/{i}}}, headers: {{x-user: {{exact: u{i}}}}}}}"),
        };
        out.push_str(&format!(
            "  - match: [{m}]\n    route: [{{destination: {{host: svc}}}}]\n"
        ));
    }
    out.push_str("  - route: [{destination: {host: svc}}]\n");
    out
}

fn route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_match");
    for n in [10usize, 1_000, 10_000] {
        let set = parse_set("bench.yaml", &config(n)).unwrap();
        let model = validate(&set, "127.0.0.1:15001".parse().unwrap()).unwrap();
        let table = &model.listeners[0].table;
        let headers = HeaderMap::new();
        // A rule near the end, so a linear scan would pay for every rule before it.
        let last_prefix = format!("/prefix/{}/item?x=1", (n - 2) / 3 * 3 + 1);
        let last_exact = format!("/exact/{}", (n - 1) / 3 * 3);
        for (name, path) in [
            ("prefix", last_prefix),
            ("exact", last_exact),
            ("fallthrough", "/none".into()),
        ] {
            group.bench_with_input(BenchmarkId::new(name, n), &path, |b, path| {
                b.iter(|| {
                    let view = RequestView::new(path, "GET", "svc", "http", 15001, &headers);
                    std::hint::black_box(table.find(&view).is_some())
                })
            });
        }
    }
    group.finish();
}

fn weighted_pick(c: &mut Criterion) {
    use weir::policy::headers::HeaderEdits;
    use weir::policy::split::{Split, WeightedDest};
    let split = Split::new(
        [90, 10, 0]
            .iter()
            .enumerate()
            .map(|(i, &weight)| WeightedDest {
                cluster: i,
                weight,
                headers: HeaderEdits::default(),
                stats: i,
            })
            .collect(),
    );
    c.bench_function("weighted_pick", |b| {
        b.iter(|| std::hint::black_box(split.pick().cluster))
    });
}

criterion_group!(benches, route_match, weighted_pick);
criterion_main!(benches);
