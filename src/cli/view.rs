//! Text views of the rollout JSON the admin API serves (`GET /canaries[/NAME]`), for
//! `weir canary` and `weir demo`.

use std::fmt::Write;

use serde_json::Value;

/// A 20-cell bar of a percentage.
pub(crate) fn bar(percent: u64) -> String {
    let n = (percent.min(100) as usize + 2) / 5;
    format!("[{}{}]", "#".repeat(n), ".".repeat(20 - n))
}

/// One line: phase, weight bar, failed checks, iterations and the last checks.
pub(crate) fn progress(v: &Value) -> String {
    let weight = v["canaryWeight"].as_u64().unwrap_or(0);
    let mut line = format!(
        "{:<12} {:<16} {} {:>3}% canary  failed {}/{}",
        v["name"].as_str().unwrap_or("?"),
        v["phase"].as_str().unwrap_or("?"),
        bar(weight),
        weight,
        v["failedChecks"],
        v["threshold"],
    );
    if v["maxIterations"].as_u64().unwrap_or(0) > 0 {
        let _ = write!(
            line,
            "  iteration {}/{}",
            v["iterations"], v["maxIterations"]
        );
    }
    if v["status"]["matched"] == true {
        line.push_str("  matching requests -> canary");
    }
    if v["status"]["mirror"] == true {
        line.push_str("  mirroring");
    }
    if v["status"]["paused"] == true {
        line.push_str("  PAUSED");
    }
    for c in v["status"]["lastChecks"].as_array().into_iter().flatten() {
        let value = c["value"]
            .as_f64()
            .map_or("-".to_owned(), |x| format!("{x:.2}"));
        let _ = write!(
            line,
            "  {} {value} {} ({} req)",
            c["metric"].as_str().unwrap_or("?"),
            c["result"].as_str().unwrap_or("?"),
            c["sample"]
        );
    }
    line
}

/// The events after the first `seen` ever recorded, as lines, and the new count.
pub(crate) fn new_events(v: &Value, seen: u64) -> (Vec<String>, u64) {
    let total = v["status"]["eventsTotal"].as_u64().unwrap_or(0);
    let events = v["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let fresh = (total.saturating_sub(seen) as usize).min(events.len());
    let lines = events[events.len() - fresh..].iter().map(event).collect();
    (lines, total)
}

fn event(e: &Value) -> String {
    let secs = e["time"].as_f64().unwrap_or(0.0) as u64;
    format!(
        "{:02}:{:02}:{:02} {:<7} {}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        e["type"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or("")
    )
}

/// `weir canary list`: one row per rollout.
pub(crate) fn table(list: &Value) -> String {
    let mut out = format!(
        "{:<20} {:<16} {:>6} {:>6} {:>10}  {}\n",
        "NAME", "PHASE", "WEIGHT", "FAILED", "ITERATIONS", "LAST EVENT"
    );
    for c in list["canaries"].as_array().into_iter().flatten() {
        let last = c["events"]
            .as_array()
            .and_then(|e| e.last())
            .and_then(|e| e["message"].as_str())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{:<20} {:<16} {:>5}% {:>6} {:>10}  {last}",
            c["name"].as_str().unwrap_or("?"),
            c["phase"].as_str().unwrap_or("?"),
            c["canaryWeight"],
            c["failedChecks"],
            c["iterations"],
        );
    }
    out
}

/// `weir canary status NAME`: the rollout, its last checks and its events.
pub(crate) fn details(v: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} strategy): {} -> {} of {} in VirtualService {}",
        v["name"].as_str().unwrap_or("?"),
        v["strategy"].as_str().unwrap_or("?"),
        v["primary"].as_str().unwrap_or("?"),
        v["canary"].as_str().unwrap_or("?"),
        v["service"].as_str().unwrap_or("?"),
        v["target"].as_str().unwrap_or("?"),
    );
    let _ = writeln!(out, "{}", progress(v));
    let _ = writeln!(
        out,
        "interval {} ms, steps {}, revision {}",
        v["intervalMs"],
        v["steps"],
        v["status"]["revision"].as_str().unwrap_or("")
    );
    let checks = v["status"]["lastChecks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if !checks.is_empty() {
        out.push_str("last checks:\n");
        for c in checks {
            let _ = writeln!(out, "  {}", c["message"].as_str().unwrap_or(""));
        }
    }
    out.push_str("events:\n");
    for e in v["events"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {}", event(e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn views_of_a_rollout() {
        assert_eq!(bar(0), "[....................]");
        assert_eq!(bar(50), "[##########..........]");
        assert_eq!(bar(100), "[####################]");
        let v = json!({
            "name": "api", "phase": "Progressing", "canaryWeight": 40, "failedChecks": 1,
            "threshold": 3, "iterations": 2, "maxIterations": 0,
            "status": {"eventsTotal": 5, "paused": false, "lastChecks": [
                {"metric": "request-success-rate", "value": 99.5, "result": "pass", "sample": 120,
                 "message": "request-success-rate 99.50 (range >= 99, 120 requests): pass"}]},
            "events": [{"time": 3723.0, "type": "Normal", "message": "Advance api canary weight 40"}],
        });
        let line = progress(&v);
        assert!(
            line.contains("[########............]  40% canary  failed 1/3"),
            "{line}"
        );
        assert!(
            line.contains("request-success-rate 99.50 pass (120 req)"),
            "{line}"
        );
        let (lines, seen) = new_events(&v, 4);
        assert_eq!(lines, ["01:02:03 Normal  Advance api canary weight 40"]);
        assert_eq!(seen, 5);
        assert!(new_events(&v, 5).0.is_empty());
        assert!(details(&v).contains("120 requests): pass"));
        let t = table(&json!({"canaries": [v]}));
        assert!(t.lines().nth(1).unwrap().starts_with("api "), "{t}");
    }
}
