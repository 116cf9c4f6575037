//! A resource as weir holds it, whatever its dialect: its place, `apiVersion`, kind, metadata
//! and typed spec; and a set of them, the unit a configuration change applies.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::decode::{Opaque, Spanned};
use super::yaml::Pos;
use super::{experiment, flagger, istio, kong};
use crate::decode_struct;

decode_struct! {
    /// Kubernetes object metadata; weir uses `name` (and `namespace` for display).
    pub struct Metadata ("metadata") {
        /// Name.
        name: Option<Spanned<String>> = "name",
        /// Namespace.
        namespace: Option<String> = "namespace",
        /// Labels.
        labels: BTreeMap<String, String> = "labels",
        /// Annotations.
        annotations: BTreeMap<String, String> = "annotations",
        /// Generated name (parsed only).
        generate_name: Option<String> = "generateName",
        /// UID (parsed only).
        uid: Option<String> = "uid",
        /// Resource version (parsed only).
        resource_version: Option<String> = "resourceVersion",
        /// Generation (parsed only).
        generation: Option<i64> = "generation",
        /// Creation time (parsed only).
        creation_timestamp: Option<Opaque> = "creationTimestamp",
        /// Deletion time (parsed only).
        deletion_timestamp: Option<Opaque> = "deletionTimestamp",
        /// Owners (parsed only).
        owner_references: Option<Opaque> = "ownerReferences",
        /// Finalizers (parsed only).
        finalizers: Option<Opaque> = "finalizers",
        /// Field managers (parsed only).
        managed_fields: Option<Opaque> = "managedFields",
    }
}

/// The spec of one resource, by kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)] // a handful per config, never on the request path
pub enum Spec {
    /// Istio `VirtualService`.
    VirtualService(istio::VirtualService),
    /// Istio `DestinationRule`.
    DestinationRule(istio::DestinationRule),
    /// Istio `ServiceEntry`.
    ServiceEntry(istio::ServiceEntry),
    /// Istio `Gateway`.
    Gateway(istio::Gateway),
    /// Istio `RequestAuthentication`.
    RequestAuthentication(istio::RequestAuthentication),
    /// Istio `AuthorizationPolicy`.
    AuthorizationPolicy(istio::AuthorizationPolicy),
    /// Flagger `Canary`.
    Canary(flagger::Canary),
    /// Flagger `MetricTemplate`.
    MetricTemplate(flagger::MetricTemplate),
    /// Flagger `AlertProvider`.
    AlertProvider(flagger::AlertProvider),
    /// A Kong declarative config file (`_format_version`).
    Kong(Box<kong::KongConfig>),
    /// The seed's `KongService` (without a spec it only adds plugins to the one that has it).
    KongService(Option<kong::KongService>),
    /// The seed's `KongUpstream`.
    KongUpstream(kong::KongUpstream),
    /// The seed's `KongRoute`.
    KongRoute(kong::KongRoute),
    /// `KongPlugin`.
    KongPlugin(kong::KongPluginSpec),
    /// weir's `Experiment`.
    Experiment(experiment::Experiment),
}

impl Spec {
    /// The resource kind, as written in `kind:`.
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::VirtualService(_) => "VirtualService",
            Spec::DestinationRule(_) => "DestinationRule",
            Spec::ServiceEntry(_) => "ServiceEntry",
            Spec::Gateway(_) => "Gateway",
            Spec::RequestAuthentication(_) => "RequestAuthentication",
            Spec::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Spec::Canary(_) => "Canary",
            Spec::MetricTemplate(_) => "MetricTemplate",
            Spec::AlertProvider(_) => "AlertProvider",
            Spec::Kong(_) => "Kong",
            Spec::KongService(_) => "KongService",
            Spec::KongUpstream(_) => "KongUpstream",
            Spec::KongRoute(_) => "KongRoute",
            Spec::KongPlugin(_) => "KongPlugin",
            Spec::Experiment(_) => "Experiment",
        }
    }
}

/// One resource document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resource {
    /// The file it came from (or a label such as `<demo>`).
    #[serde(skip)]
    pub file: Arc<str>,
    /// Where the document starts.
    #[serde(skip)]
    pub pos: Pos,
    /// `apiVersion`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// `kind` (derived from `spec`).
    pub kind: &'static str,
    /// `metadata`.
    pub metadata: Metadata,
    /// `spec`.
    pub spec: Spec,
}

impl Resource {
    /// `metadata.name` (empty if missing, which validation reports).
    pub fn name(&self) -> &str {
        self.metadata
            .name
            .as_ref()
            .map(|n| n.value.as_str())
            .unwrap_or_default()
    }

    /// `file:line:column` of the document.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.pos)
    }
}

/// Every resource of one configuration, in load order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceSet {
    /// The resources.
    pub resources: Vec<Resource>,
    /// The files they were read from.
    pub sources: Vec<String>,
    /// The text of each of those files (kept as the last good configuration once applied).
    pub texts: Vec<Arc<str>>,
    /// What reading them found that loads but may not be what was meant (validation adds
    /// them to the model's warnings).
    pub warnings: Vec<String>,
}

/// The name in a `namespace/name` reference.
pub(crate) fn short_ref(s: &str) -> &str {
    s.rsplit_once('/').map_or(s, |(_, n)| n)
}
