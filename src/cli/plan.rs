//! `weir plan PATH... --rps N`: a rollout simulated with the controller's own machine and
//! analysis (`crate::rollout::plan`), printed as a timeline and a summary over many seeded runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Spec};
use crate::rollout::plan::{Outcome, Traffic, simulate, summarize};
use crate::rollout::spec::RolloutSpec;

/// What `weir plan` was asked.
#[derive(clap::Args)]
pub(super) struct PlanArgs {
    /// The Canary and the resources it targets (files or directories).
    #[arg(required_unless_present = "baseline_rate")]
    paths: Vec<PathBuf>,
    /// Requests per second reaching the route under rollout.
    #[arg(long, required_unless_present = "baseline_rate")]
    rps: Option<f64>,
    /// Size an experiment instead: the control's conversion rate, percent.
    #[arg(long, value_name = "PERCENT", requires = "lift", conflicts_with_all = ["paths", "rps"])]
    baseline_rate: Option<f64>,
    /// The relative lift to find, percent (`--baseline-rate 10 --lift 20`: 10% -> 12%).
    #[arg(long, value_name = "PERCENT")]
    lift: Option<f64>,
    /// An experiment's confidence, percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 95.0)]
    confidence: f64,
    /// An experiment's power, percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 80.0)]
    power: f64,
    /// The canary's error rate, percent (default: the primary's, a healthy canary).
    #[arg(long, value_name = "PERCENT")]
    error_rate: Option<f64>,
    /// The primary's error rate, percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
    primary_error_rate: f64,
    /// Both versions' latency, ms (`request-duration` checks).
    #[arg(long, value_name = "MS", default_value_t = 50.0)]
    latency_ms: f64,
    /// The canary's latency, ms (default: --latency-ms).
    #[arg(long, value_name = "MS")]
    canary_latency_ms: Option<f64>,
    /// A/B testing: the share of requests matching the Canary's `match`, percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 10.0)]
    matching: f64,
    /// Seeded runs summarised.
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// The first seed (run i uses seed + i); the timeline is the first run's.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The Canary to plan, when the files have several.
    #[arg(long, value_name = "NAME")]
    canary: Option<String>,
}

fn dur(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

fn percent(part: usize, whole: usize) -> String {
    format!("{:.0}%", 100.0 * part as f64 / whole.max(1) as f64)
}

/// Runs `weir plan`.
pub(super) fn plan(args: PlanArgs) -> ExitCode {
    if let (Some(baseline), Some(lift)) = (args.baseline_rate, args.lift) {
        return super::plan_experiment::plan(
            baseline,
            lift,
            args.confidence,
            args.power,
            args.runs,
            args.seed,
        );
    }
    let Some(rps) = args.rps else {
        eprintln!("weir: --rps is needed to plan a rollout");
        return ExitCode::from(2);
    };
    let mesh = SocketAddr::from(([127, 0, 0, 1], 15001));
    let set = match config::check(&args.paths, mesh) {
        Ok((set, _)) => set,
        Err(errors) => return super::config_errors(&errors),
    };
    let specs: Vec<RolloutSpec> = set
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Canary(c) if args.canary.as_deref().is_none_or(|n| n == r.name()) => {
                RolloutSpec::from_canary(r.name(), r.metadata.namespace.as_deref(), c, &set)
            }
            _ => None,
        })
        .collect();
    let spec = match specs.as_slice() {
        [one] => one,
        [] => {
            eprintln!("weir: no Canary to plan in the files given");
            return ExitCode::from(2);
        }
        many => {
            let names: Vec<&str> = many.iter().map(|s| s.name.as_str()).collect();
            eprintln!(
                "weir: several Canaries ({}): name one with --canary",
                names.join(", ")
            );
            return ExitCode::from(2);
        }
    };
    let fraction = |p: f64| (p / 100.0).clamp(0.0, 1.0);
    if !(rps > 0.0 && rps.is_finite()) {
        eprintln!("weir: --rps must be a positive number");
        return ExitCode::from(2);
    }
    let traffic = Traffic {
        rps,
        canary_errors: fraction(args.error_rate.unwrap_or(args.primary_error_rate)),
        primary_errors: fraction(args.primary_error_rate),
        latency_ms: (
            args.canary_latency_ms.unwrap_or(args.latency_ms),
            args.latency_ms,
        ),
        matching: fraction(args.matching),
    };
    println!(
        "Rollout {} ({:?} of {}: {} -> {}), interval {}, threshold {}, steps {:?}",
        spec.name,
        spec.strategy,
        spec.canary.host,
        spec.primary,
        spec.canary,
        dur(spec.interval),
        spec.threshold,
        spec.steps
    );
    println!(
        "Traffic: {} rps; canary errors {}%, primary {}%; latency canary {} ms, primary {} ms",
        rps,
        traffic.canary_errors * 100.0,
        traffic.primary_errors * 100.0,
        traffic.latency_ms.0,
        traffic.latency_ms.1
    );
    let run = simulate(spec, traffic, args.seed, true);
    println!("\nTimeline (seed {}):", args.seed);
    for s in &run.steps {
        if s.events.is_empty() && s.checks.is_empty() {
            continue;
        }
        println!("  t+{:<7} {:<16} {:>3}%", dur(s.at), s.phase, s.weight);
        for c in &s.checks {
            println!("      check: {c}");
        }
        for e in &s.events {
            println!("      {e}");
        }
    }
    let end = match run.outcome {
        Outcome::Promoted => format!("promoted after {}", dur(run.took)),
        Outcome::RolledBack => format!("rolled back after {}", dur(run.took)),
        Outcome::Undecided => format!("still undecided after {}", dur(run.took)),
    };
    println!(
        "Outcome: {end}; the canary answered {} requests ({} failed), the primary {}.",
        run.canary_requests, run.canary_failed, run.primary_requests
    );
    let s = summarize(spec, traffic, args.runs.max(1), args.seed);
    println!(
        "\nOver {} runs (seeds {}..{}):",
        s.runs,
        args.seed,
        args.seed + s.runs as u64 - 1
    );
    println!(
        "  promoted {}, rolled back {}, undecided {}; decided after {} (median), {} (p90)",
        percent(s.promoted, s.runs),
        percent(s.rolled_back, s.runs),
        percent(s.runs - s.promoted - s.rolled_back, s.runs),
        dur(s.took.0),
        dur(s.took.1)
    );
    println!(
        "  failed canary requests (users hurt): {} median, {} p90, {} at most",
        s.failed.0, s.failed.1, s.failed.2
    );
    println!(
        "  requests: canary {} median, primary {} median",
        s.requests.0, s.requests.1
    );
    ExitCode::SUCCESS
}
