//! Tenant resolution: which tenant a host names, which host the backend
//! should see, and whether the host is allowed at all.
//!
//! The rule, with `base_domain = "chalanpro.net"` and the default local
//! suffix `localhost`:
//!
//! | request host                  | tenant   | backend sees            |
//! |-------------------------------|----------|-------------------------|
//! | `chalanpro.net`, `localhost`  | (public) | `chalanpro.net`         |
//! | `acme.chalanpro.net`          | `acme`   | `acme.chalanpro.net`    |
//! | `acme.localhost`              | `acme`   | `acme.chalanpro.net`    |
//! | `x.acme.localhost` (nested)   | `x.acme` | `x.acme.chalanpro.net`  |
//! | an IP literal                 | (public) | the IP                  |
//! | a host in `allowed_hosts`     | (public) | the host                |
//! | anything else                 | refused with 421, nothing forwarded |
//!
//! Nested subdomains keep every label: the tenant is everything left of the
//! base domain (or alias suffix), which is what django-tenants looks up in
//! its domain table.
//!
//! IP literals are always allowed: a browser that sends one connected to
//! that address on purpose, so it cannot be a DNS-rebinding attack. Names are
//! the danger, and only known names pass.

use super::host::HostName;
use crate::config::TenantConfig;
use crate::error::Error;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The tenant's name; `None` for the public tenant or no tenant handling.
    pub tenant: Option<String>,
    /// The host name the backend should see (before the route's host mode).
    pub forward_host: HostName,
}

pub fn resolve(host: &HostName, cfg: &TenantConfig) -> Result<Resolved, Error> {
    let public = |forward_host: HostName| Resolved {
        tenant: None,
        forward_host,
    };
    if host.ip().is_some() {
        return Ok(public(host.clone()));
    }
    if let Some(base) = &cfg.base_domain {
        if host == base {
            return Ok(public(base.clone()));
        }
        if let Some(t) = host.label_below(base) {
            return Ok(Resolved {
                tenant: Some(t.to_string()),
                forward_host: host.clone(),
            });
        }
        for suffix in &cfg.local_suffixes {
            if host == suffix {
                return Ok(public(base.clone()));
            }
            if let Some(t) = host.label_below(suffix) {
                let forward = HostName::parse(&format!("{t}.{base}")).map_err(|reason| {
                    Error::InvalidHost {
                        host: host.to_string(),
                        reason,
                    }
                })?;
                return Ok(Resolved {
                    tenant: Some(t.to_string()),
                    forward_host: forward,
                });
            }
        }
    } else if host.is_loopback() {
        return Ok(public(host.clone()));
    }
    if host.is_loopback() || cfg.allowed_hosts.iter().any(|p| p.matches(host)) {
        return Ok(public(host.clone()));
    }
    Err(Error::UnknownHost {
        host: host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Source};

    fn cfg(extra: &str) -> TenantConfig {
        let text = format!("[upstreams.backend]\nurl = \"http://127.0.0.1:8000\"\n{extra}");
        Config::from_str(&text, Source::Embedded).unwrap().tenants
    }

    fn run(c: &TenantConfig, host: &str) -> Result<(Option<String>, String), u16> {
        resolve(&HostName::parse(host).unwrap(), c)
            .map(|r| (r.tenant, r.forward_host.to_string()))
            .map_err(|e| e.status().as_u16())
    }

    #[test]
    fn with_a_base_domain() {
        let c = cfg(
            "[tenants]\nbase_domain = \"chalanpro.net\"\nallowed_hosts = [\"lan.box\", \"*.corp.test\"]",
        );
        let t = |s: &str| Some(s.to_string());
        assert_eq!(run(&c, "chalanpro.net"), Ok((None, "chalanpro.net".into())));
        assert_eq!(run(&c, "localhost"), Ok((None, "chalanpro.net".into())));
        assert_eq!(
            run(&c, "acme.chalanpro.net"),
            Ok((t("acme"), "acme.chalanpro.net".into()))
        );
        assert_eq!(
            run(&c, "acme.localhost"),
            Ok((t("acme"), "acme.chalanpro.net".into()))
        );
        assert_eq!(
            run(&c, "x.acme.localhost"),
            Ok((t("x.acme"), "x.acme.chalanpro.net".into()))
        );
        assert_eq!(run(&c, "127.0.0.1"), Ok((None, "127.0.0.1".into())));
        assert_eq!(run(&c, "[::1]"), Ok((None, "[::1]".into())));
        assert_eq!(run(&c, "192.168.1.5"), Ok((None, "192.168.1.5".into())));
        assert_eq!(run(&c, "lan.box"), Ok((None, "lan.box".into())));
        assert_eq!(run(&c, "a.corp.test"), Ok((None, "a.corp.test".into())));
        assert_eq!(run(&c, "corp.test"), Err(421));
        assert_eq!(run(&c, "evil.example.com"), Err(421));
        assert_eq!(run(&c, "evilchalanpro.net"), Err(421));
        assert_eq!(run(&c, "chalanpro.net.evil.com"), Err(421));
    }

    #[test]
    fn without_a_base_domain_only_loopback_and_listed_hosts() {
        let c = cfg("");
        assert_eq!(run(&c, "localhost"), Ok((None, "localhost".into())));
        assert_eq!(
            run(&c, "acme.localhost"),
            Ok((None, "acme.localhost".into()))
        );
        assert_eq!(run(&c, "127.0.0.1"), Ok((None, "127.0.0.1".into())));
        assert_eq!(run(&c, "example.com"), Err(421));
    }

    #[test]
    fn custom_local_suffixes() {
        let c = cfg(
            "[tenants]\nbase_domain = \"chalanpro.net\"\nlocal_suffixes = [\"localhost\", \"dev.test\"]",
        );
        assert_eq!(
            run(&c, "acme.dev.test"),
            Ok((Some("acme".into()), "acme.chalanpro.net".into()))
        );
    }
}
