//! The access log's line of a request (when `--access-log` keeps one): begun from the request,
//! completed from the response and what the path said of it (`ResponseBody::meta`), and sent
//! when the response body ends, with the bytes sent and the duration to that moment.

use std::sync::Arc;
use std::time::SystemTime;

use http::{Request, Response, Version};
use tokio::time::Instant;

use super::conn::ConnInfo;
use crate::access_log::{AccessLog, Entry};
use crate::body::to_client::{Logging, ResponseBody};
use crate::body::to_upstream::Body;
use crate::snapshot::Snapshot;

/// What the request says of itself, taken before the path consumes it.
pub(super) fn begin(req: &Request<Body>, conn: &ConnInfo) -> Entry {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    Entry {
        time: Some(SystemTime::now()),
        method: req.method().as_str().to_owned(),
        authority: authority.to_owned(),
        path: req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        protocol: match req.version() {
            Version::HTTP_2 => "HTTP/2",
            Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        request_id: req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        client: Some(conn.peer),
        ..Entry::default()
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
    let meta = resp.body().meta.clone();
    if let Some(stats) = meta.stats.and_then(|i| snap.stats.get(i)) {
        let (service, version, route) = stats.names();
        entry.service = service.to_owned();
        entry.version = version.to_owned();
        entry.route = route.to_owned();
    }
    entry.upstream = meta.upstream.map(|a| a.to_string()).unwrap_or_default();
    entry.retries = meta.retries;
    entry.flags = meta.flags;
    resp.body_mut().log_with(Logging { entry, start, sink });
}
