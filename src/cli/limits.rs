//! `weir run`'s limits and deadlines for clients, as flags.

use std::time::Duration;

/// What weir holds clients to (defaults: docs/reliability.md section 5, safe at the edge).
#[derive(clap::Args)]
pub(super) struct Limits {
    /// From a request's first byte to the end of its head; then 408 (slowloris).
    #[arg(long, default_value = "10s", value_parser = duration)]
    request_headers_timeout: Duration,
    /// From a request's head to the end of its body; then 408 (slow bodies).
    #[arg(long, default_value = "300s", value_parser = duration)]
    request_timeout: Duration,
    /// Closes connections idle between requests, and writes that make no progress, after this.
    #[arg(long, default_value = "60s", value_parser = duration)]
    idle_timeout: Duration,
    /// Open connections per listener; more are closed at once.
    #[arg(long, default_value_t = 16_384)]
    max_connections: usize,
    /// Resident memory above which new requests get 503 (e.g. 2GiB, 512MiB, or off).
    #[arg(long, default_value = "2GiB", value_parser = size)]
    memory_limit: Size,
    /// The largest request body forwarded (413 above it) where a route sets no
    /// `maxRequestBytes` (e.g. 10MiB, or off).
    #[arg(long, default_value = "off", value_parser = size)]
    max_request_body: Size,
    /// Header names with an underscore: reject (400), drop, or allow.
    #[arg(long, value_enum, default_value = "reject")]
    headers_with_underscores: Underscores,
    /// %2F and %5C in paths: reject (400), keep, or unescape.
    #[arg(long, value_enum, default_value = "reject")]
    escaped_slashes: EscapedSlashes,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Underscores {
    Reject,
    Drop,
    Allow,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EscapedSlashes {
    Reject,
    Keep,
    Unescape,
}

impl Limits {
    pub(super) fn policy(&self) -> crate::edge::ServerPolicy {
        use crate::edge;
        edge::ServerPolicy {
            request_headers_timeout: self.request_headers_timeout,
            request_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            memory_limit: self.memory_limit.0,
            max_request_body: self.max_request_body.0,
            underscores: match self.headers_with_underscores {
                Underscores::Reject => edge::Underscores::Reject,
                Underscores::Drop => edge::Underscores::Drop,
                Underscores::Allow => edge::Underscores::Allow,
            },
            escaped_slashes: match self.escaped_slashes {
                EscapedSlashes::Reject => edge::EscapedSlashes::Reject,
                EscapedSlashes::Keep => edge::EscapedSlashes::Keep,
                EscapedSlashes::Unescape => edge::EscapedSlashes::Unescape,
            },
        }
    }
}

pub(super) fn duration(text: &str) -> Result<Duration, String> {
    crate::config::decode::parse_duration(text).map_err(str::to_owned)
}

/// A size in bytes, or none.
#[derive(Clone, Copy)]
struct Size(Option<u64>);

/// Bytes with an optional KiB/MiB/GiB suffix; `off` for none.
fn size(text: &str) -> Result<Size, String> {
    if text == "off" {
        return Ok(Size(None));
    }
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let scale: u64 = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?}: use KiB, MiB or GiB")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map(|n| Size(Some(n)))
        .ok_or_else(|| format!("not a size: {text:?}"))
}
