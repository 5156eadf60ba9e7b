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
//! The rules, in the order they are checked:
//!
//! 1. The host was normalised first (`routing::host`): lowercase, no
//!    trailing dot, no port; a malformed host never gets here (400).
//! 2. An IP literal is the public tenant, forwarded as is.
//! 3. The base domain itself is the public tenant; a name below it is a
//!    tenant. Nested subdomains keep every label: the tenant is everything
//!    left of the base domain (`x.acme`), which is what django-tenants looks
//!    up in its domain table. A name below the base domain is a tenant even
//!    if `allowed_hosts` also lists it.
//! 4. A local suffix (`localhost`) is the public tenant; a name below it is
//!    an alias for the same name below the base domain, and is forwarded as
//!    that name, nested labels included. Of several suffixes, the longest
//!    that matches counts (`chalanpro.localhost` before `localhost`).
//! 5. Without a base domain there are no tenants: loopback names
//!    (`localhost`, `*.localhost`) are the public tenant, forwarded as sent,
//!    and `[tenants.overrides]` never apply.
//! 6. Loopback names and `allowed_hosts` are the public tenant.
//! 7. Anything else is refused with 421 before anything is forwarded.
//!
//! IP literals are always allowed: a browser that sends one connected to
//! that address on purpose, so it cannot be a DNS-rebinding attack. Names are
//! the danger, and only known names pass.

use std::net::{IpAddr, SocketAddr};

use crate::config::TenantConfig;
use crate::error::Error;
use crate::host::HostName;

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
        // The most specific suffix wins: with `localhost` and
        // `chalanpro.localhost`, `acme.chalanpro.localhost` is tenant
        // `acme`, not `acme.chalanpro`.
        let suffix = cfg
            .local_suffixes
            .iter()
            .filter(|s| host == *s || host.label_below(s).is_some())
            .max_by_key(|s| s.as_str().len());
        if let Some(suffix) = suffix {
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

/// The URLs worth printing at startup for one listener, as (what, URL):
/// the public URL, then with a base domain the pattern any tenant follows
/// and one URL per tenant named in `[tenants.overrides]`. A listener on a
/// loopback or unspecified address is reached through the first local
/// suffix (`localhost`), which browsers resolve without DNS; any other
/// address through its IP and the base domain.
pub fn urls(cfg: &TenantConfig, scheme: &str, addr: SocketAddr) -> Vec<(String, String)> {
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = match addr.port() {
        p if p == default_port => String::new(),
        p => format!(":{p}"),
    };
    let local = addr.ip().is_loopback() || addr.ip().is_unspecified();
    let public = if local {
        "localhost".to_string()
    } else {
        match addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        }
    };
    let mut out = vec![("public".to_string(), format!("{scheme}://{public}{port}"))];
    let Some(base) = &cfg.base_domain else {
        return out;
    };
    let suffix = match cfg.local_suffixes.first() {
        Some(s) if local => s,
        _ => base,
    };
    out.push((
        "any tenant".into(),
        format!("{scheme}://<tenant>.{suffix}{port}"),
    ));
    for name in cfg.overrides.keys() {
        out.push((
            format!("tenant {name}"),
            format!("{scheme}://{name}.{suffix}{port}"),
        ));
    }
    out
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

    /// Raw `Host` values through parsing and resolution, as dispatch does.
    #[test]
    fn raw_host_table() {
        let c = cfg("[tenants]\nbase_domain = \"chalanpro.net\"");
        // (raw Host, tenant and forwarded host, or the status)
        type Want = Result<(Option<&'static str>, &'static str), u16>;
        let cases: &[(&str, Want)] = &[
            (
                "ACME.localhost:8080",
                Ok((Some("acme"), "acme.chalanpro.net")),
            ),
            ("acme.localhost.", Ok((Some("acme"), "acme.chalanpro.net"))),
            (
                "Acme.ChalanPro.Net.:443",
                Ok((Some("acme"), "acme.chalanpro.net")),
            ),
            (
                "x.acme.localhost",
                Ok((Some("x.acme"), "x.acme.chalanpro.net")),
            ),
            ("localhost:8080", Ok((None, "chalanpro.net"))),
            ("[::1]:8080", Ok((None, "[::1]"))),
            ("127.0.0.1", Ok((None, "127.0.0.1"))),
            ("other.example", Err(421)),
            ("localhost.evil.example", Err(421)),
            ("acme.localhost:99999", Err(400)),
            ("acme..localhost", Err(400)),
            ("acme.localhost/x", Err(400)),
            ("user@acme.localhost", Err(400)),
            ("acme localhost", Err(400)),
            ("[::1", Err(400)),
        ];
        for (raw, want) in cases {
            let got = match crate::host::RequestHost::parse(raw) {
                Err(_) => Err(400),
                Ok(h) => resolve(&h.name, &c)
                    .map(|r| (r.tenant, r.forward_host.to_string()))
                    .map_err(|e| e.status().as_u16()),
            };
            let want = want.map(|(t, f)| (t.map(String::from), f.to_string()));
            assert_eq!(got, want, "{raw}");
        }
    }

    #[test]
    fn startup_urls() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let urls = |c: &TenantConfig, scheme, a| {
            urls(c, scheme, addr(a))
                .into_iter()
                .map(|(_, u)| u)
                .collect::<Vec<_>>()
        };
        let c = cfg("[upstreams.b2]\nurl = \"http://127.0.0.1:8001\"\n\
             [tenants]\nbase_domain = \"chalanpro.net\"\n\
             [tenants.overrides.acme]\nupstream = \"b2\"\n\
             [tenants.overrides.globex]\nupstream = \"b2\"");
        assert_eq!(
            urls(&c, "http", "127.0.0.1:8080"),
            [
                "http://localhost:8080",
                "http://<tenant>.localhost:8080",
                "http://acme.localhost:8080",
                "http://globex.localhost:8080"
            ]
        );
        assert_eq!(
            urls(&c, "https", "0.0.0.0:443"),
            [
                "https://localhost",
                "https://<tenant>.localhost",
                "https://acme.localhost",
                "https://globex.localhost"
            ]
        );
        assert_eq!(
            urls(&c, "http", "10.0.0.5:80")[..2],
            ["http://10.0.0.5", "http://<tenant>.chalanpro.net"]
        );
        assert_eq!(
            urls(&cfg(""), "http", "[::1]:8080"),
            ["http://localhost:8080"]
        );
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
        // A two-label suffix under another suffix: the longer one counts,
        // whatever the order.
        let c = cfg("[tenants]\nbase_domain = \"chalanpro.net\"\n\
             local_suffixes = [\"localhost\", \"chalanpro.localhost\"]");
        let t = |s: &str| Some(s.to_string());
        assert_eq!(
            run(&c, "acme.chalanpro.localhost"),
            Ok((t("acme"), "acme.chalanpro.net".into()))
        );
        assert_eq!(
            run(&c, "chalanpro.localhost"),
            Ok((None, "chalanpro.net".into()))
        );
        assert_eq!(
            run(&c, "acme.localhost"),
            Ok((t("acme"), "acme.chalanpro.net".into()))
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::testing::proptest_config())]

            #[test]
            fn an_alias_always_maps_inside_the_base_domain(
                label in "[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,2}"
            ) {
                let c = cfg("[tenants]\nbase_domain = \"chalanpro.net\"");
                let base = HostName::parse("chalanpro.net").unwrap();
                let host = HostName::parse(&format!("{label}.localhost")).unwrap();
                let r = resolve(&host, &c).unwrap();
                prop_assert_eq!(r.forward_host.label_below(&base), Some(label.as_str()));
                prop_assert_eq!(r.tenant.as_deref(), Some(label.as_str()));
            }

            #[test]
            fn an_ip_literal_is_never_a_tenant(ip in any::<std::net::IpAddr>()) {
                let c = cfg("[tenants]\nbase_domain = \"chalanpro.net\"");
                let text = match ip {
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                };
                let host = HostName::parse(&text).unwrap();
                let r = resolve(&host, &c).unwrap();
                prop_assert_eq!(r.tenant, None);
            }
        }
    }
}
