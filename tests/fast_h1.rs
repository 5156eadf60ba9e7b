//! The fast HTTP/1 path (`[server] http1 = "fast"`): what it serves itself,
//! and that everything else is handed to hyper on the same connection with
//! nothing lost. `portero_http1_handoffs_total` tells the two apart.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use support::backends::{Echo, header, parse_report};
use support::{config, get, read_head, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fast_config(backend: SocketAddr, extra_route: &str) -> portero::config::Config {
    let mut c = config(&format!(
        "[upstreams.backend]\nurl = \"http://{backend}\"\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n{extra_route}"
    ));
    // These tests are about the fast path, whatever PORTERO_TEST_HTTP1 says.
    c.server.http1 = portero::config::Http1Mode::Fast;
    c
}

/// Connections handed to hyper so far, not counting the one that asks
/// (portero's own endpoints are hyper's).
async fn handoffs(p: &support::Portero) -> u64 {
    let text = get(&p.url("/__portero/metrics"), &[]).await.text();
    let n: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("portero_http1_handoffs_total "))
        .expect("the handoff counter is exposed")
        .parse()
        .unwrap();
    n - 1
}

/// Reads one final response with a `Content-Length` body: (head, body).
async fn response(s: &mut TcpStream) -> (String, String) {
    let mut head = read_head(s).await;
    while head.starts_with("HTTP/1.1 100") {
        head = read_head(s).await;
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .expect("a Content-Length body");
    let mut body = vec![0u8; len];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut body))
        .await
        .expect("body within 10 s")
        .unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[tokio::test]
async fn common_requests_stay_on_the_fast_path() {
    let echo = Echo::start().await;
    let p = start(fast_config(echo.addr, "")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let host = format!("host: localhost:{}\r\n", p.addr.port());
    // A GET, a POST with its body, a chunked POST (decoded, framed anew), a
    // HEAD, all on one connection; the second pair pipelined.
    s.write_all(format!("GET /api/a HTTP/1.1\r\n{host}\r\n").as_bytes())
        .await
        .unwrap();
    let (head, body) = response(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.starts_with("GET /api/a"), "{body}");
    let post = format!("POST /api/b HTTP/1.1\r\n{host}content-length: 5\r\n\r\nhello");
    let chunked = format!(
        "POST /api/c HTTP/1.1\r\n{host}transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n"
    );
    s.write_all(format!("{post}{chunked}").as_bytes())
        .await
        .unwrap();
    let (_, body) = response(&mut s).await;
    let (line, headers) = parse_report(&body);
    assert_eq!(line, "POST /api/b");
    assert_eq!(header(&headers, "body-bytes"), Some("5"), "{body}");
    let (_, body) = response(&mut s).await;
    let (line, headers) = parse_report(&body);
    assert_eq!(line, "POST /api/c");
    assert_eq!(header(&headers, "body-bytes"), Some("7"), "{body}");
    assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
    s.write_all(format!("HEAD /api/d HTTP/1.1\r\n{host}\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(handoffs(&p).await, 0, "served without hyper");
    p.stop().await;
}

/// A backend that streams the request body back as it arrives.
async fn streaming_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let body = req.into_body().map_err(std::io::Error::other).boxed();
                    Ok::<_, Infallible>(Response::new(body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_upload_still_arriving_goes_to_hyper_both_ways_at_once() {
    let backend = streaming_echo().await;
    let p = start(fast_config(backend, "")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let host = format!("host: localhost:{}\r\n", p.addr.port());
    s.write_all(
        format!("POST /api/up HTTP/1.1\r\n{host}content-length: 10\r\n\r\nfirst").as_bytes(),
    )
    .await
    .unwrap();
    // The first half comes back before the second is sent: the response
    // streams while the upload is still under way.
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first") {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .expect("the echo of the first half within 10 s")
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&b[..n]);
    }
    s.write_all(b"later").await.unwrap();
    // The echo's body has the upload's length (10): no chunked framing.
    while !String::from_utf8_lossy(&got).ends_with("firstlater") {
        let mut b = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the rest within 10 s; got {:?}",
                    String::from_utf8_lossy(&got)
                )
            })
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&b[..n]);
    }
    assert_eq!(handoffs(&p).await, 1);
    p.stop().await;
}

#[tokio::test]
async fn another_shape_hands_the_connection_over_with_nothing_lost() {
    let echo = Echo::start().await;
    let p = start(fast_config(echo.addr, "")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let host = format!("host: localhost:{}\r\n", p.addr.port());
    // The second request (Expect: 100-continue) is hyper's; the third,
    // pipelined behind it, is served by hyper too, in order.
    s.write_all(format!("GET /api/1 HTTP/1.1\r\n{host}\r\n").as_bytes())
        .await
        .unwrap();
    let (_, body) = response(&mut s).await;
    assert!(body.starts_with("GET /api/1"));
    s.write_all(
        format!(
            "PUT /api/2 HTTP/1.1\r\n{host}expect: 100-continue\r\ncontent-length: 2\r\n\r\nokGET /api/3 HTTP/1.1\r\n{host}\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let bodies = [response(&mut s).await.1, response(&mut s).await.1];
    assert!(bodies[0].starts_with("PUT /api/2"), "{}", bodies[0]);
    assert!(bodies[1].starts_with("GET /api/3"), "{}", bodies[1]);
    assert_eq!(handoffs(&p).await, 1);
    p.stop().await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_by_hyper() {
    let echo = Echo::start().await;
    let route = "[[routes]]\nprefix = \"/small\"\nupstream = \"backend\"\nbody_limit = \"4B\"\n";
    let p = start(fast_config(echo.addr, route)).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let host = format!("host: localhost:{}\r\n", p.addr.port());
    s.write_all(
        format!(
            "POST /small/x HTTP/1.1\r\n{host}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(echo.hits(), 0, "nothing reached the backend");
    assert_eq!(handoffs(&p).await, 1);
    p.stop().await;
}

#[tokio::test]
async fn the_header_timeout_starts_again_for_each_request_and_closes_an_idle_connection() {
    let echo = Echo::start().await;
    let mut c = fast_config(echo.addr, "");
    c.server.header_read_timeout = Duration::from_secs(3);
    let p = start(c).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let get = format!(
        "GET /api/a HTTP/1.1\r\nhost: localhost:{}\r\n\r\n",
        p.addr.port()
    );
    let started = tokio::time::Instant::now();
    // Each request comes 2 s after the previous one: within the timeout
    // counted from the last response (a second to spare on a loaded
    // machine), past it counted from the first.
    for i in 0..3 {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        s.write_all(get.as_bytes()).await.unwrap();
        let (head, _) = response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 200"), "request {i}: {head}");
    }
    assert!(started.elapsed() > Duration::from_secs(3));
    // Then silence: closed without a word once the timeout has passed.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the idle connection was closed within 10 s")
        .unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert_eq!(handoffs(&p).await, 0, "served without hyper");
    p.stop().await;
}
