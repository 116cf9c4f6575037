//! Per-route policies (the VirtualService level): split (and cohort affinity), header edits,
//! rewrite, redirect, fault, mirror, retry and fallback, and A/B experiments' variants.
//!
//! The order they run in is written once, in the request path (`proxy::Proxy::respond`).

pub mod access;
pub mod affinity;
pub mod cache;
pub mod cors;
pub mod experiment;
pub mod fallback;
pub mod fault;
pub mod headers;
pub mod mirror;
pub mod ratelimit;
pub mod retry;
pub mod rewrite;
pub mod split;
pub mod transform;
