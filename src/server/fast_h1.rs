//! The fast HTTP/1 path (a prototype, off unless `PORTERO_FAST_H1=1` is in
//! the environment when portero starts): a proxied HTTP/1.1 exchange of the
//! common shape served without hyper. Request heads are parsed with
//! `httparse` from a per-connection buffer (`http::h1`), decided by the
//! same code as on hyper's path (`dispatch::route_head`,
//! `proxy::prepare`, `upstream::response_headers`: the header rules exist
//! once), sent on a raw pooled upstream socket that this task reads and
//! writes itself, and the response head and body are written back straight
//! from the upstream's read buffer.
//!
//! Whatever is not the common shape (see [`h1::parse_request`]) or not a
//! plain-HTTP proxy route, and every request-side refusal, is handed to
//! hyper with the bytes read so far replayed ([`ClientIo::replaying`]):
//! from then on hyper serves the connection, so every odd case is judged
//! by one parser and answered by one dispatch.
//!
//! Kept from hyper's path: `header_read_timeout` for each head and between
//! requests, `send_timeout` (through [`ClientIo`]), the upstream's
//! `response_timeout` (head), `request_body_timeout` and
//! `body_idle_timeout`, the pool's cap, hold while the upstream restarts,
//! reuse only after a complete exchange, the access-log entry and metrics,
//! request bodies by `Content-Length` or chunked (decoded and framed anew,
//! the route's body limit counted), an upstream answering before the body
//! is sent (sending stops, the client connection closes after the answer).
//! Not yet: a response streamed while the request body still uploads (full
//! duplex), pipelined requests read ahead, HTTPS upstreams (hyper's).

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::{Builders, serve_h1};
use crate::access_log::Entry;
use crate::conn::{ClientIo, Conn};
use crate::dispatch::{self, Routing};
use crate::error::Error;
use crate::http::body::Body;
use crate::http::h1::{self, Framing, Parse, RequestBody};
use crate::http::headers::Accepts;
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

/// Whether the fast path is on: `PORTERO_FAST_H1=1` when portero starts.
pub(super) fn enabled() -> bool {
    std::env::var_os("PORTERO_FAST_H1").is_some_and(|v| v == "1")
}

/// An experiment on top (`PORTERO_FAST_H1_RAW=1`): a response head the
/// rules would leave alone but for its hop-by-hop fields is written
/// through from the upstream's bytes, without a header map.
fn raw_heads() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PORTERO_FAST_H1_RAW").is_some_and(|v| v == "1"))
}

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
    let deadline = Instant::now() + builders.header_read_timeout;
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
            r = tokio::time::timeout_at(deadline, c.io.read_buf(&mut c.rbuf)) => r,
            _ = stop.as_mut(), if c.rbuf.is_empty() => return Next::Close,
        };
        match read {
            // Silent past the timeout: closed without an answer, as hyper
            // does.
            Err(_) => return Next::Close,
            Ok(Ok(0)) if c.rbuf.is_empty() => return Next::Close,
            // Closed within a head: hyper judges (end of file is sticky).
            Ok(Ok(0)) => return Next::Other,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Next::Close,
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
    let mut entry = Entry::new(&req, conn, shared.metrics.clone(), std::time::Instant::now());
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
    let accepts = Accepts::of(req.headers());
    let prepared = match proxy::prepare(&mut req, &ctx, &routed.snap.rules, &pool.upstream) {
        Ok(p) if p.upgrade.is_none() => p,
        _ => return Served::Other(raw),
    };
    drop(raw);
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
        pool,
        ctx: &ctx,
        upstream_host: &prepared.upstream_host,
        hsts: hsts.as_ref(),
        // The inspector keeps the response's header map: then one is built.
        raw_heads: raw_heads() && hsts.is_none() && !shared.metrics.inspector.on(),
    };
    let result = x.run(c, &mut entry).await;
    c.req_headers = std::mem::take(req.headers_mut());
    c.req_headers.clear();
    match result {
        Ok(done) => {
            entry.end(done.bytes, true);
            if done.body_read {
                Served::KeepAlive
            } else {
                Served::Close
            }
        }
        Err(Failed::Answered { bytes }) => {
            entry.end(bytes, false);
            Served::Close
        }
        Err(Failed::Before { err, body_read }) => {
            let resp = dispatch::error_response(&err, accepts, conn, shared, &mut entry);
            let head = req.method() == Method::HEAD;
            let (bytes, close) = write_page(c, resp, hsts.as_ref(), head, &mut entry).await;
            entry.end(bytes, true);
            if close || !body_read {
                Served::Close
            } else {
                Served::KeepAlive
            }
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
    let raw = raw.unwrap_or_default();
    let (stream, rest) = c.io.into_parts();
    let mut prefix = Vec::with_capacity(raw.len() + c.rbuf.len() + rest.len());
    prefix.extend_from_slice(&raw);
    prefix.extend_from_slice(&c.rbuf);
    prefix.extend_from_slice(&rest);
    let io = ClientIo::replaying(stream, prefix, builders.send_timeout);
    serve_h1(io, conn, shared, builders, watcher).await
}

/// A proxied exchange whose response was written in full.
struct Done {
    bytes: u64,
    /// The request body was read in full: the client connection may carry
    /// another request.
    body_read: bool,
}

enum Failed {
    /// Nothing was written to the client: it gets the error page.
    Before {
        err: Error,
        /// The request body was read in full (the connection's framing is
        /// intact).
        body_read: bool,
    },
    /// The response was under way: the client connection is closed.
    Answered { bytes: u64 },
}

/// One exchange with the upstream.
struct Exchange<'a> {
    req: &'a Request<()>,
    body: RequestBody,
    pool: &'a Arc<Pool>,
    ctx: &'a Ctx<'a>,
    upstream_host: &'a str,
    hsts: Option<&'a HeaderValue>,
    /// The response head may be written through ([`raw_heads`]).
    raw_heads: bool,
}

impl Exchange<'_> {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        c: &mut Client<S>,
        entry: &mut Entry,
    ) -> Result<Done, Failed> {
        let up = &*self.pool.upstream;
        let before = |err, body_read| Failed::Before { err, body_read };
        let (mut upc, _pooled) = upstream::obtain_raw(self.pool)
            .await
            .map_err(|e| before(e, self.body == RequestBody::Length(0)))?;
        let timeout = self
            .ctx
            .route
            .response_timeout
            .unwrap_or(up.response_timeout);
        let head_req = self.req.method() == Method::HEAD;
        let upstream = &mut upc.stream;
        let sent = tokio::time::timeout(timeout, async {
            let body_read = self.send(c, upstream).await?;
            let spans = self.raw_heads.then_some(&mut c.resp_spans);
            read_response_head(
                upstream,
                &mut c.up_buf,
                head_req,
                &mut c.resp_headers,
                spans,
            )
            .await
            .map(|head| (head, body_read))
            .map_err(|e| before(Error::upstream_unavailable(up, e), body_read))
        })
        .await;
        let (resp, body_read) = match sent {
            Err(_) => {
                let what = "waiting for the response headers";
                return Err(before(Error::upstream_timeout(up, what, timeout), false));
            }
            Ok(r) => r?,
        };

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
        let (bytes, complete) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => copy_length(c, upstream, n, idle).await,
            Framing::Chunked | Framing::Close => {
                copy_chunked(c, upstream, framing == Framing::Close, idle).await
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
        if keep_alive && body_read && c.up_buf.is_empty() {
            self.pool.checkin_raw(upc);
        }
        c.up_buf.clear();
        Ok(Done { bytes, body_read })
    }

    /// Writes the request head and its body (what was read with the head,
    /// then the rest from the client; a chunked body decoded and framed
    /// anew, as hyper does). Stops sending when the upstream answers first
    /// (an early 401 or 413 to an upload): `Ok(false)`, the body was not
    /// read in full.
    async fn send<S: AsyncRead + Unpin>(
        &self,
        c: &mut Client<S>,
        upstream: &mut TcpStream,
    ) -> Result<bool, Failed> {
        let up = &*self.pool.upstream;
        let unavailable = |e: std::io::Error, body_read| Failed::Before {
            err: Error::upstream_unavailable(up, e),
            body_read,
        };
        c.up_out.clear();
        h1::write_request_head(&mut c.up_out, self.req);
        let (rd, mut wr) = upstream.split();
        let mut left = match self.body {
            RequestBody::Length(n) => n,
            RequestBody::Chunked => return self.send_chunked(c, rd, wr).await,
        };
        let here = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(c.rbuf.len());
        c.up_out.extend_from_slice(&c.rbuf[..here]);
        c.rbuf.advance(here);
        left -= here as u64;
        tokio::select! {
            biased;
            _ = rd.readable(), if left > 0 => return Ok(false),
            w = wr.write_all(&c.up_out) => w.map_err(|e| unavailable(e, left == 0))?,
        }
        while left > 0 {
            if c.rbuf.is_empty() {
                if !self.more(c, &rd).await? {
                    return Ok(false);
                }
                continue;
            }
            let here = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(c.rbuf.len());
            left -= here as u64;
            let chunk = c.rbuf.split_to(here);
            tokio::select! {
                biased;
                _ = rd.readable() => return Ok(false),
                w = wr.write_all(&chunk) => w.map_err(|e| unavailable(e, left == 0))?,
            }
        }
        Ok(true)
    }

    /// A chunked request body: decoded from the client (strictly: a framing
    /// error is the client's 400), counted against the route's body limit
    /// (413), and sent on chunked, after the head already in `c.up_out`.
    async fn send_chunked<S: AsyncRead + Unpin>(
        &self,
        c: &mut Client<S>,
        rd: tokio::net::tcp::ReadHalf<'_>,
        mut wr: tokio::net::tcp::WriteHalf<'_>,
    ) -> Result<bool, Failed> {
        let up = &*self.pool.upstream;
        let route = self.ctx.route;
        let mut dec = h1::Chunked::default();
        let mut total = 0u64;
        loop {
            let out = &mut c.up_out;
            let used = dec
                .decode(&c.rbuf, |d| {
                    total += d.len() as u64;
                    h1::write_chunk(out, d);
                })
                .map_err(|_| Failed::Before {
                    err: Error::BadRequest("the request body is malformed or was cut short"),
                    body_read: false,
                })?;
            c.rbuf.advance(used);
            if let Some(limit) = route.body_limit.filter(|&l| total > l) {
                return Err(Failed::Before {
                    err: Error::PayloadTooLarge {
                        route: route.label(),
                        limit,
                    },
                    body_read: false,
                });
            }
            let done = dec.is_done();
            if done {
                c.up_out.extend_from_slice(h1::CHUNKED_END);
            }
            if !c.up_out.is_empty() {
                tokio::select! {
                    biased;
                    _ = rd.readable(), if !done => return Ok(false),
                    w = wr.write_all(&c.up_out) => w.map_err(|e| Failed::Before {
                        err: Error::upstream_unavailable(up, e),
                        body_read: done,
                    })?,
                }
                c.up_out.clear();
            }
            if done {
                return Ok(true);
            }
            if !self.more(c, &rd).await? {
                return Ok(false);
            }
        }
    }

    /// Reads more of the request body from the client, within the
    /// upstream's `request_body_timeout`; `Ok(false)` when the upstream
    /// answered meanwhile.
    async fn more<S: AsyncRead + Unpin>(
        &self,
        c: &mut Client<S>,
        rd: &tokio::net::tcp::ReadHalf<'_>,
    ) -> Result<bool, Failed> {
        let up = &*self.pool.upstream;
        c.rbuf.reserve(READ_CHUNK);
        let read = tokio::time::timeout(up.request_body_timeout, c.io.read_buf(&mut c.rbuf));
        let read = tokio::select! {
            biased;
            _ = rd.readable() => return Ok(false),
            r = read => r,
        };
        let err = match read {
            Err(_) => Error::RequestTimeout {
                after: up.request_body_timeout,
            },
            Ok(Ok(0)) | Ok(Err(_)) => {
                Error::BadRequest("the request body is malformed or was cut short")
            }
            Ok(Ok(_)) => return Ok(true),
        };
        Err(Failed::Before {
            err,
            body_read: false,
        })
    }
}

/// Reads the final response head into `buf` (interim responses skipped).
async fn read_response_head(
    upstream: &mut TcpStream,
    buf: &mut BytesMut,
    head_req: bool,
    cache: &mut HeaderMap,
    mut spans: Option<&mut Vec<[u32; 4]>>,
) -> Result<h1::ResponseHead, Box<dyn std::error::Error + Send + Sync>> {
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
) -> (u64, bool) {
    let mut sent = 0u64;
    loop {
        let here = usize::try_from(n - sent)
            .unwrap_or(usize::MAX)
            .min(c.up_buf.len());
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
) -> (u64, bool) {
    let mut dec = h1::Chunked::default();
    let mut sent = 0u64;
    loop {
        if close {
            let data = c.up_buf.split();
            h1::write_chunk(&mut c.out, &data);
            sent += data.len() as u64;
        } else {
            let out = &mut c.out;
            match dec.decode(&c.up_buf, |d| {
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
