//! A full proxy round trip on loopback: a keep-alive client, weir, a real backend, and back.
//! The same request sent straight to the backend is measured beside it, so that the figure to
//! read is the difference (what weir adds), not the absolute time on a noisy machine.
#![allow(missing_docs)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::{BodyExt, Full};

use support::{Backend, TestClient, Weir, client, destination_rule, service_entry};

/// `n` keep-alive GETs, one after another, with `host` as the authority.
async fn run(c: &TestClient, addr: SocketAddr, host: &str, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        let req = Request::builder()
            .uri(format!("http://{addr}/productpage"))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = c.request(req).await.expect("response");
        assert!(resp.status().is_success());
        resp.into_body().collect().await.expect("body");
    }
    start.elapsed()
}

fn roundtrip(cr: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (backend, weir) = rt.block_on(async {
        let backend = Backend::start("v1").await;
        // The bookinfo shape: a header rule first, then a weighted split.
        let cfg = service_entry("productpage", &[("v1", &backend)])
            + &destination_rule("productpage", &["v1"])
            + "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: productpage}
spec:
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: productpage, subset: v1}}]
  - route:
    - {destination: {host: productpage, subset: v1}, weight: 100}
";
        let weir = Weir::start(&cfg).await;
        (backend, weir)
    });
    let c = client();
    let mut g = cr.benchmark_group("roundtrip");
    g.bench_function("direct", |b| {
        b.iter_custom(|n| rt.block_on(run(&c, backend.addr, "productpage", n)))
    });
    g.bench_function("through weir", |b| {
        b.iter_custom(|n| rt.block_on(run(&c, weir.mesh(), "productpage", n)))
    });
    g.finish();
    drop(rt);
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
