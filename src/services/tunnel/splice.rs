//! Splicing two upgraded connections byte for byte, with half-close (a FIN
//! from one side becomes a write shutdown towards the other, which may keep
//! sending) and an optional idle timeout.
//!
//! When both sides are plain TCP, the copy reads into a buffer on the stack
//! only once a socket is readable, so an idle tunnel holds no buffers at
//! all (a heap buffer appears only while the receiver is backpressured).
//! TLS client connections take the generic path with tokio's copy buffers.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::either::Either;

use crate::conn::ClientIo;

/// Bytes per read on the TCP path; lives on the stack only during a read.
const CHUNK: usize = 16 * 1024;

/// Bytes passed so far, each way, readable while the tunnel is open, and
/// added to every tunnel's totals (the metrics) as they pass.
pub(super) struct Counts {
    pub up: AtomicU64,
    pub down: AtomicU64,
    totals: [Counter; 2],
}

impl Counts {
    pub(super) fn new(totals: [Counter; 2]) -> Counts {
        Counts {
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            totals,
        }
    }

    fn up(&self) -> Side<'_> {
        Side(&self.up, &self.totals[0])
    }

    fn down(&self) -> Side<'_> {
        Side(&self.down, &self.totals[1])
    }
}

/// One direction's counters: this tunnel's, and all tunnels'.
#[derive(Clone, Copy)]
struct Side<'a>(&'a AtomicU64, &'a Counter);

impl Side<'_> {
    fn add(self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        self.1.inc_by(n as u64);
    }
}

/// Copies until both directions are done; returns bytes (client→upstream,
/// upstream→client), counted in `counts` as they pass.
pub(super) async fn run(
    client: Upgraded,
    upstream: Upgraded,
    idle: Option<Duration>,
    counts: &Counts,
) -> io::Result<(u64, u64)> {
    let activity = Activity::new();
    // The server hands hyper the client's TCP stream in a `ClientIo`: the
    // splice takes the stream back out (with any bytes it had not replayed
    // yet ahead of hyper's), and bounds stalls itself (`idle`).
    let raw_client = client.downcast::<TokioIo<ClientIo<TcpStream>>>().map(|p| {
        let (tcp, unread) = p.io.into_inner().into_parts();
        let pre = if unread.is_empty() {
            p.read_buf
        } else {
            [&unread[..], &p.read_buf[..]].concat().into()
        };
        (TokioIo::new(tcp), pre)
    });
    let raw_upstream = upstream
        .downcast::<TokioIo<TcpStream>>()
        .map(|p| (p.io, p.read_buf));
    let copy = async {
        match (raw_client, raw_upstream) {
            (Ok((c, c_pre)), Ok((u, u_pre))) => {
                let (cr, cw) = c.into_inner().into_split();
                let (ur, uw) = u.into_inner().into_split();
                tokio::try_join!(
                    pipe(cr, uw, c_pre, &activity, counts.up()),
                    pipe(ur, cw, u_pre, &activity, counts.down()),
                )
            }
            (c, u) => {
                // One side is TLS (or not TCP): copy through the generic
                // path, with any side that did downcast put back together.
                let c = c.map_or_else(
                    |up| Either::Left(TokioIo::new(up)),
                    |p| Either::Right(rejoin(p)),
                );
                let u = u.map_or_else(
                    |up| Either::Left(TokioIo::new(up)),
                    |p| Either::Right(rejoin(p)),
                );
                generic(c, u, &activity, counts).await
            }
        }
    };
    match idle {
        None => copy.await,
        Some(idle) => {
            tokio::select! {
                r = copy => r,
                e = activity.idle_for(idle) => Err(e),
            }
        }
    }
}

/// One direction on raw TCP. `pre` holds bytes hyper had already read past
/// the handshake; they go first. Dropping `to` at EOF shuts down its write
/// side: the half-close reaches the peer.
async fn pipe(
    mut from: OwnedReadHalf,
    to: OwnedWriteHalf,
    pre: Bytes,
    activity: &Activity,
    counted: Side<'_>,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut pending: Vec<u8> = pre.to_vec();
    // `pre` is a view into hyper's whole read buffer: holding it would keep
    // that buffer alive for the life of the tunnel.
    drop(pre);
    loop {
        while !pending.is_empty() {
            to.writable().await?;
            match to.try_write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        // Release the backpressure buffer: an idle tunnel keeps nothing.
        pending = Vec::new();
        // Read and pass on within one poll: the buffer lives on the stack
        // only while the task is polled, never across an await point, so
        // an idle tunnel holds none. poll_read (unlike try_read) marks the
        // socket drained after a short read, so waiting for the next
        // message costs no recv that returns EAGAIN; and it takes part in
        // Tokio's cooperative budget with the task's own waker.
        let n = std::future::poll_fn(|cx| {
            let mut buf = [MaybeUninit::<u8>::uninit(); CHUNK];
            let mut filled = ReadBuf::uninit(&mut buf);
            ready!(Pin::new(&mut from).poll_read(cx, &mut filled))?;
            let data = filled.filled();
            if !data.is_empty() {
                match to.try_write(data) {
                    Ok(m) => pending.extend_from_slice(&data[m..]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        pending.extend_from_slice(data)
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            Poll::Ready(Ok(data.len()))
        })
        .await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        counted.add(n);
        activity.touch();
    }
}

/// Puts the bytes hyper read ahead back in front of the stream.
fn rejoin((io, pre): (TokioIo<TcpStream>, Bytes)) -> Prefixed<TcpStream> {
    Prefixed {
        pre,
        inner: io.into_inner(),
    }
}

/// The generic path: tokio's bidirectional copy (half-close included).
async fn generic<A, B>(a: A, b: B, activity: &Activity, counts: &Counts) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut a = Touching {
        inner: a,
        activity,
        counted: counts.up(),
    };
    let mut b = Touching {
        inner: b,
        activity,
        counted: counts.down(),
    };
    tokio::io::copy_bidirectional(&mut a, &mut b).await
}

/// The time of the last byte in either direction.
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Completes once no byte has passed for `idle`.
    async fn idle_for(&self, idle: Duration) -> io::Error {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.start + last + idle;
            tokio::time::sleep_until(deadline.into()).await;
            let last_now = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if last_now == last {
                return io::Error::new(io::ErrorKind::TimedOut, format!("idle for {idle:?}"));
            }
        }
    }
}

/// A stream with bytes to return before its own.
struct Prefixed<T> {
    pre: Bytes,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            let chunk = self.pre.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Records activity and counts bytes on every read.
struct Touching<'a, T> {
    inner: T,
    activity: &'a Activity,
    counted: Side<'a>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Touching<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.counted.add(n);
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touching<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
