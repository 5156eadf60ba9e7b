//! A lean connection pool per upstream on `hyper::client::conn::http1`:
//! LIFO idle lists, a connection goes back when its exchange completed (its
//! request body sent and its response body read), idle connections expire,
//! and each list has a size cap. Connections that carry an upgrade are
//! dedicated and never pooled.
//!
//! Each worker may hold at most `max_connections` connections to the
//! upstream, idle, in use and tunnelled alike: a [`Conn`] carries a permit
//! of its worker's semaphore for as long as it lives. At the cap a request
//! waits for one to come back or close.
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
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use prometheus_client::metrics::gauge::Gauge;

use crate::config::Upstream;
use crate::http::body::Body;

/// Idle connections kept per upstream and worker, at most.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is not reused: backends close idle
/// keep-alive connections on their own schedule, and a fresh connect is
/// cheaper than a failed request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a checkout waits for a pooled connection to become ready.
/// A connection whose exchange completed is ready as soon as its task has
/// run once more (one scheduler hop: microseconds, a few milliseconds on a
/// loaded machine); one still not ready after 100 ms is stuck (a write the
/// backend does not read, a task that is not scheduled) and is dropped. A
/// new connection costs about a millisecond on a LAN, so waiting longer
/// would only add latency, and a request stuck behind it.
const READY_WAIT: Duration = Duration::from_millis(100);

pub(crate) type Sender = SendRequest<Body>;

/// One connection to the upstream: the handle requests go out on, a permit
/// of its worker's `max_connections` (released when the connection is
/// dropped) and its task, aborted then, so a dropped connection is closed at
/// once rather than left to finish an exchange nobody waits for.
pub(crate) struct Conn {
    pub(crate) sender: Sender,
    /// `Some` until taken by `into_permit` or `into_upgrade`.
    permit: Option<OwnedSemaphorePermit>,
    /// `None` once handed to an upgrade, whose task must run on.
    task: Option<AbortHandle>,
}

impl Conn {
    /// After a `101`: the connection's task must run on to hand its socket
    /// to the upgrade; the permit is what the tunnel keeps while it is open.
    pub(crate) fn into_upgrade(mut self) -> OwnedSemaphorePermit {
        self.task = None;
        self.into_permit()
    }

    /// The permit; the connection is closed (its task aborted).
    fn into_permit(mut self) -> OwnedSemaphorePermit {
        self.permit.take().expect("a connection holds its permit")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A plain TCP connection to the upstream for the fast HTTP/1 path: no
/// connection task, the client connection's task reads and writes it. It
/// carries a permit of its worker's `max_connections`, as [`Conn`] does.
pub(crate) struct RawConn {
    pub(crate) stream: TcpStream,
    permit: OwnedSemaphorePermit,
}

impl RawConn {
    /// Whether the upstream may still be sending or have closed: an idle
    /// connection the upstream wrote to (or closed) is not reused. Asks the
    /// runtime's readiness first, so a quiet connection costs no syscall.
    fn is_quiet(&self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            std::task::Poll::Pending => true,
            std::task::Poll::Ready(Err(_)) => false,
            // Readiness can be stale (the last read filled the buffer
            // exactly): the socket says.
            std::task::Poll::Ready(Ok(())) => {
                matches!(self.stream.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Why a connection to the upstream could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
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

/// An idle connection (hyper's `Conn` or the fast path's `RawConn`) and
/// since when.
struct Idle<C> {
    conn: C,
    since: Instant,
}

/// One worker's share of a pool.
struct Slot {
    idle: Mutex<VecDeque<Idle<Conn>>>,
    /// Idle connections of the fast HTTP/1 path.
    raw: Mutex<VecDeque<Idle<RawConn>>>,
    /// `max_connections` permits, one held by each open connection.
    permits: Arc<Semaphore>,
    /// Wakes a request waiting at the cap when a connection is checked in.
    returned: Notify,
}

/// What a request may use: a pooled connection, or a permit for a new one.
pub(crate) enum Got {
    Pooled(Conn),
    Permit(OwnedSemaphorePermit),
}

/// The same for the fast HTTP/1 path.
pub(crate) enum GotRaw {
    Pooled(RawConn),
    Permit(OwnedSemaphorePermit),
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Marks this thread as worker `id` (runtime per core); 0 otherwise.
pub(crate) fn set_worker(id: usize) {
    WORKER.set(id);
}

pub(crate) struct Pool {
    /// Requests held right now while the upstream refuses connections
    /// (every upstream's: the metric).
    pub held: Gauge,
    /// The same, for this pool's upstream only (the status page).
    pub held_here: Gauge,
    pub upstream: Arc<Upstream>,
    /// One idle list and connection cap per worker, indexed by the worker's
    /// number.
    slots: Box<[Slot]>,
    /// `Err` when an https upstream's TLS setup failed at startup.
    tls: Result<Option<Tls>, Arc<str>>,
}

/// TLS to an https upstream.
pub(crate) struct Tls {
    pub connector: tokio_rustls::TlsConnector,
    pub server_name: rustls::pki_types::ServerName<'static>,
}

impl Pool {
    /// A pool with an idle list for each of `workers` workers.
    pub(crate) fn new(
        upstream: Arc<Upstream>,
        tls: Result<Option<Tls>, Arc<str>>,
        workers: usize,
        held: Gauge,
    ) -> Pool {
        let max = upstream.max_connections;
        Pool {
            upstream,
            held,
            held_here: Gauge::default(),
            slots: (0..workers.max(1))
                .map(|_| Slot {
                    idle: Mutex::default(),
                    raw: Mutex::default(),
                    permits: Arc::new(Semaphore::new(max)),
                    returned: Notify::new(),
                })
                .collect(),
            tls,
        }
    }

    /// This thread's slot.
    fn mine(&self) -> &Slot {
        // A thread numbered beyond the slots (none today) shares the last.
        let me = WORKER.get().min(self.slots.len() - 1);
        &self.slots[me]
    }

    /// A connection for one exchange (`reuse`: a pooled one if there is
    /// one) or a permit to open a new one. At this worker's cap, waits up to
    /// the upstream's `connect_timeout` for a connection to come back (or
    /// close); `None` if none did. A dedicated connection (`!reuse`) at the
    /// cap takes the permit of the oldest idle connection, which is closed.
    pub(crate) async fn acquire(&self, reuse: bool) -> Option<Got> {
        let slot = self.mine();
        let mut deadline = None;
        loop {
            if reuse {
                if let Some(conn) = self.checkout().await {
                    return Some(Got::Pooled(conn));
                }
            }
            if let Ok(permit) = slot.permits.clone().try_acquire_owned() {
                return Some(Got::Permit(permit));
            }
            if !reuse {
                let oldest = slot.lock().pop_front();
                if let Some(idle) = oldest {
                    return Some(Got::Permit(idle.conn.into_permit()));
                }
            }
            // An idle connection of the fast path gives up its place.
            let raw = slot.raw_lock().pop_front();
            if let Some(idle) = raw {
                return Some(Got::Permit(idle.conn.permit));
            }
            if let Some(waited) = self.wait_at_cap(slot, &mut deadline).await {
                return waited.map(Got::Permit);
            }
        }
    }

    /// At this worker's cap: waits for a permit, or for a connection to
    /// come back (`None`: look again), until `connect_timeout` after the
    /// first wait (`Some(None)`: gave up).
    async fn wait_at_cap(
        &self,
        slot: &Slot,
        deadline: &mut Option<tokio::time::Instant>,
    ) -> Option<Option<OwnedSemaphorePermit>> {
        let deadline = *deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + self.upstream.connect_timeout);
        tokio::select! {
            permit = slot.permits.clone().acquire_owned() => Some(permit.ok()),
            () = slot.returned.notified() => None,
            () = tokio::time::sleep_until(deadline) => Some(None),
        }
    }

    /// The most recently used idle connection that is still open and ready.
    pub(crate) async fn checkout(&self) -> Option<Conn> {
        let slot = self.mine();
        loop {
            let idle = {
                let mut idle = slot.lock();
                // Prefer a connection whose task has already caught up with
                // the end of its last exchange: using it costs no wake-up.
                let at = idle
                    .iter()
                    .rposition(|i| i.conn.sender.is_ready())
                    .unwrap_or(idle.len().checked_sub(1)?);
                idle.remove(at)?
            };
            if idle.since.elapsed() > IDLE_TIMEOUT || idle.conn.sender.is_closed() {
                continue;
            }
            let mut conn = idle.conn;
            // Right after an exchange ends the connection task may not have
            // caught up yet; ready() waits for it or reports it dead. Never
            // for long: a connection that is not ready soon is stuck.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, conn.sender.ready()).await {
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose exchange completed (its request sent, its
    /// response read).
    pub(crate) fn checkin(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let slot = self.mine();
        slot.park(&slot.idle, conn);
    }

    /// Connections open now (tunnels included) and how many of them are
    /// idle (hyper's and the fast path's), all workers together.
    pub(crate) fn connections(&self) -> (usize, usize) {
        let max = self.upstream.max_connections;
        self.slots.iter().fold((0, 0), |(open, idle), slot| {
            (
                open + max.saturating_sub(slot.permits.available_permits()),
                idle + slot.lock().len() + slot.raw_lock().len(),
            )
        })
    }

    /// Whether the fast HTTP/1 path can use this upstream (plain HTTP).
    pub(crate) fn raw_capable(&self) -> bool {
        matches!(self.tls, Ok(None))
    }

    /// [`Pool::acquire`] for the fast path: the most recently used idle raw
    /// connection that is still quiet, or a permit for a new one, waiting at
    /// the cap as `acquire` does (an idle hyper connection gives up its
    /// place first).
    pub(crate) async fn acquire_raw(&self) -> Option<GotRaw> {
        let slot = self.mine();
        let mut deadline = None;
        loop {
            if let Some(conn) = self.checkout_raw() {
                return Some(GotRaw::Pooled(conn));
            }
            if let Ok(permit) = slot.permits.clone().try_acquire_owned() {
                return Some(GotRaw::Permit(permit));
            }
            let oldest = slot.lock().pop_front();
            if let Some(idle) = oldest {
                return Some(GotRaw::Permit(idle.conn.into_permit()));
            }
            if let Some(waited) = self.wait_at_cap(slot, &mut deadline).await {
                return waited.map(GotRaw::Permit);
            }
        }
    }

    fn checkout_raw(&self) -> Option<RawConn> {
        let slot = self.mine();
        loop {
            let idle = slot.raw_lock().pop_back()?;
            if idle.since.elapsed() <= IDLE_TIMEOUT && idle.conn.is_quiet() {
                return Some(idle.conn);
            }
        }
    }

    /// Returns a raw connection whose exchange completed (request sent in
    /// full, response read to its end, nothing more received).
    pub(crate) fn checkin_raw(&self, conn: RawConn) {
        let slot = self.mine();
        slot.park(&slot.raw, conn);
    }

    /// A new raw connection, counted by `permit` (handed back on failure).
    pub(crate) async fn connect_raw(
        &self,
        permit: OwnedSemaphorePermit,
    ) -> Result<RawConn, (ConnectError, OwnedSemaphorePermit)> {
        match self.tcp().await {
            Ok(stream) => Ok(RawConn { stream, permit }),
            Err(e) => Err((e, permit)),
        }
    }

    /// Closes idle connections older than the idle timeout (or closed by
    /// the backend), oldest first, in every worker's list. Run by a sweeper
    /// every few seconds: a backend that never closes idle connections
    /// would otherwise keep them, and their descriptors, until traffic
    /// comes back. It takes each worker's lock briefly, a few times a
    /// minute.
    pub(crate) fn close_expired(&self) {
        self.close_idle_over(IDLE_TIMEOUT);
    }

    fn close_idle_over(&self, age: Duration) {
        for slot in &self.slots {
            let expired: Vec<Idle<Conn>> = {
                let mut idle = slot.lock();
                let keep = idle
                    .iter()
                    .position(|i| i.since.elapsed() <= age && !i.conn.sender.is_closed())
                    .unwrap_or(idle.len());
                idle.drain(..keep).collect()
            };
            drop(expired);
            // Raw connections have no task that would see the upstream
            // close them: the sweep looks.
            let expired: VecDeque<Idle<RawConn>> = {
                let mut idle = slot.raw_lock();
                let (keep, gone) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|i| i.since.elapsed() <= age && i.conn.is_quiet());
                *idle = keep;
                gone
            };
            drop(expired);
        }
    }

    /// A new connection, counted by `permit` (handed back on failure, for
    /// the next attempt). With `upgrades`, the connection can be taken over
    /// by a protocol upgrade (WebSocket) and must not be pooled.
    pub(crate) async fn connect(
        &self,
        upgrades: bool,
        permit: OwnedSemaphorePermit,
    ) -> Result<Conn, (ConnectError, OwnedSemaphorePermit)> {
        match self.open(upgrades).await {
            Ok((sender, task)) => Ok(Conn {
                sender,
                permit: Some(permit),
                task: Some(task),
            }),
            Err(e) => Err((e, permit)),
        }
    }

    async fn tcp(&self) -> Result<TcpStream, ConnectError> {
        let up = &self.upstream;
        let addr = (up.url.host().to_string(), up.url.port());
        let tcp = match tokio::time::timeout(up.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(ConnectError::Timeout(up.connect_timeout)),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(s)) => s,
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn open(&self, upgrades: bool) -> Result<(Sender, AbortHandle), ConnectError> {
        let up = &self.upstream;
        let tls = self
            .tls
            .as_ref()
            .map_err(|e| ConnectError::TlsSetup(e.clone()))?;
        let tcp = self.tcp().await?;
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

impl Slot {
    /// Puts `conn` on the `idle` list (one of this slot's), evicting the
    /// oldest at `MAX_IDLE`, and wakes a request waiting at the cap.
    fn park<C>(&self, idle: &Mutex<VecDeque<Idle<C>>>, conn: C) {
        let evicted = {
            let mut idle = idle.lock().expect("pool lock is never poisoned");
            // Evict the oldest: it is the likeliest to be closed by the backend.
            let evicted = (idle.len() >= MAX_IDLE).then(|| idle.pop_front());
            idle.push_back(Idle {
                conn,
                since: Instant::now(),
            });
            evicted
        };
        // Closed outside the lock.
        drop(evicted);
        // Only a request that found no permit waits for a checkin.
        if self.permits.available_permits() == 0 {
            self.returned.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle<Conn>>> {
        self.idle.lock().expect("pool lock is never poisoned")
    }

    fn raw_lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle<RawConn>>> {
        self.raw.lock().expect("pool lock is never poisoned")
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

async fn handshake<T>(io: T, upgrades: bool) -> Result<(Sender, AbortHandle), ConnectError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(ConnectError::Handshake)?;
    // The connection task ends when the connection closes; errors surface
    // through the request that was using it.
    let task = if upgrades {
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        })
    } else {
        tokio::spawn(async move {
            let _ = conn.await;
        })
    };
    Ok((sender, task.abort_handle()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamUrl;
    use crate::error::BoxError;
    use bytes::Bytes;
    use http_body_util::StreamBody;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn pool(addr: std::net::SocketAddr, max: usize) -> Pool {
        let up = Upstream {
            name: "backend".into(),
            url: UpstreamUrl::parse(&format!("http://{addr}")).unwrap(),
            connect_timeout: Duration::from_millis(300),
            response_timeout: Duration::from_secs(1),
            wait_for: Duration::ZERO,
            max_connections: max,
            request_body_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            ca: None,
            insecure_skip_verify: false,
        };
        Pool::new(Arc::new(up), Ok(None), 1, Gauge::default())
    }

    /// A backend that answers `200` to each request head at once and never
    /// reads a body.
    async fn answering_backend() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if s.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn permit(pool: &Pool) -> OwnedSemaphorePermit {
        match pool.acquire(true).await {
            Some(Got::Permit(p)) => p,
            _ => panic!("a permit"),
        }
    }

    #[tokio::test]
    async fn checkout_does_not_wait_on_a_connection_that_is_not_ready() {
        let addr = answering_backend().await;
        let pool = pool(addr, 4);
        let mut conn = pool.connect(false, permit(&pool).await).await.ok().unwrap();
        // A request whose body never ends: the response comes back, the
        // connection stays busy sending.
        let body = StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, BoxError>,
        >());
        let req = http::Request::post("/")
            .header("host", "backend")
            .header("content-length", "100")
            .body(crate::http::body::boxed(body))
            .unwrap();
        let resp = conn.sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        drop(resp);
        // Checked in as if complete (what the request-body flag prevents):
        // checkout must not hang on it.
        pool.checkin(conn);
        let t = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(2), pool.checkout())
            .await
            .expect("checkout gave up on the stuck connection");
        assert!(got.is_none());
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn connections_are_capped_per_worker() {
        let addr = answering_backend().await;
        let pool = pool(addr, 1);
        let conn = pool.connect(false, permit(&pool).await).await.ok().unwrap();
        // The cap is reached: a request waits connect_timeout, then gets
        // nothing.
        let t = Instant::now();
        assert!(pool.acquire(true).await.is_none());
        assert!(t.elapsed() >= Duration::from_millis(250));
        // A request waiting at the cap gets the connection checked in.
        let (got, ()) = tokio::join!(pool.acquire(true), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            pool.checkin(conn);
        });
        let Some(Got::Pooled(conn)) = got else {
            panic!("the checked-in connection");
        };
        pool.checkin(conn);
        // A dedicated connection (a tunnel) takes an idle one's place.
        assert!(matches!(pool.acquire(false).await, Some(Got::Permit(_))));
        assert!(pool.checkout().await.is_none());
    }

    #[tokio::test]
    async fn the_sweep_closes_idle_connections_past_their_age() {
        let addr = answering_backend().await;
        let pool = pool(addr, 4);
        let conn = pool.connect(false, permit(&pool).await).await.ok().unwrap();
        pool.checkin(conn);
        pool.close_idle_over(Duration::from_secs(3600));
        assert!(pool.checkout().await.is_some(), "young: kept");
        let conn = pool.connect(false, permit(&pool).await).await.ok().unwrap();
        pool.checkin(conn);
        tokio::time::sleep(Duration::from_millis(5)).await;
        pool.close_idle_over(Duration::ZERO);
        assert!(pool.checkout().await.is_none(), "old: closed");
        // Its permit came back: the cap counts only open connections.
        assert_eq!(pool.slots[0].permits.available_permits(), 4);
    }
}
