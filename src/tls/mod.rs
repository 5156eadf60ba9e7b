//! TLS, both ways, with one crypto provider (aws-lc-rs): the server side
//! (certificates from PEM files, chosen by SNI, reloadable, or minted per
//! allowed host by the development CA) and the client side for `https://`
//! upstreams (trusted roots, the explicit opt-out).

mod client;
mod mint;
mod server;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{self, PemObject};

use crate::error::StartupError;

pub(crate) use client::own_listener_config;
pub use client::{NoVerification, client_config};
pub use server::{CertStore, acceptor};

/// The one crypto provider portero uses (aws-lc-rs), passed explicitly so no
/// process-wide default has to be installed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Every certificate in a PEM file, in order; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, StartupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(StartupError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A PEM reading failure as a startup error naming `path`.
fn pem_error(path: &Path, e: pem::Error) -> StartupError {
    match e {
        pem::Error::Io(cause) => StartupError::ReadFile {
            path: path.to_path_buf(),
            cause,
        },
        other => StartupError::BadPem {
            path: path.to_path_buf(),
            reason: format!("invalid PEM: {other}"),
        },
    }
}

/// Loads every certificate, key and CA file `config` names, as start-up
/// would, and says what fails (`file: key: problem`), so a config that
/// passes `portero check` also starts.
pub fn check(config: &crate::config::Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(tls) = &config.tls {
        if let Err(e) = acceptor(tls, &config.tenants) {
            problems.push(format!("{}: tls: {e}", config.source));
        }
    }
    for up in config.upstreams.values().filter(|u| u.url.is_https()) {
        if let Err(e) = client_config(up) {
            problems.push(format!("{}: upstreams.{}: {e}", config.source, up.name));
        }
    }
    problems
}
