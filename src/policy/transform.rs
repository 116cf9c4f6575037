//! Kong's `request-transformer` (and weir's HTTPRoute extension `requestTransformer`, the same
//! object): the request's method, headers, query string and path changed before it is
//! forwarded, in Kong's order: remove, rename, replace (only what is there), add (only what is
//! not), append (always).

use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};

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
}
