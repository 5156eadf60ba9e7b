//! `portero cert`: a local development CA, created once and then reused, and
//! a leaf certificate for the local names, signed by it. [`DevCa`] loads
//! that CA again so the TLS listener can mint a short-lived certificate for
//! each host name at its first handshake.
//!
//! The CA is reused so that trusting it once (in the system store, in
//! browsers) keeps working every time the leaf is regenerated, for example
//! after adding a base domain.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::host::HostName;

pub const CA_CERT: &str = "dev-ca.pem";
pub const CA_KEY: &str = "dev-ca-key.pem";
pub const LEAF_CERT: &str = "dev.pem";
pub const LEAF_KEY: &str = "dev-key.pem";

/// Browsers reject leaf certificates valid for longer than this when the
/// CA is user-installed (Apple's 825-day rule is the strictest).
const LEAF_DAYS: i64 = 825;
const CA_DAYS: i64 = 10 * 365;
/// Validity of a certificate minted at a handshake ([`DevCa::mint`]).
pub const MINTED_DAYS: i64 = 30;

/// What the leaf certificate should cover beyond the local names.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub base_domain: Option<HostName>,
    /// Tenants to name explicitly as `<tenant>.localhost`: there is no
    /// `*.localhost` wildcard (browsers, curl and OpenSSL ignore a wildcard
    /// directly under a top-level domain, and Chromium and Apple platforms
    /// reject the certificate), so only explicit names work there. The TLS
    /// listener without certificate files needs none of this: it mints a
    /// certificate for each name it is asked for.
    pub tenants: Vec<String>,
    /// Further names or IP addresses, as given.
    pub names: Vec<String>,
}

/// The files written, and whether the CA is new.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_created: bool,
    /// The names and addresses the leaf covers.
    pub names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot create folder {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{} exists but {} does not: restore the pair, or delete both to create a new CA (and trust it again)",
        present.display(),
        missing.display()
    )]
    HalfCa { present: PathBuf, missing: PathBuf },
    #[error(
        "no development CA in {} ({CA_CERT} and {CA_KEY}): run `portero cert` first (in the folder portero runs in), or name certificate files with --tls-cert/--tls-key or [[tls.certs]]",
        dir.display()
    )]
    NoCa { dir: PathBuf },
    #[error("cannot generate the {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
}

/// The leaf's names: `localhost`, the loopback addresses, then the base
/// domain and its wildcard, then `<tenant>.localhost` for each named
/// tenant, then any further names. Never `*.localhost`: Chromium and Apple
/// platforms reject a certificate with a wildcard directly under a
/// top-level domain.
pub fn leaf_names(req: &Request) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if let Some(base) = &req.base_domain {
        names.push(base.to_string());
        names.push(format!("*.{base}"));
    }
    let extra = req
        .tenants
        .iter()
        .map(|t| format!("{t}.localhost"))
        .chain(req.names.iter().cloned());
    for name in extra {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Creates `dir` if needed, creates or reuses the CA there, and writes a
/// fresh leaf certificate and key. Key files are readable by the owner only.
pub fn generate(dir: &Path, req: &Request) -> Result<DevCerts, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_cert = dir.join(CA_CERT);
    let ca_key = dir.join(CA_KEY);
    let (issuer, ca_created) = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => (load_ca(&ca_cert, &ca_key)?, false),
        (false, false) => (create_ca(&ca_cert, &ca_key)?, true),
        (true, false) => {
            return Err(CertError::HalfCa {
                present: ca_cert,
                missing: ca_key,
            });
        }
        (false, true) => {
            return Err(CertError::HalfCa {
                present: ca_key,
                missing: ca_cert,
            });
        }
    };

    let names = leaf_names(req);
    let (cert, key) = sign_leaf(&issuer, names.clone(), Duration::days(LEAF_DAYS))?;

    let cert_path = dir.join(LEAF_CERT);
    let key_path = dir.join(LEAF_KEY);
    write_file(&cert_path, &cert.pem(), false)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    Ok(DevCerts {
        ca_cert,
        ca_key,
        cert: cert_path,
        key: key_path,
        ca_created,
        names,
    })
}

/// A server certificate for `names` (DNS names or IP addresses), valid from
/// a day ago (for clocks slightly behind) for `validity`, signed by
/// `issuer`, with a new ECDSA P-256 key.
fn sign_leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: Vec<String>,
    validity: Duration,
) -> Result<(rcgen::Certificate, KeyPair), CertError> {
    let gen_err = |source| CertError::Generate {
        what: "certificate",
        source,
    };
    let mut params = CertificateParams::new(names).map_err(gen_err)?;
    params.distinguished_name = dn("portero development certificate");
    params.is_ca = IsCa::NoCa;
    // ECDSA keys sign; key encipherment would only apply to RSA.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + validity;
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = params.signed_by(&key, issuer).map_err(gen_err)?;
    Ok((cert, key))
}

/// The development CA `portero cert` created, loaded to sign certificates
/// at run time.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate as read, to tell whether a reload found the same CA.
    pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The issuer holds the CA's private key: never printed.
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

/// A certificate minted by [`DevCa::mint`]: DER, its PKCS#8 key, and when
/// it expires.
#[derive(Debug)]
pub struct Minted {
    pub cert: rustls_pki_types::CertificateDer<'static>,
    pub key: rustls_pki_types::PrivatePkcs8KeyDer<'static>,
    pub not_after: OffsetDateTime,
}

impl DevCa {
    /// Loads `dir/dev-ca.pem` and `dir/dev-ca-key.pem`; [`CertError::NoCa`]
    /// when neither exists.
    pub fn load(dir: &Path) -> Result<DevCa, CertError> {
        let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
        match (ca_cert.exists(), ca_key.exists()) {
            (false, false) => Err(CertError::NoCa {
                dir: dir.to_path_buf(),
            }),
            (true, false) => Err(CertError::HalfCa {
                present: ca_cert,
                missing: ca_key,
            }),
            (false, true) => Err(CertError::HalfCa {
                present: ca_key,
                missing: ca_cert,
            }),
            (true, true) => {
                let pem = std::fs::read_to_string(&ca_cert).map_err(|source| CertError::Read {
                    path: ca_cert.clone(),
                    source,
                })?;
                let issuer = load_ca(&ca_cert, &ca_key)?;
                Ok(DevCa { issuer, pem })
            }
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for exactly `names` (DNS names or IP addresses), valid
    /// for [`MINTED_DAYS`], with a new ECDSA P-256 key.
    pub fn mint(&self, names: &[&str]) -> Result<Minted, CertError> {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // Taken before signing: never later than the certificate's own.
        let not_after = OffsetDateTime::now_utc() + Duration::days(MINTED_DAYS);
        let (cert, key) = sign_leaf(&self.issuer, names, Duration::days(MINTED_DAYS))?;
        Ok(Minted {
            cert: cert.der().clone(),
            key: rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
            not_after,
        })
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "portero");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn create_ca(cert_path: &Path, key_path: &Path) -> Result<Issuer<'static, KeyPair>, CertError> {
    let gen_err = |source| CertError::Generate {
        what: "development CA",
        source,
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    params.distinguished_name = dn("portero development CA");
    // Path length 0: the CA can sign leaf certificates only.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(CA_DAYS);
    let key = KeyPair::generate().map_err(gen_err)?;
    let cert = params.self_signed(&key).map_err(gen_err)?;
    // Key first: a CA certificate without its key would block the next run.
    write_file(key_path, &key.serialize_pem(), true)?;
    write_file(cert_path, &cert.pem(), false)?;
    Ok(Issuer::new(params, key))
}

fn load_ca(cert_path: &Path, key_path: &Path) -> Result<Issuer<'static, KeyPair>, CertError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| CertError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let key = KeyPair::from_pem(&read(key_path)?).map_err(|e| CertError::Invalid {
        path: key_path.to_path_buf(),
        reason: format!("not a usable private key: {e}"),
    })?;
    Issuer::from_ca_cert_pem(&read(cert_path)?, key).map_err(|e| CertError::Invalid {
        path: cert_path.to_path_buf(),
        reason: format!("not a usable CA certificate: {e}"),
    })
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    // `mode` only applies to new files; an older key file may be wider.
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    f.write_all(contents.as_bytes()).map_err(err)
}

/// How to trust the CA and run portero with the certificate, for printing.
pub fn instructions(certs: &DevCerts) -> String {
    let ca = certs.ca_cert.display();
    format!(
        "\
Trust the development CA once per machine (keep {ca_key} private: whoever has it
can impersonate any site to a machine that trusts the CA). `portero cert --install`
does it, printing each step (and the sudo commands for the system store); by hand:

  Debian/Ubuntu:
    sudo cp {ca} /usr/local/share/ca-certificates/portero-dev-ca.crt
    sudo update-ca-certificates
  macOS:
    sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca}
  Chrome/Chromium on Linux (NSS database):
    certutil -d sql:$HOME/.pki/nssdb -A -t \"C,,\" -n \"portero development CA\" -i {ca}
  Firefox (each profile; or set security.enterprise_roots.enabled = true):
    certutil -d sql:$HOME/.mozilla/firefox/<profile> -A -t \"C,,\" -n \"portero development CA\" -i {ca}

Then run, in this folder (HTTPS for every allowed host: localhost, any
<tenant>.localhost, <tenant>.<base domain>; each gets a certificate of its own,
made by the development CA at its first connection):

  portero --tls-listen 127.0.0.1:8443 [--base-domain DOMAIN]

or, with the certificate just written (only the names listed above):

  portero --tls-listen 127.0.0.1:8443 --tls-cert {cert} --tls-key {key}
",
        ca_key = certs.ca_key.display(),
        cert = certs.cert.display(),
        key = certs.key.display(),
    )
}

#[cfg(test)]
mod tests {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    use super::*;

    #[test]
    fn names_cover_local_base_domain_and_tenants() {
        let req = Request {
            base_domain: Some(HostName::parse("chalanpro.net").unwrap()),
            tenants: vec!["acme".into(), "globex".into()],
            names: vec!["acme.localhost".into(), "10.0.0.5".into()],
        };
        assert_eq!(
            leaf_names(&req),
            [
                "localhost",
                "127.0.0.1",
                "::1",
                "chalanpro.net",
                "*.chalanpro.net",
                "acme.localhost",
                "globex.localhost",
                "10.0.0.5"
            ]
        );
    }

    /// Chromium and Apple platforms reject a certificate naming
    /// `*.localhost`; tenants are named one by one (or minted at run time).
    #[test]
    fn no_wildcard_under_localhost() {
        let req = Request {
            base_domain: Some(HostName::parse("chalanpro.net").unwrap()),
            tenants: vec!["acme".into()],
            names: vec![],
        };
        for names in [leaf_names(&Request::default()), leaf_names(&req)] {
            assert!(!names.iter().any(|n| n == "*.localhost"), "{names:?}");
        }
        assert_eq!(
            leaf_names(&Request::default()),
            ["localhost", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn a_loaded_ca_mints_for_exactly_the_names_asked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            DevCa::load(dir.path()),
            Err(CertError::NoCa { .. })
        ));
        let files = generate(dir.path(), &Request::default()).unwrap();
        let ca = DevCa::load(dir.path()).unwrap();
        assert_eq!(ca.pem(), std::fs::read_to_string(&files.ca_cert).unwrap());
        let minted = ca.mint(&["acme.localhost"]).unwrap();
        let (_, x509) = X509Certificate::from_der(&minted.cert).unwrap();
        let san = x509.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            san.value.general_names,
            [GeneralName::DNSName("acme.localhost")]
        );
        let days = (minted.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((MINTED_DAYS - 1..=MINTED_DAYS).contains(&days), "{days}");
    }

    #[test]
    fn the_ca_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(dir.path(), &Request::default()).unwrap();
        assert!(first.ca_created);
        let ca = std::fs::read(&first.ca_cert).unwrap();
        let leaf = std::fs::read(&first.cert).unwrap();
        let second = generate(dir.path(), &Request::default()).unwrap();
        assert!(!second.ca_created);
        assert_eq!(std::fs::read(&second.ca_cert).unwrap(), ca);
        assert_ne!(std::fs::read(&second.cert).unwrap(), leaf);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for p in [&second.key, &second.ca_key] {
                let mode = std::fs::metadata(p).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", p.display());
            }
        }
    }

    #[test]
    fn half_a_ca_is_an_error_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CA_CERT), "x").unwrap();
        let msg = generate(dir.path(), &Request::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains(CA_CERT) && msg.contains(CA_KEY), "{msg}");
    }
}
