//! Stage two of config loading: raw structs → typed [`Config`], collecting
//! every problem with its key path and source span.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::file::{self, RawRoute, Scalar};
use super::*;

/// Collects problems while validating; each check reports and moves on.
struct Checker {
    errors: Vec<ConfigError>,
    /// Every upstream name the file declares, valid or not, so a route that
    /// names a broken upstream is not reported a second time as unknown.
    declared_upstreams: Vec<String>,
}

impl Checker {
    fn err(&mut self, key: &str, span: Option<Range<usize>>, message: String) {
        self.errors.push(ConfigError::new(key, span, message));
    }

    fn duration(&mut self, key: &str, v: &Option<Spanned<Scalar>>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => parse_duration(s.get_ref()).unwrap_or_else(|m| {
                self.err(key, Some(s.span()), m);
                default
            }),
        }
    }

    fn opt_duration(&mut self, key: &str, v: &Option<Spanned<Scalar>>) -> Option<Duration> {
        let s = v.as_ref()?;
        match parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(m) => {
                self.err(key, Some(s.span()), m);
                None
            }
        }
    }

    /// A size where 0 means "no limit".
    fn limit(&mut self, key: &str, v: &Option<Spanned<Scalar>>) -> Option<u64> {
        let s = v.as_ref()?;
        match parse_size(s.get_ref()) {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(m) => {
                self.err(key, Some(s.span()), m);
                None
            }
        }
    }

    fn addrs(&mut self, key: &str, v: Spanned<file::OneOrMany>) -> Vec<SocketAddr> {
        let span = v.span();
        let mut out = Vec::new();
        for (i, a) in v.into_inner().into_vec().iter().enumerate() {
            match parse_addr(a) {
                Ok(addr) => out.push(addr),
                Err(m) => self.err(&format!("{key}[{i}]"), Some(span.clone()), m),
            }
        }
        out
    }
}

/// Parses a listen address such as `127.0.0.1:8080`, `[::1]:8080` or
/// `localhost:8080`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| format!("{s:?}: invalid port"));
    }
    s.parse().map_err(|_| {
        format!("{s:?} is not an address; write it like \"127.0.0.1:8080\" or \"[::1]:8080\"")
    })
}

pub(super) fn load(text: &str, source: Source) -> Result<Config, Vec<ConfigError>> {
    let (raw, errors) = file::parse(text);
    let mut c = Checker {
        errors,
        declared_upstreams: raw.upstreams.keys().cloned().collect(),
    };

    let profile = match raw
        .profile
        .as_ref()
        .map(|p| (p.get_ref().as_str(), p.span()))
    {
        None | Some(("dev", _)) => Profile::Dev,
        Some(("staging", _)) => Profile::Staging,
        Some((other, span)) => {
            c.err(
                "profile",
                Some(span),
                format!("unknown profile {other:?} (known: dev, staging)"),
            );
            Profile::Dev
        }
    };

    let s = raw.server;
    let server = ServerConfig {
        listen: match s.listen {
            Some(l) => c.addrs("server.listen", l),
            None => vec![SocketAddr::from(([127, 0, 0, 1], 8080))],
        },
        header_read_timeout: c.duration(
            "server.header_read_timeout",
            &s.header_read_timeout,
            Duration::from_secs(10),
        ),
        keep_alive: s.keep_alive.unwrap_or(true),
        http2_prior_knowledge: s.http2_prior_knowledge.unwrap_or(true),
        reuse_port: s.reuse_port.unwrap_or(false),
        runtime: match s.runtime.as_ref().map(|r| (r.get_ref().as_str(), r.span())) {
            None | Some(("per-core", _)) => RuntimeMode::PerCore,
            Some(("threads", _)) => RuntimeMode::Threads,
            Some((other, span)) => {
                c.err(
                    "server.runtime",
                    Some(span),
                    format!("unknown runtime {other:?} (known: per-core, threads)"),
                );
                RuntimeMode::PerCore
            }
        },
        shutdown_timeout: c.duration(
            "server.shutdown_timeout",
            &s.shutdown_timeout,
            Duration::from_secs(10),
        ),
        trusted_proxies: s
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match parse_net(p.get_ref()) {
                Ok(n) => Some(n),
                Err(m) => {
                    c.err(&format!("server.trusted_proxies[{i}]"), Some(p.span()), m);
                    None
                }
            })
            .collect(),
    };

    let default_wait = default_wait_for(profile);
    let mut upstreams = BTreeMap::new();
    for (name, u) in &raw.upstreams {
        let key = format!("upstreams.{name}");
        let u_span = u.span();
        let u = u.get_ref();
        let url = match &u.url {
            None => {
                c.err(&key, Some(u_span), "missing `url`".into());
                continue;
            }
            Some(url) => match UpstreamUrl::parse(url.get_ref()) {
                Ok(v) => v,
                Err(m) => {
                    c.err(&format!("{key}.url"), Some(url.span()), m);
                    continue;
                }
            },
        };
        let upstream = Upstream {
            name: name.clone(),
            connect_timeout: c.duration(
                &format!("{key}.connect_timeout"),
                &u.connect_timeout,
                Duration::from_secs(5),
            ),
            response_timeout: c.duration(
                &format!("{key}.response_timeout"),
                &u.response_timeout,
                Duration::from_secs(60),
            ),
            wait_for: c.duration(&format!("{key}.wait_for"), &u.wait_for, default_wait),
            ca: u.ca.as_ref().map(|p| PathBuf::from(p.get_ref())),
            insecure_skip_verify: u.insecure_skip_verify.unwrap_or(false),
            url,
        };
        upstreams.insert(name.clone(), Arc::new(upstream));
    }

    let spa_raw = raw.spa;
    let mut spa = SpaConfig {
        source: SpaSource::Dir(PathBuf::from(
            spa_raw
                .root
                .as_ref()
                .map_or("./dist", |r| r.get_ref().as_str()),
        )),
        history_fallback: spa_raw.history_fallback.unwrap_or(true),
        live_reload: spa_raw.live_reload.unwrap_or(profile == Profile::Dev),
        memory_cache: match &spa_raw.memory_cache {
            None => 64 << 20,
            Some(v) => parse_size(v.get_ref()).unwrap_or_else(|m| {
                c.err("spa.memory_cache", Some(v.span()), m);
                0
            }),
        },
    };
    if let Some(dev) = &spa_raw.dev_server {
        if spa_raw.root.is_some() {
            c.err(
                "spa.dev_server",
                Some(dev.span()),
                "set either `root` or `dev_server`, not both".into(),
            );
        }
        match UpstreamUrl::parse(dev.get_ref()) {
            Ok(url) => {
                spa.source = SpaSource::DevServer(DEV_SERVER_UPSTREAM.into());
                let up = upstream_defaults(DEV_SERVER_UPSTREAM, url, profile);
                upstreams.insert(DEV_SERVER_UPSTREAM.into(), Arc::new(up));
            }
            Err(m) => c.err("spa.dev_server", Some(dev.span()), m),
        }
    }

    let routes = match raw.routes {
        Some(rs) => routes(
            &mut c,
            "routes",
            rs.iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i, r.as_ref()?))),
            &upstreams,
        ),
        None => default_routes(),
    };
    if routes.is_empty() && c.errors.is_empty() {
        c.err("routes", None, "no routes: nothing would be served".into());
    }

    let tenants = tenants(&mut c, raw.tenants, &upstreams);
    let tls = raw.tls.map(|t| tls(&mut c, t));

    if c.errors.is_empty() {
        return Ok(Config {
            source,
            profile,
            server,
            upstreams,
            routes,
            spa,
            tenants,
            tls,
        });
    }
    // File order reads best; problems without a position (none today) last.
    c.errors
        .sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
    Err(c.errors)
}

/// The upstream name a `spa.dev_server` URL is registered under.
pub const DEV_SERVER_UPSTREAM: &str = "spa-dev-server";

/// How long requests wait for a restarting upstream: long enough for a
/// Django autoreload in dev, never in staging where a fast 502 is better.
fn default_wait_for(profile: Profile) -> Duration {
    match profile {
        Profile::Dev => Duration::from_secs(10),
        Profile::Staging => Duration::ZERO,
    }
}

/// An upstream with every option at its default.
fn upstream_defaults(name: &str, url: UpstreamUrl, profile: Profile) -> Upstream {
    Upstream {
        name: name.into(),
        url,
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(60),
        wait_for: default_wait_for(profile),
        ca: None,
        insecure_skip_verify: false,
    }
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n);
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{s:?} is not an IP address or CIDR like \"10.0.0.0/8\""))
}

fn default_routes() -> Vec<Route> {
    let mut routes: Vec<Route> = ["/api", "/admin", "/static", "/media", "/ws"]
        .iter()
        .map(|p| {
            route_defaults(
                RoutePrefix::parse(p).expect("literal prefix is valid"),
                RouteTarget::Upstream("backend".into()),
            )
        })
        .collect();
    routes.push(route_defaults(
        RoutePrefix::parse("/").expect("literal prefix is valid"),
        RouteTarget::Spa,
    ));
    routes
}

fn route_defaults(prefix: RoutePrefix, target: RouteTarget) -> Route {
    Route {
        prefix,
        exact: false,
        target,
        host: HostMode::StripPort,
        strip_prefix: false,
        rewrite: None,
        body_limit: None,
        response_timeout: None,
        websocket: true,
        idle_timeout: None,
    }
}

/// Validates routes given with their index in the file.
fn routes<'a>(
    c: &mut Checker,
    path: &str,
    raw: impl Iterator<Item = (usize, &'a Spanned<RawRoute>)>,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
) -> Vec<Route> {
    let mut out: Vec<Route> = Vec::new();
    let mut seen: BTreeMap<(String, bool), usize> = BTreeMap::new();
    for (i, r) in raw {
        let key = format!("{path}[{i}]");
        if let Some(route) = route(c, &key, r, upstreams) {
            let id = (route.prefix.to_string(), route.exact);
            if let Some(first) = seen.insert(id, i) {
                c.err(
                    &format!("{key}.prefix"),
                    r.get_ref().prefix.as_ref().map(|p| p.span()),
                    format!(
                        "prefix {:?} is already used by {path}[{first}]",
                        route.prefix.as_str()
                    ),
                );
            }
            out.push(route);
        }
    }
    out
}

fn route(
    c: &mut Checker,
    key: &str,
    r: &Spanned<RawRoute>,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
) -> Option<Route> {
    let span = r.span();
    let r = r.get_ref();
    let prefix = match &r.prefix {
        None => {
            c.err(key, Some(span.clone()), "missing `prefix`".into());
            None
        }
        Some(p) => RoutePrefix::parse(p.get_ref())
            .map_err(|m| c.err(&format!("{key}.prefix"), Some(p.span()), m))
            .ok(),
    };

    let mut targets = Vec::new();
    if let Some(u) = &r.upstream {
        if upstreams.contains_key(u.get_ref()) || c.declared_upstreams.contains(u.get_ref()) {
            targets.push(RouteTarget::Upstream(u.get_ref().clone()));
        } else {
            let known: Vec<&str> = c.declared_upstreams.iter().map(String::as_str).collect();
            c.err(
                &format!("{key}.upstream"),
                Some(u.span()),
                format!(
                    "no upstream named {:?} (known: {})",
                    u.get_ref(),
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
            targets.push(RouteTarget::Upstream(String::new()));
        }
    }
    if let Some(s) = &r.spa {
        if *s.get_ref() {
            targets.push(RouteTarget::Spa);
        } else {
            c.err(
                &format!("{key}.spa"),
                Some(s.span()),
                "`spa = false` means nothing; remove it or give another target".into(),
            );
        }
    }
    if let Some(d) = &r.static_dir {
        targets.push(RouteTarget::Static(PathBuf::from(d.get_ref())));
    }
    let target = match targets.len() {
        1 => targets.pop(),
        0 => {
            c.err(
                key,
                Some(span.clone()),
                "no target: give one of `upstream`, `spa = true`, `static_dir`".into(),
            );
            None
        }
        _ => {
            c.err(
                key,
                Some(span.clone()),
                "several targets: give only one of `upstream`, `spa = true`, `static_dir`".into(),
            );
            None
        }
    };

    let host = match &r.host {
        None => HostMode::StripPort,
        Some(h) => match h.get_ref().as_str() {
            "strip-port" => HostMode::StripPort,
            "preserve" => HostMode::Preserve,
            "upstream" => HostMode::Upstream,
            other => {
                c.err(
                    &format!("{key}.host"),
                    Some(h.span()),
                    format!("unknown host mode {other:?} (known: strip-port, preserve, upstream)"),
                );
                HostMode::StripPort
            }
        },
    };
    let rewrite = r.rewrite.as_ref().and_then(|p| {
        RoutePrefix::parse(p.get_ref())
            .map_err(|m| c.err(&format!("{key}.rewrite"), Some(p.span()), m))
            .ok()
    });
    if let (Some(rw), Some(true)) = (&r.rewrite, r.strip_prefix) {
        c.err(
            &format!("{key}.rewrite"),
            Some(rw.span()),
            "set either `rewrite` or `strip_prefix`, not both".into(),
        );
    }
    let proxy_only = [
        ("host", r.host.as_ref().map(|v| v.span())),
        ("rewrite", r.rewrite.as_ref().map(|v| v.span())),
        ("body_limit", r.body_limit.as_ref().map(|v| v.span())),
        (
            "response_timeout",
            r.response_timeout.as_ref().map(|v| v.span()),
        ),
        ("idle_timeout", r.idle_timeout.as_ref().map(|v| v.span())),
    ];
    if matches!(target, Some(RouteTarget::Spa | RouteTarget::Static(_))) {
        for (name, sp) in proxy_only {
            if let Some(sp) = sp {
                c.err(
                    &format!("{key}.{name}"),
                    Some(sp),
                    "only applies to `upstream` routes".into(),
                );
            }
        }
    }
    let body_limit = c.limit(&format!("{key}.body_limit"), &r.body_limit);
    let response_timeout = c.opt_duration(&format!("{key}.response_timeout"), &r.response_timeout);
    let idle_timeout = c
        .opt_duration(&format!("{key}.idle_timeout"), &r.idle_timeout)
        .filter(|d| !d.is_zero());

    Some(Route {
        prefix: prefix?,
        exact: r.exact.unwrap_or(false),
        target: target?,
        host,
        strip_prefix: r.strip_prefix.unwrap_or(false),
        rewrite,
        body_limit,
        response_timeout,
        websocket: r.websocket.unwrap_or(true),
        idle_timeout,
    })
}

fn host_name(c: &mut Checker, key: &str, v: &Spanned<String>) -> Option<HostName> {
    HostName::parse(v.get_ref())
        .map_err(|m| c.err(key, Some(v.span()), format!("{:?}: {m}", v.get_ref())))
        .ok()
}

fn tenants(
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

fn tls(c: &mut Checker, t: Spanned<file::RawTls>) -> TlsConfig {
    let span = t.span();
    let t = t.into_inner();
    let listen = match t.listen {
        Some(l) => c.addrs("tls.listen", l),
        None => {
            c.err("tls", Some(span.clone()), "missing `listen`".into());
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
    if certs.is_empty() {
        c.err(
            "tls.certs",
            Some(span),
            "no certificates: add a [[tls.certs]] with `cert` and `key` (see `portero cert`)"
                .into(),
        );
    }
    TlsConfig {
        listen,
        certs,
        redirect_http: t.redirect_http.unwrap_or(false),
        hsts_max_age: c.opt_duration("tls.hsts_max_age", &t.hsts_max_age),
    }
}

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
        if let Some(b) = &self.backend {
            match UpstreamUrl::parse(b) {
                Ok(url) => {
                    let up = match cfg.upstreams.get("backend") {
                        Some(u) => Upstream {
                            url,
                            ..(**u).clone()
                        },
                        None => upstream_defaults("backend", url, cfg.profile),
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
                        let up = upstream_defaults(DEV_SERVER_UPSTREAM, url, cfg.profile);
                        cfg.upstreams
                            .insert(DEV_SERVER_UPSTREAM.into(), Arc::new(up));
                        cfg.spa.source = SpaSource::DevServer(DEV_SERVER_UPSTREAM.into());
                    }
                    Err(m) => flag_err("--spa", m),
                }
            } else {
                cfg.spa.source = SpaSource::Dir(PathBuf::from(s));
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
                                redirect_http: false,
                                hsts_max_age: None,
                            })
                        }
                    }
                }
                Err(m) => flag_err("--tls-listen", m),
            },
            _ => flag_err(
                "--tls-listen",
                "--tls-listen, --tls-cert and --tls-key go together".into(),
            ),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}
