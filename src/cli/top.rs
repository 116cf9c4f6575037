//! `weir top`: a running weir's traffic per service and version, live in the terminal (as
//! `linkerd viz top`), from what the dashboard draws (`GET /dashboard/data`): requests per
//! second, success rate and p50 / p99 latency over the last 10 seconds, and each rollout's
//! phase and weight.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use serde_json::Value;

/// Seconds averaged over.
const WINDOW: f64 = 10.0;

/// The table, from the dashboard's data.
pub(super) fn table(data: &Value) -> String {
    let now = data["now"].as_f64().unwrap_or(0.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<12} {:>9} {:>9} {:>9} {:>9}",
        "SERVICE", "VERSION", "RPS", "SUCCESS", "P50 ms", "P99 ms"
    );
    let mut rows = 0;
    for v in data["versions"].as_array().into_iter().flatten() {
        let points: Vec<&Vec<Value>> = v["points"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .filter(|p| p[0].as_f64().is_some_and(|t| t > now - WINDOW))
            .collect();
        let rps: f64 = points.iter().filter_map(|p| p[1].as_f64()).sum::<f64>() / WINDOW;
        // Each second's rate and quantiles, weighted by its requests.
        let weighted = |i: usize| {
            let (mut sum, mut n) = (0.0, 0.0);
            for p in &points {
                if let (Some(r), Some(x)) = (p[1].as_f64(), p[i].as_f64()) {
                    sum += r * x;
                    n += r;
                }
            }
            (n > 0.0).then(|| sum / n)
        };
        let cell =
            |x: Option<f64>, d: usize| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.d$}"));
        let _ = writeln!(
            out,
            "{:<28} {:<12} {:>9.1} {:>9} {:>9} {:>9}",
            v["service"].as_str().unwrap_or(""),
            v["version"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("-"),
            rps,
            cell(weighted(2), 2),
            cell(weighted(3), 1),
            cell(weighted(4), 1),
        );
        rows += 1;
    }
    if rows == 0 {
        out.push_str("(no traffic yet)\n");
    }
    for c in data["canaries"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "rollout {}: {} at {}% ({} -> {}), failed checks {}/{}",
            c["name"].as_str().unwrap_or(""),
            c["phase"].as_str().unwrap_or(""),
            c["canaryWeight"],
            c["primary"].as_str().unwrap_or(""),
            c["canary"].as_str().unwrap_or(""),
            c["failedChecks"],
            c["threshold"],
        );
    }
    out
}

/// Refreshes the table every second until interrupted (`--once`: prints it once).
pub(super) async fn top(admin: SocketAddr, once: bool) -> ExitCode {
    let clear = std::io::stdout().is_terminal() && !once;
    loop {
        let data = match crate::admin::call(admin, "GET", "/dashboard/data").await {
            Ok((200, body)) => serde_json::from_str::<Value>(&body).ok(),
            Ok(_) | Err(_) => None,
        };
        let Some(data) = data else {
            eprintln!("weir: cannot read {admin}/dashboard/data");
            return ExitCode::FAILURE;
        };
        let t = table(&data);
        if clear {
            // Home and clear: the table redrawn in place.
            print!("\x1b[H\x1b[2J{t}");
        } else {
            print!("{t}");
        }
        if once {
            return ExitCode::SUCCESS;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn rates_over_the_last_ten_seconds() {
        let data = serde_json::json!({
            "now": 100.0,
            "versions": [{"service": "shop", "version": "v1", "points": [
                [85.0, 1000.0, 50.0, 1.0, 9.0],
                [95.0, 100.0, 100.0, 2.0, 4.0],
                [99.0, 300.0, 90.0, 4.0, 8.0],
            ]}],
            "canaries": [{"name": "shop", "phase": "Progressing", "canaryWeight": 20, "primary": "v1", "canary": "v2", "failedChecks": 0, "threshold": 5}],
        });
        let t = table(&data);
        let row = t.lines().nth(1).unwrap();
        // (100 + 300) / 10 s; success (100*100 + 300*90) / 400 = 92.5.
        assert!(row.contains("40.0") && row.contains("92.50"), "{t}");
        assert!(
            t.contains("rollout shop: Progressing at 20% (v1 -> v2), failed checks 0/5"),
            "{t}"
        );
    }
}
