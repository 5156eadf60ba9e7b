//! Server core: answering on port 0, graceful shutdown, header timeout.

mod support;

use std::time::Duration;

use support::backends::Echo;
use support::{config, get, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn cfg(backend: std::net::SocketAddr, server: &str) -> portero::Config {
    config(&format!(
        "[server]\n{server}\n[upstreams.backend]\nurl = \"http://{backend}\"\n"
    ))
}

#[tokio::test]
async fn starts_on_port_zero_and_answers() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "")).await;
    assert_ne!(p.addr.port(), 0);
    let r = get(&p.url("/__portero/health"), &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    let r = get(&p.url("/__portero/status"), &[]).await;
    assert!(r.text().contains("\"open_tunnels\":0"), "{}", r.text());
}

#[tokio::test]
async fn own_endpoints_answer_only_the_allowed_networks() {
    let echo = Echo::start().await;
    let no_probes = config(&format!(
        "[admin]\nprobes = [\"10.0.0.0/8\"]\n[upstreams.backend]\nurl = \"http://{}\"\n",
        echo.addr
    ));
    let p = start(no_probes).await;
    let r = get(&p.url("/__portero/ready"), &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("admin.probes"), "{}", r.text());
    p.stop().await;

    let echo = Echo::start().await;
    let elsewhere = config(&format!(
        "[admin]\nallow = [\"10.0.0.0/8\"]\n[upstreams.backend]\nurl = \"http://{}\"\n",
        echo.addr
    ));
    let p = start(elsewhere).await;
    let r = get(&p.url("/__portero/status"), &[]).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("admin.allow"), "{}", r.text());
    // The probes have their own list (anyone, by default).
    for path in ["/__portero/health", "/__portero/ready"] {
        assert_eq!(get(&p.url(path), &[]).await.status, 200, "{path}");
    }
    // Other paths are not affected.
    assert_eq!(get(&p.url("/api/x"), &[]).await.status, 200);
}

#[tokio::test]
async fn on_shutdown_readiness_is_withdrawn_while_requests_still_succeed() {
    let echo = Echo::start().await;
    let mut p = start(cfg(echo.addr, "shutdown_delay = \"3s\"")).await;
    let ready = p.url("/__portero/ready");
    assert_eq!(get(&ready, &[]).await.status, 200);
    let stopped = p.begin_stop();
    // Readiness flips first; the delay keeps everything else serving.
    tokio::time::timeout(Duration::from_secs(5), async {
        while get(&ready, &[]).await.status != 503 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("readiness is withdrawn at once");
    let r = get(&ready, &[]).await;
    assert_eq!(r.text(), "draining\n");
    assert_eq!(get(&p.url("/api/x"), &[]).await.status, 200);
    assert_eq!(get(&p.url("/__portero/health"), &[]).await.status, 200);
    assert!(!stopped.is_finished(), "still serving during the delay");
    tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .expect("stops after the delay")
        .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let echo = Echo::start().await;
    let mut p = start(cfg(echo.addr, "shutdown_timeout = \"10s\"")).await;
    let url = p.url("/api/slow?ms=1000");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    // Wait until the backend has the request, so it is truly in flight.
    tokio::time::timeout(Duration::from_secs(5), async {
        while echo.hits() == 0 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let stopping = p.begin_stop();
    // New connections are refused once the listener is closed.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if TcpStream::connect(p.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections were still accepted");
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_slow_header_block_is_cut_off_after_the_header_timeout() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "header_read_timeout = \"300ms\"")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /api/x HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // Never finish the header block: portero must close the connection.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 5 s");
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "header_read_timeout = \"300ms\"")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "a connection that never speaks is still open after 5 s"
    );
}

#[tokio::test]
async fn http2_prior_knowledge_is_served_on_cleartext() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "")).await;
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://localhost:{}/api/h2", p.addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
}

#[tokio::test]
async fn http2_prior_knowledge_can_be_turned_off() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "http2_prior_knowledge = false")).await;
    let s = TcpStream::connect(p.addr).await.unwrap();
    let attempt = async {
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(s),
        )
        .await?;
        tokio::spawn(conn);
        let req = http::Request::get(format!("http://localhost:{}/api/h2", p.addr.port()))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        send.send_request(req).await
    };
    let r = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("refused within 10 s, not hung");
    assert!(
        r.is_err(),
        "HTTP/2 was served with prior knowledge turned off"
    );
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn reuse_port_lets_processes_share_a_port_and_is_off_by_default() {
    let mut c = portero::Config::embedded();
    c.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    c.server.reuse_port = true;
    let first = portero::Listeners::bind(&c).await.unwrap();
    let addr = first.plain[0].local_addr().unwrap();

    // A second portero with reuse_port on the same port: both listen.
    c.server.listen = vec![addr];
    let second = portero::Listeners::bind(&c).await.unwrap();
    assert_eq!(second.plain[0].local_addr().unwrap(), addr);

    // Without it, the port is in use, as for any other program.
    c.server.reuse_port = false;
    match portero::Listeners::bind(&c).await {
        Err(e) => assert!(e.to_string().contains(&addr.to_string()), "{e}"),
        Ok(_) => panic!("bound a port in use without reuse_port"),
    }
}

#[test]
fn a_runtime_per_core_serves_and_shuts_down() {
    // run_per_core builds its own runtimes: it runs on a plain thread, the
    // backend and the client on a runtime of the test's.
    let client = tokio::runtime::Runtime::new().unwrap();
    let echo = client.block_on(Echo::start());
    let mut c = cfg(echo.addr, "");
    c.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        portero::run_per_core(
            c,
            None,
            2,
            |_, l| addr_tx.send(l.plain[0].local_addr().unwrap()).unwrap(),
            async {
                let _ = stop_rx.await;
            },
        )
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("listening");
    client.block_on(async {
        // Separate connections, so the kernel spreads them over both
        // workers' listeners.
        for i in 0..40 {
            let r = get(&format!("http://{addr}/api/n{i}"), &[]).await;
            assert_eq!(r.status, 200, "request {i}");
        }
    });
    assert_eq!(echo.hits(), 40);
    // Both workers served (the kernel spread 40 connections over their
    // listeners), and each reused its own upstream connection: a pool
    // shared across workers would have used one.
    assert_eq!(echo.conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    stop_tx.send(()).unwrap();
    server
        .join()
        .expect("the server thread ends")
        .expect("run_per_core returns Ok");
}
