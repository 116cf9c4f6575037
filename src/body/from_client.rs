//! The body of an HTTP/1.1 client's request, read straight off its connection by weir's server
//! ([`crate::http1::server`]). HTTP/2 request bodies are hyper's `Incoming`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use crate::body::error::BodyError;
use crate::http1::stream::ClientRead;
use crate::http1::{Decoder, Reader};

/// A request body read straight off the client's connection. The connection's read side goes
/// back to the connection once the body has been read to its end (or is dropped, unfinished,
/// in which case the connection is not reused).
#[derive(Debug)]
pub(crate) struct RequestBody {
    reader: Option<Reader<ClientRead>>,
    decoder: Decoder,
    home: Home,
    /// The body must have arrived by then (the request timeout, against slow bodies).
    deadline: Instant,
    /// Made the first time the body has to be waited for.
    timer: Option<Pin<Box<Sleep>>>,
    /// The client waits for `100 Continue` before it sends the body.
    expect: Option<Box<Continue>>,
}

/// A body's side of `Expect: 100-continue`: it asks the connection to write `100 Continue`,
/// then waits until that is written.
#[derive(Debug)]
pub(crate) struct Continue {
    ask: Option<oneshot::Sender<()>>,
    sent: oneshot::Receiver<()>,
}

/// Where a request body returns the connection's read side, with whether it was read to its
/// end.
pub(crate) type Home = Arc<Mutex<Option<(Reader<ClientRead>, bool)>>>;

/// The connection's side of `Expect: 100-continue`: told when the body asks for `100
/// Continue`, it writes it and then says so.
pub(crate) type ContinueAsked = (oneshot::Receiver<()>, oneshot::Sender<()>);

impl Continue {
    /// A body's side of `Expect: 100-continue` and the connection's.
    pub(crate) fn pair() -> (Box<Continue>, ContinueAsked) {
        let (ask, asked) = oneshot::channel();
        let (sent, on_sent) = oneshot::channel();
        let body = Box::new(Continue {
            ask: Some(ask),
            sent: on_sent,
        });
        (body, (asked, sent))
    }
}

impl RequestBody {
    /// The body of a request whose head was read off `reader`, framed by `decoder`, to arrive
    /// by `deadline`; `home` gets the reader back when the body is done.
    pub(crate) fn new(
        reader: Reader<ClientRead>,
        decoder: Decoder,
        deadline: Instant,
        expect: Option<Box<Continue>>,
    ) -> (RequestBody, Home) {
        let home: Home = Arc::new(Mutex::new(None));
        let body = RequestBody {
            reader: Some(reader),
            decoder,
            home: home.clone(),
            deadline,
            timer: None,
            expect,
        };
        (body, home)
    }

    fn go_home(&mut self) {
        if let Some(r) = self.reader.take()
            && let Ok(mut slot) = self.home.lock()
        {
            *slot = Some((r, matches!(self.decoder, Decoder::Done)));
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.go_home();
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(expect) = this.expect.as_mut() {
            if let Some(ask) = expect.ask.take() {
                let _ = ask.send(());
            }
            match Pin::new(&mut expect.sent).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => this.expect = None,
                Poll::Ready(Err(_)) => {
                    this.reader = None;
                    return Poll::Ready(Some(Err(BodyError::Malformed("100 Continue not sent"))));
                }
            }
        }
        let Some(r) = this.reader.as_mut() else {
            return Poll::Ready(None);
        };
        let Poll::Ready(polled) = this.decoder.poll_data(r, cx, "client closed mid-body") else {
            let deadline = this.deadline;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                this.reader = None;
                return Poll::Ready(Some(Err(BodyError::TimedOut)));
            }
            return Poll::Pending;
        };
        match polled {
            Ok(Some(data)) => {
                if matches!(this.decoder, Decoder::Done) {
                    this.go_home();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Ok(None) => {
                this.go_home();
                Poll::Ready(None)
            }
            Err(e) => {
                this.reader = None;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decoder, Decoder::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
