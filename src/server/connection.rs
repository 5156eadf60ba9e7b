//! One accepted connection: TLS handshake if any, then HTTP/1.1 with
//! upgrades and a header-read timer, or HTTP/2 (by ALPN, or by prior
//! knowledge on cleartext).
//!
//! On cleartext, the protocol is chosen once per connection by peeking at
//! its first bytes: HTTP/1 connections are then served by hyper's own
//! HTTP/1 builder, without the per-request cost of hyper-util's
//! auto-detecting wrapper; only a connection that starts with the HTTP/2
//! preface goes to the auto builder.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::access_log::LoggedBody;
use crate::config::ServerConfig;
use crate::conn::{Conn, Transport};
use crate::dispatch;
use crate::snapshot::Shared;

pub(super) type Builder = auto::Builder<TokioExecutor>;

/// The builders for each kind of connection.
pub(super) struct Builders {
    /// TLS connections (ALPN decides the protocol, so HTTP/2 is served there
    /// whatever `http2_prior_knowledge` says), and cleartext connections
    /// that start with the HTTP/2 preface.
    pub auto: Arc<Builder>,
    /// Cleartext HTTP/1 connections.
    pub http1: Arc<hyper::server::conn::http1::Builder>,
    /// Whether cleartext connections may speak HTTP/2 by prior knowledge.
    pub h2c: bool,
    pub header_read_timeout: Duration,
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
        Builders {
            auto: Arc::new(auto_builder(cfg)),
            http1: Arc::new(http1),
            h2c: cfg.http2_prior_knowledge,
            header_read_timeout: cfg.header_read_timeout,
        }
    }
}

/// The largest request head accepted, on HTTP/1 (its read buffer: a longer
/// head is answered 431 by hyper) and HTTP/2 (the header list) alike.
const MAX_HEAD: usize = 64 * 1024;
/// The most header fields in one HTTP/1 request (431 beyond).
const MAX_HEADERS: usize = 100;

/// What an HTTP/2 connection without TLS starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn auto_builder(cfg: &ServerConfig) -> Builder {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper silently ignores header_read_timeout.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .keep_alive(cfg.keep_alive)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .max_header_list_size(MAX_HEAD as u32);
    b
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
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
        let shared = shared.clone();
        let builders = builders.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                let conn = Arc::new(Conn::new(peer, local, Transport::Plain));
                tokio::spawn(serve_plain(stream, conn, shared, builders, watcher));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake_timeout = builders.header_read_timeout;
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
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
                    let sni = stream
                        .get_ref()
                        .1
                        .server_name()
                        .map(|s| s.to_ascii_lowercase());
                    let conn = Arc::new(Conn::new(peer, local, Transport::Tls { sni }));
                    serve_auto(stream, conn, shared, &builders.auto, watcher).await;
                });
            }
        }
    }
}

/// A cleartext connection: HTTP/2 if it opens with the preface (and that
/// is allowed), HTTP/1.1 otherwise.
async fn serve_plain(
    stream: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    builders: Arc<Builders>,
    watcher: Watcher,
) {
    if builders.h2c {
        let mut first = [0u8; H2_PREFACE.len()];
        // A client that connects and says nothing is held no longer than one
        // that stalls inside its headers.
        let peeked = tokio::time::timeout(builders.header_read_timeout, stream.peek(&mut first));
        let n = match peeked.await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        // A prefix of the preface (it may arrive in pieces) goes to the auto
        // builder, which reads the rest; nothing else can start that way.
        if first[..n] == H2_PREFACE[..n] {
            return serve_auto(stream, conn, shared, &builders.auto, watcher).await;
        }
    }
    let peer = conn.peer;
    let shutting_down = shared.tunnels.shutting_down.clone();
    let connection = builders
        .http1
        .serve_connection(TokioIo::new(stream), service(conn, shared))
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

async fn serve_auto<I>(
    io: I,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    builder: &Builder,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service(conn, shared))
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!("connection from {peer} ended with an error: {e}");
    }
}

/// The per-connection service: every request goes to dispatch.
fn service(
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
