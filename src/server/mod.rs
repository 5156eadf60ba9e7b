//! Accepting connections and serving them, with graceful shutdown:
//! stop accepting, let requests in flight and open tunnels finish up to the
//! deadline, then close what is left. [`run_with_reload`] serves on the
//! caller's runtime; [`run_per_core`] starts a single-threaded runtime per
//! core, each serving its own `SO_REUSEPORT` listeners over the same state.

mod connection;
mod fast_h1;
mod launch;
mod reload;

use std::future::Future;
use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use self::launch::launch;
pub use self::reload::{Outcome, Reloader};
use crate::config::Config;
use crate::error::StartupError;
use crate::snapshot::Shared;

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
    let p = prepare(&listeners, config, reloader, 1)?;
    serve(listeners, p, None, shutdown).await;
    Ok(())
}

/// Serves with a single-threaded runtime per worker (`workers` threads, the
/// calling one included), each accepting on its own `SO_REUSEPORT` copy of
/// every listener, so a connection and the upstream connections it uses
/// stay on one thread (nginx's worker model, in one process). Config
/// reloads and signals are handled on the calling thread's runtime;
/// `listening` is called once every socket is bound (with worker 0's).
/// Blocks until `shutdown` completes and every worker has drained.
pub fn run_per_core<S>(
    mut config: Config,
    reloader: Option<Reloader>,
    workers: usize,
    listening: impl FnOnce(&Config, &Listeners),
    shutdown: S,
) -> Result<(), StartupError>
where
    S: Future<Output = ()>,
{
    let workers = workers.max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|cause| StartupError::Runtime(cause.to_string()))?;
    runtime.block_on(async move {
        config.server.reuse_port = true;
        let first = Listeners::bind(&config).await?;
        // Port 0 becomes a real port with the first bind: the other workers
        // bind the addresses actually bound.
        let mut again = config.clone();
        again.server.listen = addrs(&first.plain);
        if let Some(tls) = &mut again.tls {
            tls.listen = addrs(&first.tls);
        }
        let mut others = Vec::with_capacity(workers - 1);
        for _ in 1..workers {
            others.push(Listeners::bind(&again).await?.into_std()?);
        }
        listening(&config, &first);
        let prepared = prepare(&first, config, reloader, workers)?;
        let stop = CancellationToken::new();
        let mut threads = Vec::with_capacity(workers - 1);
        for (i, listeners) in others.into_iter().enumerate() {
            let p = prepared.clone();
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("portero-w{}", i + 1))
                .spawn(move || worker(i + 1, listeners, p, stop))
                .map_err(|cause| StartupError::Runtime(cause.to_string()))?;
            threads.push(thread);
        }
        serve(first, prepared, Some(0), async {
            shutdown.await;
            stop.cancel();
        })
        .await;
        // Ordering: the others were told to stop when this worker was; each
        // drains on its own, within the same deadline.
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    })
}

/// Worker `id`'s thread: its own runtime, serving its own listeners.
fn worker(id: usize, listeners: StdListeners, p: Prepared, stop: CancellationToken) {
    crate::services::upstream::set_worker(id);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("worker {id}: cannot start its runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        match listeners.into_tokio() {
            Ok(l) => serve(l, p, Some(id), stop.cancelled_owned()).await,
            Err(e) => tracing::error!("worker {id}: {e}"),
        }
    });
}

fn addrs(listeners: &[TcpListener]) -> Vec<std::net::SocketAddr> {
    listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect()
}

/// Listeners detached from the runtime that bound them, to be handed to
/// another worker's runtime.
struct StdListeners {
    plain: Vec<std::net::TcpListener>,
    tls: Vec<std::net::TcpListener>,
}

impl Listeners {
    fn into_std(self) -> Result<StdListeners, StartupError> {
        let detach = |ls: Vec<TcpListener>| {
            ls.into_iter()
                .map(|l| l.into_std())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|cause| {
                    StartupError::Runtime(format!("cannot hand a listener to a worker: {cause}"))
                })
        };
        Ok(StdListeners {
            plain: detach(self.plain)?,
            tls: detach(self.tls)?,
        })
    }
}

impl StdListeners {
    fn into_tokio(self) -> Result<Listeners, String> {
        let attach = |ls: Vec<std::net::TcpListener>| {
            ls.into_iter()
                .map(TcpListener::from_std)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot take over a listener: {e}"))
        };
        Ok(Listeners {
            plain: attach(self.plain)?,
            tls: attach(self.tls)?,
        })
    }
}

/// What every worker serves with: one shared state.
#[derive(Clone)]
struct Prepared {
    shared: Arc<Shared>,
    builders: Arc<connection::Builders>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    deadline: std::time::Duration,
    /// Each worker's share of `server.max_connections`.
    max_connections: usize,
}

/// The shared state for `config` served on `listeners` by `workers`
/// workers; starts the reloader (on the current runtime).
fn prepare(
    listeners: &Listeners,
    config: Config,
    reloader: Option<Reloader>,
    workers: usize,
) -> Result<Prepared, StartupError> {
    let tls_acceptor = match (&config.tls, listeners.tls.is_empty()) {
        (Some(tls), false) => Some(crate::tls::acceptor(tls, &config.tenants)?),
        _ => None,
    };
    let mut config = config;
    // The addresses actually bound (port 0 becomes a port): the status page
    // shows them.
    let bound = addrs(&listeners.plain);
    if !bound.is_empty() {
        config.server.listen = bound;
    }
    if let Some(tls) = &mut config.tls {
        // The addresses actually bound (tests bind port 0): the HTTP→HTTPS
        // redirect needs the real TLS port.
        let bound = addrs(&listeners.tls);
        if !bound.is_empty() {
            tls.listen = bound;
        }
    }
    let deadline = config.server.shutdown_timeout;
    let max_connections = per_worker(
        config
            .server
            .max_connections
            .unwrap_or_else(derived_max_connections),
        workers,
    );
    let builders = Arc::new(connection::Builders::new(&config.server));
    let (tls, cert_store) = tls_acceptor.unzip();
    let shared = Shared::new(config, workers);
    if let Some(store) = cert_store {
        shared
            .tls_certs
            .set(store)
            .expect("a new Shared has no certificate store yet");
    }
    if let Some(r) = reloader {
        r.spawn(shared.clone(), shared.tunnels.shutting_down.clone());
    }
    Ok(Prepared {
        shared,
        builders,
        tls,
        deadline,
        max_connections,
    })
}

/// Descriptors kept for what is not a client connection: listeners, the
/// config and certificate files, the file watcher, logs.
const FD_RESERVE: u64 = 64;

/// The default `server.max_connections`: raises the soft open-file limit to
/// the hard one, then allows `(limit - 64) / 2` connections, as each may
/// hold a second descriptor (its upstream connection, a file being sent).
fn derived_max_connections() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            tracing::debug!("open-file limit (RLIMIT_NOFILE soft) raised to {n}");
            n
        }
        Err(e) => {
            let soft = rlimit::Resource::NOFILE
                .get()
                .map_or(1024, |(soft, _)| soft);
            tracing::debug!("cannot raise the open-file limit ({e}); it stays {soft}");
            soft
        }
    };
    connections_for(limit)
}

fn connections_for(nofile: u64) -> usize {
    let n = nofile.saturating_sub(FD_RESERVE) / 2;
    usize::try_from(n).unwrap_or(usize::MAX).max(1)
}

/// Each worker's share of `total` (at least one connection each).
fn per_worker(total: usize, workers: usize) -> usize {
    (total / workers.max(1)).max(1)
}

/// Serves until `shutdown` completes, then drains gracefully. `worker` is
/// the worker's number with a runtime per core (for the logs).
async fn serve(
    listeners: Listeners,
    p: Prepared,
    worker: Option<usize>,
    shutdown: impl Future<Output = ()>,
) {
    let who = worker.map(|w| format!("worker {w}: ")).unwrap_or_default();
    let Prepared {
        shared,
        builders,
        tls: tls_acceptor,
        deadline,
        max_connections,
    } = p;
    tracing::debug!("{who}serving at most {max_connections} connection(s) at once");
    let cap = Arc::new(connection::Cap::new(max_connections));
    let graceful = Arc::new(GracefulShutdown::new());
    let stop = CancellationToken::new();
    let mut accepting = JoinSet::new();
    let plain = listeners.plain.into_iter().map(|l| (l, None));
    let tls = listeners.tls.into_iter().map(|l| (l, tls_acceptor.clone()));
    for (listener, tls) in plain.chain(tls) {
        accepting.spawn(connection::accept_loop(
            listener,
            tls,
            shared.clone(),
            builders.clone(),
            cap.clone(),
            graceful.clone(),
            stop.clone(),
        ));
    }

    shutdown.await;
    // Ordering: first readiness is withdrawn while everything keeps
    // serving, so the orchestrator stops sending traffic; only then does
    // the drain begin.
    shared.draining.cancel();
    let delay = shared.snapshot.load().config.server.shutdown_delay;
    if !delay.is_zero() {
        tracing::info!("{who}not ready; serving for {delay:?} more before draining");
        tokio::time::sleep(delay).await;
    }
    let tunnels = &shared.tunnels;
    tunnels.shutting_down.cancel();
    // Ordering: the accept loops end first and drop their listeners (new
    // connections are refused from here) and their handles on `graceful`,
    // which shutdown() needs to own.
    stop.cancel();
    while accepting.join_next().await.is_some() {}
    let graceful =
        Arc::try_unwrap(graceful).expect("every accept loop has ended and dropped its handle");
    tracing::info!(
        "{who}shutting down: {} connection(s) and {} tunnel(s) open, waiting up to {:?}",
        graceful.count(),
        tunnels.open(),
        deadline
    );
    tunnels.tracker.close();
    let drain = async {
        graceful.shutdown().await;
        tunnels.tracker.wait().await;
    };
    if tokio::time::timeout(deadline, drain).await.is_err() {
        tracing::warn!(
            "{who}shutdown deadline of {:?} passed: closing {} tunnel(s) and the remaining connections",
            deadline,
            tunnels.open()
        );
        tunnels.close.cancel();
        // Tunnels end promptly once cancelled; bound the wait anyway.
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(1), tunnels.tracker.wait()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_follows_the_open_file_limit() {
        assert_eq!(connections_for(1024), 480);
        assert_eq!(connections_for(65_536), 32_736);
        assert_eq!(connections_for(10), 1);
        assert_eq!(per_worker(480, 4), 120);
        assert_eq!(per_worker(3, 4), 1);
    }
}
