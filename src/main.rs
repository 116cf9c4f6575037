//! The `weir` command line: `run`, `validate`, `demo`, `faults`, `canary`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// weir: a traffic manager that reads Istio and Flagger resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Proxy traffic by the given configuration, reloading it when files change or on SIGHUP.
    Run {
        /// A YAML file or a directory of them; may repeat.
        #[arg(long = "config", required = true)]
        configs: Vec<PathBuf>,
        /// Admin API address.
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: SocketAddr,
        /// Mesh listener address.
        #[arg(long, default_value = "127.0.0.1:15001")]
        mesh_listen: SocketAddr,
        /// Directory for state that survives restarts.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// File holding the admin API's bearer token (required when --admin is not loopback);
        /// mutating admin calls then need `Authorization: Bearer TOKEN`.
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        #[command(flatten)]
        limits: Limits,
    },
    /// Check configuration files: exit 0, or print every error as file:line:column: message.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Start demo backends and weir on loopback and watch traffic shift between versions.
    Demo,
    /// Print the Istio resources weir runs for another dialect's config (`weir import kong
    /// kong.yaml`): VirtualServices, DestinationRules and ServiceEntries.
    Import {
        /// The dialect.
        #[arg(value_enum)]
        dialect: Dialect,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Fault injection's kill switch on a running weir: `disable` stops every fault at once.
    Faults {
        /// `disable`, `enable` or `status`.
        #[arg(value_enum)]
        action: FaultAction,
        /// The running weir's admin API address.
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: SocketAddr,
        /// File holding the admin API's bearer token.
        #[arg(long)]
        admin_token_file: Option<PathBuf>,
    },
    /// Progressive delivery on a running weir: list, status, watch, promote, rollback, pause,
    /// resume.
    Canary {
        #[command(subcommand)]
        action: CanaryAction,
        /// The running weir's admin API address.
        #[arg(long, default_value = "127.0.0.1:15000", global = true)]
        admin: SocketAddr,
        /// File holding the admin API's bearer token.
        #[arg(long, global = true)]
        admin_token_file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Dialect {
    /// Kong's declarative config and Kong kinds.
    Kong,
}

#[derive(Subcommand)]
enum CanaryAction {
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

/// What weir holds clients to (defaults: RELIABILITY.md section 5, safe at the edge).
#[derive(clap::Args)]
struct Limits {
    /// From a request's first byte to the end of its head; then 408 (slowloris).
    #[arg(long, default_value = "10s", value_parser = duration)]
    request_headers_timeout: Duration,
    /// From a request's head to the end of its body; then 408 (slow bodies).
    #[arg(long, default_value = "300s", value_parser = duration)]
    request_timeout: Duration,
    /// Closes connections idle between requests, and writes that make no progress, after this.
    #[arg(long, default_value = "60s", value_parser = duration)]
    idle_timeout: Duration,
    /// Open connections per listener; more are closed at once.
    #[arg(long, default_value_t = 16_384)]
    max_connections: usize,
    /// Resident memory above which new requests get 503 (e.g. 2GiB, 512MiB, or off).
    #[arg(long, default_value = "2GiB", value_parser = size)]
    memory_limit: Size,
    /// The largest request body forwarded (413 above it) where a route sets no
    /// `maxRequestBytes` (e.g. 10MiB, or off).
    #[arg(long, default_value = "off", value_parser = size)]
    max_request_body: Size,
    /// Header names with an underscore: reject (400), drop, or allow.
    #[arg(long, value_enum, default_value = "reject")]
    headers_with_underscores: Underscores,
    /// %2F and %5C in paths: reject (400), keep, or unescape.
    #[arg(long, value_enum, default_value = "reject")]
    escaped_slashes: EscapedSlashes,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Underscores {
    Reject,
    Drop,
    Allow,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EscapedSlashes {
    Reject,
    Keep,
    Unescape,
}

impl Limits {
    fn policy(&self) -> weir::edge::ServerPolicy {
        use weir::edge;
        edge::ServerPolicy {
            request_headers_timeout: self.request_headers_timeout,
            request_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            memory_limit: self.memory_limit.0,
            max_request_body: self.max_request_body.0,
            underscores: match self.headers_with_underscores {
                Underscores::Reject => edge::Underscores::Reject,
                Underscores::Drop => edge::Underscores::Drop,
                Underscores::Allow => edge::Underscores::Allow,
            },
            escaped_slashes: match self.escaped_slashes {
                EscapedSlashes::Reject => edge::EscapedSlashes::Reject,
                EscapedSlashes::Keep => edge::EscapedSlashes::Keep,
                EscapedSlashes::Unescape => edge::EscapedSlashes::Unescape,
            },
        }
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    weir::config::decode::parse_duration(text).map_err(str::to_owned)
}

/// A size in bytes, or none.
#[derive(Clone, Copy)]
struct Size(Option<u64>);

/// Bytes with an optional KiB/MiB/GiB suffix; `off` for none.
fn size(text: &str) -> Result<Size, String> {
    if text == "off" {
        return Ok(Size(None));
    }
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let scale: u64 = match unit {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?}: use KiB, MiB or GiB")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map(|n| Size(Some(n)))
        .ok_or_else(|| format!("not a size: {text:?}"))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FaultAction {
    Disable,
    Enable,
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Validate { paths } => validate(&paths),
        Command::Import { dialect, paths } => import(dialect, &paths),
        Command::Demo => runtime(None).block_on(weir::demo::run()),
        Command::Canary {
            action,
            admin,
            admin_token_file,
        } => match token(admin_token_file.as_deref()) {
            Ok(t) => runtime(Some(1)).block_on(canary(
                action,
                Admin {
                    addr: admin,
                    token: t,
                },
            )),
            Err(code) => code,
        },
        Command::Faults {
            action,
            admin,
            admin_token_file,
        } => {
            let token = match token(admin_token_file.as_deref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let (method, path) = match action {
                FaultAction::Disable => ("POST", "/faults/disable"),
                FaultAction::Enable => ("POST", "/faults/enable"),
                FaultAction::Status => ("GET", "/faults"),
            };
            let call = weir::admin::call_with_token(admin, method, path, token.as_deref());
            match runtime(Some(1)).block_on(call) {
                Ok((200, body)) => {
                    println!("{body}");
                    ExitCode::SUCCESS
                }
                Ok((status, body)) => {
                    eprintln!("weir: admin answered {status}: {body}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("weir: cannot reach the admin API at {admin}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            configs,
            admin,
            mesh_listen,
            state_dir,
            admin_token_file,
            workers,
            limits,
        } => {
            let admin_token = match token(admin_token_file.as_deref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let opts = weir::run::Options {
                configs,
                admin,
                mesh: mesh_listen,
                state_dir,
                admin_token,
                policy: limits.policy(),
            };
            runtime(workers).block_on(async move {
                match weir::run::Server::start(opts, None).await {
                    Ok(server) => match server.run().await {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("weir: {e}");
                            ExitCode::FAILURE
                        }
                    },
                    Err(weir::run::StartError::Config(errors)) => {
                        for e in errors {
                            eprintln!("{e}");
                        }
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("weir: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
    }
}

/// A running weir's admin API, for the CLI.
struct Admin {
    addr: SocketAddr,
    token: Option<String>,
}

/// The token in `--admin-token-file`, if given.
fn token(file: Option<&std::path::Path>) -> Result<Option<String>, ExitCode> {
    match file.map(weir::admin::read_token) {
        None => Ok(None),
        Some(Ok(t)) => Ok(Some(t)),
        Some(Err(e)) => {
            eprintln!("weir: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

async fn canary(action: CanaryAction, admin: Admin) -> ExitCode {
    use weir::rollout::view;
    let addr = admin.addr;
    let get = |path: String| async move {
        match weir::admin::call(addr, "GET", &path).await {
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
    match weir::admin::call_with_token(addr, "POST", &path, admin.token.as_deref()).await {
        Ok((200, _)) => {
            println!("{name}: {action} sent");
            Ok(ExitCode::SUCCESS)
        }
        Ok((404, _)) => Err(format!("no such canary: {name}")),
        Ok((status, body)) => Err(format!("admin answered {status}: {body}")),
        Err(e) => Err(format!("cannot reach the admin API at {addr}: {e}")),
    }
}

fn runtime(workers: Option<usize>) -> tokio::runtime::Runtime {
    let mut b = match workers {
        // One worker: a single-threaded scheduler, with no work-stealing machinery to pay for.
        Some(n) if n <= 1 => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all().build().expect("tokio runtime")
}

/// Prints what a dialect's resources become; errors as `weir validate` prints them.
fn import(dialect: Dialect, paths: &[PathBuf]) -> ExitCode {
    let Dialect::Kong = dialect;
    match weir::config::check(paths, SocketAddr::from(([127, 0, 0, 1], 15001))) {
        Ok((set, _)) => {
            let generated = set.resources.iter().filter(|r| {
                r.metadata
                    .annotations
                    .get(weir::config::generate::GENERATED_BY)
                    .is_some_and(|g| g.starts_with(weir::config::kong_translate::KONG_PREFIX))
            });
            print!("{}", weir::config::emit::documents(generated));
            ExitCode::SUCCESS
        }
        Err(errors) => config_errors(&errors),
    }
}

/// Prints config errors as `file:line:column: message`, and their count.
fn config_errors(errors: &[weir::config::ConfigError]) -> ExitCode {
    for e in errors {
        println!("{e}");
    }
    eprintln!("{} errors", errors.len());
    ExitCode::FAILURE
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    let result = weir::config::check(paths, SocketAddr::from(([127, 0, 0, 1], 15001)));
    match result {
        Ok((set, model)) => {
            for w in &model.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "ok: {} resources in {} files",
                set.resources.len(),
                set.sources.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => config_errors(&errors),
    }
}
