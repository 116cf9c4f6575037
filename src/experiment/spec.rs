//! An experiment as its controller runs it, read from a validated `Experiment`.

use std::time::Duration;

use std::collections::BTreeMap;

use crate::config::experiment::{Experiment, Goal, OnConclusion};
use crate::config::validate::on_conclusion;
use crate::config::{ResourceSet, Spec};

/// The decision settings of one experiment.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ExperimentSpec {
    /// The Experiment's name.
    pub(crate) name: String,
    /// The VirtualService it splits.
    pub(crate) target: String,
    /// Variants, the control first: (name, subset, weight).
    pub(crate) variants: Vec<(String, String, u32)>,
    /// Goals: (name, sums values, measured by a Prometheus query).
    pub(crate) goals: Vec<(String, bool, bool)>,
    /// The Prometheus queries of goals measured there, by goal index.
    pub(crate) queries: Vec<(usize, GoalQuery)>,
    /// The goal decided on.
    pub(crate) primary: usize,
    /// 1 - confidence.
    pub(crate) alpha: f64,
    /// The lift the test is tuned for, relative (0.1 for 10%).
    pub(crate) effect: f64,
    /// Participants every variant needs before a decision.
    pub(crate) min_users: u64,
    /// Stop without a winner after this long.
    pub(crate) max_duration: Option<Duration>,
    /// What a conclusion does.
    pub(crate) on_conclusion: OnConclusion,
    /// The resource, for the canary of its winner.
    pub(crate) resource: Experiment,
}

impl ExperimentSpec {
    /// The spec of a validated Experiment named `name` (its MetricTemplates in `set`).
    pub(crate) fn new(name: &str, x: &Experiment, set: &ResourceSet) -> ExperimentSpec {
        let primary = x
            .primary_goal
            .as_ref()
            .and_then(|p| x.goals.iter().position(|g| g.name.value == p.value))
            .unwrap_or(0);
        ExperimentSpec {
            name: name.to_owned(),
            target: x.target_ref.name.value.clone(),
            variants: x
                .variants
                .iter()
                .map(|v| {
                    (
                        v.name.value.clone(),
                        v.subset.value.clone(),
                        v.weight.as_ref().map_or(1, |w| w.value),
                    )
                })
                .collect(),
            goals: x
                .goals
                .iter()
                .map(|g| {
                    (
                        g.name.value.clone(),
                        g.value == Some(true),
                        g.template_ref.is_some(),
                    )
                })
                .collect(),
            queries: x
                .goals
                .iter()
                .enumerate()
                .filter_map(|(i, g)| GoalQuery::new(g, set).map(|q| (i, q)))
                .collect(),
            primary,
            alpha: 1.0 - x.confidence.as_ref().map_or(95.0, |c| c.value) / 100.0,
            effect: x
                .minimum_detectable_effect
                .as_ref()
                .map_or(20.0, |e| e.value)
                / 100.0,
            min_users: x.min_users_per_variant.unwrap_or(100),
            max_duration: x.max_duration.map(|d| d.0),
            on_conclusion: on_conclusion(x),
            resource: x.clone(),
        }
    }

    /// The variants' weights.
    pub(crate) fn weights(&self) -> Vec<u32> {
        self.variants.iter().map(|v| v.2).collect()
    }

    /// The variant named `name`.
    pub(crate) fn variant(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.0 == name)
    }
}

/// A goal measured by Prometheus: a MetricTemplate whose query gives one variant's conversion
/// rate (a ratio between 0 and 1), run once per variant.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GoalQuery {
    /// The Prometheus address.
    pub(crate) address: String,
    /// The query, with Flagger's variables and weir's `{{ variant }}`, `{{ subset }}` and
    /// `{{ version }}`.
    pub(crate) template: String,
    /// `templateVariables`.
    pub(crate) variables: BTreeMap<String, String>,
}

impl GoalQuery {
    fn new(g: &Goal, set: &ResourceSet) -> Option<GoalQuery> {
        let t = g.template_ref.as_ref()?;
        set.resources.iter().find_map(|r| match &r.spec {
            Spec::MetricTemplate(mt) if r.name() == t.name.value => Some(GoalQuery {
                address: mt.provider.address.clone().unwrap_or_default(),
                template: mt.query.clone(),
                variables: g.template_variables.clone(),
            }),
            _ => None,
        })
    }

    /// The query for one variant, over `window` (the experiment's age).
    pub(crate) fn render(&self, spec: &ExperimentSpec, variant: usize, window: Duration) -> String {
        let (name, subset, _) = &spec.variants[variant];
        let mut vars: BTreeMap<String, String> = [
            ("name", spec.name.clone()),
            ("namespace", "default".to_owned()),
            ("target", spec.target.clone()),
            ("service", spec.target.clone()),
            ("variant", name.clone()),
            ("subset", subset.clone()),
            ("version", subset.clone()),
            ("interval", crate::rollout::prometheus::range(window)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in &self.variables {
            vars.insert(format!("variables.{k}"), v.clone());
        }
        crate::rollout::prometheus::render(&self.template, &vars)
    }
}
