//! An upstream's HTTP/1.1 response head: parsed without copying its values, and the framing of
//! the body that follows decided by RFC 9112 section 6.3 (length, chunked, or to the close).

use std::mem::MaybeUninit;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

use crate::http1::{Chunk, Decoder, MAX_HEADERS, Reader, header_map, parse_length, tokens};

/// A response head, with what its framing headers said.
pub(crate) struct Head {
    pub(super) status: StatusCode,
    pub(super) version: Version,
    /// Forwardable headers: framing and connection-management headers are consumed here.
    pub(super) headers: HeaderMap,
    pub(super) delimiters: Delimiters,
}

/// Parses the head at the front of the buffer; if it is complete, takes it off (header values
/// stay slices of it, uncopied).
pub(crate) fn take_head<R>(
    r: &mut Reader<R>,
    fields: &mut crate::http1::Fields,
) -> Result<Option<Head>, &'static str> {
    // Left uninitialised: the parser writes the slots it fills (filling all of them first
    // wrote 3.2 KB per response).
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let buf = r.unread();
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many response headers"),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("invalid status code")?;
    let version = match resp.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Names now, values once the head is taken (it is borrowed while parsed).
    let base = buf.as_ptr() as usize;
    fields.clear();
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "invalid header name")?;
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    let head = r.take(len);
    let mut headers = header_map(fields.len());
    let mut delimiters = Delimiters::default();
    for (name, start, end) in fields.drain(..) {
        let raw = &head[start..end];
        if delimiters.see(&name, raw) {
            let value = HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| "invalid header value")?;
            headers.append(name, value);
        }
    }
    Ok(Some(Head {
        status,
        version,
        headers,
        delimiters,
    }))
}

/// What a response's framing and connection headers said.
#[derive(Debug, Default)]
pub(super) struct Delimiters {
    /// Content-Length, once all its values agreed.
    length: Option<u64>,
    /// A Content-Length problem, reported if the length decides the framing.
    bad_length: Option<&'static str>,
    /// Transfer-Encoding was present; whether its last coding is `chunked`.
    chunked_last: Option<bool>,
    close: bool,
    keep_alive: bool,
}

impl Delimiters {
    /// Notes one header; false for headers consumed here rather than forwarded.
    fn see(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        let tokens = || tokens(value);
        if name == header::CONTENT_LENGTH {
            for part in tokens() {
                match parse_length(part) {
                    None => self.bad_length = Some("invalid Content-Length"),
                    Some(n) if self.length.is_some_and(|l| l != n) => {
                        self.bad_length = Some("conflicting Content-Length values");
                    }
                    Some(n) => self.length = Some(n),
                }
            }
            true
        } else if name == header::TRANSFER_ENCODING {
            let last = tokens().rfind(|t| !t.is_empty());
            self.chunked_last = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
            false
        } else if name == header::CONNECTION {
            let mut others = false;
            for t in tokens() {
                if t.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if !t.is_empty() {
                    others = true;
                }
            }
            // Kept only when it names other headers: hop-by-hop removal needs to see them.
            others
        } else {
            name.as_str() != "keep-alive"
        }
    }

    /// How the body is delimited (RFC 9112 section 6.3), and whether the connection can be
    /// reused after it.
    pub(super) fn decide(
        self,
        status: StatusCode,
        head_only: bool,
        version: Version,
    ) -> Result<(Decoder, bool), &'static str> {
        let persistent = if version == Version::HTTP_10 {
            self.keep_alive && !self.close
        } else {
            !self.close
        };
        if self.chunked_last.is_some() && (self.length.is_some() || self.bad_length.is_some()) {
            return Err("both Content-Length and Transfer-Encoding");
        }
        if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok((Decoder::Done, persistent));
        }
        match self.chunked_last {
            Some(true) => return Ok((Decoder::Chunked(Chunk::Size), persistent)),
            // Some other coding last: the body runs to the close.
            Some(false) => return Ok((Decoder::Eof, false)),
            None => {}
        }
        if let Some(problem) = self.bad_length {
            return Err(problem);
        }
        Ok(match self.length {
            Some(0) => (Decoder::Done, persistent),
            Some(n) => (Decoder::Length(n), persistent),
            None => (Decoder::Eof, false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(pairs: &[(&str, &str)], status: u16, head_only: bool) -> Option<(String, bool)> {
        let mut d = Delimiters::default();
        for (k, v) in pairs {
            d.see(&HeaderName::from_bytes(k.as_bytes()).unwrap(), v.as_bytes());
        }
        let status = StatusCode::from_u16(status).unwrap();
        d.decide(status, head_only, Version::HTTP_11)
            .ok()
            .map(|(d, k)| (format!("{d:?}"), k))
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let some = |d: &str, k| Some((d.to_owned(), k));
        assert_eq!(
            decide(&[("content-length", "5")], 200, false),
            some("Length(5)", true)
        );
        assert_eq!(
            decide(&[("content-length", "5, 5")], 200, false),
            some("Length(5)", true)
        );
        let two = [("content-length", "5"), ("content-length", "6")];
        assert_eq!(decide(&two, 200, false), None);
        assert_eq!(decide(&[("content-length", "+5")], 200, false), None);
        assert_eq!(decide(&[("content-length", "")], 200, false), None);
        let both = [("content-length", "5"), ("transfer-encoding", "chunked")];
        assert_eq!(decide(&both, 200, false), None);
        assert_eq!(
            decide(&both, 204, false),
            None,
            "refused even without a body"
        );
        let te = [("transfer-encoding", "gzip, chunked")];
        assert_eq!(decide(&te, 200, false), some("Chunked(Size)", true));
        let te = [("transfer-encoding", "chunked, gzip")];
        assert_eq!(decide(&te, 200, false), some("Eof", false));
        assert_eq!(decide(&[], 200, false), some("Eof", false));
        assert_eq!(
            decide(&[("content-length", "5")], 200, true),
            some("Done", true)
        );
        assert_eq!(decide(&[], 204, false), some("Done", true));
        let close = [("content-length", "0"), ("connection", "close")];
        assert_eq!(decide(&close, 200, false), some("Done", false));
    }

    #[test]
    fn connection_headers_are_consumed_unless_they_name_others() {
        let mut d = Delimiters::default();
        assert!(!d.see(&header::CONNECTION, b"keep-alive"));
        assert!(d.see(&header::CONNECTION, b"close, x-secret"));
        assert!(!d.see(&HeaderName::from_static("keep-alive"), b"timeout=5"));
        assert!(!d.see(&header::TRANSFER_ENCODING, b"chunked"));
        assert!(d.see(&header::CONTENT_LENGTH, b"3"));
        assert!(d.close && d.keep_alive);
    }

    #[test]
    fn keep_alive_by_version() {
        let persistent = |conn: &[u8], version| {
            let mut d = Delimiters::default();
            if !conn.is_empty() {
                d.see(&header::CONNECTION, conn);
            }
            d.decide(StatusCode::NO_CONTENT, false, version).unwrap().1
        };
        assert!(persistent(b"", Version::HTTP_11));
        assert!(!persistent(b"", Version::HTTP_10));
        assert!(persistent(b"Keep-Alive", Version::HTTP_10));
        assert!(!persistent(b"foo, close", Version::HTTP_11));
    }

    #[test]
    fn heads_are_taken_with_values_uncopied() {
        let mut fields = Vec::new();
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nX-A: b\r\n\r\nok";
        let mut r = Reader::from_bytes((), raw);
        let head = take_head(&mut r, &mut fields).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers.len(), 2, "connection is consumed");
        assert_eq!(head.headers["x-a"], "b");
        assert_eq!(r.unread(), b"ok");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: \x7f\r\n\r\n",
        ] {
            let mut r = Reader::from_bytes((), bad);
            assert!(
                take_head(&mut r, &mut fields).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let partial = b"HTTP/1.1 200 OK\r\nX: a";
        let mut r = Reader::from_bytes((), partial);
        assert!(take_head(&mut r, &mut fields).unwrap().is_none());
    }
}
