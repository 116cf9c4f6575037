//! The `weir` command line: `run`, `validate`, `diff`, `plan`, `import`, `demo`, `apply`, `get`,
//! `delete`, `faults`, `canary`, `experiment`, `top`. The binary
//! (`src/main.rs`) only calls [`main`].

mod canary;
mod experiment;
mod limits;
mod line_diff;
mod plan;
mod plan_experiment;
mod store;
mod top;
pub(crate) mod view;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use canary::{Admin, CanaryAction, canary};
use experiment::{ExperimentAction, experiment};
use limits::Limits;

/// weir: a traffic manager that reads Istio and Flagger resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// Proxy traffic by the given configuration, reloading it when files change or on SIGHUP.
    Run {
        /// A YAML file or a directory of them; may repeat.
        #[arg(
            long = "config",
            required_unless_present = "store",
            conflicts_with = "store"
        )]
        configs: Vec<PathBuf>,
        /// Take the resources from a fleet's store instead of files:
        /// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (prefix `/weir` by default).
        #[arg(long, value_name = "URL")]
        store: Option<crate::store::StoreUrl>,
        /// This instance's name in the fleet (default: host name and admin port).
        #[arg(long, value_name = "ID", requires = "store", value_parser = instance_id)]
        instance_id: Option<String>,
        /// Seconds an instance stays in the fleet (and keeps the rollouts it drives) after its
        /// last word to the store.
        #[arg(long, value_name = "SECONDS", default_value_t = 5, requires = "store")]
        store_lease: u64,
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
        /// Worker threads, each with its own runtime and its own socket per listener
        /// (`SO_REUSEPORT`) (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Write a line per request to PATH (appended to), or to standard output with `-`
        /// (default: no access log, as in Istio).
        #[arg(long, value_name = "PATH|-")]
        access_log: Option<String>,
        /// The access log's format.
        #[arg(long, value_enum, default_value_t = crate::access_log::Format::Json, requires = "access_log")]
        access_log_format: crate::access_log::Format,
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
    Demo {
        /// Instead: start a stub backend on every loopback endpoint these configs name (files
        /// or directories), answering with the endpoint's `version` label, until Ctrl-C.
        #[arg(long, value_name = "PATH")]
        backends: Vec<PathBuf>,
    },
    /// Print a completion script for a shell (`weir completions bash >
    /// /etc/bash_completion.d/weir`; zsh, fish, elvish and PowerShell too).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// What changes for traffic from one configuration to another (files or directories), in
    /// words: exit 0 when nothing does, 1 when something does, 2 on invalid input.
    Diff {
        /// The configuration as it is.
        old: PathBuf,
        /// The configuration as it would be.
        new: PathBuf,
    },
    /// Simulate a Canary's rollout with weir's own controller on a simulated clock: the
    /// timeline, how long promotion takes, and for a bad canary how often and how fast it is
    /// rolled back and how many requests it fails.
    Plan(plan::PlanArgs),
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
    /// Validate resources with everything in a fleet's store, then write them in one
    /// transaction (refused if the store changed meanwhile).
    Apply {
        /// The store: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
        #[arg(long, value_name = "URL")]
        store: crate::store::StoreUrl,
        /// A YAML file or a directory of them; may repeat.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        /// Print what would change and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print resources of a fleet's store as YAML, as written.
    Get {
        /// The store: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
        #[arg(long, value_name = "URL")]
        store: crate::store::StoreUrl,
        /// A kind (any case, singular or plural).
        kind: Option<String>,
        /// A name, or NAMESPACE/NAME.
        name: Option<String>,
    },
    /// Delete a resource from a fleet's store (refused if what is left would not validate).
    Delete {
        /// The store: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
        #[arg(long, value_name = "URL")]
        store: crate::store::StoreUrl,
        /// The kind.
        kind: String,
        /// The name, or NAMESPACE/NAME.
        name: String,
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
    /// A running weir's traffic per service and version, live: requests per second, success
    /// rate, p50 / p99 latency, and its rollouts.
    Top {
        /// The running weir's admin API address.
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: SocketAddr,
        /// Print the table once and exit.
        #[arg(long)]
        once: bool,
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
    /// A/B experiments on a running weir: list, status, watch, stop, conclude.
    Experiment {
        #[command(subcommand)]
        action: ExperimentAction,
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum FaultAction {
    Disable,
    Enable,
    Status,
}

/// Runs the command line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo and a plan tell their own story (events, a status line a second; a timeline):
    // their log shows only what goes wrong, unless WEIR_LOG asks for more.
    let level = match cli.command {
        Command::Demo { .. } | Command::Plan(_) => "warn",
        _ => "info",
    };
    // Colour only on a terminal, and never with NO_COLOR set (no-color.org).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| level.into()),
        )
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Validate { paths } => validate(&paths),
        Command::Diff { old, new } => diff(&old, &new),
        Command::Plan(args) => plan::plan(args),
        Command::Top { admin, once } => runtime(Some(1)).block_on(top::top(admin, once)),
        Command::Import { dialect, paths } => import(dialect, &paths),
        Command::Apply {
            store,
            paths,
            dry_run,
        } => runtime(Some(1)).block_on(store::apply(store, paths, dry_run)),
        Command::Get { store, kind, name } => {
            runtime(Some(1)).block_on(store::get(store, kind, name))
        }
        Command::Delete { store, kind, name } => {
            runtime(Some(1)).block_on(store::delete(store, kind, name))
        }
        Command::Completions { shell } => {
            let mut cli = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli, "weir", &mut script);
            // A reader that stops early (`| head`) is not an error of weir's.
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("weir: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Command::Demo { backends } if backends.is_empty() => {
            runtime(None).block_on(crate::demo::run())
        }
        Command::Demo { backends } => runtime(None).block_on(crate::demo::stubs(backends)),
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
        Command::Experiment {
            action,
            admin,
            admin_token_file,
        } => match token(admin_token_file.as_deref()) {
            Ok(t) => runtime(Some(1)).block_on(experiment(
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
            let call = crate::admin::call_with_token(admin, method, path, token.as_deref());
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
            store,
            instance_id,
            store_lease,
            admin,
            mesh_listen,
            state_dir,
            admin_token_file,
            workers,
            access_log,
            access_log_format,
            limits,
        } => {
            let admin_token = match token(admin_token_file.as_deref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let opts = crate::run::Options {
                configs,
                fleet: store.map(|url| crate::run::FleetOptions {
                    instance_id: instance_id.unwrap_or_else(|| {
                        format!("{}:{}", crate::store::host_name(), admin.port())
                    }),
                    url,
                    lease_seconds: store_lease.max(1),
                }),
                admin,
                mesh: mesh_listen,
                state_dir,
                admin_token,
                policy: limits.policy(),
                access_log: access_log.map(|a| crate::access_log::AccessLogOptions {
                    target: if a == "-" {
                        crate::access_log::Target::Stdout
                    } else {
                        crate::access_log::Target::File(a.into())
                    },
                    format: access_log_format,
                }),
            };
            runtime(workers).block_on(async move {
                match crate::run::Server::start(opts, None).await {
                    Ok(server) => match server.run().await {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("weir: {e}");
                            ExitCode::FAILURE
                        }
                    },
                    Err(crate::run::StartError::Config(errors)) => {
                        for e in &errors {
                            eprintln!("{e}");
                        }
                        eprintln!(
                            "weir: not started: {} errors in the configuration",
                            errors.len()
                        );
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

/// An instance id: it names a key in the store, so no `/`, spaces or control characters.
fn instance_id(id: &str) -> Result<String, String> {
    if id.is_empty()
        || id.len() > 200
        || id
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(
            "an instance id is 1 to 200 characters without `/`, spaces or control characters"
                .into(),
        );
    }
    Ok(id.to_owned())
}

/// The token in `--admin-token-file`, if given.
fn token(file: Option<&std::path::Path>) -> Result<Option<String>, ExitCode> {
    match file.map(crate::admin::read_token) {
        None => Ok(None),
        Some(Ok(t)) => Ok(Some(t)),
        Some(Err(e)) => {
            eprintln!("weir: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// The runtime `weir run` starts on. One worker: a single-threaded scheduler, with no
/// work-stealing machinery to pay for. More (the default, one per core): per-core workers
/// ([`crate::workers`]) serve the listeners, each on its own thread and runtime, and this
/// single-threaded runtime carries the control plane.
fn runtime(workers: Option<usize>) -> tokio::runtime::Runtime {
    let n = workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut b = tokio::runtime::Builder::new_current_thread();
    if n > 1
        && let Err(e) = crate::workers::start(n)
    {
        // Threads cannot be made: the work-stealing scheduler over as many as it can.
        eprintln!("weir: per-core workers did not start ({e}); one shared runtime serves");
        b = tokio::runtime::Builder::new_multi_thread();
    }
    b.enable_all().build().expect("tokio runtime")
}

/// Prints what a dialect's resources become; errors as `weir validate` prints them.
fn import(dialect: Dialect, paths: &[PathBuf]) -> ExitCode {
    let Dialect::Kong = dialect;
    match crate::config::check(paths, SocketAddr::from(([127, 0, 0, 1], 15001))) {
        Ok((set, _)) => {
            let generated = set.resources.iter().filter(|r| {
                r.metadata
                    .annotations
                    .get(crate::config::generate::GENERATED_BY)
                    .is_some_and(|g| g.starts_with(crate::config::kong_translate::KONG_PREFIX))
            });
            print!("{}", crate::config::emit::documents(generated));
            ExitCode::SUCCESS
        }
        Err(errors) => config_errors(&errors),
    }
}

/// Prints config errors as `file:line:column: message`, and their count.
fn config_errors(errors: &[crate::config::ConfigError]) -> ExitCode {
    for e in errors {
        println!("{e}");
    }
    eprintln!("{} errors", errors.len());
    ExitCode::FAILURE
}

/// `weir diff OLD NEW`.
fn diff(old: &std::path::Path, new: &std::path::Path) -> ExitCode {
    let mesh = SocketAddr::from(([127, 0, 0, 1], 15001));
    let read = |p: &std::path::Path| crate::config::check(&[p.to_path_buf()], mesh);
    let (a, b) = match (read(old), read(new)) {
        (Ok((a, _)), Ok((b, _))) => (a, b),
        (a, b) => {
            let errors: Vec<_> = [a.err(), b.err()].into_iter().flatten().flatten().collect();
            for e in &errors {
                println!("{e}");
            }
            eprintln!("{} errors: nothing compared", errors.len());
            return ExitCode::from(2);
        }
    };
    let changes = crate::config::changes::changes(&a, &b);
    if changes.is_empty() {
        println!("No change for traffic.");
        return ExitCode::SUCCESS;
    }
    for (resource, lines) in &changes {
        println!("{resource}");
        for l in lines {
            println!("  {l}");
        }
    }
    ExitCode::from(1)
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    let result = crate::config::check(paths, SocketAddr::from(([127, 0, 0, 1], 15001)));
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
