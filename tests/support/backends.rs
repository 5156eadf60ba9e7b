//! Real backends on 127.0.0.1:0 for integration tests: an echo server that
//! reports what it received, and a raw TCP server that records exact bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The echo backend. Paths (by last segment, under any prefix):
/// - anything: 200 with a text report: `METHOD target`, then `name: value`
///   lines of the headers received, then `body-bytes: N`;
/// - `/redirect`: 302 to `http://{Host}/target`;
/// - `/cookie`: sets a cookie with `Domain={Host}`;
/// - `/slow?ms=N`: answers after N ms;
/// - `/download?bytes=N`: streams N bytes in 64 KiB chunks;
/// - `/reset`: sends headers and part of the body, then drops the connection.
pub(crate) struct Echo {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Connections accepted.
    pub conns: Arc<AtomicUsize>,
    /// Request bodies that ended in an error (the sender gave up midway).
    pub aborted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Echo {
    pub(crate) async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Echo::serve(listener)
    }

    /// Serves on an already-bound listener (to restart on the same port).
    pub(crate) fn serve(listener: TcpListener) -> Echo {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let aborted = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let c = conns.clone();
        let ab = aborted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                let ab = ab.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        echo(req, ab.clone())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Echo {
            addr,
            hits,
            conns,
            aborted,
            task,
        }
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes the listener (connections in flight die
    /// with their tasks only when the runtime drops them).
    pub(crate) fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn param(req: &Request<Incoming>, name: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.parse().ok())?
    })
}

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

async fn echo(
    req: Request<Incoming>,
    aborted: Arc<AtomicUsize>,
) -> Result<Response<BoxBody>, Infallible> {
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // Matched on the last segment, so any route prefix can reach them.
    let last = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    match last.as_str() {
        "redirect" => {
            return Ok(Response::builder()
                .status(302)
                .header("location", format!("http://{host}/target"))
                .body(full(""))
                .unwrap());
        }
        "cookie" => {
            return Ok(Response::builder()
                .header(
                    "set-cookie",
                    format!("sessionid=abc; Domain={host}; Path=/"),
                )
                .body(full("ok"))
                .unwrap());
        }
        // A site-wide session cookie as a production Django sets it
        // (SESSION_COOKIE_DOMAIN, SESSION_COOKIE_SECURE, SameSite=None).
        "site-cookie" => {
            return Ok(Response::builder()
                .header(
                    "set-cookie",
                    "site=1; Domain=.chalanpro.net; Path=/; Secure; SameSite=None",
                )
                .body(full("ok"))
                .unwrap());
        }
        "slow" => {
            tokio::time::sleep(Duration::from_millis(param(&req, "ms").unwrap_or(1000))).await;
        }
        "download" => {
            let total = param(&req, "bytes").unwrap_or(0);
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(2);
            tokio::spawn(async move {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if tx.send(Ok(Frame::data(chunk.slice(..n)))).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
            });
            let stream = tokio_stream_from(rx);
            return Ok(Response::builder()
                .header("content-length", total)
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap());
        }
        "reset" => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
            tokio::spawn(async move {
                let _ = tx
                    .send(Ok(Frame::data(Bytes::from_static(b"partial"))))
                    .await;
                let _ = tx
                    .send(Err(std::io::Error::other("backend died mid-response")))
                    .await;
            });
            return Ok(Response::builder()
                .header("content-length", "1000")
                .body(BodyExt::boxed(StreamBody::new(tokio_stream_from(rx))))
                .unwrap());
        }
        _ => {}
    }
    let mut report = format!("{} {}\n", req.method(), req.uri());
    for (k, v) in req.headers() {
        report.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("<binary>")));
    }
    let mut body = req.into_body();
    let mut n: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => {
                aborted.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
    }
    report.push_str(&format!("body-bytes: {n}\n"));
    Ok(Response::new(full(report)))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Parses an echo report into (request line, headers).
pub(crate) fn parse_report(text: &str) -> (String, Vec<(String, String)>) {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (first, headers)
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A raw TCP backend: records the bytes of each request head (and any body
/// bytes that arrive with it) and answers a fixed small response.
pub(crate) struct Raw {
    pub addr: SocketAddr,
    pub received: mpsc::UnboundedReceiver<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Raw {
    pub(crate) async fn start() -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let n = match tokio::time::timeout(
                            Duration::from_millis(300),
                            s.read(&mut chunk),
                        )
                        .await
                        {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => break,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            // Give any body bytes a moment to arrive, then answer.
                            if let Ok(Ok(n)) =
                                tokio::time::timeout(Duration::from_millis(100), s.read(&mut chunk))
                                    .await
                            {
                                buf.extend_from_slice(&chunk[..n]);
                            }
                            break;
                        }
                    }
                    let _ = tx.send(buf);
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        Raw {
            addr,
            received,
            task,
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}
