//! Typed decoding of [`Node`] trees that reports every problem, not just the first.
//!
//! Each config type implements [`Decode`]; structs are declared with `decode_struct!`, which
//! writes the struct, its serde `Serialize` (for the admin API) and a decoder that rejects unknown
//! fields. Errors go to a shared [`Cx`]; decoding carries on past them so that one run reports all.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::yaml::{Node, Pos, Value};

/// One configuration problem, printed as `file:line:column: message`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigError {
    /// The file the problem is in.
    pub file: Arc<str>,
    /// Where in the file.
    pub pos: Pos,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.pos, self.message)
    }
}

/// The decoding context: which file is read and where errors go.
pub struct Cx<'e> {
    /// The file being decoded.
    pub file: Arc<str>,
    /// Every error found so far.
    pub errors: &'e mut Vec<ConfigError>,
}

impl Cx<'_> {
    /// Records an error at `pos`.
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            pos,
            message: message.into(),
        });
    }
}

/// A type that can be read from a YAML node.
pub trait Decode: Sized {
    /// Reads the node, recording problems in `cx`; `None` when the value is unusable.
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self>;

    /// The value of an absent field, or `None` when the field is required.
    fn absent() -> Option<Self> {
        None
    }
}

/// Reads the fields of one mapping and reports the ones nobody asked for.
pub struct Fields<'n, 'c, 'e> {
    entries: &'n [(Node, Node)],
    used: Vec<bool>,
    pos: Pos,
    what: &'static str,
    cx: &'c mut Cx<'e>,
}

impl<'n, 'c, 'e> Fields<'n, 'c, 'e> {
    /// Starts reading `node` as the mapping `what`.
    pub fn new(node: &'n Node, cx: &'c mut Cx<'e>, what: &'static str) -> Option<Self> {
        let Value::Map(entries) = &node.value else {
            cx.error(
                node.pos,
                format!("expected a mapping for {what}, found {}", node.kind()),
            );
            return None;
        };
        Some(Fields {
            entries,
            used: vec![false; entries.len()],
            pos: node.pos,
            what,
            cx,
        })
    }

    /// Decodes field `key`; an absent field takes [`Decode::absent`], or is an error if required.
    pub fn get<T: Decode>(&mut self, key: &str) -> Option<T> {
        let found = self
            .entries
            .iter()
            .position(|(k, _)| k.as_str() == Some(key));
        match found {
            Some(i) => {
                self.used[i] = true;
                T::decode(&self.entries[i].1, self.cx)
            }
            None => {
                let absent = T::absent();
                if absent.is_none() {
                    self.cx.error(
                        self.pos,
                        format!("{} is missing required field `{key}`", self.what),
                    );
                }
                absent
            }
        }
    }

    /// Records an error at `pos`.
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.cx.error(pos, message);
    }

    /// Reports every key that was not read as an unknown field.
    pub fn finish(self, known: &[&str]) {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if !used {
                let name = key.as_str().unwrap_or("?");
                if KONG_ENTITIES.contains(&self.what) && KONG_ANNOTATIONS.contains(&name) {
                    continue;
                }
                let hint = closest(name, known)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                self.cx.error(
                    key.pos,
                    format!("unknown field `{name}` in {}{hint}", self.what),
                );
            }
        }
    }
}

/// The Kong entities of a declarative config (by the name decoding gives them), which Kong lets
/// carry `_comment` and `_ignore` anywhere (deck writes them; Kong ignores them, and so does
/// weir).
const KONG_ENTITIES: &[&str] = &[
    "Kong declarative config",
    "Kong service",
    "Kong route",
    "Kong upstream",
    "Kong target",
    "Kong plugin",
];

/// The free-form fields of a Kong entity.
const KONG_ANNOTATIONS: &[&str] = &["_comment", "_ignore"];

/// The known name nearest to a misspelt one, if any is close.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| {
            (
                edit_distance(&name.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Declares a config struct whose fields are read from the named YAML keys.
///
/// Every struct also gets `pos`, where it starts in its file.
#[macro_export]
macro_rules! decode_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident ($what:literal) {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
        pub struct $name {
            /// Where this object starts in its file.
            #[serde(skip)]
            pub pos: $crate::config::yaml::Pos,
            $( $(#[$fmeta])* #[serde(rename = $key)] pub $field: $ty, )*
        }

        impl $crate::config::decode::Decode for $name {
            fn decode(
                node: &$crate::config::yaml::Node,
                cx: &mut $crate::config::decode::Cx<'_>,
            ) -> Option<Self> {
                let mut f = $crate::config::decode::Fields::new(node, cx, $what)?;
                $( let $field = f.get::<$ty>($key); )*
                f.finish(&[$($key),*]);
                // A field that failed was reported; its default lets validation go on.
                Some($name { pos: node.pos, $( $field: $field.unwrap_or_default(), )* })
            }
        }
    };
}

/// Declares an enum read from one of a fixed set of strings.
#[macro_export]
macro_rules! decode_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant, )*
        }

        impl $crate::config::decode::Decode for $name {
            fn decode(
                node: &$crate::config::yaml::Node,
                cx: &mut $crate::config::decode::Cx<'_>,
            ) -> Option<Self> {
                let text = <String as $crate::config::decode::Decode>::decode(node, cx)?;
                match text.as_str() {
                    $( $text => Some($name::$variant), )*
                    _ => {
                        cx.error(node.pos, format!(
                            "invalid {} `{}`: expected one of {}",
                            $what, text, [$($text),*].join(", ")));
                        None
                    }
                }
            }
        }
    };
}

// === impl Decode for scalars ===

impl Decode for String {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        match &node.value {
            Value::Scalar { text, plain: false } => Some(text.clone()),
            Value::Scalar { text, plain: true } if node.kind() == "a string" => Some(text.clone()),
            _ => {
                cx.error(
                    node.pos,
                    format!("expected a string, found {} (quote it)", node.kind()),
                );
                None
            }
        }
    }
}

impl Decode for bool {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        if node.kind() == "a boolean" {
            return node.as_str().map(|t| t.eq_ignore_ascii_case("true"));
        }
        cx.error(
            node.pos,
            format!("expected true or false, found {}", node.kind()),
        );
        None
    }
}

macro_rules! decode_int {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
                // Protobuf's JSON form also accepts integers written as strings.
                let text = node.as_str().filter(|_| node.kind() != "a boolean");
                match text.map(|t| t.trim().parse::<i128>()) {
                    Some(Ok(n)) => match <$t>::try_from(n) {
                        Ok(v) => Some(v),
                        Err(_) => {
                            cx.error(node.pos, format!(
                                "{n} is out of range ({} to {})", <$t>::MIN, <$t>::MAX));
                            None
                        }
                    },
                    _ => {
                        cx.error(node.pos, format!("expected an integer, found {}", node.kind()));
                        None
                    }
                }
            }
        }
    )*};
}
decode_int!(u16, u32, i32, u64, i64);

impl Decode for f64 {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        match node.as_str().map(|t| t.trim().parse::<f64>()) {
            Some(Ok(v)) if v.is_finite() && node.kind() != "a boolean" => Some(v),
            _ => {
                cx.error(
                    node.pos,
                    format!("expected a number, found {}", node.kind()),
                );
                None
            }
        }
    }
}

impl<T: Decode> Decode for Box<T> {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        T::decode(node, cx).map(Box::new)
    }

    fn absent() -> Option<Self> {
        T::absent().map(Box::new)
    }
}

impl<T: Decode> Decode for Option<T> {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        match node.value {
            Value::Null => Some(None),
            _ => T::decode(node, cx).map(Some),
        }
    }

    fn absent() -> Option<Self> {
        Some(None)
    }
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        match &node.value {
            Value::Null => Some(Vec::new()),
            Value::Seq(items) => {
                // Items that fail are reported and left out, so the rest is still checked.
                // Sized to the list up front: a filtered iterator would grow it by doubling,
                // and a resource type can be a kilobyte (10,000 routes: docs/benchmarks.md).
                let mut out = Vec::with_capacity(items.len());
                out.extend(items.iter().filter_map(|n| T::decode(n, cx)));
                Some(out)
            }
            _ => {
                cx.error(node.pos, format!("expected a list, found {}", node.kind()));
                None
            }
        }
    }

    fn absent() -> Option<Self> {
        Some(Vec::new())
    }
}

impl<T: Decode> Decode for BTreeMap<String, T> {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        match &node.value {
            Value::Null => Some(BTreeMap::new()),
            Value::Map(entries) => {
                let mut map = BTreeMap::new();
                for (k, v) in entries {
                    // Map keys are names: accept plain numbers as their text.
                    let key = match &k.value {
                        Value::Scalar { text, .. } => Some(text.clone()),
                        _ => {
                            cx.error(k.pos, format!("expected a string key, found {}", k.kind()));
                            None
                        }
                    };
                    if let (Some(key), Some(v)) = (key, T::decode(v, cx)) {
                        map.insert(key, v);
                    }
                }
                Some(map)
            }
            _ => {
                cx.error(
                    node.pos,
                    format!("expected a mapping, found {}", node.kind()),
                );
                None
            }
        }
    }

    fn absent() -> Option<Self> {
        Some(BTreeMap::new())
    }
}

/// Any value, kept as JSON (for fields weir passes through or does not interpret).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Opaque(pub serde_json::Value);

impl Decode for Opaque {
    fn decode(node: &Node, _cx: &mut Cx<'_>) -> Option<Self> {
        Some(Opaque(node.to_json()))
    }

    fn absent() -> Option<Self> {
        Some(Opaque(serde_json::Value::Null))
    }
}

/// A value with the position it was written at.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Spanned<T> {
    /// Where the value was written.
    #[serde(skip)]
    pub pos: Pos,
    /// The value.
    pub value: T,
}

impl<T: Decode> Decode for Spanned<T> {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        T::decode(node, cx).map(|value| Spanned {
            pos: node.pos,
            value,
        })
    }
}

// === impl Dur ===

/// A duration written as Go and protobuf-JSON do: `0.5s`, `3m`, `1h30m`, `180.000s`, `250ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", self.0.as_secs_f64()))
    }
}

impl Decode for Dur {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        let text = node.as_str().unwrap_or_default();
        match parse_duration(text) {
            Ok(d) => Some(Dur(d)),
            Err(why) => {
                cx.error(node.pos, format!("invalid duration `{text}`: {why}"));
                None
            }
        }
    }
}

/// Parses a Go-style duration: one or more `<number><unit>` parts, units ns, us, µs, ms, s, m, h.
pub fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty");
    }
    if rest.starts_with('-') {
        return Err("durations cannot be negative");
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err("expected a number such as `1.5s`");
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| "bad number")?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err("missing unit (use ms, s, m or h)"),
            _ => return Err("unknown unit (use ms, s, m or h)"),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if total > 1e9 {
        return Err("too long");
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
#[allow(unreachable_pub)]
mod tests {
    use super::*;
    use crate::config::yaml;

    decode_struct! {
        /// Test struct.
        pub struct Sample ("Sample") {
            /// Required.
            name: String = "name",
            /// Optional.
            weight: Option<u32> = "weight",
            /// List.
            tags: Vec<String> = "tags",
            /// Duration.
            timeout: Option<Dur> = "timeout",
        }
    }

    fn decode(text: &str) -> (Option<Sample>, Vec<String>) {
        let (docs, _) = yaml::parse(text);
        let mut errors = Vec::new();
        let mut cx = Cx {
            file: "f.yaml".into(),
            errors: &mut errors,
        };
        let s = Sample::decode(&docs[0], &mut cx);
        (s, errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn reports_every_error_with_position() {
        let (s, errors) = decode("weight: abc\ntags: [1]\nnmae: x\ntimeout: 5\n");
        assert_eq!(s.unwrap().weight, None);
        assert_eq!(
            errors,
            vec![
                "f.yaml:1:1: Sample is missing required field `name`",
                "f.yaml:1:9: expected an integer, found a string",
                "f.yaml:2:8: expected a string, found an integer (quote it)",
                "f.yaml:4:10: invalid duration `5`: missing unit (use ms, s, m or h)",
                "f.yaml:3:1: unknown field `nmae` in Sample (did you mean `name`?)",
            ]
        );
    }

    #[test]
    fn decodes_good_input() {
        let (s, errors) = decode("name: a\nweight: \"7\"\ntimeout: 1m30s\n");
        assert!(errors.is_empty(), "{errors:?}");
        let s = s.unwrap();
        assert_eq!(s.weight, Some(7));
        assert_eq!(s.timeout, Some(Dur(Duration::from_secs(90))));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("180.000s"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("s").is_err());
    }
}
