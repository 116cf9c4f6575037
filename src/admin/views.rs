//! The admin API's JSON views: the faults in force, the effective configuration, the clusters
//! with their endpoints and live counts.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::config::Spec;
use crate::control::Control;
use crate::fleet::Fleet;
use crate::metrics::EndpointState;
use crate::tls::Trust;

/// The state of the fault kill switch and the faults in force.
pub(super) fn faults_json(control: &Control) -> Value {
    let snap = control.snapshot();
    let mut rules = Vec::new();
    for r in &snap.resources.resources {
        if let Spec::VirtualService(vs) = &r.spec {
            for (i, route) in vs.http.iter().enumerate() {
                if let Some(fault) = &route.fault {
                    rules.push(json!({
                        "virtualService": r.name(),
                        "rule": route.name.as_deref().map_or_else(|| format!("{}/{i}", r.name()), str::to_owned),
                        "fault": fault,
                    }));
                }
            }
        }
    }
    json!({ "enabled": control.faults.enabled(), "rules": rules })
}

/// The access-control policies in force: each scope (a gateway, a service, a Kong route) with
/// its token rules, policies and plugins, and what each decided so far.
pub(super) fn access_json(control: &Control) -> Value {
    let snap = control.snapshot();
    let counts = |c: &crate::policy::access::AuthCounters| {
        json!({
            "allowed": c.allowed.get(),
            "denied": c.denied.get(),
            "unauthenticated": c.unauthenticated.get(),
            "invalidToken": c.invalid_token.get(),
        })
    };
    let scopes: Vec<Value> = snap
        .scopes
        .iter()
        .map(|s| {
            let mut policies: Vec<Value> = s
                .authn_counters
                .iter()
                .map(|(name, c)| json!({"name": &**name, "kind": "RequestAuthentication", "counts": counts(c)}))
                .collect();
            for (kind, list) in [("DENY", &s.deny), ("AUDIT", &s.audit), ("ALLOW", &s.allow)] {
                policies.extend(list.iter().map(|p| {
                    json!({"name": &*p.name, "kind": format!("AuthorizationPolicy {kind}"), "counts": counts(&p.counters)})
                }));
            }
            if let Some(k) = &s.kong {
                policies.extend(k.plugins.iter().map(|(p, label, c)| {
                    json!({"name": &**label, "kind": p.name(), "counts": counts(c)})
                }));
            }
            json!({"scope": &*s.name, "policies": policies})
        })
        .collect();
    Value::Array(scopes)
}

pub(super) fn config_json(control: &Control, fleet: Option<&Fleet>) -> Value {
    let snap = control.snapshot();
    let resources: Vec<Value> = snap
        .resources
        .resources
        .iter()
        .map(|r| {
            let mut v = prune(serde_json::to_value(r).unwrap_or(Value::Null));
            if let Value::Object(o) = &mut v {
                o.insert("source".into(), Value::String(r.location()));
            }
            v
        })
        .collect();
    let listeners: Vec<Value> = snap
        .listeners
        .iter()
        .map(|l| json!({"address": l.addr.to_string(), "gateway": l.gateway}))
        .collect();
    let last = control.last_attempt().map(|a| {
        let at =
            a.at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
        match a.result {
            Ok(generation) => json!({"result": "applied", "time": at, "generation": generation}),
            Err(errors) => json!({"result": "rejected", "time": at, "errors": errors}),
        }
    });
    let store = fleet.map(|f| {
        json!({
            "url": f.url.to_string(),
            "instance": f.id,
            "connected": f.connected(),
            "revision": f.applied(),
        })
    });
    json!({
        "generation": snap.generation,
        "store": store,
        "lastAttempt": last,
        "sources": snap.resources.sources,
        "listeners": listeners,
        "warnings": snap.warnings,
        "resources": resources,
    })
}

/// Clusters with their endpoints and live counts.
pub(super) fn clusters_json(control: &Control) -> Value {
    let snap = control.snapshot();
    let now = tokio::time::Instant::now();
    let clusters: Vec<Value> = snap
        .clusters
        .iter()
        .map(|c| {
            let endpoints: Vec<Value> = c
                .endpoints
                .iter()
                .map(|e| {
                    let pool = if c.spec.protocol == crate::backend::Protocol::Http2 { &e.h2 } else { &e.h1 };
                    let health = e.stats.health.view(now);
                    json!({
                        "address": e.spec.addr.to_string(),
                        "labels": e.spec.labels,
                        "state": health.state.label(),
                        "healthy": c.health.as_ref().map(|_| e.stats.checks.is_healthy()),
                        "ejection_reason": health.reason.filter(|_| health.state != EndpointState::Closed).map(|r| r.label()),
                        "back_in_ms": health.until.map(|u| u.saturating_duration_since(now).as_millis() as u64),
                        "ejections": health.ejections,
                        "active_requests": e.stats.active.load(Ordering::Relaxed),
                        "total_requests": e.stats.total.load(Ordering::Relaxed),
                        "failures": e.stats.failures.load(Ordering::Relaxed),
                        "connections": {"open": pool.open_connections(), "idle": pool.idle_connections()},
                    })
                })
                .collect();
            let limits = c.spec.limits;
            let (in_flight, pending) = c.gate.as_ref().map_or((None, None), |g| {
                let (r, p) = g.load();
                (Some(r), Some(p))
            });
            let budget = c.budget.spec();
            json!({
                "name": c.spec.name,
                "service": c.spec.service,
                "subset": c.spec.subset,
                "port": c.spec.port,
                "lb": c.spec.lb.name(),
                "protocol": format!("{:?}", c.spec.protocol),
                "connect_timeout_ms": c.spec.connect_timeout.as_millis() as u64,
                "max_requests_per_connection": c.spec.max_requests_per_connection,
                "idle_timeout_ms": c.spec.idle_timeout.as_millis() as u64,
                "circuit_breaker": c.breaker.as_ref().map(|b| json!({
                    "state": b.state().label(),
                    "failure_threshold": b.spec().failure_threshold,
                    "window_ms": b.spec().window.as_millis() as u64,
                    "recovery_ms": b.spec().recovery.as_millis() as u64,
                })),
                // File paths and names only: never key material.
                "tls": c.spec.tls.as_ref().map(|t| {
                    let spec = t.client.spec();
                    json!({
                        "mode": spec.mode(),
                        "sni": t.server_name.to_str(),
                        "verify": match &spec.trust {
                            Trust::Ca(p) | Trust::System(p) => Some(p.display().to_string()),
                            Trust::Any => None,
                        },
                        "subject_alt_names": spec.subject_alt_names,
                    })
                }),
                "limits": {
                    "max_connections": limits.max_connections,
                    "max_pending_requests": limits.max_pending,
                    "max_requests": limits.max_requests,
                    "max_retries": limits.max_retries,
                    "requests_in_flight": in_flight,
                    "pending": pending,
                },
                "outlier_detection": c.spec.outlier.as_ref().map(|o| json!({
                    "consecutive_5xx_errors": o.consecutive_5xx,
                    "consecutive_gateway_errors": o.consecutive_gateway,
                    "consecutive_local_origin_failures": o.consecutive_local,
                    "split_external_local_origin_errors": o.split_local_origin,
                    "interval_ms": o.interval.as_millis() as u64,
                    "base_ejection_time_ms": o.base_ejection.as_millis() as u64,
                    "max_ejection_percent": o.max_ejection_percent,
                    "min_health_percent": o.min_health_percent,
                })),
                "retry_budget": {
                    "percent": budget.percent,
                    "window_ms": budget.window.as_millis() as u64,
                    "min_retries_per_second": budget.min_per_sec,
                    "min_retry_concurrency": budget.min_concurrency,
                },
                "endpoints": endpoints,
            })
        })
        .collect();
    json!({"generation": snap.generation, "clusters": clusters})
}

/// Drops nulls, so the effective config reads like what the user wrote.
pub(super) fn prune(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, prune(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        v => v,
    }
}
