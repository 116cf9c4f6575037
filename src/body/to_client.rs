//! The body of every response weir sends downstream: one weir made, or an upstream's, streamed
//! under the request's deadline, recorded in the metrics when it ends, and copied for a cache.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::access_log::{AccessLog, Entry, Flags};
use crate::backend::limits::Admission;
use crate::body::from_upstream::UpstreamBody;
use crate::policy::fallback::Tee;
use crate::snapshot::Snapshot;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Observes the request duration once the response body is finished (or dropped), and then
/// gives back the try's connection-pool slots.
pub(crate) struct Recorder {
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) stats: usize,
    pub(crate) start: Instant,
    pub(crate) _admission: Option<Admission>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.snap.stats[self.stats].observe(self.start.elapsed());
    }
}

/// The body of every response weir sends downstream.
pub(crate) struct ResponseBody {
    kind: Kind,
    /// What the request path knows of the exchange, for the access log.
    pub(crate) meta: Meta,
    /// The access log's line, written when the body ends (or is dropped).
    log: Option<Box<Logging>>,
}

/// What the request path knows of an exchange: its destination (an index into the snapshot's
/// stats), the upstream of the last try, the retries, and why the response is not simply the
/// upstream's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Meta {
    pub(crate) stats: Option<usize>,
    /// The last try's endpoint: its cluster's index in the snapshot, and its own in the
    /// cluster (indices, so that the path copies nothing for a log that may be off).
    pub(crate) upstream: Option<(usize, usize)>,
    pub(crate) retries: u32,
    pub(crate) flags: Flags,
}

/// A line of the access log being made: sent when the response ends.
pub(crate) struct Logging {
    pub(crate) entry: Option<Entry>,
    pub(crate) start: Instant,
    pub(crate) sink: Arc<AccessLog>,
}

impl Drop for Logging {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.duration = self.start.elapsed();
            self.sink.log(entry);
        }
    }
}

// The large variant is the common one (every forwarded response); boxing it would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: UpstreamBody,
        recorder: Option<Recorder>,
        deadline: Option<Pin<Box<Sleep>>>,
        /// A copy for the stale cache, kept once the body ends.
        tee: Option<Box<Tee>>,
    },
}

/// The rule's deadline passed while the response body was streaming.
#[derive(Debug, thiserror::Error)]
#[error("upstream response timed out")]
pub(crate) struct BodyTimeout;

impl ResponseBody {
    /// A body held in memory.
    pub(crate) fn full(bytes: Bytes) -> ResponseBody {
        ResponseBody {
            kind: Kind::Full(Some(bytes)),
            meta: Meta::default(),
            log: None,
        }
    }

    /// Writes `line` to the access log when the body ends, with the bytes sent.
    pub(crate) fn log_with(&mut self, line: Logging) {
        self.log = Some(Box::new(line));
    }

    /// An upstream's body, recorded by `recorder` once done, failing once `deadline` passes,
    /// copied into `tee` if given.
    pub(crate) fn upstream(
        inner: UpstreamBody,
        recorder: Recorder,
        deadline: Option<Instant>,
        tee: Option<Box<Tee>>,
    ) -> Self {
        let mut body = ResponseBody {
            kind: Kind::Upstream {
                inner,
                recorder: Some(recorder),
                deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
                tee,
            },
            meta: Meta::default(),
            log: None,
        };
        if let Kind::Upstream {
            inner,
            recorder,
            tee,
            ..
        } = &mut body.kind
            && inner.is_end_stream()
        {
            recorder.take();
            if let Some(t) = tee.take() {
                t.finish();
            }
        }
        body
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = this.poll_kind(cx);
        if let (Some(log), Poll::Ready(Some(Ok(frame)))) = (this.log.as_mut(), &polled)
            && let Some(data) = frame.data_ref()
            && let Some(e) = log.entry.as_mut()
        {
            e.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl ResponseBody {
    fn poll_kind(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Upstream {
                inner,
                recorder,
                deadline,
                tee,
            } => {
                if let Some(d) = deadline
                    && d.as_mut().poll(cx).is_ready()
                {
                    recorder.take();
                    tee.take();
                    return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
                }
                let polled = Pin::new(&mut *inner).poll_frame(cx);
                if let (Some(t), Poll::Ready(Some(Ok(frame)))) = (tee.as_mut(), &polled)
                    && let Some(data) = frame.data_ref()
                {
                    t.data(data);
                }
                match &polled {
                    Poll::Ready(None) => {
                        recorder.take();
                        if let Some(t) = tee.take() {
                            t.finish();
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        recorder.take();
                        tee.take();
                    }
                    Poll::Ready(Some(Ok(_))) if inner.is_end_stream() => {
                        recorder.take();
                        if let Some(t) = tee.take() {
                            t.finish();
                        }
                    }
                    _ => {}
                }
                polled.map(|o| o.map(|r| r.map_err(Into::into)))
            }
        }
    }
}
