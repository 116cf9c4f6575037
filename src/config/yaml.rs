//! YAML text to a tree of nodes that remember where they came from.
//!
//! serde loses source positions inside tagged, multi-document input, and we must report every
//! error with `file:line:column`, so the loader builds its own small tree from the parser's
//! events and the typed decoding in [`super::decode`] walks it.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Most nodes one file may expand to (aliases included): a bound against alias bombs.
const MAX_NODES: usize = 1_000_000;

/// A 1-based line and column in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// Line, counted from 1.
    pub line: u32,
    /// Column, counted from 1.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line() as u32,
            col: span.start.col() as u32 + 1,
        }
    }
}

/// One node of a YAML document.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it holds.
    pub value: Value,
}

/// The content of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// A scalar; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        /// The scalar's text.
        text: String,
        /// Whether it was written without quotes (and so may be a number or a boolean).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Looks a key up in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the node's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar { text, plain: true } => plain_kind(text),
            Value::Scalar { .. } => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Converts the node to JSON with YAML 1.2 core-schema typing of plain scalars.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Scalar { text, plain: false } => J::String(text.clone()),
            Value::Scalar { text, plain: true } => match plain_kind(text) {
                "a boolean" => J::Bool(text.eq_ignore_ascii_case("true")),
                "an integer" => text
                    .parse::<i64>()
                    .map(J::from)
                    .unwrap_or(J::String(text.clone())),
                "a number" => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(J::Number)
                    .unwrap_or(J::String(text.clone())),
                _ => J::String(text.clone()),
            },
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// How YAML 1.2's core schema types a plain scalar.
fn plain_kind(text: &str) -> &'static str {
    match text {
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => "a boolean",
        _ if text.parse::<i64>().is_ok() => "an integer",
        _ if text.parse::<f64>().is_ok() && !text.chars().any(|c| c.is_ascii_alphabetic()) => {
            "a number"
        }
        _ => "a string",
    }
}

/// A problem found while reading YAML, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct YamlError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// Parses every document of `text`. Empty documents (a trailing `---`) are dropped.
///
/// Syntax errors stop the parse; duplicate keys are reported and parsing goes on.
pub fn parse(text: &str) -> (Vec<Node>, Vec<YamlError>) {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        match event {
            Ok((event, span)) => {
                if let Err(e) = builder.push(event, span) {
                    builder.errors.push(e);
                    break;
                }
            }
            Err(e) => {
                builder.errors.push(YamlError {
                    pos: Pos {
                        line: e.marker().line() as u32,
                        col: e.marker().col() as u32 + 1,
                    },
                    message: format!("YAML syntax error: {}", e.info()),
                });
                break;
            }
        }
    }
    (builder.docs, builder.errors)
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    errors: Vec<YamlError>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl Builder {
    fn push(&mut self, event: Event<'_>, span: Span) -> Result<(), YamlError> {
        let pos = Pos::of(&span);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let value = if plain && matches!(&*text, "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: text.into_owned(),
                        plain,
                    }
                };
                self.finish(Node { pos, value }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let node = Node {
                    pos,
                    value: Value::Seq(Vec::new()),
                };
                self.stack.push(Frame::Seq(node, anchor));
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                let node = Node {
                    pos,
                    value: Value::Map(Vec::new()),
                };
                self.stack.push(Frame::Map(node, anchor, None));
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq(node, anchor)) => self.finish(node, anchor),
                _ => Err(self.internal(pos)),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map(mut node, anchor, _)) => {
                    self.merge_keys(&mut node);
                    self.finish(node, anchor)
                }
                _ => Err(self.internal(pos)),
            },
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id).cloned() else {
                    return Err(YamlError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    });
                };
                self.nodes += count(&node);
                self.finish(node, 0)
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => Ok(()),
        }
    }

    fn internal(&self, pos: Pos) -> YamlError {
        YamlError {
            pos,
            message: "YAML structure error".into(),
        }
    }

    /// Places a completed node into its parent (or as a document).
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                pos: node.pos,
                message: format!("document expands to more than {MAX_NODES} nodes"),
            });
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if node.value != Value::Null {
                    self.docs.push(node);
                }
            }
            Some(Frame::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, _, pending)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if let Value::Map(entries) = &mut map.value {
                        if key.value != Value::Null
                            && entries.iter().any(|(k, _)| k.value == key.value)
                        {
                            self.errors.push(YamlError {
                                pos: key.pos,
                                message: format!("duplicate key `{}`", key.as_str().unwrap_or("?")),
                            });
                        } else {
                            entries.push((key, node));
                        }
                    }
                }
            },
        }
        Ok(())
    }

    /// Applies `<<` merge keys: merged entries never override keys written in the mapping.
    fn merge_keys(&mut self, node: &mut Node) {
        let Value::Map(entries) = &mut node.value else {
            return;
        };
        if !entries.iter().any(|(k, _)| is_merge_key(k)) {
            return;
        }
        let mut own = Vec::new();
        let mut merged = Vec::new();
        for (k, v) in entries.drain(..) {
            if is_merge_key(&k) {
                let sources = match v.value {
                    Value::Seq(items) => items,
                    _ => vec![v],
                };
                for source in sources {
                    match source.value {
                        Value::Map(src) => merged.extend(src),
                        _ => self.errors.push(YamlError {
                            pos: source.pos,
                            message: "`<<` must merge a mapping or a list of mappings".into(),
                        }),
                    }
                }
            } else {
                own.push((k, v));
            }
        }
        for (k, v) in merged {
            if !own.iter().any(|(o, _)| o.value == k.value) {
                own.push((k, v));
            }
        }
        *entries = own;
    }
}

fn is_merge_key(k: &Node) -> bool {
    matches!(&k.value, Value::Scalar { text, plain: true } if text == "<<")
}

fn count(node: &Node) -> usize {
    match &node.value {
        Value::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count(k) + count(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_documents() {
        let (docs, errors) = parse("a: 1\n---\nb:\n  c: \"x\"\n---\n");
        assert!(errors.is_empty());
        assert_eq!(docs.len(), 2);
        let c = docs[1].get("b").unwrap().get("c").unwrap();
        assert_eq!(c.pos, Pos { line: 4, col: 6 });
        assert_eq!(c.kind(), "a string");
        assert_eq!(docs[0].get("a").unwrap().kind(), "an integer");
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let (_, errors) = parse("a: 1\na: 2\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pos, Pos { line: 2, col: 1 });
    }

    #[test]
    fn merge_keys_do_not_override() {
        let (docs, errors) = parse("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
        assert!(errors.is_empty(), "{errors:?}");
        let m = docs[0].get("m").unwrap();
        assert_eq!(m.get("x").unwrap().as_str(), Some("1"));
        assert_eq!(m.get("y").unwrap().as_str(), Some("3"));
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (_, errors) = parse(&text);
        assert!(errors.iter().any(|e| e.message.contains("more than")));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let (_, errors) = parse("a: [1, 2\nb: 3\n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with("YAML syntax error"));
    }
}
