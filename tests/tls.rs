//! TLS: certificate choice by SNI, ALPN and HTTP/2, SNI/Host agreement,
//! HTTP→HTTPS redirect and HSTS, startup errors that name files, and the
//! certificates `portero cert` writes.

mod support;

use std::time::Duration;

use portero::config::{CertPaths, Config, Overrides};
use portero::internals::tls;
use portero::{Outcome, Reloader};
use support::tls::{
    TestCa, accept_any, connect, get, peer_names, start_tls, start_tls_reloading, tls_config,
    trusting,
};

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1: &[&[u8]] = &[b"http/1.1"];

fn config(extra: &str) -> Config {
    support::config(&format!(
        "[upstreams.backend]\nurl = \"http://127.0.0.1:9\"\n{extra}"
    ))
}

#[tokio::test]
async fn sni_picks_exact_then_one_label_wildcard_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let default = ca.issue(dir.path(), "default", &["localhost"]);
    let wildcard = ca.issue(dir.path(), "wildcard", &["*.example.test"]);
    let exact = ca.issue(dir.path(), "exact", &["special.example.test"]);
    let p = start_tls(config(""), tls_config(vec![default, wildcard, exact])).await;

    let cases = [
        ("special.example.test", "special.example.test"),
        ("a.example.test", "*.example.test"),
        ("SPECIAL.example.test", "special.example.test"),
        // One label deep only; the bare parent is not covered either.
        ("a.b.example.test", "localhost"),
        ("example.test", "localhost"),
        ("unknown.test", "localhost"),
        // No SNI at all (IP literal): the first configured certificate.
        ("127.0.0.1", "localhost"),
    ];
    for (sni, served) in cases {
        let s = connect(p.tls_addr, sni, accept_any(H1)).await.unwrap();
        assert_eq!(peer_names(&s), [served], "SNI {sni}");
    }
    p.stop().await;
}

#[tokio::test]
async fn alpn_h2_serves_http2_even_without_cleartext_h2() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCa::new().issue(dir.path(), "dev", &["localhost"]);
    // Cleartext h2 off: TLS still serves h2, because ALPN offered it.
    let cfg = config("[server]\nhttp2_prior_knowledge = false");
    let p = start_tls(cfg, tls_config(vec![cert])).await;

    let s = connect(p.tls_addr, "localhost", accept_any(H2_AND_H1))
        .await
        .unwrap();
    assert_eq!(support::tls::alpn(&s).as_deref(), Some("h2"));
    let r = get(s, "localhost", "/__portero/health").await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"ok\n");

    let s = connect(p.tls_addr, "localhost", accept_any(H1))
        .await
        .unwrap();
    assert_eq!(support::tls::alpn(&s).as_deref(), Some("http/1.1"));
    let r = get(s, "localhost", "/__portero/health").await;
    assert_eq!(r.version, http::Version::HTTP_11);
    assert_eq!(r.status, 200);
    p.stop().await;
}

#[tokio::test]
async fn a_host_that_disagrees_with_sni_is_421() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCa::new().issue(dir.path(), "dev", &["localhost", "*.localhost"]);
    let p = start_tls(config(""), tls_config(vec![cert])).await;

    for alpn in [H1, H2_AND_H1] {
        let s = connect(p.tls_addr, "a.localhost", accept_any(alpn))
            .await
            .unwrap();
        let r = get(s, "b.localhost", "/__portero/health").await;
        assert_eq!(r.status, 421, "{:?}", r.version);

        let s = connect(p.tls_addr, "a.localhost", accept_any(alpn))
            .await
            .unwrap();
        let r = get(s, "A.localhost.", "/__portero/health").await;
        assert_eq!(r.status, 200, "same name, other spelling");
    }
    // No SNI (connected by IP): nothing to compare with.
    let s = connect(p.tls_addr, "127.0.0.1", accept_any(H1))
        .await
        .unwrap();
    assert_eq!(get(s, "localhost", "/__portero/health").await.status, 200);
    p.stop().await;
}

#[tokio::test]
async fn plain_http_is_redirected_to_the_tls_port_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCa::new().issue(dir.path(), "dev", &["localhost"]);
    let mut t = tls_config(vec![cert]);
    t.redirect_http = true;
    let p = start_tls(config(""), t).await;
    let plain = p.plain_addr();

    let r = support::get(
        &format!("http://{plain}/app/page?x=1&y=2"),
        &[("host", "localhost:8080")],
    )
    .await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://localhost:{}/app/page?x=1&y=2", p.tls_addr.port()).as_str())
    );
    // Portero's own endpoints stay on plain HTTP.
    let r = support::get(&format!("http://{plain}/__portero/health"), &[]).await;
    assert_eq!(r.status, 200);
    // Unknown hosts are refused, not redirected.
    let r = support::get(&format!("http://{plain}/"), &[("host", "evil.test")]).await;
    assert_eq!(r.status, 421);
    p.stop().await;
}

#[tokio::test]
async fn hsts_on_https_for_real_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCa::new().issue(dir.path(), "dev", &["localhost", "app.example.test"]);
    let mut t = tls_config(vec![cert]);
    t.hsts_max_age = Some(Duration::from_secs(86_400));
    let cfg = config("[tenants]\nallowed_hosts = [\"app.example.test\"]");
    let p = start_tls(cfg, t).await;

    let s = connect(p.tls_addr, "app.example.test", accept_any(H1))
        .await
        .unwrap();
    let r = get(s, "app.example.test", "/__portero/health").await;
    assert_eq!(r.header("strict-transport-security"), Some("max-age=86400"));

    let s = connect(p.tls_addr, "localhost", accept_any(H1))
        .await
        .unwrap();
    let r = get(s, "localhost", "/__portero/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("strict-transport-security"), None);

    let r = support::get(
        &format!("http://{}/__portero/health", p.plain_addr()),
        &[("host", "app.example.test")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "never on plain HTTP"
    );
    p.stop().await;
}

fn startup_error(certs: Vec<CertPaths>) -> String {
    match tls::acceptor(&tls_config(certs), &config("").tenants) {
        Ok(_) => panic!("the acceptor should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_key_that_does_not_match_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let one = ca.issue(dir.path(), "one", &["localhost"]);
    let two = ca.issue(dir.path(), "two", &["localhost"]);
    let mixed = CertPaths {
        cert: one.cert.clone(),
        key: two.key.clone(),
    };
    let msg = startup_error(vec![mixed]);
    assert!(msg.contains("does not match"), "{msg}");
    assert!(msg.contains(&one.cert.display().to_string()), "{msg}");
    assert!(msg.contains(&two.key.display().to_string()), "{msg}");
}

#[test]
fn missing_and_empty_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = TestCa::new().issue(dir.path(), "good", &["localhost"]);
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();

    let msg = startup_error(vec![CertPaths {
        cert: missing.clone(),
        key: good.key.clone(),
    }]);
    assert!(msg.contains(&missing.display().to_string()), "{msg}");

    let msg = startup_error(vec![CertPaths {
        cert: good.cert.clone(),
        key: missing.clone(),
    }]);
    assert!(msg.contains(&missing.display().to_string()), "{msg}");

    let msg = startup_error(vec![CertPaths {
        cert: empty.clone(),
        key: good.key.clone(),
    }]);
    assert!(msg.contains("no certificate"), "{msg}");
    assert!(msg.contains(&empty.display().to_string()), "{msg}");

    // A certificate file is not a key file.
    let msg = startup_error(vec![CertPaths {
        cert: good.cert.clone(),
        key: good.cert.clone(),
    }]);
    assert!(msg.contains("no private key"), "{msg}");
    assert!(msg.contains(&good.cert.display().to_string()), "{msg}");
}

#[tokio::test]
async fn portero_run_reports_tls_errors_instead_of_serving() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let mut cfg = config("");
    cfg.tls = Some(tls_config(vec![CertPaths {
        cert: missing.clone(),
        key: missing.clone(),
    }]));
    let listeners = portero::Listeners {
        plain: vec![],
        tls: vec![tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()],
    };
    let err = portero::run(listeners, cfg, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn portero_cert_writes_files_that_load_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let req = portero::cert::Request {
        base_domain: Some(portero::host::HostName::parse("example.test").unwrap()),
        tenants: vec!["acme".into()],
        names: vec![],
    };
    let files = portero::cert::generate(&dir.path().join("certs"), &req).unwrap();
    assert!(files.ca_created);
    let paths = CertPaths {
        cert: files.cert.clone(),
        key: files.key.clone(),
    };
    tls::acceptor(&tls_config(vec![paths.clone()]), &config("").tenants)
        .expect("generated files load");

    // A client that trusts only the dev CA accepts the names it was made for.
    let ca_pem = std::fs::read_to_string(&files.ca_cert).unwrap();
    let cfg = config("[tenants]\nbase_domain = \"example.test\"");
    let p = start_tls(cfg, tls_config(vec![paths])).await;
    for name in [
        "localhost",
        "acme.localhost",
        "example.test",
        "x.example.test",
        "127.0.0.1",
    ] {
        let s = connect(p.tls_addr, name, trusting(&ca_pem, H2_AND_H1))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let host = if name == "127.0.0.1" {
            "localhost"
        } else {
            name
        };
        assert_eq!(
            get(s, host, "/__portero/health").await.status,
            200,
            "{name}"
        );
    }
    // And refuses one it was not.
    let err = connect(p.tls_addr, "other.test", trusting(&ca_pem, H1)).await;
    assert!(err.is_err(), "other.test must not verify");
    p.stop().await;
}

#[tokio::test]
async fn wss_echo_through_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let backend = support::ws::WsEcho::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCa::new().issue(dir.path(), "dev", &["localhost", "*.localhost"]);
    let cfg = support::config(&format!(
        "[upstreams.backend]\nurl = \"http://{}\"\n\
         [[routes]]\nprefix = \"/ws\"\nupstream = \"backend\"\n\
         [tenants]\nbase_domain = \"chalanpro.net\"",
        backend.addr
    ));
    let p = start_tls(cfg, tls_config(vec![cert])).await;

    // Browsers open WebSockets on an HTTP/1.1 connection of their own.
    let stream = connect(p.tls_addr, "acme.localhost", accept_any(H1))
        .await
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("wss://acme.localhost/ws/echo", stream)
        .await
        .expect("WebSocket handshake over TLS");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello over tls")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo within 10 s")
        .expect("a message")
        .unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "hello over tls");
    let seen = backend.seen.lock().unwrap().clone();
    assert_eq!(seen.host.as_deref(), Some("acme.chalanpro.net"));
    assert_eq!(seen.path, "/ws/echo");
    ws.close(None).await.unwrap();
    // Finish the closing handshake so the tunnel ends before shutdown.
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    p.stop().await;
}

/// The proxy's https upstreams use `client_config`: the upstream's `ca`
/// makes a private CA trusted; without it the handshake fails (502) unless
/// verification is explicitly switched off.
#[tokio::test]
async fn https_upstreams_verify_against_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (backend, _task) = support::tls::https_backend(&ca, dir.path()).await;
    let ca_path = dir.path().join("backend-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();

    let cases = [
        (format!("ca = {:?}", ca_path.display().to_string()), 200),
        (String::new(), 502),
        ("insecure_skip_verify = true".to_string(), 200),
    ];
    for (option, status) in cases {
        let cfg = support::config(&format!(
            "[upstreams.backend]\nurl = \"https://{backend}\"\n{option}\nwait_for = \"0s\"\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"backend\""
        ));
        let p = support::start(cfg).await;
        let r = support::get(&p.url("/api/x"), &[("host", "localhost")]).await;
        assert_eq!(r.status, status, "{option}: {}", r.text());
        if status == 200 {
            assert_eq!(r.text(), "tls backend saw localhost");
        }
        p.stop().await;
    }
}

/// A config file naming one certificate, for the reload tests: its path,
/// its text, the config loaded from it and a reloader watching it.
fn tls_config_file(
    dir: &std::path::Path,
    cert: &CertPaths,
) -> (std::path::PathBuf, String, Config, Reloader) {
    let path = dir.join("portero.toml");
    let text = format!(
        "[upstreams.backend]\nurl = \"http://127.0.0.1:9\"\n\
         [tls]\nlisten = [\"127.0.0.1:0\"]\n\
         [[tls.certs]]\ncert = {:?}\nkey = {:?}\n",
        cert.cert, cert.key
    );
    std::fs::write(&path, &text).unwrap();
    let config = Config::load_file(&path).unwrap();
    let reloader = Reloader {
        path: path.clone(),
        overrides: Overrides::default(),
    };
    (path, text, config, reloader)
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "site", &["old.example.test"]);
    let (path, text, config, reloader) = tls_config_file(dir.path(), &cert);
    let tls_section = config.tls.clone().unwrap();
    let p = start_tls_reloading(config, tls_section, Some(reloader)).await;
    let served = || async {
        let s = connect(p.tls_addr, "a.example.test", accept_any(H1))
            .await
            .unwrap();
        peer_names(&s)
    };
    assert_eq!(served().await, ["old.example.test"]);

    // A renewal writes new files at the same paths; the reload that
    // follows (SIGHUP, or here the config file being written) reads them.
    ca.issue(dir.path(), "site", &["new.example.test"]);
    std::fs::write(&path, &text).unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while served().await != ["new.example.test"] {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the renewed certificate was served within 10 s");
    p.stop().await;
}

#[tokio::test]
async fn a_broken_renewal_is_refused_and_the_running_certificate_stays() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let cert = ca.issue(dir.path(), "site", &["old.example.test"]);
    let (_, _, config, reloader) = tls_config_file(dir.path(), &cert);
    let (_, store) = tls::acceptor(config.tls.as_ref().unwrap(), &config.tenants).unwrap();
    let shared = portero::internals::Shared::new(config, 1);
    shared.tls_certs.set(store.clone()).unwrap();
    let running = store.pick(None).unwrap();

    // Half written: the certificate file ends mid-way.
    std::fs::write(&cert.cert, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    match reloader.reload(&shared) {
        Outcome::Kept(why) => {
            assert!(why.contains("site.pem"), "the file is named: {why}");
        }
        Outcome::Applied { .. } => panic!("a broken certificate was applied"),
    }
    assert!(std::sync::Arc::ptr_eq(&store.pick(None).unwrap(), &running));

    // The renewal completed: the next reload takes it.
    ca.issue(dir.path(), "site", &["new.example.test"]);
    assert!(matches!(reloader.reload(&shared), Outcome::Applied { .. }));
    assert!(!std::sync::Arc::ptr_eq(
        &store.pick(None).unwrap(),
        &running
    ));
}
