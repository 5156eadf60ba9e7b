//! One accepted connection: TLS handshake if any, then hyper-util's auto
//! builder (HTTP/1.1, and HTTP/2 by prior knowledge or ALPN), with upgrades
//! and a header-read timer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::dispatch::{self, Conn};
use crate::state::Shared;

pub type Builder = auto::Builder<TokioExecutor>;

/// One builder for cleartext listeners, one for TLS listeners.
pub struct Builders {
    pub plain: Arc<Builder>,
    pub tls: Arc<Builder>,
}

pub fn builder(cfg: &ServerConfig) -> Builder {
    let b = both_versions(cfg);
    if cfg.http2_prior_knowledge {
        b
    } else {
        b.http1_only()
    }
}

/// For TLS connections: HTTP/2 is offered by ALPN there, so it is always
/// served, whatever `http2_prior_knowledge` says about cleartext.
pub fn tls_builder(cfg: &ServerConfig) -> Builder {
    both_versions(cfg)
}

fn both_versions(cfg: &ServerConfig) -> Builder {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper silently ignores header_read_timeout.
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .keep_alive(cfg.keep_alive);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

pub async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    builder: Arc<Builder>,
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
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                let conn = Arc::new(Conn::new(peer, local, false, None));
                tokio::spawn(serve(stream, conn, shared, builder, watcher));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake_timeout = shared.runtime.load().config.server.header_read_timeout;
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
                    let conn = Arc::new(Conn::new(peer, local, true, sni));
                    serve(stream, conn, shared, builder, watcher).await;
                });
            }
        }
    }
}

async fn serve<I>(
    io: I,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    builder: Arc<Builder>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = hyper::service::service_fn(move |req| {
        let conn = conn.clone();
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(dispatch::handle(req, conn, shared).await) }
    });
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!("connection from {peer} ended with an error: {e}");
    }
}
