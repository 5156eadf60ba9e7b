//! `portero doctor` as users run it, against an in-test backend that
//! answers like Daphne in front of django-tenants.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Output};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const BIN: &str = env!("CARGO_BIN_EXE_portero");

/// A backend on a free port, in a thread of its own: `Server: daphne`, a
/// redirect to the admin login for every host, except hosts of the tenants
/// in `missing`, which get django-tenants' 404 (as with DEBUG = True).
fn daphne(missing: &'static [&'static str]) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: Request<_>| async move {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let tenant = host.split('.').next().unwrap_or("");
                        let resp =
                            if missing.contains(&tenant) {
                                Response::builder().status(404).body(Full::new(Bytes::from(
                                    format!("No tenant for hostname \"{host}\""),
                                )))
                            } else {
                                Response::builder()
                                    .status(302)
                                    .header("location", "/admin/login/?next=/admin/")
                                    .body(Full::new(Bytes::new()))
                            };
                        let mut resp = resp.unwrap();
                        resp.headers_mut()
                            .insert("server", "daphne".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

fn config(dir: &tempfile::TempDir, backend_port: u16) -> std::path::PathBuf {
    let path = dir.path().join("portero.toml");
    std::fs::write(
        &path,
        format!(
            "[upstreams.backend]\nurl = \"http://127.0.0.1:{backend_port}\"\n\
             [tenants]\nbase_domain = \"example.test\"\n[tenants.overrides.acme]\n"
        ),
    )
    .unwrap();
    path
}

fn doctor(dir: &tempfile::TempDir, cfg: &std::path::Path, extra: &[&str]) -> (Output, String) {
    let out = Command::new(BIN)
        .arg("doctor")
        .arg("--config")
        .arg(cfg)
        .args(extra)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

#[test]
fn a_daphne_backend_serving_every_tenant_passes() {
    let backend = daphne(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, backend.port());
    let (out, text) = doctor(&dir, &cfg, &["--tenant", "globex"]);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains('✗'), "{text}");
    for want in [
        "✓ config ",
        &format!(
            "✓ upstream backend (http://127.0.0.1:{}): Daphne",
            backend.port()
        ),
        "✓ tenant acme: acme.localhost → acme.example.test: GET /admin/ → 302 from Daphne",
        "✓ tenant globex: globex.localhost → globex.example.test: GET /admin/ → 302",
        "✓ tenant acme: acme.example.test → acme.example.test",
        "✓ TLS: not configured",
        "ALLOWED_HOSTS = [\".example.test\", \"127.0.0.1\", \"[::1]\"]",
        "all checks passed",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn a_backend_that_is_down_fails_with_how_to_start_it() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, port);
    let (out, text) = doctor(&dir, &cfg, &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let want = format!("start it with `daphne -b 127.0.0.1 -p {port} project.asgi:application`");
    assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    assert!(text.contains("✗ upstream backend"), "{text}");
}

#[test]
fn a_tenant_missing_in_the_database_is_named() {
    let backend = daphne(&["ghost"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, backend.port());
    let (out, text) = doctor(&dir, &cfg, &["--tenant", "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✗ tenant ghost: ghost.localhost → ghost.example.test: tenant ghost is missing in the database"),
        "{text}"
    );
    assert!(text.contains("✓ tenant acme: acme.localhost"), "{text}");
    assert!(text.contains("1 problem(s) found"), "{text}");
}

#[test]
fn an_invalid_config_is_reported_like_check_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[[routes]]\nprefix = \"/api\"\nupstream = \"bakend\"\n",
    )
    .unwrap();
    let (out, text) = doctor(&dir, &cfg, &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✗ config: ")
            && text.contains("bad.toml:3:12: routes[0].upstream: no upstream named \"bakend\""),
        "{text}"
    );
}
