//! The developer's loop, against the release binary and the library:
//!
//! - start-up: process start to the first accepted connection;
//! - live reload: a file written under the SPA root to the message on the
//!   `/__portero/livereload` socket;
//! - config reload: validating a config and building the new runtime
//!   snapshot (the library's `Reloader::reload`), and through the binary,
//!   a config file written to the new route being served.
//!
//! Run: `cargo build --release && cargo bench --bench dev_loop`
//! Env: `PORTERO_BIN` (default target/release/portero), `DEV_ROUNDS` (20).

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

fn bin() -> String {
    std::env::var("PORTERO_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/portero").to_string()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Spawns portero and polls until it accepts a connection (bounded: 5 s).
fn startup_once(dir: &std::path::Path) -> f64 {
    let port = free_port();
    let t = Instant::now();
    let mut child = Command::new(bin())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "error",
        ])
        .current_dir(dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("cargo build --release first");
    wait_listening(port);
    let took = t.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    took.as_secs_f64() * 1000.0
}

/// Polls until something accepts connections on `port` (bounded: 5 s).
fn wait_listening(port: u16) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `GET /__portero/status` over a fresh connection; the body.
fn status(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /__portero/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The binary watching its config file: the time from writing a config with
/// a new route to the route being listed by the running process (the
/// reload's settle window for editors' multi-step saves included).
fn config_file_reload(dir: &std::path::Path, rounds: usize) -> Vec<f64> {
    let port = free_port();
    let cfg = dir.join("reload.toml");
    let write = |i: usize| {
        std::fs::write(
            &cfg,
            format!(
                "[server]\nlisten = [\"127.0.0.1:{port}\"]\n\n\
                 [upstreams.backend]\nurl = \"http://127.0.0.1:9\"\n\n\
                 [[routes]]\nprefix = \"/probe{i}\"\nupstream = \"backend\"\n"
            ),
        )
        .unwrap()
    };
    write(0);
    let mut child = Command::new(bin())
        .args(["-c"])
        .arg(&cfg)
        .args(["--log-level", "error"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let mut took = Vec::new();
    for i in 1..=rounds {
        let t = Instant::now();
        write(i);
        let wanted = format!("/probe{i}");
        while !status(port).contains(&wanted) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "config not reloaded within 5 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = child.kill();
    let _ = child.wait();
    took
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("DEV_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();

    let startup: Vec<f64> = (0..rounds).map(|_| startup_once(tmp.path())).collect();

    // Live reload through the binary.
    let dist = tmp.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<html><body>v0</body></html>").unwrap();
    std::fs::write(dist.join("app.css"), "body{}").unwrap();
    let port = free_port();
    let mut child = Command::new(bin())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "error",
            "--spa",
        ])
        .arg(&dist)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/__portero/livereload"))
            .await
            .unwrap();
    // The hello.
    ws.next().await.unwrap().unwrap();
    let mut reload = Vec::new();
    for i in 0..rounds {
        let t = Instant::now();
        std::fs::write(dist.join("app.css"), format!("body{{color:#{i:06}}}")).unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("a live-reload message within 5 s")
                .unwrap()
                .unwrap();
            if matches!(msg, Message::Text(ref t) if t.contains("app.css")) {
                break;
            }
        }
        reload.push(t.elapsed().as_secs_f64() * 1000.0);
        // Let the debounce window close before the next write.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    // Config reload: validate + build a snapshot, in process.
    let cfg = tmp.path().join("portero.toml");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/examples/chalanpro.toml"
        ),
        &cfg,
    )
    .unwrap();
    let shared = portero::internals::Shared::new(portero::Config::embedded(), 1);
    let reloader = portero::Reloader {
        path: cfg,
        overrides: Default::default(),
    };
    let mut config_reload = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        match reloader.reload(&shared) {
            portero::Outcome::Applied { .. } => {}
            portero::Outcome::Kept(why) => panic!("{why}"),
        }
        config_reload.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    let file_reload = config_file_reload(tmp.path(), rounds);

    println!("| measurement ({rounds} rounds) | min | median | max | target |");
    println!("|---|---|---|---|---|");
    for (name, v, target) in [
        (
            "start-up: process start → first accepted connection (ms)",
            startup,
            "< 50 ms",
        ),
        (
            "live reload: file written → socket message (ms)",
            reload,
            "< 100 ms median",
        ),
        (
            "config reload: validate + new snapshot (ms)",
            config_reload,
            "—",
        ),
        (
            "config reload: file written → new config active (ms)",
            file_reload,
            "—",
        ),
    ] {
        let (lo, mid, hi) = median(v);
        println!("| {name} | {lo:.2} | {mid:.2} | {hi:.2} | {target} |");
    }
}
