//! Stage two of config loading: raw structs → typed [`Config`], collecting
//! every problem with its key path and source span.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

mod routes;
mod tenants;

use super::file::{self, Scalar};
use super::*;

/// The highest `upstreams.*.max_connections`: a count of sockets, far
/// beyond any file-descriptor limit.
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;
/// The inspector keeps whole header maps: beyond this it is a memory
/// hazard, not a debugging aid.
const MAX_INSPECTOR_SIZE: usize = 10_000;
/// The most of each body the inspector may keep (`admin.inspector_bodies`).
const MAX_INSPECTOR_BODIES: u64 = 64 * 1024;

/// Collects problems while validating; each check reports and moves on.
struct Checker {
    errors: Vec<ConfigError>,
    /// Every upstream name the file declares, valid or not, so a route that
    /// names a broken upstream is not reported a second time as unknown.
    declared_upstreams: Vec<String>,
    /// The file's profile, once read: some defaults depend on it.
    profile: Profile,
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

    /// A duration that must be more than zero (a timer that never fires
    /// would be written as a very long one).
    fn positive_duration(
        &mut self,
        key: &str,
        v: &Option<Spanned<Scalar>>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(key, v, default);
        if d.is_zero() {
            let span = v.as_ref().map(|s| s.span());
            self.err(key, span, "must be more than 0".into());
            return default;
        }
        d
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

    /// A size limit where 0 means "no limit"; `default` when unset.
    fn limit(
        &mut self,
        key: &str,
        v: &Option<Spanned<Scalar>>,
        default: Option<u64>,
    ) -> Option<u64> {
        let Some(s) = v.as_ref() else {
            return default;
        };
        match parse_size(s.get_ref()) {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(m) => {
                self.err(key, Some(s.span()), m);
                default
            }
        }
    }

    /// A list of networks (addresses or CIDRs).
    fn nets(&mut self, key: &str, list: &[Spanned<String>]) -> Vec<ipnet::IpNet> {
        list.iter()
            .enumerate()
            .filter_map(|(i, p)| {
                parse_net(p.get_ref())
                    .map_err(|m| self.err(&format!("{key}[{i}]"), Some(p.span()), m))
                    .ok()
            })
            .collect()
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
pub(super) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
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
        profile: Profile::Dev,
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

    c.profile = profile;

    let s = raw.server;
    let server = ServerConfig {
        listen: match s.listen {
            Some(l) => c.addrs("server.listen", l),
            None => vec![defaults::listen()],
        },
        header_read_timeout: c.duration(
            "server.header_read_timeout",
            &s.header_read_timeout,
            defaults::HEADER_READ_TIMEOUT,
        ),
        tls_handshake_timeout: c.positive_duration(
            "server.tls_handshake_timeout",
            &s.tls_handshake_timeout,
            defaults::TLS_HANDSHAKE_TIMEOUT,
        ),
        http2_idle_timeout: c.positive_duration(
            "server.http2_idle_timeout",
            &s.http2_idle_timeout,
            defaults::HTTP2_IDLE_TIMEOUT,
        ),
        send_timeout: c.positive_duration(
            "server.send_timeout",
            &s.send_timeout,
            defaults::SEND_TIMEOUT,
        ),
        max_connections: s.max_connections.as_ref().and_then(|m| {
            match usize::try_from(*m.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    c.err(
                        "server.max_connections",
                        Some(m.span()),
                        "must be a positive number (leave it out to derive it from the open-file limit)"
                            .into(),
                    );
                    None
                }
            }
        }),
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
        http1: match s.http1.as_ref() {
            None => Http1Mode::Fast,
            Some(m) => Http1Mode::parse(m.get_ref()).unwrap_or_else(|e| {
                c.err("server.http1", Some(m.span()), e);
                Http1Mode::Fast
            }),
        },
        shutdown_delay: c.duration(
            "server.shutdown_delay",
            &s.shutdown_delay,
            defaults::shutdown_delay(profile),
        ),
        shutdown_timeout: c.duration(
            "server.shutdown_timeout",
            &s.shutdown_timeout,
            defaults::SHUTDOWN_TIMEOUT,
        ),
        underscores_in_headers: s.underscores_in_headers.unwrap_or(false),
        insecure_cookies: match &s.insecure_cookies {
            None => defaults::insecure_cookies(profile),
            Some(v) if *v.get_ref() && profile == Profile::Staging => {
                c.err(
                    "server.insecure_cookies",
                    Some(v.span()),
                    "is for development only: a staging profile never takes `Secure` off cookies"
                        .into(),
                );
                false
            }
            Some(v) => *v.get_ref(),
        },
        trusted_proxies: c.nets(
            "server.trusted_proxies",
            s.trusted_proxies.as_deref().unwrap_or_default(),
        ),
    };

    let default_wait = defaults::wait_for(profile);
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
                defaults::CONNECT_TIMEOUT,
            ),
            response_timeout: c.duration(
                &format!("{key}.response_timeout"),
                &u.response_timeout,
                defaults::RESPONSE_TIMEOUT,
            ),
            wait_for: c.duration(&format!("{key}.wait_for"), &u.wait_for, default_wait),
            max_connections: match &u.max_connections {
                None => defaults::MAX_CONNECTIONS,
                Some(n) => match usize::try_from(*n.get_ref()) {
                    Ok(n) if (1..=MAX_CONNECTIONS_LIMIT).contains(&n) => n,
                    _ => {
                        c.err(
                            &format!("{key}.max_connections"),
                            Some(n.span()),
                            format!(
                                "{} is not a connection count from 1 to {MAX_CONNECTIONS_LIMIT}",
                                n.get_ref()
                            ),
                        );
                        defaults::MAX_CONNECTIONS
                    }
                },
            },
            request_body_timeout: c.positive_duration(
                &format!("{key}.request_body_timeout"),
                &u.request_body_timeout,
                defaults::REQUEST_BODY_TIMEOUT,
            ),
            body_idle_timeout: c.positive_duration(
                &format!("{key}.body_idle_timeout"),
                &u.body_idle_timeout,
                defaults::BODY_IDLE_TIMEOUT,
            ),
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
                .map_or(defaults::SPA_ROOT, |r| r.get_ref().as_str()),
        )),
        history_fallback: spa_raw.history_fallback.unwrap_or(true),
        live_reload: spa_raw.live_reload.unwrap_or(profile == Profile::Dev),
        memory_cache: match &spa_raw.memory_cache {
            None => defaults::MEMORY_CACHE,
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
                spa.source = SpaSource::DevServer(defaults::DEV_SERVER_UPSTREAM.into());
                let up = defaults::upstream(defaults::DEV_SERVER_UPSTREAM, url, profile);
                upstreams.insert(defaults::DEV_SERVER_UPSTREAM.into(), Arc::new(up));
            }
            Err(m) => c.err("spa.dev_server", Some(dev.span()), m),
        }
    }

    let dev_server = matches!(spa.source, SpaSource::DevServer(_));
    let mut routes = match raw.routes {
        Some(rs) => routes::routes(
            &mut c,
            "routes",
            rs.iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i, r.as_ref()?))),
            &upstreams,
        ),
        None => defaults::routes(profile, dev_server),
    };
    // Routes written out exactly as the defaults (the embedded default
    // file, or a copy of it) count as the defaults: a dev server gets its
    // hot-reload routes there too.
    if dev_server && routes == defaults::routes(profile, false) {
        routes = defaults::routes(profile, true);
    }
    if routes.is_empty() && c.errors.is_empty() {
        // The whole file is at fault: point at its start.
        c.err(
            "routes",
            Some(0..0),
            "no routes: nothing would be served".into(),
        );
    }

    let tenants = tenants::tenants(&mut c, raw.tenants, &upstreams);
    let tls = raw.tls.map(|t| tenants::tls(&mut c, t));
    let admin = AdminConfig {
        allow: match &raw.admin.allow {
            None => defaults::admin_allow(),
            Some(list) => c.nets("admin.allow", list),
        },
        probes: match &raw.admin.probes {
            None => defaults::admin_probes(),
            Some(list) => c.nets("admin.probes", list),
        },
        inspector_size: match &raw.admin.inspector_size {
            None => defaults::inspector_size(profile),
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(n) if n <= MAX_INSPECTOR_SIZE => n,
                _ => {
                    c.err(
                        "admin.inspector_size",
                        Some(n.span()),
                        format!(
                            "{} is not a request count from 0 (off) to {MAX_INSPECTOR_SIZE}",
                            n.get_ref()
                        ),
                    );
                    defaults::inspector_size(profile)
                }
            },
        },
        inspector_unmask: raw.admin.inspector_unmask.unwrap_or(false),
        inspector_bodies: match &raw.admin.inspector_bodies {
            None => 0,
            Some(v) => match parse_size(v.get_ref()) {
                Ok(n) if n <= MAX_INSPECTOR_BODIES => n as usize,
                Ok(n) => {
                    c.err(
                        "admin.inspector_bodies",
                        Some(v.span()),
                        format!(
                            "{n} bytes is more than the inspector keeps of a body \
                             ({MAX_INSPECTOR_BODIES} bytes, 64KiB); 0 turns body capture off"
                        ),
                    );
                    0
                }
                Err(m) => {
                    c.err("admin.inspector_bodies", Some(v.span()), m);
                    0
                }
            },
        },
    };

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
            admin,
        });
    }
    // File order reads best; problems without a position (none today) last.
    c.errors
        .sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
    Err(c.errors)
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(n) = s.parse::<ipnet::IpNet>() {
        return Ok(n);
    }
    s.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{s:?} is not an IP address or CIDR like \"10.0.0.0/8\""))
}

#[cfg(test)]
mod upstream_limit_tests {
    use super::*;

    fn upstream(keys: &str) -> Result<Config, Vec<ConfigError>> {
        load(
            &format!("[upstreams.backend]\nurl = \"http://127.0.0.1:8000\"\n{keys}\n"),
            Source::Embedded,
        )
    }

    #[test]
    fn upstream_limits_have_defaults_and_are_checked() {
        let c = upstream("").unwrap();
        let up = &c.upstreams["backend"];
        assert_eq!(up.max_connections, 512);
        assert_eq!(up.request_body_timeout, Duration::from_secs(30));
        assert_eq!(up.body_idle_timeout, Duration::from_secs(60));
        let c = upstream(
            "max_connections = 8\nrequest_body_timeout = \"2s\"\nbody_idle_timeout = \"1m\"",
        )
        .unwrap();
        let up = &c.upstreams["backend"];
        assert_eq!(
            (
                up.max_connections,
                up.request_body_timeout,
                up.body_idle_timeout
            ),
            (8, Duration::from_secs(2), Duration::from_secs(60))
        );
        let errors = upstream(
            "max_connections = 0\nrequest_body_timeout = \"0s\"\nbody_idle_timeout = \"soon\"",
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "upstreams.backend.max_connections",
                "upstreams.backend.request_body_timeout",
                "upstreams.backend.body_idle_timeout"
            ]
        );
        assert!(errors[0].message.contains("from 1 to"), "{errors:?}");
        assert!(errors[1].message.contains("more than 0"), "{errors:?}");
    }
}
