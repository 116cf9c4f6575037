//! TLS with rustls, both ways: a Gateway listener's certificates, picked by SNI ([`server`]),
//! and a DestinationRule's `tls` for connections to upstreams ([`upstream`]). Certificates, keys
//! and CA bundles are files, loaded again when they change.

mod files;
pub mod identity;
pub mod server;
mod stream;
pub mod upstream;

pub use files::{certificates, private_key, provider, roots};
pub use server::{ServerTls, SiteSpec};
pub use stream::MaybeTls;
pub use upstream::{ClientSpec, ClientTls, Trust, UpstreamTls};
