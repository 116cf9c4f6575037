//! What changes for traffic between two configurations, in words a reviewer reads in a pull
//! request (`weir diff OLD NEW`): resources added and removed; for a VirtualService, its routes
//! added, removed and reordered, and per route the matches, the destinations and their
//! weights, timeouts, retries, faults and the rest; for every other resource, each field that
//! changed, by its path as written (`trafficPolicy.outlierDetection.consecutive5xxErrors: 5 → 3`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Resource, ResourceSet, Spec};

/// The changes, grouped by resource (`KIND NAMESPACE/NAME`), in a stable order.
pub fn changes(old: &ResourceSet, new: &ResourceSet) -> Vec<(String, Vec<String>)> {
    let index = |set: &ResourceSet| -> BTreeMap<String, Resource> {
        set.resources
            .iter()
            // Resources weir made from others (apex routes, Kong's) show as their sources'.
            .filter(|r| {
                !r.metadata
                    .annotations
                    .contains_key(super::generate::GENERATED_BY)
            })
            .map(|r| (title(r), r.clone()))
            .collect()
    };
    let (a, b) = (index(old), index(new));
    let mut out = Vec::new();
    for key in a.keys() {
        if !b.contains_key(key) {
            out.push((key.clone(), vec!["removed".to_owned()]));
        }
    }
    for (key, r) in &b {
        let lines = match a.get(key) {
            None => vec![format!("added{}", summary(r))],
            Some(before) => resource_changes(before, r),
        };
        if !lines.is_empty() {
            out.push((key.clone(), lines));
        }
    }
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

fn title(r: &Resource) -> String {
    format!(
        "{} {}/{}",
        r.kind,
        r.metadata.namespace.as_deref().unwrap_or("default"),
        r.name()
    )
}

/// A new resource in a few words.
fn summary(r: &Resource) -> String {
    match &r.spec {
        Spec::VirtualService(vs) => {
            let routes: Vec<String> = vs
                .http
                .iter()
                .enumerate()
                .map(|(i, _)| describe_route(&route_json(vs, i)))
                .collect();
            if routes.is_empty() {
                String::new()
            } else {
                format!(": {}", routes.join("; "))
            }
        }
        _ => String::new(),
    }
}

/// Serialized without nulls, as written.
fn json<T: serde::Serialize>(v: &T) -> Value {
    prune(serde_json::to_value(v).unwrap_or(Value::Null))
}

fn prune(v: Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| {
                    !matches!(v, Value::Object(o) if o.is_empty())
                        && !matches!(v, Value::Array(a) if a.is_empty())
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        other => other,
    }
}

fn route_json(vs: &super::istio::VirtualService, i: usize) -> Value {
    json(&vs.http[i])
}

/// A route's name: its own, else its place.
fn route_name(route: &Value, i: usize) -> String {
    route
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| format!("#{}", i + 1), |n| format!("\"{n}\""))
}

/// `host subset`.
fn destination(d: &Value) -> String {
    let dest = &d["destination"];
    let mut s = dest["host"].as_str().unwrap_or("?").to_owned();
    if let Some(subset) = dest.get("subset").and_then(Value::as_str) {
        s.push(' ');
        s.push_str(subset);
    }
    s
}

/// A route in a line: `match uri prefix /api → reviews v1 90%, reviews v2 10%`.
fn describe_route(route: &Value) -> String {
    let matched = route
        .get("match")
        .map(|m| format!("match {} ", words(m)))
        .unwrap_or_default();
    let to = match route.get("route").and_then(Value::as_array) {
        Some(dests) => dests
            .iter()
            .map(|d| match d.get("weight") {
                Some(w) => format!("{} {w}%", destination(d)),
                None => destination(d),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None if route.get("directResponse").is_some() => "a direct response".to_owned(),
        None if route.get("redirect").is_some() => "a redirect".to_owned(),
        None => "nowhere".to_owned(),
    };
    format!("{matched}→ {to}")
}

/// JSON in words: `uri prefix /api, headers end-user exact jason`.
pub(crate) fn words(v: &Value) -> String {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k} {}", words(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Array(a) => a.iter().map(words).collect::<Vec<_>>().join(" or "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A value in one line.
fn compact(v: Option<&Value>) -> String {
    match v {
        None => "(none)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// What changed in one resource.
fn resource_changes(old: &Resource, new: &Resource) -> Vec<String> {
    if old.spec == new.spec && old.metadata.annotations == new.metadata.annotations {
        return Vec::new();
    }
    let mut out = Vec::new();
    match (&old.spec, &new.spec) {
        (Spec::VirtualService(a), Spec::VirtualService(b)) => {
            let (ja, jb) = (json(a), json(b));
            for key in keys(&ja, &jb) {
                if key != "http" {
                    fields(&key, ja.get(&key), jb.get(&key), &mut out);
                }
            }
            routes(a, b, &mut out);
        }
        _ => {
            let (ja, jb) = (json(&old.spec), json(&new.spec));
            fields("", Some(&ja), Some(&jb), &mut out);
        }
    }
    if old.metadata.annotations != new.metadata.annotations {
        fields(
            "metadata.annotations",
            Some(&json(&old.metadata.annotations)),
            Some(&json(&new.metadata.annotations)),
            &mut out,
        );
    }
    out
}

fn keys(a: &Value, b: &Value) -> Vec<String> {
    let mut k: Vec<String> = a
        .as_object()
        .into_iter()
        .chain(b.as_object())
        .flat_map(|o| o.keys().cloned())
        .collect();
    k.sort();
    k.dedup();
    k
}

/// Each field that differs between `a` and `b`, by its path.
fn fields(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Some(Value::Object(_)), Some(Value::Object(_))) => {
            for k in keys(a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null)) {
                fields(
                    &join(&k),
                    a.and_then(|v| v.get(&k)),
                    b.and_then(|v| v.get(&k)),
                    out,
                );
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y)))
            if x.len() == y.len() && x.iter().all(Value::is_object) =>
        {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                fields(&format!("{path}[{i}]"), Some(p), Some(q), out);
            }
        }
        _ => out.push(format!(
            "{}: {} → {}",
            if path.is_empty() { "spec" } else { path },
            compact(a),
            compact(b)
        )),
    }
}

/// A VirtualService's routes: added, removed, reordered, and what changed in each.
fn routes(
    a: &super::istio::VirtualService,
    b: &super::istio::VirtualService,
    out: &mut Vec<String>,
) {
    let named = |vs: &super::istio::VirtualService| -> Vec<(String, Value)> {
        (0..vs.http.len())
            .map(|i| {
                let j = route_json(vs, i);
                (route_name(&j, i), j)
            })
            .collect()
    };
    let (ra, rb) = (named(a), named(b));
    for (name, r) in &ra {
        if !rb.iter().any(|(n, _)| n == name) {
            out.push(format!("route {name} removed ({})", describe_route(r)));
        }
    }
    for (i, (name, r)) in rb.iter().enumerate() {
        match ra.iter().find(|(n, _)| n == name) {
            None => {
                let place = match i.checked_sub(1).and_then(|p| rb.get(p)) {
                    Some((prev, _)) => format!("after route {prev}"),
                    None => "first".to_owned(),
                };
                out.push(format!(
                    "route {name} added, {place}: {}",
                    describe_route(r)
                ));
            }
            Some((_, before)) => route_changes(name, before, r, out),
        }
    }
    let common = |x: &[(String, Value)], y: &[(String, Value)]| -> Vec<String> {
        x.iter()
            .filter(|(n, _)| y.iter().any(|(m, _)| m == n))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let (order_a, order_b) = (common(&ra, &rb), common(&rb, &ra));
    if order_a != order_b {
        out.push(format!(
            "routes reordered (the first that matches wins): {} → {}",
            order_a.join(", "),
            order_b.join(", ")
        ));
    }
}

/// What changed in one route: destinations and weights in words, every other field by path.
fn route_changes(name: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let weights = |r: &Value| -> Vec<(String, Option<Value>)> {
        r.get("route")
            .and_then(Value::as_array)
            .map(|ds| {
                ds.iter()
                    .map(|d| (destination(d), d.get("weight").cloned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (wa, wb) = (weights(a), weights(b));
    for (d, w) in &wa {
        match wb.iter().find(|(e, _)| e == d) {
            None => out.push(format!("route {name}: destination {d} removed")),
            Some((_, v)) if v != w => out.push(format!(
                "route {name}: weight of {d}: {} → {}",
                w.as_ref().map_or("(none)".to_owned(), |w| format!("{w}%")),
                v.as_ref().map_or("(none)".to_owned(), |w| format!("{w}%"))
            )),
            Some(_) => {}
        }
    }
    for (d, w) in &wb {
        if !wa.iter().any(|(e, _)| e == d) {
            let w = w.as_ref().map_or(String::new(), |w| format!(" at {w}%"));
            out.push(format!("route {name}: destination {d} added{w}"));
        }
    }
    let mut rest = Vec::new();
    for k in keys(a, b) {
        if k == "route" {
            // Weights are above; other changes of a destination (headers, port) by path.
            let strip = |r: &Value| -> Value {
                let mut r = r.get("route").cloned().unwrap_or(Value::Null);
                if let Value::Array(ds) = &mut r {
                    for d in ds.iter_mut() {
                        if let Value::Object(o) = d {
                            o.remove("weight");
                        }
                    }
                    ds_sort(ds);
                }
                r
            };
            let (sa, sb) = (strip(a), strip(b));
            if sa.as_array().map(Vec::len) == sb.as_array().map(Vec::len) {
                fields("route", Some(&sa), Some(&sb), &mut rest);
            }
            continue;
        }
        fields(&k, a.get(&k), b.get(&k), &mut rest);
    }
    out.extend(rest.into_iter().map(|l| format!("route {name}: {l}")));
}

fn ds_sort(ds: &mut [Value]) {
    ds.sort_by_key(|d| d.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> ResourceSet {
        super::super::parse_set("t.yaml", text).unwrap()
    }

    const BASE: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: rest
    timeout: 2s
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v3}, weight: 10}
";

    #[test]
    fn nothing_changes() {
        assert!(changes(&set(BASE), &set(BASE)).is_empty());
    }

    #[test]
    fn routes_and_weights_in_words() {
        let new = BASE
            .replace("weight: 90", "weight: 50")
            .replace("weight: 10", "weight: 50")
            .replace("timeout: 2s", "timeout: 3s\n    retries: {attempts: 3}");
        let c = changes(&set(BASE), &set(&new));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].0, "VirtualService default/reviews");
        assert_eq!(
            c[0].1,
            [
                "route \"rest\": weight of reviews v1: 90% → 50%",
                "route \"rest\": weight of reviews v3: 10% → 50%",
                "route \"rest\": retries: (none) → {\"attempts\":3}",
                "route \"rest\": timeout: 2s → 3s",
            ]
        );
    }

    #[test]
    fn reordered_added_removed() {
        let swapped = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: rest
    timeout: 2s
    route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v3}, weight: 10}
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
";
        let c = changes(&set(BASE), &set(swapped));
        assert_eq!(
            c[0].1,
            [
                "routes reordered (the first that matches wins): \"jason\", \"rest\" → \"rest\", \"jason\""
            ]
        );
        let fewer = BASE.replace("  - name: jason\n    match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n", "");
        let c = changes(&set(BASE), &set(&fewer));
        assert_eq!(
            c[0].1,
            ["route \"jason\" removed (match headers end-user exact jason → reviews v2)"]
        );
        let c = changes(&set(&fewer), &set(BASE));
        assert_eq!(
            c[0].1,
            ["route \"jason\" added, first: match headers end-user exact jason → reviews v2"]
        );
    }
}
