//! Config files split into the documents the store keeps: one resource per key, its text as
//! written (comments kept), so `weir get` prints what the operator wrote.
//!
//! A YAML document marker (`---` at the start of a line) ends the document before it wherever
//! it stands, even in a block scalar (YAML 1.2, "c-forbidden"), so files split on those lines
//! exactly as a YAML parser splits them.

use std::sync::Arc;

use crate::config::yaml::Pos;
use crate::config::{ConfigError, parse_str};

/// One resource document of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Document {
    /// `kind`.
    pub(crate) kind: String,
    /// `metadata.namespace` (`default` when unset).
    pub(crate) namespace: String,
    /// `metadata.name`.
    pub(crate) name: String,
    /// The document's text, as written.
    pub(crate) text: String,
    /// The file and line it starts at.
    pub(crate) file: Arc<str>,
    /// The line the document starts at.
    pub(crate) line: u32,
}

/// Whether a line is a document marker (`---`, alone or followed by a space).
fn is_marker(line: &str) -> bool {
    let line = line.trim_end_matches(['\r', '\n']);
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t")
}

/// Whether a line ends a document (`...`).
fn is_end(line: &str) -> bool {
    let line = line.trim_end_matches(['\r', '\n']);
    line == "..." || line.starts_with("... ") || line.starts_with("...\t")
}

/// A file's documents: each one's first line (from 1) and text; a document's marker line
/// stays with it.
pub(crate) fn split(text: &str) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    let mut current: Option<(u32, String)> = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i as u32 + 1;
        if is_marker(line) {
            if let Some(doc) = current.take() {
                out.push(doc);
            }
            current = Some((n, line.to_owned()));
        } else if is_end(line) {
            if let Some(doc) = current.take() {
                out.push(doc);
            }
        } else {
            current
                .get_or_insert_with(|| (n, String::new()))
                .1
                .push_str(line);
        }
    }
    out.extend(current);
    out.retain(|(_, t)| {
        t.lines().any(|l| {
            let l = l.trim();
            !(l.is_empty() || l.starts_with('#') || is_marker(l))
        })
    });
    out
}

/// The resource documents of a file that decodes (the caller reports its errors from the whole
/// file): a document must hold exactly one resource, with a name a key can carry.
pub(crate) fn documents(file: &Arc<str>, text: &str) -> Result<Vec<Document>, Vec<ConfigError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (line, doc) in split(text) {
        let at = |message: String| ConfigError {
            file: file.clone(),
            pos: Pos { line, col: 1 },
            message,
        };
        let mut ignored = Vec::new();
        let resources = parse_str(file, &doc, &mut ignored);
        let [r] = resources.as_slice() else {
            if resources.len() > 1 {
                errors.push(at(format!(
                    "this document holds {} resources (a List?): the store keeps one resource per \
                     document, so write them as separate documents",
                    resources.len()
                )));
            }
            continue;
        };
        let namespace = r
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = r.name().to_owned();
        let clean =
            |s: &str| !s.is_empty() && !s.contains(['/', ' ']) && !s.chars().any(char::is_control);
        if !clean(&name) || !clean(&namespace) {
            errors.push(at(format!(
                "`{namespace}/{name}` cannot name a key in the store: names and namespaces are \
                 non-empty and have no `/` or spaces"
            )));
            continue;
        }
        out.push(Document {
            kind: r.kind.to_owned(),
            namespace,
            name,
            text: doc,
            file: file.clone(),
            line,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_markers_only() {
        let text = "# leading comment\napiVersion: v1\n---\n# about b\nb: |\n  text\n--- # c\nc: 1\n...\n---\n";
        let docs = split(text);
        assert_eq!(
            docs,
            vec![
                (1, "# leading comment\napiVersion: v1\n".to_owned()),
                (3, "---\n# about b\nb: |\n  text\n".to_owned()),
                (7, "--- # c\nc: 1\n".to_owned()),
            ]
        );
        assert!(split("# nothing\n---\n").is_empty());
    }

    #[test]
    fn one_resource_per_document() {
        let file: Arc<str> = "vs.yaml".into();
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: shop}\nspec: {hosts: [a]}\n---\n# b\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b}\nspec: {hosts: [b]}\n";
        let docs = documents(&file, text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (
                docs[0].kind.as_str(),
                docs[0].namespace.as_str(),
                docs[0].name.as_str()
            ),
            ("VirtualService", "shop", "a")
        );
        assert_eq!(
            (
                docs[1].namespace.as_str(),
                docs[1].name.as_str(),
                docs[1].line
            ),
            ("default", "b", 5)
        );
        assert!(docs[1].text.contains("# b"));
        let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: a}, spec: {hosts: [a]}}\n- {apiVersion: networking.istio.io/v1, kind: VirtualService, metadata: {name: b}, spec: {hosts: [b]}}\n";
        let errors = documents(&file, list).unwrap_err();
        assert!(
            errors[0]
                .to_string()
                .starts_with("vs.yaml:1:1: this document holds 2"),
            "{}",
            errors[0]
        );
    }
}
