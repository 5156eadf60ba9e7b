//! One accepted connection: TLS handshake if any (within
//! `tls_handshake_timeout`), then HTTP/1.1 with upgrades or HTTP/2, each
//! served by hyper's own builder.
//!
//! The protocol is chosen once per connection: by ALPN on TLS, else by
//! reading the first bytes (at most the 24 of the HTTP/2 preface, within
//! `header_read_timeout`) and replaying them to the chosen builder through
//! [`ClientIo`], which also enforces `send_timeout` on every write.
//!
//! What bounds how long a connection is held:
//! - first bytes: `header_read_timeout` (here);
//! - each HTTP/1 request head, and the idle wait between keep-alive
//!   requests: `header_read_timeout` (hyper restarts its header timer when
//!   a response is done);
//! - an HTTP/2 connection without a request in flight: `http2_idle_timeout`
//!   (the watchdog in [`serve_h2`]), and hyper's keep-alive pings for a
//!   dead peer;
//! - a client that stops reading: `send_timeout` ([`ClientIo`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::access_log::LoggedBody;
use crate::config::{Http1Mode, ServerConfig};
use crate::conn::{ClientIo, Conn, PREFIX_MAX, Transport};
use crate::dispatch;
use crate::http::body::BoxError;
use crate::snapshot::Shared;

/// The builders and timers every connection is served with.
pub(super) struct Builders {
    pub http1: hyper::server::conn::http1::Builder,
    pub http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// Whether cleartext connections may speak HTTP/2 by prior knowledge
    /// (TLS connections may whenever ALPN says so).
    pub h2c: bool,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub http2_idle_timeout: Duration,
    pub send_timeout: Duration,
    /// HTTP/1 connections start on the fast path (`[server] http1 =
    /// "fast"`, with keep-alive on: the fast path only keeps connections).
    pub fast_h1: bool,
}

impl Builders {
    pub(super) fn new(cfg: &ServerConfig) -> Builders {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        // Without a timer hyper silently ignores header_read_timeout.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout)
            .keep_alive(cfg.keep_alive)
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        // A peer that stops answering pings is gone: dropped after about
        // interval + timeout, whatever http2_idle_timeout says.
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(H2_PING_INTERVAL))
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .max_header_list_size(MAX_HEAD as u32);
        Builders {
            http1,
            http2,
            h2c: cfg.http2_prior_knowledge,
            header_read_timeout: cfg.header_read_timeout,
            tls_handshake_timeout: cfg.tls_handshake_timeout,
            http2_idle_timeout: cfg.http2_idle_timeout,
            send_timeout: cfg.send_timeout,
            fast_h1: cfg.keep_alive && cfg.http1 == Http1Mode::Fast,
        }
    }
}

/// The largest request head accepted, on HTTP/1 (its read buffer: a longer
/// head is answered 431 by hyper) and HTTP/2 (the header list) alike.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in one HTTP/1 request (431 beyond).
const MAX_HEADERS: usize = 100;
/// HTTP/2 keep-alive: a PING after this long without a frame from the peer…
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// …which must be answered within this long (hyper's default).
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// After an idle HTTP/2 connection is sent GOAWAY, how long (at most) it
/// may stay open for the peer to see it, when the idle timeout is longer.
const GOAWAY_GRACE: Duration = Duration::from_secs(5);

/// What an HTTP/2 connection without TLS starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; PREFIX_MAX] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How many connections a worker serves at once, and whether it has said
/// it is at the cap.
pub(super) struct Cap {
    slots: Arc<Semaphore>,
    max: usize,
    /// Set while at the cap (warned once per episode); an episode ends when
    /// a quarter of the slots are free again.
    saturated: std::sync::atomic::AtomicBool,
}

impl Cap {
    pub(super) fn new(max: usize) -> Cap {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Cap {
            slots: Arc::new(Semaphore::new(max)),
            max,
            saturated: false.into(),
        }
    }

    /// A slot for the next connection, waiting (not accepting) while every
    /// slot is taken; `None` when `stop` fires first.
    async fn slot(
        &self,
        local: std::net::SocketAddr,
        stop: &CancellationToken,
    ) -> Option<OwnedSemaphorePermit> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !self.saturated.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{} connections open (server.max_connections): not accepting on {local} until one closes",
                        self.max
                    );
                }
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    p = self.slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                }
            }
        };
        if self.saturated.load(Ordering::Relaxed)
            && self.slots.available_permits() >= self.max / 4
            && self.saturated.swap(false, Ordering::Relaxed)
        {
            tracing::info!("below server.max_connections again");
        }
        Some(permit)
    }
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    cap: Arc<Cap>,
    graceful: Arc<GracefulShutdown>,
    stop: CancellationToken,
) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("listener has no local address: {e}");
            return;
        }
    };
    loop {
        // The slot is taken before accepting: at the cap, connections wait
        // in the kernel's backlog instead of being accepted and dropped.
        let Some(permit) = cap.slot(local, &stop).await else {
            return;
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept on {local} failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let open = shared.metrics.connection();
        let shared = shared.clone();
        let builders = builders.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                let conn = Arc::new(Conn::new(peer, local, Transport::Plain));
                tokio::spawn(async move {
                    serve_plain(stream, conn, shared, builders, watcher).await;
                    drop((permit, open));
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    serve_tls(stream, acceptor, peer, local, shared, builders, watcher).await;
                    drop((permit, open));
                });
            }
        }
    }
}

async fn serve_tls(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    watcher: Watcher,
) {
    let handshake = tokio::time::timeout(builders.tls_handshake_timeout, acceptor.accept(stream));
    let mut stream = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("TLS handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake with {peer} timed out");
            return;
        }
    };
    let session = stream.get_ref().1;
    let sni = session.server_name().map(|s| s.to_ascii_lowercase());
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let conn = Arc::new(Conn::new(peer, local, Transport::Tls { sni }));
    let (h2, prefix) = match alpn.as_deref() {
        Some(b"h2") => (true, Prefix::default()),
        Some(_) => (false, Prefix::default()),
        // No ALPN: the first bytes say, as on cleartext.
        None => match first_bytes(&mut stream, &builders, peer).await {
            Some(p) => (p.is_h2(), p),
            None => return,
        },
    };
    let io = ClientIo::new(stream, prefix.bytes(), builders.send_timeout);
    if h2 {
        serve_h2(io, conn, shared, &builders, watcher).await
    } else if builders.fast_h1 {
        super::fast_h1::serve(io, conn, shared, &builders, watcher).await
    } else {
        serve_h1(io, conn, shared, &builders, watcher).await
    }
}

/// A cleartext connection: HTTP/2 if it opens with the preface (and that
/// is allowed), HTTP/1.1 otherwise.
async fn serve_plain(
    mut stream: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    watcher: Watcher,
) {
    let prefix = if builders.h2c {
        match first_bytes(&mut stream, &builders, conn.peer).await {
            Some(p) => p,
            None => return,
        }
    } else {
        // HTTP/1 only: hyper's header timer bounds a silent client.
        Prefix::default()
    };
    let io = ClientIo::new(stream, prefix.bytes(), builders.send_timeout);
    if prefix.is_h2() {
        serve_h2(io, conn, shared, &builders, watcher).await
    } else if builders.fast_h1 {
        super::fast_h1::serve(io, conn, shared, &builders, watcher).await
    } else {
        serve_h1(io, conn, shared, &builders, watcher).await
    }
}

/// The first bytes of a connection: the HTTP/2 preface, or fewer bytes
/// that are not a prefix of it.
#[derive(Default)]
struct Prefix {
    buf: [u8; PREFIX_MAX],
    len: usize,
}

impl Prefix {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn is_h2(&self) -> bool {
        self.buf == *H2_PREFACE
    }
}

/// Reads until the bytes are the whole HTTP/2 preface or cannot be, within
/// `header_read_timeout` in all (a client that connects and says nothing,
/// or only the start of the preface, is held no longer than one that
/// stalls inside its headers). `None`: closed, failed or timed out.
async fn first_bytes<S: AsyncRead + Unpin>(
    stream: &mut S,
    builders: &Builders,
    peer: std::net::SocketAddr,
) -> Option<Prefix> {
    let mut p = Prefix::default();
    let read = async {
        loop {
            let n = stream.read(&mut p.buf[p.len..]).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(false);
            }
            p.len += n;
            if p.buf[..p.len] != H2_PREFACE[..p.len] || p.len == PREFIX_MAX {
                return Ok(true);
            }
        }
    };
    match tokio::time::timeout(builders.header_read_timeout, read).await {
        Ok(Ok(true)) => Some(p),
        Ok(Ok(false)) => None,
        Ok(Err(e)) => {
            tracing::debug!("connection from {peer}: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(
                "connection from {peer} sent no request within server.header_read_timeout"
            );
            None
        }
    }
}

pub(super) async fn serve_h1<S>(
    io: ClientIo<S>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    builders: &Builders,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let shutting_down = shared.tunnels.shutting_down.clone();
    let connection = builders
        .http1
        .serve_connection(TokioIo::new(io), service_h1(conn, shared))
        .with_upgrades();
    tokio::pin!(connection);
    // hyper-util's graceful watcher does not take hyper's upgradeable
    // HTTP/1 connection, so this does its job: the watcher is held (the
    // drain waits for it) and the connection is told when shutdown begins.
    let _counted = watcher;
    let result = tokio::select! {
        r = connection.as_mut() => r,
        _ = shutting_down.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection from {peer} ended with an error: {e}");
    }
}

/// An HTTP/2 connection, with its idle watchdog: one timer per connection
/// that, when no request has been in flight for `http2_idle_timeout`, sends
/// GOAWAY (graceful: a request racing it is still served), then drops the
/// connection once it has been idle for a short grace after that (a peer
/// that never acknowledges the GOAWAY's ping would otherwise hold it).
/// Shutdown takes the same path.
async fn serve_h2<S>(
    io: ClientIo<S>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    builders: &Builders,
    watcher: Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let shutting_down = shared.tunnels.shutting_down.clone();
    let activity = Arc::new(Activity::new());
    let connection = builders
        .http2
        .serve_connection(TokioIo::new(io), service_h2(conn, shared, activity.clone()));
    tokio::pin!(connection);
    let _counted = watcher;
    let idle = builders.http2_idle_timeout;
    let grace = idle.min(GOAWAY_GRACE);
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let mut going_away = false;
    let result = loop {
        tokio::select! {
            r = connection.as_mut() => break r,
            _ = shutting_down.cancelled(), if !going_away => {
                connection.as_mut().graceful_shutdown();
                going_away = true;
                timer.as_mut().reset(Instant::now() + grace);
            }
            _ = timer.as_mut() => {
                let now = Instant::now();
                let limit = if going_away { grace } else { idle };
                match activity.idle_since() {
                    None => timer.as_mut().reset(now + limit),
                    Some(since) if now < since + limit => timer.as_mut().reset(since + limit),
                    Some(_) if going_away => {
                        tracing::debug!("HTTP/2 connection from {peer} closed: idle after GOAWAY");
                        return;
                    }
                    Some(_) => {
                        tracing::debug!("HTTP/2 connection from {peer} idle for {idle:?}: GOAWAY");
                        connection.as_mut().graceful_shutdown();
                        going_away = true;
                        timer.as_mut().reset(now + grace);
                    }
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!("connection from {peer} ended with an error: {e}");
    }
}

/// Requests in flight on one HTTP/2 connection, and when the last ended.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to the end of the last request.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Since when nothing has been in flight; `None` while something is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.start + Duration::from_millis(self.last_ms.load(Ordering::Acquire)))
    }
}

/// One request in flight: from the request's arrival until its response
/// body ends or is dropped (or the request is abandoned before a response).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_ms.fetch_max(ms, Ordering::AcqRel);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body on HTTP/2: counted in flight until it ends.
struct H2Body {
    inner: LoggedBody,
    in_flight: Option<InFlight>,
}

impl HttpBody for H2Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) if !this.inner.is_end_stream() => {}
            Poll::Ready(_) => this.in_flight = None,
            Poll::Pending => {}
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

/// The per-connection service on HTTP/1: every request goes to dispatch.
fn service_h1(
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<LoggedBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<LoggedBody>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(dispatch::handle(req, conn, shared).await) }
    })
}

/// The per-connection service on HTTP/2: as on HTTP/1, each request
/// counted in flight for the idle watchdog.
fn service_h2(
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<H2Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<H2Body>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        let shared = shared.clone();
        let in_flight = activity.begin();
        async move {
            // Boxed: hyper moves each stream's future into a task of its
            // own, and copying the whole request path's state (kilobytes)
            // several times per stream cost more than one allocation.
            let resp = Box::pin(dispatch::handle(req, conn, shared)).await;
            Ok::<_, Infallible>(resp.map(|inner| {
                let in_flight = (!inner.is_end_stream()).then_some(in_flight);
                H2Body { inner, in_flight }
            }))
        }
    })
}
