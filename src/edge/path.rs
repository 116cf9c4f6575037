//! Request path normalisation (RFC 3986 section 6, as Envoy's edge settings `normalize_path`,
//! `merge_slashes` and `path_with_escaped_slashes_action` do it), applied before anything looks
//! at the path, so that routing, fault and retry lookup and the upstream all see the same path.
//!
//! - Percent-encoded unreserved characters are decoded (`%2e` is `.`, `%41` is `A`); other
//!   escapes keep their encoding, with upper-case hex.
//! - Dot segments are removed; a path that climbs above the root is refused.
//! - Runs of slashes become one.
//! - An encoded slash or backslash (`%2F`, `%5C`) is refused, kept, or decoded, as configured.
//! - A backslash, a fragment (`#`), a bad escape or a path not starting with `/` is refused.
//!
//! The query is never touched. A path that needs no change costs one scan and no allocation.

/// What to do with `%2F` and `%5C` in a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Refuse the request (400): the default, for clients that follow RFC 3986.
    #[default]
    Reject,
    /// Forward the escape as it is; it never separates segments.
    Keep,
    /// Decode it to `/` (or `\`, then refused), then normalise.
    Unescape,
}

/// Why a path was refused.
pub type Refused = &'static str;

/// The normalised path, or `None` when `path` is already normal.
pub fn normalize(path: &str, slashes: EscapedSlashes) -> Result<Option<String>, Refused> {
    if path.is_empty() || path == "*" {
        return Ok(None);
    }
    if !path.starts_with('/') {
        return Err("the path must start with /");
    }
    if is_normal(path.as_bytes()) {
        return Ok(None);
    }
    let decoded = decode(path, slashes)?;
    let out = remove_dots(&decoded)?;
    Ok((out != path).then_some(out))
}

/// True when nothing in `path` needs looking at: no escape, backslash, fragment, empty segment
/// or segment starting with a dot.
fn is_normal(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in path {
        match b {
            b'%' | b'\\' | b'#' => return false,
            b'/' | b'.' if prev == b'/' => return false,
            _ => {}
        }
        prev = b;
    }
    true
}

/// Decodes escapes of unreserved characters, refuses what may not appear. Other bytes (UTF-8
/// included) are kept as they are.
fn decode(path: &str, slashes: EscapedSlashes) -> Result<String, Refused> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => return Err("a backslash in the path"),
            b'#' => return Err("a fragment in the request target"),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or("a bad percent-encoding")?;
                let v = hex_value(hex[0])
                    .zip(hex_value(hex[1]))
                    .map(|(h, l)| h << 4 | l)
                    .ok_or("a bad percent-encoding")?;
                let escaped = [b'%', HEX[usize::from(v >> 4)], HEX[usize::from(v & 15)]];
                match v {
                    b'/' | b'\\' => match slashes {
                        EscapedSlashes::Reject => return Err("an encoded slash in the path"),
                        EscapedSlashes::Keep => out.extend_from_slice(&escaped),
                        EscapedSlashes::Unescape if v == b'/' => out.push(b'/'),
                        EscapedSlashes::Unescape => return Err("a backslash in the path"),
                    },
                    v if is_unreserved(v) => out.push(v),
                    _ => out.extend_from_slice(&escaped),
                }
                i += 3;
                continue;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    // Only ASCII was added to what was UTF-8, and whole characters were copied.
    String::from_utf8(out).map_err(|_| "a bad percent-encoding")
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Merges slashes and removes `.` and `..` segments (RFC 3986 section 5.2.4).
fn remove_dots(path: &str) -> Result<String, Refused> {
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    // A path ending in `/`, `/.` or `/..` names a directory: it keeps its trailing slash.
    let dir = matches!(parts.last(), Some(&"" | &"." | &".."));
    for seg in parts {
        match seg {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err("the path climbs above the root");
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if dir || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, Refused> {
        normalize(p, EscapedSlashes::Reject).map(|n| n.unwrap_or_else(|| p.to_owned()))
    }

    #[test]
    fn normal_paths_are_left_alone() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/a.b/c..d",
            "/a/.well-known",
            "*",
            "/a;x=1",
        ] {
            if p.contains("/.") {
                assert_eq!(norm(p).unwrap(), p);
            } else {
                assert_eq!(normalize(p, EscapedSlashes::Reject), Ok(None), "{p}");
            }
        }
    }

    #[test]
    fn other_characters_are_kept_whole() {
        // Found by the route_match fuzz target: UTF-8 was copied byte by byte as Latin-1.
        assert_eq!(
            norm("//a/.\u{69d}\u{41c}./b/").unwrap(),
            "/a/.\u{69d}\u{41c}./b/"
        );
        assert_eq!(norm("/%C3%A9/./x").unwrap(), "/%C3%A9/x");
    }

    #[test]
    fn dot_segments_slashes_and_escapes_are_normalised() {
        for (p, want) in [
            ("/a/../b", "/b"),
            ("/a/./b", "/a/b"),
            ("//x", "/x"),
            ("/a//b///c", "/a/b/c"),
            ("/x/%2e%2e/ok", "/ok"),
            ("/x/%2E%2e/ok", "/ok"),
            ("/api/%2e%2e/slow", "/slow"),
            ("/%7euser/%41", "/~user/A"),
            ("/a/%3f%20b", "/a/%3F%20b"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/..a/b", "/..a/b"),
        ] {
            assert_eq!(norm(p).as_deref(), Ok(want), "{p}");
        }
    }

    #[test]
    fn refused_forms() {
        for p in [
            "/a/../../ok",
            "/..",
            "/%2e%2e/",
            "/a%2Fok",
            "/a%2fok",
            "/a%5Cb",
            "/a\\b",
            "/a#frag",
            "/a%zz",
            "/a%2",
            "a/b",
        ] {
            assert!(norm(p).is_err(), "{p}");
        }
    }

    #[test]
    fn escaped_slashes_as_configured() {
        assert_eq!(
            normalize("/a%2Fb/../c", EscapedSlashes::Keep),
            Ok(Some("/c".into()))
        );
        assert_eq!(
            normalize("/a%2fb", EscapedSlashes::Keep),
            Ok(Some("/a%2Fb".into()))
        );
        assert_eq!(
            normalize("/a%2Fb/../c", EscapedSlashes::Unescape),
            Ok(Some("/a/c".into()))
        );
    }
}
