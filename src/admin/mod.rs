//! The admin API: `/ready`, `/live`, `/metrics`, `/config`, `/clusters`, `/faults`,
//! `/canaries`, `/upstreams`, and `/fleet` on an instance of a fleet. One path match, no framework; it binds to loopback by default and
//! never serves secrets. With a token (`--admin-token-file`, required off loopback), every
//! mutating call (`POST`, `PUT`) needs `Authorization: Bearer TOKEN`; reads stay open, and a
//! `GET` never changes anything.
//!
//! Answers are JSON, errors included (`{"error": "..."}`), but for the probes `/ready` and
//! `/live` and the Prometheus exposition. A method a path does not take gets 405 with `Allow`.
//! Mutating calls take no input: their body must be empty or a JSON value (`{}`), anything
//! else is refused with 400 and changes nothing.

mod call;
mod dashboard;
mod series;
mod views;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use call::{call, call_with_token, read_token};

use crate::control::Control;
use crate::fleet::{Fleet, fleet_json, targets_json};
use crate::rollout::command::Command;
use series::Series;
use views::{clusters_json, config_json, faults_json};

/// How long a canary command waits for a fleet's driver to take it.
const COMMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The largest body a mutating call may carry.
const MAX_BODY: usize = 64 * 1024;

/// Serves the admin API on `socket` until the task is aborted; `token`, when given, guards
/// every mutating call.
pub(crate) async fn serve(
    socket: TcpListener,
    control: Arc<Control>,
    token: Option<Arc<str>>,
    fleet: Option<Arc<Fleet>>,
) {
    let series = Arc::new(Series::default());
    // The dashboard's time series, sampled for as long as the admin API serves.
    let sampling = {
        let (series, control) = (series.clone(), control.clone());
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                series.sample(&control.metrics);
            }
        }
    };
    tokio::select! {
        () = sampling => {}
        () = accept(socket, control, token, fleet, series) => {}
    }
}

async fn accept(
    socket: TcpListener,
    control: Arc<Control>,
    token: Option<Arc<str>>,
    fleet: Option<Arc<Fleet>>,
    series: Arc<Series>,
) {
    loop {
        let Ok((stream, _)) = socket.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            continue;
        };
        let (control, token, fleet, series) = (
            control.clone(),
            token.clone(),
            fleet.clone(),
            series.clone(),
        );
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (control, token, fleet, series) = (
                    control.clone(),
                    token.clone(),
                    fleet.clone(),
                    series.clone(),
                );
                async move {
                    let at = Admin {
                        control: &control,
                        fleet: fleet.as_deref(),
                        series: &series,
                    };
                    Ok::<_, Infallible>(answer(&at, token.as_deref(), req).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// What a call may see.
struct Admin<'a> {
    control: &'a Control,
    fleet: Option<&'a Fleet>,
    series: &'a Series,
}

/// One call: the origin, the token and the body of a mutating call are checked before anything
/// happens.
async fn answer(
    at: &Admin<'_>,
    token: Option<&str>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let mutating = matches!(parts.method, Method::POST | Method::PUT);
    if mutating && !same_origin(&parts) {
        tracing::warn!("Admin call refused: sent from another site's page.");
        return error(
            StatusCode::FORBIDDEN,
            "a mutating call from another site's page is refused (its Origin is not this admin API)",
        );
    }
    if mutating && !authorized(&parts, token) {
        return unauthorized();
    }
    if mutating {
        let read = Limited::new(body, MAX_BODY).collect().await;
        let bytes = match read {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let why = format!("the body is over {MAX_BODY} bytes, or broke off");
                return error(StatusCode::PAYLOAD_TOO_LARGE, &why);
            }
        };
        if !bytes.iter().all(u8::is_ascii_whitespace)
            && let Err(e) = serde_json::from_slice::<Value>(&bytes)
        {
            let why = format!("this call takes no input: its body must be empty or JSON ({e})");
            return error(StatusCode::BAD_REQUEST, &why);
        }
    }
    handle(at, &parts).await
}

/// Whether a call comes from no page, or from a page of this admin API: a browser names the
/// page's origin in `Origin` on every cross-site `POST`, and a page elsewhere must not steer
/// weir through a browser on its host (cross-site request forgery).
fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return true;
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, h)| h);
    matches!((origin, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Whether a request carries the admin token (or none is required).
fn authorized(parts: &Parts, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let given = parts
        .headers
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
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "this admin call needs Authorization: Bearer <token>",
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

async fn handle(at: &Admin<'_>, req: &Parts) -> Response<Full<Bytes>> {
    let (control, fleet) = (at.control, at.fleet);
    let path = req.uri.path();
    match (&req.method, path) {
        (&Method::GET, "/" | "/dashboard") => asset(dashboard::INDEX, "text/html; charset=utf-8"),
        (&Method::GET, "/dashboard/app.js") => {
            asset(dashboard::APP, "text/javascript; charset=utf-8")
        }
        (&Method::GET, "/dashboard/style.css") => {
            asset(dashboard::STYLE, "text/css; charset=utf-8")
        }
        (&Method::GET, "/dashboard/data") => {
            let mut resp = json_response(dashboard::data(control, fleet, at.series).await);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        (&Method::GET, "/ready") if control.is_ready() => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/ready") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        (&Method::GET, "/live") => text(StatusCode::OK, "live\n"),
        (&Method::GET, "/metrics") => {
            let openmetrics = req
                .headers
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
        (&Method::GET, "/config") => json_response(config_json(control, fleet)),
        (&Method::GET, path @ ("/fleet" | "/fleet/targets")) => match fleet {
            Some(f) => match if path == "/fleet" {
                fleet_json(f).await
            } else {
                targets_json(f).await
            } {
                Ok(v) => json_response(v),
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("cannot read the fleet from the store: {e}"),
                ),
            },
            None => error(
                StatusCode::NOT_FOUND,
                "this instance is not part of a fleet (weir run --store etcd://...)",
            ),
        },
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
            canary(control, method, &p["/canaries/".len()..]).await
        }
        (&Method::GET, "/experiments") => {
            json_response(control.experiments.json(None).unwrap_or_default())
        }
        (method, p) if p.starts_with("/experiments/") => {
            experiment(control, method, &p["/experiments/".len()..]).await
        }
        (method, p) if p.starts_with("/upstreams/") => {
            target_health(control, method, &p["/upstreams/".len()..])
        }
        (
            _,
            "/ready"
            | "/live"
            | "/metrics"
            | "/config"
            | "/clusters"
            | "/faults"
            | "/canaries"
            | "/experiments"
            | "/fleet"
            | "/fleet/targets"
            | "/"
            | "/dashboard"
            | "/dashboard/app.js"
            | "/dashboard/style.css"
            | "/dashboard/data",
        ) => not_allowed("GET"),
        (_, "/faults/disable" | "/faults/enable") => not_allowed("POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not found; try / (the dashboard) /ready /live /metrics /config /clusters /faults /canaries /experiments /fleet",
        ),
    }
}

/// `GET /experiments/NAME`, `POST /experiments/NAME/{stop,conclude}`: a command answers once
/// the experiment has ended, with its state.
async fn experiment(control: &Control, method: &Method, rest: &str) -> Response<Full<Bytes>> {
    use crate::experiment::{Command as Cmd, CommandError, Phase};
    let (name, action) = match rest.split_once('/') {
        Some((n, a)) => (n, Some(a)),
        None => (rest, None),
    };
    let Some(view) = control.experiments.json(Some(name)) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no such experiment: {name}"),
        );
    };
    match (method, action) {
        (&Method::GET, None) => json_response(view),
        (&Method::POST, Some(a)) => {
            let cmd = match a {
                "stop" => Cmd::Stop,
                "conclude" => Cmd::Conclude,
                _ => return error(StatusCode::NOT_FOUND, "commands: stop, conclude"),
            };
            tracing::warn!(
                experiment = name,
                command = a,
                "Experiment command from the admin API."
            );
            if let Err(e) = control.experiments.command(name, cmd).await {
                let status = match e {
                    CommandError::Unknown(_) => StatusCode::NOT_FOUND,
                    CommandError::Ended(..) => StatusCode::CONFLICT,
                    CommandError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                };
                return error(status, &e.to_string());
            }
            let ended = tokio::time::timeout(COMMAND_WAIT, async {
                loop {
                    let phase = control.experiments.phase(name);
                    if phase.is_none_or(|p| p != Phase::Running) {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            });
            let _ = ended.await;
            json_response(control.experiments.json(Some(name)).unwrap_or_default())
        }
        (_, None) => not_allowed("GET"),
        (_, Some(_)) => not_allowed("POST"),
    }
}

/// `PUT` (or `POST`) `/upstreams/HOST/targets/ADDRESS/{healthy,unhealthy}`: Kong's call to
/// set a target's health by hand, on every cluster of that host with health checks.
fn target_health(control: &Control, method: &Method, rest: &str) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = rest.split('/').collect();
    let [upstream, "targets", target, state] = parts[..] else {
        return error(
            StatusCode::NOT_FOUND,
            "use /upstreams/HOST/targets/ADDRESS/healthy or .../unhealthy",
        );
    };
    let healthy = match state {
        "healthy" => true,
        "unhealthy" => false,
        _ => return error(StatusCode::NOT_FOUND, "healthy or unhealthy"),
    };
    if !matches!(*method, Method::PUT | Method::POST) {
        return not_allowed("PUT, POST");
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
        return error(
            StatusCode::NOT_FOUND,
            "no such target in a cluster with health checks",
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
async fn canary(control: &Control, method: &Method, rest: &str) -> Response<Full<Bytes>> {
    let (name, action) = match rest.split_once('/') {
        Some((n, a)) => (n, Some(a)),
        None => (rest, None),
    };
    let Some(view) = control.rollouts.json(Some(name)) else {
        return error(StatusCode::NOT_FOUND, &format!("no such canary: {name}"));
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
                // In a fleet the command waits in the store for the instance that drives the
                // rollout: the answer says whether it has taken it.
                match control.rollouts.command(name, cmd, COMMAND_WAIT).await {
                    Ok(taken) => {
                        json_response(json!({"name": name, "accepted": a, "taken": taken}))
                    }
                    Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
                }
            }
            None => error(
                StatusCode::NOT_FOUND,
                "commands: promote, rollback, pause, resume",
            ),
        },
        (_, None) => not_allowed("GET"),
        (_, Some(_)) => not_allowed("POST"),
    }
}

/// A file of the dashboard, with headers that keep it to itself: scripts and styles from this
/// admin API only, no framing by other sites, no guessing of types.
fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

/// A plain-text answer (the probes').
fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// An error, as JSON: `{"error": why}`.
fn error(status: StatusCode, why: &str) -> Response<Full<Bytes>> {
    let mut resp = json_response(json!({ "error": why }));
    *resp.status_mut() = status;
    resp
}

/// 405, with the methods the path takes in `Allow`.
fn not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this path takes {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
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
