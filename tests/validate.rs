//! `weir validate`: every error, each with file:line:column, and a non-zero exit.

mod support;

use std::process::Command;

fn validate(files: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Validates `yaml` as a file and checks it is rejected with each of `expected`
/// (`line:column: message`, after the file's name).
fn assert_errors(tag: &str, yaml: &str, expected: &[&str]) {
    let dir = std::env::temp_dir().join(format!("weir-validate-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (ok, out) = validate(&[file.to_str().unwrap()]);
    assert!(!ok);
    let f = file.display().to_string();
    for expected in expected {
        let expected = format!("{f}:{expected}");
        assert!(out.contains(&expected), "missing `{expected}` in:\n{out}");
    }
}

#[test]
fn examples_validate() {
    for f in [
        "examples/bookinfo.yaml",
        "examples/canary.yaml",
        "examples/ab-testing.yaml",
        "examples/resilience.yaml",
    ] {
        let (ok, out) = validate(&[f]);
        assert!(ok, "{f}: {out}");
    }
}

#[test]
fn every_error_is_reported_with_its_position() {
    assert_errors(
        "core",
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - match:
    - uri: {regex: "(unclosed"}
    timeout: 3 seconds
    route:
    - destination: {host: api, subset: v2}
      weigth: 10
    - destination: {host: nowhere}
  - retries: {attempts: many}
    route: [{destination: {host: api}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [other]
  http: [{route: [{destination: {host: api}}]}]
"#,
        &[
            "25:14: invalid duration `3 seconds`",
            "28:7: unknown field `weigth` in HTTPRouteDestination (did you mean `weight`?)",
            "30:25: expected an integer, found a string",
            "24:20: invalid regex `(unclosed`",
            "27:40: subset `v2` of `api` is not defined by a DestinationRule",
            "29:27: destination host `nowhere` is not declared by any ServiceEntry",
            "33:1: duplicate VirtualService `api`",
        ],
    );
}

#[test]
fn resilience_errors_are_reported_with_their_positions() {
    assert_errors(
        "resilience",
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user, useSourceIp: true, maglev: {tableSize: 65536}}
      warmup: {minimumPercent: 10}
    outlierDetection: {maxEjectionPercent: 150}
  subsets:
  - name: v1
    trafficPolicy:
      loadBalancer:
        consistentHash: {uriCapture: 1st, fallback: {usePath: true, ringHash: {}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - retries: {attempts: 2, retryOn: "5xx,sometimes", perTryTimeout: 0s}
    route: [{destination: {host: api}}]
    fallback: {}
  - route: [{destination: {host: api}}]
    fallback:
      destination: {host: nowhere}
      staleCache: {maxEntries: 0}
"#,
        &[
            "17:23: consistentHash takes one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName, usePath, uriCapture",
            "17:23: maglev.tableSize 65536 is not a prime",
            "18:15: warmup needs a duration",
            "24:25: `1st` is not a capture group name",
            "24:53: consistentHash.fallback is one key, without fallback, ringHash or maglev",
            "19:23: maxEjectionPercent must be between 0 and 100",
            "32:14: retries.perTryTimeout must be at least 1ms",
            "32:37: unknown retryOn condition `sometimes`",
            "34:15: fallback needs one of staleCache, destination, response",
            "37:27: destination host `nowhere` is not declared by any ServiceEntry",
            "38:19: staleCache.maxEntries must be above 0",
        ],
    );
}

#[test]
fn rollout_and_mirror_fields_are_checked() {
    assert_errors(
        "rollout",
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api]
  resolution: STATIC
  ports: [{number: 80, name: http}]
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api]
  http:
  - sessionAffinity: {cookieName: "bad name"}
    mirrors:
    - destination: {host: api, subset: v2}
      percentage: {value: 150}
    route:
    - {destination: {host: api, subset: v1}, weight: 90}
    - {destination: {host: api, subset: v2}, weight: 10}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: api}
spec:
  targetRef: {kind: VirtualService, name: api}
  primarySubset: v1
  canarySubset: v2
  analysis:
    sessionAffinity: {cookieName: c, sameSite: Sometimes}
    metrics:
    - name: error-rate-vs-primary
      confidence: 120
    - name: errors
      query: sum(up)
    webhooks:
    - {name: gate, type: confirm-rollout, url: "ftp://x/"}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  targetRef: {kind: Deployment, name: podinfo}
"#,
        &[
            "23:22: cookieName `bad name` is not a valid cookie name",
            "25:20: mirror percentage must be between 0 and 100",
            "39:22: sameSite must be Strict, Lax or None",
            "41:7: confidence must be a percentage above 50 and below 100",
            "43:7: metric `errors` has a query but the Canary has no metricsServer to run it on",
            "46:7: webhook `gate`: `ftp://x/` is not an http:// URL",
            "52:39: a Deployment target `podinfo` needs its service `podinfo-primary` declared with a ServiceEntry",
            "52:39: a Deployment target `podinfo` needs its service `podinfo-canary` declared with a ServiceEntry",
        ],
    );
}

#[test]
fn gateway_tls_is_checked_and_its_files_loaded() {
    assert_errors(
        "tls",
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  servers:
  - port: {number: 8443, name: a, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, serverCertificate: missing.pem, privateKey: missing-key.pem}
  - port: {number: 8444, name: b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8445, name: c, protocol: HTTPS}
    hosts: [c.example.com]
    tls: {mode: MUTUAL, credentialName: c-cert, minProtocolVersion: TLSV1_0}
  - port: {number: 8446, name: d, protocol: HTTPS}
    hosts: [d.example.com]
"#,
        &[
            "8:10: TLS: ",
            "11:17: tls.mode PASSTHROUGH is not supported",
            "14:10: credentialName names a Kubernetes secret",
            "14:69: minProtocolVersion TLSV1_0",
            "14:10: an HTTPS server needs tls.serverCertificate",
            "14:10: MUTUAL needs caCertificates",
            "15:11: an HTTPS server needs `tls`",
        ],
    );
}

#[test]
fn upstream_tls_is_checked_and_its_files_loaded() {
    assert_errors(
        "upstream-tls",
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.internal]
  ports: [{number: 443, name: https, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.internal
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: missing-ca.pem}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: MUTUAL, credentialName: api-cert}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: ["spiffe://cluster.local/ns/a/sa/b"], caCrl: crl.pem}
"#,
        &[
            "15:10: TLS: ",
            "18:12: credentialName names a Kubernetes secret",
            "18:12: MUTUAL needs clientCertificate and privateKey",
            "23:12: tls.caCrl is not supported yet",
            "23:12: subjectAltNames: \"spiffe://cluster.local/ns/a/sa/b\" is not a DNS name",
        ],
    );
}

#[test]
fn a_canary_without_target_ref_is_reported_once_at_its_place() {
    let yaml = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: api}
spec:
  analysis: {interval: 1m}
";
    assert_errors(
        "no-target",
        yaml,
        &["5:3: Canary spec is missing required field `targetRef`"],
    );
    let dir = std::env::temp_dir().join(format!("weir-validate-no-target-{}", std::process::id()));
    let (_, out) = validate(&[dir.join("bad.yaml").to_str().unwrap()]);
    assert_eq!(
        out.lines().filter(|l| l.contains("bad.yaml:")).count(),
        1,
        "{out}"
    );
    assert!(!out.contains(":0:0:"), "{out}");
}

#[test]
fn a_service_entry_without_ports_loads_with_a_warning() {
    let dir = std::env::temp_dir().join(format!("weir-validate-se-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("external.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [api.example.com]
  resolution: DNS
",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("external.yaml:5:3: ServiceEntry has no ports: weir sends HTTP to port 80"),
        "{stderr}"
    );
}

#[test]
fn flagger_service_delegation_is_refused_with_the_reason() {
    let yaml = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service:
    port: 9898
    delegation: true
  analysis: {interval: 1m}
";
    assert_errors(
        "delegation",
        yaml,
        &["7:5: service.delegation is not supported: weir has no parent VirtualServices"],
    );
}

#[test]
fn wildcard_and_unix_socket_service_entries_are_refused_with_the_reason() {
    let yaml = r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild}
spec:
  hosts: ["*.example.com"]
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: uds}
spec:
  hosts: [uds.local]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: "unix:///var/run/a.sock"}]
"#;
    assert_errors(
        "wild",
        yaml,
        &[
            "5:11: wildcard ServiceEntry hosts are not supported: they forward to the address a sidecar intercepted",
            "16:25: unix socket endpoints are not supported: weir connects to its upstreams over TCP",
        ],
    );
}

#[tokio::test]
async fn weir_diff_says_what_changes_for_traffic() {
    let dir = support::scratch_dir();
    let (old, new) = (dir.join("old.yaml"), dir.join("new.yaml"));
    let vs = |w1: u32, w2: u32, timeout: &str| {
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shop}}
spec:
  hosts: [shop]
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: 9001}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: 9002}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: shop}}
spec:
  host: shop
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [shop]
  http:
  - name: main
    timeout: {timeout}
    route:
    - {{destination: {{host: shop, subset: v1}}, weight: {w1}}}
    - {{destination: {{host: shop, subset: v2}}, weight: {w2}}}
"
        )
    };
    std::fs::write(&old, vs(90, 10, "2s")).unwrap();
    std::fs::write(&new, vs(50, 50, "5s")).unwrap();
    let out = support::weir_cli(["diff", old.to_str().unwrap(), new.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said,
        "VirtualService default/shop\n  route \"main\": weight of shop v1: 90% → 50%\n  route \"main\": weight of shop v2: 10% → 50%\n  route \"main\": timeout: 2s → 5s\n"
    );
    let same = support::weir_cli(["diff", old.to_str().unwrap(), old.to_str().unwrap()]).await;
    assert_eq!(same.status.code(), Some(0));
    std::fs::write(&new, vs(50, 50, "5x")).unwrap();
    let bad = support::weir_cli(["diff", old.to_str().unwrap(), new.to_str().unwrap()]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("new.yaml:26:14: invalid duration"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
}

#[tokio::test]
async fn weir_plan_simulates_a_rollout_in_seconds() {
    let canary = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/canary.yaml");
    let healthy = support::weir_cli(["plan", canary, "--rps", "100"]).await;
    let said = String::from_utf8_lossy(&healthy.stdout);
    assert!(healthy.status.success(), "{said}");
    assert!(said.contains("Outcome: promoted after"), "{said}");
    assert!(said.contains("promoted 100%, rolled back 0%"), "{said}");
    for w in [10, 20, 30, 40, 50] {
        assert!(
            said.contains(&format!("Advance api-service canary weight {w}")),
            "{said}"
        );
    }
    let bad = support::weir_cli([
        "plan",
        canary,
        "--rps",
        "100",
        "--error-rate",
        "5",
        "--runs",
        "50",
    ])
    .await;
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(said.contains("promoted 0%, rolled back 100%"), "{said}");
    assert!(
        said.contains("failed canary requests (users hurt):"),
        "{said}"
    );
    // The same seeds, the same plan.
    let again = support::weir_cli([
        "plan",
        canary,
        "--rps",
        "100",
        "--error-rate",
        "5",
        "--runs",
        "50",
    ])
    .await;
    assert_eq!(bad.stdout, again.stdout);
    let invalid = support::weir_cli(["plan", canary, "--rps", "0"]).await;
    assert_eq!(invalid.status.code(), Some(2));
}

#[tokio::test]
async fn weir_plan_sizes_an_experiment() {
    let out = support::weir_cli([
        "plan",
        "--baseline-rate",
        "10",
        "--lift",
        "20",
        "--runs",
        "100",
    ])
    .await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("control converts 10.00%, the variant 12.00%"),
        "{said}"
    );
    // The textbook figure for 10% -> 12% at 95% / 80%.
    assert!(
        said.contains("(fixed horizon): 3841 users per variant"),
        "{said}"
    );
    assert!(said.contains("A/A"), "{said}");
    let bad = support::weir_cli(["plan", "--baseline-rate", "120", "--lift", "20"]).await;
    assert_eq!(bad.status.code(), Some(2));
}
