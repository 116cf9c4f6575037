//! weir's `Experiment`: its variants against the target's routes, its assignment, goals and
//! decision settings, and the canary of its winner; compiled into the design the request path
//! runs ([`crate::policy::experiment`]).

use super::*;
use crate::config::decode::Spanned;
use crate::config::experiment::{Experiment, OnConclusion};
use crate::config::flagger::{CanaryAnalysis, TargetRef};
use crate::policy::experiment::{Design, GoalRule, Key, Meet, RuleExperiment};

/// At most this many goals (each takes a bit of the participant's cookie).
const MAX_GOALS: usize = 32;
/// At most this many variants.
const MAX_VARIANTS: usize = 16;
/// The state cookie's lifetime when `maxAge` is not set: 30 days.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(720 * 3600);

/// An experiment as validated: its design, the identity its counts are kept under, and the
/// variants' subsets and weights.
#[derive(Debug)]
pub struct ExperimentModel {
    /// Same identity, same counts: the name, the variants and the goals (not the weights,
    /// which only change where new participants go).
    pub identity: String,
    /// What the request path runs.
    pub design: Arc<Design>,
    /// The VirtualService it splits.
    pub(super) target: String,
    /// (subset, weight) per variant.
    pub(super) variants: Vec<(String, u32)>,
}

/// Variant and variable names: letters, digits and `-`.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl<'a> Checker<'a> {
    /// Every Experiment: checked and compiled, before the routes are built (they take their
    /// variants from it).
    pub(super) fn experiments(&mut self, set: &'a ResourceSet) {
        let mut cookies: HashMap<String, &Resource> = HashMap::new();
        for r in &set.resources {
            let Spec::Experiment(x) = &r.spec else {
                continue;
            };
            let Some(model) = self.experiment(r, x, set) else {
                continue;
            };
            if let Some(first) = cookies.insert(model.design.cookie.clone(), r) {
                let at = first.location();
                self.err(
                    r,
                    x.pos,
                    format!(
                        "cookie `{}` is already used by the experiment at {at}: give each experiment its own assignment.cookieName",
                        model.design.cookie
                    ),
                );
                continue;
            }
            if let Some(&other) = self.experiment_of.get(&model.target) {
                let other = self.experiments[other].design.name.clone();
                self.err(
                    r,
                    x.target_ref.name.pos,
                    format!(
                        "VirtualService `{}` already runs experiment `{other}`: one experiment per VirtualService",
                        model.target
                    ),
                );
                continue;
            }
            self.experiment_of
                .insert(model.target.clone(), self.experiments.len());
            self.experiments.push(model);
        }
    }

    fn experiment(
        &mut self,
        r: &Resource,
        x: &Experiment,
        set: &ResourceSet,
    ) -> Option<ExperimentModel> {
        let name = r.name().to_owned();
        let target = &x.target_ref;
        // Without a targetRef (line 0) decoding has said so.
        if target.kind.pos.line == 0 {
            return None;
        }
        if target.kind.value != "VirtualService" {
            self.err(
                r,
                target.kind.pos,
                format!(
                    "targetRef kind `{}` is not supported: an experiment splits a VirtualService's routes",
                    target.kind.value
                ),
            );
            return None;
        }
        let Some(vs) = set.resources.iter().find_map(|v| match &v.spec {
            Spec::VirtualService(vs) if v.name() == target.name.value => Some(vs),
            _ => None,
        }) else {
            self.err(
                r,
                target.name.pos,
                format!("VirtualService `{}` is not defined", target.name.value),
            );
            return None;
        };
        let ok = self.errors.len();
        // Variants.
        if x.variants.len() < 2 || x.variants.len() > MAX_VARIANTS {
            self.err(
                r,
                x.pos,
                format!(
                    "an experiment needs 2 to {MAX_VARIANTS} variants (the first is the control)"
                ),
            );
            return None;
        }
        let mut names: Vec<String> = Vec::new();
        for v in &x.variants {
            if !plain_name(&v.name.value) {
                self.err(
                    r,
                    v.name.pos,
                    format!(
                        "variant name `{}` must be 1 to 63 letters, digits or `-`",
                        v.name.value
                    ),
                );
            } else if names.contains(&v.name.value) {
                self.err(
                    r,
                    v.name.pos,
                    format!("duplicate variant `{}`", v.name.value),
                );
            }
            names.push(v.name.value.clone());
        }
        let weights: Vec<u32> = x
            .variants
            .iter()
            .map(|v| v.weight.as_ref().map_or(1, |w| w.value))
            .collect();
        if weights.iter().all(|&w| w == 0) || weights.iter().any(|&w| w > 1_000_000) {
            self.err(
                r,
                x.pos,
                "variant weights are relative: at least one above 0, none above 1000000",
            );
        }
        // The route's destination host with every variant's subset.
        let hosts: Vec<String> = vs
            .http
            .iter()
            .flat_map(|h| &h.route)
            .map(|d| d.destination.host.value.to_ascii_lowercase())
            .collect();
        let has_subsets = |c: &Self, host: &str| {
            c.rules.get(host).is_some_and(|(_, dr)| {
                x.variants
                    .iter()
                    .all(|v| dr.subsets.iter().any(|s| s.name.value == v.subset.value))
            })
        };
        if !hosts.iter().any(|h| has_subsets(self, h)) {
            for v in &x.variants {
                let defined = hosts.iter().any(|h| {
                    self.rules.get(h).is_some_and(|(_, dr)| {
                        dr.subsets.iter().any(|s| s.name.value == v.subset.value)
                    })
                });
                if !defined {
                    self.err(
                        r,
                        v.subset.pos,
                        format!(
                            "subset `{}` is not defined by a DestinationRule of a host VirtualService `{}` routes to",
                            v.subset.value, target.name.value
                        ),
                    );
                }
            }
            if self.errors.len() == ok {
                self.err(
                    r,
                    x.pos,
                    format!(
                        "no host VirtualService `{}` routes to has every variant's subset in one DestinationRule",
                        target.name.value
                    ),
                );
            }
        }
        // Who takes part.
        let participants: Vec<RequestMatch> = x
            .matches
            .iter()
            .filter_map(|m| self.request_match(r, m))
            .collect();
        // Assignment.
        let a = x.assignment.clone().unwrap_or_default();
        let cookie = match &a.cookie_name {
            Some(c) => c.value.clone(),
            None => format!("weir-exp-{name}"),
        };
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        if !token(&cookie) {
            let pos = a.cookie_name.as_ref().map_or(a.pos, |c| c.pos);
            self.err(r, pos, format!("`{cookie}` is not a valid cookie name"));
        }
        let key = match &a.header {
            None => Key::Cookie,
            Some(h) => match HeaderName::from_bytes(h.value.as_bytes()) {
                Ok(name) => Key::Header(name),
                Err(_) => {
                    self.err(
                        r,
                        h.pos,
                        format!("`{}` is not a valid header name", h.value),
                    );
                    Key::Cookie
                }
            },
        };
        if let Some(s) = &a.same_site
            && !matches!(s.as_str(), "Strict" | "Lax" | "None")
        {
            self.err(r, a.pos, "sameSite must be Strict, Lax or None");
        }
        let max_age = a.max_age.map_or(DEFAULT_MAX_AGE, |d| d.0);
        let mut attributes = format!("; Max-Age={}", max_age.as_secs());
        if let Some(d) = &a.domain {
            attributes.push_str(&format!("; Domain={d}"));
        }
        attributes.push_str(&format!("; Path={}", a.path.as_deref().unwrap_or("/")));
        attributes.push_str("; HttpOnly");
        if a.secure == Some(true) {
            attributes.push_str("; Secure");
        }
        attributes.push_str(&format!(
            "; SameSite={}",
            a.same_site.as_deref().unwrap_or("Lax")
        ));
        if HeaderValue::from_str(&attributes).is_err() {
            self.err(
                r,
                a.pos,
                "assignment domain and path must be header-safe text",
            );
        }
        // Goals.
        if x.goals.is_empty() || x.goals.len() > MAX_GOALS {
            self.err(
                r,
                x.pos,
                format!("an experiment needs 1 to {MAX_GOALS} goals"),
            );
        }
        let mut goals = Vec::new();
        for g in &x.goals {
            if !plain_name(&g.name.value) {
                self.err(
                    r,
                    g.name.pos,
                    format!(
                        "goal name `{}` must be 1 to 63 letters, digits or `-`",
                        g.name.value
                    ),
                );
            } else if goals.iter().any(|o: &GoalRule| o.name == g.name.value) {
                self.err(r, g.name.pos, format!("duplicate goal `{}`", g.name.value));
            }
            let ways = [
                !g.matches.is_empty(),
                g.response_header.is_some(),
                g.template_ref.is_some(),
            ];
            if ways.iter().filter(|w| **w).count() != 1 {
                self.err(
                    r,
                    g.pos,
                    format!(
                        "goal `{}` needs exactly one of match, responseHeader, templateRef",
                        g.name.value
                    ),
                );
                continue;
            }
            if g.value == Some(true) && g.response_header.is_none() {
                self.err(
                    r,
                    g.pos,
                    format!(
                        "goal `{}`: value applies to responseHeader goals",
                        g.name.value
                    ),
                );
            }
            let meet = if let Some(h) = &g.response_header {
                match HeaderName::from_bytes(h.value.as_bytes()) {
                    Ok(name) => Meet::Header {
                        name,
                        value: g.value == Some(true),
                    },
                    Err(_) => {
                        self.err(
                            r,
                            h.pos,
                            format!("`{}` is not a valid header name", h.value),
                        );
                        continue;
                    }
                }
            } else if let Some(t) = &g.template_ref {
                self.metric_template(r, &g.name.value, t, set);
                Meet::Query
            } else {
                Meet::Request(
                    g.matches
                        .iter()
                        .filter_map(|m| self.request_match(r, m))
                        .collect(),
                )
            };
            goals.push(GoalRule {
                name: g.name.value.clone(),
                meet,
            });
        }
        if let Some(p) = &x.primary_goal
            && !x.goals.iter().any(|g| g.name.value == p.value)
        {
            self.err(
                r,
                p.pos,
                format!("primaryGoal `{}` is not one of the goals", p.value),
            );
        }
        if let Some(c) = &x.confidence
            && !(c.value > 50.0 && c.value < 100.0)
        {
            self.err(
                r,
                c.pos,
                "confidence must be a percentage above 50 and below 100",
            );
        }
        if let Some(e) = &x.minimum_detectable_effect
            && !(e.value > 0.0 && e.value <= 1000.0)
        {
            self.err(
                r,
                e.pos,
                "minimumDetectableEffect is a lift in percent, above 0 and at most 1000",
            );
        }
        // Guardrails and the winner's rollout: checked as the Canary they become.
        let rollout = on_conclusion(x) == OnConclusion::Rollout;
        if rollout
            && set.resources.iter().any(|c| {
                matches!(c.spec, Spec::Canary(_))
                    && c.name() == name
                    && !c.metadata.annotations.contains_key(GENERATED_BY)
            })
        {
            self.err(
                r,
                x.pos,
                format!("a Canary named `{name}` exists: the winner of experiment `{name}` is rolled out by a Canary of that name"),
            );
        }
        for v in x.variants.iter().skip(1) {
            let canary = winner_canary(x, &v.subset.value);
            self.canary(r, &canary, set);
            if !rollout {
                break;
            }
        }
        if self.errors.len() != ok {
            return None;
        }
        let identity = format!(
            "{name}|{}|{}|{:?}",
            x.variants
                .iter()
                .map(|v| format!("{}={}", v.name.value, v.subset.value))
                .collect::<Vec<_>>()
                .join(","),
            goals
                .iter()
                .map(|g| format!("{}:{}", g.name, g.sums()))
                .collect::<Vec<_>>()
                .join(","),
            key
        );
        Some(ExperimentModel {
            identity,
            design: Arc::new(Design {
                salt: crate::backend::hash::hash_bytes(name.as_bytes()),
                name,
                participants,
                variants: names,
                key,
                cookie,
                attributes,
                goals,
            }),
            target: target.name.value.clone(),
            variants: x
                .variants
                .iter()
                .zip(weights)
                .map(|(v, w)| (v.subset.value.clone(), w))
                .collect(),
        })
    }

    fn metric_template(
        &mut self,
        r: &Resource,
        goal: &str,
        t: &crate::config::flagger::CrossRef,
        set: &ResourceSet,
    ) {
        let template = set.resources.iter().find_map(|x| match &x.spec {
            Spec::MetricTemplate(mt) if x.name() == t.name.value => Some(mt),
            _ => None,
        });
        match template {
            None => self.err(
                r,
                t.name.pos,
                format!("MetricTemplate `{}` is not defined", t.name.value),
            ),
            Some(mt)
                if mt.provider.kind.value != "prometheus"
                    || !mt
                        .provider
                        .address
                        .as_deref()
                        .is_some_and(|a| a.starts_with("http://")) =>
            {
                self.err(
                    r,
                    t.name.pos,
                    format!(
                        "goal `{goal}`: MetricTemplate `{}` needs a prometheus provider with an http:// address",
                        t.name.value
                    ),
                )
            }
            Some(_) => {}
        }
    }

    /// The variants of one rule of an experiment's VirtualService: its destinations must all
    /// be one host with every variant's subset; other rules are left as they are.
    pub(super) fn rule_experiment(
        &mut self,
        r: &Resource,
        route: &istio::HttpRoute,
        label: &str,
    ) -> Option<Box<RuleExperiment>> {
        let &index = self.experiment_of.get(r.name())?;
        let first = route.route.first()?;
        let host = first.destination.host.value.to_ascii_lowercase();
        if route
            .route
            .iter()
            .any(|d| !d.destination.host.value.eq_ignore_ascii_case(&host))
        {
            return None;
        }
        let port = first.destination.port.as_ref().map(|p| p.number as u16);
        let variants = self.experiments[index].variants.clone();
        let defined = self.rules.get(&host).is_some_and(|(_, dr)| {
            variants
                .iter()
                .all(|(s, _)| dr.subsets.iter().any(|d| d.name.value == *s))
        });
        if !defined {
            return None;
        }
        let dests = variants
            .iter()
            .map(|(subset, weight)| {
                self.dest(
                    &host,
                    Some(subset),
                    port,
                    label,
                    HeaderEdits::default(),
                    *weight,
                )
            })
            .collect();
        Some(Box::new(RuleExperiment {
            experiment: index,
            variants: Split::new(dests),
        }))
    }
}

/// What a conclusion does: as written, else a rollout.
pub(crate) fn on_conclusion(x: &Experiment) -> OnConclusion {
    x.on_conclusion
        .as_ref()
        .map_or(OnConclusion::Rollout, |o| o.value)
}

/// The Canary that rolls `winner` (a subset) out in place of the control: the experiment's
/// VirtualService, `rollout.analysis` (Flagger's defaults where it is silent), and the
/// guardrails among its metrics.
pub(crate) fn winner_canary(x: &Experiment, winner: &str) -> Canary {
    let mut analysis: CanaryAnalysis = x
        .rollout
        .as_ref()
        .and_then(|r| r.analysis.clone())
        .unwrap_or_else(|| CanaryAnalysis {
            pos: x.pos,
            ..CanaryAnalysis::default()
        });
    for g in &x.guardrails {
        if !analysis
            .metrics
            .iter()
            .any(|m| m.name.value == g.name.value)
        {
            analysis.metrics.push(g.clone());
        }
    }
    let control = x.variants.first();
    Canary {
        pos: x.pos,
        target_ref: TargetRef {
            pos: x.target_ref.pos,
            api_version: x.target_ref.api_version.clone(),
            kind: x.target_ref.kind.clone(),
            name: x.target_ref.name.clone(),
        },
        analysis: Some(analysis),
        primary_subset: control.map(|v| v.subset.clone()),
        canary_subset: control.map(|v| Spanned {
            pos: v.subset.pos,
            value: winner.to_owned(),
        }),
        ..Canary::default()
    }
}
