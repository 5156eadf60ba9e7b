//! Configuration: TOML in two stages.
//!
//! 1. `file.rs` deserializes the text into raw serde structs that reject
//!    unknown keys and remember where each value was written.
//! 2. `validate.rs` turns the raw structs into the typed [`Config`] below,
//!    checking meaning (schemes, prefixes, references, addresses) and
//!    collecting every problem as a [`ConfigError`] with its key path and
//!    `line:column`, so one run of `portero check` lists them all.
//!
//! Command-line flags are applied to the typed config by [`Overrides`], with
//! the same validators, after the file.

mod defaults;
mod file;
mod overrides;
mod types;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use overrides::Overrides;
pub use types::{RoutePrefix, UpstreamUrl, parse_duration, parse_size};

use crate::host::HostName;

/// The default configuration, compiled in from `config/portero.toml` so the
/// file and the embedded default can never differ.
pub const DEFAULT_TOML: &str = include_str!("../../config/portero.toml");

/// Where a config came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Embedded,
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Embedded => f.write_str("<embedded default>"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Dev,
    Staging,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Source,
    pub profile: Profile,
    pub server: ServerConfig,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub routes: Vec<Route>,
    pub spa: SpaConfig,
    pub tenants: TenantConfig,
    pub tls: Option<TlsConfig>,
    pub admin: AdminConfig,
}

/// portero's own endpoints (`/__portero/status`, `/__portero/health`).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Client networks `/__portero/status` (and everything but the
    /// probes) answers; everyone else gets 403.
    pub allow: Vec<ipnet::IpNet>,
    /// Client networks the probes (`/__portero/health`, `/__portero/ready`)
    /// answer: an orchestrator's prober connects from the node's address.
    pub probes: Vec<ipnet::IpNet>,
    /// Requests the inspector on `/__portero/` keeps (the last ones); 0
    /// turns it off, and with it every per-request copy of headers.
    pub inspector_size: usize,
    /// Show credential headers (`Cookie`, `Authorization`, …) in the
    /// inspector as they are instead of masked.
    pub inspector_unmask: bool,
    /// Bytes of each request and response body the inspector keeps; 0
    /// (the default) keeps none.
    pub inspector_bodies: usize,
}

impl AdminConfig {
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        contains(&self.allow, ip)
    }

    pub fn allows_probe(&self, ip: std::net::IpAddr) -> bool {
        contains(&self.probes, ip)
    }
}

fn contains(nets: &[ipnet::IpNet], ip: std::net::IpAddr) -> bool {
    // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
    let ip = ip.to_canonical();
    nets.iter().any(|n| n.contains(&ip))
}

/// How a multi-core machine is used (on one core both are one
/// single-threaded runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeMode {
    /// A single-threaded runtime per core, each accepting on its own
    /// `SO_REUSEPORT` listener with its own upstream connections (nginx's
    /// worker model, in one process).
    PerCore,
    /// One work-stealing multi-threaded runtime.
    Threads,
}

/// How HTTP/1 connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http1Mode {
    /// portero's own HTTP/1 path for proxied requests of the common shape
    /// (heads on `httparse`, raw pooled upstream sockets), hyper for
    /// everything else on the connection from the first request that is
    /// not.
    Fast,
    /// hyper's HTTP/1 server for every connection.
    Hyper,
}

impl Http1Mode {
    /// From the config key or the `--http1` flag.
    pub fn parse(s: &str) -> Result<Http1Mode, String> {
        match s {
            "fast" => Ok(Http1Mode::Fast),
            "hyper" => Ok(Http1Mode::Hyper),
            other => Err(format!(
                "unknown HTTP/1 path {other:?} (known: fast, hyper)"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// A client must send its first bytes, then each request head (the wait
    /// between keep-alive requests included), within this time.
    pub header_read_timeout: Duration,
    /// A TLS client must finish its handshake within this time.
    pub tls_handshake_timeout: Duration,
    /// An HTTP/2 connection with no request in flight for this long is
    /// closed (GOAWAY).
    pub http2_idle_timeout: Duration,
    /// A client that accepts no byte of what portero writes for this long is
    /// disconnected.
    pub send_timeout: Duration,
    /// Most client connections open at once, over all workers; `None`:
    /// derived from the open-file limit at start.
    pub max_connections: Option<usize>,
    pub keep_alive: bool,
    pub http2_prior_knowledge: bool,
    /// Listen with `SO_REUSEPORT`, so several portero processes can share
    /// one port and the kernel spreads connections across them.
    pub reuse_port: bool,
    pub runtime: RuntimeMode,
    pub http1: Http1Mode,
    pub shutdown_timeout: Duration,
    /// On SIGTERM, how long portero reports not-ready while it keeps
    /// serving, before it stops accepting: the orchestrator's time to stop
    /// sending it traffic.
    pub shutdown_delay: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Forward request headers whose names contain `_`. Off by default:
    /// WSGI and ASGI servers read `X_Forwarded_For` as `X-Forwarded-For`,
    /// so an underscore name could shadow a header portero sets.
    pub underscores_in_headers: bool,
    /// In `Set-Cookie` sent to a plain-HTTP client, drop `Secure` and turn
    /// `SameSite=None` into `SameSite=Lax`, so a backend configured for
    /// production (`SESSION_COOKIE_SECURE`) still logs in over
    /// `http://…localhost`. The dev profile's default; refused in staging.
    pub insecure_cookies: bool,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub url: UpstreamUrl,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub wait_for: Duration,
    /// Connections per worker, idle, in use and tunnelled together.
    pub max_connections: usize,
    /// The longest the client's request body may send nothing (408).
    pub request_body_timeout: Duration,
    /// The longest the upstream's response body may send nothing.
    pub body_idle_timeout: Duration,
    pub ca: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// What `Host` the upstream receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// The browser's host without port (django-tenants needs this).
    StripPort,
    /// The browser's host exactly as sent.
    Preserve,
    /// The upstream's own authority (webpack's `changeOrigin`).
    Upstream,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Proxy to the named upstream.
    Upstream(String),
    /// The single-page app (`[spa]`).
    Spa,
    /// A plain static directory.
    Static(PathBuf),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub prefix: RoutePrefix,
    pub exact: bool,
    pub target: RouteTarget,
    pub host: HostMode,
    pub strip_prefix: bool,
    pub rewrite: Option<RoutePrefix>,
    /// `None`: unlimited.
    pub body_limit: Option<u64>,
    /// Overrides the upstream's response timeout.
    pub response_timeout: Option<Duration>,
    /// The `Upgrade` protocols tunnelled (lowercase; `websocket` by
    /// default); any other upgrade goes on as a plain request.
    pub upgrades: Vec<String>,
    /// `None`: never.
    pub idle_timeout: Option<Duration>,
}

impl Route {
    /// A label for logs: `/api` or `=/ws` for exact routes.
    pub fn label(&self) -> String {
        self.to_string()
    }
}

/// The route's label: `/api`, or `=/ws` for an exact route.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exact {
            f.write_str("=")?;
        }
        f.write_str(self.prefix.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpaSource {
    Dir(PathBuf),
    /// The name of the synthesised upstream (`spa-dev-server`) to proxy to.
    DevServer(String),
}

#[derive(Debug, Clone)]
pub struct SpaConfig {
    pub source: SpaSource,
    pub history_fallback: bool,
    pub live_reload: bool,
    pub memory_cache: u64,
}

#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub base_domain: Option<HostName>,
    pub local_suffixes: Vec<HostName>,
    pub allowed_hosts: Vec<HostPattern>,
    pub header: Option<http::HeaderName>,
    pub overrides: BTreeMap<String, TenantOverride>,
}

/// An allowed-host entry: an exact name or `*.` and a suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(HostName),
    Wildcard(HostName),
}

impl HostPattern {
    pub fn matches(&self, host: &HostName) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => host.label_below(suffix).is_some(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TenantOverride {
    pub upstream: Option<String>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    /// Certificate files; when empty, a certificate is minted for each
    /// allowed host at its first handshake, signed by the development CA
    /// in `ca_dir`.
    pub certs: Vec<CertPaths>,
    /// Where `portero cert` wrote `dev-ca.pem` and `dev-ca-key.pem`
    /// (default `certs`); used only when `certs` is empty.
    pub ca_dir: PathBuf,
    pub redirect_http: bool,
    pub hsts_max_age: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One problem in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Key path such as `routes[2].upstream`, or a flag such as `--backend`.
    pub key: String,
    /// Byte range in the source, when the problem is in the file.
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: &str, span: Option<Range<usize>>, message: String) -> Self {
        Self {
            key: key.to_string(),
            span,
            message,
        }
    }

    /// From a TOML parse or serde error inside the section at `key`; an
    /// unknown field's name is appended to the key path.
    fn from_toml(key: &str, e: &toml::de::Error) -> Self {
        let message = e.message().trim().to_string();
        let field = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name);
        let key = match field {
            Some(name) if !key.is_empty() => format!("{key}.{name}"),
            _ => key.to_string(),
        };
        Self::new(&key, e.span(), message)
    }
}

/// Every problem found in one config, renderable as one line per problem:
/// `config/portero.toml:14:9: routes[2].upstream: no upstream named "bakend" (known: backend)`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    pub origin: Source,
    pub text: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match &e.span {
                Some(span) => {
                    let (line, col) = line_col(&self.text, span.start);
                    write!(f, "{}:{line}:{col}: ", self.origin)?;
                }
                // Flags have no place in the file.
                None if e.key.starts_with("--") => {}
                None => write!(f, "{}: ", self.origin)?,
            }
            if e.key.is_empty() {
                write!(f, "{}", e.message)?;
            } else {
                write!(f, "{}: {}", e.key, e.message)?;
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..at].chars().count() + 1;
    (line, col)
}

impl Config {
    /// Parses and validates config text.
    pub fn from_str(text: &str, source: Source) -> Result<Config, ConfigErrors> {
        validate::load(text, source.clone()).map_err(|errors| ConfigErrors {
            origin: source,
            text: text.to_string(),
            errors,
        })
    }

    /// The embedded default.
    pub fn embedded() -> Config {
        // A unit test validates the embedded default, so this cannot fail in
        // a tested build.
        Config::from_str(DEFAULT_TOML, Source::Embedded)
            .unwrap_or_else(|e| panic!("the embedded default config is invalid:\n{e}"))
    }

    /// Config discovery: `explicit`, else `./portero.toml` if present, else
    /// the embedded default.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, LoadError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let local = PathBuf::from("portero.toml");
                if !local.exists() {
                    return Ok(Config::embedded());
                }
                local
            }
        };
        Config::load_file(&path)
    }

    pub fn load_file(path: &Path) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
        Ok(Config::from_str(&text, Source::File(path.to_path_buf()))?)
    }

    /// The upstream a route points at, if it is an upstream route.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] ConfigErrors),
}

#[cfg(test)]
mod tests;
