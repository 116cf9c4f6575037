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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;

/// Lines waiting to be written at most (a fifth of a second at 300,000 requests a second).
const QUEUE: usize = 64 * 1024;

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
    /// Access control refused it.
    pub(crate) const DENIED: Flags = Flags(1 << 11);

    const NAMES: [(Flags, &'static str); 12] = [
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
        (Flags::DENIED, "denied"),
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

/// A destination's names, made once per destination when a configuration is built (a line
/// holds a reference, not copies).
#[derive(Debug, Default)]
pub(crate) struct DestNames {
    pub(crate) service: String,
    pub(crate) version: String,
    pub(crate) route: String,
}

/// Where the last try went.
#[derive(Clone, Debug)]
pub(crate) enum Upstream {
    /// An address.
    Ip(SocketAddr),
    /// A name resolved at connect time, and a port.
    Name(String, u16),
}

/// One request's line: what the request path hands over is cheap to take (shared bytes and
/// references); the writer thread turns it into text.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) time: SystemTime,
    pub(crate) method: http::Method,
    pub(crate) authority: Option<http::HeaderValue>,
    pub(crate) path: Option<http::uri::PathAndQuery>,
    pub(crate) protocol: &'static str,
    pub(crate) status: u16,
    pub(crate) duration: Duration,
    pub(crate) bytes: u64,
    pub(crate) dest: Option<Arc<DestNames>>,
    pub(crate) upstream: Option<Upstream>,
    pub(crate) retries: u32,
    pub(crate) flags: Flags,
    pub(crate) request_id: Option<http::HeaderValue>,
    pub(crate) client: Option<SocketAddr>,
    /// The access policy that refused the request, if one did.
    pub(crate) policy: Option<Arc<str>>,
}

/// A header's text (bytes outside ASCII shown as they decode).
fn text(v: &http::HeaderValue) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

/// `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Entry {
    /// Appends the line, with its newline, to `out`.
    fn render(&self, format: Format, out: &mut String) {
        let time = rfc3339(self.time);
        let authority = self.authority.as_ref().map(text).unwrap_or_default();
        let path = self.path.as_ref().map_or("", |p| p.as_str());
        let id = self.request_id.as_ref().map(text).unwrap_or_default();
        let (service, version, route) = self
            .dest
            .as_deref()
            .map_or(("", "", ""), |d| (&*d.service, &*d.version, &*d.route));
        let upstream = match &self.upstream {
            Some(Upstream::Ip(a)) => a.to_string(),
            Some(Upstream::Name(h, p)) => format!("{h}:{p}"),
            None => String::new(),
        };
        let duration_ms = self.duration.as_secs_f64() * 1e3;
        match format {
            Format::Json => {
                out.push_str("{\"time\":\"");
                out.push_str(&time);
                out.push_str("\",\"method\":");
                json_str(out, self.method.as_str());
                out.push_str(",\"authority\":");
                json_str(out, &authority);
                out.push_str(",\"path\":");
                json_str(out, path);
                let _ = write!(
                    out,
                    ",\"protocol\":\"{}\",\"status\":{},\"duration_ms\":{:.3},\"bytes_sent\":{},\"route\":",
                    self.protocol, self.status, duration_ms, self.bytes
                );
                json_str(out, route);
                out.push_str(",\"service\":");
                json_str(out, service);
                out.push_str(",\"version\":");
                json_str(out, version);
                out.push_str(",\"upstream\":");
                if upstream.is_empty() {
                    out.push_str("null");
                } else {
                    json_str(out, &upstream);
                }
                let _ = write!(out, ",\"retries\":{},\"flags\":[", self.retries);
                for (i, f) in self.flags.names().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_str(out, f);
                }
                out.push_str("],\"request_id\":");
                json_str(out, &id);
                out.push_str(",\"client\":");
                match self.client {
                    Some(c) => json_str(out, &c.to_string()),
                    None => out.push_str("null"),
                }
                out.push_str(",\"policy\":");
                match &self.policy {
                    Some(p) => json_str(out, p),
                    None => out.push_str("null"),
                }
                out.push_str("}\n");
            }
            Format::Text => {
                let dash = |s: &str| {
                    if s.is_empty() {
                        "-".to_owned()
                    } else {
                        s.to_owned()
                    }
                };
                let flags: Vec<&str> = self.flags.names().collect();
                let _ = writeln!(
                    out,
                    "[{time}] \"{} {} {}\" {} {} {} {:.3} \"{}\" {} {} {} {} {} \"{}\" {} {}",
                    self.method,
                    quote(path),
                    self.protocol,
                    self.status,
                    if flags.is_empty() {
                        "-".to_owned()
                    } else {
                        flags.join(",")
                    },
                    self.bytes,
                    duration_ms,
                    quote(&authority),
                    dash(route),
                    dash(service),
                    dash(version),
                    dash(&upstream),
                    self.retries,
                    quote(&id),
                    self.client
                        .map_or_else(|| "-".to_owned(), |a| a.to_string()),
                    dash(self.policy.as_deref().unwrap_or_default()),
                );
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
fn rfc3339(t: SystemTime) -> String {
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
    /// Set by SIGHUP: the writer opens its file again (after logrotate moved it).
    reopen: Arc<AtomicBool>,
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
        let out = sink(&opts.target)?;
        let (tx, rx) = sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            rx,
            out,
            format: opts.format,
            target: opts.target.clone(),
            reopen: reopen.clone(),
        };
        std::thread::Builder::new()
            .name("weir-access-log".into())
            .spawn(move || writer.run())?;
        Ok(Arc::new(AccessLog {
            tx,
            dropped,
            reopen,
        }))
    }

    /// Has the writer open its file again, as SIGHUP asks (logrotate's `postrotate`).
    pub(crate) fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
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

/// How often the writer takes the lines waiting: a request never wakes it (a wake-up per line
/// would cost more than the line).
const DRAIN: Duration = Duration::from_millis(20);

/// Where lines go, opened.
fn sink(target: &Target) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::stdout()),
        Target::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    })
}

/// The writer thread's state.
struct Writer {
    rx: Receiver<Entry>,
    out: Box<dyn Write + Send>,
    format: Format,
    target: Target,
    reopen: Arc<AtomicBool>,
}

impl Writer {
    /// Every [`DRAIN`], the lines waiting, rendered into one buffer and written at once; ends
    /// when weir drops the log, after the last lines. A failed write (a full disk) loses those
    /// lines, says so once, and the writer carries on.
    fn run(mut self) {
        let mut buf = String::with_capacity(64 * 1024);
        let mut failing = false;
        loop {
            let mut open = true;
            loop {
                match self.rx.try_recv() {
                    Ok(entry) => {
                        entry.render(self.format, &mut buf);
                        if buf.len() >= 256 * 1024 {
                            self.write(&mut buf, &mut failing);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.write(&mut buf, &mut failing);
            if !open {
                return;
            }
            if self.reopen.swap(false, Ordering::AcqRel) && matches!(self.target, Target::File(_)) {
                match sink(&self.target) {
                    Ok(out) => self.out = out,
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot open the access log again; writing on to the old file.")
                    }
                }
            }
            std::thread::sleep(DRAIN);
        }
    }

    fn write(&mut self, buf: &mut String, failing: &mut bool) {
        if buf.is_empty() {
            return;
        }
        match self
            .out
            .write_all(buf.as_bytes())
            .and_then(|()| self.out.flush())
        {
            Ok(()) => *failing = false,
            Err(e) if !*failing => {
                *failing = true;
                tracing::warn!(error = %e, "Cannot write the access log; lines are lost until it can.");
            }
            Err(_) => {}
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_419_800_123),
            method: http::Method::GET,
            authority: Some(http::HeaderValue::from_static("shop")),
            path: Some(http::uri::PathAndQuery::from_static("/cart?x=%22")),
            protocol: "HTTP/1.1",
            status: 504,
            duration: Duration::from_micros(1500),
            bytes: 24,
            dest: Some(Arc::new(DestNames {
                service: "shop".into(),
                version: "v2".into(),
                route: "shop/0".into(),
            })),
            upstream: Some(Upstream::Ip("127.0.0.1:9080".parse().unwrap())),
            retries: 2,
            flags: Flags::TIMEOUT.with(Flags::FAULT),
            request_id: Some(http::HeaderValue::from_static("a\"b")),
            client: None,
            policy: None,
        }
    }

    fn line(format: Format) -> String {
        let mut out = String::new();
        entry().render(format, &mut out);
        out
    }

    #[test]
    fn json_lines() {
        let line = line(Format::Json);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2026-12-04T21:30:00.123Z");
        assert_eq!(v["status"], 504);
        assert_eq!(v["flags"], serde_json::json!(["timeout", "fault"]));
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream"], "127.0.0.1:9080");
        assert_eq!(v["path"], "/cart?x=%22");
        assert_eq!(v["request_id"], "a\"b");
        assert!(v["client"].is_null());
    }

    #[test]
    fn text_lines_cannot_be_forged() {
        let line = line(Format::Text);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.starts_with("[2026-12-04T21:30:00.123Z] \"GET /cart?x=%22 HTTP/1.1\" 504 timeout,fault 24 1.500 \"shop\" shop/0 shop v2 127.0.0.1:9080 2 \"a\\\"b\" -"), "{line}");
    }
}
