//! The access log's line of a request (when `--access-log` keeps one): begun from the request,
//! completed from the response and what the path said of it (`ResponseBody::meta`), and sent
//! when the response body ends, with the bytes sent and the duration to that moment. What is
//! taken here is shared, not copied (header values, the path, the destination's names).

use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response, Version};
use tokio::time::Instant;

use super::conn::ConnInfo;
use crate::access_log::{AccessLog, Entry, Upstream};
use crate::backend::EndpointAddr;
use crate::body::to_client::{Logging, ResponseBody};
use crate::body::to_upstream::Body;
use crate::snapshot::Snapshot;

/// What the request says of itself, taken before the path consumes it.
pub(super) fn begin(req: &Request<Body>, conn: &ConnInfo) -> Entry {
    let authority = match req.uri().authority() {
        Some(a) => http::HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(http::header::HOST).cloned(),
    };
    Entry {
        time: SystemTime::now(),
        method: req.method().clone(),
        authority,
        path: req.uri().path_and_query().cloned(),
        protocol: match req.version() {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        status: 0,
        duration: std::time::Duration::ZERO,
        bytes: 0,
        dest: None,
        upstream: None,
        retries: 0,
        flags: Default::default(),
        request_id: req.headers().get("x-request-id").cloned(),
        client: Some(conn.peer),
        policy: None,
    }
}

/// Completes `entry` from the response and hands it to the body, which sends it when it ends.
pub(super) fn attach(
    mut entry: Entry,
    snap: &Snapshot,
    resp: &mut Response<ResponseBody>,
    start: Instant,
    sink: Arc<AccessLog>,
) {
    entry.status = resp.status().as_u16();
    let meta = resp.body().meta;
    entry.dest = meta
        .stats
        .and_then(|i| snap.stats.get(i))
        .map(|s| s.names.clone());
    entry.upstream = meta
        .upstream
        .and_then(|(c, e)| snap.clusters.get(c)?.endpoints.get(e))
        .map(|e| match &e.spec.addr {
            EndpointAddr::Ip(ip) => Upstream::Ip(*ip),
            EndpointAddr::Dns(host, port) => Upstream::Name(host.clone(), *port),
        });
    entry.retries = meta.retries;
    entry.flags = meta.flags;
    if let Some(pq) = &entry.path
        && let Some(redacted) = redact(pq, snap.credential_params())
    {
        entry.path = Some(redacted);
    }
    entry.policy = resp
        .extensions()
        .get::<crate::error::DeniedBy>()
        .map(|d| d.0.clone());
    resp.body_mut().log_with(Logging {
        entry: Some(entry),
        start,
        sink,
    });
}

/// `pq` with the values of the credential parameters `names` replaced by `REDACTED`; `None`
/// when it has none of them.
fn redact<'a>(
    pq: &http::uri::PathAndQuery,
    names: impl Iterator<Item = &'a str> + Clone,
) -> Option<http::uri::PathAndQuery> {
    let query = pq.query()?;
    let secret = |pair: &str| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        names.clone().any(|n| n == key)
    };
    if !query.split('&').any(secret) {
        return None;
    }
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if secret(pair) => format!("{k}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{}?{}", pq.path(), query.join("&")).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_in_the_query_are_not_logged() {
        let pq = http::uri::PathAndQuery::from_static("/a?x=1&access_token=secret&apikey=k2");
        let out = redact(&pq, ["access_token", "apikey"].into_iter()).unwrap();
        assert_eq!(out.as_str(), "/a?x=1&access_token=REDACTED&apikey=REDACTED");
        let plain = http::uri::PathAndQuery::from_static("/a?x=1");
        assert!(redact(&plain, ["access_token"].into_iter()).is_none());
    }
}
