//! Per-route policies (the VirtualService level): split, header edits, rewrite and redirect.
//!
//! The order they run in is written once, in [`crate::proxy::Proxy::handle`].

pub mod fallback;
pub mod fault;
pub mod headers;
pub mod retry;
pub mod rewrite;
pub mod split;
