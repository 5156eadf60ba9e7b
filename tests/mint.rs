//! HTTPS for every tenant with no naming: with a `[tls]` listener and no
//! certificate files, each allowed host gets a certificate for exactly its
//! name, minted at its first handshake by the development CA that
//! `portero cert` wrote, and cached. Refused hosts get no certificate.

mod support;

use std::path::Path;

use portero::config::{Config, TlsConfig};
use support::backends::{Echo, header, parse_report};
use support::tls::{TestCa, accept_any, connect, get, peer_names, start_tls, tls_config, trusting};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const H1: &[&[u8]] = &[b"http/1.1"];
const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The development CA, as `portero cert` writes it, in `dir`; its PEM.
fn dev_ca(dir: &Path) -> String {
    let files = portero::cert::generate(dir, &portero::cert::Request::default()).unwrap();
    std::fs::read_to_string(files.ca_cert).unwrap()
}

fn config(backend: &str, extra: &str) -> Config {
    support::config(&format!(
        "[upstreams.backend]\nurl = \"http://{backend}\"\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n\
         [tenants]\nbase_domain = \"example.test\"\n{extra}"
    ))
}

/// A `[tls]` section with no certificate files: minting from `ca_dir`.
fn minting(ca_dir: &Path) -> TlsConfig {
    TlsConfig {
        ca_dir: ca_dir.to_path_buf(),
        ..tls_config(vec![])
    }
}

/// The leaf's SANs, DNS names and IP addresses as text.
fn sans(s: &TlsStream<TcpStream>) -> Vec<String> {
    let der = peer_der(s);
    let (_, leaf) = X509Certificate::from_der(&der).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(b) => match b.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap()).to_string(),
                _ => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string(),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

fn peer_der(s: &TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn every_allowed_host_gets_a_certificate_for_exactly_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dev_ca(dir.path());
    let echo = Echo::start().await;
    let cfg = config(&echo.addr.to_string(), "allowed_hosts = [\"lan.box\"]");
    let p = start_tls(cfg, minting(dir.path())).await;

    for name in [
        "acme.localhost",
        "globex.localhost",
        "x.acme.localhost",
        "acme.example.test",
        "example.test",
        "lan.box",
        "localhost",
    ] {
        let s = connect(p.tls_addr, name, trusting(&ca, H2_AND_H1))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: &[&str] = if name == "localhost" {
            &["localhost", "127.0.0.1", "::1"]
        } else {
            &[name]
        };
        assert_eq!(sans(&s), expected, "{name}");
        let r = get(s, name, "/__portero/health").await;
        assert_eq!(r.status, 200, "{name}");
    }

    // No SNI (connected by IP): the localhost certificate, which covers
    // the loopback addresses and verifies for 127.0.0.1.
    let s = connect(p.tls_addr, "127.0.0.1", trusting(&ca, H1))
        .await
        .expect("127.0.0.1 verifies");
    assert_eq!(peer_names(&s), ["localhost"]);
    assert_eq!(get(s, "127.0.0.1", "/__portero/health").await.status, 200);
    p.stop().await;
}

#[tokio::test]
async fn an_https_request_reaches_the_tenant_backend() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dev_ca(dir.path());
    let echo = Echo::start().await;
    let p = start_tls(config(&echo.addr.to_string(), ""), minting(dir.path())).await;

    for alpn in [H1, H2_AND_H1] {
        let s = connect(p.tls_addr, "acme.localhost", trusting(&ca, alpn))
            .await
            .unwrap();
        let r = get(s, "acme.localhost", "/api/orders").await;
        assert_eq!(r.status, 200, "{:?}", r.version);
        let (line, headers) = parse_report(&String::from_utf8_lossy(&r.body));
        assert_eq!(line, "GET /api/orders");
        assert_eq!(header(&headers, "host"), Some("acme.example.test"));
        assert_eq!(header(&headers, "x-forwarded-proto"), Some("https"));
    }
    p.stop().await;
}

#[tokio::test]
async fn a_host_the_tenant_rules_refuse_gets_no_certificate() {
    let dir = tempfile::tempdir().unwrap();
    dev_ca(dir.path());
    let p = start_tls(config("127.0.0.1:9", ""), minting(dir.path())).await;
    for name in [
        "evil.example.com",
        "example.test.evil.com",
        "acme.other.test",
    ] {
        // Even a client that accepts any certificate gets none.
        let r = connect(p.tls_addr, name, accept_any(H1)).await;
        assert!(r.is_err(), "{name} must not complete a handshake");
    }
    // The listener is still fine.
    let s = connect(p.tls_addr, "acme.localhost", accept_any(H1))
        .await
        .unwrap();
    assert_eq!(peer_names(&s), ["acme.localhost"]);
    p.stop().await;
}

#[tokio::test]
async fn a_name_is_minted_once_then_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    dev_ca(dir.path());
    let p = start_tls(config("127.0.0.1:9", ""), minting(dir.path())).await;
    let der = |name: &'static str| {
        let addr = p.tls_addr;
        async move {
            let s = connect(addr, name, accept_any(H1)).await.unwrap();
            peer_der(&s)
        }
    };
    let first = der("acme.localhost").await;
    assert_eq!(der("acme.localhost").await, first);
    assert_eq!(der("ACME.localhost").await, first, "names are normalised");
    assert_ne!(der("globex.localhost").await, first);
    p.stop().await;
}

/// Configured certificates win: a name they cover gets them, and a name
/// they do not gets the first one (as without a CA), never a minted one.
#[tokio::test]
async fn configured_certificates_still_win() {
    let dir = tempfile::tempdir().unwrap();
    dev_ca(dir.path());
    let other = TestCa::new();
    let files = other.issue(dir.path(), "site", &["localhost", "acme.localhost"]);
    let t = TlsConfig {
        ca_dir: dir.path().to_path_buf(),
        ..tls_config(vec![files])
    };
    let p = start_tls(config("127.0.0.1:9", ""), t).await;
    for name in ["acme.localhost", "globex.localhost", "evil.example.com"] {
        let s = connect(p.tls_addr, name, trusting(&other.pem(), H1)).await;
        let s = match name {
            "acme.localhost" => s.expect("the configured certificate verifies"),
            _ => {
                assert!(s.is_err(), "{name}: no minted certificate");
                connect(p.tls_addr, name, accept_any(H1)).await.unwrap()
            }
        };
        assert_eq!(peer_names(&s), ["localhost", "acme.localhost"], "{name}");
    }
    p.stop().await;
}

#[tokio::test]
async fn without_the_ca_startup_says_to_run_portero_cert() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("127.0.0.1:9", "");
    cfg.tls = Some(minting(&dir.path().join("certs")));
    let listeners = portero::Listeners {
        plain: vec![],
        tls: vec![tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()],
    };
    let err = portero::run(listeners, cfg.clone(), std::future::pending())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("portero cert"), "{err}");
    assert!(err.contains("dev-ca.pem"), "{err}");
    // `portero check` says the same.
    let problems = portero::check_files(&cfg);
    assert!(
        problems.iter().any(|p| p.contains("portero cert")),
        "{problems:?}"
    );
    // A [[tls.certs]] needs no CA.
    let issued = TestCa::new().issue(dir.path(), "site", &["localhost"]);
    cfg.tls = Some(TlsConfig {
        ca_dir: dir.path().join("certs"),
        ..tls_config(vec![issued])
    });
    assert!(portero::check_files(&cfg).is_empty());
}
