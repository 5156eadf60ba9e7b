//! The response body that gives its upstream connection back to the pool
//! when it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::{Pool, Sender};

/// An upstream response body. The connection goes back to the pool only
/// when the body was read to its end; a body dropped early (client gone)
/// takes its connection with it, so a half-read response is never reused.
pub(super) struct PooledBody {
    inner: Incoming,
    conn: Option<(Sender, Arc<Pool>)>,
}

impl PooledBody {
    pub(super) fn new(inner: Incoming, sender: Sender, pool: Arc<Pool>) -> Self {
        PooledBody {
            inner,
            conn: Some((sender, pool)),
        }
    }

    fn release(&mut self) {
        if let Some((sender, pool)) = self.conn.take() {
            pool.checkin(sender);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            // An error mid-body: the connection is broken, drop it; hyper
            // aborts the client connection rather than end the response
            // as if it were complete.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Bodies hyper never polls (HEAD, 204, 304) are complete.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
