//! Rate limiting as Kong's `rate-limiting` plugin does it with its `local` policy (and as
//! weir's HTTPRoute extension `rateLimit`): fixed windows aligned to the clock (the current
//! second, minute, hour, day, calendar month and year, UTC), a count per window and client
//! key. A request over any limit gets 429 `{"message":"API rate limit exceeded"}` and is not
//! forwarded (nor counted); every answer carries `X-RateLimit-Limit-<Period>`,
//! `X-RateLimit-Remaining-<Period>` and `RateLimit-Limit` / `-Remaining` / `-Reset` for the
//! limit closest to running out, unless the headers are hidden.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};

/// A window length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day.
    Day,
    /// One calendar month.
    Month,
    /// One calendar year.
    Year,
}

impl Period {
    /// Every period, shortest first.
    pub const ALL: [Period; 6] = [
        Period::Second,
        Period::Minute,
        Period::Hour,
        Period::Day,
        Period::Month,
        Period::Year,
    ];

    /// Kong's name: `second` ... `year`.
    pub fn name(self) -> &'static str {
        match self {
            Period::Second => "second",
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// `X-RateLimit-Limit-<Period>` and `X-RateLimit-Remaining-<Period>`.
    fn header_names(self) -> (HeaderName, HeaderName) {
        let (limit, remaining) = match self {
            Period::Second => ("x-ratelimit-limit-second", "x-ratelimit-remaining-second"),
            Period::Minute => ("x-ratelimit-limit-minute", "x-ratelimit-remaining-minute"),
            Period::Hour => ("x-ratelimit-limit-hour", "x-ratelimit-remaining-hour"),
            Period::Day => ("x-ratelimit-limit-day", "x-ratelimit-remaining-day"),
            Period::Month => ("x-ratelimit-limit-month", "x-ratelimit-remaining-month"),
            Period::Year => ("x-ratelimit-limit-year", "x-ratelimit-remaining-year"),
        };
        (
            HeaderName::from_static(limit),
            HeaderName::from_static(remaining),
        )
    }

    /// The window holding `t` (seconds since the epoch): its start and end.
    pub fn window(self, t: u64) -> (u64, u64) {
        let fixed = |len: u64| (t - t % len, t - t % len + len);
        match self {
            Period::Second => fixed(1),
            Period::Minute => fixed(60),
            Period::Hour => fixed(3600),
            Period::Day => fixed(86_400),
            Period::Month | Period::Year => {
                let days = (t / 86_400) as i64;
                let (y, m, _) = civil_from_days(days);
                let (start, end) = if self == Period::Month {
                    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                    (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
                } else {
                    (days_from_civil(y, 1, 1), days_from_civil(y + 1, 1, 1))
                };
                (start as u64 * 86_400, end as u64 * 86_400)
            }
        }
    }
}

/// Year, month, day of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What identifies a client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitBy {
    /// The client's address.
    Ip,
    /// The consumer an authentication plugin found (Kong's `consumer` and `credential`); the
    /// client's address without one.
    Consumer,
    /// A request header's value (the address when it is missing).
    Header(HeaderName),
    /// The request path (every client of a path shares it).
    Path,
    /// Nothing: every request shares one count.
    Service,
}

/// A rate limit, as configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateLimitSpec {
    /// Limits per period.
    pub limits: Vec<(Period, u64)>,
    /// What identifies a client.
    pub by: LimitBy,
    /// Send no rate-limit headers.
    pub hide_headers: bool,
    /// Status of a refusal (default 429).
    pub status: u16,
    /// Message of a refusal.
    pub message: String,
}

impl RateLimitSpec {
    /// The key a request from `peer` (of `consumer`, if known) is counted under.
    pub fn key(
        &self,
        headers: &HeaderMap,
        path: &str,
        peer: IpAddr,
        consumer: Option<&str>,
    ) -> String {
        let ip = || peer.to_string();
        match &self.by {
            LimitBy::Ip => ip(),
            LimitBy::Consumer => consumer.map_or_else(ip, |c| format!("consumer:{c}")),
            LimitBy::Header(h) => headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map_or_else(ip, str::to_owned),
            LimitBy::Path => path.to_owned(),
            LimitBy::Service => String::new(),
        }
    }
}

/// A request a limiter turned away: answered with the limit's status and message.
#[derive(Debug)]
pub struct Limited {
    /// The configured status (429 unless set).
    pub status: u16,
    /// The configured message.
    pub message: String,
    /// The rate-limit headers.
    pub headers: HeaderMap,
}

/// Counts per client key: for each of the spec's limits, its window's start and the count.
#[derive(Debug)]
pub struct RateLimiter {
    spec: RateLimitSpec,
    counts: Mutex<HashMap<String, Vec<(u64, u64)>>>,
}

/// Most client keys kept at once; beyond it, keys of finished windows are dropped first.
const MAX_KEYS: usize = 100_000;

/// What the limiter decided: the headers to send, and whether the request may pass.
#[derive(Debug)]
pub struct Verdict {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Headers for the response.
    pub headers: HeaderMap,
}

impl RateLimiter {
    /// A limiter with no counts yet.
    pub fn new(spec: RateLimitSpec) -> RateLimiter {
        RateLimiter {
            spec,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn spec(&self) -> &RateLimitSpec {
        &self.spec
    }

    /// Counts a request from `peer` (its headers or path name the client when the limit is
    /// by them): `Continue` with the headers for its response, `Break` when it is over a limit.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        path: &str,
        peer: IpAddr,
        consumer: Option<&str>,
    ) -> ControlFlow<Limited, HeaderMap> {
        let verdict = self.check(&self.spec.key(headers, path, peer, consumer));
        if verdict.allowed {
            return ControlFlow::Continue(verdict.headers);
        }
        ControlFlow::Break(Limited {
            status: self.spec.status,
            message: self.spec.message.clone(),
            headers: verdict.headers,
        })
    }

    /// Counts a request of client `key` at the current time.
    pub fn check(&self, key: &str) -> Verdict {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_at(key, now)
    }

    /// Counts a request of client `key` at `now` (seconds since the epoch).
    pub fn check_at(&self, key: &str, now: u64) -> Verdict {
        let limits = &self.spec.limits;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() > MAX_KEYS {
            counts.retain(|_, slots| {
                slots
                    .iter()
                    .zip(limits)
                    .any(|(&(start, _), &(p, _))| p.window(now).0 == start)
            });
        }
        // Used before this request, per limit (one limit per period at most).
        let mut used = [0u64; Period::ALL.len()];
        if let Some(slots) = counts.get(key) {
            for (i, (&(start, n), &(p, _))) in slots.iter().zip(limits).enumerate() {
                if p.window(now).0 == start {
                    used[i] = n;
                }
            }
        }
        let allowed = limits.iter().zip(used).all(|(&(_, limit), n)| n < limit);
        if allowed {
            if !counts.contains_key(key) {
                counts.insert(key.to_owned(), vec![(0, 0); limits.len()]);
            }
            if let Some(slots) = counts.get_mut(key) {
                for (slot, (&(p, _), n)) in slots.iter_mut().zip(limits.iter().zip(used)) {
                    *slot = (p.window(now).0, n + 1);
                }
            }
        }
        drop(counts);
        let mut headers = HeaderMap::new();
        if self.spec.hide_headers {
            return Verdict { allowed, headers };
        }
        let counted = u64::from(allowed);
        let mut tightest: Option<(u64, u64, u64)> = None; // (remaining, limit, reset)
        for (&(period, limit), used) in limits.iter().zip(used) {
            let remaining = limit.saturating_sub(used + counted);
            let (limit_name, remaining_name) = period.header_names();
            headers.insert(limit_name, HeaderValue::from(limit));
            headers.insert(remaining_name, HeaderValue::from(remaining));
            let reset = period.window(now).1.saturating_sub(now);
            if tightest.is_none_or(|(r, _, _)| remaining < r) {
                tightest = Some((remaining, limit, reset));
            }
        }
        if let Some((remaining, limit, reset)) = tightest {
            headers.insert("ratelimit-limit", HeaderValue::from(limit));
            headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
            headers.insert("ratelimit-reset", HeaderValue::from(reset));
            if !allowed {
                headers.insert(http::header::RETRY_AFTER, HeaderValue::from(reset));
            }
        }
        Verdict { allowed, headers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limits: &[(Period, u64)]) -> RateLimiter {
        RateLimiter::new(RateLimitSpec {
            limits: limits.to_vec(),
            by: LimitBy::Ip,
            hide_headers: false,
            status: 429,
            message: "API rate limit exceeded".into(),
        })
    }

    #[test]
    fn windows_are_aligned_to_the_calendar() {
        // 2026-11-25T10:20:30Z
        let t = 1_795_602_030;
        assert_eq!(Period::Minute.window(t), (t - 30, t + 30));
        assert_eq!(Period::Hour.window(t), (t - 20 * 60 - 30, t + 39 * 60 + 30));
        let (start, end) = Period::Month.window(t);
        assert_eq!(civil_from_days(start as i64 / 86_400), (2026, 11, 1));
        assert_eq!(civil_from_days(end as i64 / 86_400), (2026, 12, 1));
        let (start, end) = Period::Year.window(t);
        assert_eq!(civil_from_days(start as i64 / 86_400), (2026, 1, 1));
        assert_eq!(civil_from_days(end as i64 / 86_400), (2027, 1, 1));
        // A leap year's February.
        let feb = days_from_civil(2028, 2, 10) as u64 * 86_400;
        let (s, e) = Period::Month.window(feb);
        assert_eq!((e - s) / 86_400, 29);
    }

    #[test]
    fn limits_per_window_and_key_with_headers() {
        let l = limiter(&[(Period::Second, 2), (Period::Minute, 3)]);
        let t = 1_795_602_000; // at the start of a minute
        let v = l.check_at("a", t);
        assert!(v.allowed);
        assert_eq!(v.headers["x-ratelimit-remaining-second"], "1");
        assert_eq!(v.headers["x-ratelimit-remaining-minute"], "2");
        assert_eq!(v.headers["ratelimit-remaining"], "1");
        assert_eq!(v.headers["ratelimit-reset"], "1");
        assert!(l.check_at("a", t).allowed);
        // The second's limit: refused, not counted.
        let v = l.check_at("a", t);
        assert!(!v.allowed);
        assert_eq!(v.headers["retry-after"], "1");
        // Another client has its own counts.
        assert!(l.check_at("b", t).allowed);
        // Next second: the minute's third request passes, its fourth does not.
        assert!(l.check_at("a", t + 1).allowed);
        let v = l.check_at("a", t + 1);
        assert!(!v.allowed);
        assert_eq!(v.headers["ratelimit-limit"], "3");
        assert_eq!(v.headers["ratelimit-reset"], "59");
        // Next minute: counts start over.
        assert!(l.check_at("a", t + 60).allowed);
    }

    #[test]
    fn admit_counts_by_the_client_key_and_answers_with_the_limit() {
        let peer: IpAddr = "10.0.0.7".parse().unwrap();
        let mut headers = HeaderMap::new();
        let mut l = limiter(&[(Period::Hour, 1)]);
        // By address: a second request in the hour is over the limit.
        assert!(
            matches!(l.admit(&headers, "/a", peer, None), ControlFlow::Continue(h) if !h.is_empty())
        );
        let ControlFlow::Break(limited) = l.admit(&headers, "/a", peer, None) else {
            panic!("over the limit");
        };
        assert_eq!(
            (limited.status, limited.message.as_str()),
            (429, "API rate limit exceeded")
        );
        assert!(limited.headers.contains_key("retry-after"));
        // By header: the header names the client, the address when it is missing.
        l = limiter(&[(Period::Hour, 1)]);
        l.spec.by = LimitBy::Header(HeaderName::from_static("x-user"));
        headers.insert("x-user", HeaderValue::from_static("ann"));
        assert_eq!(l.spec.key(&headers, "/a", peer, None), "ann");
        assert!(matches!(
            l.admit(&headers, "/a", peer, None),
            ControlFlow::Continue(_)
        ));
        headers.insert("x-user", HeaderValue::from_static("bob"));
        assert!(matches!(
            l.admit(&headers, "/a", peer, None),
            ControlFlow::Continue(_)
        ));
        assert_eq!(l.spec.key(&HeaderMap::new(), "/a", peer, None), "10.0.0.7");
        l.spec.by = LimitBy::Path;
        assert_eq!(l.spec.key(&headers, "/a/b", peer, None), "/a/b");
        l.spec.by = LimitBy::Service;
        assert_eq!(l.spec.key(&headers, "/a/b", peer, None), "");
        // By consumer: the one authentication found, else the address.
        l.spec.by = LimitBy::Consumer;
        assert_eq!(l.spec.key(&headers, "/a", peer, Some("c1")), "consumer:c1");
        assert_eq!(l.spec.key(&headers, "/a", peer, None), "10.0.0.7");
    }
}
