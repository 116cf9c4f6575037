//! Kong's `request-transformer` (and weir's HTTPRoute extension `requestTransformer`, the same
//! object): the request's method, headers, query string and path changed before it is
//! forwarded, in Kong's order: remove, rename, replace (only what is there), add (only what is
//! not), append (always).
//!
//! Values and `replace.uri` may hold Kong's templates, `$(headers.NAME)`,
//! `$(query_params.NAME)` and `$(uri_captures.NAME)` (also `["NAME"]`, a capture's number, and
//! `or "default"`), read from the request as it arrived; what is missing renders empty.

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::route::matcher::percent_decode;

/// One kind of change, to headers or to query parameters.
#[derive(Debug)]
pub struct Ops<K, V> {
    /// Names to remove.
    pub remove: Vec<K>,
    /// Names to rename (old, new).
    pub rename: Vec<(K, K)>,
    /// Values to replace where the name is present.
    pub replace: Vec<(K, V)>,
    /// Values to add where the name is absent.
    pub add: Vec<(K, V)>,
    /// Values to append.
    pub append: Vec<(K, V)>,
}

impl<K, V> Default for Ops<K, V> {
    fn default() -> Self {
        Ops {
            remove: Vec::new(),
            rename: Vec::new(),
            replace: Vec::new(),
            add: Vec::new(),
            append: Vec::new(),
        }
    }
}

/// A compiled `request-transformer`.
#[derive(Debug, Default)]
pub struct RequestTransform {
    /// The method to send.
    pub method: Option<Method>,
    /// The path to send (the query is kept).
    pub uri: Option<String>,
    /// Header changes.
    pub headers: Ops<HeaderName, HeaderValue>,
    /// Query-parameter changes.
    pub query: Ops<String, String>,
    /// When some value is a template: the whole transform, rendered per request instead.
    pub templates: Option<Box<Templated>>,
}

/// A `request-transformer` whose values are templates.
#[derive(Debug, Default)]
pub struct Templated {
    /// The method to send.
    pub method: Option<Method>,
    /// The path to send.
    pub uri: Option<Template>,
    /// Header changes.
    pub headers: Ops<HeaderName, Template>,
    /// Query-parameter changes.
    pub query: Ops<String, Template>,
}

/// What templates read: the request as it arrived.
pub struct TemplateInput<'a> {
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Query string, without `?`.
    pub query: Option<&'a str>,
    /// The path.
    pub path: &'a str,
    /// The matched route's regex path, for `uri_captures`.
    pub uri_regex: Option<&'a regex::Regex>,
}

/// A value with `$(...)` parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var {
        source: Source,
        key: String,
        default: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Header,
    Query,
    Capture,
}

impl Template {
    /// Parses a value; an expression weir does not read is an error saying which.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find("$(") {
            if at > 0 {
                parts.push(Part::Text(rest[..at].to_owned()));
            }
            let close =
                closing(&rest[at + 2..]).ok_or_else(|| format!("`{text}`: `$(` without `)`"))?;
            parts.push(var(rest[at + 2..at + 2 + close].trim())?);
            rest = &rest[at + 2 + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template(parts))
    }

    /// The value, when it has no `$(...)` part.
    pub fn text(&self) -> Option<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var { .. } => return None,
            }
        }
        Some(out)
    }

    /// The value for one request.
    pub fn render(&self, input: &TemplateInput<'_>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var {
                    source,
                    key,
                    default,
                } => {
                    let found = match source {
                        Source::Header => input
                            .headers
                            .get(key.as_str())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                        Source::Query => input.query.and_then(|q| {
                            q.split('&').find_map(|pair| {
                                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                                (percent_decode(k) == *key).then(|| percent_decode(v))
                            })
                        }),
                        Source::Capture => input
                            .uri_regex
                            .and_then(|re| re.captures(input.path))
                            .and_then(|c| match key.parse::<usize>() {
                                Ok(i) => c.get(i),
                                Err(_) => c.name(key),
                            })
                            .map(|m| m.as_str().to_owned()),
                    };
                    out.push_str(found.as_deref().unwrap_or(default));
                }
            }
        }
        out
    }
}

/// Where the `)` closing an expression is: parentheses nest, quoted text is skipped.
fn closing(expr: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote = None;
    for (i, c) in expr.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') if depth == 0 => return Some(i),
            (None, ')') => depth -= 1,
            _ => {}
        }
    }
    None
}

/// `headers.NAME`, `headers["NAME"]`, `query_params...`, `uri_captures...` with an optional
/// `or "default"`.
fn var(expr: &str) -> Result<Part, String> {
    let bad = || {
        format!(
            "template `$({expr})`: weir reads headers, query_params and uri_captures, with an optional `or \"default\"`"
        )
    };
    let (lookup, default) = match expr.split_once(" or ") {
        Some((l, d)) => {
            let d = d.trim();
            let quoted = d.len() >= 2
                && ((d.starts_with('"') && d.ends_with('"'))
                    || (d.starts_with('\'') && d.ends_with('\'')));
            if !quoted {
                return Err(bad());
            }
            (l.trim(), d[1..d.len() - 1].to_owned())
        }
        None => (expr, String::new()),
    };
    let (table, key) = match lookup.split_once('.') {
        Some((t, k)) => (t, k.to_owned()),
        None => {
            let open = lookup.find('[').ok_or_else(bad)?;
            let inner = lookup[open + 1..].strip_suffix(']').ok_or_else(bad)?;
            let key = inner.trim_matches(|c| c == '"' || c == '\'');
            (&lookup[..open], key.to_owned())
        }
    };
    let source = match table.trim() {
        "headers" => Source::Header,
        "query_params" => Source::Query,
        "uri_captures" => Source::Capture,
        _ => return Err(bad()),
    };
    if key.is_empty() {
        return Err(bad());
    }
    // Kong's header table reads `x_user` as `x-user`, in any case.
    let key = match source {
        Source::Header => key.to_ascii_lowercase().replace('_', "-"),
        _ => key,
    };
    Ok(Part::Var {
        source,
        key,
        default,
    })
}

/// Whether no value of `ops` reads the request.
fn fixed<K>(ops: &[(K, Template)]) -> bool {
    ops.iter().all(|(_, t)| t.text().is_some())
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Templated {
    /// The transform to run: values fixed here when none reads the request, else this,
    /// rendered per request.
    pub fn compile(self) -> RequestTransform {
        let (h, q) = (&self.headers, &self.query);
        let is_fixed = self.uri.iter().all(|t| t.text().is_some())
            && fixed(&h.replace)
            && fixed(&h.add)
            && fixed(&h.append)
            && fixed(&q.replace)
            && fixed(&q.add)
            && fixed(&q.append);
        if !is_fixed {
            return RequestTransform {
                method: self.method.clone(),
                templates: Some(Box::new(self)),
                ..RequestTransform::default()
            };
        }
        let empty = HeaderMap::new();
        self.render(&TemplateInput {
            headers: &empty,
            query: None,
            path: "",
            uri_regex: None,
        })
    }

    /// The transform for one request. Header values that render to nothing a header can
    /// carry are left out.
    pub fn render(&self, input: &TemplateInput<'_>) -> RequestTransform {
        let value = |t: &Template| HeaderValue::from_str(&t.render(input)).ok();
        let header_pairs = |ops: &[(HeaderName, Template)]| {
            ops.iter()
                .filter_map(|(n, t)| Some((n.clone(), value(t)?)))
                .collect()
        };
        // Rendered query values are encoded: what a header carried may hold `&` or spaces.
        let query_pairs = |ops: &[(String, Template)]| {
            ops.iter()
                .map(|(n, t)| (n.clone(), percent_encode(&t.render(input))))
                .collect()
        };
        RequestTransform {
            method: self.method.clone(),
            uri: self.uri.as_ref().map(|t| t.render(input)),
            headers: Ops {
                remove: self.headers.remove.clone(),
                rename: self.headers.rename.clone(),
                replace: header_pairs(&self.headers.replace),
                add: header_pairs(&self.headers.add),
                append: header_pairs(&self.headers.append),
            },
            query: Ops {
                remove: self.query.remove.clone(),
                rename: self.query.rename.clone(),
                replace: query_pairs(&self.query.replace),
                add: query_pairs(&self.query.add),
                append: query_pairs(&self.query.append),
            },
            templates: None,
        }
    }
}

impl RequestTransform {
    /// Whether the path or query changes.
    pub fn touches_target(&self) -> bool {
        let q = &self.query;
        self.uri.is_some()
            || !(q.remove.is_empty()
                && q.rename.is_empty()
                && q.replace.is_empty()
                && q.add.is_empty()
                && q.append.is_empty())
    }

    /// When its values are templates: this transform rendered from the request as it arrived.
    pub fn render_for(&self, input: &TemplateInput<'_>) -> Option<RequestTransform> {
        self.templates.as_ref().map(|t| t.render(input))
    }

    /// The path and query to send: `rewritten` (or, without it, the request's `pq`) changed by
    /// this transform when it changes the target, else `rewritten` as it is.
    pub fn target(&self, rewritten: Option<String>, pq: &str) -> Option<String> {
        if !self.touches_target() {
            return rewritten;
        }
        Some(self.apply_target(rewritten.as_deref().unwrap_or(pq)))
    }

    /// Changes the method and headers.
    pub fn apply_head(&self, method: &mut Method, headers: &mut HeaderMap) {
        if let Some(m) = &self.method {
            *method = m.clone();
        }
        let h = &self.headers;
        for name in &h.remove {
            headers.remove(name);
        }
        for (old, new) in &h.rename {
            let values: Vec<HeaderValue> = headers.get_all(old).iter().cloned().collect();
            if !values.is_empty() {
                headers.remove(old);
                for v in values {
                    headers.append(new, v);
                }
            }
        }
        for (name, value) in &h.replace {
            if headers.contains_key(name) {
                headers.insert(name, value.clone());
            }
        }
        for (name, value) in &h.add {
            if !headers.contains_key(name) {
                headers.insert(name, value.clone());
            }
        }
        for (name, value) in &h.append {
            headers.append(name, value.clone());
        }
    }

    /// The path and query to send instead of `pq`.
    pub fn apply_target(&self, pq: &str) -> String {
        let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
        let mut params: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let q = &self.query;
        params.retain(|(k, _)| !q.remove.contains(k));
        for (old, new) in &q.rename {
            for (k, _) in params.iter_mut().filter(|(k, _)| k == old) {
                k.clone_from(new);
            }
        }
        for (name, value) in &q.replace {
            for (_, v) in params.iter_mut().filter(|(k, _)| k == name) {
                v.clone_from(value);
            }
        }
        for (name, value) in &q.add {
            if !params.iter().any(|(k, _)| k == name) {
                params.push((name.clone(), value.clone()));
            }
        }
        for (name, value) in &q.append {
            params.push((name.clone(), value.clone()));
        }
        let mut out = self.uri.clone().unwrap_or_else(|| path.to_owned());
        if !params.is_empty() {
            out.push('?');
            let joined: Vec<String> = params
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            out.push_str(&joined.join("&"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_changes_in_kongs_order() {
        let t = RequestTransform {
            uri: Some("/new".into()),
            query: Ops {
                remove: vec!["drop".into()],
                rename: vec![("old".into(), "new".into())],
                replace: vec![("r".into(), "2".into()), ("absent".into(), "x".into())],
                add: vec![("a".into(), "1".into()), ("r".into(), "9".into())],
                append: vec![("r".into(), "3".into())],
            },
            ..RequestTransform::default()
        };
        assert_eq!(
            t.apply_target("/p?drop=1&old=v&r=1"),
            "/new?new=v&r=2&a=1&r=3"
        );
    }

    #[test]
    fn templates_read_headers_query_and_captures() {
        let mut h = HeaderMap::new();
        h.insert("x-user", HeaderValue::from_static("ann"));
        let re = regex::Regex::new(r"^/u/(?<id>[0-9]+)/(.*)$").unwrap();
        let input = TemplateInput {
            headers: &h,
            query: Some("a=1&b=x%20y"),
            path: "/u/9/rest",
            uri_regex: Some(&re),
        };
        let render = |t: &str| Template::parse(t).unwrap().render(&input);
        assert_eq!(
            render("$(headers.X_User)-$(query_params['b'])-$(uri_captures.id)"),
            "ann-x y-9"
        );
        assert_eq!(
            render("$(uri_captures[2]) $(headers.none or \"(none)\")"),
            "rest (none)"
        );
        assert_eq!(render("plain"), "plain");
        assert_eq!(
            Template::parse("plain").unwrap().text().as_deref(),
            Some("plain")
        );
        assert!(Template::parse("$(headers.x)").unwrap().text().is_none());
        for bad in [
            "$(ngx.var.x)",
            "$(headers.x or y)",
            "$(headers[])",
            "$(headers.x",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_changes_in_kongs_order() {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).unwrap();
        let value = |v: &'static str| HeaderValue::from_static(v);
        let t = RequestTransform {
            method: Some(Method::POST),
            headers: Ops {
                remove: vec![name("x-drop")],
                rename: vec![(name("x-old"), name("x-new"))],
                replace: vec![(name("x-r"), value("2")), (name("x-none"), value("x"))],
                add: vec![(name("x-a"), value("1")), (name("x-r"), value("9"))],
                append: vec![(name("x-r"), value("3"))],
            },
            ..RequestTransform::default()
        };
        let mut method = Method::GET;
        let mut h = HeaderMap::new();
        for (k, v) in [("x-drop", "1"), ("x-old", "v"), ("x-r", "1")] {
            h.insert(name(k), value(v));
        }
        t.apply_head(&mut method, &mut h);
        assert_eq!(method, Method::POST);
        assert!(!h.contains_key("x-drop") && !h.contains_key("x-old") && !h.contains_key("x-none"));
        assert_eq!(h["x-new"], "v");
        assert_eq!(h["x-a"], "1");
        let r: Vec<_> = h.get_all("x-r").iter().collect();
        assert_eq!(r, ["2", "3"]);
    }

    #[test]
    fn the_target_changes_only_when_the_transform_touches_it() {
        let headers_only = RequestTransform {
            method: Some(Method::POST),
            ..RequestTransform::default()
        };
        assert_eq!(headers_only.target(None, "/a?x=1"), None);
        assert_eq!(
            headers_only.target(Some("/b".into()), "/a"),
            Some("/b".into())
        );
        let to_uri = RequestTransform {
            uri: Some("/new".into()),
            ..RequestTransform::default()
        };
        // The query of what it changes (the rewritten target, else the request's) is kept.
        assert_eq!(to_uri.target(None, "/a?x=1"), Some("/new?x=1".into()));
        assert_eq!(
            to_uri.target(Some("/b?y=2".into()), "/a"),
            Some("/new?y=2".into())
        );
        // Without templates there is nothing to render.
        let input = TemplateInput {
            headers: &HeaderMap::new(),
            query: None,
            path: "/a",
            uri_regex: None,
        };
        assert!(to_uri.render_for(&input).is_none());
    }
}
