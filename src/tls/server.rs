//! rustls server configuration: certificates loaded from PEM files, the
//! certificate chosen by the client's SNI name, ALPN `h2` and `http/1.1`;
//! or, with no certificate files, one minted per allowed host by the
//! development CA (`super::mint`). The certificates sit in a [`CertStore`]
//! that a config reload (or SIGHUP, after a renewal) replaces in one step;
//! listeners and handshakes in progress are not touched.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::mint::Minter;
use super::{pem_error, provider, read_certs};
use crate::config::{CertPaths, TenantConfig, TlsConfig};
use crate::error::StartupError;

/// The TLS acceptor for every TLS listener, and the store of its
/// certificates: all `[[tls.certs]]` loaded, checked, and indexed by name,
/// or, when there are none, the development CA in `tls.ca_dir` ready to
/// mint for the hosts `tenants` allows.
pub fn acceptor(
    tls: &TlsConfig,
    tenants: &TenantConfig,
) -> Result<(tokio_rustls::TlsAcceptor, Arc<CertStore>), StartupError> {
    let provider = provider();
    let store = Arc::new(CertStore::load(tls, tenants, &provider)?);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartupError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store.clone());
    // Preference order: the server picks the first one the client offers.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), store))
}

/// The certificates handshakes are answered with; replaceable while the
/// server runs.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<Certs>,
}

/// Where handshakes get their certificate from.
#[derive(Debug)]
enum Certs {
    /// The configured files, chosen by SNI (the first one by default).
    Files(SniResolver),
    /// None configured: minted per allowed host by the development CA.
    Minted(Box<Minter>),
}

impl CertStore {
    pub fn load(
        tls: &TlsConfig,
        tenants: &TenantConfig,
        provider: &CryptoProvider,
    ) -> Result<Self, StartupError> {
        Ok(CertStore {
            current: ArcSwap::from_pointee(certs(tls, tenants, provider, None)?),
        })
    }

    /// Reads `tls`'s certificate files (or the development CA) again,
    /// renewed ones included, and answers new handshakes with them and with
    /// `tenants`' allowed hosts. Minted certificates are kept when the CA
    /// is the same. On any error the running certificates stay.
    pub fn reload(&self, tls: &TlsConfig, tenants: &TenantConfig) -> Result<(), StartupError> {
        let fresh = certs(tls, tenants, &provider(), Some(&self.current.load()))?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }

    /// The certificate a handshake with this SNI name gets now; `None`
    /// (the handshake fails) only when minting and the host is not allowed.
    pub fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        match &**self.current.load() {
            Certs::Files(files) => Some(files.pick(sni).clone()),
            Certs::Minted(minter) => minter.pick(sni),
        }
    }
}

impl CertStore {
    /// Each configured certificate's first name and the seconds until it
    /// expires (negative once it has); the development CA's when minting.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let left = |der: &[u8]| {
            X509Certificate::from_der(der)
                .ok()
                .map(|(_, c)| c.validity().not_after.timestamp() - now)
        };
        match &**self.current.load() {
            Certs::Files(files) => files
                .certs
                .iter()
                .zip(&files.labels)
                .filter_map(|(k, name)| Some((name.clone(), left(k.cert.first()?)?)))
                .collect(),
            Certs::Minted(minter) => {
                let der =
                    rustls_pki_types::CertificateDer::from_pem_slice(minter.ca_pem().as_bytes());
                der.ok()
                    .and_then(|der| left(&der))
                    .map(|s| vec![("development CA".to_string(), s)])
                    .unwrap_or_default()
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

fn certs(
    tls: &TlsConfig,
    tenants: &TenantConfig,
    provider: &CryptoProvider,
    previous: Option<&Certs>,
) -> Result<Certs, StartupError> {
    let certs = tls
        .certs
        .iter()
        .map(|paths| load_cert(paths, provider))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(files) = SniResolver::new(certs) {
        return Ok(Certs::Files(files));
    }
    let previous = match previous {
        Some(Certs::Minted(m)) => Some(&**m),
        _ => None,
    };
    let minter = Minter::load(&tls.ca_dir, tenants, Arc::new(provider.clone()), previous)?;
    Ok(Certs::Minted(Box::new(minter)))
}

/// A certificate chain with its key, and the DNS names its leaf covers.
#[derive(Debug)]
pub(super) struct LoadedCert {
    /// The leaf's SAN DNS names, lowercased; wildcards stay as `*.suffix`.
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
}

/// Loads one `cert`/`key` pair. Every failure names the file at fault; an
/// expired or not-yet-valid certificate is only a warning, because a dev
/// setup with a stale certificate should still start.
pub(super) fn load_cert(
    paths: &CertPaths,
    provider: &CryptoProvider,
) -> Result<LoadedCert, StartupError> {
    let chain = read_certs(&paths.cert)?;
    let key_der = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| match e {
        pem::Error::NoItemsFound => StartupError::NoPrivateKey {
            path: paths.key.clone(),
        },
        other => pem_error(&paths.key, other),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| StartupError::BadPem {
            path: paths.key.clone(),
            reason: format!("unusable private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public key; rustls
        // itself accepts that, and the handshake would fail loudly anyway.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(StartupError::KeyMismatch {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
            });
        }
        Err(e) => {
            return Err(StartupError::BadPem {
                path: paths.cert.clone(),
                reason: e.to_string(),
            });
        }
    }
    let names = leaf_names(&paths.cert, &certified.cert[0])?;
    Ok(LoadedCert {
        names,
        key: Arc::new(certified),
    })
}

/// The leaf's SAN DNS names; warns when it is outside its validity period.
fn leaf_names(path: &Path, leaf: &CertificateDer<'_>) -> Result<Vec<String>, StartupError> {
    let bad = |reason: String| StartupError::BadPem {
        path: path.to_path_buf(),
        reason,
    };
    let (_, x509) = X509Certificate::from_der(leaf)
        .map_err(|e| bad(format!("cannot parse the certificate: {e}")))?;
    let validity = x509.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        tracing::warn!(
            "certificate {} expired on {}; browsers will refuse it (run `portero cert` for a new dev certificate)",
            path.display(),
            validity.not_after
        );
    } else if now < validity.not_before {
        tracing::warn!(
            "certificate {} is not valid before {}",
            path.display(),
            validity.not_before
        );
    }
    let san = x509
        .subject_alternative_name()
        .map_err(|e| bad(format!("cannot read subjectAltName: {e}")))?;
    let names = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(normalise(d)),
            _ => None,
        })
        .collect();
    Ok(names)
}

fn normalise(name: &str) -> String {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// Picks a certificate by SNI: an exact name, then a wildcard one label
/// deep (`*.example.net` covers `a.example.net`, not `a.b.example.net` nor
/// `example.net`, as RFC 6125 §6.4.3 has clients check it), then the first
/// configured certificate. When several certificates claim a name the first
/// configured wins.
#[derive(Debug)]
pub(super) struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
    /// Each certificate's first name, for metrics.
    labels: Vec<String>,
    names: NameIndex,
}

impl SniResolver {
    /// `None` when `certs` is empty: there would be no default.
    pub(super) fn new(certs: Vec<LoadedCert>) -> Option<Self> {
        if certs.is_empty() {
            return None;
        }
        let mut names = NameIndex::default();
        let mut keys = Vec::with_capacity(certs.len());
        let mut labels = Vec::with_capacity(certs.len());
        for (i, c) in certs.into_iter().enumerate() {
            for n in &c.names {
                names.insert(n, i);
            }
            labels.push(c.names.first().cloned().unwrap_or_else(|| "-".into()));
            keys.push(c.key);
        }
        Some(Self {
            certs: keys,
            labels,
            names,
        })
    }

    pub(super) fn pick(&self, sni: Option<&str>) -> &Arc<CertifiedKey> {
        let i = sni.and_then(|s| self.names.lookup(s)).unwrap_or(0);
        &self.certs[i]
    }
}

/// Certificate indices by exact name and by wildcard suffix.
#[derive(Debug, Default)]
pub(super) struct NameIndex {
    exact: HashMap<String, usize>,
    /// `*.example.net` is stored under `example.net`.
    wildcard: HashMap<String, usize>,
}

impl NameIndex {
    pub(super) fn insert(&mut self, name: &str, cert: usize) {
        let name = normalise(name);
        match name.strip_prefix("*.") {
            Some(suffix) => self.wildcard.entry(suffix.to_string()),
            None => self.exact.entry(name),
        }
        .or_insert(cert);
    }

    pub(super) fn lookup(&self, sni: &str) -> Option<usize> {
        let sni = normalise(sni);
        if let Some(&i) = self.exact.get(&sni) {
            return Some(i);
        }
        let (_, parent) = sni.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expiry is a warning, not an error: a stale dev certificate still
    /// starts the server, and its names are read.
    #[test]
    fn an_expired_certificate_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let paths = CertPaths {
            cert: dir.path().join("old.pem"),
            key: dir.path().join("old-key.pem"),
        };
        std::fs::write(&paths.cert, params.self_signed(&key).unwrap().pem()).unwrap();
        std::fs::write(&paths.key, key.serialize_pem()).unwrap();
        let loaded = load_cert(&paths, &provider()).unwrap();
        assert_eq!(loaded.names, ["old.test"]);
    }

    #[test]
    fn exact_then_one_label_wildcard_then_default() {
        let mut ix = NameIndex::default();
        ix.insert("example.net", 1);
        ix.insert("*.example.net", 2);
        ix.insert("Special.Example.NET", 3);
        ix.insert("*.example.net", 4);
        assert_eq!(ix.lookup("example.net"), Some(1));
        assert_eq!(ix.lookup("a.example.net"), Some(2));
        assert_eq!(ix.lookup("A.Example.Net."), Some(2));
        assert_eq!(ix.lookup("special.example.net"), Some(3));
        assert_eq!(ix.lookup("a.b.example.net"), None);
        assert_eq!(ix.lookup("other.test"), None);
        assert_eq!(ix.lookup("net"), None);
    }
}
