//! Command-line flags applied over the validated file, with the same
//! validators; errors name the flag.

use std::path::PathBuf;
use std::sync::Arc;

use super::validate::parse_addr;
use super::{
    CertPaths, Config, ConfigError, SpaSource, TlsConfig, Upstream, UpstreamUrl, defaults,
};
use crate::host::HostName;

/// Command-line flags that override the file. Applied after the file is
/// validated, with the same validators; errors name the flag.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub backend: Option<String>,
    /// A folder, or an `http(s)://` dev-server URL.
    pub spa: Option<String>,
    pub base_domain: Option<String>,
    pub tls_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `fast` or `hyper`.
    pub http1: Option<String>,
}

impl Overrides {
    pub fn apply(&self, cfg: &mut Config) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut flag_err = |flag: &str, m: String| errors.push(ConfigError::new(flag, None, m));
        if let Some(l) = &self.listen {
            match parse_addr(l) {
                Ok(a) => cfg.server.listen = vec![a],
                Err(m) => flag_err("--listen", m),
            }
        }
        if let Some(m) = &self.http1 {
            match super::Http1Mode::parse(m) {
                Ok(m) => cfg.server.http1 = m,
                Err(m) => flag_err("--http1", m),
            }
        }
        if let Some(b) = &self.backend {
            match UpstreamUrl::parse(b) {
                Ok(url) => {
                    let up = match cfg.upstreams.get("backend") {
                        Some(u) => Upstream {
                            url,
                            ..(**u).clone()
                        },
                        None => defaults::upstream("backend", url, cfg.profile),
                    };
                    cfg.upstreams.insert("backend".into(), Arc::new(up));
                }
                Err(m) => flag_err("--backend", m),
            }
        }
        if let Some(s) = &self.spa {
            if s.starts_with("http://") || s.starts_with("https://") {
                match UpstreamUrl::parse(s) {
                    Ok(url) => {
                        let up =
                            defaults::upstream(defaults::DEV_SERVER_UPSTREAM, url, cfg.profile);
                        cfg.upstreams
                            .insert(defaults::DEV_SERVER_UPSTREAM.into(), Arc::new(up));
                        cfg.spa.source = SpaSource::DevServer(defaults::DEV_SERVER_UPSTREAM.into());
                    }
                    Err(m) => flag_err("--spa", m),
                }
            } else {
                cfg.spa.source = SpaSource::Dir(PathBuf::from(s));
            }
        }
        // Default routes follow the SPA's source: a dev server gets its
        // hot-reload sockets (`=/ws`, `/sockjs-node`), a folder does not.
        // Routes the file wrote itself are left alone.
        if self.spa.is_some() {
            let dev_server = matches!(cfg.spa.source, SpaSource::DevServer(_));
            if cfg.routes == defaults::routes(cfg.profile, !dev_server) {
                cfg.routes = defaults::routes(cfg.profile, dev_server);
            }
        }
        if let Some(d) = &self.base_domain {
            match HostName::parse(d) {
                Ok(h) => cfg.tenants.base_domain = Some(h),
                Err(m) => flag_err("--base-domain", format!("{d:?}: {m}")),
            }
        }
        let tls_flags = (&self.tls_listen, &self.tls_cert, &self.tls_key);
        match tls_flags {
            (None, None, None) => {}
            // Alone: the file's [tls] on another address, or, without one,
            // a certificate minted for each allowed host by the dev CA.
            (Some(l), None, None) => match parse_addr(l) {
                Ok(a) => match &mut cfg.tls {
                    Some(t) => t.listen = vec![a],
                    None => {
                        cfg.tls = Some(TlsConfig {
                            listen: vec![a],
                            certs: Vec::new(),
                            ca_dir: PathBuf::from(defaults::CA_DIR),
                            redirect_http: false,
                            hsts_max_age: None,
                        })
                    }
                },
                Err(m) => flag_err("--tls-listen", m),
            },
            (Some(l), Some(cert), Some(key)) => match parse_addr(l) {
                Ok(a) => {
                    let certs = vec![CertPaths {
                        cert: cert.clone(),
                        key: key.clone(),
                    }];
                    match &mut cfg.tls {
                        Some(t) => {
                            t.listen = vec![a];
                            t.certs = certs;
                        }
                        None => {
                            cfg.tls = Some(TlsConfig {
                                listen: vec![a],
                                certs,
                                ca_dir: PathBuf::from(defaults::CA_DIR),
                                redirect_http: false,
                                hsts_max_age: None,
                            })
                        }
                    }
                }
                Err(m) => flag_err("--tls-listen", m),
            },
            _ => flag_err(
                "--tls-cert",
                "--tls-cert and --tls-key go together, with --tls-listen".into(),
            ),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
