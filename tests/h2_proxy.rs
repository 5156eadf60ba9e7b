//! HTTP/2 clients through the proxy to an HTTP/1 backend: a request without
//! a body goes on a raw pooled connection (`upstream::raw`), whose response
//! body is read by portero's own framing code. Every framing the backend may
//! use, the connection reused after a complete exchange and not after a
//! broken one, a body cut short, malformed or stalled, and trailers for a
//! client that asks for them (hyper's client carries those).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the backend answers to each path (requests have no body).
fn reply(path: &str) -> (&'static [u8], After) {
    match path {
        "/api/len" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            After::Next,
        ),
        "/api/chunked" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
            After::Next,
        ),
        "/api/trailers" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
              2\r\nok\r\n0\r\nx-sum: 42\r\n\r\n",
            After::Next,
        ),
        "/api/close" => (
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
            After::Close,
        ),
        "/api/empty" => (b"HTTP/1.1 204 No Content\r\n\r\n", After::Next),
        "/api/interim" => (
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            After::Next,
        ),
        "/api/cut" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
            After::Close,
        ),
        "/api/bad-chunk" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
            After::Next,
        ),
        "/api/stall" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            After::Hold,
        ),
        _ => (
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            After::Next,
        ),
    }
}

/// What the backend does after replying.
#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Reads the next request on the same connection.
    Next,
    Close,
    /// Keeps the connection open and says nothing more.
    Hold,
}

/// A scripted HTTP/1 backend that counts its connections and keeps the
/// request heads it received.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    heads: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, h) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(s, h.clone()));
            }
        });
        Backend {
            addr,
            accepted,
            heads,
        }
    }

    fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn last_head(&self) -> String {
        self.heads
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

async fn serve(mut s: TcpStream, heads: Arc<std::sync::Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let is_head = head.starts_with("HEAD ");
        heads.lock().unwrap().push(head);
        let (mut bytes, after) = reply(path.split('?').next().unwrap_or_default());
        if is_head {
            let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            bytes = &bytes[..end];
        }
        if s.write_all(bytes).await.is_err() {
            return;
        }
        match after {
            After::Next => {}
            After::Close => return,
            After::Hold => {
                // Until portero gives up and closes its side.
                let _ = s.read(&mut [0u8; 1]).await;
                return;
            }
        }
    }
}

fn cfg(backend: SocketAddr) -> portero::config::Config {
    support::config(&format!(
        "[upstreams.backend]\nurl = \"http://{backend}\"\nbody_idle_timeout = \"300ms\"\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n"
    ))
}

/// An HTTP/2 connection to portero (prior knowledge, cleartext).
async fn h2(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// What an HTTP/2 request got: status, headers, and the body with its
/// trailers, or the error that ended the body.
struct Got {
    status: u16,
    headers: http::HeaderMap,
    body: Result<(Bytes, Option<http::HeaderMap>), String>,
}

async fn send(
    h2: &mut SendRequest<Empty<Bytes>>,
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    try_send(h2, method, port, path, headers)
        .await
        .expect("a response")
}

/// [`send`], or the error that reset the stream before its head.
async fn try_send(
    h2: &mut SendRequest<Empty<Bytes>>,
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Got, hyper::Error> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://localhost:{port}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        h2.send_request(req.body(Empty::new()).unwrap()),
    )
    .await
    .expect("response head within 10 s")?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("body ended within 10 s")
        .map(|c| {
            let trailers = c.trailers().cloned();
            (c.to_bytes(), trailers)
        })
        .map_err(|e| e.to_string());
    Ok(Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

fn body_text(g: &Got) -> &[u8] {
    &g.body.as_ref().expect("a whole body").0
}

#[tokio::test]
async fn every_framing_reaches_an_http2_client_whole_on_one_reused_connection() {
    let b = Backend::start().await;
    let p = start(cfg(b.addr)).await;
    let port = p.addr.port();
    let mut c = h2(p.addr).await;

    let len = send(&mut c, "GET", port, "/api/len", &[]).await;
    assert_eq!(len.status, 200);
    assert_eq!(body_text(&len), b"hello");
    assert_eq!(len.headers["content-length"], "5");

    let chunked = send(&mut c, "GET", port, "/api/chunked", &[]).await;
    assert_eq!(chunked.status, 200);
    assert_eq!(body_text(&chunked), b"hello world");
    assert!(chunked.headers.get("transfer-encoding").is_none());

    let empty = send(&mut c, "GET", port, "/api/empty", &[]).await;
    assert_eq!(empty.status, 204);
    assert_eq!(body_text(&empty), b"");

    let interim = send(&mut c, "GET", port, "/api/interim", &[]).await;
    assert_eq!(interim.status, 200, "the 103 is skipped");
    assert_eq!(body_text(&interim), b"ok");

    let head = send(&mut c, "HEAD", port, "/api/len", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(body_text(&head), b"");
    assert!(b.last_head().starts_with("HEAD /api/len HTTP/1.1\r\n"));

    // Every exchange above was complete: one upstream connection for all.
    assert_eq!(b.connections(), 1, "the upstream connection was reused");

    // The request head the upstream got: HTTP/1.1, Host from :authority
    // without the port, forwarding headers.
    let head = b.last_head().to_ascii_lowercase();
    assert!(head.contains("\r\nhost: localhost\r\n"), "{head}");
    assert!(head.contains("\r\nx-forwarded-proto: http\r\n"), "{head}");

    let close = send(&mut c, "GET", port, "/api/close", &[]).await;
    assert_eq!(close.status, 200);
    assert_eq!(body_text(&close), b"until the end");
    // That connection ended with its body: the next request needs a new one.
    let again = send(&mut c, "GET", port, "/api/len?q=a%20b&r", &[]).await;
    assert_eq!(body_text(&again), b"hello");
    assert_eq!(b.connections(), 2);
    assert!(
        b.last_head()
            .starts_with("GET /api/len?q=a%20b&r HTTP/1.1\r\n"),
        "HTTP/2's target goes up in origin-form: {}",
        b.last_head()
    );
    p.stop().await;
}

#[tokio::test]
async fn a_broken_body_is_an_error_for_the_client_and_its_connection_is_not_reused() {
    let b = Backend::start().await;
    let p = start(cfg(b.addr)).await;
    let port = p.addr.port();
    let mut c = h2(p.addr).await;

    for (path, what) in [
        ("/api/cut", "a body cut short"),
        ("/api/bad-chunk", "malformed chunked framing"),
        ("/api/stall", "a body stalled past body_idle_timeout"),
    ] {
        // The stream is reset: after its head and the data that came, or,
        // when the fault came with the head, before the head left.
        match try_send(&mut c, "GET", port, path, &[]).await {
            Ok(got) => {
                assert_eq!(got.status, 200, "{what}");
                assert!(
                    got.body.is_err(),
                    "{what}: the client saw a complete body {:?}",
                    got.body
                );
            }
            Err(e) => assert!(e.to_string().contains("reset"), "{what}: {e}"),
        }
        let before = b.connections();
        // The next request may not inherit the broken connection.
        let next = send(&mut c, "GET", port, "/api/len", &[]).await;
        assert_eq!(body_text(&next), b"hello", "after {what}");
        assert_eq!(
            b.connections(),
            before + 1,
            "after {what}: a new connection"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn trailers_reach_a_client_that_asks_for_them() {
    let b = Backend::start().await;
    let p = start(cfg(b.addr)).await;
    let port = p.addr.port();
    let mut c = h2(p.addr).await;

    let asked = send(&mut c, "GET", port, "/api/trailers", &[("te", "trailers")]).await;
    let (body, trailers) = asked.body.expect("a whole body");
    assert_eq!(&body[..], b"ok");
    let trailers = trailers.expect("trailers for a client that sent TE: trailers");
    assert_eq!(trailers["x-sum"], "42");

    // Without `TE: trailers` the raw connection carries it, and the
    // trailers are not passed on (a client that did not ask may not
    // expect them).
    let not_asked = send(&mut c, "GET", port, "/api/trailers", &[]).await;
    let (body, trailers) = not_asked.body.expect("a whole body");
    assert_eq!(&body[..], b"ok");
    assert!(trailers.is_none(), "{trailers:?}");
    p.stop().await;
}
