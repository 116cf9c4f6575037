//! The admin API: `/ready`, `/live`, `/metrics`, `/config`, `/clusters`, `/faults`,
//! `/canaries`. One path match, no framework; it binds to loopback by default and never serves
//! secrets. With a token (`--admin-token-file`, required off loopback), every mutating call
//! (`POST`) needs `Authorization: Bearer TOKEN`; reads stay open.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::config::Spec;
use crate::control::Control;
use crate::metrics::EndpointState;
use crate::rollout::command::Command;
use crate::tls::Trust;

/// Serves the admin API on `socket` until the task is aborted; `token`, when given, guards
/// every mutating call.
pub async fn serve(socket: TcpListener, control: Arc<Control>, token: Option<Arc<str>>) {
    loop {
        let Ok((stream, _)) = socket.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let (control, token) = (control.clone(), token.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let control = control.clone();
                let allowed = req.method() != Method::POST || authorized(&req, token.as_deref());
                async move {
                    if !allowed {
                        return Ok::<_, Infallible>(unauthorized());
                    }
                    Ok(handle(&control, req))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Whether a request carries the admin token (or none is required).
fn authorized<B>(req: &Request<B>, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time in the token's content: every byte is compared.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn unauthorized() -> Response<Full<Bytes>> {
    tracing::warn!("Admin call refused: no valid bearer token.");
    let mut resp = text(
        StatusCode::UNAUTHORIZED,
        "this admin call needs Authorization: Bearer <token>\n",
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn handle(control: &Control, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/ready") if control.is_ready() => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/ready") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
        (&Method::GET, "/metrics") => {
            let openmetrics = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            let content_type = if openmetrics {
                "application/openmetrics-text; version=1.0.0; charset=utf-8"
            } else {
                "text/plain; version=0.0.4; charset=utf-8"
            };
            let mut resp =
                Response::new(Full::new(Bytes::from(control.metrics.encode(openmetrics))));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
        (&Method::GET, "/config") => json_response(config_json(control)),
        (&Method::GET, "/clusters") => json_response(clusters_json(control)),
        (&Method::GET, "/faults") => json_response(faults_json(control)),
        (&Method::POST, "/faults/disable") => {
            control.faults.set(false);
            tracing::warn!("Fault injection disabled (kill switch).");
            json_response(faults_json(control))
        }
        (&Method::POST, "/faults/enable") => {
            control.faults.set(true);
            tracing::warn!("Fault injection enabled.");
            json_response(faults_json(control))
        }
        (&Method::GET, "/canaries") => {
            json_response(control.rollouts.json(None).unwrap_or_default())
        }
        (method, p) if p.starts_with("/canaries/") => {
            canary(control, method, &p["/canaries/".len()..])
        }
        (method, p) if p.starts_with("/upstreams/") => {
            target_health(control, method, &p["/upstreams/".len()..])
        }
        (
            _,
            "/ready" | "/live" | "/metrics" | "/config" | "/clusters" | "/faults" | "/canaries",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        (_, "/faults/disable" | "/faults/enable") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /ready /live /metrics /config /clusters /faults /canaries\n",
        ),
    }
}

/// `PUT` (or `POST`) `/upstreams/HOST/targets/ADDRESS/{healthy,unhealthy}`: Kong's call to
/// set a target's health by hand, on every cluster of that host with health checks.
fn target_health(control: &Control, method: &Method, rest: &str) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = rest.split('/').collect();
    let [upstream, "targets", target, state] = parts[..] else {
        return text(
            StatusCode::NOT_FOUND,
            "use /upstreams/HOST/targets/ADDRESS/healthy or .../unhealthy\n",
        );
    };
    let healthy = match state {
        "healthy" => true,
        "unhealthy" => false,
        _ => return text(StatusCode::NOT_FOUND, "healthy or unhealthy\n"),
    };
    if !matches!(*method, Method::PUT | Method::POST) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use PUT\n");
    }
    let snap = control.snapshot();
    let mut found = false;
    for c in &snap.clusters {
        if let Some(h) = &c.health
            && c.spec.service.eq_ignore_ascii_case(upstream)
        {
            found |= h.set(target, healthy);
        }
    }
    if !found {
        return text(
            StatusCode::NOT_FOUND,
            "no such target in a cluster with health checks\n",
        );
    }
    tracing::warn!(
        upstream,
        target,
        healthy,
        "Target health set from the admin API."
    );
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

/// `GET /canaries/NAME`, `POST /canaries/NAME/{promote,rollback,pause,resume}`.
fn canary(control: &Control, method: &Method, rest: &str) -> Response<Full<Bytes>> {
    let (name, action) = match rest.split_once('/') {
        Some((n, a)) => (n, Some(a)),
        None => (rest, None),
    };
    let Some(view) = control.rollouts.json(Some(name)) else {
        return text(StatusCode::NOT_FOUND, "no such canary\n");
    };
    match (method, action) {
        (&Method::GET, None) => json_response(view),
        (&Method::POST, Some(a)) => match Command::parse(a) {
            Some(cmd) => {
                tracing::warn!(
                    canary = name,
                    command = a,
                    "Canary command from the admin API."
                );
                control.rollouts.command(name, cmd);
                json_response(json!({"name": name, "accepted": a}))
            }
            None => text(
                StatusCode::NOT_FOUND,
                "commands: promote, rollback, pause, resume\n",
            ),
        },
        (_, None) => text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
        (_, Some(_)) => text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
    }
}

/// One call to a running weir's admin API (for the CLI): the status and the body.
pub async fn call(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> Result<(u16, String), crate::control::call::CallError> {
    call_with_token(admin, method, path, None).await
}

/// [`call`] with the admin token, when one is given.
pub async fn call_with_token(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String), crate::control::call::CallError> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| crate::control::call::CallError::Http(format!("bad method {method}")))?;
    let url = format!("http://{admin}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let reply = crate::control::call::call_via(
        method,
        &url,
        None,
        std::time::Duration::from_secs(10),
        None,
        auth.as_deref(),
    )
    .await?;
    Ok((reply.status, reply.body.trim_end().to_owned()))
}

/// Reads an admin token file: its first line, trimmed; an empty token is refused.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read admin token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(format!("admin token file {} is empty", path.display()));
    }
    Ok(token)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn json_response(v: Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The effective configuration: every resource as applied, with its source and the generation.
/// The kill switch's position and every configured fault.
fn faults_json(control: &Control) -> Value {
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

fn config_json(control: &Control) -> Value {
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
    json!({
        "generation": snap.generation,
        "lastAttempt": last,
        "sources": snap.resources.sources,
        "listeners": listeners,
        "warnings": snap.warnings,
        "resources": resources,
    })
}

/// Clusters with their endpoints and live counts.
fn clusters_json(control: &Control) -> Value {
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
fn prune(v: Value) -> Value {
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
