//! TLS: certificate validity and names, and where the development CA is
//! trusted. Reports only: nothing is installed or modified.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::Report;
use crate::config::Config;

/// Fewer days than this left is worth a note.
const RENEW_DAYS: i64 = 30;

/// The system bundle Debian's `update-ca-certificates` writes.
const DEBIAN_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where local CAs are put for `update-ca-certificates`.
const DEBIAN_LOCAL: &str = "/usr/local/share/ca-certificates";

fn certs_in(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .map(|it| it.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Validity and names of one certificate.
struct Leaf {
    days_left: i64,
    not_after: String,
    not_yet_valid: bool,
    names: Vec<String>,
}

fn parse(der: &CertificateDer<'_>) -> Option<Leaf> {
    let (_, x509) = X509Certificate::from_der(der.as_ref()).ok()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let v = x509.validity();
    let names = match x509.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).ok()?).to_string()),
                    16 => {
                        Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).ok()?).to_string())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some(Leaf {
        days_left: (v.not_after.timestamp() - now).div_euclid(86_400),
        not_after: v.not_after.to_datetime().date().to_string(),
        not_yet_valid: v.not_before.timestamp() > now,
        names,
    })
}

/// Does a certificate name (`*.example.com` or exact) cover `host`?
pub(crate) fn covers(name: &str, host: &str) -> bool {
    let name = name.to_ascii_lowercase();
    match name.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => name == host,
    }
}

/// The names a browser will ask for: each tenant's local alias and real
/// domain, and `localhost`.
fn wanted(config: &Config, tenants: &[String]) -> Vec<String> {
    let mut out = vec!["localhost".to_string()];
    if let Some(base) = &config.tenants.base_domain {
        for t in tenants {
            for s in &config.tenants.local_suffixes {
                out.push(format!("{t}.{s}"));
            }
            out.push(format!("{t}.{base}"));
        }
    }
    out
}

fn validity(what: &str, leaf: &Leaf, report: &mut Report<'_>) -> bool {
    if leaf.days_left < 0 {
        report.fail(format!(
            "{what}: expired on {}: renew it (`portero cert`), then `kill -HUP` portero",
            leaf.not_after
        ));
        false
    } else if leaf.not_yet_valid {
        report.fail(format!(
            "{what}: not valid yet (is this machine's clock right?)"
        ));
        false
    } else {
        let soon = if leaf.days_left < RENEW_DAYS {
            " (note: renew it soon)"
        } else {
            ""
        };
        report.ok(format!(
            "{what}: valid until {} ({} days){soon}",
            leaf.not_after, leaf.days_left
        ));
        true
    }
}

pub(crate) fn check(config: &Config, tenants: &[String], report: &mut Report<'_>) {
    let Some(tls) = &config.tls else {
        report.ok("TLS: not configured (plain HTTP; `portero cert` and --tls-listen add HTTPS)");
        return;
    };
    let ca_path = tls.ca_dir.join(crate::cert::CA_CERT);
    if tls.certs.is_empty() {
        let ca = certs_in(&ca_path);
        match ca.first().and_then(parse) {
            Some(leaf) => {
                validity(
                    &format!("TLS development CA {}", ca_path.display()),
                    &leaf,
                    report,
                );
                report.ok(
                    "TLS certificates: minted per host at its first handshake, so every \
                     allowed host is covered",
                );
            }
            None => report.fail(format!(
                "TLS development CA {}: cannot be read: run `portero cert`",
                ca_path.display()
            )),
        }
    } else {
        let mut names = Vec::new();
        for c in &tls.certs {
            let what = format!("TLS certificate {}", c.cert.display());
            match certs_in(&c.cert).first().and_then(parse) {
                Some(leaf) => {
                    if validity(&what, &leaf, report) {
                        report.ok(format!("{what}: names {}", leaf.names.join(", ")));
                    }
                    names.extend(leaf.names);
                }
                None => report.fail(format!("{what}: cannot be parsed")),
            }
        }
        let missing: Vec<String> = wanted(config, tenants)
            .into_iter()
            .filter(|h| !names.iter().any(|n| covers(n, h)))
            .collect();
        if missing.is_empty() {
            report.ok("TLS certificates: cover localhost and every tenant checked");
        } else {
            report.fail(format!(
                "TLS certificates: no certificate names {}: add them (`portero cert --name {}`), \
                 or remove [[tls.certs]] to have a certificate minted for each host",
                missing.join(", "),
                missing[0]
            ));
        }
    }
    let ca = certs_in(&ca_path);
    let Some(ca) = ca.first() else {
        report.ok(format!(
            "TLS trust: no development CA at {} (certificates from elsewhere: trusting their \
             issuer is up to you)",
            ca_path.display()
        ));
        return;
    };
    trust(&ca_path, ca, report);
}

/// Whether `ca` is in the system store and the browsers' NSS databases.
fn trust(ca_path: &Path, ca: &CertificateDer<'_>, report: &mut Report<'_>) {
    let shown = ca_path.display();
    if cfg!(target_os = "macos") {
        report.ok(format!(
            "TLS trust: cannot be read from here on macOS: `security verify-cert -c {shown}` \
             says \"certificate verification successful\" once it is trusted \
             (`sudo security add-trusted-cert -d -r trustRoot -k \
             /Library/Keychains/System.keychain {shown}`)"
        ));
        return;
    }
    let in_bundle = certs_in(Path::new(DEBIAN_BUNDLE)).iter().any(|c| c == ca);
    let local = pem_files(Path::new(DEBIAN_LOCAL))
        .into_iter()
        .find(|f| certs_in(f).iter().any(|c| c == ca));
    match (in_bundle, local) {
        (true, _) => report.ok(format!(
            "TLS trust: {shown} is in the system store ({DEBIAN_BUNDLE})"
        )),
        (false, Some(f)) => report.fail(format!(
            "TLS trust: {shown} is copied to {} but not installed: run `sudo update-ca-certificates`",
            f.display()
        )),
        (false, None) => report.fail(format!(
            "TLS trust: {shown} is not in the system store: `sudo cp {shown} \
             {DEBIAN_LOCAL}/portero-dev-ca.crt && sudo update-ca-certificates`"
        )),
    }
    let dbs = nss_databases();
    if dbs.is_empty() {
        return;
    }
    let Some(certutil) = on_path("certutil") else {
        report.ok(format!(
            "TLS trust in browsers: not checked, `certutil` is not installed (Debian: \
             libnss3-tools); databases found: {}",
            dbs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return;
    };
    for db in dbs {
        let sql = format!("sql:{}", db.display());
        if nss_has(&certutil, &sql, ca) {
            report.ok(format!(
                "TLS trust: {shown} is in the NSS database {}",
                db.display()
            ));
        } else {
            report.fail(format!(
                "TLS trust: {shown} is not in the NSS database {} (Chromium/Firefox): \
                 `certutil -d {sql} -A -t \"C,,\" -n \"portero dev CA\" -i {shown}`",
                db.display()
            ));
        }
    }
}

fn pem_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(pem_files(&p));
        } else if p.extension().is_some_and(|x| x == "crt" || x == "pem") {
            out.push(p);
        }
    }
    out
}

/// Chromium's `~/.pki/nssdb` and each Firefox profile holding a `cert9.db`.
fn nss_databases() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let chromium = home.join(".pki/nssdb");
    if chromium.join("cert9.db").exists() {
        out.push(chromium);
    }
    for firefox in [
        home.join(".mozilla/firefox"),
        home.join("snap/firefox/common/.mozilla/firefox"),
    ] {
        let Ok(entries) = std::fs::read_dir(&firefox) else {
            continue;
        };
        let mut profiles: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("cert9.db").exists())
            .collect();
        profiles.sort();
        out.extend(profiles);
    }
    out
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Lists the database's certificates, then compares each one's DER.
fn nss_has(certutil: &Path, db: &str, ca: &CertificateDer<'_>) -> bool {
    let Ok(list) = std::process::Command::new(certutil)
        .args(["-L", "-d", db])
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&list.stdout);
    // After a header, each line is "<nickname>   <trust flags>".
    for line in text.lines().skip(4) {
        let line = line.trim_end();
        let Some(nick) = line.rsplit_once(char::is_whitespace).map(|(n, _)| n.trim()) else {
            continue;
        };
        if nick.is_empty() {
            continue;
        }
        let Ok(pem) = std::process::Command::new(certutil)
            .args(["-L", "-d", db, "-a", "-n", nick])
            .output()
        else {
            continue;
        };
        if CertificateDer::pem_slice_iter(&pem.stdout)
            .filter_map(Result::ok)
            .any(|c| c == *ca)
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.chalanpro.net", "acme.chalanpro.net"));
        assert!(!covers("*.chalanpro.net", "x.acme.chalanpro.net"));
        assert!(!covers("*.chalanpro.net", "chalanpro.net"));
        assert!(covers("acme.localhost", "acme.localhost"));
        assert!(!covers("acme.localhost", "globex.localhost"));
    }

    #[test]
    fn a_generated_certificate_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let files = crate::cert::generate(dir.path(), &crate::cert::Request::default()).unwrap();
        let leaf = parse(&certs_in(&files.cert)[0]).unwrap();
        assert!((820..=825).contains(&leaf.days_left), "{}", leaf.days_left);
        assert!(!leaf.not_yet_valid);
        assert_eq!(leaf.names, ["localhost", "127.0.0.1", "::1"]);
    }
}
