//! Kong's authentication and access plugins, as Kong documents them: key-auth, basic-auth, jwt,
//! acl and ip-restriction with declarative consumers and credentials, the headers Kong adds
//! upstream, anonymous consumers, rate limiting by consumer, and no secret in `/config`.

mod support;

use bytes::Bytes;
use serde_json::{Value, json};
use support::*;

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(secret: &[u8], header: Value, claims: Value) -> String {
    let msg = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        msg.as_bytes(),
    );
    format!("{msg}.{}", b64(tag.as_ref()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn kong(backend: &Backend) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: example-service
  url: http://127.0.0.1:{port}
  routes:
  - name: example-route
    paths: [/key]
    plugins:
    - name: key-auth
      config: {{key_names: [apikey], hide_credentials: true}}
    - name: acl
      config: {{allow: [gold]}}
  - name: basic
    paths: [/basic]
    plugins:
    - name: basic-auth
      config: {{hide_credentials: true}}
  - name: jwt
    paths: [/jwt]
    plugins:
    - name: jwt
      config: {{claims_to_verify: [exp]}}
  - name: ip
    paths: [/ip]
    plugins:
    - name: ip-restriction
      config: {{deny: [127.0.0.1], status: 401, message: go away}}
  - name: anon
    paths: [/anon]
    plugins:
    - name: key-auth
      config: {{anonymous: anonymous}}
  - name: limited
    paths: [/limited]
    plugins:
    - name: key-auth
    - name: rate-limiting
      config: {{minute: 2, limit_by: consumer, policy: local}}
  - name: open
    paths: [/open]
consumers:
- username: alice
  custom_id: alice-1
  keyauth_credentials: [{{key: alice-secret-key}}]
  basicauth_credentials: [{{username: alice, password: "p@ss w0rd"}}]
  jwt_secrets: [{{key: alice-issuer, secret: alice-hmac-secret, algorithm: HS256}}]
  acls: [{{group: gold}}]
- username: bob
  keyauth_credentials: [{{key: bob-key}}]
- username: anonymous
"#,
        port = backend.addr.port()
    )
}

/// Status, body and the headers the upstream saw (when it answered).
async fn call(
    mesh: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Value) {
    let (s, h, body) = request(
        &client(),
        mesh,
        "GET",
        "example.com",
        path,
        headers,
        Bytes::new(),
    )
    .await;
    let seen = if h.contains_key("x-backend") {
        serde_json::from_str::<Value>(&body).unwrap()
    } else {
        Value::Null
    };
    (s.as_u16(), body, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_and_acl() {
    let backend = Backend::start("svc").await;
    let weir = Weir::start(&kong(&backend)).await;
    let mesh = weir.mesh();
    let before = backend.hits();
    let (s, body, _) = call(mesh, "/key", &[]).await;
    assert_eq!(
        (s, body.as_str()),
        (401, r#"{"message":"No API key found in request"}"#)
    );
    let (s, body, _) = call(mesh, "/key", &[("apikey", "wrong")]).await;
    assert_eq!(
        (s, body.as_str()),
        (401, r#"{"message":"Invalid authentication credentials"}"#)
    );
    assert_eq!(
        backend.hits(),
        before,
        "a denial never reaches the upstream"
    );
    // alice: through, known upstream by Kong's headers, her key not forwarded; a client's own
    // consumer headers never get through.
    let (s, _, seen) = call(
        mesh,
        "/key",
        &[
            ("apikey", "alice-secret-key"),
            ("x-consumer-username", "admin"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let h = &seen["headers"];
    assert_eq!(h["x-consumer-username"], "alice");
    assert_eq!(h["x-consumer-custom-id"], "alice-1");
    assert_eq!(h["x-consumer-groups"], "gold");
    assert!(h["x-consumer-id"].as_str().unwrap().len() == 36, "{h}");
    assert!(h["x-credential-identifier"].is_string());
    assert!(
        h.get("apikey").is_none() && h.get("x-anonymous-consumer").is_none(),
        "{h}"
    );
    // In the query, hidden too.
    let (s, _, seen) = call(mesh, "/key?apikey=alice-secret-key&x=1", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(seen["uri"], "/?x=1");
    // bob has a key but not the group.
    let (s, body, _) = call(mesh, "/key", &[("apikey", "bob-key")]).await;
    assert_eq!(
        (s, body.as_str()),
        (403, r#"{"message":"You cannot consume this service"}"#)
    );
    // Anonymous: through as the anonymous consumer.
    let (s, _, seen) = call(mesh, "/anon", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(seen["headers"]["x-anonymous-consumer"], "true");
    assert_eq!(seen["headers"]["x-consumer-username"], "anonymous");
    let (_, _, seen) = call(mesh, "/anon", &[("apikey", "bob-key")]).await;
    assert_eq!(seen["headers"]["x-consumer-username"], "bob");
    // Rate limiting by consumer: each consumer has their own count.
    for _ in 0..2 {
        assert_eq!(
            call(mesh, "/limited", &[("apikey", "alice-secret-key")])
                .await
                .0,
            200
        );
    }
    assert_eq!(
        call(mesh, "/limited", &[("apikey", "alice-secret-key")])
            .await
            .0,
        429
    );
    assert_eq!(
        call(mesh, "/limited", &[("apikey", "bob-key")]).await.0,
        200
    );
    // A route without the plugins is open.
    assert_eq!(call(mesh, "/open", &[]).await.0, 200);
    let metrics = weir.metrics().await;
    for series in [
        r#"weir_auth_requests_total{policy="key-auth@route/example-route",result="unauthenticated"}"#,
        r#"weir_auth_requests_total{policy="key-auth@route/example-route",result="invalid_token"}"#,
        r#"weir_auth_requests_total{policy="acl@route/example-route",result="denied"}"#,
        r#"weir_auth_requests_total{policy="acl@route/example-route",result="allowed"}"#,
    ] {
        assert!(
            metric_value(&metrics, series).unwrap_or(0.0) >= 1.0,
            "{series}"
        );
    }
    // No secret in /config.
    let (_, _, config) = get(weir.admin(), "admin", "/config", &[]).await;
    for secret in [
        "alice-secret-key",
        "bob-key",
        "p@ss w0rd",
        "alice-hmac-secret",
    ] {
        assert!(!config.contains(secret), "{secret} in /config");
    }
    assert!(config.contains("REDACTED"));
}

/// Kong's `key_in_body`: the key as a field of a form, JSON or multipart body, hidden from the
/// upstream with `hide_credentials`; the headers and the query are looked at first, a body too
/// large to search has no key, a key given twice is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_reads_the_body_when_asked() {
    let backend = Backend::start("svc").await;
    let weir = Weir::start(&format!(
        r#"_format_version: "3.0"
services:
- name: svc
  url: http://127.0.0.1:{port}
  routes:
  - name: hidden
    paths: [/hidden]
    plugins:
    - name: key-auth
      config: {{key_in_body: true, hide_credentials: true, key_names: [apikey, token]}}
  - name: kept
    paths: [/kept]
    plugins:
    - name: key-auth
      config: {{key_in_body: true}}
  - name: anon
    paths: [/anon]
    plugins:
    - name: key-auth
      config: {{key_in_body: true, anonymous: nobody}}
consumers:
- username: alice
  keyauth_credentials: [{{key: alice-key}}]
- username: nobody
"#,
        port = backend.addr.port()
    ))
    .await;
    let mesh = weir.mesh();
    let post = |path: &'static str, ctype: &'static str, body: Vec<u8>| {
        let client = client();
        async move {
            let (s, h, text) = request(
                &client,
                mesh,
                "POST",
                "example.com",
                path,
                &[("content-type", ctype)],
                Bytes::from(body),
            )
            .await;
            let seen = if h.contains_key("x-backend") {
                serde_json::from_str::<Value>(&text).unwrap()
            } else {
                Value::Null
            };
            (s.as_u16(), text, seen)
        }
    };
    let form = "application/x-www-form-urlencoded";
    let before = backend.hits();
    // A form: through as alice, the key taken out of what the upstream gets.
    let (s, _, seen) = post("/hidden", form, b"a=1&apikey=alice-key&b=2".to_vec()).await;
    assert_eq!(s, 200);
    assert_eq!(seen["body"], "a=1&b=2");
    assert_eq!(seen["headers"]["x-consumer-username"], "alice");
    assert_eq!(seen["headers"]["content-length"], "7");
    // Without hide_credentials the body goes on as it came.
    let (s, _, seen) = post("/kept", form, b"apikey=alice-key&b=2".to_vec()).await;
    assert_eq!(
        (s, seen["body"].as_str()),
        (200, Some("apikey=alice-key&b=2"))
    );
    // JSON, under the second name.
    let json = br#"{"token":"alice-key","order":7}"#.to_vec();
    let (s, _, seen) = post("/hidden", "application/json", json).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(seen["body"].as_str().unwrap()).unwrap(),
        json!({"order": 7})
    );
    // Multipart: the key's part cut out, the file part untouched.
    let multipart = b"--b0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.txt\"\r\n\r\nhello\r\n--b0\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nalice-key\r\n--b0--\r\n".to_vec();
    let (s, _, seen) = post("/hidden", "multipart/form-data; boundary=b0", multipart).await;
    assert_eq!(s, 200);
    let sent = seen["body"].as_str().unwrap();
    assert!(
        sent.contains("hello") && !sent.contains("alice-key"),
        "{sent}"
    );
    // Refusals, none of which reach the upstream: a wrong key, a key twice, a key in a body of
    // a type that is not read, no key.
    let hits = backend.hits();
    let refused = [
        (
            "/hidden",
            form,
            b"apikey=nope".to_vec(),
            "Invalid authentication credentials",
        ),
        (
            "/hidden",
            form,
            b"apikey=alice-key&apikey=x".to_vec(),
            "Duplicate API key found",
        ),
        (
            "/hidden",
            "application/json",
            br#"{"apikey":["alice-key"]}"#.to_vec(),
            "Duplicate API key found",
        ),
        (
            "/hidden",
            "text/plain",
            b"apikey=alice-key".to_vec(),
            "No API key found in request",
        ),
        (
            "/hidden",
            form,
            b"a=1".to_vec(),
            "No API key found in request",
        ),
    ];
    for (path, ctype, body, message) in refused {
        let (s, text, _) = post(path, ctype, body).await;
        assert_eq!((s, text), (401, json!({"message": message}).to_string()));
    }
    assert_eq!(backend.hits(), hits, "a denial never reaches the upstream");
    // Beyond 64 KiB the body is not searched: refused, as Kong refuses a body beyond its
    // buffer; with `anonymous` such a request goes through whole.
    let mut big = b"apikey=alice-key&pad=".to_vec();
    big.resize(100 * 1024, b'x');
    assert_eq!(post("/hidden", form, big.clone()).await.0, 401);
    let (s, _, seen) = post("/anon", form, big.clone()).await;
    assert_eq!(s, 200);
    assert_eq!(seen["headers"]["x-anonymous-consumer"], "true");
    assert_eq!(seen["body"].as_str().unwrap().len(), big.len());
    // The header is looked at before the body, which then goes on unread and whole.
    let (s, _, seen) = request(
        &client(),
        mesh,
        "POST",
        "example.com",
        "/kept",
        &[("apikey", "alice-key"), ("content-type", form)],
        Bytes::from(big.clone()),
    )
    .await;
    assert_eq!(s, 200);
    let seen: Value = serde_json::from_str(&seen).unwrap();
    assert_eq!(seen["body"].as_str().unwrap().len(), big.len());
    assert!(backend.hits() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_jwt_and_ip_restriction() {
    let backend = Backend::start("svc").await;
    let weir = Weir::start(&kong(&backend)).await;
    let mesh = weir.mesh();
    use base64::Engine;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let (s, h, body) = request(
        &client(),
        mesh,
        "GET",
        "example.com",
        "/basic",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), body.as_str()),
        (401, r#"{"message":"Unauthorized"}"#)
    );
    assert_eq!(h["www-authenticate"], "Basic realm=\"service\"");
    let (s, body, _) = call(
        mesh,
        "/basic",
        &[("authorization", &basic("alice", "nope"))],
    )
    .await;
    assert_eq!(
        (s, body.as_str()),
        (401, r#"{"message":"Invalid authentication credentials"}"#)
    );
    let (s, _, seen) = call(
        mesh,
        "/basic",
        &[("authorization", &basic("alice", "p@ss w0rd"))],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(seen["headers"]["x-credential-identifier"], "alice");
    assert!(seen["headers"].get("authorization").is_none(), "hidden");
    // jwt: HS256 with the consumer's secret, `iss` naming the credential.
    let secret = b"alice-hmac-secret";
    let hdr = json!({"alg": "HS256", "typ": "JWT"});
    let good = hs256(
        secret,
        hdr.clone(),
        json!({"iss": "alice-issuer", "exp": now() + 600}),
    );
    let (s, _, seen) = call(
        mesh,
        "/jwt",
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(seen["headers"]["x-consumer-username"], "alice");
    assert_eq!(seen["headers"]["x-credential-identifier"], "alice-issuer");
    let (s, _, _) = call(mesh, &format!("/jwt?jwt={good}"), &[]).await;
    assert_eq!(s, 200);
    for (token, message) in [
        (String::new(), r#"{"message":"Unauthorized"}"#),
        (
            hs256(
                secret,
                hdr.clone(),
                json!({"iss": "alice-issuer", "exp": now() - 10}),
            ),
            r#"{"message":"token expired"}"#,
        ),
        (
            hs256(
                b"guess",
                hdr.clone(),
                json!({"iss": "alice-issuer", "exp": now() + 60}),
            ),
            r#"{"message":"Invalid signature"}"#,
        ),
        (
            hs256(secret, hdr.clone(), json!({"exp": now() + 60})),
            r#"{"message":"No mandatory 'iss' in claims"}"#,
        ),
        (
            hs256(
                secret,
                hdr.clone(),
                json!({"iss": "mallory", "exp": now() + 60}),
            ),
            r#"{"message":"No credentials found for given 'iss'"}"#,
        ),
        (
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none"}"#),
                b64(br#"{"iss":"alice-issuer"}"#)
            ),
            r#"{"message":"Bad token; invalid JSON"}"#,
        ),
        (
            hs256(
                secret,
                json!({"alg": "HS384"}),
                json!({"iss": "alice-issuer", "exp": now() + 60}),
            ),
            r#"{"message":"Invalid algorithm"}"#,
        ),
    ] {
        let auth = format!("Bearer {token}");
        let headers: &[(&str, &str)] = if token.is_empty() {
            &[]
        } else {
            &[("authorization", &auth)]
        };
        let (s, body, _) = call(mesh, "/jwt", headers).await;
        assert_eq!((s, body.as_str()), (401, message), "{token}");
    }
    // ip-restriction: the configured status and message.
    let (s, body, _) = call(mesh, "/ip", &[]).await;
    assert_eq!((s, body.as_str()), (401, r#"{"message":"go away"}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_and_credential_errors_are_reported_at_their_place_without_the_secret() {
    let file = scratch_dir().join("kong.yaml");
    std::fs::write(
        &file,
        r#"_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  routes:
  - name: r
    paths: [/]
    plugins:
    - name: key-auth
      config: {key_names: [not a header]}
    - name: basic-auth
      config: {anonymous: nobody}
    - name: ip-restriction
      config: {allow: [300.1.1.1]}
consumers:
- username: a
  keyauth_credentials: [{key: same-secret-key}]
- username: b
  keyauth_credentials: [{key: same-secret-key}]
"#,
    )
    .unwrap();
    let text = validate_refuses(&file).await;
    let at = |line: u32, what: &str| assert_error_at(&text, "kong.yaml", line, what);
    at(10, "not a header");
    at(12, "nobody");
    at(14, "300.1.1.1");
    at(19, "another credential");
    assert!(
        !text.contains("same-secret-key"),
        "a secret in an error: {text}"
    );
}
