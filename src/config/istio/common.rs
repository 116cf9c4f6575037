//! Values several resources share: string matches, percentages, destinations and bodies.

use crate::config::decode::{Cx, Decode, Spanned};
use crate::config::yaml::{Node, Value};
use crate::decode_struct;

/// Istio's `StringMatch`: one of `exact`, `prefix`, `regex`; `{}` means "present".
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// The whole value equals this.
    Exact(String),
    /// The value starts with this.
    Prefix(String),
    /// The whole value matches this RE2 regex.
    Regex(Spanned<String>),
    /// The value is present, whatever it is.
    #[default]
    #[serde(rename = "present")]
    Present,
}

impl Decode for StringMatch {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        let Value::Map(entries) = &node.value else {
            cx.error(
                node.pos,
                format!(
                    "expected a StringMatch (`exact`, `prefix` or `regex`), found {}",
                    node.kind()
                ),
            );
            return None;
        };
        if entries.len() > 1 {
            cx.error(
                node.pos,
                "a StringMatch takes exactly one of `exact`, `prefix`, `regex`",
            );
            return None;
        }
        let Some((key, value)) = entries.first() else {
            return Some(StringMatch::Present);
        };
        let text = Spanned::<String>::decode(value, cx)?;
        match key.as_str() {
            Some("exact") => Some(StringMatch::Exact(text.value)),
            Some("prefix") => Some(StringMatch::Prefix(text.value)),
            Some("regex") => Some(StringMatch::Regex(text)),
            other => {
                cx.error(
                    key.pos,
                    format!(
                        "unknown field `{}` in StringMatch: expected `exact`, `prefix` or `regex`",
                        other.unwrap_or("?")
                    ),
                );
                None
            }
        }
    }
}

decode_struct! {
    /// A service host, optionally narrowed to a subset and a port.
    pub struct Destination ("Destination") {
        /// Service host (a ServiceEntry host).
        host: Spanned<String> = "host",
        /// Subset name (from the host's DestinationRule).
        subset: Option<Spanned<String>> = "subset",
        /// Service port.
        port: Option<PortSelector> = "port",
    }
}

decode_struct! {
    /// A port number.
    pub struct PortSelector ("PortSelector") {
        /// The number.
        number: u32 = "number",
    }
}

decode_struct! {
    /// `HTTPBody`: one of `string` or `bytes` (base64).
    pub struct HttpBody ("HTTPBody") {
        /// Text body.
        string: Option<String> = "string",
        /// Base64 body.
        bytes: Option<String> = "bytes",
    }
}

decode_struct! {
    /// `Percent`: a share from 0 to 100.
    pub struct Percent ("Percent") {
        /// The share.
        value: f64 = "value",
    }
}

/// A percentage written either as a number or as a `Percent` (`{value: n}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct PercentValue(pub f64);

impl Decode for PercentValue {
    fn decode(node: &Node, cx: &mut Cx<'_>) -> Option<Self> {
        match node.value {
            Value::Map(_) => Percent::decode(node, cx).map(|p| PercentValue(p.value)),
            _ => f64::decode(node, cx).map(PercentValue),
        }
    }
}
