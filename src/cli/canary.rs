//! `weir canary`: a running weir's rollouts, listed, shown, watched and steered through its
//! admin API.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub(super) enum CanaryAction {
    /// Every rollout, one line each.
    List,
    /// A rollout's state, last checks and events.
    Status {
        /// The Canary's name.
        name: String,
    },
    /// Live progress until the rollout succeeds (exit 0) or fails (exit 1).
    Watch {
        /// The Canary's name.
        name: String,
    },
    /// Promote now, whatever the step.
    Promote {
        /// The Canary's name.
        name: String,
    },
    /// Roll back now: all traffic to the primary.
    Rollback {
        /// The Canary's name.
        name: String,
    },
    /// Stop taking steps.
    Pause {
        /// The Canary's name.
        name: String,
    },
    /// Take steps again.
    Resume {
        /// The Canary's name.
        name: String,
    },
}

/// A running weir's admin API, for the CLI.
pub(super) struct Admin {
    pub(super) addr: SocketAddr,
    pub(super) token: Option<String>,
}

pub(super) async fn canary(action: CanaryAction, admin: Admin) -> ExitCode {
    use crate::cli::view;
    let addr = admin.addr;
    let get = |path: String| async move {
        match crate::admin::call(addr, "GET", &path).await {
            Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .map_err(|e| format!("unexpected answer from the admin API: {e}")),
            Ok((404, _)) => Err("no such canary".to_owned()),
            Ok((status, body)) => Err(format!("admin answered {status}: {body}")),
            Err(e) => Err(format!("cannot reach the admin API at {addr}: {e}")),
        }
    };
    let result = match action {
        CanaryAction::List => get("/canaries".into()).await.map(|v| {
            print!("{}", view::table(&v));
            ExitCode::SUCCESS
        }),
        CanaryAction::Status { name } => get(format!("/canaries/{name}")).await.map(|v| {
            print!("{}", view::details(&v));
            ExitCode::SUCCESS
        }),
        CanaryAction::Watch { name } => {
            let path = format!("/canaries/{name}");
            let mut seen = 0;
            let mut last_line = String::new();
            loop {
                let v = match get(path.clone()).await {
                    Ok(v) => v,
                    Err(e) => break Err(e),
                };
                let (events, total) = view::new_events(&v, seen);
                seen = total;
                for e in events {
                    println!("  {e}");
                }
                let line = view::progress(&v);
                if line != last_line {
                    println!("{line}");
                    last_line = line;
                }
                match v["phase"].as_str() {
                    Some("Succeeded") => break Ok(ExitCode::SUCCESS),
                    Some("Failed") => break Ok(ExitCode::FAILURE),
                    _ => {}
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        CanaryAction::Promote { name } => command(&admin, &name, "promote").await,
        CanaryAction::Rollback { name } => command(&admin, &name, "rollback").await,
        CanaryAction::Pause { name } => command(&admin, &name, "pause").await,
        CanaryAction::Resume { name } => command(&admin, &name, "resume").await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("weir: {e}");
        ExitCode::FAILURE
    })
}

async fn command(admin: &Admin, name: &str, action: &str) -> Result<ExitCode, String> {
    let path = format!("/canaries/{name}/{action}");
    let addr = admin.addr;
    match crate::admin::call_with_token(addr, "POST", &path, admin.token.as_deref()).await {
        Ok((200, body)) => {
            // In a fleet the driver of the rollout takes the command from the store.
            let taken = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("taken").and_then(serde_json::Value::as_bool));
            match taken {
                Some(false) => println!(
                    "{name}: {action} queued; no instance driving the rollout has taken it yet"
                ),
                _ => println!("{name}: {action} sent"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok((404, _)) => Err(format!("no such canary: {name}")),
        Ok((status, body)) => Err(format!("admin answered {status}: {body}")),
        Err(e) => Err(format!("cannot reach the admin API at {addr}: {e}")),
    }
}
