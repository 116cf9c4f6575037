//! weir's `Experiment` (`weir.io/v1alpha1`): an A/B test judged on business goals, then rolled
//! out. Decoding only; `validate/experiments.rs` checks it against the routes it splits.

use std::collections::BTreeMap;

use super::decode::{Dur, Spanned};
use super::flagger::{CanaryAnalysis, CanaryMetric, CrossRef, TargetRef};
use super::istio::HttpMatchRequest;
use crate::{decode_enum, decode_struct};

decode_struct! {
    /// `Experiment.spec`.
    pub struct Experiment ("Experiment spec") {
        /// The VirtualService whose routes are split between the variants.
        target_ref: TargetRef = "targetRef",
        /// Who takes part (VirtualService match blocks, ORed); empty: every request of the routes.
        matches: Vec<HttpMatchRequest> = "match",
        /// The variants; the first is the control.
        variants: Vec<Variant> = "variants",
        /// How a participant is known: a cookie weir sets, or a header the app already sends.
        assignment: Option<Assignment> = "assignment",
        /// What counts as a conversion.
        goals: Vec<Goal> = "goals",
        /// The goal the decision is made on (default: the first).
        primary_goal: Option<Spanned<String>> = "primaryGoal",
        /// Confidence of the decision, in percent (default 95).
        confidence: Option<Spanned<f64>> = "confidence",
        /// The smallest lift worth finding, in percent of the control's rate (default 20):
        /// tunes the sequential test, as `weir plan --lift` sizes it.
        minimum_detectable_effect: Option<Spanned<f64>> = "minimumDetectableEffect",
        /// Checks (Canary metric syntax) whose failure stops the experiment on the control.
        guardrails: Vec<CanaryMetric> = "guardrails",
        /// No decision before every variant has this many participants (default 100).
        min_users_per_variant: Option<u64> = "minUsersPerVariant",
        /// Stop without a winner after this long (default: never).
        max_duration: Option<Dur> = "maxDuration",
        /// What a conclusion does: rollout (default when `rollout` is set), stop, none.
        on_conclusion: Option<Spanned<OnConclusion>> = "onConclusion",
        /// The canary of the winner (`onConclusion: rollout`).
        rollout: Option<ExperimentRollout> = "rollout",
    }
}

decode_struct! {
    /// One variant: a subset of the route's destination.
    pub struct Variant ("Experiment variant") {
        /// Name, as reported.
        name: Spanned<String> = "name",
        /// The DestinationRule subset it is served by.
        subset: Spanned<String> = "subset",
        /// Relative share of new participants (default 1 each).
        weight: Option<Spanned<u32>> = "weight",
    }
}

decode_struct! {
    /// `assignment`: a cookie weir sets, or a header naming the user.
    pub struct Assignment ("Experiment assignment") {
        /// The cookie that keeps a participant's key and state (default `weir-exp-NAME`).
        cookie_name: Option<Spanned<String>> = "cookieName",
        /// The cookie's lifetime (default 720h).
        max_age: Option<Dur> = "maxAge",
        /// A request header whose value is the participant's key (the cookie then keeps only
        /// the state).
        header: Option<Spanned<String>> = "header",
        /// Cookie `Domain`.
        domain: Option<String> = "domain",
        /// Cookie `Path` (default `/`).
        path: Option<String> = "path",
        /// Cookie `Secure`.
        secure: Option<bool> = "secure",
        /// Cookie `SameSite` (default Lax).
        same_site: Option<String> = "sameSite",
    }
}

decode_struct! {
    /// A goal: what counts as a conversion, once per participant (or a value summed).
    pub struct Goal ("Experiment goal") {
        /// Name, as reported.
        name: Spanned<String> = "name",
        /// A 2xx answer to a request matching one of these blocks converts.
        matches: Vec<HttpMatchRequest> = "match",
        /// A response header naming the goal converts (`x-weir-goal: signup`).
        response_header: Option<Spanned<String>> = "responseHeader",
        /// Sum the `value=` of the header's entries (`x-weir-goal: purchase; value=42.50`).
        value: Option<bool> = "value",
        /// A MetricTemplate whose query gives each variant's rate (Prometheus goals).
        template_ref: Option<CrossRef> = "templateRef",
        /// Extra template variables.
        template_variables: BTreeMap<String, String> = "templateVariables",
    }
}

decode_struct! {
    /// `rollout`: the Canary analysis of the winner's rollout.
    pub struct ExperimentRollout ("Experiment rollout") {
        /// As a Canary's `analysis`.
        analysis: Option<CanaryAnalysis> = "analysis",
    }
}

decode_enum! {
    /// What a conclusion does.
    pub enum OnConclusion ("onConclusion") {
        /// Roll the winner out with a canary (the control stays when it wins).
        #[default]
        Rollout = "rollout",
        /// Send every participant to the control.
        Stop = "stop",
        /// Leave participants on their variants; new users get the route as it is.
        None = "none",
    }
}
