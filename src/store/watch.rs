//! A watch of a key range from a revision, over the JSON gateway's streaming `/v3/watch`: one
//! JSON message per event batch on a long-lived HTTP/1.1 answer.
//!
//! The watch starts at a revision the caller read, never at "now": a write made between the
//! read and the watch is then delivered, not lost (apache/apisix#9951). When etcd has compacted
//! that revision away, the watch ends with [`WatchEnd::Compacted`] and the caller must read
//! everything again.

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::etcd::{Etcd, Kv, b64, connect, int, request, revision};

/// What happened to a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Created or changed.
    Put(Kv),
    /// Deleted (at `mod_revision` of the key-value).
    Delete(Kv),
}

impl Event {
    /// The key.
    pub(crate) fn key(&self) -> &str {
        match self {
            Event::Put(kv) | Event::Delete(kv) => &kv.key,
        }
    }
}

/// Why a watch ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WatchEnd {
    /// The revision to start from is gone: read everything again.
    #[error("the required revision has been compacted (compacted up to {0})")]
    Compacted(i64),
    /// The connection broke, etcd went away, or it cancelled the watch.
    #[error("the watch broke: {0}")]
    Broken(String),
}

/// A running watch.
pub(crate) struct Watch {
    body: Incoming,
    buf: BytesMut,
}

/// The largest message held before it is complete.
const MAX_MESSAGE: usize = 256 << 20;

impl Watch {
    /// Watches `[key, end)` from `from` (a revision the caller has not yet seen).
    pub(crate) async fn open(
        etcd: &Etcd,
        key: &str,
        end: &str,
        from: i64,
    ) -> Result<Watch, WatchEnd> {
        let body = json!({"create_request": {
            "key": b64(key), "range_end": b64(end), "start_revision": from.to_string(),
        }});
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let mut last = String::new();
        for endpoint in etcd.endpoints() {
            let opened = async {
                let mut sender = connect(&endpoint).await?;
                let req = request(&endpoint, "/v3/watch", body.clone())?;
                let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("HTTP {}", resp.status()));
                }
                Ok(resp.into_body())
            };
            match tokio::time::timeout(super::etcd::CALL_TIMEOUT, opened).await {
                Ok(Ok(body)) => {
                    etcd.answered(&endpoint);
                    let mut watch = Watch {
                        body,
                        buf: BytesMut::new(),
                    };
                    // The first message says whether the watch was created.
                    let first = watch.message().await?;
                    check(&first)?;
                    return Ok(watch);
                }
                Ok(Err(e)) => last = format!("{endpoint}: {e}"),
                Err(_) => last = format!("{endpoint}: no answer"),
            }
        }
        Err(WatchEnd::Broken(last))
    }

    /// The next batch of events (one revision's, or several), and the revision it brings the
    /// watcher to. Batches without events (progress notes) are skipped.
    pub(crate) async fn next(&mut self) -> Result<(i64, Vec<Event>), WatchEnd> {
        loop {
            let message = self.message().await?;
            let result = check(&message)?;
            let Some(events) = result.get("events").and_then(Value::as_array) else {
                continue;
            };
            let mut out = Vec::with_capacity(events.len());
            for e in events {
                let kv = e.get("kv").map(Kv::from_json).transpose();
                let kv = kv
                    .map_err(|e| WatchEnd::Broken(e.to_string()))?
                    .unwrap_or(Kv {
                        key: String::new(),
                        value: String::new(),
                        create_revision: 0,
                        mod_revision: 0,
                        lease: 0,
                    });
                out.push(match e.get("type").and_then(Value::as_str) {
                    Some("DELETE") => Event::Delete(kv),
                    _ => Event::Put(kv),
                });
            }
            return Ok((revision(result), out));
        }
    }

    /// The next whole JSON message of the stream.
    async fn message(&mut self) -> Result<Value, WatchEnd> {
        loop {
            let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            match stream.next() {
                Some(Ok(v)) => {
                    let used = stream.byte_offset();
                    self.buf.advance(used);
                    return Ok(v);
                }
                Some(Err(e)) if !e.is_eof() => {
                    return Err(WatchEnd::Broken(format!("malformed watch message: {e}")));
                }
                _ => {}
            }
            if self.buf.len() > MAX_MESSAGE {
                return Err(WatchEnd::Broken("a watch message is too large".into()));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(WatchEnd::Broken(e.to_string())),
                None => return Err(WatchEnd::Broken("etcd closed the watch".into())),
            }
        }
    }
}

/// A message's `result`, or why the watch ended.
fn check(message: &Value) -> Result<&Value, WatchEnd> {
    if let Some(error) = message.get("error") {
        return Err(WatchEnd::Broken(format!("etcd: {error}")));
    }
    let result = message
        .get("result")
        .ok_or_else(|| WatchEnd::Broken(format!("unexpected watch message: {message}")))?;
    let compacted = int(result.get("compact_revision"));
    if compacted > 0 {
        return Err(WatchEnd::Compacted(compacted));
    }
    if result.get("canceled").and_then(Value::as_bool) == Some(true) {
        let why = result
            .get("cancel_reason")
            .and_then(Value::as_str)
            .unwrap_or("cancelled by etcd");
        return Err(WatchEnd::Broken(why.to_owned()));
    }
    Ok(result)
}
