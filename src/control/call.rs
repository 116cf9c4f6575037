//! A small HTTP/1.1 client for the control plane (webhooks, Prometheus queries, JWKS fetches,
//! the CLI's admin calls): one request per connection, the whole exchange bounded by a timeout,
//! `http://` and `https://` URLs. HTTPS trusts the system's CA bundle (`SSL_CERT_FILE` when
//! set, else Debian's `/etc/ssl/certs/ca-certificates.crt`) and checks the server's name.

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
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad("needs http:// or https://")),
    };
    let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let stream = match via {
        Some(addr) => tokio::net::TcpStream::connect(addr).await?,
        None => tokio::net::TcpStream::connect((host.as_str(), port)).await?,
    };
    stream.set_nodelay(true)?;
    if !https {
        return exchange_on(stream, method, &uri, &authority, body, authorization).await;
    }
    let name = rustls_pki_types::ServerName::try_from(host)
        .map_err(|_| bad("the host is not a TLS server name"))?;
    let tls = tokio_rustls::TlsConnector::from(tls_client().map_err(CallError::Http)?)
        .connect(name, stream)
        .await?;
    exchange_on(tls, method, &uri, &authority, body, authorization).await
}

/// The TLS client settings of HTTPS calls: the system's roots, made once.
fn tls_client() -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<std::sync::Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let bundle = std::env::var_os("SSL_CERT_FILE")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(crate::tls::certificates(&bundle)?);
            let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(std::sync::Arc::new(config))
        })
        .clone()
}

/// One exchange on a connection made.
async fn exchange_on<T>(
    io: T,
    method: Method,
    uri: &Uri,
    authority: &http::uri::Authority,
    body: Option<(&str, Vec<u8>)>,
    authorization: Option<&str>,
) -> Result<Reply, CallError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
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
