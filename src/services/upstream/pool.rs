//! A lean connection pool per upstream on `hyper::client::conn::http1`:
//! LIFO idle lists, a connection goes back when its response body ends, idle
//! connections expire, and each list has a size cap. Connections that carry
//! an upgrade are dedicated and never pooled.
//!
//! With a runtime per core, each worker has its own idle list (its own lock,
//! which no other worker takes, and its own cap): a connection's task runs
//! on the runtime that created it, and handing it to another worker would
//! cost two cross-thread wake-ups per request. The work-stealing runtime
//! has one list that every thread shares.
//!
//! Written here rather than taken from hyper-util's legacy client: that
//! pool is one shared map behind one lock for all threads, and has no
//! notion of which runtime drives a connection.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Upstream;
use crate::http::body::Body;

/// Idle connections kept per upstream and worker, at most.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is not reused: backends close idle
/// keep-alive connections on their own schedule, and a fresh connect is
/// cheaper than a failed request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type Sender = SendRequest<Body>;

/// Why a connection to the upstream could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nobody listening (or the socket was reset at once): the backend may be
    /// restarting, so the caller may wait and retry.
    #[error("{}", refused_message(.0))]
    Refused(#[source] io::Error),
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect")]
    Io(#[source] io::Error),
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
    #[error("HTTP handshake failed")]
    Handshake(#[source] hyper::Error),
    /// The upstream's TLS settings could not be built at startup.
    #[error("TLS setup failed: {0}")]
    TlsSetup(Arc<str>),
}

fn refused_message(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        "connection refused"
    } else {
        "connection failed"
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks this thread as worker `id` (runtime per core); 0 otherwise.
pub(crate) fn set_worker(id: usize) {
    WORKER.set(id);
}

pub struct Pool {
    pub upstream: Arc<Upstream>,
    /// One idle list per worker, indexed by the worker's number.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    /// `Err` when an https upstream's TLS setup failed at startup.
    tls: Result<Option<Tls>, Arc<str>>,
}

/// TLS to an https upstream.
pub struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

impl Pool {
    /// A pool with an idle list for each of `workers` workers.
    pub fn new(
        upstream: Arc<Upstream>,
        tls: Result<Option<Tls>, Arc<str>>,
        workers: usize,
    ) -> Pool {
        Pool {
            upstream,
            idle: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
            tls,
        }
    }

    /// This thread's idle list.
    fn mine(&self) -> &Mutex<VecDeque<Idle>> {
        // A thread numbered beyond the lists (none today) shares the last.
        let me = WORKER.get().min(self.idle.len() - 1);
        &self.idle[me]
    }

    /// The most recently used idle connection that is still open and ready.
    pub async fn checkout(&self) -> Option<Sender> {
        loop {
            let idle = {
                let mut idle = self.mine().lock().expect("pool lock is never poisoned");
                // Prefer a connection whose task has already caught up with
                // the end of its last exchange: using it costs no wake-up.
                let at = idle
                    .iter()
                    .rposition(|i| i.sender.is_ready())
                    .unwrap_or(idle.len().checked_sub(1)?);
                idle.remove(at)?
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
        let mut idle = self.mine().lock().expect("pool lock is never poisoned");
        if idle.len() >= MAX_IDLE {
            // Evict the oldest: it is the likeliest to be closed by the backend.
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// A new connection. With `upgrades`, the connection can be taken over
    /// by a protocol upgrade (WebSocket) and must not be pooled.
    pub async fn connect(&self, upgrades: bool) -> Result<Sender, ConnectError> {
        let up = &self.upstream;
        let tls = self
            .tls
            .as_ref()
            .map_err(|e| ConnectError::TlsSetup(e.clone()))?;
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
                    Ok(Err(e)) => return Err(ConnectError::Tls(e)),
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
        _ => ConnectError::Io(e),
    }
}

async fn handshake<T>(io: T, upgrades: bool) -> Result<Sender, ConnectError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(ConnectError::Handshake)?;
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
