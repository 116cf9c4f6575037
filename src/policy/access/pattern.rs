//! The values of Istio's authorization fields: strings with its wildcards (exact, `prefix*`,
//! `*suffix`, `*` for presence), paths with `{*}` / `{**}` templates, and IP blocks.

use std::net::IpAddr;

/// A string pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrPat {
    /// Equal.
    Exact(Box<str>),
    /// Starts with.
    Prefix(Box<str>),
    /// Ends with.
    Suffix(Box<str>),
    /// Anything present (non-empty).
    Any,
    /// A path template: segments, `{*}` one segment, `{**}` the rest (one or more).
    Template(Box<[Seg]>),
}

/// A segment of a path template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    /// This text.
    Lit(Box<str>),
    /// Any one segment.
    One,
    /// One or more segments (the last).
    Rest,
}

impl StrPat {
    /// Reads Istio's wildcard form.
    pub fn parse(text: &str) -> StrPat {
        if text == "*" {
            StrPat::Any
        } else if let Some(p) = text.strip_suffix('*') {
            StrPat::Prefix(p.into())
        } else if let Some(s) = text.strip_prefix('*') {
            StrPat::Suffix(s.into())
        } else {
            StrPat::Exact(text.into())
        }
    }

    /// Reads a path pattern: the wildcard form, or a template with `{*}` / `{**}`.
    pub fn parse_path(text: &str) -> Result<StrPat, String> {
        if !text.contains('{') {
            return Ok(StrPat::parse(text));
        }
        let segs: Vec<&str> = text.split('/').collect();
        let mut out = Vec::with_capacity(segs.len());
        for (i, s) in segs.iter().enumerate() {
            out.push(match *s {
                "{*}" => Seg::One,
                "{**}" if i + 1 == segs.len() => Seg::Rest,
                "{**}" => return Err(format!("`{text}`: `{{**}}` must be the last segment")),
                s if s.contains(['{', '}', '*']) => {
                    return Err(format!(
                        "`{text}`: a template segment is `{{*}}`, `{{**}}` or plain text"
                    ));
                }
                s => Seg::Lit(s.into()),
            });
        }
        Ok(StrPat::Template(out.into()))
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StrPat::Exact(e) => value == &**e,
            StrPat::Prefix(p) => value.starts_with(&**p),
            StrPat::Suffix(s) => value.ends_with(&**s),
            StrPat::Any => !value.is_empty(),
            StrPat::Template(segs) => template_matches(segs, value),
        }
    }

    /// Whether `value` matches, ignoring ASCII case (hosts).
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        let lower = |s: &str| s.to_ascii_lowercase();
        match self {
            StrPat::Exact(e) => value.eq_ignore_ascii_case(e),
            StrPat::Prefix(p) => lower(value).starts_with(&lower(p)),
            StrPat::Suffix(s) => lower(value).ends_with(&lower(s)),
            other => other.matches(value),
        }
    }
}

fn template_matches(segs: &[Seg], path: &str) -> bool {
    let mut parts = path.split('/');
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Rest => {
                // One or more non-empty segments remain.
                let rest: Vec<&str> = parts.collect();
                return i > 0 && !rest.is_empty() && rest.iter().all(|p| !p.is_empty());
            }
            Seg::One => match parts.next() {
                Some(p) if !p.is_empty() => {}
                _ => return false,
            },
            Seg::Lit(l) => match parts.next() {
                Some(p) if p == &**l => {}
                _ => return false,
            },
        }
    }
    parts.next().is_none()
}

/// An IP block: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpBlock {
    addr: IpAddr,
    bits: u8,
}

impl IpBlock {
    /// Reads `1.2.3.4`, `1.2.3.0/24`, `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<IpBlock, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0..={max}"))?,
        };
        Ok(IpBlock { addr, bits })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_wildcards() {
        let m = |p: &str, v: &str| StrPat::parse(p).matches(v);
        assert!(m("/api/*", "/api/x") && !m("/api/*", "/apix"));
        assert!(m("*.html", "/a/b.html") && !m("*.html", "/a.htm"));
        assert!(m("*", "x") && !m("*", ""));
        assert!(m("GET", "GET") && !m("GET", "get"));
        assert!(StrPat::parse("Bookinfo.COM").matches_ignore_case("bookinfo.com"));
        assert!(StrPat::parse("*.example.com").matches_ignore_case("A.Example.com"));
    }

    #[test]
    fn path_templates() {
        let t = |p: &str| StrPat::parse_path(p).unwrap();
        let one = t("/foo/{*}/bar");
        assert!(one.matches("/foo/x/bar"));
        assert!(!one.matches("/foo/x/y/bar") && !one.matches("/foo//bar"));
        let rest = t("/foo/{**}");
        assert!(rest.matches("/foo/a") && rest.matches("/foo/a/b"));
        assert!(!rest.matches("/foo") && !rest.matches("/foo/"));
        assert!(StrPat::parse_path("/foo/{**}/bar").is_err());
        assert!(StrPat::parse_path("/foo/x{*}").is_err());
    }

    #[test]
    fn ip_blocks() {
        let b = IpBlock::parse("10.1.0.0/16").unwrap();
        assert!(b.contains("10.1.200.3".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
        assert!(b.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            IpBlock::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        let one = IpBlock::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6 = IpBlock::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("127.0.0.1".parse().unwrap()));
        for bad in ["", "1.2.3", "1.2.3.4/33", "::/129", "x/8"] {
            assert!(IpBlock::parse(bad).is_err(), "{bad}");
        }
    }
}
