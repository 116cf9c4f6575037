//! Fault injection on the request path: an injected delay (which a client may walk away from)
//! and an injected abort, answered by weir.

use std::future::poll_fn;
use std::ops::ControlFlow;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderName, HeaderValue};

use super::conn::ClientGone;
use super::outbound::{Forward, Stop};
use super::outcome::GRPC_STATUS;
use crate::access_log::Flags;
use crate::body::to_client::ResponseBody;
use crate::error::local_response;
use crate::policy::fault::{Abort, FaultSwitch, PER_MILLION};
use tokio::time::Instant;

const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

impl<'s> Forward<'s> {
    /// Draws the rule's fault, if it has one and the kill switch lets faults through: waits
    /// out an injected delay (unless the client leaves meanwhile), then stops the request with
    /// an injected abort. The kill switch is read again after a delay: turned off meanwhile,
    /// it lets the request through.
    pub(super) async fn inject_fault(
        &mut self,
        faults: &FaultSwitch,
        client: Option<&mut dyn ClientGone>,
    ) -> ControlFlow<Stop<'s>> {
        let rule = self.rule;
        let Some(fault) = &rule.fault else {
            return ControlFlow::Continue(());
        };
        if !faults.enabled() {
            return ControlFlow::Continue(());
        }
        let drawn = fault.draw(|| fastrand::u32(..PER_MILLION));
        let stats = &self.snap.stats[self.dest.stats];
        if let Some(delay) = drawn.delay {
            stats.fault_delays.inc();
            self.flags = self.flags.with(Flags::FAULT);
            // Boxed: a rare path, kept out of every request's state.
            if !Box::pin(delayed(faults, delay, client)).await {
                return ControlFlow::Break(Stop::ClientGone);
            }
            self.deadline = rule.timeout.map(|t| Instant::now() + t);
        }
        if let Some(abort) = drawn.abort
            && faults.enabled()
        {
            stats.fault_aborts.inc();
            return ControlFlow::Break(Stop::Abort(abort));
        }
        ControlFlow::Continue(())
    }

    /// An injected abort, answered by weir: the upstream never sees the request.
    pub(super) fn abort(self, abort: &Abort) -> Response<ResponseBody> {
        let mut resp = local_response(abort.status, Bytes::from_static(b"fault filter abort"));
        if let Some(code) = abort.grpc_status {
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert(GRPC_STATUS, HeaderValue::from(code));
            h.insert(GRPC_MESSAGE, HeaderValue::from_static("fault filter abort"));
        }
        self.rule.headers.response.apply(resp.headers_mut());
        resp.body_mut().meta.flags = Flags::FAULT;
        self.answer(resp)
    }
}

/// Waits out an injected delay; false if the client left meanwhile.
async fn delayed(
    faults: &FaultSwitch,
    delay: Duration,
    client: Option<&mut dyn ClientGone>,
) -> bool {
    let delayed = faults.delay(delay);
    match client {
        Some(client) => tokio::select! {
            _ = delayed => true,
            _ = poll_fn(|cx| client.poll_gone(cx)) => false,
        },
        None => {
            delayed.await;
            true
        }
    }
}
