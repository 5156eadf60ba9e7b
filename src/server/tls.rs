//! rustls server configuration: certificates, SNI, ALPN.
//! (Stub: lands with the TLS issue.)

use crate::config::TlsConfig;
use crate::error::StartupError;

pub fn acceptor(_tls: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, StartupError> {
    Err(StartupError::Tls(
        "TLS listeners are not implemented yet".into(),
    ))
}
