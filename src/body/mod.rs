//! Every body that crosses weir, named for the way it travels:
//!
//! ```text
//! client --from_client--> weir --to_upstream--> upstream
//! client <--to_client---- weir <-from_upstream- upstream
//! ```
//!
//! [`from_client::RequestBody`] is an HTTP/1.1 client's body as weir's server reads it (an
//! HTTP/2 client's is hyper's `Incoming`); [`to_upstream::Body`] is what a try sends (the
//! client's, streamed, or one weir holds to replay); [`from_upstream::UpstreamBody`] is an
//! upstream's answer, which hands its connection back to the pool once read;
//! [`to_client::ResponseBody`] is every response weir sends. All of them fail with one
//! [`error::BodyError`].
//!
//! Imports go one way: the listener, the server, the request path and the upstream client use
//! these types; a body uses only what it reads from (the wire pieces of [`crate::http1`], an
//! upstream connection) and, for a response, what it records into.

pub(crate) mod error;
pub(crate) mod from_client;
pub(crate) mod from_upstream;
pub(crate) mod to_client;
pub(crate) mod to_upstream;
