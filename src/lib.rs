//! weir: a traffic manager that reads Istio, Kong and Flagger resources and proxies HTTP by them.
//!
//! The request path (see `docs/request-path.md`):
//! ```text
//! listener -> http1::server (or hyper h2) -> proxy::Proxy::respond
//!   -> snapshot -> route table (host, first matching rule)
//!   -> action: redirect | direct response | forward
//!   -> split (weighted pick, or a sessionAffinity cohort) -> fault -> mirrors -> retry loop
//!      under the timeout:
//!        pool limits -> balancer over non-ejected endpoints -> upstream pool (upstream::h1)
//!        -> outcome to the outlier detector -> retry (budget, backoff) or done
//!   -> fallback (stale cache, backup, fixed response) -> metrics, response
//! ```
//! Dependency rules: `config` builds `route`, `policy`, `backend` and `tls` types and imports no other
//! runtime module; the data plane (`listener`, `proxy`, `upstream`) never imports `admin` or
//! `rollout`.

pub mod admin;
pub mod backend;
pub mod client;
pub mod config;
pub mod demo;
pub mod edge;
pub mod error;
pub mod http1;
pub mod listener;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod rollout;
pub mod route;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod tls;
pub mod upstream;
