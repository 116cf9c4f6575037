//! `weir plan --baseline-rate P --lift L`: the users an experiment needs per variant to find a
//! lift of the baseline conversion rate: for a test looked at once, at the end (the textbook
//! sample size), and for weir's always-valid test looked at continuously (simulated, seeded),
//! with how often that test declares a false winner when there is no difference (A/A).

use std::process::ExitCode;

use crate::experiment::stats::{LOOK_EVERY, fixed_sample_size, simulate};

/// Sizes an experiment. Rates, lift, confidence and power in percent.
pub(super) fn plan(
    baseline: f64,
    lift: f64,
    confidence: f64,
    power: f64,
    runs: usize,
    seed: u64,
) -> ExitCode {
    let p0 = baseline / 100.0;
    let p1 = p0 * (1.0 + lift / 100.0);
    let (c, w) = (confidence / 100.0, power / 100.0);
    if !(0.0 < p0
        && p0 < 1.0
        && 0.0 < p1
        && p1 < 1.0
        && p0 != p1
        && 0.5 < c
        && c < 1.0
        && 0.0 < w
        && w < 1.0)
    {
        eprintln!(
            "weir: --baseline-rate and the lifted rate must be between 0 and 100%, differ, and --confidence and --power be percentages (e.g. 95, 80)"
        );
        return ExitCode::from(2);
    }
    let fixed = fixed_sample_size(p0, p1, c, w);
    println!(
        "Experiment: control converts {:.2}%, the variant {:.2}% ({:+}% lift); {}% confidence, {}% power",
        p0 * 100.0,
        p1 * 100.0,
        lift,
        confidence,
        power
    );
    println!("Looked at once, at the end (fixed horizon): {fixed} users per variant.");
    let alpha = 1.0 - c;
    let effect = (p1 - p0).abs();
    let max = fixed * 4;
    let runs = runs.max(1);
    let mut found: Vec<u64> = (0..runs as u64)
        .filter_map(|i| simulate(seed + i, p0, p1, alpha, effect, max))
        .collect();
    found.sort_unstable();
    let at = |q: f64| {
        found
            .get(((runs as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or_else(|| format!("more than {max}"), u64::to_string)
    };
    println!(
        "Looked at continuously (weir's always-valid test, every {LOOK_EVERY} users per variant), over {runs} seeded runs: \
         the lift is found in {:.0}% of runs by {max} users; {} users per variant by the median run, {} for {}% of runs.",
        100.0 * found.len() as f64 / runs as f64,
        at(0.5),
        at(w),
        power
    );
    let false_winners = (0..runs as u64)
        .filter(|i| simulate(seed + 1_000_000 + i, p0, p0, alpha, effect, max).is_some())
        .count();
    println!(
        "No difference (A/A), looked at continuously up to {max} users per variant: a false winner in {:.1}% of {runs} runs (at most {:.0}% by design).",
        100.0 * false_winners as f64 / runs as f64,
        alpha * 100.0
    );
    ExitCode::SUCCESS
}
