//! Stage one of config loading: the raw TOML shape, as serde structs that
//! reject unknown keys and keep the source span of every value that stage two
//! (`validate.rs`) will judge.
//!
//! Each top-level section, each upstream and each route is deserialized on
//! its own, so one bad key does not hide the errors in the rest of the file.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::ConfigError;

/// A number or a string: durations ("10s" or 10) and sizes ("64MiB" or 1024).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Str(String),
}

/// One address or a list of them. (serde's untagged enums cannot hold
/// `Spanned` values, so errors point at the whole value.)
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct RawConfig {
    pub profile: Option<Spanned<String>>,
    pub server: RawServer,
    /// Upstreams in file order of their names (BTreeMap: sorted, stable).
    pub upstreams: BTreeMap<String, Spanned<RawUpstream>>,
    /// `None` when the file has no `[[routes]]`: the defaults apply.
    /// An element is `None` when it failed to deserialize (already reported),
    /// so indices in later messages still match the file.
    pub routes: Option<Vec<Option<Spanned<RawRoute>>>>,
    pub spa: RawSpa,
    pub tenants: RawTenants,
    pub tls: Option<Spanned<RawTls>>,
    pub admin: RawAdmin,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<Spanned<OneOrMany>>,
    pub header_read_timeout: Option<Spanned<Scalar>>,
    pub tls_handshake_timeout: Option<Spanned<Scalar>>,
    pub http2_idle_timeout: Option<Spanned<Scalar>>,
    pub send_timeout: Option<Spanned<Scalar>>,
    pub max_connections: Option<Spanned<i64>>,
    pub keep_alive: Option<bool>,
    pub http2_prior_knowledge: Option<bool>,
    pub reuse_port: Option<bool>,
    pub runtime: Option<Spanned<String>>,
    pub http1: Option<Spanned<String>>,
    pub shutdown_timeout: Option<Spanned<Scalar>>,
    pub shutdown_delay: Option<Spanned<Scalar>>,
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    pub underscores_in_headers: Option<bool>,
    pub insecure_cookies: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub url: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<Scalar>>,
    pub response_timeout: Option<Spanned<Scalar>>,
    pub wait_for: Option<Spanned<Scalar>>,
    pub max_connections: Option<Spanned<i64>>,
    pub request_body_timeout: Option<Spanned<Scalar>>,
    pub body_idle_timeout: Option<Spanned<Scalar>>,
    pub ca: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub prefix: Option<Spanned<String>>,
    pub exact: Option<bool>,
    pub upstream: Option<Spanned<String>>,
    pub spa: Option<Spanned<bool>>,
    pub static_dir: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub strip_prefix: Option<bool>,
    pub rewrite: Option<Spanned<String>>,
    pub body_limit: Option<Spanned<Scalar>>,
    pub response_timeout: Option<Spanned<Scalar>>,
    pub websocket: Option<bool>,
    pub upgrades: Option<Spanned<Vec<String>>>,
    pub idle_timeout: Option<Spanned<Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpa {
    pub root: Option<Spanned<String>>,
    pub dev_server: Option<Spanned<String>>,
    pub history_fallback: Option<bool>,
    pub live_reload: Option<bool>,
    pub memory_cache: Option<Spanned<Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenants {
    pub base_domain: Option<Spanned<String>>,
    pub local_suffixes: Option<Vec<Spanned<String>>>,
    pub allowed_hosts: Option<Vec<Spanned<String>>>,
    pub header: Option<Spanned<String>>,
    #[serde(default)]
    pub overrides: BTreeMap<String, Spanned<RawTenantOverride>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenantOverride {
    pub upstream: Option<Spanned<String>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub allow: Option<Vec<Spanned<String>>>,
    pub probes: Option<Vec<Spanned<String>>>,
    pub inspector_size: Option<Spanned<i64>>,
    pub inspector_unmask: Option<bool>,
    pub inspector_bodies: Option<Spanned<Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub listen: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub certs: Vec<Spanned<RawCert>>,
    pub ca_dir: Option<Spanned<String>>,
    pub redirect_http: Option<bool>,
    pub hsts_max_age: Option<Spanned<Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCert {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// Parses `src` into the raw shape, collecting every syntax, type and
/// unknown-key error rather than stopping at the first.
pub(super) fn parse(src: &str) -> (RawConfig, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let (doc, syntax) = DeTable::parse_recoverable(src);
    for e in syntax {
        errors.push(ConfigError::from_toml("", &e));
    }
    let mut raw = RawConfig::default();
    for (key, value) in doc.into_inner() {
        let name = key.get_ref().to_string();
        let span = key.span();
        match name.as_str() {
            "profile" => {
                raw.profile = section(&name, value, &mut errors);
            }
            "server" => raw.server = section(&name, value, &mut errors).unwrap_or_default(),
            "spa" => raw.spa = section(&name, value, &mut errors).unwrap_or_default(),
            "tenants" => raw.tenants = section(&name, value, &mut errors).unwrap_or_default(),
            "tls" => raw.tls = section(&name, value, &mut errors),
            "admin" => raw.admin = section(&name, value, &mut errors).unwrap_or_default(),
            "upstreams" => raw.upstreams = upstreams(value, &mut errors),
            "routes" => raw.routes = Some(routes("routes", value, &mut errors)),
            _ => errors.push(ConfigError::new(
                &name,
                Some(span),
                "unknown key (known: profile, server, upstreams, routes, spa, tenants, tls, admin)"
                    .into(),
            )),
        }
    }
    (raw, errors)
}

fn section<T: serde::de::DeserializeOwned>(
    path: &str,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(ConfigError::from_toml(path, &e));
            None
        }
    }
}

fn upstreams(
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, Spanned<RawUpstream>> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        errors.push(ConfigError::new(
            "upstreams",
            Some(span),
            "expected a table of named upstreams, like [upstreams.backend]".into(),
        ));
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (name, v) in table {
        let name = name.into_inner().to_string();
        let path = format!("upstreams.{name}");
        if let Some(u) = section::<Spanned<RawUpstream>>(&path, v, errors) {
            out.insert(name, u);
        }
    }
    out
}

/// Deserializes an array of route tables one element at a time.
fn routes(
    path: &str,
    value: Spanned<DeValue<'_>>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Option<Spanned<RawRoute>>> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        errors.push(ConfigError::new(
            path,
            Some(span),
            "expected an array of tables, written [[routes]]".into(),
        ));
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| section::<Spanned<RawRoute>>(&format!("{path}[{i}]"), item, errors))
        .collect()
}
