//! Request conditions: Istio's `HTTPMatchRequest`, compiled.
//!
//! Regexes are RE2-compatible, linear-time, size-capped and anchored for Istio's full-match
//! semantics. Header names are case-insensitive; the URI condition ignores the query string.

use std::cell::OnceCell;

use http::HeaderMap;
use http::header::HeaderName;
use regex::Regex;

/// Largest compiled regex weir accepts from a config.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles an Istio regex: the whole input must match.
pub fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    // Compiled bare first, so that errors point into the user's pattern, not our anchoring.
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()?;
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// A compiled `StringMatch`.
#[derive(Clone, Debug)]
pub enum StrMatcher {
    /// Equal.
    Exact(Box<str>),
    /// Starts with.
    Prefix(Box<str>),
    /// Fully matches.
    Regex(Regex),
    /// Present, whatever the value.
    Present,
}

impl StrMatcher {
    /// Whether `value` satisfies the condition.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrMatcher::Exact(s) => value == &**s,
            StrMatcher::Prefix(s) => value.starts_with(&**s),
            StrMatcher::Regex(r) => r.is_match(value),
            StrMatcher::Present => true,
        }
    }
}

impl PartialEq for StrMatcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (StrMatcher::Exact(a), StrMatcher::Exact(b)) => a == b,
            (StrMatcher::Prefix(a), StrMatcher::Prefix(b)) => a == b,
            (StrMatcher::Regex(a), StrMatcher::Regex(b)) => a.as_str() == b.as_str(),
            (StrMatcher::Present, StrMatcher::Present) => true,
            _ => false,
        }
    }
}

/// The parts of a request the matchers look at.
pub struct RequestView<'a> {
    /// Path, without the query string.
    pub path: &'a str,
    /// Query string, without `?`.
    pub query: Option<&'a str>,
    /// Method.
    pub method: &'a str,
    /// Authority as sent (host and optional port).
    pub authority: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Port of the listener the request arrived on.
    pub port: u16,
    /// Request headers.
    pub headers: &'a HeaderMap,
    lower_path: OnceCell<String>,
}

impl<'a> RequestView<'a> {
    /// A view of a request.
    pub fn new(
        path_and_query: &'a str,
        method: &'a str,
        authority: &'a str,
        scheme: &'a str,
        port: u16,
        headers: &'a HeaderMap,
    ) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        RequestView {
            path,
            query,
            method,
            authority,
            scheme,
            port,
            headers,
            lower_path: OnceCell::new(),
        }
    }

    /// The path in lower case (computed once).
    pub fn lower_path(&self) -> &str {
        self.lower_path
            .get_or_init(|| self.path.to_ascii_lowercase())
    }

    fn header(&self, name: &HeaderName) -> Option<std::borrow::Cow<'a, str>> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?.to_str().ok()?;
        let Some(second) = values.next() else {
            return Some(first.into());
        };
        // Several fields of one name read as one list; cookies are joined as a browser sends them.
        let sep = if name == http::header::COOKIE {
            "; "
        } else {
            ","
        };
        let mut joined = format!("{first}{sep}{}", second.to_str().ok()?);
        for v in values {
            joined.push_str(sep);
            joined.push_str(v.to_str().ok()?);
        }
        Some(joined.into())
    }

    fn query_param(&self, key: &str) -> Option<String> {
        let query = self.query?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }
}

/// Decodes `%XX` escapes; malformed escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// How the path is tested.
#[derive(Clone, Debug, PartialEq)]
pub struct UriMatch {
    /// The condition (lower-cased when `ignore_case`).
    pub matcher: StrMatcher,
    /// Compare exact and prefix conditions case-insensitively.
    pub ignore_case: bool,
}

/// A compiled `HTTPMatchRequest`: every condition must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestMatch {
    /// Path condition.
    pub uri: Option<UriMatch>,
    /// Scheme condition.
    pub scheme: Option<StrMatcher>,
    /// Method condition.
    pub method: Option<StrMatcher>,
    /// Authority condition.
    pub authority: Option<StrMatcher>,
    /// Headers that must match.
    pub headers: Vec<(HeaderName, StrMatcher)>,
    /// Headers that must not match.
    pub without_headers: Vec<(HeaderName, StrMatcher)>,
    /// Query parameters that must match.
    pub query_params: Vec<(Box<str>, StrMatcher)>,
    /// Listener port.
    pub port: Option<u16>,
    /// Gateways this block is limited to (empty: all).
    pub gateways: Vec<Box<str>>,
}

impl RequestMatch {
    /// Whether the request satisfies every condition.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(uri) = &self.uri {
            let path = if uri.ignore_case && !matches!(uri.matcher, StrMatcher::Regex(_)) {
                req.lower_path()
            } else {
                req.path
            };
            if !uri.matcher.matches(path) {
                return false;
            }
        }
        if self.port.is_some_and(|p| p != req.port) {
            return false;
        }
        if self.method.as_ref().is_some_and(|m| !m.matches(req.method)) {
            return false;
        }
        if self.scheme.as_ref().is_some_and(|m| !m.matches(req.scheme)) {
            return false;
        }
        if self
            .authority
            .as_ref()
            .is_some_and(|m| !m.matches(req.authority))
        {
            return false;
        }
        let header_ok =
            |(name, m): &(HeaderName, StrMatcher)| req.header(name).is_some_and(|v| m.matches(&v));
        if !self.headers.iter().all(header_ok) {
            return false;
        }
        if self.without_headers.iter().any(header_ok) {
            return false;
        }
        self.query_params
            .iter()
            .all(|(k, m)| req.query_param(k).is_some_and(|v| m.matches(&v)))
    }
}

/// The host part of an authority (`[::1]:80` gives `[::1]`).
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map(|i| &authority[..=i])
            .unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(pq: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView::new(pq, "GET", "reviews", "http", 15001, headers)
    }

    #[test]
    fn regex_is_full_match() {
        let r = StrMatcher::Regex(compile_regex("us-.*").unwrap());
        assert!(r.matches("us-east"));
        assert!(!r.matches("eu-us-east"));
        let r = StrMatcher::Regex(compile_regex("a|b").unwrap());
        assert!(!r.matches("ab"));
    }

    #[test]
    fn headers_presence_absence_and_cookies() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "experiment=new-ui".parse().unwrap());
        h.insert("x-flag", "".parse().unwrap());
        let m = RequestMatch {
            headers: vec![(
                HeaderName::from_static("cookie"),
                StrMatcher::Regex(compile_regex(".*experiment=new-ui.*").unwrap()),
            )],
            without_headers: vec![(HeaderName::from_static("x-absent"), StrMatcher::Present)],
            ..Default::default()
        };
        assert!(m.matches(&view("/", &h)));
        let m = RequestMatch {
            without_headers: vec![(HeaderName::from_static("x-flag"), StrMatcher::Present)],
            ..Default::default()
        };
        assert!(!m.matches(&view("/", &h)));
    }

    #[test]
    fn query_params() {
        let h = HeaderMap::new();
        let m = RequestMatch {
            query_params: vec![
                ("debug".into(), StrMatcher::Exact("".into())),
                ("user".into(), StrMatcher::Exact("a b".into())),
            ],
            ..Default::default()
        };
        assert!(m.matches(&view("/x?debug&user=a%20b", &h)));
        assert!(!m.matches(&view("/x?user=a%20b", &h)));
    }

    #[test]
    fn uri_ignores_query_and_case_when_asked() {
        let h = HeaderMap::new();
        let m = RequestMatch {
            uri: Some(UriMatch {
                matcher: StrMatcher::Exact("/reviews".into()),
                ignore_case: true,
            }),
            ..Default::default()
        };
        assert!(m.matches(&view("/Reviews?x=1", &h)));
        assert!(!m.matches(&view("/reviews/1", &h)));
    }
}
