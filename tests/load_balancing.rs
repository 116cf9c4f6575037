//! Load balancing on real sockets: consistent hashing by header, cookie (generated with a
//! ttl), source IP and query parameter on a ring and Maglev; LEAST_REQUEST away from a slow
//! endpoint; RANDOM's spread; warmup of an endpoint added by a reload.
mod support;

use std::collections::{HashMap, HashSet};

use support::*;

/// `shop` with one endpoint per backend and `lb` as the DestinationRule's loadBalancer.
fn shop(backends: &[&Backend], lb: &str) -> String {
    let ports: Vec<u16> = backends.iter().map(|b| b.addr.port()).collect();
    loopback_service("shop", "HTTP", &ports)
        + &format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop}}
spec:
  host: shop
  trafficPolicy:
    loadBalancer: {lb}
"
        )
}

async fn three() -> [Backend; 3] {
    [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ]
}

/// Which backend answers each of `users` (asked `times` times each, with `header(user)`).
async fn owners(
    weir: &Weir,
    users: usize,
    times: usize,
    path: &dyn Fn(usize) -> String,
    header: &dyn Fn(usize) -> Vec<(String, String)>,
) -> Vec<String> {
    let c = client();
    let mut out = Vec::new();
    for u in 0..users {
        let mut seen = HashSet::new();
        for _ in 0..times {
            let h = header(u);
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let (s, resp, _) = send(&c, weir.mesh(), "shop", &path(u), &h).await;
            assert_eq!(s, 200);
            seen.insert(backend_of(&resp));
        }
        assert_eq!(seen.len(), 1, "user {u} moved between {seen:?}");
        out.push(seen.into_iter().next().unwrap());
    }
    out
}

#[tokio::test]
async fn consistent_hash_by_header_and_query_on_ring_and_maglev() {
    let [a, b, c] = three().await;
    let by_header = "{consistentHash: {httpHeaderName: x-user}}";
    let weir = Weir::start(&shop(&[&a, &b, &c], by_header)).await;
    let user = |u: usize| vec![("x-user".to_owned(), format!("user-{u}"))];
    let first = owners(&weir, 30, 5, &|_| "/".to_owned(), &user).await;
    assert!(first.iter().collect::<HashSet<_>>().len() >= 2, "{first:?}");
    // Maglev by query parameter: the same stickiness.
    let by_query = "{consistentHash: {httpQueryParameterName: user, maglev: {tableSize: 65537}}}";
    assert!(weir.rewrite(&shop(&[&a, &b, &c], by_query)).await);
    let spread = owners(&weir, 30, 5, &|u| format!("/?user=u{u}"), &|_| Vec::new()).await;
    assert!(
        spread.iter().collect::<HashSet<_>>().len() >= 2,
        "{spread:?}"
    );
    // Source IP: every request from 127.0.0.1 lands on one endpoint.
    let by_ip = "{consistentHash: {useSourceIp: true}}";
    assert!(weir.rewrite(&shop(&[&a, &b, &c], by_ip)).await);
    owners(&weir, 1, 20, &|_| "/".to_owned(), &|_| Vec::new()).await;
}

#[tokio::test]
async fn weir_hash_keys_the_path_and_falls_back_to_a_second_key() {
    let [a, b, c] = three().await;
    // weir's extension: the query parameter first, the path when it is missing.
    let lb = "{consistentHash: {httpQueryParameterName: user, fallback: {usePath: true}}}";
    let weir = Weir::start(&shop(&[&a, &b, &c], lb)).await;
    let by_user = owners(&weir, 30, 4, &|u| format!("/p?user=u{u}"), &|_| Vec::new()).await;
    assert!(
        by_user.iter().collect::<HashSet<_>>().len() >= 2,
        "{by_user:?}"
    );
    // The same user on other paths stays where the user is.
    let moved = owners(&weir, 30, 4, &|u| format!("/q{u}?user=u{u}"), &|_| {
        Vec::new()
    })
    .await;
    assert_eq!(by_user, moved);
    // Without the parameter each path sticks to one endpoint, and paths spread.
    let by_path = owners(&weir, 30, 4, &|u| format!("/doc/{u}"), &|_| Vec::new()).await;
    assert!(
        by_path.iter().collect::<HashSet<_>>().len() >= 2,
        "{by_path:?}"
    );
}

#[tokio::test]
async fn a_hash_cookie_is_generated_when_absent() {
    let [a, b, c] = three().await;
    let by_cookie = "{consistentHash: {httpCookie: {name: session, path: /, ttl: 3600s}}}";
    let weir = Weir::start(&shop(&[&a, &b, &c], by_cookie)).await;
    let mut owners_by_cookie = HashMap::new();
    for _ in 0..20 {
        let (s, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
        assert_eq!(s, 200);
        let set = h
            .get("set-cookie")
            .expect("a cookie is set")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            set.starts_with("session=") && set.contains("Max-Age=3600") && set.contains("Path=/"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        owners_by_cookie.insert(cookie, backend_of(&h));
    }
    assert!(owners_by_cookie.values().collect::<HashSet<_>>().len() >= 2);
    // Sent back, each cookie keeps its client on the endpoint that set it, with no new cookie.
    for (cookie, owner) in &owners_by_cookie {
        for _ in 0..3 {
            let (_, h, _) = get(weir.mesh(), "shop", "/", &[("cookie", cookie)]).await;
            assert_eq!(&backend_of(&h), owner);
            assert!(h.get("set-cookie").is_none());
        }
    }
}

#[tokio::test]
async fn least_request_avoids_a_slow_endpoint() {
    let slow = Backend::start("slow").await;
    let fast = Backend::start("fast").await;
    let weir = Weir::start(&shop(&[&slow, &fast], "{simple: LEAST_REQUEST}")).await;
    // 8 workers x 25 requests; the slow endpoint takes 100 ms, the fast one none. Power of two
    // choices over two endpoints always takes the one with fewer requests in flight.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let addr = weir.mesh();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..25 {
                let (s, _, _) = send(&c, addr, "shop", "/slow-on/slow/100", &[]).await;
                assert_eq!(s, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (s, f) = (slow.hits(), fast.hits());
    assert_eq!(s + f, 200);
    assert!(f > 4 * s, "slow {s}, fast {f}");
}

#[tokio::test]
async fn random_spreads_evenly() {
    let [a, b, c] = three().await;
    let weir = Weir::start(&shop(&[&a, &b, &c], "{simple: RANDOM}")).await;
    let cl = client();
    for _ in 0..600 {
        send(&cl, weir.mesh(), "shop", "/", &[]).await;
    }
    // 200 each, binomial sigma 11.5: within 6 sigma.
    for x in [&a, &b, &c] {
        assert!(
            (130..=270).contains(&x.hits()),
            "{} got {}",
            x.name,
            x.hits()
        );
    }
}

#[tokio::test]
async fn an_endpoint_added_by_a_reload_warms_up() {
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let lb = "{simple: ROUND_ROBIN, warmup: {duration: 600s, minimumPercent: 10}}";
    let weir = Weir::start(&shop(&[&old], lb)).await;
    assert!(weir.rewrite(&shop(&[&old, &new], lb)).await);
    let cl = client();
    for _ in 0..400 {
        let (s, _, _) = send(&cl, weir.mesh(), "shop", "/", &[]).await;
        assert_eq!(s, 200);
    }
    // Without warmup it would get 200 of 400; at a 10 % weight, about 20 (sigma about 4).
    let got = new.hits();
    assert!((1..=60).contains(&got), "the new endpoint got {got} of 400");
    // Without warmup, half.
    let weir = Weir::start(&shop(&[&old, &new], "{simple: ROUND_ROBIN}")).await;
    let before = new.hits();
    for _ in 0..100 {
        send(&cl, weir.mesh(), "shop", "/", &[]).await;
    }
    assert_eq!(new.hits() - before, 50);
}
