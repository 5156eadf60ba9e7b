//! A lean connection pool per upstream on `hyper::client::conn::http1`:
//! LIFO idle list, a connection goes back when its response body ends, idle
//! connections expire, and the pool has a size cap. Connections that carry
//! an upgrade are dedicated and never pooled. With a runtime per core, a
//! connection is only reused by the worker whose runtime drives it: handing
//! it to another would cost two cross-thread wake-ups per request.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Upstream;
use crate::http::body::Body;

/// Idle connections kept per upstream, at most.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is not reused: backends close idle
/// keep-alive connections on their own schedule, and a fresh connect is
/// cheaper than a failed request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub type Sender = SendRequest<Body>;

/// Why a connection to the upstream could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// Nobody listening (or the socket was reset at once): the backend may be
    /// restarting, so the caller may wait and retry.
    Refused(io::Error),
    Timeout(Duration),
    /// Anything else (DNS, TLS, handshake): retrying will not help.
    Failed(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Refused(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                f.write_str("connection refused")
            }
            ConnectError::Refused(e) => write!(f, "connection failed: {e}"),
            ConnectError::Timeout(d) => write!(f, "connect timed out after {d:?}"),
            ConnectError::Failed(m) => f.write_str(m),
        }
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
    /// The worker whose runtime runs the connection's task.
    worker: usize,
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks this thread as worker `id` (per-core runtimes); 0 otherwise.
pub fn set_worker(id: usize) {
    WORKER.set(id);
}

fn worker() -> usize {
    WORKER.get()
}

pub struct Pool {
    pub upstream: Arc<Upstream>,
    idle: Mutex<Vec<Idle>>,
    /// `Err` when an https upstream's TLS setup failed at startup.
    tls: Result<Option<Tls>, String>,
}

/// TLS to an https upstream.
pub struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

impl Pool {
    pub fn new(upstream: Arc<Upstream>, tls: Result<Option<Tls>, String>) -> Pool {
        Pool {
            upstream,
            idle: Mutex::new(Vec::new()),
            tls,
        }
    }

    /// The most recently used idle connection that is still open and ready.
    pub async fn checkout(&self) -> Option<Sender> {
        loop {
            let idle = {
                let mut idle = self.idle.lock().expect("pool lock is never poisoned");
                let me = worker();
                // Prefer a connection whose task has already caught up with
                // the end of its last exchange: using it costs no wake-up.
                let at = idle
                    .iter()
                    .rposition(|i| i.worker == me && i.sender.is_ready())
                    .or_else(|| idle.iter().rposition(|i| i.worker == me))?;
                idle.swap_remove(at)
            };
            if idle.since.elapsed() > IDLE_TIMEOUT || idle.sender.is_closed() {
                continue;
            }
            let mut sender = idle.sender;
            // Right after a body ends the connection task may not have
            // caught up yet; ready() waits for it or reports it dead.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Returns a connection whose exchange completed.
    pub fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock is never poisoned");
        if idle.len() >= MAX_IDLE {
            // Evict the oldest: it is the likeliest to be closed by the backend.
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
            worker: worker(),
        });
    }

    /// A new connection. With `upgrades`, the connection can be taken over
    /// by a protocol upgrade (WebSocket) and must not be pooled.
    pub async fn connect(&self, upgrades: bool) -> Result<Sender, ConnectError> {
        let up = &self.upstream;
        let tls = self
            .tls
            .as_ref()
            .map_err(|e| ConnectError::Failed(e.clone()))?;
        let addr = (up.url.host().to_string(), up.url.port());
        let tcp = match tokio::time::timeout(up.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout(up.connect_timeout)),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        match tls {
            None => handshake(TokioIo::new(tcp), upgrades).await,
            Some(tls) => {
                let connect = tls.connector.connect(tls.server_name.clone(), tcp);
                let stream = match tokio::time::timeout(up.connect_timeout, connect).await {
                    Err(_) => return Err(ConnectError::Timeout(up.connect_timeout)),
                    Ok(Err(e)) => {
                        return Err(ConnectError::Failed(format!("TLS handshake failed: {e}")));
                    }
                    Ok(Ok(s)) => s,
                };
                handshake(TokioIo::new(stream), upgrades).await
            }
        }
    }
}

fn classify(e: io::Error) -> ConnectError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => ConnectError::Refused(e),
        _ => ConnectError::Failed(format!("cannot connect: {e}")),
    }
}

async fn handshake<T>(io: T, upgrades: bool) -> Result<Sender, ConnectError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| ConnectError::Failed(format!("HTTP handshake failed: {e}")))?;
    // The connection task ends when the connection closes; errors surface
    // through the request that was using it.
    if upgrades {
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
    } else {
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    Ok(sender)
}
