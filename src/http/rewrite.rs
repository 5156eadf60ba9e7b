//! Response headers that carry the upstream's idea of its own address,
//! rewritten to the address the client actually used: `Location`,
//! `Content-Location`, `Refresh` and `Set-Cookie`'s `Domain`; and, for a
//! plain-HTTP client in development, `Set-Cookie`'s `Secure` and
//! `SameSite=None`, which would make the browser drop the cookie.

use http::HeaderMap;
use http::header::{self, HeaderValue};

use super::url::absolute;
use crate::config::Config;

/// The config's cookie rules, made once per snapshot.
#[derive(Debug, Clone, Default)]
pub struct CookieRules {
    /// `(base domain, local suffix)` for each local suffix of two labels or
    /// more (`chalanpro.localhost`): a cookie for the base domain or a name
    /// below it is moved to the same name below the suffix, so tenants
    /// under the suffix share it as they do in production. A one-label
    /// suffix (`localhost`) has none: browsers refuse `Domain=.localhost`,
    /// so the attribute is dropped instead.
    domains: Vec<(String, String)>,
    /// `server.insecure_cookies`.
    insecure: bool,
}

impl CookieRules {
    pub fn new(config: &Config) -> CookieRules {
        let domains = match &config.tenants.base_domain {
            Some(base) => config
                .tenants
                .local_suffixes
                .iter()
                .filter(|s| s.as_str().contains('.'))
                .map(|s| (base.to_string(), s.to_string()))
                .collect(),
            None => Vec::new(),
        };
        CookieRules {
            domains,
            insecure: config.server.insecure_cookies,
        }
    }

    /// The `(from, to)` cookie domain mapping for a client on `client_host`.
    pub fn domain_for(&self, client_host: &str) -> Option<(&str, &str)> {
        self.domains
            .iter()
            .filter(|(_, suffix)| covers(client_host, suffix))
            .max_by_key(|(_, suffix)| suffix.len())
            .map(|(b, s)| (b.as_str(), s.as_str()))
    }

    /// Whether `Secure` and `SameSite=None` are taken off for this client.
    pub fn insecure_for(&self, tls: bool) -> bool {
        self.insecure && !tls
    }
}

/// `host` is `domain` or a name below it.
fn covers(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
}

/// What the rewrite maps from and to.
pub struct Rewrite<'a> {
    /// `scheme://host[:port]` as the client used it.
    pub client_origin: &'a str,
    /// The host name the client used (no port).
    pub client_host: &'a str,
    /// The host name the upstream was sent (no port).
    pub forwarded_host: &'a str,
    /// The upstream's own `host:port`.
    pub upstream_authority: &'a str,
    /// `(base domain, local suffix)` when the client is under a local
    /// suffix of two labels or more: a cookie `Domain` on the base domain
    /// is moved there instead of dropped.
    pub cookie_domain: Option<(&'a str, &'a str)>,
    /// Take `Secure` off cookies and make `SameSite=None` `Lax` (a
    /// plain-HTTP client, `server.insecure_cookies`).
    pub insecure_cookies: bool,
}

/// The response fields [`response`] looks at.
const REWRITTEN: [header::HeaderName; 4] = [
    header::LOCATION,
    header::CONTENT_LOCATION,
    header::REFRESH,
    header::SET_COOKIE,
];

/// Whether `response` has anything to look at.
pub fn applies(headers: &HeaderMap) -> bool {
    REWRITTEN.iter().any(|h| headers.contains_key(h))
}

/// Whether a field named `name` (its bytes, any case) is one [`response`]
/// may rewrite.
pub(crate) fn is_rewritten_name(name: &[u8]) -> bool {
    REWRITTEN
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

pub fn response(headers: &mut HeaderMap, rw: &Rewrite<'_>) {
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        if let Some(new) = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| rewrite_url(v, rw))
        {
            if let Ok(v) = HeaderValue::from_str(&new) {
                headers.insert(name, v);
            }
        }
    }
    if let Some(new) = headers
        .get(header::REFRESH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| rewrite_refresh(v, rw))
    {
        if let Ok(v) = HeaderValue::from_str(&new) {
            headers.insert(header::REFRESH, v);
        }
    }
    let domains = rw.client_host != rw.forwarded_host;
    if (domains || rw.insecure_cookies) && headers.contains_key(header::SET_COOKIE) {
        let cookies: Vec<HeaderValue> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(
                |v| match v.to_str().ok().and_then(|c| rewrite_cookie(c, rw)) {
                    Some(new) => HeaderValue::from_str(&new).unwrap_or_else(|_| v.clone()),
                    None => v.clone(),
                },
            )
            .collect();
        headers.remove(header::SET_COOKIE);
        for c in cookies {
            headers.append(header::SET_COOKIE, c);
        }
    }
}

/// An absolute URL on the forwarded host (any port, any scheme) or on the
/// upstream's own address, moved to the client's origin. Relative URLs and
/// other hosts are left alone.
fn rewrite_url(url: &str, rw: &Rewrite<'_>) -> Option<String> {
    let u = absolute(url)?;
    let host = crate::host::RequestHost::parse(u.authority).ok()?;
    let ours = host.name.as_str() == rw.forwarded_host
        || u.authority.eq_ignore_ascii_case(rw.upstream_authority);
    ours.then(|| format!("{}{}", rw.client_origin, u.rest))
}

/// `Refresh: 5; url=http://...`
fn rewrite_refresh(value: &str, rw: &Rewrite<'_>) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let at = lower.find("url=")? + 4;
    let url = value[at..].trim().trim_matches(['\'', '"']);
    let new = rewrite_url(url, rw)?;
    Some(format!("{}{new}", &value[..at]))
}

/// A cookie whose `Domain` covers the forwarded host would be refused by a
/// browser on another name (an alias such as `acme.localhost`): the
/// attribute is moved below the client's local suffix when it has two
/// labels or more (`.chalanpro.net` → `.chalanpro.localhost`), and dropped
/// otherwise, so the cookie is stored for the host the browser sees. With
/// `insecure_cookies`, `Secure` is dropped and `SameSite=None` (which
/// needs `Secure`) becomes `SameSite=Lax`.
fn rewrite_cookie(cookie: &str, rw: &Rewrite<'_>) -> Option<String> {
    let mut changed = false;
    let mut parts = cookie.split(';');
    // The first part is the cookie's own `name=value`, never an attribute.
    let mut out: Vec<String> = vec![parts.next().unwrap_or_default().to_string()];
    for attr in parts {
        let a = attr.trim();
        let (k, v) = a
            .split_once('=')
            .map_or((a, ""), |(k, v)| (k.trim(), v.trim()));
        if k.eq_ignore_ascii_case("domain") && rw.client_host != rw.forwarded_host {
            let dotted = v.starts_with('.');
            let d = v.trim_start_matches('.').to_ascii_lowercase();
            if !d.is_empty() && covers(rw.forwarded_host, &d) {
                changed = true;
                let moved = rw.cookie_domain.and_then(|(base, suffix)| {
                    let below = d.strip_suffix(base)?;
                    (below.is_empty() || below.ends_with('.')).then(|| format!("{below}{suffix}"))
                });
                if let Some(new) = moved {
                    let dot = if dotted { "." } else { "" };
                    out.push(format!(" Domain={dot}{new}"));
                }
                continue;
            }
        } else if rw.insecure_cookies && k.eq_ignore_ascii_case("secure") {
            changed = true;
            continue;
        } else if rw.insecure_cookies
            && k.eq_ignore_ascii_case("samesite")
            && v.eq_ignore_ascii_case("none")
        {
            changed = true;
            out.push(" SameSite=Lax".into());
            continue;
        }
        out.push(attr.to_string());
    }
    changed.then(|| out.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: Rewrite<'static> = Rewrite {
        client_origin: "http://acme.localhost:8080",
        client_host: "acme.localhost",
        forwarded_host: "acme.chalanpro.net",
        upstream_authority: "127.0.0.1:8000",
        cookie_domain: None,
        insecure_cookies: false,
    };

    /// A client under the two-label local suffix `chalanpro.localhost`.
    const TWO: Rewrite<'static> = Rewrite {
        client_origin: "http://acme.chalanpro.localhost:8080",
        client_host: "acme.chalanpro.localhost",
        forwarded_host: "acme.chalanpro.net",
        upstream_authority: "127.0.0.1:8000",
        cookie_domain: Some(("chalanpro.net", "chalanpro.localhost")),
        insecure_cookies: false,
    };

    #[test]
    fn cookies_under_a_two_label_suffix_keep_a_shared_domain() {
        assert_eq!(
            rewrite_cookie("sessionid=1; Domain=.chalanpro.net; Path=/", &TWO).as_deref(),
            Some("sessionid=1; Domain=.chalanpro.localhost; Path=/")
        );
        assert_eq!(
            rewrite_cookie("a=1; domain=acme.chalanpro.net", &TWO).as_deref(),
            Some("a=1; Domain=acme.chalanpro.localhost")
        );
        assert_eq!(rewrite_cookie("a=1; Domain=other.net", &TWO), None);
        // The public host, the suffix itself.
        let public = Rewrite {
            client_host: "chalanpro.localhost",
            forwarded_host: "chalanpro.net",
            ..TWO
        };
        assert_eq!(
            rewrite_cookie("a=1; Domain=chalanpro.net", &public).as_deref(),
            Some("a=1; Domain=chalanpro.localhost")
        );
        // One-label `localhost`: still dropped (RW has no mapping).
        assert_eq!(
            rewrite_cookie("a=1; Domain=.chalanpro.net; Path=/", &RW).as_deref(),
            Some("a=1; Path=/")
        );
    }

    #[test]
    fn cookie_rules_map_only_suffixes_of_two_labels() {
        let c = Config::from_str(
            "[tenants]\nbase_domain = \"chalanpro.net\"\n\
             local_suffixes = [\"localhost\", \"chalanpro.localhost\"]\n",
            crate::config::Source::Embedded,
        )
        .unwrap();
        let rules = CookieRules::new(&c);
        assert_eq!(
            rules.domain_for("acme.chalanpro.localhost"),
            Some(("chalanpro.net", "chalanpro.localhost"))
        );
        assert_eq!(
            rules.domain_for("chalanpro.localhost"),
            Some(("chalanpro.net", "chalanpro.localhost"))
        );
        assert_eq!(rules.domain_for("acme.localhost"), None);
        assert_eq!(rules.domain_for("xchalanpro.localhost"), None);
    }

    #[test]
    fn insecure_cookies_lose_secure_and_samesite_none() {
        let rw = Rewrite {
            insecure_cookies: true,
            ..RW
        };
        assert_eq!(
            rewrite_cookie("csrftoken=x; Secure; SameSite=None; Path=/", &rw).as_deref(),
            Some("csrftoken=x; SameSite=Lax; Path=/")
        );
        assert_eq!(rewrite_cookie("a=1; secure", &rw).as_deref(), Some("a=1"));
        assert_eq!(rewrite_cookie("a=1; SameSite=Strict", &rw), None);
        // A cookie named like an attribute is not one.
        assert_eq!(rewrite_cookie("secure=1; Path=/", &rw), None);
        // Same host as forwarded: only the insecure rewrite applies.
        let same = Rewrite {
            client_host: "acme.chalanpro.net",
            insecure_cookies: true,
            ..RW
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::SET_COOKIE,
            "s=1; Domain=acme.chalanpro.net; Secure".parse().unwrap(),
        );
        response(&mut h, &same);
        assert_eq!(h[header::SET_COOKIE], "s=1; Domain=acme.chalanpro.net");
        let rules = CookieRules {
            domains: Vec::new(),
            insecure: true,
        };
        assert!(rules.insecure_for(false));
        assert!(!rules.insecure_for(true), "never over TLS");
    }

    #[test]
    fn urls() {
        let cases = [
            (
                "http://acme.chalanpro.net/api/x?y=1",
                Some("http://acme.localhost:8080/api/x?y=1"),
            ),
            (
                "https://acme.chalanpro.net:8000/a",
                Some("http://acme.localhost:8080/a"),
            ),
            (
                "http://127.0.0.1:8000/login",
                Some("http://acme.localhost:8080/login"),
            ),
            (
                "http://acme.chalanpro.net",
                Some("http://acme.localhost:8080"),
            ),
            ("/relative", None),
            ("http://other.example.com/x", None),
            ("http://globex.chalanpro.net/x", None),
            ("ftp://acme.chalanpro.net/x", None),
        ];
        for (url, want) in cases {
            assert_eq!(rewrite_url(url, &RW).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn refresh() {
        assert_eq!(
            rewrite_refresh("0; url=http://acme.chalanpro.net/next", &RW).as_deref(),
            Some("0; url=http://acme.localhost:8080/next")
        );
        assert_eq!(rewrite_refresh("5", &RW), None);
    }

    #[test]
    fn cookies() {
        assert_eq!(
            rewrite_cookie(
                "sessionid=abc; Domain=acme.chalanpro.net; Path=/; HttpOnly",
                &RW
            )
            .as_deref(),
            Some("sessionid=abc; Path=/; HttpOnly")
        );
        assert_eq!(
            rewrite_cookie("a=1; domain=.chalanpro.net", &RW).as_deref(),
            Some("a=1")
        );
        assert_eq!(rewrite_cookie("a=1; Domain=other.net", &RW), None);
        assert_eq!(rewrite_cookie("a=1; Path=/", &RW), None);
    }

    #[test]
    fn applies_only_to_responses_with_rewritable_headers() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        assert!(!applies(&h));
        h.insert("set-cookie", "a=1".parse().unwrap());
        assert!(applies(&h));
    }

    #[test]
    fn headers_in_place() {
        let mut h = HeaderMap::new();
        h.insert(
            "location",
            "http://acme.chalanpro.net/api/whoami/".parse().unwrap(),
        );
        h.append(
            "set-cookie",
            "csrftoken=x; Domain=acme.chalanpro.net".parse().unwrap(),
        );
        h.append("set-cookie", "b=2".parse().unwrap());
        response(&mut h, &RW);
        assert_eq!(h["location"], "http://acme.localhost:8080/api/whoami/");
        let cookies: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["csrftoken=x", "b=2"]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn url() -> impl Strategy<Value = String> {
            let scheme = prop::sample::select(vec!["http", "https", "HTTP", "ftp", ""]);
            let host = prop::sample::select(vec![
                "acme.chalanpro.net",
                "ACME.chalanpro.net",
                "127.0.0.1:8000",
                "127.0.0.1:9000",
                "evil.example.com",
                "acme.chalanpro.net.evil.com",
                "evil.com@acme.chalanpro.net",
                "acme.chalanpro.net:1",
                "",
            ]);
            let rest = "(/[a-z?=#@:]{0,12}){0,2}";
            (scheme, host, rest).prop_map(|(s, h, r)| {
                if s.is_empty() {
                    format!("{h}{r}")
                } else {
                    format!("{s}://{h}{r}")
                }
            })
        }

        proptest! {
            #![proptest_config(crate::testing::proptest_config())]

            #[test]
            fn locations_move_only_to_the_clients_own_origin(u in url()) {
                let mut h = HeaderMap::new();
                let Ok(v) = HeaderValue::from_str(&u) else { return Ok(()) };
                h.insert(header::LOCATION, v.clone());
                h.insert(header::REFRESH, HeaderValue::from_str(&format!("0; url={u}")).unwrap());
                response(&mut h, &RW);
                let loc = h[header::LOCATION].to_str().unwrap();
                if loc != u {
                    prop_assert!(loc.starts_with(RW.client_origin), "{} -> {}", u, loc);
                    let authority = u
                        .split_once("://")
                        .map(|(_, r)| r.split(['/', '?', '#']).next().unwrap_or(""))
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h);
                    prop_assert!(
                        host == RW.forwarded_host || authority == RW.upstream_authority,
                        "a foreign URL was rewritten: {} -> {}", u, loc
                    );
                }
                let refresh = h[header::REFRESH].to_str().unwrap();
                let target = refresh.split_once("url=").unwrap().1;
                prop_assert!(target == u || target.starts_with(RW.client_origin), "{}", refresh);
            }

            #[test]
            fn cookies_lose_only_the_forwarded_hosts_domain(
                domain in prop::sample::select(vec![
                    "acme.chalanpro.net", ".acme.chalanpro.net", "chalanpro.net",
                    ".chalanpro.net", "evil.com", "ACME.CHALANPRO.NET",
                ]),
                path in "(/[a-z]{0,6})?",
            ) {
                let cookie = format!("sid=1; Domain={domain}; Path=/{path}; HttpOnly");
                let mut h = HeaderMap::new();
                h.insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).unwrap());
                response(&mut h, &RW);
                let out = h[header::SET_COOKIE].to_str().unwrap();
                prop_assert!(out.starts_with("sid=1;") && out.contains("HttpOnly"), "{}", out);
                if domain.to_ascii_lowercase().contains("evil") {
                    prop_assert_eq!(out, cookie.as_str());
                }
                let kept_domain = out.to_ascii_lowercase().contains("domain=");
                prop_assert!(!kept_domain || out == cookie, "{}", out);
            }
        }
    }
}
