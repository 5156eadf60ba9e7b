//! rustls server configuration: certificates, SNI, ALPN.
//! (Stub: lands with the TLS issue.)

use crate::config::TlsConfig;
use crate::error::StartupError;

pub fn acceptor(_tls: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, StartupError> {
    Err(StartupError::Tls(
        "TLS listeners are not implemented yet".into(),
    ))
}

/// rustls client settings for an https upstream.
pub fn client_config(
    upstream: &crate::config::Upstream,
) -> Result<std::sync::Arc<rustls::ClientConfig>, StartupError> {
    Err(StartupError::Tls(format!(
        "https upstreams are not supported yet ({})",
        upstream.url
    )))
}
