//! Certificates minted at the handshake: with no certificate files, every
//! host the tenant rules allow (`routing::tenant::resolve`) gets a leaf
//! certificate for exactly its SNI name, signed by the development CA that
//! `portero cert` created, made at its first handshake and kept in memory
//! until it nears expiry. A name the rules refuse gets none, and the
//! handshake fails. No SNI (a client that connected by IP) gets the
//! certificate for `localhost` and the loopback addresses.
//!
//! Minting is an ECDSA P-256 key and one signature (well under a
//! millisecond), done inline in rustls's synchronous resolver; the lock is
//! not held while minting, so two first handshakes for one name may both
//! mint, and the first stored is kept.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use time::{Duration, OffsetDateTime};

use crate::cert::DevCa;
use crate::config::TenantConfig;
use crate::error::StartupError;
use crate::host::HostName;

/// Most names kept at once; past it the oldest minted is dropped (and
/// minted again if it comes back).
const CAPACITY: usize = 1000;
/// A cached certificate is minted again when it has less than this left.
const RENEW_BEFORE: Duration = Duration::days(7);
/// The cache key, and the names, of the certificate for clients that sent
/// no SNI, and for `localhost` itself.
const LOOPBACK: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Mints and caches certificates for allowed hosts.
#[derive(Debug)]
pub(super) struct Minter {
    ca: DevCa,
    tenants: TenantConfig,
    provider: Arc<CryptoProvider>,
    cache: Arc<Mutex<Cache>>,
}

impl Minter {
    /// The development CA certificate, as PEM.
    pub(super) fn ca_pem(&self) -> &str {
        self.ca.pem()
    }

    /// Loads the development CA from `ca_dir`. `previous` is the minter a
    /// reload replaces: its certificates are kept when the CA is the same.
    pub(super) fn load(
        ca_dir: &Path,
        tenants: &TenantConfig,
        provider: Arc<CryptoProvider>,
        previous: Option<&Minter>,
    ) -> Result<Minter, StartupError> {
        let ca = DevCa::load(ca_dir).map_err(|e| StartupError::Tls(e.to_string()))?;
        let cache = match previous {
            Some(p) if p.ca.pem() == ca.pem() => p.cache.clone(),
            _ => Arc::new(Mutex::new(Cache::new(CAPACITY))),
        };
        Ok(Minter {
            ca,
            tenants: tenants.clone(),
            provider,
            cache,
        })
    }

    /// The certificate for a handshake with this SNI name; `None` when the
    /// host is not allowed (or minting failed, which is logged).
    pub(super) fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.pick_at(sni, OffsetDateTime::now_utc())
    }

    fn pick_at(&self, sni: Option<&str>, now: OffsetDateTime) -> Option<Arc<CertifiedKey>> {
        let name = match sni {
            None => LOOPBACK[0].to_string(),
            Some(sni) => self.allowed(sni)?,
        };
        if let Some(key) = self.lock().get(&name, now) {
            return Some(key);
        }
        let names: Vec<&str> = if name == LOOPBACK[0] {
            LOOPBACK.to_vec()
        } else {
            vec![name.as_str()]
        };
        let minted = match self.mint(&names) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot mint a certificate for {name}: {e}");
                return None;
            }
        };
        tracing::debug!("minted a certificate for {}", names.join(", "));
        Some(self.lock().insert(name, minted, now))
    }

    /// The normalised name when the tenant rules allow `sni`, as a request
    /// for it would be.
    fn allowed(&self, sni: &str) -> Option<String> {
        let host = HostName::parse(sni).ok()?;
        match crate::routing::tenant::resolve(&host, &self.tenants) {
            Ok(_) => Some(
                host.ip()
                    .map_or_else(|| host.to_string(), |ip| ip.to_string()),
            ),
            Err(_) => {
                tracing::debug!("TLS handshake for {sni} refused: not an allowed host");
                None
            }
        }
    }

    fn mint(&self, names: &[&str]) -> Result<Entry, String> {
        let minted = self.ca.mint(names).map_err(|e| e.to_string())?;
        let key = self
            .provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(minted.key))
            .map_err(|e| e.to_string())?;
        Ok(Entry {
            key: Arc::new(CertifiedKey::new(vec![minted.cert], key)),
            renew_at: minted.not_after - RENEW_BEFORE,
            seq: 0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache stays consistent through any panic: each change is one
        // map operation.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Minted certificates by name, at most `capacity` of them.
#[derive(Debug)]
struct Cache {
    entries: HashMap<String, Entry>,
    capacity: usize,
    /// Counts insertions: the smallest `seq` is the oldest entry.
    next_seq: u64,
}

#[derive(Debug)]
struct Entry {
    key: Arc<CertifiedKey>,
    /// From then on the certificate is minted again.
    renew_at: OffsetDateTime,
    seq: u64,
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        Cache {
            entries: HashMap::new(),
            capacity,
            next_seq: 0,
        }
    }

    /// The cached certificate for `name`, unless it is due for renewal.
    fn get(&self, name: &str, now: OffsetDateTime) -> Option<Arc<CertifiedKey>> {
        self.entries
            .get(name)
            .filter(|e| now < e.renew_at)
            .map(|e| e.key.clone())
    }

    /// Stores `entry` for `name` and returns the certificate to serve: the
    /// one another handshake stored meanwhile, if it is still good, so a
    /// name is served one certificate.
    fn insert(&mut self, name: String, mut entry: Entry, now: OffsetDateTime) -> Arc<CertifiedKey> {
        if let Some(key) = self.get(&name, now) {
            return key;
        }
        if !self.entries.contains_key(&name) && self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.seq)
                .map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        entry.seq = self.next_seq;
        self.next_seq += 1;
        let key = entry.key.clone();
        self.entries.insert(name, entry);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Source};

    fn minter(extra: &str) -> (tempfile::TempDir, Minter) {
        let dir = tempfile::tempdir().unwrap();
        crate::cert::generate(dir.path(), &crate::cert::Request::default()).unwrap();
        let text = format!("[upstreams.backend]\nurl = \"http://127.0.0.1:8000\"\n{extra}");
        let tenants = Config::from_str(&text, Source::Embedded).unwrap().tenants;
        let m = Minter::load(dir.path(), &tenants, super::super::provider(), None).unwrap();
        (dir, m)
    }

    fn der(k: &CertifiedKey) -> Vec<u8> {
        k.cert[0].to_vec()
    }

    #[test]
    fn one_certificate_per_name_until_renewal_is_due() {
        let (_dir, m) = minter("[tenants]\nbase_domain = \"example.test\"");
        let now = OffsetDateTime::now_utc();
        let first = m.pick_at(Some("acme.localhost"), now).unwrap();
        let again = m.pick_at(Some("ACME.localhost."), now).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same name, other spelling");
        let other = m.pick_at(Some("globex.localhost"), now).unwrap();
        assert_ne!(der(&first), der(&other));
        // 22 days on, 8 left: still the same; 24 days on, 6 left: renewed.
        let later = m.pick_at(Some("acme.localhost"), now + Duration::days(22));
        assert!(Arc::ptr_eq(&first, &later.unwrap()));
        let renewed = m
            .pick_at(Some("acme.localhost"), now + Duration::days(24))
            .unwrap();
        assert_ne!(der(&first), der(&renewed));
    }

    #[test]
    fn refused_names_get_nothing_and_no_sni_gets_localhost() {
        let (_dir, m) = minter("[tenants]\nbase_domain = \"example.test\"");
        assert!(m.pick(Some("evil.example.com")).is_none());
        assert!(m.pick(Some("not a name")).is_none());
        assert_eq!(m.lock().entries.len(), 0, "nothing minted for them");
        let none = m.pick(None).unwrap();
        let localhost = m.pick(Some("localhost")).unwrap();
        assert!(Arc::ptr_eq(&none, &localhost));
    }

    #[test]
    fn the_cache_is_bounded_and_drops_the_oldest() {
        let (_dir, m) = minter("");
        let entry = |m: &Minter| m.mint(&["localhost"]).unwrap();
        let now = OffsetDateTime::now_utc();
        let mut cache = Cache::new(3);
        for n in ["a", "b", "c", "d"] {
            cache.insert(n.to_string(), entry(&m), now);
        }
        let mut names: Vec<_> = cache.entries.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["b", "c", "d"]);
    }

    #[test]
    fn a_reload_with_the_same_ca_keeps_the_certificates() {
        let (dir, m) = minter("");
        let first = m.pick(Some("localhost")).unwrap();
        let tenants = m.tenants.clone();
        let again = Minter::load(dir.path(), &tenants, super::super::provider(), Some(&m)).unwrap();
        assert!(Arc::ptr_eq(&first, &again.pick(Some("localhost")).unwrap()));

        let other = tempfile::tempdir().unwrap();
        crate::cert::generate(other.path(), &crate::cert::Request::default()).unwrap();
        let new_ca =
            Minter::load(other.path(), &tenants, super::super::provider(), Some(&m)).unwrap();
        assert!(!Arc::ptr_eq(
            &first,
            &new_ca.pick(Some("localhost")).unwrap()
        ));
    }

    #[test]
    fn a_missing_ca_says_to_run_portero_cert() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = Config::embedded().tenants;
        let err = Minter::load(dir.path(), &tenants, super::super::provider(), None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("portero cert"), "{msg}");
        assert!(msg.contains("dev-ca.pem"), "{msg}");
    }
}
