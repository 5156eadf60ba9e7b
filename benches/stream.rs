//! Streaming and WebSocket benchmarks against the release binary:
//!
//! - a 1 GiB upload and a 1 GiB download through portero: throughput
//!   (against a direct connection in the same run) and portero's peak RSS;
//! - WebSocket echo round trips (p50/p99) and echoed messages per second
//!   (32 in flight) through portero vs direct and vs nginx (when
//!   installed), in interleaved blocks;
//! - portero's RSS with N idle WebSocket tunnels (default 9,000: two
//!   sockets per tunnel and this machine's 20,000 open-file limit).
//!
//! Run: `cargo build --release && cargo bench --bench stream`
//! Env: `PORTERO_BIN` (default target/release/portero), `STREAM_BYTES`,
//! `WS_IDLE` (tunnel count), `WS_ROUNDS` (round trips).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Messages in flight in the messages/s measurement.
const WS_WINDOW: usize = 32;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    raise_fd_limit();
    let bytes = env_u64("STREAM_BYTES", 1 << 30);
    let idle = env_u64("WS_IDLE", 9_000) as usize;
    let rounds = env_u64("WS_ROUNDS", 10_000) as usize;

    let backend = start_http_backend().await;
    let ws_backend = start_ws_backend().await;
    let (mut child, portero) = spawn_portero(backend, ws_backend);
    let pid = child.id();

    println!("| scenario | direct | through portero | ratio | portero peak RSS |");
    println!("|---|---|---|---|---|");

    let base_rss = rss_kib(pid, "VmRSS");
    let d = upload(backend, bytes).await;
    let p = upload(portero, bytes).await;
    println!(
        "| upload {} MiB | {:.0} MiB/s | {:.0} MiB/s | {:.2} | {} MiB |",
        bytes >> 20,
        mib_s(bytes, d),
        mib_s(bytes, p),
        d.as_secs_f64() / p.as_secs_f64(),
        rss_kib(pid, "VmHWM") / 1024
    );
    let d = download(backend, bytes).await;
    let p = download(portero, bytes).await;
    println!(
        "| download {} MiB | {:.0} MiB/s | {:.0} MiB/s | {:.2} | {} MiB |",
        bytes >> 20,
        mib_s(bytes, d),
        mib_s(bytes, p),
        d.as_secs_f64() / p.as_secs_f64(),
        rss_kib(pid, "VmHWM") / 1024
    );

    // Round trips in interleaved blocks (direct, portero, nginx when
    // installed), medians of the blocks' p50 and p99: this machine is noisy
    // and the processes are not pinned.
    let nginx = spawn_nginx_ws(ws_backend);
    let mut targets = vec![("direct", ws_backend), ("portero", portero)];
    if let Some((_, addr, _)) = &nginx {
        targets.push(("nginx", *addr));
    }
    let mut blocks: Vec<Vec<(f64, f64)>> = vec![Vec::new(); targets.len()];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let messages = rounds * 2;
    for _ in 0..5 {
        for (i, (_, addr)) in targets.iter().enumerate() {
            blocks[i].push(ws_rtt(*addr, rounds / 5).await);
            rates[i].push(ws_rate(*addr, messages / 5, WS_WINDOW).await);
        }
    }
    let med = |v: &[(f64, f64)]| {
        let mut p50: Vec<f64> = v.iter().map(|x| x.0).collect();
        let mut p99: Vec<f64> = v.iter().map(|x| x.1).collect();
        p50.sort_by(|a, b| a.total_cmp(b));
        p99.sort_by(|a, b| a.total_cmp(b));
        (p50[p50.len() / 2], p99[p99.len() / 2])
    };
    let (d50, d99) = med(&blocks[0]);
    for (i, (name, _)) in targets.iter().enumerate().skip(1) {
        let (x50, x99) = med(&blocks[i]);
        println!(
            "| WS echo RTT p50 / p99 via {name} (5 × {} round trips) | {d50:.0} / {d99:.0} µs | {x50:.0} / {x99:.0} µs | {:.2} / {:.2} ×direct | |",
            rounds / 5,
            x50 / d50,
            x99 / d99
        );
    }
    let med_rate = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let direct_rate = med_rate(&mut rates[0]);
    for (i, (name, _)) in targets.iter().enumerate().skip(1) {
        let rate = med_rate(&mut rates[i]);
        println!(
            "| WS echo messages/s via {name} (5 × {} messages, {WS_WINDOW} in flight) | {direct_rate:.0} | {rate:.0} | {:.2} ×direct | |",
            messages / 5,
            rate / direct_rate
        );
    }
    if let Some((mut child, _, _dir)) = nginx {
        // SIGTERM, not SIGKILL: nginx's master then stops its worker too.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }

    let before = rss_kib(pid, "VmRSS");
    let sockets = open_idle(portero, idle).await;
    // Give portero a moment to settle the last handshakes' allocations.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid, "VmRSS");
    println!(
        "| {} idle WS tunnels | | RSS {} MiB (+{} MiB, {:.1} KiB/tunnel) | | |",
        sockets.len(),
        after / 1024,
        after.saturating_sub(before) / 1024,
        after.saturating_sub(before) as f64 / sockets.len().max(1) as f64
    );
    println!("\nportero RSS at start: {} MiB", base_rss / 1024);
    drop(sockets);
    let _ = child.kill();
    let _ = child.wait();
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    (bytes as f64 / (1 << 20) as f64) / d.as_secs_f64()
}

fn raise_fd_limit() {
    // The soft limit up to the hard one: thousands of idle tunnels.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// nginx proxying WebSockets to `ws_backend` (PEERS.md style: one worker),
/// or `None` when nginx is not installed.
fn spawn_nginx_ws(ws_backend: SocketAddr) -> Option<(Child, SocketAddr, tempfile::TempDir)> {
    let dir = tempfile::tempdir().ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let d = dir.path().display();
    let conf = format!(
        "worker_processes 1;\npid {d}/pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 16384; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/cb; proxy_temp_path {d}/p;\n\
         fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
         map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
         server {{ listen 127.0.0.1:{port};\n location / {{ proxy_pass http://{ws_backend};\n\
         proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;\n\
         proxy_set_header Connection $connection_upgrade; proxy_read_timeout 3600s; }} }}\n}}\n"
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).ok()?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if started.elapsed() > Duration::from_secs(5) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some((child, addr, dir))
}

fn spawn_portero(backend: SocketAddr, ws_backend: SocketAddr) -> (Child, SocketAddr) {
    let bin = std::env::var("PORTERO_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/portero").to_string()
    });
    let dir = std::env::temp_dir().join(format!("portero-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("portero.toml");
    std::fs::write(
        &cfg,
        format!(
            "[upstreams.backend]\nurl = \"http://{backend}\"\n[upstreams.ws]\nurl = \"http://{ws_backend}\"\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n[[routes]]\nprefix = \"/ws\"\nupstream = \"ws\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(&bin)
        .args(["--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e} (cargo build --release first)"));
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("portero exited before listening")
            .unwrap();
        if let Some(a) = line.split("listening on http://").nth(1) {
            break a.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

async fn start_http_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: hyper::Request<Incoming>| async move {
                    let n: u64 = req
                        .uri()
                        .query()
                        .and_then(|q| q.strip_prefix("bytes="))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = req.into_body();
                    while let Some(f) = body.frame().await {
                        if f.is_err() {
                            break;
                        }
                    }
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(source(n)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

type Source =
    StreamBody<futures_util::stream::BoxStream<'static, Result<Frame<Bytes>, std::io::Error>>>;

/// A body of `n` bytes in 64 KiB chunks, generated as it is read.
fn source(n: u64) -> Source {
    let chunk = Bytes::from(vec![b'x'; 64 << 10]);
    let stream = futures_util::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let k = left.min(chunk.len() as u64);
            Some((Ok(Frame::data(chunk.slice(..k as usize))), left - k))
        }
    });
    StreamBody::new(stream.boxed())
}

async fn client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Source> {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn upload(addr: SocketAddr, bytes: u64) -> Duration {
    let mut send = client(addr).await;
    let req = hyper::Request::post("/api/upload")
        .header("host", "localhost")
        .body(source(bytes))
        .unwrap();
    let t = Instant::now();
    let resp = send.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "upload: {}", resp.status());
    resp.into_body().collect().await.unwrap();
    t.elapsed()
}

async fn download(addr: SocketAddr, bytes: u64) -> Duration {
    let mut send = client(addr).await;
    let req = hyper::Request::get(format!("/api/download?bytes={bytes}"))
        .header("host", "localhost")
        .body(source(0))
        .unwrap();
    let t = Instant::now();
    let resp = send.send_request(req).await.unwrap();
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(f) = body.frame().await {
        got += f.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, bytes);
    t.elapsed()
}

/// The WebSocket echo backend, on a thread and runtime of its own: a direct
/// round trip then always crosses threads, as one through a proxy does
/// (sharing the client's runtime made "direct" jump between ~27 and ~65 µs
/// from run to run, by whether both tasks landed on the same worker).
async fn start_ws_backend() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.next().await {
                        if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    addr
}

async fn ws_rtt(addr: SocketAddr, rounds: usize) -> (f64, f64) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo"))
        .await
        .unwrap();
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        ws.send(Message::text(i.to_string())).await.unwrap();
        ws.next().await.unwrap().unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[rounds / 2], samples[rounds * 99 / 100])
}

/// Echoed messages per second with up to `window` messages in flight, the
/// way a chatty page streams updates: a writer task sends `n` small
/// messages while this task counts the echoes.
async fn ws_rate(addr: SocketAddr, n: usize, window: usize) -> f64 {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/echo"))
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    let credits = std::sync::Arc::new(tokio::sync::Semaphore::new(window));
    let writer_credits = credits.clone();
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        for i in 0..n {
            writer_credits.acquire().await.unwrap().forget();
            tx.send(Message::text(format!("{i:032}"))).await.unwrap();
        }
        tx
    });
    let deadline = t + Duration::from_secs(60);
    for _ in 0..n {
        let next = tokio::time::timeout_at(deadline.into(), rx.next()).await;
        next.expect("echoes within 60 s").unwrap().unwrap();
        credits.add_permits(1);
    }
    let elapsed = t.elapsed();
    drop(writer.await.unwrap().reunite(rx));
    n as f64 / elapsed.as_secs_f64()
}

async fn open_idle(
    addr: SocketAddr,
    n: usize,
) -> Vec<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>>
{
    let mut out = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..n {
        if Instant::now() > deadline {
            eprintln!("stopped opening tunnels after 120 s");
            break;
        }
        match tokio_tungstenite::connect_async(format!("ws://{addr}/ws/idle")).await {
            Ok((ws, _)) => out.push(ws),
            Err(e) => {
                eprintln!("stopped at {} tunnels: {e}", out.len());
                break;
            }
        }
    }
    out
}
