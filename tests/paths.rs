//! Request paths byte for byte: raw UTF-8 next to percent-escapes, as the
//! backend receives them and as the static lookup finds files, and file
//! names the filesystem cannot take.

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::backends::Raw;
use support::{Portero, config, raw, start};

fn cfg(backend: SocketAddr, dir: &Path) -> portero::Config {
    config(&format!(
        r#"
[server]
shutdown_timeout = "2s"

[upstreams.backend]
url = "http://{backend}"
wait_for = "0s"

[[routes]]
prefix = "/api"
upstream = "backend"

[[routes]]
prefix = "/files"
static_dir = {dir:?}
"#,
        dir = dir.to_str().unwrap(),
    ))
}

/// Sends `GET {target}` as raw bytes (no client gets to re-encode it) and
/// returns the status and the whole response.
async fn get_raw(p: &Portero, target: &[u8], accept: &str) -> (u16, String) {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let resp = raw(p.addr, &req, Duration::from_secs(5)).await;
    let status = resp
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {resp:?}"));
    (status, resp)
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn raw_utf8_and_escapes_reach_the_backend_percent_encoded_once() {
    let mut backend = Raw::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p = start(cfg(backend.addr, dir.path())).await;
    for target in [
        "/api/café/x%20y",
        "/api/caf%C3%A9/x%20y",
        "/api/caf%c3%a9/x%20y",
        "/api/caf%C3%A9/./x%20y",
        "/api/%63afé/x%20y",
    ] {
        let (status, resp) = get_raw(&p, target.as_bytes(), "*/*").await;
        assert_eq!(status, 200, "{target}: {resp}");
        let got = backend.received.recv().await.unwrap();
        let line = got.split(|&b| b == b'\r').next().unwrap();
        assert_eq!(
            String::from_utf8_lossy(line),
            "GET /api/caf%C3%A9/x%20y HTTP/1.1",
            "{target}"
        );
    }
    p.stop().await;
}

#[tokio::test]
async fn non_ascii_file_names_are_found_by_raw_and_encoded_requests() {
    let backend = Raw::start().await;
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("café.txt"), "accented").unwrap();
    fs::write(dir.path().join("café x.txt"), "spaced").unwrap();
    let p = start(cfg(backend.addr, dir.path())).await;
    for (target, want) in [
        ("/files/café.txt", "accented"),
        ("/files/caf%C3%A9.txt", "accented"),
        ("/files/caf%c3%a9.txt", "accented"),
        ("/files/café%20x.txt", "spaced"),
        ("/files/caf%C3%A9%20x.txt", "spaced"),
    ] {
        // Twice: the second answer comes from the cache when there is one.
        for _ in 0..2 {
            let (status, resp) = get_raw(&p, target.as_bytes(), "*/*").await;
            assert_eq!(status, 200, "{target}: {resp}");
            assert_eq!(body(&resp), want, "{target}");
        }
    }
    let (status, _) = get_raw(&p, b"/files/caf%FF.txt", "*/*").await;
    assert_eq!(status, 404);
    p.stop().await;
}

#[tokio::test]
async fn names_the_filesystem_refuses_are_404_without_the_folder() {
    let backend = Raw::start().await;
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.txt"), "a").unwrap();
    // A symlink loop: looking it up fails with ELOOP, not "not found".
    std::os::unix::fs::symlink("loop", dir.path().join("loop")).unwrap();
    let p = start(cfg(backend.addr, dir.path())).await;
    let long_name = format!("/files/{}.txt", "n".repeat(300));
    let long_path = format!("/files/{}/a.txt", vec!["d".repeat(250); 20].join("/"));
    let long_encoded = format!("/files/{}", "%C3%A9".repeat(150));
    let folder = dir.path().to_str().unwrap();
    for target in [&long_name, &long_path, &long_encoded, "/files/loop"] {
        for accept in ["*/*", "text/html"] {
            let (status, resp) = get_raw(&p, target.as_bytes(), accept).await;
            assert_eq!(status, 404, "{target}: {resp}");
            assert!(!resp.contains(folder), "{target} named the folder: {resp}");
        }
    }
    let (status, resp) = get_raw(&p, b"/files/a.txt", "*/*").await;
    assert_eq!((status, body(&resp)), (200, "a"));
    p.stop().await;
}
