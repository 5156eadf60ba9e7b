//! rustls client configuration for `https://` upstreams: which roots are
//! trusted, and the explicit opt-out from verification.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{provider, read_certs};
use crate::config::Upstream;
use crate::error::StartupError;

/// The client config the proxy uses for one upstream. Trusted roots: the
/// Mozilla set compiled in (so behaviour does not depend on the machine),
/// plus the system's store when it can be read (so a company CA installed
/// there works), plus the upstream's own `ca` file. With
/// `insecure_skip_verify` nothing is checked, and a warning says so.
pub fn client_config(upstream: &Upstream) -> Result<Arc<ClientConfig>, StartupError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::Tls(e.to_string()))?;
    let mut config = if upstream.insecure_skip_verify {
        tracing::warn!(
            "upstream {} ({}): TLS certificate verification is OFF (insecure_skip_verify = true)",
            upstream.name,
            upstream.url
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = system_roots().clone();
        if let Some(ca) = &upstream.ca {
            add_ca_file(&mut roots, ca).map_err(|e| StartupError::UpstreamTls {
                upstream: upstream.name.clone(),
                reason: e.to_string(),
            })?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // The proxy speaks HTTP/1.1 to upstreams; offering h2 would let a
    // server pick a protocol the connection is not set up for.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client config for connecting to portero's own TLS listener (the
/// inspector's replay): the address is the listener's own, so there is no
/// one to impersonate it and the certificate is not checked.
pub(crate) fn own_listener_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = provider();
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the provider supports the default versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

/// webpki-roots plus the native store, read once per process: reading the
/// native store can mean parsing a large file, and it does not change while
/// portero runs.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!("system certificate store: {e}");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!("system certificate store: {added} root(s) added, {ignored} unparsable");
        roots
    })
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), StartupError> {
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| StartupError::BadPem {
            path: path.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(())
}

/// Accepts any certificate. Handshake signatures are still checked, so the
/// connection is at least encrypted to whoever holds the presented key.
/// Public for `insecure_skip_verify` users and tests, which need the same.
#[derive(Debug)]
pub struct NoVerification(pub Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamUrl;
    use std::time::Duration;

    fn upstream(ca: Option<&Path>, insecure: bool) -> Upstream {
        Upstream {
            name: "api".into(),
            url: UpstreamUrl::parse("https://api.internal:8443").unwrap(),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            wait_for: Duration::ZERO,
            max_connections: 1,
            request_body_timeout: Duration::from_secs(1),
            body_idle_timeout: Duration::from_secs(1),
            ca: ca.map(Path::to_path_buf),
            insecure_skip_verify: insecure,
        }
    }

    #[test]
    fn missing_ca_file_names_the_upstream_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope-ca.pem");
        let err = client_config(&upstream(Some(&path), false)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("upstream api"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let msg = client_config(&upstream(Some(&path), false))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no certificate"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn a_valid_ca_loads_and_alpn_is_http1() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        let cfg = client_config(&upstream(Some(&path), false)).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let insecure = client_config(&upstream(None, true)).unwrap();
        assert_eq!(insecure.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
