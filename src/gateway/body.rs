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
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use super::upstream::KeptConnection;
use crate::http::{ArmedGeneration, Closer};

/// Why a client's body did not arrive whole: the client's doing, never the container's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// The client sent more than the limit (`413`).
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The client did not send its body within the pool's timeout (`408`).
    #[error("the request body did not arrive within the pool's timeout")]
    TimedOut,
    /// The client's body broke off (it hung up mid-upload, or sent broken chunks: `400`).
    #[error("the request body could not be read: the client broke it off")]
    Broken,
}

impl UploadError {
    /// The status a client gets for it.
    pub fn status(self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            UploadError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            UploadError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            UploadError::Broken => StatusCode::BAD_REQUEST,
        }
    }

    fn code(self) -> u8 {
        match self {
            UploadError::TooLarge(_) => 1,
            UploadError::TimedOut => 2,
            UploadError::Broken => 3,
        }
    }
}

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
    /// How the client's body failed, if it did ([`UploadError::code`]; 0: it did not).
    failed: AtomicU8,
    /// Waiting for the client to send more of its body.
    stalled: AtomicBool,
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
    /// given) is read up to `whole` bytes first, by `deadline`: when it ends within
    /// them it is sent as one piece of known length; otherwise it streams on from
    /// there. [`SMALL_CHUNKED`] for most requests; the limit for a `GET`, `HEAD` or
    /// `CONNECT`, which hyper never sends chunked (it would drop the body).
    pub async fn read(
        body: Body,
        limit: usize,
        whole: usize,
        deadline: Instant,
    ) -> Result<Upload, UploadError> {
        if body.size_hint().exact().is_some() || body.is_end_stream() {
            return Ok(Upload::new(body, limit));
        }
        let mut body = body;
        let mut head = bytes::BytesMut::new();
        let cap = whole.min(limit);
        while head.len() <= cap {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| UploadError::TimedOut)?;
            match frame {
                None => return Ok(Upload::new(Body::from(head.freeze()), limit)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => head.extend_from_slice(&data),
                    // Trailers: stream on, they cannot go with a Content-Length.
                    Err(frame) => return Ok(Upload::new(rejoin(head, frame, body), limit)),
                },
                Some(Err(_)) => return Err(UploadError::Broken),
            }
        }
        if head.len() > limit {
            return Err(UploadError::TooLarge(limit));
        }
        Ok(Upload::new(
            rejoin(head, Frame::data(Bytes::new()), body),
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

    /// The body to send on one attempt, cut off at `deadline`; it takes the client's
    /// body on its first poll.
    pub fn attempt(&self, deadline: Instant) -> Body {
        Body::new(Outgoing {
            state: self.state.clone(),
            inner: None,
            limit: self.limit,
            sent: 0,
            hint: self.hint,
            empty: self.empty,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }

    /// True once a container may have been sent (part of) the body: no resend then.
    pub fn taken(&self) -> bool {
        self.state.taken.load(Ordering::Acquire)
    }

    /// True while the body waits for the client to send more: a timeout then is the
    /// client's, not the function's.
    pub fn stalled(&self) -> bool {
        self.state.stalled.load(Ordering::Acquire)
    }

    /// How the client's body failed on its way, if it did.
    pub fn failed(&self) -> Option<UploadError> {
        match self.state.failed.load(Ordering::Acquire) {
            1 => Some(UploadError::TooLarge(self.limit)),
            2 => Some(UploadError::TimedOut),
            3 => Some(UploadError::Broken),
            _ => None,
        }
    }
}

/// What was read of a body, then the frame that stopped the reading, then the rest.
fn rejoin(head: bytes::BytesMut, stop: Frame<Bytes>, rest: Body) -> Body {
    use futures_util::StreamExt;
    let first = futures_util::stream::iter([Ok(Frame::data(head.freeze())), Ok(stop)]);
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
    /// The pool's timeout: a client still sending then is cut off.
    deadline: Pin<Box<Sleep>>,
}

impl Outgoing {
    fn fail(&self, e: UploadError) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        self.state.failed.store(e.code(), Ordering::Release);
        Poll::Ready(Some(Err(e.into())))
    }
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
        let polled = Pin::new(inner).poll_frame(cx);
        this.state
            .stalled
            .store(polled.is_pending(), Ordering::Release);
        let frame = match polled {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(_))) => return this.fail(UploadError::Broken),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending if this.deadline.as_mut().poll(cx).is_ready() => {
                return this.fail(UploadError::TimedOut)
            }
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            this.sent = this.sent.saturating_add(data.len());
            if this.sent > this.limit {
                return this.fail(UploadError::TooLarge(this.limit));
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

/// What a request holds until its answer is done: its count in flight on the container
/// and its place under `--max-in-flight`.
pub struct Held {
    _in_flight: InFlight,
    _permit: OwnedSemaphorePermit,
}

impl Held {
    /// Holds `in_flight` (its count on the container) and `permit` (its place under
    /// `--max-in-flight`) until dropped.
    pub fn new(in_flight: InFlight, permit: OwnedSemaphorePermit) -> Held {
        Held {
            _in_flight: in_flight,
            _permit: permit,
        }
    }
}

/// A container's response body, holding its request's counts until it ends or the
/// pool's timeout passes, whichever comes first.
///
/// While hyper polls the body, the body watches its own deadline. But hyper polls a
/// body only while the client takes what was written: a client that stops reading
/// would keep a body, and what it holds, forever. So the body also arms its deadline on
/// the client's connection ([`Closer::arm`]): at the deadline the connection's task
/// closes the connection, which drops the body, releasing what the request held (the
/// scaler and a drain stop counting it, another request takes its place), and the
/// container's connection with it. That costs no task per response: spawning a timer
/// task for each was most of what this change saved, 13 % of the gateway's
/// instructions per request (issue 15, `scripts/bench-gateway-instructions.sh`).
pub struct Guarded {
    inner: Incoming,
    /// Fires when `kept` gets too old (if sooner), then at the deadline.
    wake: Pin<Box<Sleep>>,
    deadline: Instant,
    held: Option<Held>,
    /// The client's connection, with this answer's deadline armed on it.
    closer: Option<(Closer, ArmedGeneration)>,
    /// The kept-alive connection, until it is retired.
    kept: Option<KeptConnection>,
}

impl Guarded {
    /// Streams `inner`, cut off at `deadline`, holding `held` until then; `closer`
    /// ends the client's connection if the answer is still going at the deadline.
    /// `kept`, the kept-alive connection it streams on, is taken out of reuse if the
    /// answer is still streaming when that connection gets too old (see
    /// [`KeptConnection`]).
    pub fn new(
        inner: Incoming,
        deadline: Instant,
        held: Held,
        closer: Option<Closer>,
        kept: Option<KeptConnection>,
    ) -> Guarded {
        let first = kept
            .as_ref()
            .map_or(deadline, |k| k.reusable_until.min(deadline));
        Guarded {
            inner,
            wake: Box::pin(tokio::time::sleep_until(first)),
            deadline,
            held: Some(held),
            closer: closer.map(|c| {
                let armed = c.arm(deadline);
                (c, armed)
            }),
            kept,
        }
    }

    /// Done, in time or not: releases what the request held; the connection need not
    /// be closed for it any more.
    fn finished(&mut self) {
        self.held.take();
        if let Some((closer, armed)) = self.closer.take() {
            closer.disarm(armed);
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.finished();
    }
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        // The timer first: a container streaming without pause would otherwise never
        // let the deadline be seen. Polling it also has hyper poll again at that time
        // while the answer waits on the container.
        while self.wake.as_mut().poll(cx).is_ready() {
            if Instant::now() >= self.deadline {
                self.held.take();
                return Poll::Ready(Some(Err(TimedOut.into())));
            }
            // The kept connection got too old while the answer streams on it.
            if let Some(kept) = self.kept.take() {
                kept.retire();
            }
            let deadline = self.deadline;
            self.wake.as_mut().reset(deadline);
        }
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.finished();
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
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

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(3600)
    }

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
        drop(upload.attempt(later())); // a refused connection: hyper never asked for the body
        assert!(!upload.taken(), "nothing was sent");
        let body = upload.attempt(later()).collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hello world");
        assert!(upload.taken(), "once polled, the request may have run");
        let again = upload.attempt(later()).collect().await.unwrap().to_bytes();
        assert!(again.is_empty(), "a body is never sent twice");
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_ends_in_an_error_and_says_so() {
        let upload = Upload::new(chunked(&[b"12345", b"67890", b"x"]), 10);
        let err = upload.attempt(later()).collect().await.unwrap_err();
        assert!(err.to_string().contains("limit of 10 bytes"), "{err}");
        assert_eq!(upload.failed(), Some(UploadError::TooLarge(10)));
        let exact = Upload::new(chunked(&[b"12345", b"67890"]), 10);
        assert_eq!(
            exact
                .attempt(later())
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .len(),
            10
        );
        assert_eq!(exact.failed(), None, "the limit itself is allowed");
    }

    #[tokio::test]
    async fn a_small_chunked_body_is_sent_with_its_length_a_large_one_streams() {
        let small = Upload::read(chunked(&[b"ab", b"cd"]), 100, SMALL_CHUNKED, later())
            .await
            .unwrap();
        let body = small.attempt(later());
        assert_eq!(
            body.size_hint().exact(),
            Some(4),
            "sent with a Content-Length"
        );
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"abcd");

        let big: &'static [u8] = Box::leak(vec![7u8; SMALL_CHUNKED].into_boxed_slice());
        let large = Upload::read(chunked(&[big, b"tail"]), 1 << 20, SMALL_CHUNKED, later())
            .await
            .unwrap();
        let body = large.attempt(later());
        assert_eq!(body.size_hint().exact(), None, "streamed, chunked");
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), SMALL_CHUNKED + 4);
        assert!(all.ends_with(b"tail"));

        let whole = Upload::read(chunked(&[big, b"tail"]), 1 << 20, 1 << 20, later())
            .await
            .unwrap();
        let body = whole.attempt(later());
        assert_eq!(
            body.size_hint().exact(),
            Some(SMALL_CHUNKED as u64 + 4),
            "read whole: sent with a Content-Length"
        );

        let over = Upload::read(
            chunked(&[b"12345", b"67890", b"x"]),
            10,
            SMALL_CHUNKED,
            later(),
        )
        .await;
        assert_eq!(
            over.err(),
            Some(UploadError::TooLarge(10)),
            "over the limit while still being read: 413 at once"
        );
    }

    /// A body that sends `first` and then nothing, ever: a client that stalled.
    fn stalled(first: &'static [u8]) -> Body {
        use futures_util::StreamExt;
        let first = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(
            Bytes::from_static(first),
        ))]);
        Body::new(http_body_util::StreamBody::new(
            first.chain(futures_util::stream::pending()),
        ))
    }

    /// A body that sends `first` and then breaks off: a client that hung up.
    fn broken(first: &'static [u8]) -> Body {
        let frames = [
            Ok(Frame::data(Bytes::from_static(first))),
            Err(std::io::Error::other("connection reset")),
        ];
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_at_the_deadline_as_the_clients_fault() {
        let soon = Instant::now() + std::time::Duration::from_secs(2);
        let read = Upload::read(stalled(b"abc"), 100, SMALL_CHUNKED, soon).await;
        assert_eq!(read.err(), Some(UploadError::TimedOut), "while pre-read");
        let upload = Upload::new(stalled(b"abc"), 100);
        let err = upload.attempt(soon).collect().await.unwrap_err();
        assert!(err.to_string().contains("did not arrive"), "{err}");
        assert_eq!(
            upload.failed(),
            Some(UploadError::TimedOut),
            "while streamed"
        );
        assert_eq!(UploadError::TimedOut.status(), 408);
    }

    #[tokio::test]
    async fn a_broken_body_is_the_clients_fault_and_never_sent_on() {
        let read = Upload::read(broken(b"abc"), 100, SMALL_CHUNKED, later()).await;
        assert_eq!(read.err(), Some(UploadError::Broken), "while pre-read");
        let upload = Upload::new(broken(b"abc"), 100);
        assert!(upload.attempt(later()).collect().await.is_err());
        assert_eq!(upload.failed(), Some(UploadError::Broken), "while streamed");
        assert_eq!(UploadError::Broken.status(), 400);
    }

    #[tokio::test]
    async fn length_and_emptiness_are_known_before_the_body_is_taken() {
        let upload = Upload::new(Body::from("abc"), 10);
        let body = upload.attempt(later());
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let empty = Upload::new(Body::empty(), 10).attempt(later());
        assert!(
            empty.is_end_stream(),
            "no chunked encoding for an empty GET"
        );
        assert!(!upload.taken(), "asking for the length takes nothing");
    }
}
