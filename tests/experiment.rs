//! A/B experiments end to end: simulated users on loopback against real backends, counted by
//! weir, judged, concluded and rolled out.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use support::*;

/// The shop: v1 and v2 of one service, a VirtualService sending everything to v1, and an
/// experiment splitting it; `extra` adds fields to the experiment's spec (indented by two).
fn config(v1: &Backend, v2: &Backend, assignment: &str, extra: &str) -> String {
    service_entry("shop", &[("v1", v1), ("v2", v2)])
        + &destination_rule("shop", &["v1", "v2"])
        + &format!(
            "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop}}
spec:
  hosts: [shop]
  http:
  - name: all
    route:
    - destination: {{host: shop, subset: v1}}
---
apiVersion: weir.io/v1alpha1
kind: Experiment
metadata: {{name: new-checkout}}
spec:
  targetRef: {{apiVersion: networking.istio.io/v1beta1, kind: VirtualService, name: shop}}
  variants:
  - {{name: control, subset: v1, weight: 50}}
  - {{name: new-ui, subset: v2, weight: 50}}
  assignment: {assignment}
  goals:
  - name: purchase
    match: [{{uri: {{prefix: /checkout}}, method: {{exact: POST}}}}]
  - name: signup
    responseHeader: x-weir-goal
  - name: revenue
    responseHeader: x-weir-goal
    value: true
  primaryGoal: purchase
  confidence: 95
  minimumDetectableEffect: 50
{extra}"
        )
}

/// What the simulated users did, per variant (`v1`, `v2`).
#[derive(Default, Debug)]
struct Truth {
    users: HashMap<String, u64>,
    purchases: HashMap<String, u64>,
    signups: HashMap<String, u64>,
    revenue: HashMap<String, f64>,
}

/// The experiment cookie of a response (`name=value`).
fn cookie(h: &http::HeaderMap) -> Option<String> {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("weir-exp="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// `n` users: each opens the shop, looks once more, and converts with the rate of the version
/// it was shown (`rates[0]` on v1, `rates[1]` on v2); some sign up; buyers pay 12.50, some
/// twice. `skew` (users known by `x-user-id`): users shown v1 lose their cookie twice and are
/// counted again each time (a broken client on one variant).
async fn users(
    mesh: std::net::SocketAddr,
    n: u64,
    seed: u64,
    rates: [f64; 2],
    skew: bool,
) -> Truth {
    let mut rng = fastrand::Rng::with_seed(seed);
    let c = client();
    let mut t = Truth::default();
    let mut tallies: HashMap<String, f64> = Default::default();
    for i in 0..n {
        let id = format!("user-{seed}-{i}");
        let key: &[(&str, &str)] = if skew { &[("x-user-id", &id)] } else { &[] };
        let (s, h, _) = send(&c, mesh, "shop", "/", key).await;
        assert_eq!(s, 200);
        let version = backend_of(&h);
        let jar = cookie(&h).expect("a new participant gets the experiment's cookie");
        *t.users.entry(version.clone()).or_default() += 1;
        // Coming back: the same version, no new cookie, not counted again.
        let with: Vec<(&str, &str)> = key
            .iter()
            .copied()
            .chain([("cookie", jar.as_str())])
            .collect();
        let (_, again, _) = send(&c, mesh, "shop", "/", &with).await;
        assert_eq!(backend_of(&again), version);
        assert!(cookie(&again).is_none());
        if skew && version == "v1" {
            for _ in 0..2 {
                let (_, h, _) = send(&c, mesh, "shop", "/", key).await;
                assert_eq!(backend_of(&h), "v1");
                *t.users.entry(backend_of(&h)).or_default() += 1;
            }
        }
        // Each variant converts its share exactly (every user adds its rate to the variant's
        // tally and converts when that reaches a whole one): with random conversions, one
        // run in a few dozen drew 1000 users too close together to call, and the winner
        // test waited for a decision the data did not support.
        let rate = if version == "v1" { rates[0] } else { rates[1] };
        let tally = tallies.entry(version.clone()).or_insert(0.0);
        *tally += rate;
        let converts = *tally >= 1.0 - 1e-9;
        if converts {
            *tally -= 1.0;
        }
        let mut jar = jar;
        if rng.f64() < 0.3 {
            let (_, h, _) = send(
                &c,
                mesh,
                "shop",
                "/signup",
                &[key, &[("cookie", &jar), ("x-reply-goal", "signup")]].concat(),
            )
            .await;
            jar = cookie(&h).unwrap_or(jar);
            *t.signups.entry(version.clone()).or_default() += 1;
        }
        if converts {
            let times = if rng.bool() { 2 } else { 1 };
            for _ in 0..times {
                let (s, h, _) = request(
                    &c,
                    mesh,
                    "POST",
                    "shop",
                    "/checkout",
                    &[
                        key,
                        &[("cookie", &jar), ("x-reply-goal", "purchase; value=12.50")],
                    ]
                    .concat(),
                    Bytes::from_static(b"{}"),
                )
                .await;
                assert_eq!(s, 200);
                assert_eq!(backend_of(&h), version);
                jar = cookie(&h).unwrap_or(jar);
                *t.revenue.entry(version.clone()).or_default() += 12.5;
            }
            *t.purchases.entry(version.clone()).or_default() += 1;
        }
    }
    t
}

async fn experiment(admin: std::net::SocketAddr) -> Value {
    let (s, _, body) = get(admin, "admin", "/experiments/new-checkout", &[]).await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls the experiment until `done` holds (or panics after 30 s).
async fn until(admin: std::net::SocketAddr, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let x = experiment(admin).await;
        if done(&x) {
            return x;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {}", experiment(admin).await);
}

fn variant<'a>(x: &'a Value, name: &str) -> &'a Value {
    x["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_against_twenty_percent_counts_exactly_picks_the_winner_then_rolls_it_out() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let cookie_mode = "{cookieName: weir-exp, maxAge: 720h}";
    let waiting = config(
        &v1,
        &v2,
        cookie_mode,
        "  minUsersPerVariant: 1000000\n  onConclusion: rollout\n  rollout: {analysis: {interval: 1s, threshold: 5, stepWeight: 50, maxWeight: 100}}\n",
    );
    // weir draws each participant's id at random: one draw in a thousand is skewed enough
    // for the sample-ratio check (p < 0.001) and then rightly blocks a decision. Such a draw
    // must be flagged; the rest is then shown on a fresh draw.
    let mut seeds = [7, 8, 9].into_iter();
    let (weir, t, x) = loop {
        let seed = seeds
            .next()
            .expect("three skewed draws in a row (p < 1e-9)");
        let weir = Weir::start(&waiting).await;
        let t = users(weir.mesh(), 1000, seed, [0.1, 0.2], false).await;
        // The counts equal what the users did, once the controller has looked.
        let x = until(weir.admin(), |x| {
            x["variants"][0]["users"].as_u64().unwrap()
                + x["variants"][1]["users"].as_u64().unwrap()
                == 1000
                && x["variants"][0]["goals"]["purchase"].is_object()
                && x["variants"][0]["goals"]["purchase"]["conversions"].as_u64()
                    == t.purchases.get("v1").copied()
        })
        .await;
        // Pearson's chi-square of the split against 50/50; 10.828 is its 0.999 quantile
        // (one degree of freedom).
        let chi2: f64 = ["v1", "v2"]
            .iter()
            .map(|v| (t.users.get(*v).copied().unwrap_or(0) as f64 - 500.0).powi(2) / 500.0)
            .sum();
        assert_eq!(x["srm"]["mismatch"], chi2 > 10.828, "chi2 {chi2}: {x}");
        if chi2 <= 10.828 {
            break (weir, t, x);
        }
    };
    for (name, version) in [("control", "v1"), ("new-ui", "v2")] {
        let v = variant(&x, name);
        assert_eq!(v["users"].as_u64(), t.users.get(version).copied(), "{x}");
        assert_eq!(
            v["goals"]["purchase"]["conversions"].as_u64(),
            t.purchases.get(version).copied(),
            "{x}"
        );
        assert_eq!(
            v["goals"]["signup"]["conversions"].as_u64(),
            t.signups.get(version).copied()
        );
        let revenue = v["goals"]["revenue"]["value"]["sum"].as_f64().unwrap();
        assert!((revenue - t.revenue[version]).abs() < 1e-6, "{revenue}");
        let interval = v["goals"]["purchase"]["interval"].as_array().unwrap();
        let rate = v["goals"]["purchase"]["rate"].as_f64().unwrap();
        assert!(interval[0].as_f64().unwrap() <= rate && rate <= interval[1].as_f64().unwrap());
    }
    assert_eq!(x["phase"], "Running");
    assert!(x["decision"]["winner"].is_null());
    let reason = x["decision"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("waiting for participants"), "{reason}");
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "weir_experiment_users_total{experiment=\"new-checkout\",variant=\"new-ui\"}"
        ),
        t.users.get("v2").map(|&u| u as f64)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "weir_experiment_conversions_total{experiment=\"new-checkout\",variant=\"control\",goal=\"purchase\"}"
        ),
        t.purchases.get("v1").map(|&u| u as f64)
    );
    // Enough participants: the decision is made on the counts so far.
    let deciding = waiting.replace("minUsersPerVariant: 1000000", "minUsersPerVariant: 100");
    assert!(weir.rewrite(&deciding).await);
    let x = until(weir.admin(), |x| x["phase"] != "Running").await;
    assert_eq!(x["phase"], "Concluded", "{x}");
    assert_eq!(x["decision"]["winner"], "new-ui", "{x}");
    let reason = x["decision"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("new-ui converts "), "{reason}");
    assert!(reason.ends_with("users: winner"), "{reason}");
    assert!(x["decision"]["confidence"].as_f64().unwrap() >= 95.0);
    assert_eq!(x["rollout"], "new-checkout");
    // The winner's canary runs, and ends with everyone on v2.
    let mut done = false;
    let mut last = String::new();
    for _ in 0..300 {
        for _ in 0..5 {
            get(weir.mesh(), "shop", "/", &[]).await;
        }
        let (s, _, body) = get(weir.admin(), "admin", "/canaries/new-checkout", &[]).await;
        last = body.clone();
        if s == 200 {
            let c: Value = serde_json::from_str(&body).unwrap();
            assert_ne!(c["phase"], "Failed", "{c}");
            if c["phase"] == "Succeeded" {
                done = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        done,
        "the winner's canary did not succeed: {last} {}",
        experiment(weir.admin()).await["events"]
    );
    for _ in 0..20 {
        let (_, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
        assert_eq!(backend_of(&h), "v2");
        assert!(cookie(&h).is_none(), "an ended experiment sets no cookie");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_assignment_is_flagged_as_a_sample_ratio_mismatch() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let yaml = config(
        &v1,
        &v2,
        "{header: x-user-id, cookieName: weir-exp}",
        "  minUsersPerVariant: 1000000\n  onConclusion: stop\n",
    );
    let weir = Weir::start(&yaml).await;
    // Users shown v1 come back without their cookie: v1 is over-counted, and v2 converts far
    // better; an analysis of these counts would be wrong, so none is made.
    users(weir.mesh(), 600, 11, [0.1, 0.4], true).await;
    let x = until(weir.admin(), |x| x["srm"]["mismatch"] == true).await;
    assert!(x["srm"]["pValue"].as_f64().unwrap() < 0.001, "{x}");
    assert_eq!(x["phase"], "Running");
    assert!(x["decision"]["winner"].is_null());
    let reason = x["decision"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("SAMPLE RATIO MISMATCH"), "{reason}");
    let warned =
        x["events"].as_array().unwrap().iter().any(|e| {
            e["type"] == "Warning" && e["message"].as_str().unwrap().contains("SAMPLE RATIO")
        });
    assert!(warned, "{x}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_keep_their_variant_across_instances_and_restarts() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    // A key the app already has: two instances assign every user alike without sharing
    // anything.
    let by_header = config(
        &v1,
        &v2,
        "{header: x-user-id, cookieName: weir-exp}",
        "  minUsersPerVariant: 1000000\n",
    );
    let a = Weir::start(&by_header).await;
    let b = Weir::start(&by_header).await;
    let mut seen = [0; 2];
    for u in 0..200 {
        let id = format!("user-{u}");
        let (_, ha, _) = get(a.mesh(), "shop", "/", &[("x-user-id", &id)]).await;
        let (_, hb, _) = get(b.mesh(), "shop", "/", &[("x-user-id", &id)]).await;
        assert_eq!(backend_of(&ha), backend_of(&hb), "{id}");
        seen[usize::from(backend_of(&ha) == "v2")] += 1;
    }
    assert!(seen[0] > 60 && seen[1] > 60, "{seen:?}");
    drop((a, b));
    // A cookie: kept across a restart, with the counts (state directory).
    let state = scratch_dir();
    let by_cookie = config(
        &v1,
        &v2,
        "{cookieName: weir-exp}",
        "  minUsersPerVariant: 1000000\n",
    );
    let weir = Weir::start_with_state(&by_cookie, Some(state)).await;
    let mut jars = Vec::new();
    for _ in 0..40 {
        let (_, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
        jars.push((cookie(&h).unwrap(), backend_of(&h)));
    }
    let before = until(weir.admin(), |x| {
        x["variants"][0]["users"].as_u64().unwrap() + x["variants"][1]["users"].as_u64().unwrap()
            == 40
    })
    .await;
    // The state is kept every second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let weir = weir.restart().await;
    for (jar, version) in &jars {
        let (_, h, _) = get(weir.mesh(), "shop", "/", &[("cookie", jar)]).await;
        assert_eq!(&backend_of(&h), version);
        assert!(cookie(&h).is_none());
    }
    let after = until(weir.admin(), |x| {
        x["variants"][0]["users"].as_u64().is_some()
    })
    .await;
    for v in 0..2 {
        assert_eq!(
            after["variants"][v]["users"], before["variants"][v]["users"],
            "{after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_guardrail_stops_the_experiment_on_the_control() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let yaml = config(
        &v1,
        &v2,
        "{cookieName: weir-exp}",
        "  minUsersPerVariant: 1000000\n  guardrails:\n  - {name: request-success-rate, thresholdRange: {min: 99}, interval: 1s}\n",
    );
    let weir = Weir::start(&yaml).await;
    let c = client();
    let mut on_v2 = Vec::new();
    // v2 fails every request of `/fail/v2`; v1 answers it.
    for _ in 0..300 {
        let (_, h, _) = send(&c, weir.mesh(), "shop", "/fail/v2", &[]).await;
        if backend_of(&h) == "v2" {
            on_v2.push(cookie(&h).unwrap());
        }
        let x = experiment(weir.admin()).await;
        if x["phase"] != "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let x = until(weir.admin(), |x| x["phase"] != "Running").await;
    assert_eq!(x["phase"], "Stopped", "{x}");
    let reason = x["decision"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("guardrail failed: request-success-rate"),
        "{reason}"
    );
    assert!(reason.contains("new-ui"), "{reason}");
    // Everyone on the control now, those who were on new-ui too.
    assert!(!on_v2.is_empty());
    for jar in on_v2.iter().take(10) {
        let (s, h, _) = get(weir.mesh(), "shop", "/", &[("cookie", jar)]).await;
        assert_eq!((s.as_u16(), backend_of(&h)), (200, "v1".to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_stop_and_conclude_from_the_admin_api() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let yaml = config(
        &v1,
        &v2,
        "{cookieName: weir-exp}",
        "  minUsersPerVariant: 1000000\n  onConclusion: none\n",
    );
    let weir = Weir::start(&yaml).await;
    let (_, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
    let (jar, version) = (cookie(&h).unwrap(), backend_of(&h));
    let (s, _, body) = get(weir.admin(), "admin", "/experiments", &[]).await;
    assert_eq!(s, 200);
    let all: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(all["experiments"][0]["name"], "new-checkout");
    let post = |path: &'static str| {
        let admin = weir.admin();
        async move { request(&client(), admin, "POST", "admin", path, &[], Bytes::new()).await }
    };
    // The CLI shows the same.
    let admin = weir.admin().to_string();
    let out = weir_cli(["experiment", "list", "--admin", &admin]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("new-checkout") && text.contains("Running"),
        "{text}"
    );
    let out = weir_cli(["experiment", "status", "new-checkout", "--admin", &admin]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("control") && text.contains("new-ui") && text.contains("Decision: waiting"),
        "{text}"
    );
    assert!(
        !weir_cli(["experiment", "status", "nope", "--admin", &admin])
            .await
            .status
            .success()
    );
    assert_eq!(post("/experiments/nope/stop").await.0, 404);
    assert_eq!(post("/experiments/new-checkout/explode").await.0, 404);
    let (s, _, body) = post("/experiments/new-checkout/conclude").await;
    assert_eq!(s, 200, "{body}");
    let x: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(x["phase"], "Concluded", "{x}");
    assert!(
        x["decision"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("concluded by an operator")
    );
    // onConclusion none: the participant stays; a new user gets the route as it is (v1).
    let (_, h, _) = get(weir.mesh(), "shop", "/", &[("cookie", &jar)]).await;
    assert_eq!(backend_of(&h), version);
    for _ in 0..10 {
        let (_, h, _) = get(weir.mesh(), "shop", "/", &[]).await;
        assert_eq!(backend_of(&h), "v1");
        assert!(cookie(&h).is_none());
    }
    // Ended: a second command is refused.
    assert_eq!(post("/experiments/new-checkout/stop").await.0, 409);
    let out = weir_cli(["experiment", "stop", "new-checkout", "--admin", &admin]).await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn weir_validate_reports_experiment_errors_at_their_place() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let good = config(&v1, &v2, "{cookieName: weir-exp}", "");
    let dir = scratch_dir();
    let path = dir.join("exp.yaml");
    std::fs::write(&path, &good).unwrap();
    let out = weir_cli(["validate", path.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = good
        .replace("subset: v2, weight: 50", "subset: v9, weight: 50")
        .replace("primaryGoal: purchase", "primaryGoal: nothing")
        .replace("confidence: 95", "confidence: 150");
    std::fs::write(&path, &bad).unwrap();
    let out = weir_cli(["validate", path.to_str().unwrap()]).await;
    let err =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let file = path.display();
    assert!(
        err.contains(&format!("{file}:{}:", line_of("subset: v9"))) && err.contains("subset `v9`"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:{}:", line_of("primaryGoal")))
            && err.contains("primaryGoal `nothing`"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:{}:", line_of("confidence: 150"))),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_measured_by_prometheus_joins_the_counts() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let admin_port = free_port();
    let prometheus = Prometheus::start(([127, 0, 0, 1], admin_port).into()).await;
    // The seed's goal from Prometheus: conversions over participants, per variant (here weir's
    // own counters, so the answer is known).
    let template = format!(
        "apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: conversion-rate}}
spec:
  provider: {{type: prometheus, address: 'http://{}'}}
  query: |
    sum(weir_experiment_conversions_total{{experiment=\"new-checkout\",variant=\"{{{{ variant }}}}\",goal=\"purchase\"}})
    /
    sum(weir_experiment_users_total{{experiment=\"new-checkout\",variant=\"{{{{ variant }}}}\"}})
---
",
        prometheus.addr
    );
    let yaml = template
        + &config(&v1, &v2, "{cookieName: weir-exp}", "  minUsersPerVariant: 1000000\n").replace(
            "  primaryGoal: purchase",
            "  - name: checkout-rate\n    templateRef: {name: conversion-rate}\n  primaryGoal: purchase",
        );
    let config_path = scratch_dir().join("mesh.yaml");
    std::fs::write(&config_path, &yaml).unwrap();
    let opts = weir::run::Options {
        admin: ([127, 0, 0, 1], admin_port).into(),
        ..options(config_path)
    };
    let weir = weir::run::Server::start(opts, None).await.unwrap();
    let t = users(weir.mesh_addr(), 300, 3, [0.1, 0.3], false).await;
    let x = until(weir.admin_addr(), |x| {
        ["control", "new-ui"].iter().all(|v| {
            let g = &variant(x, v)["goals"];
            g["checkout-rate"]["conversions"].as_u64().is_some()
                && g["checkout-rate"]["conversions"] == g["purchase"]["conversions"]
                && g["purchase"]["conversions"].as_u64() > Some(0)
        })
    })
    .await;
    for (name, version) in [("control", "v1"), ("new-ui", "v2")] {
        assert_eq!(
            variant(&x, name)["goals"]["checkout-rate"]["conversions"].as_u64(),
            t.purchases.get(version).copied(),
            "{x}"
        );
    }
    weir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concluded_experiment_keeps_its_winners_canary_across_a_restart() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let yaml = config(
        &v1,
        &v2,
        "{cookieName: weir-exp}",
        "  minUsersPerVariant: 1000000\n  onConclusion: rollout\n  rollout: {analysis: {interval: 1h, threshold: 5, stepWeight: 10}}\n",
    );
    let weir = Weir::start_with_state(&yaml, Some(scratch_dir())).await;
    // Two participants, the second on new-ui: an operator concludes with new-ui ahead.
    users(weir.mesh(), 40, 5, [0.0, 1.0], false).await;
    let (s, _, body) = request(
        &client(),
        weir.admin(),
        "POST",
        "admin",
        "/experiments/new-checkout/conclude",
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let x: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(x["decision"]["winner"], "new-ui", "{x}");
    let canary = |admin| async move {
        for _ in 0..200 {
            let (s, _, body) = get(admin, "admin", "/canaries/new-checkout", &[]).await;
            if s == 200 {
                return serde_json::from_str::<Value>(&body).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no canary of the winner");
    };
    let c = canary(weir.admin()).await;
    assert_eq!(c["canary"], "v2", "{c}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let weir = weir.restart().await;
    let x = experiment(weir.admin()).await;
    assert_eq!(
        (x["phase"].as_str(), x["decision"]["winner"].as_str()),
        (Some("Concluded"), Some("new-ui"))
    );
    let c = canary(weir.admin()).await;
    assert_eq!(c["canary"], "v2", "{c}");
}
