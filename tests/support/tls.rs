//! TLS test support: a throwaway CA that issues certificates into a temp
//! dir, portero started with a TLS listener on 127.0.0.1:0, and a TLS
//! client that records which certificate the server presented.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portero::config::{CertPaths, Config, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::Portero;

/// A CA made for one test.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a certificate for `names` and writes `<stem>.pem` and
    /// `<stem>-key.pem` into `dir`.
    pub(crate) fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> CertPaths {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let paths = CertPaths {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}-key.pem")),
        };
        std::fs::write(&paths.cert, cert.pem()).unwrap();
        std::fs::write(&paths.key, key.serialize_pem()).unwrap();
        paths
    }
}

/// A `[tls]` section for `certs`; the listen address is replaced by the
/// bound one when portero starts.
pub(crate) fn tls_config(certs: Vec<CertPaths>) -> TlsConfig {
    TlsConfig {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        certs,
        ca_dir: "certs".into(),
        redirect_http: false,
        hsts_max_age: None,
    }
}

/// A running portero with a plain and a TLS listener.
pub(crate) struct TlsPortero {
    pub portero: Portero,
    pub tls_addr: SocketAddr,
}

impl TlsPortero {
    pub(crate) fn plain_addr(&self) -> SocketAddr {
        self.portero.addr
    }

    pub(crate) async fn stop(self) {
        self.portero.stop().await
    }
}

/// Starts portero with `config` and `tls`, both listeners on 127.0.0.1:0.
pub(crate) async fn start_tls(config: Config, tls: TlsConfig) -> TlsPortero {
    start_tls_reloading(config, tls, None).await
}

/// [`start_tls`], reloading from `reloader`'s file when it changes.
pub(crate) async fn start_tls_reloading(
    mut config: Config,
    tls: TlsConfig,
    reloader: Option<portero::Reloader>,
) -> TlsPortero {
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = plain.local_addr().unwrap();
    let tls_addr = secure.local_addr().unwrap();
    config.tls = Some(tls);
    super::http1_from_env(&mut config);
    let listeners = portero::Listeners {
        plain: vec![plain],
        tls: vec![secure],
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        portero::run_with_reload(listeners, config, reloader, async {
            let _ = rx.await;
        })
        .await
        .expect("portero runs");
    });
    TlsPortero {
        portero: Portero {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        },
        tls_addr,
    }
}

/// A client config that accepts any server certificate (the tests inspect
/// the certificate themselves) and offers `alpn`.
pub(crate) fn accept_any(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(portero::internals::tls::NoVerification(
            provider,
        )))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A client config that verifies properly against `ca_pem` only.
pub(crate) fn trusting(ca_pem: &str, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// Opens a TLS connection to `addr`. `server_name` is sent as SNI when it
/// is a DNS name; an IP literal sends none, as browsers do.
pub(crate) async fn connect(
    addr: SocketAddr,
    server_name: &str,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_string()).expect("valid server name");
    let connector = tokio_rustls::TlsConnector::from(cfg);
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake within 10 s")
}

/// The SAN DNS names of the certificate the server presented.
pub(crate) fn peer_names(stream: &TlsStream<TcpStream>) -> Vec<String> {
    let certs = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server sent certificates");
    let (_, leaf) = X509Certificate::from_der(&certs[0]).unwrap();
    leaf.subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The protocol ALPN settled on, as text.
pub(crate) fn alpn(stream: &TlsStream<TcpStream>) -> Option<String> {
    stream
        .get_ref()
        .1
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

pub(crate) struct TlsReply {
    pub version: http::Version,
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl TlsReply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One GET over an established TLS stream: HTTP/2 when ALPN chose `h2`,
/// HTTP/1.1 otherwise. `host` is the `Host` header (`:authority` on h2).
pub(crate) async fn get(stream: TlsStream<TcpStream>, host: &str, path: &str) -> TlsReply {
    let h2 = alpn(&stream).as_deref() == Some("h2");
    let io = TokioIo::new(stream);
    let exchange = async {
        if h2 {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            let req = http::Request::get(format!("https://{host}{path}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            send.send_request(req).await
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            let req = http::Request::get(path)
                .header(http::header::HOST, host)
                .body(Empty::<Bytes>::new())
                .unwrap();
            send.send_request(req).await
        }
    };
    let resp = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("response within 30 s")
        .expect("request succeeds");
    let (parts, body) = resp.into_parts();
    TlsReply {
        version: parts.version,
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

/// An HTTPS backend on 127.0.0.1:0 with a certificate for `127.0.0.1`
/// issued by `ca`; answers every request with `tls backend saw <Host>`.
pub(crate) async fn https_backend(
    ca: &TestCa,
    dir: &Path,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let paths = ca.issue(dir, "backend", &["127.0.0.1"]);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&paths.key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: http::Request<_>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body =
                        http_body_util::Full::new(Bytes::from(format!("tls backend saw {host}")));
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, task)
}
