//! `weir plan`: a rollout simulated with the controller's own machine and analysis on a
//! simulated clock, against simulated traffic: requests arrive at a fixed rate, split by the
//! weights the machine sets, and fail at the rates given (each request independently, drawn
//! from a seeded generator, so a plan is repeatable). It answers what a team asks before
//! choosing `interval`, `stepWeight` and `threshold`: how long promotion takes, how many
//! requests each version gets, and, for a bad canary, how often and how fast it is rolled back
//! and how many requests it fails meanwhile.
//!
//! Webhooks are taken as passing and provider queries (Prometheus `MetricTemplate`s) as
//! passing: a plan cannot call them. Latency is one value per version (`request-duration`).

use std::collections::VecDeque;
use std::time::Duration;

use super::analysis::{self, CheckResult, Verdict};
use super::machine::{Env, Machine, Revisions};
use super::spec::{CheckKind, HookKind, RolloutSpec};
use super::status::{Phase, Status};
use crate::metrics::VersionSample;

/// The traffic a plan simulates.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Traffic {
    /// Requests per second reaching the route.
    pub(crate) rps: f64,
    /// The canary's share of requests that fail (5xx), 0 to 1.
    pub(crate) canary_errors: f64,
    /// The primary's, 0 to 1.
    pub(crate) primary_errors: f64,
    /// Each version's latency, ms (canary, primary).
    pub(crate) latency_ms: (f64, f64),
    /// A/B testing: the share of requests matching the Canary's `match`, 0 to 1.
    pub(crate) matching: f64,
}

/// One analysis step of a simulated rollout.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    /// Time since the rollout started.
    pub(crate) at: Duration,
    /// The phase after the step.
    pub(crate) phase: String,
    /// The canary's weight after the step.
    pub(crate) weight: u32,
    /// The checks' findings, one line each.
    pub(crate) checks: Vec<String>,
    /// The events the step recorded.
    pub(crate) events: Vec<String>,
}

/// How one simulated rollout ended.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    /// Promoted, rolled back, or neither within the time allowed.
    pub(crate) outcome: Outcome,
    /// When it ended.
    pub(crate) took: Duration,
    /// Requests the canary answered (users on it), and those that failed.
    pub(crate) canary_requests: u64,
    /// Failed canary requests.
    pub(crate) canary_failed: u64,
    /// Requests the primary answered.
    pub(crate) primary_requests: u64,
    /// Each step, when asked for.
    pub(crate) steps: Vec<Step>,
}

/// How a rollout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Promoted.
    Promoted,
    /// Rolled back.
    RolledBack,
    /// Still going when the plan stopped looking.
    Undecided,
}

/// Steps simulated at most (a rollout that neither promotes nor rolls back by then is
/// undecided).
const MAX_STEPS: usize = 10_000;

/// Simulated traffic over one interval, per version.
#[derive(Clone, Debug, Default)]
struct Slice {
    canary: VersionSample,
    primary: VersionSample,
}

/// The world of a simulated rollout.
struct World<'a> {
    spec: &'a RolloutSpec,
    traffic: Traffic,
    rng: fastrand::Rng,
    /// The traffic of the intervals so far, newest last.
    slices: VecDeque<Slice>,
    findings: Vec<String>,
}

/// `n` requests of which each fails with probability `p`: how many fail (exact below a few
/// thousand, a normal approximation above, as the counts then are).
fn failures(rng: &mut fastrand::Rng, n: u64, p: f64) -> u64 {
    if p <= 0.0 || n == 0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    if n <= 5_000 {
        return (0..n).filter(|_| rng.f64() < p).count() as u64;
    }
    // Box-Muller.
    let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (mean + z * sd).round().clamp(0.0, n as f64) as u64
}

/// A sample of `n` requests, `failed` of them 5xx, all at `latency_ms`.
fn sample(n: u64, failed: u64, latency_ms: f64) -> VersionSample {
    let buckets = crate::metrics::duration_buckets();
    let i = buckets
        .iter()
        .position(|&b| latency_ms / 1000.0 <= b)
        .unwrap_or(buckets.len());
    let mut durations = vec![0; buckets.len() + 1];
    durations[i] = n;
    VersionSample {
        requests: n,
        errors: failed,
        durations,
    }
}

impl World<'_> {
    /// The traffic of one interval under `routing`.
    fn flow(&mut self, status: &Status) {
        let total = (self.traffic.rps * self.spec.interval.as_secs_f64()).round() as u64;
        let r = status.routing;
        let canary_share = if r.mirror {
            // Blue-green mirrors: the canary sees everything, users see the primary.
            1.0
        } else if r.matched {
            self.traffic.matching
        } else {
            f64::from(r.canary_weight) / 100.0
        };
        let to_canary = (total as f64 * canary_share).round() as u64;
        let to_primary = if r.mirror {
            total
        } else {
            total - to_canary.min(total)
        };
        let cf = failures(&mut self.rng, to_canary, self.traffic.canary_errors);
        let pf = failures(&mut self.rng, to_primary, self.traffic.primary_errors);
        self.slices.push_back(Slice {
            canary: sample(to_canary, cf, self.traffic.latency_ms.0),
            primary: sample(to_primary, pf, self.traffic.latency_ms.1),
        });
        let keep = self
            .spec
            .checks
            .iter()
            .map(|c| c.window)
            .max()
            .unwrap_or_default()
            .as_secs_f64()
            / self.spec.interval.as_secs_f64().max(1e-3);
        while self.slices.len() > keep.ceil().max(1.0) as usize {
            self.slices.pop_front();
        }
    }

    /// The traffic over the last `window`.
    fn window(&self, window: Duration) -> Slice {
        let n = (window.as_secs_f64() / self.spec.interval.as_secs_f64().max(1e-3))
            .ceil()
            .max(1.0) as usize;
        let mut out = Slice::default();
        for s in self.slices.iter().rev().take(n) {
            out.canary.add(&s.canary);
            out.primary.add(&s.primary);
        }
        out
    }
}

impl Env for World<'_> {
    async fn hook(&mut self, _: HookKind, _: &Status) -> Result<(), String> {
        Ok(())
    }

    async fn checks(&mut self) -> Vec<CheckResult> {
        let spec = self.spec;
        let results: Vec<CheckResult> = spec
            .checks
            .iter()
            .map(|c| match &c.kind {
                CheckKind::Query { .. } => {
                    let mut r = analysis::judge_query(c, Ok(None));
                    r.verdict = Verdict::Pass;
                    r.incomplete = Some("a provider query: taken as passing in a plan".into());
                    r
                }
                _ => {
                    let w = self.window(c.window);
                    analysis::evaluate(c, &w.canary, &w.primary)
                }
            })
            .collect();
        self.findings = results.iter().map(CheckResult::describe).collect();
        results
    }
}

/// Simulates one rollout of `spec` with `seed`; keeps each step when `steps` is true.
pub(crate) fn simulate(spec: &RolloutSpec, traffic: Traffic, seed: u64, steps: bool) -> Run {
    let mut world = World {
        spec,
        traffic,
        rng: fastrand::Rng::with_seed(seed),
        slices: VecDeque::new(),
        findings: Vec::new(),
    };
    let mut m = Machine::new(spec.clone());
    let revisions = Revisions {
        canary: Some("canary".into()),
        primary: Some("primary".into()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let mut run = Run {
        outcome: Outcome::Undecided,
        took: Duration::ZERO,
        canary_requests: 0,
        canary_failed: 0,
        primary_requests: 0,
        steps: Vec::new(),
    };
    for k in 0..MAX_STEPS {
        let at = spec.interval * k as u32;
        let before = m.status.events_total;
        world.findings.clear();
        rt.block_on(m.step(revisions.clone(), &mut world));
        if steps {
            let new = (m.status.events_total - before).min(m.status.events.len() as u64) as usize;
            run.steps.push(Step {
                at,
                phase: format!("{:?}", m.status.phase),
                weight: m.status.routing.canary_weight,
                checks: world.findings.clone(),
                events: m
                    .status
                    .events
                    .iter()
                    .skip(m.status.events.len() - new)
                    .map(|e| e.message.clone())
                    .collect(),
            });
        }
        match m.status.phase {
            Phase::Succeeded => {
                run.outcome = Outcome::Promoted;
                run.took = at;
                break;
            }
            Phase::Failed => {
                run.outcome = Outcome::RolledBack;
                run.took = at;
                break;
            }
            _ => {}
        }
        // The interval's traffic, under the routing the step left.
        world.flow(&m.status);
        if let Some(s) = world.slices.back() {
            if !m.status.routing.mirror {
                run.canary_requests += s.canary.requests;
                run.canary_failed += s.canary.errors;
            }
            run.primary_requests += s.primary.requests;
        }
        run.took = spec.interval * (k as u32 + 1);
    }
    run
}

/// What many seeded runs came to.
#[derive(Clone, Debug)]
pub(crate) struct Summary {
    /// Runs.
    pub(crate) runs: usize,
    /// Runs promoted.
    pub(crate) promoted: usize,
    /// Runs rolled back.
    pub(crate) rolled_back: usize,
    /// Time to the end, at the 50th and 90th percentiles (of the decided runs).
    pub(crate) took: (Duration, Duration),
    /// Failed canary requests (users hurt), at the 50th and 90th percentiles and the most.
    pub(crate) failed: (u64, u64, u64),
    /// Requests to the canary and the primary, medians.
    pub(crate) requests: (u64, u64),
}

/// Runs `runs` simulations with seeds from `seed` on.
pub(crate) fn summarize(spec: &RolloutSpec, traffic: Traffic, runs: usize, seed: u64) -> Summary {
    let all: Vec<Run> = (0..runs as u64)
        .map(|i| simulate(spec, traffic, seed.wrapping_add(i), false))
        .collect();
    let pct = |mut v: Vec<u64>, p: f64| -> u64 {
        if v.is_empty() {
            return 0;
        }
        v.sort_unstable();
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    let decided: Vec<u64> = all
        .iter()
        .filter(|r| r.outcome != Outcome::Undecided)
        .map(|r| r.took.as_millis() as u64)
        .collect();
    let failed: Vec<u64> = all.iter().map(|r| r.canary_failed).collect();
    Summary {
        runs,
        promoted: all
            .iter()
            .filter(|r| r.outcome == Outcome::Promoted)
            .count(),
        rolled_back: all
            .iter()
            .filter(|r| r.outcome == Outcome::RolledBack)
            .count(),
        took: (
            Duration::from_millis(pct(decided.clone(), 0.5)),
            Duration::from_millis(pct(decided, 0.9)),
        ),
        failed: (
            pct(failed.clone(), 0.5),
            pct(failed.clone(), 0.9),
            failed.iter().copied().max().unwrap_or(0),
        ),
        requests: (
            pct(all.iter().map(|r| r.canary_requests).collect(), 0.5),
            pct(all.iter().map(|r| r.primary_requests).collect(), 0.5),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::spec::{CheckSpec, Side, Strategy};

    fn spec(threshold: u32) -> RolloutSpec {
        let side = |s: &str| Side {
            host: "api".into(),
            subset: Some(s.into()),
        };
        RolloutSpec {
            name: "api".into(),
            namespace: "default".into(),
            virtual_service: "api".into(),
            primary: side("v1"),
            canary: side("v2"),
            deployment: false,
            interval: Duration::from_secs(60),
            threshold,
            steps: vec![10, 20, 30, 40, 50],
            step_promotion: None,
            checks: vec![CheckSpec {
                name: "request-success-rate".into(),
                kind: CheckKind::SuccessRate,
                window: Duration::from_secs(60),
                min: Some(99.0),
                max: None,
            }],
            skip_analysis: false,
            strategy: Strategy::Canary,
            iterations: 0,
            matches: Vec::new(),
            mirror: None,
            hooks: Vec::new(),
            affinity: None,
        }
    }

    fn traffic(canary_errors: f64) -> Traffic {
        Traffic {
            rps: 100.0,
            canary_errors,
            primary_errors: 0.001,
            latency_ms: (50.0, 50.0),
            matching: 0.1,
        }
    }

    #[test]
    fn a_healthy_canary_is_promoted_in_steps_plus_promotion() {
        let run = simulate(&spec(5), traffic(0.001), 1, true);
        assert_eq!(run.outcome, Outcome::Promoted, "{:#?}", run.steps);
        // Initialise, detect, 5 steps, promote, finalise: whole intervals.
        assert!(run.took >= Duration::from_secs(6 * 60), "{:?}", run.took);
        assert!(run.canary_requests > 0 && run.primary_requests > run.canary_requests);
        assert!(
            run.steps
                .iter()
                .any(|s| s.events.iter().any(|e| e.contains("canary weight 50")))
        );
    }

    #[test]
    fn a_bad_canary_is_rolled_back_every_time_and_plans_repeat() {
        let s = summarize(&spec(2), traffic(0.05), 50, 7);
        assert_eq!((s.rolled_back, s.promoted), (50, 0));
        // Two failed checks at 10%: rolled back after the second, with 10% of 100 rps for two
        // minutes failing 5%: about 60 failed requests.
        assert!(s.failed.0 > 20 && s.failed.0 < 150, "{s:?}");
        let again = summarize(&spec(2), traffic(0.05), 50, 7);
        assert_eq!(format!("{s:?}"), format!("{again:?}"));
    }

    #[test]
    fn failures_follow_the_rate() {
        let mut rng = fastrand::Rng::with_seed(3);
        let n = failures(&mut rng, 1_000_000, 0.01);
        // Mean 10,000, sd 99.5: ten sigmas either side.
        assert!((9_000..=11_000).contains(&n), "{n}");
        assert_eq!(failures(&mut rng, 10, 0.0), 0);
        assert_eq!(failures(&mut rng, 10, 1.0), 10);
    }
}
