//! Bodies through the gateway, streamed both ways and never buffered whole.
//!
//! - [`Upload`]: the client's body on its way to a container. It counts bytes against
//!   `--max-body` (a chunked body has no length to check up front) and stays the
//!   gateway's until hyper first asks it for data: after a refused connection it was
//!   provably never sent, and the same body goes to another container; once asked for,
//!   the request may have run and is never sent again.
//! - [`Guarded`]: a container's answer on its way to the client. It keeps the request
//!   counted in flight (the scaler and a drain see it) and holding its place under
//!   `--max-in-flight` until the last byte, and cuts it off at the pool's timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// The error an [`Upload`] ends with when the client sent more than the limit.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {0} bytes")]
pub struct TooLarge(pub usize);

/// A response body cut off at the pool's timeout.
#[derive(Debug, thiserror::Error)]
#[error("the function did not finish its answer within the pool's timeout")]
pub struct TimedOut;

#[derive(Default)]
struct UploadState {
    /// The client's body, until hyper first polls for it.
    body: Mutex<Option<Body>>,
    /// Hyper asked for the body: the request may have reached a container.
    taken: AtomicBool,
    /// The client sent more than the limit.
    too_large: AtomicBool,
}

/// The client's request body, and whether it may still go elsewhere.
pub struct Upload {
    state: Arc<UploadState>,
    limit: usize,
    hint: SizeHint,
    empty: bool,
}

/// A chunked body up to this size is read whole and sent with a `Content-Length`:
/// servers without chunked uploads (busybox httpd's CGI, many embedded ones) then get
/// it, as behind nginx (which buffers request bodies by default).
pub const SMALL_CHUNKED: usize = 64 << 10;

impl Upload {
    /// Wraps the client's body, allowing `limit` bytes. A chunked body (no length
    /// given) is read up to [`SMALL_CHUNKED`] bytes first: when it ends within them it
    /// is sent as one piece of known length; otherwise it streams on from there.
    pub async fn read(body: Body, limit: usize) -> Result<Upload, TooLarge> {
        if body.size_hint().exact().is_some() || body.is_end_stream() {
            return Ok(Upload::new(body, limit));
        }
        let mut body = body;
        let mut head = bytes::BytesMut::new();
        let cap = SMALL_CHUNKED.min(limit);
        while head.len() <= cap {
            match body.frame().await {
                None => return Ok(Upload::new(Body::from(head.freeze()), limit)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => head.extend_from_slice(&data),
                    // Trailers: stream on, they cannot go with a Content-Length.
                    Err(frame) => return Ok(Upload::new(rejoin(head, Ok(frame), body), limit)),
                },
                Some(Err(e)) => return Ok(Upload::new(rejoin(head, Err(e), body), limit)),
            }
        }
        if head.len() > limit {
            return Err(TooLarge(limit));
        }
        Ok(Upload::new(
            rejoin(head, Ok(Frame::data(Bytes::new())), body),
            limit,
        ))
    }

    /// Wraps the client's body, allowing `limit` bytes.
    pub fn new(body: Body, limit: usize) -> Upload {
        let hint = body.size_hint();
        let empty = body.is_end_stream();
        Upload {
            state: Arc::new(UploadState {
                body: Mutex::new(Some(body)),
                ..Default::default()
            }),
            limit,
            hint,
            empty,
        }
    }

    /// The body to send on one attempt; it takes the client's body on its first poll.
    pub fn attempt(&self) -> Body {
        Body::new(Outgoing {
            state: self.state.clone(),
            inner: None,
            limit: self.limit,
            sent: 0,
            hint: self.hint,
            empty: self.empty,
        })
    }

    /// True once a container may have been sent (part of) the body: no resend then.
    pub fn taken(&self) -> bool {
        self.state.taken.load(Ordering::Acquire)
    }

    /// True when the client sent more than the limit.
    pub fn too_large(&self) -> bool {
        self.state.too_large.load(Ordering::Acquire)
    }
}

/// What was read of a body, then the frame that stopped the reading, then the rest.
fn rejoin(head: bytes::BytesMut, stop: Result<Frame<Bytes>, axum::Error>, rest: Body) -> Body {
    use futures_util::StreamExt;
    let first = futures_util::stream::iter([Ok(Frame::data(head.freeze())), stop]);
    let rest = http_body_util::BodyStream::new(rest);
    Body::new(http_body_util::StreamBody::new(first.chain(rest)))
}

/// One attempt's view of an [`Upload`].
struct Outgoing {
    state: Arc<UploadState>,
    inner: Option<Body>,
    limit: usize,
    sent: usize,
    /// The client's size hint and emptiness, known before the body is taken (hyper
    /// reads them to choose between `Content-Length` and chunked before it polls).
    hint: SizeHint,
    empty: bool,
}

impl hyper::body::Body for Outgoing {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if this.inner.is_none() {
            this.state.taken.store(true, Ordering::Release);
            this.inner = this
                .state
                .body
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match std::task::ready!(Pin::new(inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            this.sent = this.sent.saturating_add(data.len());
            if this.sent > this.limit {
                this.state.too_large.store(true, Ordering::Release);
                return Poll::Ready(Some(Err(TooLarge(this.limit).into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.empty,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => self.hint,
        }
    }
}

/// Counts a request in flight on a container until dropped.
pub struct InFlight(pub Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// A container's response body, holding its request's counts until it ends.
pub struct Guarded {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    _in_flight: InFlight,
    _permit: OwnedSemaphorePermit,
}

impl Guarded {
    /// Streams `inner`, cut off at `deadline`, holding `in_flight` and `permit`.
    pub fn new(
        inner: Incoming,
        deadline: Instant,
        in_flight: InFlight,
        permit: OwnedSemaphorePermit,
    ) -> Guarded {
        Guarded {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            _in_flight: in_flight,
            _permit: permit,
        }
    }
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(TimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn an_unpolled_attempt_leaves_the_body_for_the_next() {
        let upload = Upload::new(chunked(&[b"hello ", b"world"]), 100);
        drop(upload.attempt()); // a refused connection: hyper never asked for the body
        assert!(!upload.taken(), "nothing was sent");
        let body = upload.attempt().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello world");
        assert!(upload.taken(), "once polled, the request may have run");
        let again = upload.attempt().collect().await.unwrap().to_bytes();
        assert!(again.is_empty(), "a body is never sent twice");
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_ends_in_an_error_and_says_so() {
        let upload = Upload::new(chunked(&[b"12345", b"67890", b"x"]), 10);
        let err = upload.attempt().collect().await.unwrap_err();
        assert!(err.to_string().contains("limit of 10 bytes"), "{err}");
        assert!(upload.too_large());
        let exact = Upload::new(chunked(&[b"12345", b"67890"]), 10);
        assert_eq!(
            exact.attempt().collect().await.unwrap().to_bytes().len(),
            10
        );
        assert!(!exact.too_large(), "the limit itself is allowed");
    }

    #[tokio::test]
    async fn a_small_chunked_body_is_sent_with_its_length_a_large_one_streams() {
        let small = Upload::read(chunked(&[b"ab", b"cd"]), 100).await.unwrap();
        let body = small.attempt();
        assert_eq!(
            body.size_hint().exact(),
            Some(4),
            "sent with a Content-Length"
        );
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcd");

        let big: &'static [u8] = Box::leak(vec![7u8; SMALL_CHUNKED].into_boxed_slice());
        let large = Upload::read(chunked(&[big, b"tail"]), 1 << 20)
            .await
            .unwrap();
        let body = large.attempt();
        assert_eq!(body.size_hint().exact(), None, "streamed, chunked");
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), SMALL_CHUNKED + 4);
        assert!(all.ends_with(b"tail"));

        let over = Upload::read(chunked(&[b"12345", b"67890", b"x"]), 10).await;
        assert!(
            over.is_err(),
            "over the limit while still being read: 413 at once"
        );
    }

    #[test]
    fn length_and_emptiness_are_known_before_the_body_is_taken() {
        let upload = Upload::new(Body::from("abc"), 10);
        let body = upload.attempt();
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let empty = Upload::new(Body::empty(), 10).attempt();
        assert!(
            empty.is_end_stream(),
            "no chunked encoding for an empty GET"
        );
        assert!(!upload.taken(), "asking for the length takes nothing");
    }
}
