//! Experiments in a fleet: what an experiment needs of the store that many instances share.
//! The fleet (`crate::fleet`) implements [`Pool`]; the experiments never import it.
//!
//! Every instance counts its own participants and conversions (a participant's state is in
//! their cookie, so whichever instance answers them counts them once) and writes its running
//! totals to the store, each second they change, under a key of its own that outlives it: the
//! counts of an instance that left still count. Exactly one instance judges each experiment:
//! the one the store's election chose, as for a rollout's driver (its seat is
//! [`seat`]`(NAME)`). It adds up every instance's totals of the experiment's design, judges
//! them, and writes the experiment's state, fenced by its lease; every other instance follows
//! the stored state (its phase, decision, counts) and routes by it. Operator commands sent to
//! any instance are queued in the store for the judge.

use serde::{Deserialize, Serialize};

use crate::policy::experiment::Counts;
use crate::rollout::shared::{Pending, Shared};

/// What an experiment needs of the fleet's store, beside a rollout's seat.
pub(crate) trait Pool: Shared {
    /// Writes this instance's totals of `experiment`.
    fn publish(&self, experiment: &str, tally: String) -> Pending<'_, Result<(), String>>;
    /// This instance's totals of `experiment` as stored (to carry on after a restart).
    fn own(&self, experiment: &str) -> Pending<'_, Result<Option<String>, String>>;
    /// Every instance's totals of `experiment`.
    fn tallies(&self, experiment: &str) -> Pending<'_, Result<Vec<String>, String>>;
}

/// The seat (election, state, commands) of the experiment `name`.
pub(crate) fn seat(name: &str) -> String {
    format!("experiments/{name}")
}

/// One instance's totals of an experiment, as stored.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Tally {
    /// The variants and goals counted (totals of another design are not added up).
    pub(crate) design: Vec<String>,
    pub(crate) counts: Counts,
}

/// The totals stored in `text`, if they are of `design` and `variants` x `goals`.
pub(crate) fn read(text: &str, design: &[String], variants: usize, goals: usize) -> Option<Counts> {
    let t: Tally = serde_json::from_str(text).ok()?;
    (t.design == design && t.counts.has_shape(variants, goals)).then_some(t.counts)
}

/// The sum of every instance's totals of `design` (others, and unreadable ones, left out).
pub(crate) fn sum(tallies: &[String], design: &[String], variants: usize, goals: usize) -> Counts {
    let mut total = Counts {
        users: vec![0; variants],
        conversions: vec![vec![0; goals]; variants],
        values: vec![vec![Default::default(); goals]; variants],
    };
    for t in tallies {
        if let Some(c) = read(t, design, variants, goals) {
            total.merge(&c);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::experiment::Moments;

    fn tally(design: &[&str], users: [u64; 2], bought: [u64; 2], paid: f64) -> String {
        let m = |x: f64| Moments {
            sum: x,
            sum_squares: x * x,
        };
        serde_json::to_string(&Tally {
            design: design.iter().map(|s| (*s).to_owned()).collect(),
            counts: Counts {
                users: users.to_vec(),
                conversions: vec![vec![bought[0]], vec![bought[1]]],
                values: vec![vec![m(paid)], vec![m(0.0)]],
            },
        })
        .unwrap()
    }

    #[test]
    fn adds_up_the_instances_of_the_same_design() {
        let design = ["control=v1".to_owned(), "new=v2".to_owned()];
        let d = ["control=v1", "new=v2"];
        let tallies = [
            tally(&d, [10, 12], [1, 3], 5.0),
            tally(&d, [7, 5], [2, 0], 2.0),
            // Before the experiment was changed: not added.
            tally(&["control=v1", "new=v3"], [100, 100], [50, 50], 9.0),
            // Unreadable, and of another shape: not added.
            "{".to_owned(),
            serde_json::to_string(&Tally {
                design: design.to_vec(),
                counts: Counts {
                    users: vec![1, 2, 3],
                    ..Counts::default()
                },
            })
            .unwrap(),
        ];
        let total = sum(&tallies, &design, 2, 1);
        assert_eq!(total.users, [17, 17]);
        assert_eq!(total.conversions, [[3], [3]]);
        assert_eq!(total.values[0][0].sum, 7.0);
        assert_eq!(total.values[0][0].sum_squares, 29.0);
        assert_eq!(sum(&[], &design, 2, 1).users, [0, 0]);
    }
}
