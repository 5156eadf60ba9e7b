//! Issue #13, the server's timers and its connection cap: every way a
//! client can hold a connection without doing anything ends, each with its
//! own `[server]` key. Timeouts here are short (300 ms) and the assertions
//! loose ("closed within 5 s"), so a busy machine does not make them flaky.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::backends::Echo;
use support::tls::{TestCa, start_tls, tls_config};
use support::{config, read_head, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a connection may take to be closed by a 300 ms timer.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

fn cfg(server: &str) -> portero::Config {
    config(&format!(
        "[server]\n{server}\n[upstreams.backend]\nurl = \"http://127.0.0.1:9\"\n"
    ))
}

/// Reads until portero closes the connection; panics if it is still open
/// after [`CLOSED_WITHIN`]. Returns what was read.
async fn closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "{what}: still open after {CLOSED_WITHIN:?}");
    buf
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test]
async fn a_silent_tls_client_is_closed_after_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCa::new().issue(dir.path(), "dev", &["localhost"]);
    // header_read_timeout stays 10 s: the handshake has its own timer.
    let p = start_tls(
        cfg("tls_handshake_timeout = \"300ms\""),
        tls_config(vec![cert]),
    )
    .await;
    let mut s = TcpStream::connect(p.tls_addr).await.unwrap();
    closed(&mut s, "a TCP connection to the TLS port that says nothing").await;
    // A client that does shake hands is served as before.
    let s = support::tls::connect(
        p.tls_addr,
        "localhost",
        support::tls::accept_any(&[b"http/1.1"]),
    )
    .await
    .unwrap();
    let r = support::tls::get(s, "localhost", "/__portero/health").await;
    assert_eq!(r.status, 200);
    p.stop().await;
}

#[tokio::test]
async fn the_start_of_the_http2_preface_is_cut_off_after_the_header_timeout() {
    let p = start(cfg("header_read_timeout = \"300ms\"")).await;
    // "P" could begin the HTTP/2 preface: portero reads on, within the
    // header timer.
    for start in [&b"P"[..], b"PRI * HTTP/2.0\r\n"] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(start).await.unwrap();
        let got = closed(&mut s, "a connection that sent part of the preface").await;
        assert!(
            got.is_empty(),
            "answered {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[tokio::test]
async fn a_bare_http2_preface_is_closed_after_the_http2_idle_timeout() {
    // header_read_timeout stays 10 s: an HTTP/2 connection is bounded by
    // its idle timer.
    let p = start(cfg("http2_idle_timeout = \"300ms\"")).await;
    for opening in [PREFACE.to_vec(), [PREFACE, EMPTY_SETTINGS].concat()] {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&opening).await.unwrap();
        let got = closed(&mut s, "an HTTP/2 connection with no stream").await;
        // portero's SETTINGS, then a GOAWAY (type 7) before the close.
        assert!(got.len() >= 9 && got[3] == 4, "{got:?}");
        assert!(has_frame(&got, 7), "no GOAWAY before the close: {got:?}");
    }
}

/// Whether the HTTP/2 frames in `b` include one of type `kind`.
fn has_frame(b: &[u8], kind: u8) -> bool {
    let mut i = 0;
    while i + 9 <= b.len() {
        if b[i + 3] == kind {
            return true;
        }
        let len = (usize::from(b[i]) << 16) | (usize::from(b[i + 1]) << 8) | usize::from(b[i + 2]);
        i += 9 + len;
    }
    false
}

async fn h2_client(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let s = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
) -> (u16, Bytes) {
    let req = http::Request::get(format!("http://localhost:{}{path}", addr.port()))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_and_a_long_request_is_not() {
    let echo = Echo::start().await;
    let p = start(config(&format!(
        "[server]\nhttp2_idle_timeout = \"300ms\"\n[upstreams.backend]\nurl = \"http://{}\"\n",
        echo.addr
    )))
    .await;
    let (mut send, conn) = h2_client(p.addr).await;
    // A request in flight for longer than the idle timeout is not idle.
    let (status, _) = h2_get(&mut send, p.addr, "/api/slow?ms=1000").await;
    assert_eq!(status, 200);
    let (status, body) = h2_get(&mut send, p.addr, "/__portero/health").await;
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
    // Then nothing: portero ends the connection (GOAWAY, then the close).
    let ended = tokio::time::timeout(CLOSED_WITHIN, conn).await;
    assert!(ended.is_ok(), "the HTTP/2 connection is still open");
    assert!(send.is_closed());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    // hyper restarts its header timer when a response is done, so the wait
    // for the next request on a kept-alive connection is bounded by it.
    let p = start(cfg("header_read_timeout = \"300ms\"")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /__portero/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("connection: close"));
    let rest = closed(&mut s, "an idle keep-alive connection").await;
    assert_eq!(rest, b"ok\n");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_after_the_send_timeout() {
    const SIZE: usize = 20 << 20;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![b'x'; SIZE]).unwrap();
    let p = start(config(&format!(
        "[server]\nsend_timeout = \"300ms\"\n[[routes]]\nprefix = \"/files\"\nstatic_dir = {:?}\n",
        dir.path().to_str().unwrap()
    )))
    .await;
    // A small receive buffer (no autotuning): the 20 MB cannot all sit in
    // kernel buffers, so portero's writes stall.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut s = socket.connect(p.addr).await.unwrap();
    s.write_all(b"GET /files/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Stop reading for well over the send timeout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let body = closed(&mut s, "a connection whose client stopped reading").await;
    assert!(
        body.len() < SIZE,
        "the whole body arrived ({} bytes): portero waited for the client",
        body.len()
    );
}

#[tokio::test]
async fn at_max_connections_the_next_connection_waits_until_one_closes() {
    let p = start(cfg("max_connections = 2")).await;
    let idle_a = TcpStream::connect(p.addr).await.unwrap();
    let _idle_b = TcpStream::connect(p.addr).await.unwrap();
    // Give the first two time to be accepted (they take both slots).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(p.addr).await.unwrap();
    third
        .write_all(
            b"GET /__portero/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf)).await;
    assert!(early.is_err(), "the third connection was served at the cap");
    // One closes: the third is accepted and served.
    drop(idle_a);
    let answer = closed(&mut third, "the third connection").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
