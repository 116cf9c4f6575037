//! Judging an experiment's counts: each variant's rate with its interval, its lift against the
//! control, the sample-ratio check and the decision, explained. Pure: the controller calls
//! [`judge`] every second with the counts so far and the tests it keeps between looks.

use serde::{Deserialize, Serialize};

use super::spec::ExperimentSpec;
use super::stats::{AlwaysValid, normal_quantile, sample_ratio_p, sequence_radius, wilson};
use crate::policy::experiment::Counts;

/// Below this p-value the participants per variant do not fit the weights: the assignment is
/// broken (a threshold as strict as the industry's SRM checks use).
pub(crate) const SRM_P: f64 = 0.001;

/// One variant and one goal.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct GoalView {
    /// Participants who met it.
    pub(crate) conversions: u64,
    /// Conversions per participant.
    pub(crate) rate: f64,
    /// The rate's interval at the experiment's confidence (Wilson).
    pub(crate) interval: [f64; 2],
    /// Value goals: the sum, and the mean per participant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) value: Option<ValueView>,
    /// Against the control (treatments only): relative lift and its always-valid interval,
    /// in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) lift: Option<Lift>,
}

/// A value goal's figures for one variant.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct ValueView {
    /// Sum of every conversion's value.
    pub(crate) sum: f64,
    /// Per participant.
    pub(crate) mean: f64,
}

/// A lift and its interval, in percent of the control.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Lift {
    /// Relative lift, percent.
    pub(crate) percent: f64,
    /// Its always-valid interval, percent.
    pub(crate) interval: [f64; 2],
    /// The always-valid p-value of the difference.
    #[serde(rename = "pValue")]
    pub(crate) p_value: f64,
}

/// The sample-ratio check.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Srm {
    /// Chi-square p-value of the participants per variant against the weights.
    #[serde(rename = "pValue")]
    pub(crate) p_value: f64,
    /// Whether they do not fit: the experiment is broken and no decision is made.
    pub(crate) mismatch: bool,
}

/// What the counts say now.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub(crate) struct Decision {
    /// The variant that won, when one did.
    pub(crate) winner: Option<String>,
    /// Confidence in the winner, percent.
    pub(crate) confidence: Option<f64>,
    /// Why, in a sentence.
    pub(crate) reason: String,
}

/// The tests kept between looks: per treatment, the always-valid test of the primary goal
/// (its mixing variance is fixed at the first look with enough participants).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Tests {
    /// Per treatment: (τ², p so far); `None` before the first look.
    pub(crate) looks: Vec<Option<(f64, f64)>>,
}

/// The whole judgement.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Judged {
    /// Per variant, per goal.
    pub(crate) goals: Vec<Vec<GoalView>>,
    /// The sample-ratio check.
    pub(crate) srm: Srm,
    /// The decision.
    pub(crate) decision: Decision,
}

/// One variant's mean per participant on goal `g`, and its variance.
fn moments(spec: &ExperimentSpec, c: &Counts, v: usize, g: usize) -> (f64, f64, u64) {
    let n = c.users[v];
    if n == 0 {
        return (0.0, 0.0, 0);
    }
    let nf = n as f64;
    if spec.goals[g].1 {
        let m = c.values[v][g];
        let mean = m.sum / nf;
        (mean, (m.sum_squares / nf - mean * mean).max(0.0), n)
    } else {
        let p = c.conversions[v][g] as f64 / nf;
        (p, p * (1.0 - p), n)
    }
}

/// Judges the counts `c`, taking a look with each test; the sample ratio is checked on
/// `since` (the participants since the weights last changed) against `weights`.
pub(crate) fn judge(
    spec: &ExperimentSpec,
    c: &Counts,
    since: &[u64],
    weights: &[u32],
    tests: &mut Tests,
) -> Judged {
    let k = spec.variants.len();
    let z = normal_quantile(1.0 - spec.alpha / 2.0);
    // Several treatments share the error rate (Bonferroni).
    let alpha = spec.alpha / (k - 1).max(1) as f64;
    tests.looks.resize(k - 1, None);
    let p = spec.primary;
    let enough = c.users.iter().all(|&u| u >= spec.min_users.max(1));
    let srm_p = sample_ratio_p(since, weights);
    let srm = Srm {
        p_value: srm_p,
        mismatch: srm_p < SRM_P && since.iter().sum::<u64>() >= 100,
    };
    let mut goals: Vec<Vec<GoalView>> = Vec::with_capacity(k);
    for v in 0..k {
        let mut row = Vec::with_capacity(spec.goals.len());
        for (g, (_, sums, _)) in spec.goals.iter().enumerate() {
            let n = c.users[v];
            let conversions = c.conversions[v][g];
            let (lo, hi) = wilson(conversions, n, z);
            let value = sums.then(|| {
                let sum = c.values[v][g].sum;
                ValueView {
                    sum,
                    mean: if n == 0 { 0.0 } else { sum / n as f64 },
                }
            });
            row.push(GoalView {
                conversions,
                rate: if n == 0 {
                    0.0
                } else {
                    conversions as f64 / n as f64
                },
                interval: [lo, hi],
                value,
                lift: None,
            });
        }
        goals.push(row);
    }
    // The primary goal's tests, and every goal's lift.
    #[allow(clippy::needless_range_loop)] // t and g index the counts, the tests and the views
    for t in 1..k {
        for g in 0..spec.goals.len() {
            let (m0, v0, n0) = moments(spec, c, 0, g);
            let (m1, v1, n1) = moments(spec, c, t, g);
            if n0 == 0 || n1 == 0 || m0 <= 0.0 {
                continue;
            }
            let theta = m1 - m0;
            let var = if spec.goals[g].1 {
                v0 / n0 as f64 + v1 / n1 as f64
            } else {
                // Pooled under the null, as the test of proportions.
                let pooled = (c.conversions[0][g] + c.conversions[t][g]) as f64 / (n0 + n1) as f64;
                pooled * (1.0 - pooled) * (1.0 / n0 as f64 + 1.0 / n1 as f64)
            };
            let tau2 = (spec.effect * m0).powi(2).max(1e-12);
            let look = &mut tests.looks[t - 1];
            let p_value = if g == p && enough {
                let mut test = match look {
                    Some((tau2, p)) => AlwaysValid::resume(tau2.sqrt(), *p),
                    None => AlwaysValid::new(tau2.sqrt()),
                };
                test.look_at(theta, var);
                *look = Some((test.tau2(), test.p()));
                test.p()
            } else if g == p {
                look.map_or(1.0, |(_, p)| p)
            } else {
                // Secondary goals: the evidence of this look alone, for display.
                (1.0 / super::stats::mixture_ratio(theta, var, tau2)).min(1.0)
            };
            let tau2 = if g == p {
                look.map_or(tau2, |(t, _)| t)
            } else {
                tau2
            };
            let unpooled = v0 / n0 as f64 + v1 / n1 as f64;
            let r = sequence_radius(unpooled.max(var * 0.25), tau2, spec.alpha);
            let lift = |d: f64| 100.0 * d / m0;
            goals[t][g].lift = Some(Lift {
                percent: lift(theta),
                interval: [lift(theta - r), lift(theta + r)],
                p_value,
            });
        }
    }
    let decision = decide(spec, c, &goals, &srm, enough, alpha);
    Judged {
        goals,
        srm,
        decision,
    }
}

fn decide(
    spec: &ExperimentSpec,
    c: &Counts,
    goals: &[Vec<GoalView>],
    srm: &Srm,
    enough: bool,
    alpha: f64,
) -> Decision {
    let p = spec.primary;
    let users: u64 = c.users.iter().sum();
    let waiting = |reason: String| Decision {
        winner: None,
        confidence: None,
        reason,
    };
    if srm.mismatch {
        let shares: Vec<String> = spec
            .variants
            .iter()
            .zip(&c.users)
            .map(|((name, _, w), u)| format!("{name} {u} (weight {w})"))
            .collect();
        return waiting(format!(
            "SAMPLE RATIO MISMATCH: participants {} do not fit the weights (p = {:.1e}); the assignment is broken, no decision is made",
            shares.join(", "),
            srm.p_value
        ));
    }
    if !enough {
        let least = c.users.iter().min().copied().unwrap_or(0);
        return waiting(format!(
            "waiting for participants: {least} of {} in the smallest variant",
            spec.min_users
        ));
    }
    let describe = |t: usize, g: &GoalView| -> String {
        let control = &goals[0][p];
        let lift = g.lift.as_ref();
        let (pct, lo, hi) = lift.map_or((0.0, 0.0, 0.0), |l| {
            (l.percent, l.interval[0], l.interval[1])
        });
        let figure = |v: &GoalView| match &v.value {
            Some(x) => format!("{:.2} per user", x.mean),
            None => format!("{:.1}%", v.rate * 100.0),
        };
        format!(
            "{} {} {} vs {} ({:+.0}%, {:.0}% interval {:+.0}%..{:+.0}%)",
            spec.variants[t].0,
            if g.value.is_some() {
                "brings"
            } else {
                "converts"
            },
            figure(g),
            figure(control),
            pct,
            (1.0 - spec.alpha) * 100.0,
            lo,
            hi
        )
    };
    // The treatments whose difference is established, better or worse.
    let mut better: Vec<(usize, f64, f64)> = Vec::new();
    let mut worse = 0;
    for (t, row) in goals.iter().enumerate().skip(1) {
        let Some(l) = &row[p].lift else { continue };
        if l.p_value < alpha {
            if l.percent > 0.0 {
                better.push((t, l.percent, l.p_value));
            } else {
                worse += 1;
            }
        }
    }
    if let Some(&(t, _, pv)) = better.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        let confidence = 100.0 * (1.0 - pv);
        return Decision {
            winner: Some(spec.variants[t].0.clone()),
            confidence: Some(confidence),
            reason: format!(
                "{} with {:.1}% confidence after {users} users: winner",
                describe(t, &goals[t][p]),
                confidence.min(99.9)
            ),
        };
    }
    if worse == spec.variants.len() - 1 {
        let pv = goals
            .iter()
            .skip(1)
            .filter_map(|r| r[p].lift.as_ref().map(|l| l.p_value))
            .fold(0.0, f64::max);
        let confidence = 100.0 * (1.0 - pv);
        let all: Vec<String> = (1..goals.len())
            .map(|t| describe(t, &goals[t][p]))
            .collect();
        return Decision {
            winner: Some(spec.variants[0].0.clone()),
            confidence: Some(confidence),
            reason: format!(
                "{} with {:.1}% confidence after {users} users: {} stays",
                all.join("; "),
                confidence.min(99.9),
                spec.variants[0].0
            ),
        };
    }
    let best = (1..goals.len())
        .filter(|&t| goals[t][p].lift.is_some())
        .max_by(|&a, &b| {
            let l = |t: usize| goals[t][p].lift.as_ref().map_or(0.0, |l| l.percent);
            l(a).total_cmp(&l(b))
        });
    match best {
        Some(t) => {
            let pv = goals[t][p].lift.as_ref().map_or(1.0, |l| l.p_value);
            waiting(format!(
                "{} with {:.1}% confidence after {users} users: not yet conclusive (needs {:.0}%)",
                describe(t, &goals[t][p]),
                100.0 * (1.0 - pv),
                100.0 * (1.0 - alpha)
            ))
        }
        None => waiting(format!(
            "no conversions of `{}` in the control yet after {users} users",
            spec.goals[p].0
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::experiment::Experiment;
    use crate::policy::experiment::Moments;

    fn spec(min_users: u64) -> ExperimentSpec {
        ExperimentSpec {
            name: "exp".into(),
            target: "shop".into(),
            variants: vec![
                ("control".into(), "v1".into(), 50),
                ("new-ui".into(), "v2".into(), 50),
            ],
            goals: vec![("purchase".into(), false, false)],
            primary: 0,
            alpha: 0.05,
            effect: 0.1,
            min_users,
            max_duration: None,
            on_conclusion: crate::config::experiment::OnConclusion::Rollout,
            resource: Experiment::default(),
            queries: Vec::new(),
        }
    }

    fn counts(users: [u64; 2], conversions: [u64; 2]) -> Counts {
        Counts {
            users: users.to_vec(),
            conversions: conversions.iter().map(|&c| vec![c]).collect(),
            values: vec![vec![Moments::default()]; 2],
        }
    }

    /// One simulated experiment judged after every `look` pairs of users, as the controller
    /// does every second: the winner and the users per variant when it was declared.
    fn run(seed: u64, p0: f64, p1: f64, max: u64, look: u64) -> Option<(String, u64)> {
        let s = spec(100);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut c = counts([0, 0], [0, 0]);
        let mut tests = Tests::default();
        while c.users[0] < max {
            for _ in 0..look {
                for (v, p) in [p0, p1].into_iter().enumerate() {
                    c.users[v] += 1;
                    c.conversions[v][0] += u64::from(rng.f64() < p);
                }
            }
            let j = judge(&s, &c, &c.users.clone(), &[50, 50], &mut tests);
            if let Some(w) = j.decision.winner {
                return Some((w, c.users[0]));
            }
        }
        None
    }

    #[test]
    fn a_clear_winner_is_found_and_explained() {
        let mut s = spec(100);
        s.effect = 0.5;
        let mut tests = Tests::default();
        let c = counts([500, 500], [50, 100]);
        let j = judge(&s, &c, &c.users, &[50, 50], &mut tests);
        assert_eq!(j.decision.winner.as_deref(), Some("new-ui"), "{j:?}");
        assert!(
            j.decision
                .reason
                .starts_with("new-ui converts 20.0% vs 10.0% (+100%, 95% interval +"),
            "{}",
            j.decision.reason
        );
        assert!(j.decision.reason.ends_with("after 1000 users: winner"));
        let lift = j.goals[1][0].lift.as_ref().unwrap();
        assert!(
            lift.interval[0] > 0.0 && lift.interval[1] > lift.percent,
            "{lift:?}"
        );
        assert!(j.decision.confidence.unwrap() > 99.0);
    }

    #[test]
    fn a_control_looked_at_continuously_rarely_loses_to_itself() {
        // A/A at 10%, judged after every 10 users per variant up to 5,000: at least 95% of
        // 200 seeded runs declare no winner.
        let false_winners = (0..200)
            .filter(|&s| run(s, 0.1, 0.1, 5_000, 10).is_some())
            .count();
        assert!(false_winners <= 10, "{false_winners} of 200");
    }

    #[test]
    fn ten_against_twenty_percent_picks_the_right_winner() {
        for seed in 0..20 {
            let (w, _) = run(500 + seed, 0.1, 0.2, 5_000, 10).expect("a winner");
            assert_eq!(w, "new-ui");
        }
    }

    #[test]
    fn a_skewed_assignment_is_flagged_and_not_decided() {
        let s = spec(100);
        let mut tests = Tests::default();
        let c = counts([600, 400], [60, 80]);
        let j = judge(&s, &c, &c.users, &[50, 50], &mut tests);
        assert!(j.srm.mismatch && j.srm.p_value < 1e-9, "{j:?}");
        assert_eq!(j.decision.winner, None);
        assert!(j.decision.reason.starts_with("SAMPLE RATIO MISMATCH"));
    }

    #[test]
    fn no_decision_before_the_minimum() {
        let s = spec(1_000);
        let c = counts([500, 500], [10, 200]);
        let j = judge(&s, &c, &c.users, &[50, 50], &mut Tests::default());
        assert_eq!(j.decision.winner, None);
        assert!(
            j.decision
                .reason
                .contains("waiting for participants: 500 of 1000")
        );
    }
}
