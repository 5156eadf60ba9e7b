//! The request headers an upstream receives: hop-by-hop removed, `Host` per
//! the route's mode, same-origin `Origin`/`Referer` made to agree with that
//! `Host`, `X-Forwarded-*` set (after stripping, so nothing the client sent
//! as hop-by-hop can remove them), and the tenant header.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

use super::headers::{has_token, strip_hop_by_hop};
use super::url::absolute;
use crate::host::RequestHost;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// What the forwarded headers are made from.
pub struct Forward<'a> {
    /// `http` or `https`: how the client reached portero.
    pub scheme: &'static str,
    /// The host the client sent.
    pub client_host: &'a RequestHost,
    /// The port the client connected to (for X-Forwarded-Port and default-port
    /// comparisons).
    pub client_port: u16,
    /// `client_port` as a header value.
    pub port_value: &'a HeaderValue,
    /// The `Host` value the upstream receives.
    pub upstream_host: &'a str,
    pub peer: IpAddr,
    /// `peer` as a header value (made once per connection).
    pub peer_value: &'a HeaderValue,
    /// The peer is a trusted proxy: its X-Forwarded-For is appended to.
    pub trusted_peer: bool,
    /// Header name and tenant to send, when configured and known.
    pub tenant: Option<(&'a HeaderName, &'a str)>,
    /// The header configured for tenants: always removed from the client's
    /// request so it cannot be spoofed.
    pub tenant_header: Option<&'a HeaderName>,
    /// Forward header names that contain `_` (`server.underscores_in_headers`).
    pub underscores: bool,
}

/// Rewrites `headers` in place for forwarding. `upgrade` keeps a protocol
/// upgrade (`Upgrade` value) that would otherwise be stripped as hop-by-hop.
pub fn prepare(headers: &mut HeaderMap, f: &Forward<'_>, upgrade: Option<HeaderValue>) {
    let wants_trailers = has_token(headers, header::TE, "trailers");
    // X-Forwarded-Host is the Host the client sent, byte for byte (it was
    // validated by dispatch); HTTP/2 requests carry it in :authority instead.
    let client_host = headers.get(header::HOST).cloned();
    strip_hop_by_hop(headers);
    // The upstream must not answer 100-continue to us: hyper already did
    // (or will) towards the client when the body is read.
    headers.remove(header::EXPECT);
    // Room for the headers added below, so the map grows at most once.
    headers.reserve(6);
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }

    if let Ok(v) = HeaderValue::from_str(f.upstream_host) {
        headers.insert(header::HOST, v);
    }
    rewrite_same_origin(headers, f);

    let trusted_prev = if f.trusted_peer {
        headers
            .get(&X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .map(|prev| format!("{prev}, {}", f.peer))
    } else {
        None
    };
    match trusted_prev {
        Some(chain) => set(headers, X_FORWARDED_FOR, &chain),
        None => {
            headers.insert(X_FORWARDED_FOR, f.peer_value.clone());
        }
    }
    if !(f.trusted_peer && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(f.scheme));
    }
    if !(f.trusted_peer && headers.contains_key(&X_FORWARDED_HOST)) {
        match client_host {
            Some(v) => {
                headers.insert(X_FORWARDED_HOST, v);
            }
            None => set(headers, X_FORWARDED_HOST, &f.client_host.with_port()),
        }
    }
    if !(f.trusted_peer && headers.contains_key(&X_FORWARDED_PORT)) {
        headers.insert(X_FORWARDED_PORT, f.port_value.clone());
    }

    if let Some(name) = f.tenant_header {
        headers.remove(name);
    }
    if !f.trusted_peer {
        // Other ways to claim a client address or origin, which backends
        // (Django's, middleware) may read: only a trusted proxy's count.
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
    }
    if !f.underscores {
        drop_underscored(headers);
    }
    if let Some((name, tenant)) = f.tenant {
        set(headers, name.clone(), tenant);
    }

    if let Some(up) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, up);
    }
}

/// Removes every header whose name has an `_`: WSGI and ASGI servers map
/// `_` and `-` to the same variable, so `X_Forwarded_For` could shadow the
/// `X-Forwarded-For` set above (nginx drops them too by default).
fn drop_underscored(headers: &mut HeaderMap) {
    if !headers.keys().any(|n| n.as_str().contains('_')) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// `Origin` and `Referer` that name the origin the client is on are
/// rewritten to the origin the upstream believes it serves, so Django's
/// CSRF check and Channels' origin validator accept them without
/// `CSRF_TRUSTED_ORIGINS`. Cross-origin values pass untouched.
fn rewrite_same_origin(headers: &mut HeaderMap, f: &Forward<'_>) {
    for name in [header::ORIGIN, header::REFERER] {
        let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Some(rest) = same_origin_rest(value, f) else {
            continue;
        };
        let rewritten = format!("{}://{}{rest}", f.scheme, f.upstream_host);
        set(headers, name, &rewritten);
    }
}

/// If `url` is on the client's own origin, the part after the origin
/// (path, query, fragment; possibly empty).
fn same_origin_rest<'u>(url: &'u str, f: &Forward<'_>) -> Option<&'u str> {
    let u = absolute(url).filter(|u| u.scheme == f.scheme)?;
    let origin_host = RequestHost::parse(u.authority).ok()?;
    let default_port = if f.scheme == "https" { 443 } else { 80 };
    let origin_port = origin_host.port.unwrap_or(default_port);
    let client_port = f.client_host.port.unwrap_or(f.client_port);
    (origin_host.name == f.client_host.name && origin_port == client_port).then_some(u.rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(headers: &[(&str, &str)], trusted: bool, upstream_host: &str) -> HeaderMap {
        let client_host = RequestHost::parse("acme.localhost:8080").unwrap();
        let tenant_header = HeaderName::from_static("x-tenant");
        let f = Forward {
            scheme: "http",
            client_host: &client_host,
            client_port: 8080,
            port_value: &HeaderValue::from_static("8080"),
            upstream_host,
            peer: "10.0.0.9".parse().unwrap(),
            peer_value: &HeaderValue::from_static("10.0.0.9"),
            trusted_peer: trusted,
            tenant: Some((&tenant_header, "acme")),
            tenant_header: Some(&tenant_header),
            underscores: false,
        };
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        prepare(&mut h, &f, None);
        h
    }

    fn get<'a>(h: &'a HeaderMap, k: &str) -> Option<&'a str> {
        h.get(k).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn host_origin_referer_and_forwarded() {
        let h = run(
            &[
                ("host", "acme.localhost:8080"),
                ("origin", "http://acme.localhost:8080"),
                (
                    "referer",
                    "http://acme.localhost:8080/admin/login/?next=/admin/",
                ),
                ("x-forwarded-for", "1.2.3.4"),
                ("x-tenant", "spoofed"),
                ("expect", "100-continue"),
                ("te", "trailers, gzip"),
            ],
            false,
            "acme.chalanpro.net",
        );
        assert_eq!(get(&h, "host"), Some("acme.chalanpro.net"));
        assert_eq!(get(&h, "origin"), Some("http://acme.chalanpro.net"));
        assert_eq!(
            get(&h, "referer"),
            Some("http://acme.chalanpro.net/admin/login/?next=/admin/")
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("10.0.0.9"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&h, "x-forwarded-host"), Some("acme.localhost:8080"));
        assert_eq!(get(&h, "x-forwarded-port"), Some("8080"));
        assert_eq!(get(&h, "x-tenant"), Some("acme"));
        assert_eq!(get(&h, "expect"), None);
        assert_eq!(get(&h, "te"), Some("trailers"));
    }

    #[test]
    fn cross_origin_values_pass_untouched() {
        for origin in [
            "http://evil.example.com",
            "http://acme.localhost:9999",
            "https://acme.localhost:8080",
            "http://acme.localhost",
            "http://acme.localhost.evil.com:8080",
            "null",
        ] {
            let h = run(&[("origin", origin)], false, "acme.chalanpro.net");
            assert_eq!(get(&h, "origin"), Some(origin), "{origin}");
        }
    }

    #[test]
    fn trusted_peers_are_appended_to() {
        let h = run(
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
            ],
            true,
            "acme.chalanpro.net",
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("1.2.3.4, 10.0.0.9"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("https"));
    }

    #[test]
    fn forwarded_headers_survive_connection_naming_them() {
        let h = run(
            &[("connection", "x-forwarded-for, x-forwarded-host")],
            false,
            "acme.chalanpro.net",
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("10.0.0.9"));
        assert_eq!(get(&h, "x-forwarded-host"), Some("acme.localhost:8080"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "transfer-encoding",
            "trailer",
            "upgrade",
            "http2-settings",
            "proxy-authorization",
            "content-length",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded-port",
            "forwarded",
            "x-real-ip",
            "x-tenant",
            "x_tenant",
            "x_forwarded_for",
            "x-secret",
            "x-other",
            "cookie",
            "origin",
            "accept",
        ];

        fn header() -> impl Strategy<Value = (String, String)> {
            let name = prop::sample::select(NAMES).prop_map(str::to_string);
            let value = prop_oneof![
                "[ -~]{0,16}",
                prop::sample::subsequence(NAMES.to_vec(), 0..4).prop_map(|t| t.join(", ")),
            ];
            (name, value)
        }

        proptest! {
            #![proptest_config(crate::testing::proptest_config())]

            #[test]
            fn the_forwarded_head_keeps_only_end_to_end_headers(
                headers in proptest::collection::vec(header(), 0..12),
                trusted in any::<bool>(),
            ) {
                // Host as dispatch validated it; everything else arbitrary.
                let pairs: Vec<(&str, &str)> = std::iter::once(("host", "acme.localhost:8080"))
                    .chain(
                        headers
                            .iter()
                            .filter(|(_, v)| HeaderValue::from_str(v).is_ok())
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    )
                    .collect();
                let named: Vec<String> = pairs
                    .iter()
                    .filter(|(k, _)| *k == "connection")
                    .flat_map(|(_, v)| v.split(','))
                    .map(|t| t.trim().to_ascii_lowercase())
                    .collect();
                // Content-Length passes as it came, unless Connection names it.
                let lengths = if named.iter().any(|t| t == "content-length") {
                    0
                } else {
                    pairs.iter().filter(|(k, _)| *k == "content-length").count()
                };
                let h = run(&pairs, trusted, "acme.chalanpro.net");
                for hop in HOP_BY_HOP_NAMES {
                    prop_assert!(!h.contains_key(*hop), "{} forwarded: {:?}", hop, h);
                }
                for token in &named {
                    let set_here = ["host", "x-forwarded-for", "x-forwarded-host",
                        "x-forwarded-proto", "x-forwarded-port", "x-tenant"];
                    if !set_here.contains(&token.as_str()) {
                        prop_assert!(!h.contains_key(token.as_str()), "{} named in Connection: {:?}", token, h);
                    }
                }
                // Framing: chunked is re-framed by the connection, never
                // forwarded.
                prop_assert!(!h.contains_key("transfer-encoding"));
                prop_assert_eq!(h.get_all("content-length").iter().count(), lengths);
                prop_assert_eq!(h.get_all("host").iter().count(), 1);
                prop_assert_eq!(h.get("host").unwrap(), "acme.chalanpro.net");
                prop_assert_eq!(h.get_all("x-tenant").iter().collect::<Vec<_>>(), vec!["acme"]);
                prop_assert!(h.keys().all(|k| !k.as_str().contains('_')), "{:?}", h);
                if !trusted {
                    prop_assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), vec!["10.0.0.9"]);
                    prop_assert_eq!(h.get("x-forwarded-host").unwrap(), "acme.localhost:8080");
                    prop_assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
                    prop_assert!(!h.contains_key("forwarded") && !h.contains_key("x-real-ip"));
                } else {
                    let xff = h.get("x-forwarded-for").unwrap().to_str().unwrap();
                    prop_assert!(xff.ends_with("10.0.0.9"), "{}", xff);
                }
            }
        }

        const HOP_BY_HOP_NAMES: &[&str] = &[
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "transfer-encoding",
            "trailer",
            "upgrade",
            "http2-settings",
            "proxy-authorization",
        ];
    }
}
