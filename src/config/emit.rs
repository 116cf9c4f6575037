//! YAML out: resources written back as block YAML (for `weir import kong`).

use serde_json::Value;

use super::resource::Resource;

/// Resources as YAML documents separated by `---`.
pub fn documents<'r>(resources: impl IntoIterator<Item = &'r Resource>) -> String {
    let mut out = String::new();
    for r in resources {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        let value = serde_json::to_value(r).unwrap_or(Value::Null);
        block(&mut out, &value, 0);
    }
    out
}

/// Writes a mapping or sequence as block YAML at `indent`, one entry per line.
fn block(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter().filter(|(_, v)| !is_empty(v)) {
                out.push_str(&format!("{pad}{}:", scalar_key(k)));
                entry(out, v, indent);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key on the dash's line, the rest below it.
                        let mut first = true;
                        for (k, v) in map.iter().filter(|(_, v)| !is_empty(v)) {
                            if first {
                                out.push_str(&format!(" {}:", scalar_key(k)));
                                first = false;
                            } else {
                                out.push_str(&format!("{pad}  {}:", scalar_key(k)));
                            }
                            entry(out, v, indent + 2);
                        }
                        if first {
                            out.push_str(" {}\n");
                        }
                    }
                    other => entry(out, other, indent),
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// The value after `key:` (or `-`): inline when scalar, else on the next lines.
fn entry(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(out, v, indent + 2);
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn scalar_key(k: &str) -> String {
    scalar(&Value::String(k.to_owned()))
}

/// A scalar, quoted (as JSON, which YAML reads) unless it is a plain word.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                && !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
                )
                && s.parse::<f64>().is_err();
            if plain {
                s.clone()
            } else {
                Value::String(s.clone()).to_string()
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_set;

    #[test]
    fn written_resources_read_back_the_same() {
        let yaml = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, annotations: {"weir.io/x": "a b"}}
spec:
  hosts: ["*.example.com", web]
  http:
  - match: [{uri: {prefix: /api}, headers: {x-v: {regex: "(?i:beta)|1.5"}}}]
    route: [{destination: {host: web, port: {number: 80}}, weight: 100}]
    retries: {attempts: 3, retryOn: "connect-failure,reset"}
    timeout: 1.5s
"#;
        let set = parse_set("in.yaml", yaml).unwrap();
        let text = documents(&set.resources);
        let again = parse_set("out.yaml", &text).unwrap();
        assert_eq!(
            serde_json::to_value(&set.resources).unwrap(),
            serde_json::to_value(&again.resources).unwrap(),
            "{text}"
        );
    }
}
