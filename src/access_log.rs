//! Access logs (`weir run --access-log PATH|-`, `--access-log-format json|text`; off by
//! default, as in Istio): one line per request, written when its response ends, with what
//! Envoy's access log says (time, method, authority, path, status, duration, bytes, route,
//! service, version, upstream address, retries, response flags, request id).
//!
//! Lines are written off the request path: the request hands its line to a bounded queue and
//! a thread of its own writes them, buffered; when the queue is full (a disk slower than the
//! traffic), lines are dropped and counted (`weir_access_log_dropped_total`), never waited for.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;

/// Lines waiting to be written at most.
const QUEUE: usize = 16 * 1024;

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Standard output (`-`).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// How a line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// Envoy's default text format, in spirit: fields in a fixed order, `-` for none.
    Text,
}

/// Access logging, as `weir run` was asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessLogOptions {
    /// Where.
    pub target: Target,
    /// How.
    pub format: Format,
}

/// Response flags, as bits: why a response is not simply the upstream's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(pub(crate) u16);

impl Flags {
    /// The request's deadline (or a try's) passed.
    pub(crate) const TIMEOUT: Flags = Flags(1);
    /// A connection-pool limit turned it away.
    pub(crate) const OVERFLOW: Flags = Flags(1 << 1);
    /// A fault was injected (a delay or an abort).
    pub(crate) const FAULT: Flags = Flags(1 << 2);
    /// A fallback answered.
    pub(crate) const FALLBACK: Flags = Flags(1 << 3);
    /// No endpoint could take it.
    pub(crate) const NO_HEALTHY_UPSTREAM: Flags = Flags(1 << 4);
    /// The circuit breaker was open.
    pub(crate) const CIRCUIT_OPEN: Flags = Flags(1 << 5);
    /// A rate limit turned it away.
    pub(crate) const RATE_LIMITED: Flags = Flags(1 << 6);
    /// No route matched.
    pub(crate) const NO_ROUTE: Flags = Flags(1 << 7);
    /// The upstream could not be reached or broke the exchange.
    pub(crate) const UPSTREAM_FAILURE: Flags = Flags(1 << 8);
    /// The client went away first.
    pub(crate) const CLIENT_GONE: Flags = Flags(1 << 9);
    /// weir was over its memory limit.
    pub(crate) const OVERLOADED: Flags = Flags(1 << 10);

    const NAMES: [(Flags, &'static str); 11] = [
        (Flags::TIMEOUT, "timeout"),
        (Flags::OVERFLOW, "overflow"),
        (Flags::FAULT, "fault"),
        (Flags::FALLBACK, "fallback"),
        (Flags::NO_HEALTHY_UPSTREAM, "no_healthy_upstream"),
        (Flags::CIRCUIT_OPEN, "circuit_open"),
        (Flags::RATE_LIMITED, "rate_limited"),
        (Flags::NO_ROUTE, "no_route"),
        (Flags::UPSTREAM_FAILURE, "upstream_failure"),
        (Flags::CLIENT_GONE, "client_gone"),
        (Flags::OVERLOADED, "overloaded"),
    ];

    /// Both sets.
    pub(crate) fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMES
            .into_iter()
            .filter(move |(f, _)| self.0 & f.0 != 0)
            .map(|(_, n)| n)
    }
}

/// One request's line.
#[derive(Clone, Debug, Default)]
pub(crate) struct Entry {
    pub(crate) time: Option<SystemTime>,
    pub(crate) method: String,
    pub(crate) authority: String,
    pub(crate) path: String,
    pub(crate) protocol: &'static str,
    pub(crate) status: u16,
    pub(crate) duration: Duration,
    pub(crate) bytes: u64,
    pub(crate) route: String,
    pub(crate) service: String,
    pub(crate) version: String,
    pub(crate) upstream: String,
    pub(crate) retries: u32,
    pub(crate) flags: Flags,
    pub(crate) request_id: String,
    pub(crate) client: Option<SocketAddr>,
}

impl Entry {
    /// The line, with its newline.
    fn render(&self, format: Format) -> String {
        let time = self.time.map(httpdate_rfc3339).unwrap_or_default();
        let flags: Vec<&str> = self.flags.names().collect();
        match format {
            Format::Json => {
                let v = serde_json::json!({
                    "time": time,
                    "method": self.method,
                    "authority": self.authority,
                    "path": self.path,
                    "protocol": self.protocol,
                    "status": self.status,
                    "duration_ms": (self.duration.as_secs_f64() * 1e6).round() / 1e3,
                    "bytes_sent": self.bytes,
                    "route": self.route,
                    "service": self.service,
                    "version": self.version,
                    "upstream": (!self.upstream.is_empty()).then_some(&self.upstream),
                    "retries": self.retries,
                    "flags": flags,
                    "request_id": self.request_id,
                    "client": self.client.map(|a| a.to_string()),
                });
                let mut line = v.to_string();
                line.push('\n');
                line
            }
            Format::Text => {
                let dash = |s: &str| {
                    if s.is_empty() {
                        "-".to_owned()
                    } else {
                        s.to_owned()
                    }
                };
                let mut line = String::with_capacity(200);
                let _ = writeln!(
                    line,
                    "[{time}] \"{} {} {}\" {} {} {} {:.3} \"{}\" {} {} {} {} {} \"{}\" {}",
                    self.method,
                    quote(&self.path),
                    self.protocol,
                    self.status,
                    if flags.is_empty() {
                        "-".to_owned()
                    } else {
                        flags.join(",")
                    },
                    self.bytes,
                    self.duration.as_secs_f64() * 1e3,
                    quote(&self.authority),
                    dash(&self.route),
                    dash(&self.service),
                    dash(&self.version),
                    dash(&self.upstream),
                    self.retries,
                    quote(&self.request_id),
                    self.client
                        .map_or_else(|| "-".to_owned(), |a| a.to_string()),
                );
                line
            }
        }
    }
}

/// Text a client sent, made safe for one line: quotes, backslashes and control characters
/// escaped (a request cannot forge a log line).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `2026-12-04T21:30:00.123Z`.
fn httpdate_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The access log: a queue to its writer thread.
pub(crate) struct AccessLog {
    tx: SyncSender<Entry>,
    dropped: Counter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

impl AccessLog {
    /// Opens the target and starts the writer; `dropped` counts lines the queue had no room for.
    pub(crate) fn open(
        opts: &AccessLogOptions,
        dropped: Counter,
    ) -> std::io::Result<Arc<AccessLog>> {
        let out: Box<dyn Write + Send> = match &opts.target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (tx, rx) = sync_channel(QUEUE);
        let format = opts.format;
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || write_lines(rx, out, format))?;
        Ok(Arc::new(AccessLog { tx, dropped }))
    }

    /// Hands a line to the writer; drops it if the queue is full.
    pub(crate) fn log(&self, entry: Entry) {
        match self.tx.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.inc();
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// The writer thread: lines buffered, flushed when the queue runs dry (at most 100 ms late).
fn write_lines(rx: Receiver<Entry>, out: Box<dyn Write + Send>, format: Format) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(entry) => {
                if out.write_all(entry.render(format).as_bytes()).is_err() {
                    return;
                }
                // More waiting: keep buffering.
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_419_800_123)),
            method: "GET".into(),
            authority: "shop".into(),
            path: "/cart?x=\"1\"\n".into(),
            protocol: "HTTP/1.1",
            status: 504,
            duration: Duration::from_micros(1500),
            bytes: 24,
            route: "shop/0".into(),
            service: "shop".into(),
            version: "v2".into(),
            upstream: "127.0.0.1:9080".into(),
            retries: 2,
            flags: Flags::TIMEOUT.with(Flags::FAULT),
            request_id: "abc".into(),
            client: None,
        }
    }

    #[test]
    fn json_lines() {
        let line = entry().render(Format::Json);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-12-04T21:30:00.123Z");
        assert_eq!(v["status"], 504);
        assert_eq!(v["flags"], serde_json::json!(["timeout", "fault"]));
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream"], "127.0.0.1:9080");
        assert_eq!(v["path"], "/cart?x=\"1\"\n");
    }

    #[test]
    fn text_lines_cannot_be_forged() {
        let line = entry().render(Format::Text);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.starts_with("[2026-12-04T21:30:00.123Z] \"GET /cart?x=\\\"1\\\"\\x0a HTTP/1.1\" 504 timeout,fault 24 1.500 \"shop\" shop/0 shop v2 127.0.0.1:9080 2 \"abc\" -"), "{line}");
    }
}
