//! `weir experiment`: a running weir's A/B experiments, listed, shown, watched and ended
//! through its admin API.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::canary::Admin;

#[derive(Subcommand)]
pub(super) enum ExperimentAction {
    /// Every experiment, one line each.
    List,
    /// An experiment's variants, rates with intervals, sample-ratio check, decision, events.
    Status {
        /// The Experiment's name.
        name: String,
    },
    /// Live figures until the experiment ends (exit 0 when concluded, 1 when stopped).
    Watch {
        /// The Experiment's name.
        name: String,
    },
    /// End it now: every participant to the control.
    Stop {
        /// The Experiment's name.
        name: String,
    },
    /// End it now with the leading variant as the winner (then `onConclusion`).
    Conclude {
        /// The Experiment's name.
        name: String,
    },
}

pub(super) async fn experiment(action: ExperimentAction, admin: Admin) -> ExitCode {
    let result = match action {
        ExperimentAction::List => get(&admin, "/experiments").await.map(|v| {
            let all = v["experiments"].as_array().cloned().unwrap_or_default();
            println!("{:<24} {:<10} {:>8}  DECISION", "NAME", "PHASE", "USERS");
            for x in &all {
                println!(
                    "{:<24} {:<10} {:>8}  {}",
                    x["name"].as_str().unwrap_or_default(),
                    x["phase"].as_str().unwrap_or_default(),
                    users(x),
                    x["decision"]["reason"].as_str().unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }),
        ExperimentAction::Status { name } => {
            get(&admin, &format!("/experiments/{name}")).await.map(|v| {
                print!("{}", status(&v));
                ExitCode::SUCCESS
            })
        }
        ExperimentAction::Watch { name } => {
            let path = format!("/experiments/{name}");
            let mut seen = 0;
            let mut last = String::new();
            loop {
                let v = match get(&admin, &path).await {
                    Ok(v) => v,
                    Err(e) => break Err(e),
                };
                let events = v["events"].as_array().cloned().unwrap_or_default();
                for e in events.iter().skip(seen) {
                    println!("  {}", e["message"].as_str().unwrap_or_default());
                }
                seen = seen.max(events.len());
                let line = figures(&v);
                if line != last {
                    println!("{line}");
                    last = line;
                }
                match v["phase"].as_str() {
                    Some("Concluded") => break Ok(ExitCode::SUCCESS),
                    Some("Stopped") => break Ok(ExitCode::FAILURE),
                    _ => {}
                }
                tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
            }
        }
        ExperimentAction::Stop { name } => command(&admin, &name, "stop").await,
        ExperimentAction::Conclude { name } => command(&admin, &name, "conclude").await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("weir: {e}");
        ExitCode::FAILURE
    })
}

async fn get(admin: &Admin, path: &str) -> Result<Value, String> {
    let addr = admin.addr;
    match crate::admin::call_with_token(addr, "GET", path, admin.token.as_deref()).await {
        Ok((200, body)) => serde_json::from_str::<Value>(&body)
            .map_err(|e| format!("unexpected answer from the admin API: {e}")),
        Ok((404, _)) => Err("no such experiment".to_owned()),
        Ok((status, body)) => Err(format!("admin answered {status}: {body}")),
        Err(e) => Err(format!("cannot reach the admin API at {addr}: {e}")),
    }
}

async fn command(admin: &Admin, name: &str, action: &str) -> Result<ExitCode, String> {
    let path = format!("/experiments/{name}/{action}");
    let addr = admin.addr;
    match crate::admin::call_with_token(addr, "POST", &path, admin.token.as_deref()).await {
        Ok((200, body)) => {
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            println!(
                "{name}: {} — {}",
                v["phase"].as_str().unwrap_or("?"),
                v["decision"]["reason"].as_str().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok((404, _)) => Err(format!("no such experiment: {name}")),
        Ok((status, body)) => Err(format!("admin answered {status}: {body}")),
        Err(e) => Err(format!("cannot reach the admin API at {addr}: {e}")),
    }
}

fn users(x: &Value) -> u64 {
    x["variants"]
        .as_array()
        .map_or(0, |vs| vs.iter().filter_map(|v| v["users"].as_u64()).sum())
}

/// One line: each variant's participants and primary-goal rate.
fn figures(x: &Value) -> String {
    let goal = x["primaryGoal"].as_str().unwrap_or_default();
    let parts: Vec<String> = x["variants"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|v| {
                    let g = &v["goals"][goal];
                    format!(
                        "{} {} users {:.1}%",
                        v["name"].as_str().unwrap_or_default(),
                        v["users"],
                        g["rate"].as_f64().unwrap_or(0.0) * 100.0
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{}: {} | {}",
        x["phase"].as_str().unwrap_or_default(),
        parts.join(", "),
        x["decision"]["reason"].as_str().unwrap_or_default()
    )
}

/// `weir experiment status`: a table of variants and goals, the checks, the decision.
fn status(x: &Value) -> String {
    let mut out = format!(
        "{} on VirtualService {}: {} (primary goal {}, {}% confidence)\n",
        x["name"].as_str().unwrap_or_default(),
        x["target"].as_str().unwrap_or_default(),
        x["phase"].as_str().unwrap_or_default(),
        x["primaryGoal"].as_str().unwrap_or_default(),
        x["confidence"]
    );
    for v in x["variants"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<16} subset {:<8} weight {:<5} {} users\n",
            v["name"].as_str().unwrap_or_default(),
            v["subset"].as_str().unwrap_or_default(),
            v["weight"],
            v["users"]
        ));
        for (goal, g) in v["goals"].as_object().into_iter().flatten() {
            if g.is_null() {
                continue;
            }
            let pct = |x: &Value| x.as_f64().unwrap_or(0.0) * 100.0;
            let mut line = format!(
                "    {goal:<14} {:>6} {:>6.2}% [{:.2}%..{:.2}%]",
                g["conversions"],
                pct(&g["rate"]),
                pct(&g["interval"][0]),
                pct(&g["interval"][1])
            );
            if let Some(mean) = g["value"]["mean"].as_f64() {
                line.push_str(&format!("  {mean:.2} per user"));
            }
            if let Some(l) = g["lift"].as_object() {
                line.push_str(&format!(
                    "  lift {:+.1}% [{:+.1}%..{:+.1}%]",
                    l["percent"].as_f64().unwrap_or(0.0),
                    l["interval"][0].as_f64().unwrap_or(0.0),
                    l["interval"][1].as_f64().unwrap_or(0.0)
                ));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    if x["srm"]["mismatch"] == true {
        out.push_str(&format!(
            "  SAMPLE RATIO MISMATCH (p = {}): the assignment is broken\n",
            x["srm"]["pValue"]
        ));
    }
    out.push_str(&format!(
        "Decision: {}\n",
        x["decision"]["reason"].as_str().unwrap_or_default()
    ));
    for e in x["events"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  [{}] {}\n",
            e["type"].as_str().unwrap_or_default(),
            e["message"].as_str().unwrap_or_default()
        ));
    }
    out
}
