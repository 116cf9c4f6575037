//! `strip_path`, the service's `path`, `preserve_host` and `retries` as Istio's HTTPRewrite and
//! HTTPRetry.

use super::entities::{DEFAULT_RETRIES, Errors, Route, Service};
use super::upstreams::Target;
use crate::config::decode::Spanned;
use crate::config::istio::{HttpRetry, HttpRewrite, RegexRewrite};
use crate::config::yaml::Pos;

/// `strip_path`, the service's path and `preserve_host` as an HTTPRewrite.
pub(super) fn rewrite(
    r: &Route,
    t: &Target,
    base: Option<&str>,
    strip: bool,
    regex: bool,
    paths: &[&Spanned<String>],
    e: &mut Errors<'_>,
) -> Option<HttpRewrite> {
    let mut rw = HttpRewrite {
        pos: r.spec.pos,
        ..HttpRewrite::default()
    };
    let trimmed = base.map_or("", |b| b.trim_end_matches('/'));
    if strip && !paths.is_empty() {
        if regex {
            // The matched part goes; what follows it is appended to the service's path.
            let alts: Vec<&str> = paths
                .iter()
                .filter_map(|p| p.value.strip_prefix('~'))
                .collect();
            let pattern = format!("^(?:{})/?(.*)$", alts.join("|"));
            let group = match regex::Regex::new(&pattern) {
                Ok(re) => re.captures_len() - 1,
                // The match itself reports the bad regex.
                Err(_) => return None,
            };
            if group > 9 {
                e.at(
                    &r.at,
                    paths[0].pos,
                    "too many capture groups in the path regexes",
                );
                return None;
            }
            rw.uri_regex_rewrite = Some(RegexRewrite {
                pos: paths[0].pos,
                pattern: Spanned {
                    pos: paths[0].pos,
                    value: pattern,
                },
                rewrite: format!("{trimmed}/\\{group}"),
            });
        } else if r
            .spec
            .path_handling
            .as_ref()
            .is_some_and(|h| h.value == "v1")
        {
            // v1: the service's path and what follows the matched prefix, end to end.
            rw.uri = Some(base.unwrap_or("/").to_owned());
        } else {
            // v0 (the default): what follows the matched prefix goes after the service's path
            // and one slash, as Kong's get_upstream_uri_v0 joins them (`/s` and `/tv0req`
            // give `/s/req`; `/tv0` alone gives `/s`).
            rw.uri = Some(base.unwrap_or("/").to_owned());
            rw.kong_path_join = Some(true);
        }
    } else if !trimmed.is_empty() {
        rw.uri_regex_rewrite = Some(RegexRewrite {
            pos: r.spec.pos,
            pattern: Spanned {
                pos: r.spec.pos,
                value: "^/?(.*)$".to_owned(),
            },
            rewrite: format!("{trimmed}/\\1"),
        });
    }
    if r.spec.preserve_host != Some(true) {
        let default_port = if t.protocol == "https" { 443 } else { 80 };
        rw.authority = Some(if t.port == default_port {
            t.host.clone()
        } else {
            format!("{}:{}", t.host, t.port)
        });
    }
    (rw.uri.is_some() || rw.uri_regex_rewrite.is_some() || rw.authority.is_some()).then_some(rw)
}

/// Kong's retries: transport failures only, `retries` of them. (Kong's `read_timeout` is the
/// connection's read timeout, not a per-try bound.)
pub(super) fn retries(service: Option<&Service>) -> HttpRetry {
    HttpRetry {
        attempts: Some(
            service
                .and_then(|s| s.spec.retries)
                .unwrap_or(DEFAULT_RETRIES),
        ),
        retry_on: Some(Spanned {
            pos: Pos::default(),
            value: "connect-failure,refused-stream,reset".to_owned(),
        }),
        ..HttpRetry::default()
    }
}
