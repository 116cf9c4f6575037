//! Path and authority rewrites, and redirects.

use http::{HeaderValue, StatusCode};
use regex::Regex;

use crate::route::matcher::{RequestMatch, StrMatcher};

/// `HTTPRewrite`, compiled.
#[derive(Clone, Debug)]
pub struct Rewrite {
    /// Replacement for the matched prefix (the whole path for exact and regex matches).
    pub uri: Option<Box<str>>,
    /// Regex rewrite: pattern and `$n`-style replacement.
    pub uri_regex: Option<(Regex, String)>,
    /// Replacement authority.
    pub authority: Option<HeaderValue>,
    /// `uri` and what follows the matched prefix are joined as Kong's `path_handling: v0`
    /// joins a service's path and a stripped request path.
    pub kong_join: bool,
}

/// How much of the path a match block "matched", which a prefix rewrite replaces.
///
/// Envoy's semantics: a prefix match replaces its prefix; exact and regex matches replace the
/// whole path; without a path condition the implicit prefix is `/`.
fn matched_len(path: &str, block: Option<&RequestMatch>) -> usize {
    match block.and_then(|b| b.uri.as_ref()).map(|u| &u.matcher) {
        Some(StrMatcher::Prefix(p)) => p.len().min(path.len()),
        Some(StrMatcher::Exact(_) | StrMatcher::Regex(_)) => path.len(),
        _ => usize::from(path.starts_with('/')),
    }
}

impl Rewrite {
    /// The rewritten path with the request's query; `None` when the path is not rewritten.
    pub fn path_and_query(
        &self,
        path: &str,
        query: Option<&str>,
        block: Option<&RequestMatch>,
    ) -> Option<String> {
        let path = self.path(path, block)?;
        Some(match query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        })
    }

    /// The rewritten path, or `None` when the path is unchanged.
    pub fn path(&self, path: &str, block: Option<&RequestMatch>) -> Option<String> {
        if let Some((re, with)) = &self.uri_regex {
            return Some(re.replace_all(path, with.as_str()).into_owned());
        }
        let uri = self.uri.as_deref()?;
        let n = matched_len(path, block);
        if self.kong_join {
            return Some(kong_v0_join(uri, &path[n..], path));
        }
        let mut rest = &path[n..];
        // `/base/` and `/a` join as `/base/a`.
        if uri.ends_with('/') && rest.starts_with('/') {
            rest = &rest[1..];
        }
        let mut out = String::with_capacity(uri.len() + rest.len());
        out.push_str(uri);
        out.push_str(rest);
        Some(out)
    }
}

/// Kong's `path_handling: v0` join of a service's path `base` and what follows a stripped
/// route path, `postfix`, of the request path `path` (Kong's `get_upstream_uri_v0`, facts only):
/// exactly one slash between the two; nothing after `base` when nothing follows, unless the
/// request path ends in a slash.
fn kong_v0_join(base: &str, postfix: &str, path: &str) -> String {
    let trimmed = base.strip_suffix('/').unwrap_or(base);
    if postfix.is_empty() {
        return if base.ends_with('/') {
            if base == "/" || path.ends_with('/') {
                base.to_owned()
            } else {
                trimmed.to_owned()
            }
        } else if path.len() > 1 && path.ends_with('/') {
            format!("{base}/")
        } else {
            base.to_owned()
        };
    }
    match postfix.strip_prefix('/') {
        Some(rest) => format!("{trimmed}/{rest}"),
        None => format!("{trimmed}/{postfix}"),
    }
}

/// Converts RE2 replacement syntax (`\1`) to the regex crate's (`${1}`).
pub fn re2_replacement(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(d)) if d.is_ascii_digit() => {
                out.push_str(&format!("${{{d}}}"));
                chars.next();
            }
            ('$', _) => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

/// `HTTPRedirect`, compiled.
#[derive(Clone, Debug)]
pub struct Redirect {
    /// Replacement path.
    pub uri: Option<Box<str>>,
    /// Replacement for the matched prefix.
    pub prefix_rewrite: Option<Box<str>>,
    /// Replacement authority.
    pub authority: Option<Box<str>>,
    /// Replacement port.
    pub port: Option<u16>,
    /// Drop the port (`FROM_PROTOCOL_DEFAULT`).
    pub default_port: bool,
    /// Replacement scheme.
    pub scheme: Option<Box<str>>,
    /// Status code.
    pub code: StatusCode,
}

impl Redirect {
    /// The `Location` for a request.
    pub fn location(
        &self,
        scheme: &str,
        authority: &str,
        path: &str,
        query: Option<&str>,
        block: Option<&RequestMatch>,
    ) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(scheme);
        let authority = self.authority.as_deref().unwrap_or(authority);
        let host = crate::route::matcher::strip_port(authority);
        let port = match (self.port, self.default_port) {
            (Some(p), _) => Some(p.to_string()),
            (None, true) => None,
            (None, false) => authority
                .strip_prefix(host)
                .and_then(|p| p.strip_prefix(':'))
                .map(str::to_owned),
        };
        let path = match (&self.uri, &self.prefix_rewrite) {
            (Some(uri), _) => uri.to_string(),
            (None, Some(prefix)) => {
                let n = matched_len(path, block);
                format!("{prefix}{}", &path[n..])
            }
            (None, None) => path.to_owned(),
        };
        let mut out = format!("{scheme}://{host}");
        if let Some(port) = port {
            out.push(':');
            out.push_str(&port);
        }
        out.push_str(&path);
        if let Some(q) = query
            && !path.contains('?')
        {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::matcher::UriMatch;

    fn prefix(p: &str) -> RequestMatch {
        RequestMatch {
            uri: Some(UriMatch {
                matcher: StrMatcher::Prefix(p.into()),
                ignore_case: false,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix() {
        let rw = Rewrite {
            uri: Some("/v2/ratings".into()),
            uri_regex: None,
            authority: None,
            kong_join: false,
        };
        let b = prefix("/ratings");
        assert_eq!(rw.path("/ratings/1", Some(&b)).unwrap(), "/v2/ratings/1");
        let rw = Rewrite {
            uri: Some("/".into()),
            ..rw
        };
        assert_eq!(rw.path("/ratings/1", Some(&b)).unwrap(), "/1");
    }

    #[test]
    fn regex_rewrite_uses_re2_groups() {
        let re = crate::route::matcher::compile_regex("/service/([^/]+)(/.*)").unwrap();
        let rw = Rewrite {
            uri: None,
            uri_regex: Some((re, re2_replacement("\\2/instance/\\1"))),
            authority: None,
            kong_join: false,
        };
        assert_eq!(
            rw.path("/service/foo/v1/api", None).unwrap(),
            "/v1/api/instance/foo"
        );
    }

    #[test]
    fn redirect_location() {
        let r = Redirect {
            uri: Some("/v1/bookRatings".into()),
            prefix_rewrite: None,
            authority: Some("newratings.default.svc.cluster.local".into()),
            port: None,
            default_port: false,
            scheme: None,
            code: StatusCode::MOVED_PERMANENTLY,
        };
        assert_eq!(
            r.location(
                "http",
                "ratings:9080",
                "/v1/getProductRatings",
                Some("a=1"),
                None
            ),
            "http://newratings.default.svc.cluster.local/v1/bookRatings?a=1"
        );
    }

    #[test]
    fn path_and_query_keeps_the_query_of_a_rewritten_path() {
        let rw = Rewrite {
            uri: Some("/v2/".into()),
            uri_regex: None,
            authority: None,
            kong_join: false,
        };
        let block = prefix("/v1/");
        assert_eq!(
            rw.path_and_query("/v1/items", Some("page=2"), Some(&block)),
            Some("/v2/items?page=2".into())
        );
        assert_eq!(
            rw.path_and_query("/v1/items", None, Some(&block)),
            Some("/v2/items".into())
        );
        let authority_only = Rewrite { uri: None, ..rw };
        assert_eq!(
            authority_only.path_and_query("/v1/items", Some("a"), Some(&block)),
            None
        );
    }

    #[test]
    fn kong_v0_joins_as_kongs_table_says() {
        // (service path, what follows the route path, request path) -> upstream path.
        for (base, postfix, path, want) in [
            ("/s", "req", "/tv0req", "/s/req"),
            ("/s", "/req", "/tv0/req", "/s/req"),
            ("/s/", "req", "/tv0req", "/s/req"),
            ("/s/", "/req", "/tv0/req", "/s/req"),
            ("/s", "", "/tv0", "/s"),
            ("/s", "", "/tv0/", "/s/"),
            ("/s/", "", "/tv0", "/s"),
            ("/s/", "", "/tv0/", "/s/"),
            ("/", "", "/", "/"),
            ("/", "a", "/a", "/a"),
            ("/anything", "req", "/testreq", "/anything/req"),
        ] {
            assert_eq!(
                kong_v0_join(base, postfix, path),
                want,
                "{base} {postfix} {path}"
            );
        }
    }
}
