//! The headers a proxy adds for the upstream: `x-forwarded-for`, `x-forwarded-proto` and
//! `x-request-id`, as Envoy sets them.

use std::cell::RefCell;

use bytes::BytesMut;
use http::header::{Entry, HeaderName, HeaderValue};

use super::conn::ConnInfo;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `x-forwarded-for`, `x-forwarded-proto` and `x-request-id`, as Envoy sets them; at the edge,
/// `x-forwarded-proto` is overwritten and `x-envoy-*` headers removed.
pub(super) fn forwarded_headers(headers: &mut http::HeaderMap, conn: &ConnInfo) {
    // Entries: each name is hashed once.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(e) => {
            e.insert(conn.peer_ip.clone());
        }
        Entry::Occupied(mut e) => {
            let ip = conn.peer_ip.as_bytes();
            let mut v = BytesMut::new();
            for prev in e.iter().filter(|p| !p.is_empty()) {
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(ip);
            if let Ok(v) = HeaderValue::from_maybe_shared(v.freeze()) {
                e.insert(v);
            }
        }
    }
    let proto = HeaderValue::from_static(conn.scheme());
    if conn.edge {
        headers.insert(X_FORWARDED_PROTO, proto);
        // Envoy's internal headers mean something to sidecars upstream; a client at the edge
        // does not get to set them.
        let internal: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("x-envoy-"))
            .cloned()
            .collect();
        for k in internal {
            headers.remove(k);
        }
    } else {
        headers.entry(X_FORWARDED_PROTO).or_insert(proto);
    }
    headers.entry(X_REQUEST_ID).or_insert_with(request_id);
}

/// A random (version 4) UUID. Ids are cut from a per-thread block, so that making one does not
/// allocate.
fn request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const BLOCK: usize = 36 * 256;
    thread_local! {
        static IDS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    let n = fastrand::u128(..);
    let n = (n & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let mut id = [b'-'; 36];
    let bytes = n.to_be_bytes();
    let mut at = 0;
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        id[at] = HEX[usize::from(b >> 4)];
        id[at + 1] = HEX[usize::from(b & 0xf)];
        at += 2;
    }
    let bytes = IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if ids.capacity() < id.len() {
            *ids = BytesMut::with_capacity(BLOCK);
        }
        ids.extend_from_slice(&id);
        ids.split_to(id.len()).freeze()
    });
    HeaderValue::from_maybe_shared(bytes).unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
        // Across block boundaries ids stay whole and distinct.
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 36 && id.as_bytes()[14] == b'4')
        );
    }
}
