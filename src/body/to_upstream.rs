//! The request body weir sends upstream: the client's, streamed, or one weir holds.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use crate::body::error::BodyError;
use crate::body::from_client::RequestBody;

/// A request body sent upstream: the client's, streamed, or one weir holds.
#[derive(Debug)]
pub(crate) enum Body {
    /// Streamed from an HTTP/1.1 client connection.
    Client(RequestBody),
    /// Streamed from an HTTP/2 client stream.
    Incoming(Incoming),
    /// Held in memory (replays, mirrors, generated requests).
    Full(Option<Bytes>),
    /// A part already read, then the rest of the stream (a body too large to keep for replay).
    Prefixed(Option<Bytes>, Box<Body>),
    /// A body that fails with [`BodyError::TooLarge`] once more than this many bytes came.
    Limited(Box<Body>, u64),
}

impl Body {
    /// An empty body.
    pub(crate) fn empty() -> Body {
        Body::Full(None)
    }

    /// The body read into memory: [`Body::Full`] when it ends within `limit` bytes, else
    /// [`Body::Prefixed`] (what was read, then the rest of the stream; nothing is read of a body
    /// that declares more).
    pub(crate) async fn hold(mut self, limit: usize) -> Result<Body, BodyError> {
        if self.size_hint().lower() > limit as u64 {
            return Ok(Body::Prefixed(None, Box::new(self)));
        }
        let mut kept = bytes::BytesMut::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut self).poll_frame(cx)).await
        {
            if let Ok(data) = frame?.into_data() {
                kept.extend_from_slice(&data);
            }
            if kept.len() > limit {
                return Ok(Body::Prefixed(Some(kept.freeze()), Box::new(self)));
            }
        }
        Ok(Body::Full(Some(kept.freeze())))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Client(b) => Pin::new(b).poll_frame(cx),
            Body::Incoming(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::H2),
            Body::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Body::Prefixed(head, rest) => match head.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Pin::new(&mut **rest).poll_frame(cx),
            },
            Body::Limited(inner, left) => {
                let frame = std::task::ready!(Pin::new(&mut **inner).poll_frame(cx));
                if let Some(Ok(f)) = &frame
                    && let Some(data) = f.data_ref()
                {
                    match left.checked_sub(data.len() as u64) {
                        Some(rest) => *left = rest,
                        None => return Poll::Ready(Some(Err(BodyError::TooLarge))),
                    }
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Client(b) => b.is_end_stream(),
            Body::Incoming(b) => b.is_end_stream(),
            Body::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Body::Prefixed(head, rest) => head.is_none() && rest.is_end_stream(),
            Body::Limited(inner, _) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Client(b) => b.size_hint(),
            Body::Incoming(b) => b.size_hint(),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Prefixed(head, rest) => {
                let n = head.as_ref().map_or(0, |b| b.len() as u64);
                let r = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(r.lower() + n);
                if let Some(u) = r.upper() {
                    hint.set_upper(u + n);
                }
                hint
            }
            Body::Limited(inner, _) => inner.size_hint(),
        }
    }
}
