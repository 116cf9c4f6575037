//! weir: a traffic manager that reads Istio, Kong and Flagger resources and proxies HTTP by them.
//!
//! `docs/architecture.md` describes the model, the request path, the control plane and this
//! layout. In short:
//!
//! ```text
//! cli, run                 commands, wiring
//! control, admin, rollout  the control plane: one apply path, the admin API, progressive delivery
//! fleet, store             many instances sharing resources and rollouts through etcd
//! listener, http1, edge    accepting clients, HTTP/1.1, limits at the edge
//! workers                  per-core worker threads, each with its own runtime
//! proxy, error             the request path, and the one table of the statuses weir makes
//! policy, route            per-route decisions, route tables and matchers
//! backend, upstream        clusters, endpoints, balancers, pools, upstream I/O
//! body                     every body that crosses weir
//! snapshot, config         the immutable runtime config, built from the dialects
//! metrics, access_log, tls every metric family; the access log; TLS both ways
//! der                      reading DER (certificates, public keys)
//! ```
//!
//! What is public is what a program needs to read and check configurations the way weir does
//! ([`config`], and the model it builds: [`route`], [`policy`], [`tls`], [`edge`]),
//! to run weir in-process ([`run`], [`control`]) and to talk to a running weir ([`admin`]). The
//! rest is private to the crate; the command line is [`cli`].

pub mod access_log;
pub mod admin;
pub(crate) mod backend;
pub(crate) mod body;
pub(crate) mod boxed;
pub mod cli;
pub mod config;
pub mod control;
pub(crate) mod demo;
pub(crate) mod der;
pub mod edge;
pub(crate) mod error;
pub(crate) mod experiment;
pub(crate) mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod http1;
pub(crate) mod listener;
pub(crate) mod metrics;
pub mod policy;
pub(crate) mod proxy;
pub(crate) mod rollout;
pub mod route;
pub mod run;
pub(crate) mod snapshot;
pub mod store;
pub mod tls;
pub(crate) mod upstream;
pub(crate) mod workers;
