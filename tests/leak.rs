//! Issue #14: nothing leaks. Thousands of connections (`PORTERO_LEAK_CONNS`,
//! default 10,000) are opened, used and dropped in every abusive way issue
//! #13 lists -- idle after connect, a partial head (`P`, half a header), a
//! bare HTTP/2 preface, a stalled request body, a client that stops reading,
//! an aborted upload, an aborted download, a WebSocket opened and dropped, a
//! TLS handshake abandoned -- mixed with ordinary HTTP/1.1 and HTTP/2
//! requests. Then, once portero's (short) timers and the backend's keep-alive
//! have expired, the process's open descriptors (`/proc/self/fd`) and tokio's
//! alive tasks must be back at their baseline.
//!
//! portero, its backends and the clients all run in this process, so every
//! descriptor and task of either side is counted.
#![cfg(target_os = "linux")]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use support::tls::{TestCa, start_tls, tls_config};
use support::ws::WsEcho;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Descriptors allowed above the baseline at the end. Nothing should remain:
/// pooled upstream connections are closed by the backend's 1 s keep-alive.
const FD_SLACK: usize = 2;
/// Connections in flight at once.
const CONCURRENCY: usize = 256;
/// portero's send_timeout in this test (its other timers are 300 ms).
const SEND_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest any one connection may take, and the longest wait for the
/// counts to come back.
const OP_LIMIT: Duration = Duration::from_secs(10);
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

fn open_fds() -> usize {
    // The directory handle read_dir holds is counted too, the same every time.
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

// ------------------------------------------------------------------ backend

type Body = BoxBody<Bytes, Infallible>;

/// An HTTP/1.1 backend: `/api/download?bytes=N` streams N bytes, anything
/// else reads the request body and answers `ok`. An idle keep-alive
/// connection is closed after 1 s (hyper's header timer), so portero's pooled
/// connections end on their own, as with uvicorn or gunicorn.
async fn backend() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(1))
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(serve))
                    .await;
            });
        }
    });
    (addr, task)
}

async fn serve(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let bytes: Option<usize> = req
        .uri()
        .query()
        .and_then(|q| q.strip_prefix("bytes="))
        .and_then(|n| n.parse().ok());
    if let Some(n) = bytes {
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let frames = (0..n.div_ceil(chunk.len())).map(move |i| {
            let len = (n - i * chunk.len()).min(chunk.len());
            Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
        });
        let body = StreamBody::new(futures_util::stream::iter(frames));
        return Ok(Response::builder()
            .header("content-length", n)
            .body(BodyExt::boxed(body))
            .unwrap());
    }
    let _ = req.into_body().collect().await;
    Ok(Response::new(Full::new(Bytes::from_static(b"ok")).boxed()))
}

// ------------------------------------------------------------------ clients

#[derive(Clone, Copy, Debug)]
enum Abuse {
    Idle,
    PartialP,
    PartialHead,
    BarePreface,
    StalledBody,
    StopsReading,
    AbortedUpload,
    AbortedDownload,
    WebSocketDropped,
    TlsAbandoned,
    Http1,
    Http2,
}

const KINDS: [Abuse; 12] = [
    Abuse::Idle,
    Abuse::PartialP,
    Abuse::PartialHead,
    Abuse::BarePreface,
    Abuse::StalledBody,
    Abuse::StopsReading,
    Abuse::AbortedUpload,
    Abuse::AbortedDownload,
    Abuse::WebSocketDropped,
    Abuse::TlsAbandoned,
    Abuse::Http1,
    Abuse::Http2,
];

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits for portero to close `s`; false if it is still open after OP_LIMIT.
async fn closed_by_portero(s: &mut TcpStream) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(OP_LIMIT, s.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// Reads one HTTP/1.1 response with a Content-Length body; its status.
async fn response(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&b[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut left = len.saturating_sub(buf.len() - head_end);
    while left > 0 {
        let n = s.read(&mut b).await.ok()?;
        if n == 0 {
            return None;
        }
        left = left.saturating_sub(n);
    }
    Some(status)
}

struct Addrs {
    plain: SocketAddr,
    tls: SocketAddr,
}

/// One connection used (or abused) as `kind`. Returns whether it went as
/// expected (portero closed what it had to close, answered what it had to).
async fn one(kind: Abuse, a: &Addrs, i: usize) -> bool {
    let Ok(mut s) = TcpStream::connect(if matches!(kind, Abuse::TlsAbandoned) {
        a.tls
    } else {
        a.plain
    })
    .await
    else {
        return false;
    };
    let host = "host: localhost\r\n";
    match kind {
        Abuse::Idle => closed_by_portero(&mut s).await,
        Abuse::PartialP => {
            let _ = s.write_all(b"P").await;
            closed_by_portero(&mut s).await
        }
        Abuse::PartialHead => {
            let _ = s.write_all(b"GET /api/x HTTP/1.1\r\nHo").await;
            closed_by_portero(&mut s).await
        }
        Abuse::BarePreface => {
            let _ = s.write_all(PREFACE).await;
            closed_by_portero(&mut s).await
        }
        Abuse::StalledBody => {
            let req =
                format!("POST /api/up HTTP/1.1\r\n{host}content-length: 1000\r\n\r\n0123456789");
            let _ = s.write_all(req.as_bytes()).await;
            // 408 from request_body_timeout, then the close.
            response(&mut s).await == Some(408) && closed_by_portero(&mut s).await
        }
        Abuse::StopsReading => {
            let req = format!("GET /api/download?bytes={} HTTP/1.1\r\n{host}\r\n", 8 << 20);
            let _ = s.write_all(req.as_bytes()).await;
            // Never read: portero's writes stall once the buffers are full,
            // and send_timeout must drop the connection (and the upstream one).
            tokio::time::sleep(SEND_TIMEOUT * 3).await;
            closed_by_portero(&mut s).await
        }
        Abuse::AbortedUpload => {
            let req = format!("POST /api/up HTTP/1.1\r\n{host}content-length: 1048576\r\n\r\n");
            let _ = s.write_all(req.as_bytes()).await;
            let _ = s.write_all(&vec![b'u'; 16384 * (1 + i % 8)]).await;
            true // dropped mid-body
        }
        Abuse::AbortedDownload => {
            let req = format!("GET /api/download?bytes=1048576 HTTP/1.1\r\n{host}\r\n");
            let _ = s.write_all(req.as_bytes()).await;
            let mut b = vec![0u8; 4096 * (1 + i % 16)];
            let _ = s.read(&mut b).await;
            true // dropped mid-body
        }
        Abuse::WebSocketDropped => {
            let req = format!(
                "GET /ws/echo HTTP/1.1\r\n{host}connection: Upgrade\r\nupgrade: websocket\r\n\
                 sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            );
            let _ = s.write_all(req.as_bytes()).await;
            response(&mut s).await == Some(101) // then dropped, no close frame
        }
        Abuse::TlsAbandoned => {
            if i % 2 == 1 {
                // The first bytes of a ClientHello record, then nothing.
                let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
            }
            closed_by_portero(&mut s).await
        }
        Abuse::Http1 => {
            let req = format!("GET /api/x HTTP/1.1\r\n{host}\r\n");
            let mut ok = true;
            for n in 0..1 + i % 3 {
                let _ = s.write_all(req.as_bytes()).await;
                let got = response(&mut s).await;
                if got != Some(200) {
                    eprintln!("leak: Http1 request {n} on a connection: {got:?}");
                    ok = false;
                }
            }
            ok // dropped while keep-alive
        }
        Abuse::Http2 => {
            let Ok((mut send, conn)) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s)).await
            else {
                return false;
            };
            let conn = tokio::spawn(conn);
            let req = Request::get("http://localhost/api/x")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let ok = match send.send_request(req).await {
                Ok(r) => {
                    let status = r.status();
                    let body = r.into_body().collect().await;
                    if status != 200 || body.is_err() {
                        eprintln!(
                            "leak: Http2 request: {status}, body {:?}",
                            body.as_ref().err()
                        );
                    }
                    status == 200 && body.is_ok()
                }
                Err(e) => {
                    eprintln!("leak: Http2 request: {e}");
                    false
                }
            };
            drop(send);
            let _ = tokio::time::timeout(OP_LIMIT, conn).await;
            ok
        }
    }
}

// ------------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_used_and_abused_leave_no_descriptor_or_task_behind() {
    let total: usize = std::env::var("PORTERO_LEAK_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // CONCURRENCY connections hold up to four descriptors each here.
    let _ = rlimit::increase_nofile_limit(u64::MAX);

    let dir = tempfile::tempdir().unwrap();
    let cert = TestCa::new().issue(dir.path(), "dev", &["localhost"]);
    let (backend_addr, backend_task) = backend().await;
    let ws = WsEcho::start().await;
    let cfg = support::config(&format!(
        "[server]\n\
         header_read_timeout = \"300ms\"\n\
         send_timeout = \"500ms\"\n\
         http2_idle_timeout = \"300ms\"\n\
         tls_handshake_timeout = \"300ms\"\n\
         [upstreams.backend]\n\
         url = \"http://{backend_addr}\"\n\
         request_body_timeout = \"300ms\"\n\
         body_idle_timeout = \"2s\"\n\
         [upstreams.ws]\n\
         url = \"http://{}\"\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n\
         [[routes]]\nprefix = \"/ws\"\nupstream = \"ws\"\n",
        ws.addr
    ));
    let p = start_tls(cfg, tls_config(vec![cert])).await;
    let addrs = Arc::new(Addrs {
        plain: p.plain_addr(),
        tls: p.tls_addr,
    });

    // Warm up (whatever portero sets up on first use), let it go idle, and
    // take the baseline.
    for kind in [Abuse::Http1, Abuse::Http2, Abuse::WebSocketDropped] {
        assert!(one(kind, &addrs, 0).await, "warm-up {kind:?} failed");
    }
    let (base_fds, base_tasks) = settle(None).await;

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let failed: Arc<Vec<AtomicUsize>> =
        Arc::new(KINDS.iter().map(|_| AtomicUsize::new(0)).collect());
    let mut set = tokio::task::JoinSet::new();
    let mut peak_fds = base_fds;
    for i in 0..total {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (addrs, failed) = (addrs.clone(), failed.clone());
        let k = i % KINDS.len();
        set.spawn(async move {
            let ok = tokio::time::timeout(OP_LIMIT * 2, one(KINDS[k], &addrs, i / KINDS.len()))
                .await
                .unwrap_or(false);
            if !ok {
                failed[k].fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
        while set.try_join_next().is_some() {}
        if i % 500 == 0 {
            peak_fds = peak_fds.max(open_fds());
        }
    }
    while set.join_next().await.is_some() {}
    let took = started.elapsed();

    let (fds, tasks) = settle(Some((base_fds, base_tasks))).await;
    let failed_by_kind: Vec<String> = KINDS
        .iter()
        .zip(failed.iter())
        .filter(|(_, n)| n.load(Ordering::Relaxed) > 0)
        .map(|(k, n)| format!("{k:?}: {}", n.load(Ordering::Relaxed)))
        .collect();
    eprintln!(
        "leak: {total} connections in {took:.1?} (at most {CONCURRENCY} at once); \
         fds {base_fds} -> peak {peak_fds} -> {fds}; tasks {base_tasks} -> {tasks}; \
         not as expected: {failed_by_kind:?}"
    );
    // Abusive connections must all have been closed (or answered) by
    // portero. Ordinary requests may lose a few to the 300 ms keep-alive and
    // first-bytes timer when this test's clients are starved of CPU (a busy
    // 2-core machine): up to 5% of them, reported either way.
    let per_kind = total / KINDS.len();
    let failures: Vec<String> = KINDS
        .iter()
        .zip(failed.iter())
        .map(|(k, n)| (k, n.load(Ordering::Relaxed)))
        .filter(|&(k, n)| match k {
            Abuse::Http1 | Abuse::Http2 => n > per_kind / 20,
            _ => n > 0,
        })
        .map(|(k, n)| format!("{k:?}: {n}"))
        .collect();
    assert!(
        failures.is_empty(),
        "connections that did not go as expected (by kind): {failures:?}"
    );
    assert!(
        fds <= base_fds + FD_SLACK,
        "open descriptors {fds} > baseline {base_fds} + {FD_SLACK} within {SETTLE_LIMIT:?} of idle"
    );
    assert!(
        tasks <= base_tasks,
        "alive tokio tasks {tasks} > baseline {base_tasks} within {SETTLE_LIMIT:?} of idle"
    );
    p.stop().await;
    backend_task.abort();
}

/// Waits until the counts are back at `base` (or, with no base, until they
/// stop changing) and returns them; gives up after SETTLE_LIMIT.
async fn settle(base: Option<(usize, usize)>) -> (usize, usize) {
    let deadline = Instant::now() + SETTLE_LIMIT;
    // Past every timer: portero's, the backend's 1 s keep-alive, the
    // HTTP/2 GOAWAY grace.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut last = (open_fds(), alive_tasks());
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = (open_fds(), alive_tasks());
        let done = match base {
            Some((f, t)) => now.0 <= f + FD_SLACK && now.1 <= t,
            None => now == last,
        };
        if done || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}
