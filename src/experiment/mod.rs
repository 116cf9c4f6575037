//! A/B experiments judged on business goals (issue 19): so far, the statistics of their
//! decisions (`stats.rs`), which `weir plan` uses to size an experiment.

pub(crate) mod stats;
