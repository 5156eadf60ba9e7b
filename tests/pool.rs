//! The upstream connection pool under misbehaving clients and backends:
//! a connection is reused only after its whole exchange, each worker has a
//! connection cap, and idle request and response bodies time out.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::backends::Echo;
use support::{config, get, read_head, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn cfg(backend: SocketAddr, upstream_extra: &str) -> portero::Config {
    config(&format!(
        r#"
[upstreams.backend]
url = "http://{backend}"
wait_for = "0s"
{upstream_extra}
[[routes]]
prefix = "/api"
upstream = "backend"
[[routes]]
prefix = "/"
spa = true
"#
    ))
}

/// Reads until the peer closes (or resets); `None` if it is still open
/// after `wait`.
async fn read_to_close(s: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A keep-alive backend that answers a request with a body `401` at once,
/// before reading the body (then reads and discards it, as a correct
/// HTTP/1.1 server does), and a request without one `200 ok`. Counts the
/// connections it accepted.
async fn early_answer_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                loop {
                    let mut buf = Vec::new();
                    let mut byte = [0u8; 1];
                    while !buf.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte).await {
                            Ok(1) => buf.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    let len: u64 = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    let reply: &[u8] = if len > 0 {
                        b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    };
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                    let mut left = len;
                    let mut chunk = [0u8; 16 * 1024];
                    while left > 0 {
                        match s.read(&mut chunk).await {
                            Ok(n) if n > 0 => left = left.saturating_sub(n as u64),
                            _ => return,
                        }
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn a_connection_whose_upload_is_unfinished_is_not_reused() {
    let (addr, conns) = early_answer_backend().await;
    let p = start(cfg(addr, "")).await;
    // A large upload that stalls after its first part; the backend has
    // answered 401 without waiting for it.
    let mut uploader = TcpStream::connect(p.addr).await.unwrap();
    uploader
        .write_all(
            b"POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n",
        )
        .await
        .unwrap();
    uploader.write_all(&[b'a'; 64 * 1024]).await.unwrap();
    let head = read_head(&mut uploader).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    // The next request must not wait behind that upload's connection.
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), get(&p.url("/api/next"), &[]))
        .await
        .expect("the next request is answered, not queued behind the stalled upload");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(conns.load(Ordering::SeqCst), 2, "a connection of its own");
    // The unfinished exchange was dropped, the client's connection with it.
    assert!(
        read_to_close(&mut uploader, Duration::from_secs(5))
            .await
            .is_some(),
        "the uploader's connection is closed"
    );
    drop(uploader);
}

#[tokio::test]
async fn at_max_connections_a_request_waits_then_gets_503() {
    let echo = Echo::start().await;
    let p = start(cfg(
        echo.addr,
        "max_connections = 1\nconnect_timeout = \"400ms\"",
    ))
    .await;
    let slow = {
        let url = p.url("/api/slow?ms=1500");
        tokio::spawn(async move { get(&url, &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The one connection is busy: a second request waits connect_timeout,
    // then is refused, naming the upstream.
    let t = Instant::now();
    let r = get(&p.url("/api/x"), &[("accept", "text/plain")]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
    assert!(
        r.text().contains(&format!(
            "upstream backend (http://{}) has all its 1 connections busy",
            echo.addr
        )),
        "{}",
        r.text()
    );
    assert_eq!(slow.await.unwrap().status, 200);
    assert_eq!(echo.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn at_max_connections_a_request_gets_the_connection_that_frees_up() {
    let echo = Echo::start().await;
    let p = start(cfg(
        echo.addr,
        "max_connections = 1\nconnect_timeout = \"3s\"",
    ))
    .await;
    let slow = {
        let url = p.url("/api/slow?ms=500");
        tokio::spawn(async move { get(&url, &[]).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = get(&p.url("/api/x"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(slow.await.unwrap().status, 200);
    // Both went over the one connection, one after the other.
    assert_eq!(echo.conns.load(Ordering::SeqCst), 1);
    assert_eq!(echo.hits(), 2);
}

#[tokio::test]
async fn a_stalled_request_body_is_408_and_the_connection_closes() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "request_body_timeout = \"300ms\"")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /api/up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'a'; 500]).await.unwrap();
    let t = Instant::now();
    let out = read_to_close(&mut s, Duration::from_secs(5))
        .await
        .expect("portero answers and closes the connection");
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    // The upstream request was cancelled: the backend saw its body fail.
    tokio::time::timeout(Duration::from_secs(5), async {
        while echo.aborted.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the backend's request body was cut off");
}

#[tokio::test]
async fn a_request_body_that_keeps_coming_is_not_timed_out() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "request_body_timeout = \"300ms\"")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /api/up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n")
        .await
        .unwrap();
    // Ten bytes over a second: never idle for the timeout.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(b"a").await.unwrap();
    }
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn a_stalled_response_body_is_cut_off_and_its_connection_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        // Then nothing; report when portero closes its end.
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        let _ = closed_tx.send(matches!(r, Ok(Ok(0)) | Ok(Err(_))));
    });
    let p = start(cfg(addr, "body_idle_timeout = \"300ms\"")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let out = read_to_close(&mut s, Duration::from_secs(5))
        .await
        .expect("the client's connection is closed");
    let out = String::from_utf8_lossy(&out);
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "0123456789", "the response ends short, never padded");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .unwrap()
            .unwrap(),
        "the upstream connection was closed"
    );
}

#[tokio::test]
async fn an_open_tunnel_counts_against_max_connections() {
    let backend = support::ws::WsEcho::start().await;
    let p = start(cfg(
        backend.addr,
        "max_connections = 1\nconnect_timeout = \"300ms\"",
    ))
    .await;
    let (mut ws, resp) = support::ws::connect(p.addr, "localhost", "/api/ws", &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    let r = get(&p.url("/api/x"), &[("accept", "text/plain")]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    // Once the tunnel is closed its connection is free again.
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let r = get(&p.url("/api/x"), &[("accept", "text/plain")]).await;
            if r.status != 503 {
                break;
            }
        }
    })
    .await
    .expect("the tunnel's connection was released");
}
