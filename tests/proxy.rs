//! The HTTP reverse proxy against real backends on 127.0.0.1:0.

mod support;

use std::time::{Duration, Instant};

use support::backends::{Echo, Raw, header, parse_report};
use support::{config, get, raw, request, start, start_default};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cfg_with(backend: std::net::SocketAddr, extra_routes: &str, tail: &str) -> portero::Config {
    config(&format!(
        r#"
[upstreams.backend]
url = "http://{backend}"
wait_for = "0s"
{extra_routes}
[[routes]]
prefix = "/api"
upstream = "backend"
[[routes]]
prefix = "/admin"
upstream = "backend"
[[routes]]
prefix = "/static"
upstream = "backend"
[[routes]]
prefix = "/"
spa = true
{tail}
"#
    ))
}

#[tokio::test]
async fn host_port_is_stripped_and_forwarded_headers_set() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let r = get(
        &p.url("/api/x?y=1"),
        &[
            ("host", "acme.localhost:8080"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (line, h) = parse_report(&r.text());
    assert_eq!(line, "GET /api/x?y=1");
    assert_eq!(header(&h, "host"), Some("acme.localhost"));
    assert_eq!(header(&h, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&h, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&h, "x-forwarded-host"), Some("acme.localhost:8080"));
    assert_eq!(header(&h, "x-forwarded-port"), Some("8080"));
}

#[tokio::test]
async fn each_host_mode() {
    let echo = Echo::start().await;
    let routes = r#"
[[routes]]
prefix = "/api/preserve"
upstream = "backend"
host = "preserve"
[[routes]]
prefix = "/api/upstream"
upstream = "backend"
host = "upstream"
"#;
    let p = start(cfg_with(echo.addr, routes, "")).await;
    let host_seen = |path: &'static str| {
        let url = p.url(path);
        async move {
            let r = get(&url, &[("host", "Acme.Localhost:8080")]).await;
            let (_, h) = parse_report(&r.text());
            header(&h, "host").unwrap().to_string()
        }
    };
    assert_eq!(host_seen("/api/x").await, "acme.localhost");
    assert_eq!(host_seen("/api/preserve/x").await, "acme.localhost:8080");
    assert_eq!(host_seen("/api/upstream/x").await, echo.addr.to_string());
}

#[tokio::test]
async fn tenant_alias_is_forwarded_as_the_base_domain() {
    let echo = Echo::start().await;
    let p = start(cfg_with(
        echo.addr,
        "",
        "[tenants]\nbase_domain = \"chalanpro.net\"\nheader = \"X-Tenant\"",
    ))
    .await;
    let r = get(
        &p.url("/api/x"),
        &[
            ("host", "acme.localhost:8080"),
            ("origin", "http://acme.localhost:8080"),
            ("x-tenant", "globex"),
        ],
    )
    .await;
    let (_, h) = parse_report(&r.text());
    assert_eq!(header(&h, "host"), Some("acme.chalanpro.net"));
    assert_eq!(header(&h, "origin"), Some("http://acme.chalanpro.net"));
    assert_eq!(
        header(&h, "x-tenant"),
        Some("acme"),
        "client value replaced"
    );
    let r = get(&p.url("/api/x"), &[("host", "evil.example.com")]).await;
    assert_eq!(r.status, 421);
    assert!(r.text().contains("evil.example.com"));
    assert_eq!(
        echo.hits(),
        1,
        "the refused request never reached the backend"
    );
}

#[tokio::test]
async fn origin_and_referer_are_rewritten_only_when_same_origin() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let seen = |origin: &'static str, referer: &'static str| {
        let url = p.url("/api/x");
        async move {
            let r = get(
                &url,
                &[
                    ("host", "acme.localhost:8080"),
                    ("origin", origin),
                    ("referer", referer),
                ],
            )
            .await;
            let (_, h) = parse_report(&r.text());
            (
                header(&h, "origin").unwrap().to_string(),
                header(&h, "referer").unwrap().to_string(),
            )
        }
    };
    assert_eq!(
        seen(
            "http://acme.localhost:8080",
            "http://acme.localhost:8080/admin/login/?next=/"
        )
        .await,
        (
            "http://acme.localhost".to_string(),
            "http://acme.localhost/admin/login/?next=/".to_string()
        )
    );
    assert_eq!(
        seen("http://evil.example.com", "http://evil.example.com/x").await,
        (
            "http://evil.example.com".to_string(),
            "http://evil.example.com/x".to_string()
        )
    );
    assert_eq!(
        seen("http://acme.localhost:9999", "https://acme.localhost:8080/").await,
        (
            "http://acme.localhost:9999".to_string(),
            "https://acme.localhost:8080/".to_string()
        )
    );
}

#[tokio::test]
async fn location_and_set_cookie_point_back_at_the_client() {
    let echo = Echo::start().await;
    let p = start(cfg_with(
        echo.addr,
        "",
        "[tenants]\nbase_domain = \"chalanpro.net\"",
    ))
    .await;
    let r = get(&p.url("/api/redirect"), &[("host", "acme.localhost:8080")]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://acme.localhost:8080/target")
    );
    let r = get(&p.url("/api/cookie"), &[("host", "acme.localhost:8080")]).await;
    assert_eq!(r.header("set-cookie"), Some("sessionid=abc; Path=/"));
    // Same name on both sides: the Domain is right as it is.
    let r = get(
        &p.url("/api/cookie"),
        &[("host", "acme.chalanpro.net:8080")],
    )
    .await;
    assert_eq!(
        r.header("set-cookie"),
        Some("sessionid=abc; Domain=acme.chalanpro.net; Path=/")
    );
}

/// Tenants under a two-label local suffix share a site-wide cookie as they
/// do under the base domain in production; on plain HTTP in the dev
/// profile, `Secure` and `SameSite=None` are taken off.
#[tokio::test]
async fn site_cookies_follow_a_two_label_suffix_and_lose_secure_on_http() {
    let echo = Echo::start().await;
    let tenants = "[tenants]\nbase_domain = \"chalanpro.net\"\n\
                   local_suffixes = [\"localhost\", \"chalanpro.localhost\"]\n";
    let p = start(cfg_with(echo.addr, "", tenants)).await;
    let cookie = |host: &'static str| {
        let url = p.url("/api/site-cookie");
        async move {
            let r = get(&url, &[("host", host)]).await;
            assert_eq!(r.status, 200, "{host}");
            r.header("set-cookie").map(String::from)
        }
    };
    let r = get(
        &p.url("/api/who"),
        &[("host", "acme.chalanpro.localhost:8080")],
    )
    .await;
    let (_, h) = parse_report(&r.text());
    assert_eq!(header(&h, "host"), Some("acme.chalanpro.net"));
    assert_eq!(
        cookie("acme.chalanpro.localhost:8080").await.as_deref(),
        Some("site=1; Domain=.chalanpro.localhost; Path=/; SameSite=Lax")
    );
    assert_eq!(
        cookie("chalanpro.localhost").await.as_deref(),
        Some("site=1; Domain=.chalanpro.localhost; Path=/; SameSite=Lax")
    );
    // One label: browsers refuse Domain=.localhost, so it is dropped.
    assert_eq!(
        cookie("acme.localhost:8080").await.as_deref(),
        Some("site=1; Path=/; SameSite=Lax")
    );
    p.stop().await;

    let off = format!("{tenants}[server]\ninsecure_cookies = false\n");
    let p = start(cfg_with(echo.addr, "", &off)).await;
    let r = get(
        &p.url("/api/site-cookie"),
        &[("host", "acme.chalanpro.localhost")],
    )
    .await;
    assert_eq!(
        r.header("set-cookie"),
        Some("site=1; Domain=.chalanpro.localhost; Path=/; Secure; SameSite=None")
    );
}

#[tokio::test]
async fn x_forwarded_for_is_appended_only_for_trusted_peers() {
    let echo = Echo::start().await;
    let mut c = cfg_with(echo.addr, "", "");
    c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let p = start(c).await;
    let r = get(&p.url("/api/x"), &[("x-forwarded-for", "203.0.113.7")]).await;
    let (_, h) = parse_report(&r.text());
    assert_eq!(
        header(&h, "x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
}

#[tokio::test]
async fn hop_by_hop_and_connection_named_headers_are_removed() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let r = get(
        &p.url("/api/x"),
        &[
            ("connection", "keep-alive, x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic eA=="),
            ("upgrade", "h2c"),
            ("te", "gzip"),
            ("trailer", "x"),
            ("x-kept", "1"),
        ],
    )
    .await;
    let (_, h) = parse_report(&r.text());
    for gone in [
        "x-private",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
        "te",
        "trailer",
    ] {
        assert_eq!(header(&h, gone), None, "{gone} forwarded");
    }
    assert_eq!(header(&h, "x-kept"), Some("1"));
}

#[tokio::test]
async fn odd_transfer_encoding_is_never_forwarded_as_sent() {
    let mut backend = Raw::start().await;
    let p = start_default(backend.addr).await;
    let out = raw(
        p.addr,
        b"POST /api/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: ,chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    // Either refused outright or re-framed; the odd header never travels.
    if out.starts_with("HTTP/1.1 400") {
        return;
    }
    let got = tokio::time::timeout(Duration::from_secs(5), backend.received.recv())
        .await
        .expect("backend saw the request")
        .unwrap();
    let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(!got.contains(",chunked"), "{got}");
    assert!(!got.contains("expect:"), "{got}");
}

#[tokio::test]
async fn bad_hosts_are_400() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let cases: [&[u8]; 5] = [
        b"GET /api/x HTTP/1.1\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: a.localhost\r\nHost: b.localhost\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: user@localhost\r\n\r\n",
        b"GET /api/x HTTP/1.1\r\nHost: local..host\r\n\r\n",
        b"GET http://a.localhost/api/x HTTP/1.1\r\nHost: b.localhost\r\n\r\n",
    ];
    for req in cases {
        let out = raw(p.addr, req, Duration::from_secs(2)).await;
        assert!(
            out.starts_with("HTTP/1.1 400"),
            "{:?} -> {out}",
            String::from_utf8_lossy(req)
        );
    }
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn uploads_stream_to_the_backend() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    // Send the body in pieces over a raw connection: the backend's count
    // arrives only if portero forwarded every chunk as it came.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /api/up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..16 {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(&chunk).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let head = support::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut body))
        .await
        .unwrap()
        .unwrap();
    let body = String::from_utf8_lossy(&body[..n]).into_owned();
    let body = if body.contains("body-bytes") {
        body
    } else {
        let mut rest = vec![0u8; 8192];
        let m = s.read(&mut rest).await.unwrap();
        body + &String::from_utf8_lossy(&rest[..m])
    };
    assert!(
        body.contains(&format!("body-bytes: {}", 16 << 20)),
        "{body}"
    );
}

#[tokio::test]
async fn downloads_stream_to_the_client() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let total = 64u64 << 20;
    let r = get(&p.url(&format!("/api/download?bytes={total}")), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, total);
}

#[tokio::test]
async fn backend_down_waits_then_502_naming_the_upstream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = cfg_with(addr, "", "");
    let up = c.upstreams.get_mut("backend").unwrap();
    std::sync::Arc::make_mut(up).wait_for = Duration::from_millis(600);
    let p = start(c).await;
    let t = Instant::now();
    let r = get(&p.url("/api/x"), &[("accept", "text/plain")]).await;
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "did not wait: {:?}",
        t.elapsed()
    );
    assert_eq!(r.status, 502);
    let text = r.text();
    assert!(
        text.contains(&format!("upstream backend (http://{addr})")),
        "{text}"
    );
    assert!(text.contains("connection refused"), "{text}");
    let html = get(&p.url("/api/x"), &[("accept", "text/html")]).await;
    assert!(html.text().contains("http-equiv=\"refresh\""));
    let json = get(&p.url("/api/x"), &[("accept", "application/json")]).await;
    assert!(json.text().starts_with("{\"status\":502"));
}

#[tokio::test]
async fn a_backend_restarting_during_wait_for_is_waited_for() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = cfg_with(addr, "", "");
    let up = c.upstreams.get_mut("backend").unwrap();
    std::sync::Arc::make_mut(up).wait_for = Duration::from_secs(10);
    let p = start(c).await;
    let url = p.url("/api/held");
    let pending = tokio::spawn(async move { get(&url, &[]).await });
    // The request is being held: bring the backend up on the same port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    let echo = Echo::serve(tokio::net::TcpListener::bind(addr).await.unwrap());
    let r = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn slow_backend_is_504() {
    let echo = Echo::start().await;
    let routes = r#"
[[routes]]
prefix = "/api/slow"
upstream = "backend"
response_timeout = "200ms"
"#;
    let p = start(cfg_with(echo.addr, routes, "")).await;
    let r = get(&p.url("/api/slow?ms=3000"), &[]).await;
    assert_eq!(r.status, 504);
    assert!(r.text().contains("upstream backend"));
}

#[tokio::test]
async fn a_reset_mid_response_is_an_error_for_the_client() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let out = raw(
        p.addr,
        b"GET /api/reset HTTP/1.1\r\nHost: localhost\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    // Headers promised 1000 bytes; the connection must end short of them
    // instead of pretending the response completed.
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.len() < 1000, "{body}");
}

#[tokio::test]
async fn routes_match_whole_segments() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let r = get(&p.url("/apix"), &[]).await;
    assert_eq!(r.status, 404, "/apix is not /api: {}", r.text());
    assert_eq!(echo.hits(), 0);
    let r = get(&p.url("/api"), &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn encoded_slashes_cannot_reach_another_route() {
    let mut backend = Raw::start().await;
    let p = start_default(backend.addr).await;
    let out = raw(
        p.addr,
        b"GET /static/..%2fadmin/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let got = backend.received.recv().await.unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("GET /static/..%2Fadmin/ HTTP/1.1"), "{got}");
    // Dot segments are resolved before matching, and the resolved path is
    // what travels.
    raw(
        p.addr,
        b"GET /static/%2e%2e/admin/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    let got = backend.received.recv().await.unwrap();
    assert!(String::from_utf8_lossy(&got).starts_with("GET /admin/ HTTP/1.1"));
}

#[tokio::test]
async fn body_limit_is_413_naming_the_limit() {
    let echo = Echo::start().await;
    let routes = r#"
[[routes]]
prefix = "/api/small"
upstream = "backend"
body_limit = "1KiB"
"#;
    let p = start(cfg_with(echo.addr, routes, "")).await;
    let r = request("POST", &p.url("/api/small/x"), &[], &[b'a'; 4096]).await;
    assert_eq!(r.status, 413);
    assert!(r.text().contains("1024 bytes"), "{}", r.text());
    let r = request("POST", &p.url("/api/small/x"), &[], &[b'a'; 512]).await;
    assert_eq!(r.status, 200);
    // Chunked, no length: cut off once past the limit.
    let out = raw(
        p.addr,
        b"POST /api/small/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n",
        Duration::from_millis(100),
    )
    .await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 413"), "{out}");
}

#[tokio::test]
async fn prefix_strip_and_rewrite() {
    let echo = Echo::start().await;
    let routes = r#"
[[routes]]
prefix = "/api/v1"
upstream = "backend"
strip_prefix = true
[[routes]]
prefix = "/api/old"
upstream = "backend"
rewrite = "/api/new"
"#;
    let p = start(cfg_with(echo.addr, routes, "")).await;
    let line = |path: &'static str| {
        let url = p.url(path);
        async move { parse_report(&get(&url, &[]).await.text()).0 }
    };
    assert_eq!(line("/api/v1/users?x=1").await, "GET /users?x=1");
    assert_eq!(line("/api/v1").await, "GET /");
    assert_eq!(line("/api/old/thing").await, "GET /api/new/thing");
}

#[tokio::test]
async fn keep_alive_to_the_backend_reuses_connections() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    for _ in 0..20 {
        assert_eq!(get(&p.url("/api/x"), &[]).await.status, 200);
    }
    assert_eq!(echo.hits(), 20);
    let conns = echo.conns.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        conns <= 2,
        "{conns} upstream connections for 20 sequential requests"
    );
}

#[tokio::test]
async fn a_client_leaving_mid_download_cancels_the_upstream_connection() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /api/download?bytes=1073741824 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = support::read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(s);
    // The half-read upstream connection must not be reused: the next
    // request needs a connection of its own.
    let r = get(&p.url("/api/x"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(echo.conns.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_client_leaving_mid_upload_cancels_the_upstream_request() {
    let echo = Echo::start().await;
    let p = start_default(echo.addr).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"POST /api/up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'a'; 10_000]).await.unwrap();
    // Wait until the backend is reading this body, then leave.
    tokio::time::timeout(Duration::from_secs(5), async {
        while echo.hits() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    drop(s);
    // The backend sees its request body fail rather than wait forever.
    tokio::time::timeout(Duration::from_secs(5), async {
        while echo.aborted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the upstream request was cancelled");
}

#[tokio::test]
async fn a_connect_timeout_is_504_naming_the_upstream() {
    // A listener that never accepts, its queue filled: the kernel drops
    // further SYNs, so a connect hangs until the timeout (all on loopback).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let _listener = socket.listen(1).unwrap();
    let mut fillers = Vec::new();
    loop {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    let mut c = cfg_with(addr, "", "");
    let up = c.upstreams.get_mut("backend").unwrap();
    std::sync::Arc::make_mut(up).connect_timeout = Duration::from_millis(300);
    let p = start(c).await;
    let r = get(&p.url("/api/x"), &[("accept", "text/plain")]).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("upstream backend"), "{}", r.text());
    assert!(r.text().contains("connecting"), "{}", r.text());
}

/// A backend that answers every request with a keep-alive `200 ok` and
/// then ends the connection without saying so: at once (`close`), or by
/// shutting down its side and counting in the returned counter the
/// connections whose other end (portero) is closed afterwards.
async fn closing_backend(
    close: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let head = support::read_head(&mut s).await;
                assert!(head.starts_with("GET "), "{head}");
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await
                    .unwrap();
                if close {
                    return;
                }
                // Later, once portero has put the connection back in its pool.
                tokio::time::sleep(Duration::from_millis(300)).await;
                s.shutdown().await.unwrap();
                let mut buf = [0u8; 64];
                let read = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await;
                if let Ok(Ok(0)) = read {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    (addr, closed)
}

#[tokio::test]
async fn a_kept_alive_connection_the_backend_closed_is_not_used_again() {
    // Every connection is closed by the backend right after its response,
    // without announcing it: the next request finds the pooled connection
    // dead and must go out on a fresh one.
    let (addr, _) = closing_backend(true).await;
    let p = start_default(addr).await;
    for i in 0..10 {
        let r = get(&p.url("/api/x"), &[]).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.text(), "ok");
    }
}

#[tokio::test]
async fn idle_connections_the_backend_closes_are_closed_here_too() {
    // The backend ends its side of an idle keep-alive connection (as
    // backends do after their keep-alive timeout): portero must close its
    // end within seconds rather than leave the socket half-closed until
    // the next request.
    let (addr, closed) = closing_backend(false).await;
    let p = start_default(addr).await;
    assert_eq!(get(&p.url("/api/x"), &[]).await.status, 200);
    tokio::time::timeout(Duration::from_secs(10), async {
        while closed.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("portero closed the connection the backend had closed");
}
