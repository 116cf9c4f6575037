//! Istio `networking.istio.io` resources (v1alpha3, v1beta1 and v1 share one schema), and
//! `security.istio.io`'s (`security.rs`).
//!
//! Field names follow istio/api's protos in their JSON (camelCase) form. Fields that weir does not
//! act on yet still parse and validate, so a config written today keeps loading.

mod common;
mod destination_rule;
mod gateway;
mod http_policies;
mod load_balancer;
mod security;
mod service_entry;
mod virtual_service;

pub use self::common::*;
pub use self::destination_rule::*;
pub use self::gateway::*;
pub use self::http_policies::*;
pub use self::load_balancer::*;
pub use self::security::*;
pub use self::service_entry::*;
pub use self::virtual_service::*;
