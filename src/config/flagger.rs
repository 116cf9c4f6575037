//! Flagger `flagger.app/v1beta1` resources: `Canary`, `MetricTemplate`, `AlertProvider`.
//!
//! Every field parses and validates; weir's rollout controller runs Canaries that target a
//! VirtualService. `primarySubset` and `canarySubset` are weir's own fields.

use std::collections::BTreeMap;

use super::decode::{Dur, Opaque, Spanned};
use super::istio::{
    CorsPolicy, Headers, HttpMatchRequest, HttpRetry, HttpRewrite, SessionAffinity, TrafficPolicy,
};
use crate::decode_struct;

decode_struct! {
    /// `Canary.spec`.
    pub struct Canary ("Canary spec") {
        /// Mesh provider (istio is implied).
        provider: Option<String> = "provider",
        /// Prometheus address for the builtin metrics.
        metrics_server: Option<String> = "metricsServer",
        /// What is being released.
        target_ref: TargetRef = "targetRef",
        /// Autoscaler (parsed only).
        autoscaler_ref: Option<Opaque> = "autoscalerRef",
        /// Ingress (parsed only).
        ingress_ref: Option<Opaque> = "ingressRef",
        /// Gateway API route (parsed only).
        route_ref: Option<Opaque> = "routeRef",
        /// Upstream (parsed only).
        upstream_ref: Option<Opaque> = "upstreamRef",
        /// Apex service settings passed to the generated routing.
        service: Option<CanaryService> = "service",
        /// Analysis settings.
        analysis: Option<CanaryAnalysis> = "analysis",
        /// Seconds before a stuck rollout fails (default 600).
        progress_deadline_seconds: Option<u32> = "progressDeadlineSeconds",
        /// Promote without analysis.
        skip_analysis: Option<bool> = "skipAnalysis",
        /// Restore routing when the Canary is deleted.
        revert_on_deletion: Option<bool> = "revertOnDeletion",
        /// Pause the controller.
        suspend: Option<bool> = "suspend",
        /// weir: the stable subset when `targetRef` is a VirtualService.
        primary_subset: Option<Spanned<String>> = "primarySubset",
        /// weir: the new subset when `targetRef` is a VirtualService.
        canary_subset: Option<Spanned<String>> = "canarySubset",
    }
}

decode_struct! {
    /// `Canary.spec.targetRef`.
    pub struct TargetRef ("targetRef") {
        /// API version.
        api_version: Option<String> = "apiVersion",
        /// Kind: Deployment, or VirtualService for subset canaries.
        kind: Spanned<String> = "kind",
        /// Name.
        name: Spanned<String> = "name",
    }
}

decode_struct! {
    /// `Canary.spec.service`.
    pub struct CanaryService ("Canary service") {
        /// Apex service name.
        name: Option<String> = "name",
        /// Port.
        port: Option<u32> = "port",
        /// Port name.
        port_name: Option<String> = "portName",
        /// Target port.
        target_port: Option<Opaque> = "targetPort",
        /// Port discovery.
        port_discovery: Option<bool> = "portDiscovery",
        /// Application protocol.
        app_protocol: Option<String> = "appProtocol",
        /// Route timeout.
        timeout: Option<Dur> = "timeout",
        /// Gateways for the generated VirtualService.
        gateways: Vec<String> = "gateways",
        /// Gateway API refs (parsed only).
        gateway_refs: Vec<Opaque> = "gatewayRefs",
        /// Extra hosts.
        hosts: Vec<String> = "hosts",
        /// DestinationRule policy.
        traffic_policy: Option<TrafficPolicy> = "trafficPolicy",
        /// Match conditions of the generated route.
        matches: Vec<HttpMatchRequest> = "match",
        /// Rewrite.
        rewrite: Option<HttpRewrite> = "rewrite",
        /// Retries.
        retries: Option<HttpRetry> = "retries",
        /// Header edits.
        headers: Option<Headers> = "headers",
        /// CORS.
        cors_policy: Option<CorsPolicy> = "corsPolicy",
        /// Delegation (refused: weir has no parent VirtualServices).
        delegation: Option<bool> = "delegation",
        /// Apex metadata.
        apex: Option<Opaque> = "apex",
        /// Primary metadata.
        primary: Option<Opaque> = "primary",
        /// Canary metadata.
        canary: Option<Opaque> = "canary",
    }
}

decode_struct! {
    /// `Canary.spec.analysis`.
    pub struct CanaryAnalysis ("Canary analysis") {
        /// Time between steps (default 60s).
        interval: Option<Dur> = "interval",
        /// Iterations for A/B and blue-green.
        iterations: Option<u32> = "iterations",
        /// Mirror traffic to the canary (blue-green).
        mirror: Option<bool> = "mirror",
        /// Share mirrored.
        mirror_weight: Option<u32> = "mirrorWeight",
        /// Highest canary weight.
        max_weight: Option<u32> = "maxWeight",
        /// Weight step.
        step_weight: Option<u32> = "stepWeight",
        /// Explicit weight steps.
        step_weights: Vec<u32> = "stepWeights",
        /// Weight step during promotion.
        step_weight_promotion: Option<u32> = "stepWeightPromotion",
        /// Failed checks before rollback.
        threshold: Option<u32> = "threshold",
        /// Primary readiness (parsed only).
        primary_ready_threshold: Option<u32> = "primaryReadyThreshold",
        /// Canary readiness (parsed only).
        canary_ready_threshold: Option<u32> = "canaryReadyThreshold",
        /// Alerts.
        alerts: Vec<CanaryAlert> = "alerts",
        /// Metric checks.
        metrics: Vec<CanaryMetric> = "metrics",
        /// Webhooks.
        webhooks: Vec<CanaryWebhook> = "webhooks",
        /// A/B match conditions.
        matches: Vec<HttpMatchRequest> = "match",
        /// Sticky sessions.
        session_affinity: Option<SessionAffinity> = "sessionAffinity",
    }
}

decode_struct! {
    /// An alert of a Canary.
    pub struct CanaryAlert ("Canary alert") {
        /// Name.
        name: String = "name",
        /// info, warn or error.
        severity: Option<String> = "severity",
        /// The AlertProvider.
        provider_ref: Option<CrossRef> = "providerRef",
    }
}

decode_struct! {
    /// A reference to another resource by name.
    pub struct CrossRef ("reference") {
        /// Name.
        name: Spanned<String> = "name",
        /// Namespace.
        namespace: Option<String> = "namespace",
    }
}

decode_struct! {
    /// A metric check of a Canary.
    pub struct CanaryMetric ("Canary metric") {
        /// Name (`request-success-rate` and `request-duration` are builtin).
        name: Spanned<String> = "name",
        /// Window.
        interval: Option<Dur> = "interval",
        /// Legacy threshold.
        threshold: Option<f64> = "threshold",
        /// Accepted range.
        threshold_range: Option<ThresholdRange> = "thresholdRange",
        /// Inline query (deprecated in Flagger).
        query: Option<String> = "query",
        /// The MetricTemplate.
        template_ref: Option<CrossRef> = "templateRef",
        /// Extra template variables.
        template_variables: BTreeMap<String, String> = "templateVariables",
        /// weir: confidence, in percent, of the `error-rate-vs-primary` check (default 99).
        confidence: Option<f64> = "confidence",
    }
}

decode_struct! {
    /// `thresholdRange`.
    pub struct ThresholdRange ("thresholdRange") {
        /// Lowest accepted value.
        min: Option<f64> = "min",
        /// Highest accepted value.
        max: Option<f64> = "max",
    }
}

decode_struct! {
    /// A webhook of a Canary.
    pub struct CanaryWebhook ("Canary webhook") {
        /// Hook type (default `rollout`).
        kind: Option<String> = "type",
        /// Name.
        name: String = "name",
        /// URL.
        url: String = "url",
        /// Do not alert.
        mute_alert: Option<bool> = "muteAlert",
        /// Timeout.
        timeout: Option<Dur> = "timeout",
        /// Payload metadata.
        metadata: BTreeMap<String, String> = "metadata",
        /// Retries.
        retries: Option<u32> = "retries",
        /// Skip TLS verification.
        disable_tls: Option<bool> = "disableTLS",
    }
}

decode_struct! {
    /// `MetricTemplate.spec`.
    pub struct MetricTemplate ("MetricTemplate spec") {
        /// Where to query.
        provider: MetricProvider = "provider",
        /// Query with Flagger's template variables.
        query: String = "query",
    }
}

decode_struct! {
    /// `MetricTemplate.spec.provider`.
    pub struct MetricProvider ("MetricTemplate provider") {
        /// prometheus, datadog, ...
        kind: Spanned<String> = "type",
        /// Server address.
        address: Option<String> = "address",
        /// Extra headers.
        headers: Option<Opaque> = "headers",
        /// Credentials (parsed only).
        secret_ref: Option<Opaque> = "secretRef",
        /// Skip TLS verification.
        insecure_skip_verify: Option<bool> = "insecureSkipVerify",
        /// Cloud region.
        region: Option<String> = "region",
    }
}

decode_struct! {
    /// `AlertProvider.spec`.
    pub struct AlertProvider ("AlertProvider spec") {
        /// slack, msteams, rocket, discord, gchat.
        kind: String = "type",
        /// Channel.
        channel: Option<String> = "channel",
        /// User name.
        username: Option<String> = "username",
        /// Webhook address.
        address: Option<String> = "address",
        /// HTTP proxy.
        proxy: Option<String> = "proxy",
        /// Credentials (parsed only).
        secret_ref: Option<Opaque> = "secretRef",
    }
}
