//! Kong's `key_in_body`: an API key sent as a field of the request body (a form, a JSON
//! object, a multipart form), found, and with `hide_credentials` taken out of the body.
//!
//! As Kong's `kong.request.get_body`: the media type says how the body is read, and a body that
//! cannot be read that way holds no key (it is not an error); a field given twice (in JSON, an
//! array or an object) is a duplicate key. Work is linear in the body, which the request path
//! holds to 64 KiB before asking.

use std::borrow::Cow;

use bytes::Bytes;

use crate::route::matcher::percent_decode;

/// What a body, a query or the headers hold under a name.
#[derive(Debug, PartialEq, Eq)]
pub enum Field<'a> {
    /// Nothing (in JSON, also a number, a boolean or null: not a key).
    Missing,
    /// One value.
    One(Cow<'a, str>),
    /// More than one value (Kong: "Duplicate API key found").
    Duplicate,
}

/// How a body is read, from its `Content-Type`.
enum Kind<'a> {
    Form,
    Json,
    Multipart(&'a [u8]),
}

fn kind(content_type: Option<&str>) -> Option<Kind<'_>> {
    let mut params = content_type?.split(';');
    let media = params.next()?.trim().to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => Some(Kind::Form),
        "multipart/form-data" => params.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim().trim_matches('"');
            (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty())
                .then_some(Kind::Multipart(v.as_bytes()))
        }),
        m if m == "application/json" || m.ends_with("+json") => Some(Kind::Json),
        _ => None,
    }
}

/// A form's name or value, decoded (`+` is a space).
fn form_decode(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    if s.contains('+') {
        percent_decode(&s.replace('+', " "))
    } else {
        percent_decode(&s)
    }
}

/// The values of `name` in a query string or a urlencoded form.
pub fn form_field<'a>(form: &[u8], name: &str) -> Field<'a> {
    let mut found = Field::Missing;
    for pair in form.split(|&b| b == b'&') {
        // A name without `=` has no value (Kong reads it as `true`, not a key).
        let Some(i) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (k, v) = (&pair[..i], &pair[i + 1..]);
        if form_decode(k) != name {
            continue;
        }
        if found != Field::Missing {
            return Field::Duplicate;
        }
        found = Field::One(Cow::Owned(form_decode(v)));
    }
    found
}

/// What `body` holds under `name`, read as its `content_type` says.
pub fn find<'a>(content_type: Option<&str>, body: &'a [u8], name: &str) -> Field<'a> {
    match kind(content_type) {
        Some(Kind::Form) => form_field(body, name),
        Some(Kind::Json) => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(mut map)) => match map.remove(name) {
                Some(serde_json::Value::String(s)) => Field::One(Cow::Owned(s)),
                Some(serde_json::Value::Array(_) | serde_json::Value::Object(_)) => {
                    Field::Duplicate
                }
                _ => Field::Missing,
            },
            _ => Field::Missing,
        },
        Some(Kind::Multipart(boundary)) => {
            let mut found = Field::Missing;
            for part in parts(body, boundary) {
                if part.name.as_deref() != Some(name) {
                    continue;
                }
                if found != Field::Missing {
                    return Field::Duplicate;
                }
                found = Field::One(String::from_utf8_lossy(&body[part.value.0..part.value.1]));
            }
            found
        }
        None => Field::Missing,
    }
}

/// `body` without the field `name`; `None` when it has no such field (or cannot be read).
pub fn remove(content_type: Option<&str>, body: &[u8], name: &str) -> Option<Bytes> {
    match kind(content_type)? {
        Kind::Form => {
            let mut removed = false;
            let kept: Vec<&[u8]> = body
                .split(|&b| b == b'&')
                .filter(|pair| {
                    let k = pair.split(|&b| b == b'=').next().unwrap_or_default();
                    let hit = form_decode(k) == name;
                    removed |= hit;
                    !hit
                })
                .collect();
            removed.then(|| Bytes::from(kept.join(&b'&')))
        }
        Kind::Json => {
            let mut value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
            value.as_object_mut()?.remove(name)?;
            serde_json::to_vec(&value).ok().map(Bytes::from)
        }
        Kind::Multipart(boundary) => {
            let hits: Vec<Part> = parts(body, boundary)
                .into_iter()
                .filter(|p| p.name.as_deref() == Some(name))
                .collect();
            if hits.is_empty() {
                return None;
            }
            let mut out = Vec::with_capacity(body.len());
            let mut at = 0;
            for p in hits {
                out.extend_from_slice(&body[at..p.span.0]);
                at = p.span.1;
            }
            out.extend_from_slice(&body[at..]);
            Some(Bytes::from(out))
        }
    }
}

/// One part of a multipart body.
struct Part {
    /// From its delimiter line to the next part's (removing it leaves a valid body).
    span: (usize, usize),
    /// Its `Content-Disposition` name.
    name: Option<String>,
    /// Its content.
    value: (usize, usize),
}

fn find_at(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parts of a multipart body (RFC 7578); a malformed body yields the parts before the
/// fault.
fn parts(body: &[u8], boundary: &[u8]) -> Vec<Part> {
    let delimiter = [&b"\r\n--"[..], boundary].concat();
    let mut out = Vec::new();
    // The first delimiter may open the body (no CRLF before it).
    let mut at = if body.starts_with(&delimiter[2..]) {
        0
    } else {
        match find_at(body, &delimiter, 0) {
            Some(i) => i + 2,
            None => return out,
        }
    };
    loop {
        let after = at + delimiter.len() - 2;
        if body.get(after..after + 2) == Some(b"--") {
            return out;
        }
        let Some(headers) = find_at(body, b"\r\n", after).map(|i| i + 2) else {
            return out;
        };
        let Some(content) = find_at(body, b"\r\n\r\n", headers - 2).map(|i| i + 4) else {
            return out;
        };
        let Some(end) = find_at(body, &delimiter, content - 2) else {
            return out;
        };
        out.push(Part {
            span: (at, end + 2),
            name: disposition_name(&body[headers..content]),
            value: (content, end.max(content)),
        });
        at = end + 2;
    }
}

/// The `name` of a part's `Content-Disposition: form-data; name="..."`.
fn disposition_name(headers: &[u8]) -> Option<String> {
    let headers = std::str::from_utf8(headers).ok()?;
    headers.split("\r\n").find_map(|line| {
        let (h, v) = line.split_once(':')?;
        if !h.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        v.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("name")
                .then(|| v.trim().trim_matches('"').to_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
    const JSON: Option<&str> = Some("application/json; charset=utf-8");
    const MULTI: Option<&str> = Some("multipart/form-data; boundary=\"XyZ\"");

    fn one(s: &str) -> Field<'_> {
        Field::One(Cow::Borrowed(s))
    }

    #[test]
    fn forms_are_decoded_and_duplicates_refused() {
        assert_eq!(
            find(FORM, b"a=1&apikey=my+k%2Fey", "apikey"),
            one("my k/ey")
        );
        assert_eq!(find(FORM, b"apikey=1&apikey=2", "apikey"), Field::Duplicate);
        assert_eq!(find(FORM, b"apikeys=1&apikey", "apikey"), Field::Missing);
        assert_eq!(find(None, b"apikey=1", "apikey"), Field::Missing);
        assert_eq!(
            find(Some("text/plain"), b"apikey=1", "apikey"),
            Field::Missing
        );
        let out = remove(FORM, b"a=1&apikey=k&b=2", "apikey").unwrap();
        assert_eq!(&out[..], b"a=1&b=2");
        assert_eq!(remove(FORM, b"a=1", "apikey"), None);
    }

    #[test]
    fn json_takes_strings_only() {
        assert_eq!(find(JSON, br#"{"apikey":"k","n":1}"#, "apikey"), one("k"));
        assert_eq!(
            find(JSON, br#"{"apikey":["a","b"]}"#, "apikey"),
            Field::Duplicate
        );
        assert_eq!(
            find(JSON, br#"{"apikey":{"a":1}}"#, "apikey"),
            Field::Duplicate
        );
        assert_eq!(find(JSON, br#"{"apikey":12}"#, "apikey"), Field::Missing);
        assert_eq!(find(JSON, br#"["apikey"]"#, "apikey"), Field::Missing);
        assert_eq!(find(JSON, br#"{"apikey":"k""#, "apikey"), Field::Missing);
        let vnd = Some("application/vnd.api+json");
        assert_eq!(find(vnd, br#"{"apikey":"k"}"#, "apikey"), one("k"));
        let out = remove(JSON, br#"{"apikey":"k","n":1}"#, "apikey").unwrap();
        assert_eq!(&out[..], br#"{"n":1}"#);
    }

    #[test]
    fn multipart_parts_are_found_and_cut_out() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XyZ\r\ncontent-disposition: form-data; name=\"apikey\"\r\n\r\nsecret\r\n--XyZ--\r\n";
        assert_eq!(find(MULTI, body, "apikey"), one("secret"));
        assert_eq!(find(MULTI, body, "file"), one("hello"));
        assert_eq!(find(MULTI, body, "nope"), Field::Missing);
        let out = remove(MULTI, body, "apikey").unwrap();
        let expected = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n";
        assert_eq!(&out[..], &expected[..]);
        assert_eq!(find(MULTI, &out, "apikey"), Field::Missing);
        let twice = b"--XyZ\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\na\r\n--XyZ\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nb\r\n--XyZ--";
        assert_eq!(find(MULTI, twice, "apikey"), Field::Duplicate);
        // A preamble before the first delimiter; an empty value.
        let pre = b"ignored\r\n--XyZ\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\n\r\n--XyZ--";
        assert_eq!(find(MULTI, pre, "apikey"), one(""));
    }

    #[test]
    fn malformed_multipart_is_bounded_and_quiet() {
        for body in [
            &b"--XyZ"[..],
            b"--XyZ\r\n",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"apikey\"\r\n",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"apikey\"\r\n\r\nsecret",
            b"",
            b"\r\n--XyZ\r\n\r\n",
        ] {
            assert_eq!(find(MULTI, body, "apikey"), Field::Missing);
            assert_eq!(remove(MULTI, body, "apikey"), None);
        }
        assert_eq!(
            find(Some("multipart/form-data"), b"--\r\n", "apikey"),
            Field::Missing
        );
    }
}
