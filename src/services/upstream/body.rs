//! The two bodies of a proxied exchange: the request body on its way up,
//! which says when it was sent in full and gives up on a client that stops
//! sending, and the response body on its way back, which gives up on an
//! upstream that stops sending and returns the connection to the pool when
//! the whole exchange is done.
//!
//! Both idle timers are armed only when their body is waiting (`Pending`)
//! after some progress, and pushed forward in place (`Sleep::reset`, which
//! does not touch the timer wheel when the deadline only moves later): no
//! task, allocation or wheel operation per frame.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::pool::{Conn, Pool};
use crate::error::{BoxError, UpstreamId};
use crate::inspector::Tap;
use prometheus_client::metrics::counter::Counter;

/// The client's request body produced nothing for the upstream's
/// `request_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
pub(crate) struct RequestBodyTimeout(pub(crate) Duration);

/// The upstream sent no response body data for its `body_idle_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream} stalled: no response body data for {after:?}")]
pub(crate) struct UpstreamStalled {
    upstream: UpstreamId,
    after: Duration,
}

impl UpstreamStalled {
    pub(super) fn new(up: &crate::config::Upstream, after: Duration) -> UpstreamStalled {
        UpstreamStalled {
            upstream: UpstreamId::of(up),
            after,
        }
    }
}

/// Whether the connection may go back to the pool when the response ends.
pub(crate) enum Reuse {
    /// Yes: the request had no body, it went out with the head.
    Yes,
    /// Once the request body was sent in full (the flag is set then).
    AfterBody(Arc<AtomicBool>),
    /// Never (a dedicated connection).
    No,
}

impl Reuse {
    fn allowed(&self) -> bool {
        match self {
            Reuse::Yes => true,
            Reuse::AfterBody(sent) => sent.load(Ordering::Acquire),
            Reuse::No => false,
        }
    }
}

/// An idle timer: armed when its body waits after progress.
pub(super) struct Idle {
    pub(super) after: Duration,
    /// A frame arrived since the timer was last armed.
    pub(super) progressed: bool,
}

impl Idle {
    pub(super) fn new(after: Duration) -> Idle {
        Idle {
            after,
            progressed: true,
        }
    }

    /// Called when the body is `Pending`: true when it has now been idle
    /// for `after`.
    pub(super) fn expired(&mut self, mut sleep: Pin<&mut Sleep>, cx: &mut Context<'_>) -> bool {
        if std::mem::take(&mut self.progressed) {
            sleep.as_mut().reset(Instant::now() + self.after);
        }
        sleep.poll(cx).is_ready()
    }
}

pin_project! {
    /// The client's body on its way upstream: sets `sent` when its last
    /// frame was taken, and fails with [`RequestBodyTimeout`] when the client
    /// sends nothing for the timeout (the upstream request is cancelled).
    pub(crate) struct RequestBody<B> {
        #[pin]
        inner: B,
        sent: Arc<AtomicBool>,
        idle: Idle,
        #[pin]
        sleep: Sleep,
        seen: Seen,
    }
}

/// Who else sees a request body go by: the inspector's tap (while body
/// capture is on) and the bytes metric.
pub(crate) struct Seen {
    pub tap: Option<Arc<Tap>>,
    pub bytes: Counter,
}

impl<B> RequestBody<B> {
    /// Wraps `inner`; the returned flag is set once it was sent in full.
    /// `seen` counts every data frame and taps it, and sees the end.
    pub(crate) fn new(
        inner: B,
        timeout: Duration,
        seen: Seen,
    ) -> (RequestBody<B>, Arc<AtomicBool>) {
        let sent = Arc::new(AtomicBool::new(false));
        let body = RequestBody {
            inner,
            sent: sent.clone(),
            idle: Idle::new(timeout),
            sleep: tokio::time::sleep(timeout),
            seen,
        };
        (body, sent)
    }
}

impl<B> HttpBody for RequestBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.progressed = true;
                let ended = match &frame {
                    None => true,
                    Some(Ok(_)) => this.inner.is_end_stream(),
                    Some(Err(_)) => false,
                };
                if let Some(Some(data)) = frame.as_ref().map(|f| f.as_ref().ok()?.data_ref()) {
                    this.seen.bytes.inc_by(data.len() as u64);
                    if let Some(tap) = this.seen.tap.as_deref() {
                        tap.feed(data);
                    }
                }
                if ended {
                    if let Some(tap) = this.seen.tap.as_deref() {
                        tap.end();
                    }
                }
                if ended {
                    this.sent.store(true, Ordering::Release);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.idle.expired(this.sleep, cx) {
                    let e = RequestBodyTimeout(this.idle.after);
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// An upstream response body. The connection goes back to the pool only
    /// when the body was read to its end and the request was sent in full; a
    /// body dropped early (client gone), cut short or stalled takes its
    /// connection with it, so a half-done exchange is never reused.
    pub(super) struct PooledBody {
        inner: Incoming,
        conn: Option<Conn>,
        pool: Arc<Pool>,
        reuse: Reuse,
        idle: Idle,
        #[pin]
        sleep: Sleep,
    }

    impl PinnedDrop for PooledBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Bodies hyper never polls (HEAD, 204, 304) are complete.
            if this.inner.is_end_stream() {
                release(this.conn, this.pool, this.reuse);
            }
        }
    }
}

impl PooledBody {
    pub(super) fn new(inner: Incoming, conn: Conn, pool: Arc<Pool>, reuse: Reuse) -> Self {
        let after = pool.upstream.body_idle_timeout;
        PooledBody {
            inner,
            conn: Some(conn),
            pool,
            reuse,
            idle: Idle::new(after),
            sleep: tokio::time::sleep(after),
        }
    }
}

/// Checks the connection in if the exchange allows it; otherwise it is
/// dropped (closed).
fn release(conn: &mut Option<Conn>, pool: &Pool, reuse: &Reuse) {
    if let Some(conn) = conn.take() {
        if reuse.allowed() {
            pool.checkin(conn);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match Pin::new(&mut *this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.idle.progressed = true;
                match &frame {
                    None => release(this.conn, this.pool, this.reuse),
                    Some(Ok(_)) if this.inner.is_end_stream() => {
                        release(this.conn, this.pool, this.reuse)
                    }
                    // An error mid-body: the connection is broken, drop it;
                    // hyper aborts the client connection rather than end the
                    // response as if it were complete.
                    Some(Err(_)) => *this.conn = None,
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.idle.expired(this.sleep, cx) {
                    return Poll::Pending;
                }
                *this.conn = None;
                let e = UpstreamStalled::new(&this.pool.upstream, this.idle.after);
                tracing::warn!("{e}; the response to the client is aborted");
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
