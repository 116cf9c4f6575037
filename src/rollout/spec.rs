//! A `Canary` as the controller runs it: what is released, how weights move, what is checked.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::flagger::{Canary, CanaryMetric, CanaryWebhook};
use crate::config::generate::deployment_services;
use crate::config::istio::SessionAffinity;
use crate::config::istio::{Destination, HttpMatchRequest};
use crate::config::{ResourceSet, Spec};

/// Flagger's default analysis interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Flagger's default metric window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
/// Flagger's default webhook timeout.
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// A rollout of a canary subset of a VirtualService's destination.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RolloutSpec {
    /// The Canary's name.
    pub(crate) name: String,
    /// The Canary's namespace (`default` when unset), for webhook payloads.
    pub(crate) namespace: String,
    /// The VirtualService whose weights are managed (generated for a Deployment target).
    pub(crate) virtual_service: String,
    /// The stable version.
    pub(crate) primary: Side,
    /// The new version.
    pub(crate) canary: Side,
    /// A Deployment target (`X-primary` / `X-canary` services): after promotion, traffic
    /// returns to the primary once its endpoints change.
    pub(crate) deployment: bool,
    /// Time between steps.
    pub(crate) interval: Duration,
    /// Failed checks that roll back.
    pub(crate) threshold: u32,
    /// Canary weights to go through, in order (the last is the highest before promotion).
    pub(crate) steps: Vec<u32>,
    /// Weight added per interval while promoting (`None`: all at once).
    pub(crate) step_promotion: Option<u32>,
    /// Checks run at every step.
    pub(crate) checks: Vec<CheckSpec>,
    /// Promote without analysis.
    pub(crate) skip_analysis: bool,
    /// How traffic reaches the canary while it is analysed.
    pub(crate) strategy: Strategy,
    /// Analysis iterations before promotion (A/B testing and blue-green).
    pub(crate) iterations: u32,
    /// A/B testing: the requests that go to the canary.
    pub(crate) matches: Vec<HttpMatchRequest>,
    /// Blue-green: the share of traffic mirrored to the canary while it is analysed.
    pub(crate) mirror: Option<f64>,
    /// Webhooks, in the order written.
    pub(crate) hooks: Vec<HookSpec>,
    /// Canary strategy: keep each user on the version they first got while weights move.
    pub(crate) affinity: Option<SessionAffinity>,
}

/// One version of a rollout: a subset of a service (VirtualService targets), or a service
/// (`X-primary`, `X-canary` of Deployment targets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Side {
    /// The service host, lower case.
    pub(crate) host: String,
    /// The subset, if the version is one.
    pub(crate) subset: Option<String>,
}

impl Side {
    /// Whether `d` sends to this version.
    pub(crate) fn is(&self, d: &Destination) -> bool {
        d.host.value.eq_ignore_ascii_case(&self.host)
            && d.subset.as_ref().map(|s| &s.value) == self.subset.as_ref()
    }

    /// The `version` label of its metrics (the subset, empty without).
    pub(crate) fn version(&self) -> &str {
        self.subset.as_deref().unwrap_or("")
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.subset.as_deref().unwrap_or(&self.host))
    }
}

/// Flagger's strategies, chosen as Flagger chooses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum Strategy {
    /// Weights step up to `maxWeight`.
    Canary,
    /// `match` + `iterations`: matching requests go to the canary.
    AbTesting,
    /// `iterations` alone: the canary gets no user traffic (but mirrored copies) until all of
    /// it switches at promotion.
    BlueGreen,
}

/// A webhook.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HookSpec {
    /// When it is called.
    pub(crate) kind: HookKind,
    /// Name.
    pub(crate) name: String,
    /// Where.
    pub(crate) url: String,
    /// Per call.
    pub(crate) timeout: Duration,
    /// Further calls after a failed one.
    pub(crate) retries: u32,
    /// The payload's `metadata`.
    pub(crate) metadata: BTreeMap<String, String>,
}

/// Flagger's webhook types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookKind {
    /// A gate before the analysis starts.
    ConfirmRollout,
    /// Before traffic shifts; a failure is a failed check.
    PreRollout,
    /// Every analysis step, before the metric checks; a failure is a failed check.
    Rollout,
    /// A gate before each weight increase.
    ConfirmTrafficIncrease,
    /// A gate before promotion.
    ConfirmPromotion,
    /// After promotion or rollback; failures are logged.
    PostRollout,
    /// While analysing: a 2xx rolls back.
    Rollback,
    /// Every event.
    Event,
}

impl HookKind {
    /// The kind named by a webhook's `type` (Flagger's default: `rollout`).
    pub(crate) fn parse(name: Option<&str>) -> Option<HookKind> {
        Some(match name.unwrap_or("rollout") {
            "confirm-rollout" => HookKind::ConfirmRollout,
            "pre-rollout" => HookKind::PreRollout,
            "rollout" => HookKind::Rollout,
            "confirm-traffic-increase" => HookKind::ConfirmTrafficIncrease,
            "confirm-promotion" => HookKind::ConfirmPromotion,
            "post-rollout" => HookKind::PostRollout,
            "rollback" => HookKind::Rollback,
            "event" => HookKind::Event,
            _ => return None,
        })
    }

    /// The `type` that names it.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self {
            HookKind::ConfirmRollout => "confirm-rollout",
            HookKind::PreRollout => "pre-rollout",
            HookKind::Rollout => "rollout",
            HookKind::ConfirmTrafficIncrease => "confirm-traffic-increase",
            HookKind::ConfirmPromotion => "confirm-promotion",
            HookKind::PostRollout => "post-rollout",
            HookKind::Rollback => "rollback",
            HookKind::Event => "event",
        }
    }
}

/// One metric check.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CheckSpec {
    /// The metric's name.
    pub(crate) name: String,
    /// What is measured.
    pub(crate) kind: CheckKind,
    /// The window measured.
    pub(crate) window: Duration,
    /// Lowest passing value.
    pub(crate) min: Option<f64>,
    /// Highest passing value.
    pub(crate) max: Option<f64>,
}

/// What a check measures.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum CheckKind {
    /// `request-success-rate`: % of the canary's responses that are not 5xx.
    SuccessRate,
    /// `request-duration`: the canary's p99, in ms.
    Duration,
    /// `error-rate-vs-primary` (weir): fails when the canary's error rate is higher than the
    /// primary's over the same window with this confidence (a one-sided two-proportion test).
    VsPrimary {
        /// In (0, 1).
        confidence: f64,
    },
    /// A query to a metrics provider, its template variables filled in.
    Query {
        /// The provider type (`prometheus` is run; others are inconclusive).
        provider: String,
        /// The provider's address.
        address: String,
        /// The query.
        query: String,
    },
}

/// The default confidence of `error-rate-vs-primary`.
pub(crate) const DEFAULT_CONFIDENCE: f64 = 0.99;

impl RolloutSpec {
    /// The spec of a validated Canary: a VirtualService target with weir's subsets, or a
    /// Deployment target (whose apex VirtualService [`crate::config::generate`] wrote);
    /// `None` for other targets or a VirtualService without the subsets.
    pub(crate) fn from_canary(
        name: &str,
        namespace: Option<&str>,
        c: &Canary,
        set: &ResourceSet,
    ) -> Option<RolloutSpec> {
        let target = c.target_ref.name.value.to_ascii_lowercase();
        let (vs_name, primary, canary, deployment) = match c.target_ref.kind.value.as_str() {
            "VirtualService" => {
                let vs_name = c.target_ref.name.value.clone();
                let primary = c.primary_subset.as_ref()?.value.clone();
                let canary = c.canary_subset.as_ref()?.value.clone();
                // The service: the host the canary subset is routed to, else (the canary is
                // added at weight 0 next to it) the primary's.
                let host_of = |subset: &String| {
                    set.resources.iter().find_map(|r| match &r.spec {
                        Spec::VirtualService(vs) if r.name() == vs_name => vs
                            .http
                            .iter()
                            .flat_map(|h| &h.route)
                            .find(|d| {
                                d.destination.subset.as_ref().map(|s| &s.value) == Some(subset)
                            })
                            .map(|d| d.destination.host.value.to_ascii_lowercase()),
                        _ => None,
                    })
                };
                let service = host_of(&canary).or_else(|| host_of(&primary))?;
                let side = |subset| Side {
                    host: service.clone(),
                    subset: Some(subset),
                };
                (vs_name, side(primary), side(canary), false)
            }
            "Deployment" | "DaemonSet" => {
                let (primary, canary) = deployment_services(&target);
                let side = |host| Side { host, subset: None };
                (target, side(primary), side(canary), true)
            }
            _ => return None,
        };
        let namespace = namespace.unwrap_or("default");
        let apex = if deployment {
            vs_name.clone()
        } else {
            canary.host.clone()
        };
        let vars = Vars {
            canary: c,
            name,
            namespace,
            service: &apex,
            set,
        };
        let a = c.analysis.as_ref();
        let max_weight = a.and_then(|a| a.max_weight).unwrap_or(100).min(100);
        let steps = match a {
            Some(a) if !a.step_weights.is_empty() => a
                .step_weights
                .iter()
                .copied()
                .filter(|&w| w <= 100)
                .collect(),
            _ => {
                let step = a.and_then(|a| a.step_weight).unwrap_or(10).max(1);
                (1..)
                    .map(|i| i * step)
                    .take_while(|&w| w <= max_weight)
                    .collect()
            }
        };
        let iterations = a.and_then(|a| a.iterations).unwrap_or(0);
        let matches = a.map(|a| a.matches.clone()).unwrap_or_default();
        let strategy = match (iterations, matches.is_empty()) {
            (0, _) => Strategy::Canary,
            (_, false) => Strategy::AbTesting,
            (_, true) => Strategy::BlueGreen,
        };
        let mirror = a
            .filter(|a| strategy == Strategy::BlueGreen && a.mirror == Some(true))
            .map(|a| a.mirror_weight.map_or(100.0, |w| f64::from(w.min(100))));
        Some(RolloutSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            virtual_service: vs_name,
            primary,
            canary,
            deployment,
            interval: a
                .and_then(|a| a.interval)
                .map_or(DEFAULT_INTERVAL, |d| d.0.max(Duration::from_secs(1))),
            threshold: a.and_then(|a| a.threshold).unwrap_or(1).max(1),
            steps,
            step_promotion: a.and_then(|a| a.step_weight_promotion).filter(|&s| s > 0),
            checks: a
                .map(|a| a.metrics.iter().filter_map(|m| check(m, &vars)).collect())
                .unwrap_or_default(),
            skip_analysis: c.skip_analysis.unwrap_or(false),
            strategy,
            iterations,
            matches,
            mirror,
            hooks: a
                .map(|a| a.webhooks.iter().filter_map(hook).collect())
                .unwrap_or_default(),
            affinity: a
                .filter(|_| strategy == Strategy::Canary)
                .and_then(|a| a.session_affinity.clone()),
        })
    }

    /// Whether a webhook of `kind` is configured.
    pub(crate) fn has_hook(&self, kind: HookKind) -> bool {
        self.hooks.iter().any(|h| h.kind == kind)
    }

    /// The highest canary weight before promotion.
    pub(crate) fn max_weight(&self) -> u32 {
        self.steps.last().copied().unwrap_or(100)
    }
}

fn hook(w: &CanaryWebhook) -> Option<HookSpec> {
    Some(HookSpec {
        kind: HookKind::parse(w.kind.as_deref())?,
        name: w.name.clone(),
        url: w.url.clone(),
        timeout: w.timeout.map_or(DEFAULT_HOOK_TIMEOUT, |d| d.0),
        retries: w.retries.unwrap_or(0),
        metadata: w.metadata.clone(),
    })
}

/// What a metric's query is rendered with: Flagger's template variables.
struct Vars<'a> {
    canary: &'a Canary,
    name: &'a str,
    namespace: &'a str,
    /// The apex service.
    service: &'a str,
    set: &'a ResourceSet,
}

/// A metric check: builtin, or a query (a MetricTemplate's, or an inline `query` against
/// `metricsServer`) with the template variables filled in.
fn check(m: &CanaryMetric, vars: &Vars<'_>) -> Option<CheckSpec> {
    let window = m.interval.map_or(DEFAULT_WINDOW, |d| d.0);
    let kind = match (&m.template_ref, &m.query) {
        (Some(t), _) => {
            let template = vars.set.resources.iter().find_map(|r| match &r.spec {
                Spec::MetricTemplate(mt) if r.name() == t.name.value => Some(mt),
                _ => None,
            })?;
            CheckKind::Query {
                provider: template.provider.kind.value.clone(),
                address: template.provider.address.clone().unwrap_or_default(),
                query: render_query(&template.query, m, vars, window),
            }
        }
        (None, Some(q)) => CheckKind::Query {
            provider: "prometheus".to_owned(),
            address: vars.canary.metrics_server.clone().unwrap_or_default(),
            query: render_query(q, m, vars, window),
        },
        (None, None) => match m.name.value.as_str() {
            "request-success-rate" => CheckKind::SuccessRate,
            "request-duration" => CheckKind::Duration,
            "error-rate-vs-primary" => CheckKind::VsPrimary {
                confidence: m.confidence.map_or(DEFAULT_CONFIDENCE, |c| c / 100.0),
            },
            _ => return None,
        },
    };
    let (mut min, mut max) = m
        .threshold_range
        .as_ref()
        .map_or((None, None), |r| (r.min, r.max));
    // The legacy `threshold`: a floor for the success rate, a ceiling for the duration and
    // for queries (as Flagger reads it).
    if let Some(t) = m.threshold
        && min.is_none()
        && max.is_none()
    {
        match kind {
            CheckKind::SuccessRate => min = Some(t),
            CheckKind::Duration | CheckKind::Query { .. } => max = Some(t),
            CheckKind::VsPrimary { .. } => {}
        }
    }
    Some(CheckSpec {
        name: m.name.value.clone(),
        kind,
        window,
        min,
        max,
    })
}

fn render_query(template: &str, m: &CanaryMetric, v: &Vars<'_>, window: Duration) -> String {
    let reference = |o: &Option<crate::config::decode::Opaque>| {
        o.as_ref()
            .and_then(|o| o.0["name"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let mut vars: BTreeMap<String, String> = [
        ("name", v.name.to_owned()),
        ("namespace", v.namespace.to_owned()),
        ("target", v.canary.target_ref.name.value.clone()),
        ("service", v.service.to_owned()),
        ("ingress", reference(&v.canary.ingress_ref)),
        ("route", reference(&v.canary.route_ref)),
        ("interval", super::prometheus::range(window)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (k, val) in &m.template_variables {
        vars.insert(format!("variables.{k}"), val.clone());
    }
    super::prometheus::render(template, &vars)
}
