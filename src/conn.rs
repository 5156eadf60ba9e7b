//! What is known about one client connection, made once when it is
//! accepted and shared by every request on it; and the client stream as
//! hyper reads and writes it ([`ClientIo`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How the client reached portero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transport {
    Plain,
    /// TLS, with the server name the client asked for (SNI), lowercased.
    Tls {
        sni: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
    /// The peer's IP as a header value, made once per connection for
    /// `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// The local port as a header value, for `X-Forwarded-Port`.
    pub local_port: HeaderValue,
}

impl Conn {
    pub(crate) fn new(peer: SocketAddr, local: SocketAddr, transport: Transport) -> Conn {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Conn {
            peer,
            local,
            transport,
            peer_ip,
            local_port: HeaderValue::from(local.port()),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls { .. })
    }

    pub(crate) fn sni(&self) -> Option<&str> {
        match &self.transport {
            Transport::Tls { sni } => sni.as_deref(),
            Transport::Plain => None,
        }
    }

    /// The scheme the client used.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }
}

/// An accepted client stream as hyper sees it: bytes read before the
/// protocol was chosen are replayed first, and a write that makes no
/// progress for `send_timeout` fails (`TimedOut`), so a client that stops
/// reading is disconnected and what its response held (an upstream
/// connection, a file) is released.
///
/// The tunnel splices WebSockets on the raw TCP stream by downcasting
/// hyper's upgraded IO to this type and taking [`ClientIo::into_parts`].
pub(crate) struct ClientIo<S> {
    io: S,
    /// `prefix[at..]` is still to be replayed.
    prefix: Vec<u8>,
    at: usize,
    send_timeout: Duration,
    /// Made at the first stalled write and reused after.
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether `stall` runs for the current stalled write.
    stalled: bool,
}

/// The most bytes read before the protocol is chosen (the HTTP/2 preface).
pub(crate) const PREFIX_MAX: usize = 24;

impl<S> ClientIo<S> {
    /// `prefix` (at most [`PREFIX_MAX`] bytes) is what was read from `io`
    /// already.
    pub(crate) fn new(io: S, prefix: &[u8], send_timeout: Duration) -> ClientIo<S> {
        ClientIo::replaying(io, prefix.to_vec(), send_timeout)
    }

    /// `prefix` (any length) is what was read from `io` already: the fast
    /// HTTP/1 path hands a connection to hyper with the bytes it buffered.
    pub(crate) fn replaying(io: S, prefix: Vec<u8>, send_timeout: Duration) -> ClientIo<S> {
        ClientIo {
            io,
            prefix,
            at: 0,
            send_timeout,
            stall: None,
            stalled: false,
        }
    }

    /// The stream and the bytes read from it not yet replayed.
    pub(crate) fn into_parts(mut self) -> (S, Vec<u8>) {
        let rest = self.prefix.split_off(self.at);
        (self.io, rest)
    }

    /// A write returned `Pending`: starts the stall timer if it is not
    /// running, and fails once it has run out.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if !self.stalled {
            self.stalled = true;
            let deadline = tokio::time::Instant::now() + self.send_timeout;
            match &mut self.stall {
                Some(s) => s.as_mut().reset(deadline),
                None => self.stall = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let stall = self.stall.as_mut().expect("set just above");
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = false;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the client accepted nothing for {:?} (server.send_timeout)",
                        self.send_timeout
                    ),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, p: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match p {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.stalled = false;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(p, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(p, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(p, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(p, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_prefix_is_read_first() {
        let (a, mut b) = tokio::io::duplex(64);
        b.write_all(b" world").await.unwrap();
        drop(b);
        let mut io = ClientIo::new(a, b"hello", Duration::from_secs(1));
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn a_write_stalled_past_the_send_timeout_fails() {
        let (a, _b) = tokio::io::duplex(16);
        let mut io = ClientIo::new(a, b"", Duration::from_millis(50));
        // 16 bytes fit; the rest stalls, as nobody reads `_b`.
        let err = tokio::time::timeout(Duration::from_secs(5), io.write_all(&[0u8; 64]))
            .await
            .expect("fails, not hangs")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
