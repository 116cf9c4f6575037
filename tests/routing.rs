//! Routing on real sockets: the Istio request-routing and traffic-shifting tasks, every match
//! kind, actions, header handling and both HTTP versions.

mod support;

use support::*;

const REVIEWS_TEST_V2: &str = "
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
";

const REVIEWS_50_V3: &str = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
";

struct Reviews {
    v1: Backend,
    v2: Backend,
    v3: Backend,
}

impl Reviews {
    async fn start() -> Reviews {
        Reviews {
            v1: Backend::start("reviews-v1").await,
            v2: Backend::start("reviews-v2").await,
            v3: Backend::start("reviews-v3").await,
        }
    }

    fn config(&self, vs: &str) -> String {
        service_entry(
            "reviews",
            &[("v1", &self.v1), ("v2", &self.v2), ("v3", &self.v3)],
        ) + &destination_rule("reviews", &["v1", "v2", "v3"])
            + vs
    }
}

#[tokio::test]
async fn request_routing_task() {
    let r = Reviews::start().await;
    let weir = Weir::start(&r.config(REVIEWS_TEST_V2)).await;
    let c = client();
    for _ in 0..100 {
        let (_, h, _) = send(
            &c,
            weir.mesh(),
            "reviews",
            "/reviews/0",
            &[("end-user", "jason")],
        )
        .await;
        assert_eq!(backend_of(&h), "reviews-v2");
        let (_, h, _) = send(&c, weir.mesh(), "reviews", "/reviews/0", &[]).await;
        assert_eq!(backend_of(&h), "reviews-v1");
    }
    for (name, value, want) in [
        ("End-User", "jason", "reviews-v2"),
        ("end-user", "Jason", "reviews-v1"),
        ("end-user", "jason2", "reviews-v1"),
        ("end-user", "xjason", "reviews-v1"),
    ] {
        let (_, h, _) = send(&c, weir.mesh(), "reviews", "/", &[(name, value)]).await;
        assert_eq!(backend_of(&h), want, "{name}: {value}");
    }
    assert_eq!(r.v3.hits(), 0);
}

#[tokio::test]
async fn first_match_wins() {
    let r = Reviews::start().await;
    let swapped = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  http:
  - route:
    - destination: {host: reviews, subset: v1}
  - match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v2}
";
    // No `hosts`: the VirtualService applies to its own name.
    let weir = Weir::start(&r.config(swapped)).await;
    let (_, h, _) = get(weir.mesh(), "reviews", "/", &[("end-user", "jason")]).await;
    assert_eq!(backend_of(&h), "reviews-v1");
}

#[tokio::test]
async fn weighted_split_per_request_on_one_connection() {
    let r = Reviews::start().await;
    let weir = Weir::start(&r.config(REVIEWS_50_V3)).await;
    // One keep-alive connection: the split must be chosen per request, not per connection.
    let c = client();
    let mut v3 = 0;
    for _ in 0..400 {
        let (s, h, _) = send(&c, weir.mesh(), "reviews", "/reviews/0", &[]).await;
        assert_eq!(s, 200);
        v3 += usize::from(backend_of(&h) == "reviews-v3");
    }
    // Binomial(400, 0.5): 4 sigma is 40.
    assert!((160..=240).contains(&v3), "v3 got {v3} of 400");
    assert_eq!(r.v2.hits(), 0);
    assert_eq!(r.v1.hits() + r.v3.hits(), 400);
}

#[tokio::test]
async fn zero_weight_gets_nothing_and_weights_are_relative() {
    let r = Reviews::start().await;
    let vs = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 1}
    - {destination: {host: reviews, subset: v2}, weight: 0}
    - {destination: {host: reviews, subset: v3}, weight: 3}
";
    let weir = Weir::start(&r.config(vs)).await;
    let c = client();
    for _ in 0..800 {
        send(&c, weir.mesh(), "reviews", "/", &[]).await;
    }
    assert_eq!(r.v2.hits(), 0);
    // Binomial(800, 0.25): mean 200, sigma 12.2; 5 sigma is 61.
    let v1 = r.v1.hits() as i64;
    assert!((v1 - 200).abs() <= 61, "v1 got {v1} of 800");
}

#[tokio::test]
async fn absolute_form_and_unknown_hosts() {
    let r = Reviews::start().await;
    let weir = Weir::start(&r.config(REVIEWS_TEST_V2)).await;
    let resp = raw(
        weir.mesh(),
        "GET http://reviews/x HTTP/1.1\r\nHost: reviews\r\nend-user: jason\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("x-backend: reviews-v2"), "{resp}");
    let (s, _, _) = get(weir.mesh(), "nowhere", "/", &[]).await;
    assert_eq!(s, 404);
    // A port in Host is ignored for routing.
    let (s, h, _) = get(weir.mesh(), "reviews:9080", "/", &[]).await;
    assert_eq!((s.as_u16(), backend_of(&h).as_str()), (200, "reviews-v1"));
}

#[tokio::test]
async fn service_without_virtual_service_gets_all_endpoints() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let weir = Weir::start(&service_entry("details", &[("v1", &a), ("v2", &b)])).await;
    let c = client();
    for _ in 0..10 {
        let (s, _, _) = send(&c, weir.mesh(), "details", "/", &[]).await;
        assert_eq!(s, 200);
    }
    // Round robin: both endpoints serve.
    assert_eq!(a.hits() + b.hits(), 10);
    assert!(a.hits() >= 4 && b.hits() >= 4, "{} {}", a.hits(), b.hits());
}

#[tokio::test]
async fn match_kinds() {
    let r = Reviews::start().await;
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: exact
    match: [{uri: {exact: /exact}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: prefix-nocase
    match: [{uri: {prefix: /API/}, ignoreUriCase: true}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: regex
    match: [{uri: {regex: "/items/[0-9]+"}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: query
    match: [{queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: method-and-absence
    match: [{method: {exact: POST}, withoutHeaders: {x-legacy: {}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: cookie
    match: [{headers: {cookie: {regex: ".*experiment=new-ui.*"}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: region-or-presence
    match:
    - headers: {x-region: {prefix: us-}}
    - headers: {x-beta: {}}
    route: [{destination: {host: reviews, subset: v3}}]
  - name: authority
    match: [{authority: {exact: "reviews:9080"}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;
    let weir = Weir::start(&r.config(vs)).await;
    let c = client();
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("reviews", "/exact", &[], "reviews-v2"),
        ("reviews", "/exact/more", &[], "reviews-v1"),
        ("reviews", "/exact?q=1", &[], "reviews-v2"),
        ("reviews", "/api/x", &[], "reviews-v2"),
        ("reviews", "/Api/x", &[], "reviews-v2"),
        ("reviews", "/items/42", &[], "reviews-v2"),
        ("reviews", "/items/42/x", &[], "reviews-v1"),
        ("reviews", "/x?a=2&debug=1", &[], "reviews-v3"),
        ("reviews", "/x?debug=10", &[], "reviews-v1"),
        (
            "reviews",
            "/x",
            &[("cookie", "a=1; experiment=new-ui; b=2")],
            "reviews-v3",
        ),
        ("reviews", "/x", &[("x-region", "us-east")], "reviews-v3"),
        ("reviews", "/x", &[("x-region", "eu-west")], "reviews-v1"),
        ("reviews", "/x", &[("x-beta", "")], "reviews-v3"),
        ("reviews:9080", "/x", &[], "reviews-v2"),
    ];
    for (host, path, headers, want) in cases {
        let (_, h, _) = send(&c, weir.mesh(), host, path, headers).await;
        assert_eq!(backend_of(&h), *want, "{host}{path} {headers:?}");
    }
    let post = |legacy: bool| {
        let mut b =
            http::Request::post(format!("http://{}/x", weir.mesh())).header("host", "reviews");
        if legacy {
            b = b.header("x-legacy", "1");
        }
        c.request(
            b.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
    };
    assert_eq!(
        backend_of(post(false).await.unwrap().headers()),
        "reviews-v3"
    );
    assert_eq!(
        backend_of(post(true).await.unwrap().headers()),
        "reviews-v1"
    );
}

#[tokio::test]
async fn redirect_direct_response_rewrite_and_headers() {
    let r = Reviews::start().await;
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /v1/getProductRatings}}]
    redirect: {uri: /v1/bookRatings, authority: newratings.default.svc.cluster.local}
  - match: [{uri: {prefix: /down}}]
    directResponse: {status: 503, body: {string: "maintenance"}}
  - match: [{uri: {prefix: /ratings}}]
    rewrite: {uri: /v1/bookRatings, authority: ratings-internal}
    route: [{destination: {host: reviews, subset: v2}}]
  - headers:
      request:
        set: {x-set: one}
        add: {x-added: two}
        remove: [x-remove-me]
      response:
        set: {x-resp: three}
        remove: [x-backend-secret]
    route:
    - destination: {host: reviews, subset: v1}
      headers:
        request: {set: {x-dest: v1}}
        response: {add: {x-dest-resp: v1}}
"#;
    let weir = Weir::start(&r.config(vs)).await;
    let (s, h, _) = get(weir.mesh(), "reviews", "/v1/getProductRatings?x=1", &[]).await;
    assert_eq!(s, 301);
    assert_eq!(
        h.get("location").unwrap(),
        "http://newratings.default.svc.cluster.local/v1/bookRatings?x=1"
    );
    let (s, _, body) = get(weir.mesh(), "reviews", "/down/now", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (503, "maintenance"));
    let (_, h, body) = get(weir.mesh(), "reviews", "/ratings/7?a=b", &[]).await;
    assert_eq!(backend_of(&h), "reviews-v2");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["uri"], "/v1/bookRatings/7?a=b");
    assert_eq!(echo["headers"]["host"], "ratings-internal");
    let (_, h, body) = get(weir.mesh(), "reviews", "/other", &[("x-remove-me", "1")]).await;
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sent = &echo["headers"];
    assert_eq!(sent["x-set"], "one");
    assert_eq!(sent["x-added"], "two");
    assert_eq!(sent["x-dest"], "v1");
    assert!(sent.get("x-remove-me").is_none());
    assert_eq!(h.get("x-resp").unwrap(), "three");
    assert_eq!(h.get("x-dest-resp").unwrap(), "v1");
}

#[tokio::test]
async fn forwarding_headers_and_hop_by_hop() {
    let r = Reviews::start().await;
    let weir = Weir::start(&r.config(REVIEWS_TEST_V2)).await;
    let (_, h, body) = get(
        weir.mesh(),
        "reviews",
        "/",
        &[
            ("x-forwarded-for", "10.0.0.1"),
            ("connection", "x-private"),
            ("x-private", "secret"),
        ],
    )
    .await;
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    let sent = &echo["headers"];
    assert_eq!(sent["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(sent["x-forwarded-proto"], "http");
    assert_eq!(sent["x-request-id"].as_str().unwrap().len(), 36);
    assert!(sent.get("x-private").is_none());
    assert_eq!(sent["host"], "reviews");
    // The backend's Connection header is not passed on.
    assert!(h.get("connection").is_none_or(|v| v != "keep-alive"));
    let (_, _, body) = get(weir.mesh(), "reviews", "/", &[("x-request-id", "abc")]).await;
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["x-request-id"], "abc");
}

#[tokio::test]
async fn http2_both_ways() {
    let b = Backend::start("grpcish").await;
    let cfg = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: h2svc}}
spec:
  hosts: [h2svc]
  resolution: STATIC
  ports: [{{number: 80, name: grpc, protocol: GRPC}}]
  endpoints: [{{address: 127.0.0.1, ports: {{grpc: {}}}}}]
---
",
        b.addr.port()
    ) + &service_entry("h1svc", &[("v1", &b)]);
    let weir = Weir::start(&cfg).await;
    // h2c downstream, h2c upstream.
    let (s, body) = h2_get(weir.mesh(), "h2svc", "/a").await;
    assert_eq!(s, 200);
    assert_eq!(version_of(&body), http::Version::HTTP_2);
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(echo["uri"].as_str().unwrap().contains("h2svc"), "{echo}");
    // h2c downstream, HTTP/1.1 upstream.
    let (s, body) = h2_get(weir.mesh(), "h1svc", "/b").await;
    assert_eq!(s, 200);
    assert_eq!(version_of(&body), http::Version::HTTP_11);
    // HTTP/1.1 downstream, h2c upstream.
    let (s, _, body) = get(weir.mesh(), "h2svc", "/c", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(version_of(&body), http::Version::HTTP_2);
}

#[tokio::test]
async fn upstream_failures_map_to_statuses() {
    let slow = Backend::start("slow").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = service_entry("slow", &[("v1", &slow)])
        + &format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: gone}}
spec:
  hosts: [gone]
  resolution: STATIC
  ports: [{{number: 80, name: http}}]
  endpoints: [{{address: 127.0.0.1, ports: {{http: {closed_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: slow}}
spec:
  http:
  - timeout: 0.2s
    route: [{{destination: {{host: slow}}}}]
"
        );
    let weir = Weir::start(&cfg).await;
    let (s, _, body) = get(weir.mesh(), "slow", "/delay/2000", &[]).await;
    assert_eq!(s, 504, "{body}");
    let (s, _, _) = get(weir.mesh(), "slow", "/delay/10", &[]).await;
    assert_eq!(s, 200);
    let (s, _, body) = get(weir.mesh(), "gone", "/", &[]).await;
    assert_eq!(s, 503, "{body}");
    let (s, _, _) = get(weir.mesh(), "slow", "/status/503", &[]).await;
    assert_eq!(s, 503);
}

/// Waits (up to 5 s) for `backend` to have seen `n` requests.
async fn hits_reach(backend: &Backend, n: usize) -> usize {
    for _ in 0..100 {
        if backend.hits() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    backend.hits()
}

#[tokio::test]
async fn mirroring_copies_requests_and_drops_the_answers() {
    let r = Reviews::start().await;
    let vs = "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /fail}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
  - match: [{uri: {prefix: /quarter}}]
    route: [{destination: {host: reviews, subset: v1}}]
    mirrors:
    - destination: {host: reviews, subset: v3}
      percentage: {value: 25}
";
    let weir = Weir::start(&r.config(vs)).await;
    let c = client();
    for i in 0..100 {
        // The mirror answers 500 to every request: clients never see it.
        let (s, h, _) = send(&c, weir.mesh(), "reviews", "/fail/reviews-v2", &[]).await;
        assert_eq!(
            (s, backend_of(&h).as_str()),
            (http::StatusCode::OK, "reviews-v1"),
            "{i}"
        );
    }
    assert_eq!(hits_reach(&r.v2, 100).await, 100);
    // Bodies are copied too.
    let body = bytes::Bytes::from(vec![b'x'; 10_000]);
    let (s, _, echoed) = request(&c, weir.mesh(), "POST", "reviews", "/fail/none", &[], body).await;
    assert_eq!(s, http::StatusCode::OK);
    assert!(echoed.contains("reviews-v1"));
    assert_eq!(hits_reach(&r.v2, 101).await, 101);
    // Mirrored answers are counted under the mirror's version, as Istio's destination reports.
    let m = weir.metrics().await;
    let mirrored_500 = m
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("version=\"v2\""))
        .filter(|l| l.contains("status=\"500\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert_eq!(mirrored_500, 100.0, "{m}");
    // 25 % of 400: binomial sd 8.7, bounds at 5.7 sd.
    for _ in 0..400 {
        let (s, _, _) = send(&c, weir.mesh(), "reviews", "/quarter", &[]).await;
        assert_eq!(s, http::StatusCode::OK);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let copies = r.v3.hits();
    assert!(
        (50..=150).contains(&copies),
        "v3 got {copies} copies of 400"
    );
    assert_eq!(r.v1.hits(), 501);
}

/// The version each of `users` is answered by, each user sending its cookie (if any) and
/// keeping the one it is given.
async fn visit(weir: &Weir, users: &mut [Option<String>]) -> Vec<String> {
    let c = client();
    let mut out = Vec::with_capacity(users.len());
    for cookie in users.iter_mut() {
        let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
        let (s, h, _) = send(&c, weir.mesh(), "reviews", "/", &headers).await;
        assert_eq!(s, http::StatusCode::OK);
        if let Some(set) = h.get("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            assert!(cookie.is_none(), "a user with a cookie got another");
            *cookie = Some(pair);
        }
        out.push(backend_of(&h));
    }
    out
}

#[tokio::test]
async fn session_affinity_keeps_users_on_one_version_and_the_share_on_the_weight() {
    let r = Reviews::start().await;
    let vs = |v3: u32| {
        format!(
            "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - sessionAffinity: {{cookieName: cohort, maxAge: 3600}}
    route:
    - destination: {{host: reviews, subset: v1}}
      weight: {}
    - destination: {{host: reviews, subset: v3}}
      weight: {v3}
",
            100 - v3
        )
    };
    let weir = Weir::start(&r.config(&vs(20))).await;
    let mut users = vec![None; 400];
    let first = visit(&weir, &mut users).await;
    assert!(users.iter().all(Option::is_some));
    // Users, not requests, are split: 400 users at 20 % (sd 8), bounds at 5 sd.
    let on_v3 = first.iter().filter(|b| *b == "reviews-v3").count();
    assert!((40..=120).contains(&on_v3), "{on_v3} of 400 users on v3");
    // Each user stays where it landed.
    assert_eq!(visit(&weir, &mut users).await, first);
    // The weight grows: v3's users stay, and the share follows (50 %, sd 10).
    assert!(weir.rewrite(&r.config(&vs(50))).await);
    let second = visit(&weir, &mut users).await;
    for (a, b) in first.iter().zip(&second) {
        assert!(a != "reviews-v3" || b == "reviews-v3", "a user left v3");
    }
    let on_v3 = second.iter().filter(|b| *b == "reviews-v3").count();
    assert!((150..=250).contains(&on_v3), "{on_v3} of 400 users on v3");
    assert_eq!(r.v2.hits(), 0);
}

#[tokio::test]
async fn wildcard_destination_rules_apply_to_the_hosts_they_match_most_specific_first() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let host = "reviews.default.svc.cluster.local";
    let rule = |name: &str, pattern: &str, label: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}}}
spec:
  host: \"{pattern}\"
  subsets:
  - name: chosen
    labels: {{version: {label}}}
---
"
        )
    };
    let route = format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [{host}]
  http:
  - route: [{{destination: {{host: {host}, subset: chosen}}}}]
"
    );
    let services = service_entry(host, &[("v1", &v1), ("v2", &v2)]);
    let answered = |weir: Weir| async move {
        let (s, h, _) = get(weir.mesh(), host, "/", &[]).await;
        assert_eq!(s, 200);
        backend_of(&h)
    };
    // `*.local` alone applies to the service.
    let yaml = services.clone() + &rule("all-local", "*.local", "v2") + &route;
    assert_eq!(answered(Weir::start(&yaml).await).await, "v2");
    // The most specific wildcard wins over a broader one and over `*`.
    let yaml = services.clone()
        + &rule("everything", "*", "v2")
        + &rule("all-local", "*.local", "v2")
        + &rule("cluster", "*.svc.cluster.local", "v1")
        + &route;
    assert_eq!(answered(Weir::start(&yaml).await).await, "v1");
    // A rule of the host itself wins over every wildcard.
    let yaml = services
        + &rule("cluster", "*.svc.cluster.local", "v1")
        + &rule("own", host, "v2")
        + &route;
    assert_eq!(answered(Weir::start(&yaml).await).await, "v2");
}
