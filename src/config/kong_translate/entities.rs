//! Kong's entities as collected from a set, with their places; the defaults Kong gives them;
//! and the helpers that name and place what is generated from them.

use crate::config::decode::{ConfigError, Spanned};
use crate::config::generate::GENERATED_BY;
use crate::config::kong::{KongPlugin, KongRoute, KongService, KongUpstream};
use crate::config::resource::{Metadata, Resource, Spec};
use crate::config::yaml::Pos;
use std::sync::Arc;

/// The annotation's value prefix on resources made from Kong's.
pub const KONG_PREFIX: &str = "Kong/";

/// The KongPlugin names a Kubernetes-style Kong resource lists.
pub(super) const PLUGINS_ANNOTATION: &str = "konghq.com/plugins";

/// Plugins weir knows. `prometheus` is accepted as is (weir's metrics are always on).
pub(super) const KNOWN_PLUGINS: &[&str] = &[
    "rate-limiting",
    "proxy-cache",
    "request-termination",
    "request-transformer",
    "cors",
    "prometheus",
    "circuit-breaker",
    "key-auth",
    "basic-auth",
    "jwt",
    "acl",
    "ip-restriction",
];

/// Plugins weir runs today.
pub(super) const RUN_PLUGINS: &[&str] = &[
    "prometheus",
    "circuit-breaker",
    "request-termination",
    "rate-limiting",
    "cors",
    "request-transformer",
    "proxy-cache",
    "key-auth",
    "basic-auth",
    "jwt",
    "acl",
    "ip-restriction",
];

/// Kong's defaults.
pub(super) const DEFAULT_RETRIES: u32 = 5;
pub(super) const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Kong's largest timeout.
pub(super) const MAX_TIMEOUT_MS: u64 = 2_147_483_646;
pub(super) const DEFAULT_TARGET_PORT: u16 = 8000;
pub(super) const DEFAULT_WEIGHT: u32 = 100;

/// A Kong entity's place, for errors and for the resources made from it.
#[derive(Clone)]
pub(super) struct At {
    pub(super) file: Arc<str>,
    pub(super) pos: Pos,
}

pub(super) struct Service {
    pub(super) name: String,
    pub(super) at: At,
    pub(super) spec: KongService,
    pub(super) plugins: Vec<(At, KongPlugin)>,
}

pub(super) struct Route {
    pub(super) at: At,
    pub(super) spec: KongRoute,
    pub(super) service: String,
    pub(super) plugins: Vec<(At, KongPlugin)>,
}

pub(super) struct Upstream {
    pub(super) at: At,
    pub(super) spec: KongUpstream,
}

/// Everything Kong in a set.
#[derive(Default)]
pub(super) struct Kong {
    pub(super) services: Vec<Service>,
    pub(super) routes: Vec<Route>,
    pub(super) upstreams: Vec<Upstream>,
    /// Global plugins, and top-level ones naming a service or route.
    pub(super) plugins: Vec<(At, KongPlugin)>,
    /// What loads but may not be what was meant.
    pub(super) warnings: Vec<String>,
}

pub(super) struct Errors<'e>(pub(super) &'e mut Vec<ConfigError>);

impl Errors<'_> {
    pub(super) fn at(&mut self, at: &At, pos: Pos, message: impl Into<String>) {
        self.0.push(ConfigError {
            file: at.file.clone(),
            pos,
            message: message.into(),
        });
    }
}

pub(super) fn meta(at: &At, name: String, from: &str) -> Metadata {
    Metadata {
        pos: at.pos,
        name: Some(Spanned {
            pos: at.pos,
            value: name,
        }),
        annotations: [(GENERATED_BY.to_owned(), format!("{KONG_PREFIX}{from}"))].into(),
        ..Metadata::default()
    }
}

pub(super) fn resource(at: &At, metadata: Metadata, spec: Spec) -> Resource {
    Resource {
        file: at.file.clone(),
        pos: at.pos,
        api_version: "networking.istio.io/v1".to_owned(),
        kind: spec.kind(),
        metadata,
        spec,
    }
}

/// A name usable as a resource name.
pub(super) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            '*' => 'x',
            _ => '-',
        })
        .collect()
}
