//! Exchanges on raw upstream connections ([`RawConn`]): no connection task,
//! the request's own task writes the request head and reads the response
//! head (`httparse`, `h1::parse_response`). The fast HTTP/1 path copies the
//! response body to its client itself; hyper's paths (HTTP/2, and HTTP/1
//! handed to hyper) take it as a [`RawBody`] for a request without a body,
//! which saves hyper's client connection and its task hand-offs per request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::body::{Idle, UpstreamStalled};
use super::pool::{Pool, RawConn};
use super::{Ctx, obtain_raw, response_headers};
use crate::config::Upstream;
use crate::error::{BoxError, Error, UpstreamId};
use crate::http::body::{Body, boxed};
use crate::http::h1::{self, Framing};

/// Upstream reads grow the buffer by this much at a time.
const READ_CHUNK: usize = 8 * 1024;
/// The largest response head read (as hyper's client allows).
const MAX_HEAD: usize = 64 * 1024;

/// Where a response head is read.
pub(crate) struct HeadBufs<'a> {
    /// The bytes read: the body's first ones stay here after the head.
    pub buf: &'a mut BytesMut,
    /// A header map whose allocation the head's fields reuse.
    pub cache: &'a mut HeaderMap,
    /// See [`h1::ResponseHead::raw`].
    pub spans: Option<&'a mut Vec<[u32; 4]>>,
}

/// Writes `out` (a request head and whatever body goes with it) and reads
/// the final response head before `timer` fires (`timeout` is what it was
/// set to, for the error). `head_req`: the request was `HEAD`.
pub(crate) async fn round_trip(
    up: &Upstream,
    stream: &mut TcpStream,
    out: &[u8],
    head_req: bool,
    into: HeadBufs<'_>,
    (timer, timeout): (Pin<&mut Sleep>, Duration),
) -> Result<h1::ResponseHead, Error> {
    let exchange = async {
        stream.write_all(out).await?;
        read_response_head(stream, into.buf, head_req, into.cache, into.spans).await
    };
    let result = tokio::select! {
        biased;
        r = exchange => r,
        _ = timer => {
            let what = "waiting for the response headers";
            return Err(Error::upstream_timeout(up, what, timeout));
        }
    };
    // A response no correct server sends is the upstream's protocol error,
    // as on hyper's client; anything else (closed, reset) made it
    // unavailable.
    result.map_err(|e| match e.downcast::<h1::BadResponse>() {
        Ok(bad) => Error::upstream_protocol(up, bad.to_string()),
        Err(e) => Error::upstream_unavailable(up, e),
    })
}

/// Reads the final response head into `buf` (interim responses skipped).
async fn read_response_head(
    upstream: &mut TcpStream,
    buf: &mut BytesMut,
    head_req: bool,
    cache: &mut HeaderMap,
    mut spans: Option<&mut Vec<[u32; 4]>>,
) -> Result<h1::ResponseHead, BoxError> {
    buf.clear();
    loop {
        match h1::parse_response(buf, head_req, cache, spans.as_deref_mut())? {
            Some(h1::Response::Final(h)) => return Ok(h),
            Some(h1::Response::Interim) => continue,
            None if buf.len() >= MAX_HEAD => return Err("response head too large".into()),
            None => {}
        }
        buf.reserve(READ_CHUNK);
        if upstream.read_buf(buf).await? == 0 {
            return Err("the upstream closed the connection before answering".into());
        }
    }
}

/// Sends a request without a body (its head already made ready for the
/// upstream by `proxy::prepare`) on a raw connection and streams the answer
/// back, with the response header rules applied, as `proxy::forward` does
/// on hyper's client.
pub(crate) async fn forward_bodiless(
    head: Request<()>,
    pool: &Arc<Pool>,
    timeout: Duration,
    ctx: &Ctx<'_>,
    upstream_host: &str,
) -> Result<Response<Body>, Error> {
    let up = &*pool.upstream;
    let mut conn = obtain_raw(pool).await?;
    let mut out = Vec::with_capacity(512);
    h1::write_request_head(&mut out, &head);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let head_req = head.method() == http::Method::HEAD;
    let mut headers = head.into_parts().0.headers;
    headers.clear();
    let timer = std::pin::pin!(tokio::time::sleep(timeout));
    let h1::ResponseHead {
        status,
        reason,
        headers: mut resp_headers,
        framing,
        keep_alive,
        raw: _,
    } = round_trip(
        up,
        &mut conn.stream,
        &out,
        head_req,
        HeadBufs {
            buf: &mut buf,
            cache: &mut headers,
            spans: None,
        },
        (timer, timeout),
    )
    .await?;
    response_headers(&mut resp_headers, ctx, up, upstream_host);
    let body = RawBody::new(conn, pool.clone(), buf, framing, keep_alive);
    let mut resp = Response::new(boxed(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    // Written back to an HTTP/1 client as received, as hyper's client and
    // the fast path do.
    if let Some(reason) = reason.and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok()) {
        resp.extensions_mut().insert(reason);
    }
    Ok(resp)
}

/// Where a [`RawBody`] is in its response.
#[derive(Debug)]
enum State {
    /// This many bytes still to come.
    Length(u64),
    Chunked(h1::Chunked),
    /// Until the upstream closes.
    Close,
    Done,
}

pin_project! {
    /// A response body read from a raw connection. As with hyper's client
    /// (`PooledBody`), the connection goes back to the pool only when the
    /// body was read to its end and nothing more came; a body dropped early,
    /// cut short, malformed or stalled for the upstream's
    /// `body_idle_timeout` takes its connection with it.
    pub(crate) struct RawBody {
        conn: Option<RawConn>,
        pool: Arc<Pool>,
        // Bytes read from the upstream and not yet handed on.
        buf: BytesMut,
        state: State,
        keep_alive: bool,
        idle: Idle,
        #[pin]
        sleep: Sleep,
        // Data was handed on since the body last waited.
        handed: bool,
        // The error that ends the body, once data handed on before it
        // had a turn to be written (see `deliver`).
        deferred: Option<BoxError>,
    }
}

impl RawBody {
    fn new(
        conn: RawConn,
        pool: Arc<Pool>,
        buf: BytesMut,
        framing: Framing,
        keep_alive: bool,
    ) -> RawBody {
        let after = pool.upstream.body_idle_timeout;
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(h1::Chunked::default()),
            Framing::Close => State::Close,
        };
        let mut body = RawBody {
            conn: Some(conn),
            pool,
            buf,
            state,
            keep_alive,
            idle: Idle::new(after),
            sleep: tokio::time::sleep(after),
            handed: false,
            deferred: None,
        };
        if matches!(body.state, State::Done) {
            finish(&mut body.conn, &body.pool, &body.buf, body.keep_alive);
        }
        body
    }
}

/// The body is complete: the connection goes back to the pool if it may
/// carry another exchange and nothing more came on it.
fn finish(conn: &mut Option<RawConn>, pool: &Pool, buf: &BytesMut, keep_alive: bool) {
    if let Some(conn) = conn.take() {
        if keep_alive && buf.is_empty() {
            pool.checkin_raw(conn);
        }
    }
}

/// The upstream ended or broke the body before its end.
#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream}: the response body {what}")]
struct CutShort {
    upstream: UpstreamId,
    what: &'static str,
}

impl HttpBody for RawBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(e) = this.deferred.take() {
            return deliver(this.handed, this.deferred, e, cx);
        }
        let error = loop {
            // What is buffered first.
            let data = match this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    let n = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(this.buf.len());
                    *left -= n as u64;
                    let data = this.buf.split_to(n).freeze();
                    if *left == 0 {
                        *this.state = State::Done;
                    }
                    data
                }
                State::Close => this.buf.split().freeze(),
                State::Chunked(dec) => {
                    let mut out = BytesMut::new();
                    match dec.decode(this.buf, |d| out.extend_from_slice(d)) {
                        Ok(used) => this.buf.advance(used),
                        // What was decoded before the fault goes first.
                        Err(_) if !out.is_empty() => {
                            *this.conn = None;
                            let e = cut_short(this.pool, "is not valid chunked encoding");
                            *this.deferred = Some(e);
                            *this.handed = true;
                            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                        }
                        Err(_) => break cut_short(this.pool, "is not valid chunked encoding"),
                    }
                    if dec.is_done() {
                        *this.state = State::Done;
                    }
                    out.freeze()
                }
            };
            if matches!(this.state, State::Done) {
                finish(this.conn, this.pool, this.buf, *this.keep_alive);
            }
            if !data.is_empty() {
                *this.handed = true;
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if matches!(this.state, State::Done) {
                return Poll::Ready(None);
            }

            // Then more from the upstream.
            // Only an error took the connection before the end.
            let Some(conn) = this.conn.as_mut() else {
                break cut_short(this.pool, "was polled after an error");
            };
            this.buf.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, this.buf) {
                Poll::Ready(Ok(0)) if matches!(this.state, State::Close) => {
                    *this.conn = None;
                    *this.state = State::Done;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => break cut_short(this.pool, "ended before it was complete"),
                Poll::Ready(Ok(_)) => this.idle.progressed = true,
                Poll::Ready(Err(e)) => break e.into(),
                Poll::Pending => {
                    if !this.idle.expired(this.sleep.as_mut(), cx) {
                        *this.handed = false;
                        return Poll::Pending;
                    }
                    let e = UpstreamStalled::new(&this.pool.upstream, this.idle.after);
                    tracing::warn!("{e}; the response to the client is aborted");
                    break e.into();
                }
            }
        };
        // The connection is broken: it goes with the error.
        *this.conn = None;
        deliver(this.handed, this.deferred, error, cx)
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            State::Chunked(_) | State::Close => SizeHint::default(),
        }
    }
}

/// Hands on the body's error. An error right after data waits one turn
/// (the task is woken at once), so that the server writes out what it was
/// given before it aborts the response: an HTTP/1 client sees the head and
/// the body cut short, not a connection closed without a word.
fn deliver(
    handed: &mut bool,
    deferred: &mut Option<BoxError>,
    error: BoxError,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    if std::mem::take(handed) {
        *deferred = Some(error);
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    Poll::Ready(Some(Err(error)))
}

fn cut_short(pool: &Pool, what: &'static str) -> BoxError {
    Box::new(CutShort {
        upstream: UpstreamId::of(&pool.upstream),
        what,
    })
}
