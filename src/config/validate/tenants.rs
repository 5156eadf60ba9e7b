//! `[tenants]` and `[tls]`: names, patterns and the files TLS needs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;

use super::Checker;
use super::routes::routes;
use crate::config::{CertPaths, HostPattern, TenantConfig, TenantOverride, TlsConfig, Upstream};
use crate::config::{defaults, file};
use crate::host::HostName;

fn host_name(c: &mut Checker, key: &str, v: &Spanned<String>) -> Option<HostName> {
    HostName::parse(v.get_ref())
        .map_err(|m| c.err(key, Some(v.span()), format!("{:?}: {m}", v.get_ref())))
        .ok()
}

pub(super) fn tenants(
    c: &mut Checker,
    t: file::RawTenants,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
) -> TenantConfig {
    let base_domain = t
        .base_domain
        .as_ref()
        .and_then(|b| host_name(c, "tenants.base_domain", b));
    let local_suffixes = match &t.local_suffixes {
        None => vec![HostName::parse("localhost").expect("literal host is valid")],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| host_name(c, &format!("tenants.local_suffixes[{i}]"), s))
            .collect(),
    };
    let allowed_hosts = t
        .allowed_hosts
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let key = format!("tenants.allowed_hosts[{i}]");
            match s.get_ref().strip_prefix("*.") {
                Some(rest) => {
                    let suffix = Spanned::new(s.span(), rest.to_string());
                    host_name(c, &key, &suffix).map(HostPattern::Wildcard)
                }
                None => host_name(c, &key, s).map(HostPattern::Exact),
            }
        })
        .collect();
    let header = t.header.as_ref().and_then(|h| {
        http::HeaderName::from_bytes(h.get_ref().as_bytes())
            .map_err(|_| {
                c.err(
                    "tenants.header",
                    Some(h.span()),
                    format!("{:?} is not a valid header name", h.get_ref()),
                )
            })
            .ok()
    });
    let mut overrides = BTreeMap::new();
    for (name, o) in &t.overrides {
        let key = format!("tenants.overrides.{name}");
        let o = o.get_ref();
        let upstream = o.upstream.as_ref().and_then(|u| {
            if upstreams.contains_key(u.get_ref()) {
                Some(u.get_ref().clone())
            } else {
                let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                c.err(
                    &format!("{key}.upstream"),
                    Some(u.span()),
                    format!(
                        "no upstream named {:?} (known: {})",
                        u.get_ref(),
                        known.join(", ")
                    ),
                );
                None
            }
        });
        let routes = routes(
            c,
            &format!("{key}.routes"),
            o.routes.iter().enumerate(),
            upstreams,
        );
        overrides.insert(name.clone(), TenantOverride { upstream, routes });
    }
    TenantConfig {
        base_domain,
        local_suffixes,
        allowed_hosts,
        header,
        overrides,
    }
}

pub(super) fn tls(c: &mut Checker, t: Spanned<file::RawTls>) -> TlsConfig {
    let span = t.span();
    let t = t.into_inner();
    let listen = match t.listen {
        Some(l) => c.addrs("tls.listen", l),
        None => {
            c.err("tls", Some(span), "missing `listen`".into());
            Vec::new()
        }
    };
    let mut certs = Vec::new();
    for (i, cert) in t.certs.iter().enumerate() {
        let key = format!("tls.certs[{i}]");
        let cs = cert.span();
        let cert = cert.get_ref();
        match (&cert.cert, &cert.key) {
            (Some(cp), Some(kp)) => certs.push(CertPaths {
                cert: PathBuf::from(cp.get_ref()),
                key: PathBuf::from(kp.get_ref()),
            }),
            _ => c.err(&key, Some(cs), "needs both `cert` and `key`".into()),
        }
    }
    // No certificates: each allowed host gets one minted by the
    // development CA in `ca_dir` (checked when the listener starts).
    let ca_dir = t.ca_dir.as_ref().map_or_else(
        || PathBuf::from(defaults::CA_DIR),
        |d| PathBuf::from(d.get_ref()),
    );
    TlsConfig {
        listen,
        certs,
        ca_dir,
        redirect_http: t.redirect_http.unwrap_or(false),
        hsts_max_age: c.opt_duration("tls.hsts_max_age", &t.hsts_max_age),
    }
}
