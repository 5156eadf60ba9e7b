//! Accepting connections and serving them, with graceful shutdown:
//! stop accepting, let requests in flight and open tunnels finish up to the
//! deadline, then close what is left.

mod conn;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::config::reload::Reloader;
use crate::error::StartupError;
use crate::state::Shared;

/// Bound sockets. Tests bind `127.0.0.1:0` themselves and read the ports.
#[derive(Default)]
pub struct Listeners {
    pub plain: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every address the config lists.
    pub async fn bind(config: &Config) -> Result<Listeners, StartupError> {
        let reuse_port = config.server.reuse_port;
        let mut l = Listeners::default();
        for addr in &config.server.listen {
            l.plain.push(bind(*addr, reuse_port)?);
        }
        if let Some(tls) = &config.tls {
            for addr in &tls.listen {
                l.tls.push(bind(*addr, reuse_port)?);
            }
        }
        Ok(l)
    }
}

/// Backlog of pending connections per listener (Tokio's default too).
const BACKLOG: u32 = 1024;

fn bind(addr: std::net::SocketAddr, reuse_port: bool) -> Result<TcpListener, StartupError> {
    let bind = || {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // SO_REUSEADDR as Tokio's own bind sets it: a restart can bind
        // while old connections linger in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        if reuse_port {
            socket.set_reuseport(true)?;
        }
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    };
    bind().map_err(|cause| StartupError::Bind { addr, cause })
}

/// Serves until `shutdown` completes, then drains gracefully.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartupError> {
    run_with_reload(listeners, config, None, shutdown).await
}

/// [`run`], reloading the config from `reloader`'s file when it changes
/// (and on SIGHUP).
pub async fn run_with_reload(
    listeners: Listeners,
    config: Config,
    reloader: Option<Reloader>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartupError> {
    let tls_acceptor = match (&config.tls, listeners.tls.is_empty()) {
        (Some(tls), false) => Some(tls::acceptor(tls)?),
        _ => None,
    };
    let mut config = config;
    if let Some(tls) = &mut config.tls {
        // The addresses actually bound (tests bind port 0): the HTTP→HTTPS
        // redirect needs the real TLS port.
        let bound: Vec<_> = listeners
            .tls
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        if !bound.is_empty() {
            tls.listen = bound;
        }
    }
    let deadline = config.server.shutdown_timeout;
    let builders = Arc::new(conn::Builders::new(&config.server));
    let (tls_acceptor, cert_store) = tls_acceptor.unzip();
    let shared = Shared::new(config);
    if let Some(store) = cert_store {
        shared
            .tls_certs
            .set(store)
            .expect("a new Shared has no certificate store yet");
    }
    if let Some(r) = reloader {
        r.spawn(shared.clone(), shared.shutting_down.clone());
    }
    serve(
        listeners,
        shared,
        builders,
        tls_acceptor,
        deadline,
        shutdown,
    )
    .await;
    Ok(())
}

async fn serve(
    listeners: Listeners,
    shared: Arc<Shared>,
    builders: Arc<conn::Builders>,
    tls_acceptor: Option<tokio_rustls::TlsAcceptor>,
    deadline: std::time::Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let stop = CancellationToken::new();
    let mut accepting = JoinSet::new();
    let plain = listeners.plain.into_iter().map(|l| (l, None));
    let tls = listeners.tls.into_iter().map(|l| (l, tls_acceptor.clone()));
    for (listener, tls) in plain.chain(tls) {
        accepting.spawn(conn::accept_loop(
            listener,
            tls,
            shared.clone(),
            builders.clone(),
            graceful.clone(),
            stop.clone(),
        ));
    }

    shutdown.await;
    shared.shutting_down.cancel();
    // Ordering: the accept loops end first and drop their listeners (new
    // connections are refused from here) and their handles on `graceful`,
    // which shutdown() needs to own.
    stop.cancel();
    while accepting.join_next().await.is_some() {}
    let graceful =
        Arc::try_unwrap(graceful).expect("every accept loop has ended and dropped its handle");
    tracing::info!(
        "shutting down: {} connection(s) and {} tunnel(s) open, waiting up to {:?}",
        graceful.count(),
        shared.open_tunnels(),
        deadline
    );
    shared.tunnels.close();
    let drain = async {
        graceful.shutdown().await;
        shared.tunnels.wait().await;
    };
    if tokio::time::timeout(deadline, drain).await.is_err() {
        tracing::warn!(
            "shutdown deadline of {:?} passed: closing {} tunnel(s) and the remaining connections",
            deadline,
            shared.open_tunnels()
        );
        shared.close_tunnels.cancel();
        // Tunnels end promptly once cancelled; bound the wait anyway.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), shared.tunnels.wait()).await;
    }
}
