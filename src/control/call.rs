//! A small HTTP/1.1 client for the control plane (webhooks, Prometheus queries, the CLI's admin
//! calls): one request per connection, the whole exchange bounded by a timeout, `http://` URLs.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// The largest answer read.
const MAX_BODY: usize = 4 << 20;

/// An answer.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Body, as text.
    pub body: String,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The URL cannot be called.
    #[error("bad URL `{0}`: {1}")]
    Url(String, &'static str),
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The exchange took too long.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer broke the protocol.
    #[error("{0}")]
    Http(String),
}

/// Sends one request; `body` is `(content type, bytes)`.
pub async fn call(
    method: Method,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    timeout: Duration,
) -> Result<Reply, CallError> {
    call_via(method, url, body, timeout, None, None).await
}

/// Sends one request, connecting to `via` (a proxy that routes by `Host`, such as weir's mesh
/// listener) instead of the URL's host when given, with an `Authorization` header when given.
pub async fn call_via(
    method: Method,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    timeout: Duration,
    via: Option<SocketAddr>,
    authorization: Option<&str>,
) -> Result<Reply, CallError> {
    tokio::time::timeout(timeout, exchange(method, url, body, via, authorization))
        .await
        .map_err(|_| CallError::Timeout(timeout))?
}

async fn exchange(
    method: Method,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    via: Option<SocketAddr>,
    authorization: Option<&str>,
) -> Result<Reply, CallError> {
    let bad = |why| CallError::Url(url.to_owned(), why);
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(bad("https is not supported yet; use http")),
        _ => return Err(bad("needs http://")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = match via {
        Some(addr) => tokio::net::TcpStream::connect(addr).await?,
        None => tokio::net::TcpStream::connect((host, authority.port_u16().unwrap_or(80))).await?,
    };
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CallError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str())
        .header(
            header::USER_AGENT,
            concat!("weir/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(auth) = authorization {
        req = req.header(header::AUTHORIZATION, auth);
    }
    let bytes = match body {
        Some((content_type, bytes)) => {
            req = req.header(header::CONTENT_TYPE, content_type);
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
    let req = req
        .body(Full::new(bytes))
        .map_err(|e| CallError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| CallError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| CallError::Http(e.to_string()))?
        .to_bytes();
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
