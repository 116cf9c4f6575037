//! `MetricTemplate` with `provider.type: prometheus`: Flagger's template variables filled in,
//! then an instant query over Prometheus' HTTP API (`GET /api/v1/query`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// How long a query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Fills in Flagger's template variables: `{{ name }}`, `{{ namespace }}`, `{{ target }}`,
/// `{{ service }}`, `{{ ingress }}`, `{{ route }}`, `{{ interval }}` and
/// `{{ variables.KEY }}`. An unknown variable is left as written (Prometheus will say so).
pub(crate) fn render(template: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = after[..close].trim().trim_start_matches('.');
        match vars.get(key) {
            Some(v) => out.push_str(v),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// A duration as Prometheus writes a range: `90s`, `1500ms`.
pub(crate) fn range(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs().max(1))
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Runs an instant query; `Ok(None)` when it returns no sample (or NaN).
pub(crate) async fn query(
    address: &str,
    query: &str,
    via: Option<SocketAddr>,
) -> Result<Option<f64>, String> {
    let url = format!(
        "{}/api/v1/query?query={}",
        address.trim_end_matches('/'),
        encode(query)
    );
    let reply =
        crate::control::call::call_via(http::Method::GET, &url, None, QUERY_TIMEOUT, via, None)
            .await
            .map_err(|e| format!("prometheus at {address}: {e}"))?;
    if reply.status != 200 {
        let why = error_of(&reply.body).map(|e| format!(": {e}"));
        return Err(format!(
            "prometheus at {address} answered {}{}",
            reply.status,
            why.unwrap_or_default()
        ));
    }
    parse(&reply.body)
}

fn error_of(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    Some(v["error"].as_str()?.to_owned())
}

/// The first value of a query answer: a vector's first sample, or a scalar.
fn parse(body: &str) -> Result<Option<f64>, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("not a Prometheus answer: {e}"))?;
    if v["status"] != "success" {
        return Err(format!(
            "query failed: {}",
            v["error"].as_str().unwrap_or("unknown error")
        ));
    }
    let data = &v["data"];
    let sample = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .and_then(|r| r.first())
            .map(|s| &s["value"][1]),
        Some("scalar") => Some(&data["result"][1]),
        other => return Err(format!("unexpected result type {other:?}")),
    };
    let Some(sample) = sample else {
        return Ok(None);
    };
    let value: f64 = sample
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("unexpected sample {sample}"))?;
    Ok((!value.is_nan()).then_some(value))
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_in() {
        let vars: BTreeMap<String, String> = [
            ("namespace", "test"),
            ("target", "podinfo"),
            ("interval", "60s"),
            ("variables.host", "app.example.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let q = render(
            "rate(x{ns=\"{{ namespace }}\",t=\"{{target}}\",h=\"{{ variables.host }}\",u=\"{{ nope }}\"}[{{ interval }}])",
            &vars,
        );
        assert_eq!(
            q,
            "rate(x{ns=\"test\",t=\"podinfo\",h=\"app.example.com\",u=\"{{ nope }}\"}[60s])"
        );
        assert_eq!(render("a {{ b", &vars), "a {{ b");
        assert_eq!(range(Duration::from_secs(60)), "60s");
        assert_eq!(range(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn answers_are_read() {
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.7e9,"99.5"]}]}}"#;
        assert_eq!(parse(vector), Ok(Some(99.5)));
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse(empty), Ok(None));
        let nan = r#"{"status":"success","data":{"resultType":"scalar","result":[1.7e9,"NaN"]}}"#;
        assert_eq!(parse(nan), Ok(None));
        let error = r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(parse(error), Err("query failed: parse error".to_owned()));
        assert!(parse("<html>").is_err());
        assert_eq!(encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    }
}
