//! The fast HTTP/1 path (`[server] http1 = "fast"`, the default): a
//! proxied HTTP/1.1 exchange of the common shape served without hyper.
//! Request heads are parsed with `httparse` from a per-connection buffer
//! (`http::h1`), decided by the same code as on hyper's path
//! (`dispatch::route_head`, `proxy::prepare`, `upstream::response_headers`:
//! the header rules exist once), sent on a raw pooled upstream socket that
//! this task reads and writes itself, and the response head and body are
//! written back straight from the upstream's read buffer.
//!
//! Whatever is not the common shape (see [`h1::parse_request`]), not a
//! plain-HTTP proxy route, a request whose body has not arrived whole with
//! its head (an upload: hyper streams it, both ways at once), and every
//! request-side refusal, is handed to hyper with the bytes read so far
//! replayed ([`ClientIo::replaying`]): from then on hyper serves the
//! connection, so every odd case is judged by one parser and answered by
//! one dispatch.
//!
//! Kept from hyper's path: `header_read_timeout` for each head and between
//! requests, `send_timeout` (through [`ClientIo`]), the upstream's
//! `response_timeout` (head) and `body_idle_timeout`, the pool's cap, hold
//! while the upstream restarts, reuse only after a complete exchange, the
//! access-log entry, metrics and the inspector's body capture, request
//! bodies by `Content-Length` or chunked (decoded and framed anew).
//! Not here: pipelined requests are served in order without reading ahead;
//! HTTPS upstreams are hyper's.

use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::server::graceful::Watcher;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::connection::{Builders, serve_h1};
use crate::access_log::Entry;
use crate::conn::{ClientIo, Conn};
use crate::dispatch::{self, Routing};
use crate::error::Error;
use crate::http::body::Body;
use crate::http::h1::{self, Framing, Parse, RequestBody};
use crate::http::headers::Accepts;
use crate::inspector::Tap;
use crate::services::Ctx;
use crate::services::proxy;
use crate::services::upstream::{self, Pool};
use crate::snapshot::{Shared, Target};

/// How much a read asks for at least.
const READ_CHUNK: usize = 8 * 1024;
/// The largest request head the fast path waits for; a longer one goes to
/// hyper, which answers 431 (its buffer is as large).
const MAX_HEAD: usize = 64 * 1024;
/// Response body gathered before it is written to the client.
const FLUSH_AT: usize = 16 * 1024;

/// One client connection and its buffers, reused for every request.
struct Client<S> {
    io: ClientIo<S>,
    /// Bytes read from the client not yet used.
    rbuf: BytesMut,
    /// What is written next to the client.
    out: Vec<u8>,
    /// What is written next to the upstream.
    up_out: Vec<u8>,
    /// Bytes read from the upstream not yet used.
    up_buf: BytesMut,
    /// The last request's and response's header maps, cleared: their
    /// allocations serve the next ones.
    req_headers: HeaderMap,
    resp_headers: HeaderMap,
    /// Where a response head's fields lie, when it is written through.
    resp_spans: Vec<[u32; 4]>,
    /// The header-read and response timeouts, made once per connection
    /// and moved forward for each request: a deadline that only moves
    /// later does not touch the runtime's timer wheel, where a new timer
    /// per request was inserted and removed each time.
    head_timer: Pin<Box<Sleep>>,
    response_timer: Pin<Box<Sleep>>,
}

/// Serves `io` on the fast path while its requests have the common shape,
/// then hands it to hyper.
pub(super) async fn serve<S>(
    io: ClientIo<S>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    builders: &Builders,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut c = Client {
        io,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::with_capacity(READ_CHUNK),
        up_out: Vec::with_capacity(1024),
        up_buf: BytesMut::with_capacity(READ_CHUNK),
        req_headers: HeaderMap::new(),
        resp_headers: HeaderMap::new(),
        resp_spans: Vec::new(),
        head_timer: Box::pin(tokio::time::sleep(builders.header_read_timeout)),
        response_timer: Box::pin(tokio::time::sleep(builders.header_read_timeout)),
    };
    let stopping = shared.tunnels.shutting_down.clone();
    let stop = stopping.cancelled();
    tokio::pin!(stop);
    loop {
        let head = match next_head(&mut c, builders, &stopping, stop.as_mut()).await {
            Next::Head(h) => h,
            Next::Other => return fallback(c, None, conn, shared, builders, watcher).await,
            Next::Close => return,
        };
        match serve_one(&mut c, head, &conn, &shared).await {
            Served::KeepAlive => {}
            Served::Close => {
                let _ = c.io.shutdown().await;
                return;
            }
            Served::Other(raw) => {
                return fallback(c, Some(raw), conn, shared, builders, watcher).await;
            }
        }
    }
}

// Made and taken apart once per request: boxing the head would cost an
// allocation each time.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(h1::RequestHead),
    /// Not the common shape: hyper's.
    Other,
    Close,
}

/// Reads until `c.rbuf` starts with a whole request head, within
/// `header_read_timeout`.
async fn next_head<S: AsyncRead + Unpin>(
    c: &mut Client<S>,
    builders: &Builders,
    stopping: &CancellationToken,
    mut stop: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
) -> Next {
    if stopping.is_cancelled() {
        return Next::Close;
    }
    c.head_timer
        .as_mut()
        .reset(Instant::now() + builders.header_read_timeout);
    loop {
        if !c.rbuf.is_empty() {
            match h1::parse_request(&mut c.rbuf, &mut c.req_headers) {
                Parse::Complete(h) => return Next::Head(h),
                Parse::Other => return Next::Other,
                Parse::Partial if c.rbuf.len() >= MAX_HEAD => return Next::Other,
                Parse::Partial => {}
            }
        }
        c.rbuf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            r = c.io.read_buf(&mut c.rbuf) => r,
            // Silent past the timeout: closed without an answer, as hyper
            // does.
            _ = c.head_timer.as_mut() => return Next::Close,
            _ = stop.as_mut(), if c.rbuf.is_empty() => return Next::Close,
        };
        match read {
            Ok(0) if c.rbuf.is_empty() => return Next::Close,
            // Closed within a head: hyper judges (end of file is sticky).
            Ok(0) => return Next::Other,
            Ok(_) => {}
            Err(_) => return Next::Close,
        }
    }
}

enum Served {
    KeepAlive,
    Close,
    /// Not for the fast path: the head's bytes, for hyper.
    Other(Bytes),
}

/// One request: decided by dispatch's own rules, proxied when it is a
/// plain-HTTP proxy route, otherwise handed back untouched.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Client<S>,
    head: h1::RequestHead,
    conn: &Conn,
    shared: &Arc<Shared>,
) -> Served {
    let h1::RequestHead { mut req, raw, body } = head;
    let mut entry = Entry::new(
        &req,
        conn,
        shared.metrics.clone(),
        std::time::Instant::now(),
    );
    let mut hsts = None;
    let routed = match dispatch::route_head(&req, conn, shared, &mut entry, &mut hsts) {
        Ok(Routing::Routed(r)) => r,
        _ => return Served::Other(raw),
    };
    let Target::Proxy(pool) = &routed.routed.target else {
        return Served::Other(raw);
    };
    if !pool.raw_capable() {
        return Served::Other(raw);
    }
    let ctx = routed.ctx(conn);
    let prepared = match proxy::prepare(&mut req, &ctx, &routed.snap.rules, &pool.upstream) {
        Ok(p) if p.upgrade.is_none() => p,
        _ => return Served::Other(raw),
    };
    // Only a body that came in whole with its head is sent from here: one
    // still arriving (an upload) goes to hyper, which streams it while the
    // upstream may already answer (full duplex), and a chunked body that is
    // malformed or over the route's limit is hyper's to refuse.
    let Some(body_len) = whole_body(&c.rbuf, body, ctx.route.body_limit) else {
        return Served::Other(raw);
    };
    drop(raw);
    let received = c.rbuf.split_to(body_len).freeze();
    if body == RequestBody::Chunked {
        // Framed anew for the upstream (the rules strip the client's).
        req.headers_mut().insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    let x = Exchange {
        req: &req,
        body,
        received,
        pool,
        ctx: &ctx,
        upstream_host: &prepared.upstream_host,
        hsts: hsts.as_ref(),
        request_bytes: &shared.metrics.request_bytes,
        // A head the rules would only strip hop-by-hop fields from is
        // written through without a header map, unless the inspector keeps
        // the map or HSTS is added to it.
        raw_heads: hsts.is_none() && !shared.metrics.inspector.on(),
    };
    let served = match x.run(c, &mut entry).await {
        Ok(bytes) => {
            entry.end(bytes, true);
            Served::KeepAlive
        }
        Err(Failed::Answered { bytes }) => {
            entry.end(bytes, false);
            Served::Close
        }
        Err(Failed::Before(err)) => {
            // `Accept` is still as the client sent it: the forwarding rules
            // leave it alone, and on this path `Connection` names nothing.
            let accepts = Accepts::of(req.headers());
            let resp = dispatch::error_response(&err, accepts, conn, shared, &mut entry);
            let head = req.method() == Method::HEAD;
            let (bytes, close) = write_page(c, resp, hsts.as_ref(), head, &mut entry).await;
            entry.end(bytes, true);
            if close {
                Served::Close
            } else {
                Served::KeepAlive
            }
        }
    };
    c.req_headers = std::mem::take(req.headers_mut());
    c.req_headers.clear();
    served
}

/// How many bytes at the start of `buf` are the request's whole body, or
/// `None` if it is not all there (or, chunked, is malformed or decodes to
/// more than `limit`).
fn whole_body(buf: &[u8], body: RequestBody, limit: Option<u64>) -> Option<usize> {
    match body {
        RequestBody::Length(n) => usize::try_from(n).ok().filter(|&n| n <= buf.len()),
        RequestBody::Chunked => {
            let mut dec = h1::Chunked::default();
            let mut total = 0u64;
            let used = dec.decode(buf, |d| total += d.len() as u64).ok()?;
            (dec.is_done() && limit.is_none_or(|l| total <= l)).then_some(used)
        }
    }
}

/// Hands the connection to hyper, replaying `raw` (a head already taken off
/// the buffer) and every byte read but not used.
async fn fallback<S>(
    c: Client<S>,
    raw: Option<Bytes>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    builders: &Builders,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.metrics.http1_handoffs.inc();
    let raw = raw.unwrap_or_default();
    let (stream, rest) = c.io.into_parts();
    let mut prefix = Vec::with_capacity(raw.len() + c.rbuf.len() + rest.len());
    prefix.extend_from_slice(&raw);
    prefix.extend_from_slice(&c.rbuf);
    prefix.extend_from_slice(&rest);
    let io = ClientIo::replaying(stream, prefix, builders.send_timeout);
    serve_h1(io, conn, shared, builders, watcher).await
}

enum Failed {
    /// Nothing was written to the client: it gets the error page.
    Before(Error),
    /// The response was under way: the client connection is closed.
    Answered { bytes: u64 },
}

/// One exchange with the upstream.
struct Exchange<'a> {
    req: &'a Request<()>,
    body: RequestBody,
    /// The request body as received (whole, see [`whole_body`]).
    received: Bytes,
    pool: &'a Arc<Pool>,
    ctx: &'a Ctx<'a>,
    upstream_host: &'a str,
    hsts: Option<&'a HeaderValue>,
    request_bytes: &'a Counter,
    /// The response head may be written through from the upstream's
    /// bytes when the rules would leave it alone but for its hop-by-hop
    /// fields (`h1::ResponseHead::raw`).
    raw_heads: bool,
}

impl Exchange<'_> {
    /// The exchange: the response's body bytes written, when whole.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        c: &mut Client<S>,
        entry: &mut Entry,
    ) -> Result<u64, Failed> {
        let up = &*self.pool.upstream;
        let mut upc = upstream::obtain_raw(self.pool)
            .await
            .map_err(Failed::Before)?;
        let timeout = self
            .ctx
            .route
            .response_timeout
            .unwrap_or(up.response_timeout);
        let head_req = self.req.method() == Method::HEAD;
        let upstream = &mut upc.stream;
        // `whole_body` has decoded a chunked body once already: this does
        // not fail in practice.
        self.request(c, entry).map_err(|_| {
            Failed::Before(Error::BadRequest(
                "the request body is malformed or was cut short",
            ))
        })?;
        let into = upstream::raw::HeadBufs {
            buf: &mut c.up_buf,
            cache: &mut c.resp_headers,
            spans: self.raw_heads.then_some(&mut c.resp_spans),
        };
        c.response_timer.as_mut().reset(Instant::now() + timeout);
        let timer = (c.response_timer.as_mut(), timeout);
        let resp = upstream::raw::round_trip(up, upstream, &c.up_out, head_req, into, timer)
            .await
            .map_err(Failed::Before)?;

        let h1::ResponseHead {
            status,
            reason,
            mut headers,
            framing,
            keep_alive,
            raw,
        } = resp;
        let extra: &[u8] = match framing {
            Framing::Chunked | Framing::Close => b"transfer-encoding: chunked\r\n",
            Framing::Empty | Framing::Length(_) => b"",
        };
        entry.status = status;
        c.out.clear();
        match raw {
            Some(raw) => {
                let spans = &c.resp_spans;
                h1::write_raw_response_head(
                    &mut c.out,
                    status,
                    reason.as_deref(),
                    &raw,
                    spans,
                    extra,
                );
            }
            None => {
                upstream::response_headers(&mut headers, self.ctx, up, self.upstream_host);
                if let Some(v) = self.hsts {
                    headers.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
                }
                dedupe_length(&mut headers);
                entry.response_headers(&headers);
                h1::write_response_head(&mut c.out, status, reason.as_deref(), &headers, extra);
                headers.clear();
            }
        }
        c.resp_headers = headers;

        let idle = up.body_idle_timeout;
        let tap = entry.response_tap();
        let (bytes, complete) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => copy_length(c, upstream, n, idle, tap).await,
            Framing::Chunked | Framing::Close => {
                copy_chunked(c, upstream, framing == Framing::Close, idle, tap).await
            }
        };
        let wrote = if c.out.is_empty() {
            true
        } else {
            c.io.write_all(&c.out).await.is_ok()
        };
        c.out.clear();
        if !(complete && wrote) {
            return Err(Failed::Answered { bytes });
        }
        // Reused only when the exchange is complete and nothing more came.
        if keep_alive && c.up_buf.is_empty() {
            self.pool.checkin_raw(upc);
        }
        c.up_buf.clear();
        Ok(bytes)
    }

    /// The request head and its body (a chunked one decoded and framed
    /// anew, as hyper does) in `c.up_out`, for one write.
    fn request<S>(&self, c: &mut Client<S>, entry: &Entry) -> Result<(), h1::BadChunk> {
        c.up_out.clear();
        h1::write_request_head(&mut c.up_out, self.req);
        let tap = entry.request_tap();
        let seen = |d: &[u8]| {
            self.request_bytes.inc_by(d.len() as u64);
            if let Some(tap) = &tap {
                tap.feed(d);
            }
        };
        match self.body {
            RequestBody::Length(_) => {
                seen(&self.received);
                c.up_out.extend_from_slice(&self.received);
            }
            RequestBody::Chunked => {
                let out = &mut c.up_out;
                let mut dec = h1::Chunked::default();
                // Decoded once already by `whole_body`.
                dec.decode(&self.received, |d| {
                    seen(d);
                    h1::write_chunk(out, d);
                })?;
                c.up_out.extend_from_slice(h1::CHUNKED_END);
            }
        }
        if let Some(tap) = &tap {
            tap.end();
        }
        Ok(())
    }
}

/// Several equal `Content-Length` fields are written as one (hyper does
/// the same).
fn dedupe_length(headers: &mut HeaderMap) {
    let mut all = headers.get_all(header::CONTENT_LENGTH).iter();
    if all.next().is_some() && all.next().is_some() {
        if let Some(v) = headers.get(header::CONTENT_LENGTH).cloned() {
            headers.insert(header::CONTENT_LENGTH, v);
        }
    }
}

/// Reads once from the upstream into `buf`, within `idle`; `false` at the
/// end of the stream, on an error or past the timeout.
async fn fill(upstream: &mut TcpStream, buf: &mut BytesMut, idle: std::time::Duration) -> bool {
    buf.reserve(READ_CHUNK);
    matches!(
        tokio::time::timeout(idle, upstream.read_buf(buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

/// A `Content-Length` body: what came with the head goes out with the
/// client's head, the rest as it arrives. Returns the bytes sent and
/// whether the body was whole.
async fn copy_length<S: AsyncWrite + Unpin>(
    c: &mut Client<S>,
    upstream: &mut TcpStream,
    n: u64,
    idle: std::time::Duration,
    tap: Option<&Tap>,
) -> (u64, bool) {
    let mut sent = 0u64;
    loop {
        let here = usize::try_from(n - sent)
            .unwrap_or(usize::MAX)
            .min(c.up_buf.len());
        if let Some(tap) = tap {
            tap.feed(&c.up_buf[..here]);
        }
        c.out.extend_from_slice(&c.up_buf[..here]);
        c.up_buf.advance(here);
        sent += here as u64;
        if sent == n {
            return (sent, true);
        }
        if c.io.write_all(&c.out).await.is_err() {
            return (sent, false);
        }
        c.out.clear();
        if !fill(upstream, &mut c.up_buf, idle).await {
            return (sent, false);
        }
    }
}

/// A chunked body (or one delimited by the upstream closing: `close`),
/// sent to the client chunked.
async fn copy_chunked<S: AsyncWrite + Unpin>(
    c: &mut Client<S>,
    upstream: &mut TcpStream,
    close: bool,
    idle: std::time::Duration,
    tap: Option<&Tap>,
) -> (u64, bool) {
    let mut dec = h1::Chunked::default();
    let mut sent = 0u64;
    let feed = |d: &[u8]| {
        if let Some(tap) = tap {
            tap.feed(d);
        }
    };
    loop {
        if close {
            let data = c.up_buf.split();
            feed(&data);
            h1::write_chunk(&mut c.out, &data);
            sent += data.len() as u64;
        } else {
            let out = &mut c.out;
            match dec.decode(&c.up_buf, |d| {
                feed(d);
                h1::write_chunk(out, d);
                sent += d.len() as u64;
            }) {
                Ok(used) => c.up_buf.advance(used),
                Err(_) => return (sent, false),
            }
            if dec.is_done() {
                c.out.extend_from_slice(h1::CHUNKED_END);
                return (sent, true);
            }
        }
        if c.out.len() >= FLUSH_AT {
            if c.io.write_all(&c.out).await.is_err() {
                return (sent, false);
            }
            c.out.clear();
        }
        if !fill(upstream, &mut c.up_buf, idle).await {
            if close && c.up_buf.is_empty() {
                c.out.extend_from_slice(h1::CHUNKED_END);
                return (sent, true);
            }
            return (sent, false);
        }
    }
}

/// Writes one of dispatch's own responses (an error page): its body is in
/// memory. Returns the body bytes written and whether the connection must
/// close after it.
async fn write_page<S: AsyncWrite + Unpin>(
    c: &mut Client<S>,
    resp: Response<Body>,
    hsts: Option<&HeaderValue>,
    head: bool,
    entry: &mut Entry,
) -> (u64, bool) {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut headers = parts.headers;
    if let Some(v) = hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let close = headers
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    entry.status = parts.status;
    entry.response_headers(&headers);
    c.out.clear();
    h1::write_response_head(&mut c.out, parts.status, None, &headers, b"");
    let bytes = if head || parts.status == StatusCode::NOT_MODIFIED {
        0
    } else {
        c.out.extend_from_slice(&body);
        body.len() as u64
    };
    let ok = c.io.write_all(&c.out).await.is_ok();
    c.out.clear();
    (bytes, close || !ok)
}
