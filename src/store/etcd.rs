//! Unary calls to etcd's JSON gateway: range, transactions, leases. Each call goes to one
//! endpoint over its own HTTP/1.1 connection, bounded by a timeout; an endpoint that cannot be
//! reached is left for the next one, and the one that answered is tried first next time.
//!
//! In the gateway's JSON, keys and values are base64 and 64-bit integers are strings; fields at
//! their default value (0, false, empty) are left out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The largest answer read (a range over a big store).
const MAX_ANSWER: usize = 256 << 20;

/// How long one call may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum EtcdError {
    /// No endpoint answered.
    #[error("etcd is unreachable ({0})")]
    Unreachable(String),
    /// etcd answered with an error.
    #[error("etcd: {message} (code {code})")]
    Server {
        /// The gRPC status code.
        code: i64,
        /// etcd's message.
        message: String,
    },
    /// The answer was not what the gateway sends.
    #[error("etcd's answer is malformed: {0}")]
    Protocol(String),
}

/// A key and its value, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Kv {
    /// The key.
    pub(crate) key: String,
    /// The value (weir stores text).
    pub(crate) value: String,
    /// The revision that created it.
    pub(crate) create_revision: i64,
    /// The revision that last changed it.
    pub(crate) mod_revision: i64,
    /// The lease it is attached to (0: none).
    pub(crate) lease: i64,
}

/// A condition of a transaction.
#[derive(Clone, Debug)]
pub(crate) enum Compare {
    /// The key was last changed at this revision (0: it does not exist).
    Modified(String, i64),
    /// The key was created at this revision (0: it does not exist).
    Created(String, i64),
    /// No key in `[start, end)` was changed after this revision.
    UnchangedSince(String, String, i64),
}

/// An operation of a transaction.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// Put a value, attached to a lease (0: none).
    Put(String, String, i64),
    /// Delete a key.
    Delete(String),
    /// Delete every key that starts with this prefix.
    DeletePrefix(String),
    /// Read a key.
    Get(String),
}

/// The end of the range of keys that start with `prefix`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    "\0".to_owned()
}

pub(crate) fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

fn unb64(v: Option<&Value>) -> Result<String, EtcdError> {
    let Some(v) = v else { return Ok(String::new()) };
    let s = v
        .as_str()
        .ok_or_else(|| EtcdError::Protocol("a key or value is not a string".into()))?;
    let bytes = B64
        .decode(s)
        .map_err(|e| EtcdError::Protocol(format!("bad base64: {e}")))?;
    String::from_utf8(bytes).map_err(|_| EtcdError::Protocol("a key or value is not UTF-8".into()))
}

/// A 64-bit integer of the gateway's JSON (a string, or absent for 0).
pub(crate) fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

impl Kv {
    pub(crate) fn from_json(v: &Value) -> Result<Kv, EtcdError> {
        Ok(Kv {
            key: unb64(v.get("key"))?,
            value: unb64(v.get("value"))?,
            create_revision: int(v.get("create_revision")),
            mod_revision: int(v.get("mod_revision")),
            lease: int(v.get("lease")),
        })
    }
}

/// The revision in an answer's header.
pub(crate) fn revision(answer: &Value) -> i64 {
    int(answer.get("header").and_then(|h| h.get("revision")))
}

/// A client of one etcd cluster.
#[derive(Debug)]
pub(crate) struct Etcd {
    endpoints: Vec<String>,
    /// The endpoint to try first.
    current: AtomicUsize,
}

impl Etcd {
    /// A client of the cluster at `endpoints` (`host:port`).
    pub(crate) fn new(endpoints: Vec<String>) -> Etcd {
        Etcd {
            endpoints,
            current: AtomicUsize::new(0),
        }
    }

    /// The endpoints, the one to try first first.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n.max(1);
        (0..n)
            .map(|i| self.endpoints[(first + i) % n].clone())
            .collect()
    }

    /// Marks `endpoint` as the one that answered.
    pub(crate) fn answered(&self, endpoint: &str) {
        if let Some(i) = self.endpoints.iter().position(|e| e == endpoint) {
            self.current.store(i, Ordering::Relaxed);
        }
    }

    /// POSTs `body` to `path` (`/v3/...`) on the first endpoint that answers.
    pub(crate) async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let mut last = String::new();
        for endpoint in self.endpoints() {
            let exchange = post(&endpoint, path, body.clone());
            match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
                Ok(Ok((status, answer))) => {
                    self.answered(&endpoint);
                    return parse_answer(status, &answer);
                }
                Ok(Err(e)) => last = format!("{endpoint}: {e}"),
                Err(_) => last = format!("{endpoint}: no answer within {CALL_TIMEOUT:?}"),
            }
        }
        Err(EtcdError::Unreachable(last))
    }

    /// The keys in `[key, end)` (just `key` without an end), and the store's revision.
    pub(crate) async fn range(
        &self,
        key: &str,
        end: Option<&str>,
    ) -> Result<(i64, Vec<Kv>), EtcdError> {
        let mut req = json!({"key": b64(key)});
        if let Some(end) = end {
            req["range_end"] = b64(end).into();
        }
        let answer = self.call("/v3/kv/range", req).await?;
        let kvs = kvs(&answer)?;
        Ok((revision(&answer), kvs))
    }

    /// The keys that start with `prefix`, and the store's revision.
    pub(crate) async fn range_prefix(&self, prefix: &str) -> Result<(i64, Vec<Kv>), EtcdError> {
        self.range(prefix, Some(&prefix_end(prefix))).await
    }

    /// Runs `success` if every comparison holds, else `failure`; returns whether they held,
    /// the revision after, and the answers of the operations run.
    pub(crate) async fn txn(
        &self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<(bool, i64, Vec<Value>), EtcdError> {
        let compare: Vec<Value> = compare
            .iter()
            .map(|c| match c {
                Compare::Modified(k, rev) => json!({"key": b64(k), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string()}),
                Compare::Created(k, rev) => json!({"key": b64(k), "target": "CREATE", "result": "EQUAL", "create_revision": rev.to_string()}),
                Compare::UnchangedSince(k, end, rev) => json!({"key": b64(k), "range_end": b64(end), "target": "MOD", "result": "LESS", "mod_revision": (rev + 1).to_string()}),
            })
            .collect();
        let ops = |ops: &[Op]| -> Vec<Value> {
            ops.iter()
                .map(|o| match o {
                    Op::Put(k, v, lease) => json!({"request_put": {"key": b64(k), "value": b64(v), "lease": lease.to_string()}}),
                    Op::Delete(k) => json!({"request_delete_range": {"key": b64(k)}}),
                    Op::DeletePrefix(p) => json!({"request_delete_range": {"key": b64(p), "range_end": b64(&prefix_end(p))}}),
                    Op::Get(k) => json!({"request_range": {"key": b64(k)}}),
                })
                .collect()
        };
        let answer = self
            .call(
                "/v3/kv/txn",
                json!({"compare": compare, "success": ops(success), "failure": ops(failure)}),
            )
            .await?;
        let succeeded = answer
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let responses = answer
            .get("responses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok((succeeded, revision(&answer), responses))
    }

    /// Puts a value (attached to `lease`, 0 for none); returns the revision.
    pub(crate) async fn put(&self, key: &str, value: &str, lease: i64) -> Result<i64, EtcdError> {
        let req = json!({"key": b64(key), "value": b64(value), "lease": lease.to_string()});
        Ok(revision(&self.call("/v3/kv/put", req).await?))
    }

    /// A lease of `ttl` seconds; returns its id.
    pub(crate) async fn grant(&self, ttl: u64) -> Result<i64, EtcdError> {
        let answer = self
            .call("/v3/lease/grant", json!({"TTL": ttl.to_string()}))
            .await?;
        match int(answer.get("ID")) {
            0 => Err(EtcdError::Protocol("a lease grant without an ID".into())),
            id => Ok(id),
        }
    }

    /// Keeps a lease alive; returns its remaining TTL in seconds (0: it has expired).
    pub(crate) async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let answer = self
            .call("/v3/lease/keepalive", json!({"ID": lease.to_string()}))
            .await?;
        Ok(int(answer.get("result").and_then(|r| r.get("TTL"))))
    }

    /// Ends a lease, deleting the keys attached to it.
    pub(crate) async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        match self
            .call("/v3/lease/revoke", json!({"ID": lease.to_string()}))
            .await
        {
            Ok(_) => Ok(()),
            // Already gone.
            Err(EtcdError::Server { code: 5, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The key-values of a range answer.
pub(crate) fn kvs(answer: &Value) -> Result<Vec<Kv>, EtcdError> {
    answer
        .get("kvs")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Kv::from_json).collect())
        .unwrap_or(Ok(Vec::new()))
}

/// An answer as JSON, or etcd's error in it.
fn parse_answer(status: u16, body: &[u8]) -> Result<Value, EtcdError> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        EtcdError::Protocol(format!("HTTP {status}, not JSON ({e}): {head}"))
    })?;
    let error = answer
        .get("error")
        .or_else(|| answer.get("result").and_then(|r| r.get("error")));
    if let Some(error) = error {
        let message = match error {
            Value::String(s) => s.clone(),
            other => other
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_owned(),
        };
        let code = int(answer.get("code").or_else(|| error.get("grpc_code")));
        return Err(EtcdError::Server { code, message });
    }
    if status >= 300 {
        return Err(EtcdError::Protocol(format!("HTTP {status}")));
    }
    Ok(answer)
}

/// One POST on its own connection; the status and the whole answer.
async fn post(endpoint: &str, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
    let mut sender = connect(endpoint).await?;
    let req = request(endpoint, path, body)?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// An HTTP/1.1 connection to `endpoint`.
pub(crate) async fn connect(
    endpoint: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(endpoint)
        .await
        .map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// A POST of JSON to `path`.
pub(crate) fn request(
    endpoint: &str,
    path: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, String> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, endpoint)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("weir/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end("/weir/"), "/weir0");
        assert_eq!(prefix_end("a"), "b");
    }

    #[test]
    fn errors_in_answers() {
        let e = parse_answer(404, br#"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#);
        assert!(matches!(e, Err(EtcdError::Server { code: 5, .. })), "{e:?}");
        let e = parse_answer(200, br#"{"result":{"header":{}},"error":{"grpc_code":11,"http_code":400,"message":"etcdserver: mvcc: required revision has been compacted"}}"#);
        assert!(
            matches!(e, Err(EtcdError::Server { code: 11, .. })),
            "{e:?}"
        );
        assert!(parse_answer(502, b"<html>").is_err());
        let kv = Kv::from_json(&json!({"key": "L3cvYQ==", "create_revision": "2", "mod_revision": "3", "value": "aGVsbG8="})).unwrap();
        assert_eq!(
            (
                kv.key.as_str(),
                kv.value.as_str(),
                kv.create_revision,
                kv.mod_revision,
                kv.lease
            ),
            ("/w/a", "hello", 2, 3, 0)
        );
    }
}
