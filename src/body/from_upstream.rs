//! An upstream's response body. HTTP/1.1 ones hand their connection back to the pool only once
//! they have been read to the end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use crate::body::error::BodyError;
use crate::upstream::h1::ResponseBody as H1Body;

/// An upstream response body. An HTTP/1.1 connection goes back to its pool when the body has
/// been read to its end, and is closed if the body is dropped earlier.
#[derive(Debug)]
pub(crate) struct UpstreamBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    H1(H1Body),
    H2(Incoming),
}

impl UpstreamBody {
    pub(crate) fn h1(body: H1Body) -> UpstreamBody {
        UpstreamBody {
            kind: Kind::H1(body),
        }
    }

    pub(crate) fn h2(body: Incoming) -> UpstreamBody {
        UpstreamBody {
            kind: Kind::H2(body),
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().kind {
            Kind::H1(b) => b.poll_frame(cx),
            Kind::H2(b) => Pin::new(b).poll_frame(cx).map_err(BodyError::H2),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::H1(b) => b.is_end_stream(),
            Kind::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::H1(b) => match b.exact_len() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
            Kind::H2(b) => b.size_hint(),
        }
    }
}
