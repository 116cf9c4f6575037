//! Access control end to end, as Istio's security tasks document it: "Authorization for HTTP
//! traffic", "JWT authentication" / "Authorization with JWT" (with Istio's own sample key set
//! and tokens), "Ingress access control" (IP-based allow and deny, through trusted proxies);
//! key sets served by a server the test runs, rotated and taken down.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};
use support::*;

const ISTIO_JWKS: &str = include_str!("data/istio-jwt/jwks.json");
const DEMO_JWT: &str = include_str!("data/istio-jwt/demo.jwt");
const GROUPS_JWT: &str = include_str!("data/istio-jwt/groups-scope.jwt");
const ISS: &str = "testing@secure.istio.io";

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An ES256 key of the test's own, and its JWK.
struct EcKey {
    pair: signature::EcdsaKeyPair,
    kid: String,
}

impl EcKey {
    fn new(kid: &str) -> EcKey {
        let rng = SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        EcKey {
            pair,
            kid: kid.to_owned(),
        }
    }

    fn jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "x": b64(&p[1..33]), "y": b64(&p[33..65])})
    }

    fn sign(&self, claims: Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let msg = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), msg.as_bytes())
            .unwrap();
        format!("{msg}.{}", b64(sig.as_ref()))
    }
}

fn jwks_of(keys: &[&EcKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// A key server on loopback: serves what it holds, counts requests, can be made to fail.
struct KeyServer {
    addr: SocketAddr,
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyServer {
    /// Serves `body` (`None`: 503).
    async fn start(body: Option<String>) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (b, h) = (b.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        let answer = b.lock().unwrap().clone();
                        async move {
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(
                                answer.clone().unwrap_or_default(),
                            )));
                            if answer.is_none() {
                                *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        KeyServer {
            addr,
            body,
            hits,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn set(&self, body: Option<String>) {
        *self.body.lock().unwrap() = body;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `httpbin` (namespace foo) and `productpage`, `details` (namespace default).
fn services(httpbin: &Backend, pages: &Backend) -> String {
    let mut yaml = service_entry("productpage", &[("v1", pages)])
        + &service_entry("details", &[("v1", pages)]);
    yaml.push_str(&format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: httpbin, namespace: foo}}
spec:
  hosts: [httpbin.foo]
  resolution: STATIC
  ports: [{{number: 8000, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {}}}, labels: {{app: httpbin, version: v1}}}}
---
",
        httpbin.addr.port()
    ));
    yaml
}

async fn status(mesh: SocketAddr, host: &str, method: &str, headers: &[(&str, &str)]) -> u16 {
    let (s, _, _) = request(&client(), mesh, method, host, "/", headers, Bytes::new()).await;
    s.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_for_http_traffic() {
    let (httpbin, pages) = (
        Backend::start("httpbin").await,
        Backend::start("pages").await,
    );
    let base = services(&httpbin, &pages);
    let weir = Weir::start(&base).await;
    assert_eq!(status(weir.mesh(), "productpage", "GET", &[]).await, 200);
    // allow-nothing: an ALLOW policy without rules in the namespace denies everything there.
    let allow_nothing = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: default}
spec: {}
---
";
    assert!(weir.rewrite(&(base.clone() + allow_nothing)).await);
    let before = pages.hits();
    let (s, h, body) = get(weir.mesh(), "productpage", "/", &[]).await;
    assert_eq!(s, 403);
    assert_eq!(body, "RBAC: access denied");
    assert!(h.get("www-authenticate").is_none());
    assert_eq!(pages.hits(), before, "a denial never reaches the upstream");
    // Another namespace is not touched.
    assert_eq!(status(weir.mesh(), "httpbin.foo", "GET", &[]).await, 200);
    // productpage-viewer: GET to productpage only.
    let viewer = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: productpage-viewer, namespace: default}
spec:
  selector:
    matchLabels: {app: productpage}
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: [GET]
---
";
    assert!(weir.rewrite(&(base.clone() + allow_nothing + viewer)).await);
    assert_eq!(status(weir.mesh(), "productpage", "GET", &[]).await, 200);
    assert_eq!(status(weir.mesh(), "productpage", "POST", &[]).await, 403);
    assert_eq!(status(weir.mesh(), "details", "GET", &[]).await, 403);
    // details-viewer names the calling workload's identity: a plain-text caller has none.
    let details = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: details-viewer, namespace: default}
spec:
  selector:
    matchLabels: {app: details}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/default/sa/bookinfo-productpage]
    to:
    - operation:
        methods: [GET]
---
";
    assert!(
        weir.rewrite(&(base.clone() + allow_nothing + viewer + details))
            .await
    );
    assert_eq!(status(weir.mesh(), "details", "GET", &[]).await, 403);
    // DENY wins over ALLOW; paths with wildcards; notMethods.
    let deny = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector:
    matchLabels: {app: productpage}
  action: DENY
  rules:
  - to:
    - operation:
        paths: [/admin*, \"*.secret\"]
  - when:
    - key: request.headers[x-token]
      values: [guest]
---
";
    assert!(
        weir.rewrite(&(base.clone() + allow_nothing + viewer + deny))
            .await
    );
    let g = |path: &'static str, h: &'static [(&'static str, &'static str)]| {
        let mesh = weir.mesh();
        async move { get(mesh, "productpage", path, h).await.0 }
    };
    assert_eq!(g("/", &[]).await, 200);
    assert_eq!(g("/admin/users", &[]).await, 403);
    assert_eq!(g("/a/b.secret", &[]).await, 403);
    // Tricks that normalise to the denied path are denied too.
    assert_eq!(g("/./admin", &[]).await, 403);
    assert_eq!(g("//admin", &[]).await, 403);
    assert_eq!(g("/%61dmin", &[]).await, 403);
    assert_eq!(g("/x/../admin", &[]).await, 403);
    assert_eq!(g("/", &[("x-token", "guest")]).await, 403);
    assert_eq!(g("/", &[("x-token", "admin")]).await, 200);
    let metrics = weir.metrics().await;
    for (series, at_least) in [
        (
            r#"weir_auth_requests_total{policy="default/deny-admin",result="denied"}"#,
            7.0,
        ),
        (
            r#"weir_auth_requests_total{policy="default/productpage-viewer",result="allowed"}"#,
            2.0,
        ),
    ] {
        let v = metric_value(&metrics, series).unwrap_or(0.0);
        assert!(v >= at_least, "{series} = {v}");
    }
}

/// The JWT task's resources: httpbin in foo, a RequestAuthentication with `keys` (a
/// `jwks: |` block or a `jwksUri:` line), and `extra`.
fn jwt_config(base: &str, keys: &str, extra: &str) -> String {
    format!(
        "{base}apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt-example, namespace: foo}}
spec:
  selector:
    matchLabels: {{app: httpbin}}
  jwtRules:
  - issuer: {ISS}
    {keys}
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders:
    - {{header: x-jwt-sub, claim: sub}}
---
{extra}"
    )
}

fn inline_jwks() -> String {
    format!("jwks: '{}'", ISTIO_JWKS.trim().replace('\'', "''"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_authentication_and_authorization() {
    let (httpbin, pages) = (
        Backend::start("httpbin").await,
        Backend::start("pages").await,
    );
    let base = services(&httpbin, &pages);
    let weir = Weir::start(&jwt_config(&base, &inline_jwks(), "")).await;
    let host = "httpbin.foo";
    let bearer = |t: &str| format!("Bearer {}", t.trim());
    // Without a token: through (unauthenticated). An invalid one: 401.
    assert_eq!(status(weir.mesh(), host, "GET", &[]).await, 200);
    let before = httpbin.hits();
    let (s, h, body) = get(
        weir.mesh(),
        host,
        "/headers",
        &[("authorization", "Bearer deadbeef")],
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        body,
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
    );
    assert!(
        h.get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=")
    );
    assert_eq!(httpbin.hits(), before);
    // A valid token: through, without the token, with the payload and a claim.
    let (s, _, body) = get(
        weir.mesh(),
        host,
        "/headers",
        &[("authorization", &bearer(DEMO_JWT))],
    )
    .await;
    assert_eq!(s, 200);
    let seen: Value = serde_json::from_str(&body).unwrap();
    let headers = &seen["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert_eq!(headers["x-jwt-sub"], ISS);
    let payload = DEMO_JWT.split('.').nth(1).unwrap();
    assert_eq!(headers["x-jwt-payload"], payload);
    // require-jwt: only requests with a valid token from the issuer.
    let require = format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: foo}}
spec:
  selector:
    matchLabels: {{app: httpbin}}
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: [\"{ISS}/{ISS}\"]
---
"
    );
    assert!(
        weir.rewrite(&jwt_config(&base, &inline_jwks(), &require))
            .await
    );
    assert_eq!(status(weir.mesh(), host, "GET", &[]).await, 403);
    assert_eq!(
        status(
            weir.mesh(),
            host,
            "GET",
            &[("authorization", &bearer(DEMO_JWT))]
        )
        .await,
        200
    );
    // ...and the groups claim.
    let groups = require.replace(
        "        requestPrincipals: [\"testing@secure.istio.io/testing@secure.istio.io\"]\n",
        "        requestPrincipals: [\"testing@secure.istio.io/testing@secure.istio.io\"]\n    when:\n    - key: request.auth.claims[groups]\n      values: [group1]\n",
    );
    assert!(
        weir.rewrite(&jwt_config(&base, &inline_jwks(), &groups))
            .await
    );
    assert_eq!(
        status(
            weir.mesh(),
            host,
            "GET",
            &[("authorization", &bearer(DEMO_JWT))]
        )
        .await,
        403
    );
    assert_eq!(
        status(
            weir.mesh(),
            host,
            "GET",
            &[("authorization", &bearer(GROUPS_JWT))]
        )
        .await,
        200
    );
    // Other services are not asked for tokens.
    assert_eq!(
        status(
            weir.mesh(),
            "productpage",
            "GET",
            &[("authorization", "Bearer deadbeef")]
        )
        .await,
        200
    );
    let metrics = weir.metrics().await;
    for series in [
        r#"weir_auth_requests_total{policy="foo/jwt-example",result="invalid_token"}"#,
        r#"weir_auth_requests_total{policy="foo/jwt-example",result="unauthenticated"}"#,
        r#"weir_auth_requests_total{policy="foo/require-jwt",result="allowed"}"#,
        r#"weir_auth_requests_total{policy="none",result="denied"}"#,
    ] {
        assert!(
            metric_value(&metrics, series).unwrap_or(0.0) >= 1.0,
            "{series}"
        );
    }
    // No secret in /config: the public keys only (a JWKS holds no secret), never a token.
    let (_, _, config) = get(weir.admin(), "admin", "/config", &[]).await;
    assert!(!config.contains(DEMO_JWT.trim()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_rotated_and_fail_closed() {
    let (httpbin, pages) = (
        Backend::start("httpbin").await,
        Backend::start("pages").await,
    );
    let base = services(&httpbin, &pages);
    let (a, b) = (EcKey::new("key-a"), EcKey::new("key-b"));
    // Down from the start: no key was ever fetched, so every token is refused.
    let server = KeyServer::start(None).await;
    let config = jwt_config(&base, &format!("jwksUri: {}", server.url()), "");
    let weir = Weir::start(&config).await;
    let host = "httpbin.foo";
    let token_a = a.sign(json!({"iss": ISS, "sub": "alice"}));
    let auth_a = format!("Bearer {token_a}");
    let (s, _, body) = get(weir.mesh(), host, "/", &[("authorization", &auth_a)]).await;
    assert_eq!(
        (s.as_u16(), body.as_str()),
        (401, "Jwks remote fetch is failed")
    );
    let metrics = weir.metrics().await;
    let keys = format!("weir_auth_jwks_keys{{source=\"{}\"}}", server.url());
    assert_eq!(metric_value(&metrics, &keys), Some(0.0));
    // It comes up: the fetcher retries and the same token passes.
    server.set(Some(jwks_of(&[&a])));
    let mut passed = false;
    for _ in 0..200 {
        if status(weir.mesh(), host, "GET", &[("authorization", &auth_a)]).await == 200 {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(passed, "the keys were never fetched");
    // Down again: the keys held keep working.
    server.set(None);
    assert_eq!(
        status(weir.mesh(), host, "GET", &[("authorization", &auth_a)]).await,
        200
    );
    // The issuer rotates to key b: its tokens pass without a restart.
    server.set(Some(jwks_of(&[&a, &b])));
    let auth_b = format!("Bearer {}", b.sign(json!({"iss": ISS, "sub": "bob"})));
    let mut passed = false;
    for _ in 0..200 {
        if status(weir.mesh(), host, "GET", &[("authorization", &auth_b)]).await == 200 {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(passed, "the rotated key was never picked up");
    // A stream of made-up kids does not hammer the key server.
    let before = server.hits();
    for i in 0..200 {
        let forged = EcKey::new(&format!("kid-{i}")).sign(json!({"iss": ISS}));
        let s = status(
            weir.mesh(),
            host,
            "GET",
            &[("authorization", &format!("Bearer {forged}"))],
        )
        .await;
        assert_eq!(s, 401);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = server.hits() - before;
    assert!(asked <= 1, "{asked} fetches for 200 unknown kids");
}

/// A gateway on `port` for `httpbin.foo`, labelled as Istio's ingress gateway, trusting
/// `hops` proxies.
fn ingress(base: &str, port: u16, hops: Option<u32>, policy: &str) -> String {
    let annotation = hops.map_or(String::new(), |n| {
        format!(
            "  annotations:\n    proxy.istio.io/config: '{{\"gatewayTopology\": {{\"numTrustedProxies\": {n}}}}}'\n"
        )
    });
    format!(
        "{base}apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: ingressgateway
  namespace: istio-system
{annotation}spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    bind: 127.0.0.1
    hosts: [\"*\"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin, namespace: foo}}
spec:
  hosts: [\"*\"]
  gateways: [ingressgateway]
  http:
  - route:
    - destination: {{host: httpbin.foo}}
---
{policy}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_ip_based_allow_and_deny() {
    let (httpbin, pages) = (
        Backend::start("httpbin").await,
        Backend::start("pages").await,
    );
    let base = services(&httpbin, &pages);
    let port = free_port();
    let gw: SocketAddr = ([127, 0, 0, 1], port).into();
    let allow = |field: &str, blocks: &str| {
        format!(
            "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ingress-policy, namespace: istio-system}}
spec:
  selector:
    matchLabels: {{istio: ingressgateway}}
  action: ALLOW
  rules:
  - from:
    - source:
        {field}: [{blocks}]
---
"
        )
    };
    let weir = Weir::start(&ingress(
        &base,
        port,
        None,
        &allow("ipBlocks", "1.2.3.4, 5.6.7.0/24"),
    ))
    .await;
    let (s, _, body) = get(gw, "httpbin.foo", "/", &[]).await;
    assert_eq!((s.as_u16(), body.as_str()), (403, "RBAC: access denied"));
    // The mesh listener is not the gateway: no gateway policy there.
    assert_eq!(status(weir.mesh(), "httpbin.foo", "GET", &[]).await, 200);
    assert!(
        weir.rewrite(&ingress(
            &base,
            port,
            None,
            &allow("ipBlocks", "1.2.3.4, 127.0.0.1")
        ))
        .await
    );
    assert_eq!(get(gw, "httpbin.foo", "/", &[]).await.0, 200);
    // remoteIpBlocks: X-Forwarded-For is not believed without trusted proxies...
    let remote = allow("remoteIpBlocks", "1.2.3.4");
    assert!(weir.rewrite(&ingress(&base, port, None, &remote)).await);
    assert_eq!(
        get(gw, "httpbin.foo", "/", &[("x-forwarded-for", "1.2.3.4")])
            .await
            .0,
        403
    );
    // ...and is through one (the client's address is the last hop's word).
    assert!(weir.rewrite(&ingress(&base, port, Some(1), &remote)).await);
    assert_eq!(
        get(gw, "httpbin.foo", "/", &[("x-forwarded-for", "1.2.3.4")])
            .await
            .0,
        200
    );
    assert_eq!(
        get(gw, "httpbin.foo", "/", &[("x-forwarded-for", "9.9.9.9")])
            .await
            .0,
        403
    );
    // A client cannot push a trusted address in front of its own.
    assert_eq!(
        get(
            gw,
            "httpbin.foo",
            "/",
            &[("x-forwarded-for", "1.2.3.4, 9.9.9.9")]
        )
        .await
        .0,
        403
    );
    // DENY by address.
    let deny = allow("ipBlocks", "127.0.0.0/8").replace("action: ALLOW", "action: DENY");
    assert!(weir.rewrite(&ingress(&base, port, None, &deny)).await);
    assert_eq!(get(gw, "httpbin.foo", "/", &[]).await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_errors_are_reported_at_their_place() {
    let dir = scratch_dir();
    let file = dir.join("policies.yaml");
    std::fs::write(
        &file,
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: custom, namespace: default}
spec:
  action: CUSTOM
  provider: {name: ext-authz}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: bad, namespace: default}
spec:
  rules:
  - from:
    - source:
        ipBlocks: [10.0.0.0/33]
    to:
    - operation:
        ports: [\"http\"]
    when:
    - key: request.body
      values: [x]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  jwtRules:
  - issuer: not-a-url
  - issuer: https://idp.example
    jwks: '{\"keys\": []}'
",
    )
    .unwrap();
    let text = validate_refuses(&file).await;
    let at = |line: u32, what: &str| assert_error_at(&text, "policies.yaml", line, what);
    at(5, "CUSTOM");
    at(16, "10.0.0.0/33");
    at(19, "not a port");
    at(21, "request.body");
    at(29, "not-a-url");
    at(31, "jwks");
    assert!(!text.contains("must set at least one field"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_over_https_from_a_server_the_system_trusts() {
    use support::pki::{Pki, server_config};
    let pki = Pki::new();
    pki.issue("jwks", &["localhost"]);
    let tls = tokio_rustls::TlsAcceptor::from(server_config(&pki, "jwks", &[b"http/1.1"], None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let served = hits.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tls, served) = (tls.clone(), served.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(stream).await else {
                    return;
                };
                let svc = service_fn(move |_req| {
                    served.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(ISTIO_JWKS.as_bytes()),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let (httpbin, pages) = (
        Backend::start("httpbin").await,
        Backend::start("pages").await,
    );
    let config = scratch_dir().join("mesh.yaml");
    std::fs::write(
        &config,
        jwt_config(
            &services(&httpbin, &pages),
            &format!("jwksUri: https://localhost:{port}/jwks.json"),
            "",
        ),
    )
    .unwrap();
    let mesh: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // The test's CA is the system's bundle for this process.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--admin", "127.0.0.1:0", "--mesh-listen", &mesh.to_string()])
        .env("SSL_CERT_FILE", pki.path("ca.pem"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(mesh).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let auth = format!("Bearer {}", DEMO_JWT.trim());
    let mut answered = 0;
    for _ in 0..200 {
        let got = tokio::time::timeout(
            Duration::from_secs(1),
            request(
                &client(),
                mesh,
                "GET",
                "httpbin.foo",
                "/",
                &[("authorization", &auth)],
                Bytes::new(),
            ),
        )
        .await;
        if let Ok((s, _, _)) = got {
            answered = s.as_u16();
            if answered == 200 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    assert_eq!(answered, 200, "the keys were never fetched over HTTPS");
    assert!(hits.load(Ordering::SeqCst) >= 1);
}
