//! Header edits (`headers.request` / `headers.response`) and hop-by-hop header removal.

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// `set`, `add` and `remove` for one direction, applied in that order: remove, set, add.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderOps {
    /// Overwritten headers.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Appended headers.
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// Removed headers.
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the edits.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Request and response edits together.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeaderEdits {
    /// Applied to the request before forwarding.
    pub request: HeaderOps,
    /// Applied to the response before answering.
    pub response: HeaderOps,
}

/// Headers that belong to one connection and are never forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers (and `Proxy-Authorization`, meant for a proxy, which weir does
/// not use), including those named by `Connection`. `TE: trailers` is kept
/// (gRPC needs it); other `TE` values are dropped.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of these: one pass over the names settles it without hashing
    // each of them.
    if !headers
        .keys()
        .any(|k| HOP_BY_HOP.contains(k) || k == header::TE)
    {
        return;
    }
    if let Some(conn) = headers.get(header::CONNECTION)
        && let Ok(conn) = conn.to_str()
    {
        let named: Vec<HeaderName> = conn
            .split(',')
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if let Some(te) = headers.get(header::TE)
        && !te.as_bytes().eq_ignore_ascii_case(b"trailers")
    {
        headers.remove(header::TE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["te", "x-kept"]);
    }

    #[test]
    fn edits_apply_in_order() {
        let mut h = HeaderMap::new();
        h.insert("a", "old".parse().unwrap());
        h.insert("b", "old".parse().unwrap());
        let ops = HeaderOps {
            set: vec![(
                HeaderName::from_static("a"),
                HeaderValue::from_static("new"),
            )],
            add: vec![(
                HeaderName::from_static("b"),
                HeaderValue::from_static("more"),
            )],
            remove: vec![HeaderName::from_static("b")],
        };
        ops.apply(&mut h);
        assert_eq!(h.get("a").unwrap(), "new");
        assert_eq!(h.get_all("b").iter().count(), 1);
    }
}
