//! The normalised host name newtype, made from a `Host` header or a URI
//! authority: lowercase, one trailing dot removed, port split off, IPv6
//! literals understood. Anything else a browser would never send is refused.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// A validated, normalised host name or IP literal, without port.
/// IPv6 literals keep their brackets (`[::1]`) so the value can be written
/// back into a `Host` header as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(String);

/// A request's host: the name plus the port the client used, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost {
    pub name: HostName,
    pub port: Option<u16>,
}

impl HostName {
    /// Parses a bare host (no port). Used for config values too.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() {
            return Err("empty host");
        }
        if raw.starts_with('[') {
            let inner = raw
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .ok_or("unterminated IPv6 literal")?;
            let ip: Ipv6Addr = inner.parse().map_err(|_| "invalid IPv6 literal")?;
            return Ok(Self(format!("[{ip}]")));
        }
        // One trailing dot (the DNS root) is allowed and dropped.
        let name = raw.strip_suffix('.').unwrap_or(raw);
        if name.is_empty() {
            return Err("empty host");
        }
        if name.len() > 253 {
            return Err("host name too long");
        }
        // Validate first, then lowercase in one go: this runs for every
        // request's Host header.
        for label in name.as_bytes().split(|&b| b == b'.') {
            if label.is_empty() {
                return Err("empty label in host name");
            }
            if label.len() > 63 {
                return Err("host name label too long");
            }
            if label.starts_with(b"-") || label.ends_with(b"-") {
                return Err("host name label starts or ends with '-'");
            }
            for &b in label {
                match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => {}
                    b' ' | b'\t' | b'\r' | b'\n' => return Err("whitespace in host"),
                    b'@' => return Err("'@' (user info) in host"),
                    b'/' | b'\\' => return Err("slash in host"),
                    _ => return Err("invalid character in host name"),
                }
            }
        }
        Ok(Self(name.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The IP address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        let s = self.0.trim_start_matches('[').trim_end_matches(']');
        s.parse().ok()
    }

    /// `localhost`, `*.localhost`, or a loopback IP.
    pub fn is_loopback(&self) -> bool {
        match self.ip() {
            Some(ip) => ip.is_loopback(),
            None => self.0 == "localhost" || self.0.ends_with(".localhost"),
        }
    }

    /// The part of this name left of `.{suffix}`, if it lies strictly below it.
    pub fn label_below<'a>(&'a self, suffix: &HostName) -> Option<&'a str> {
        let rest = self.0.strip_suffix(suffix.as_str())?;
        let sub = rest.strip_suffix('.')?;
        (!sub.is_empty()).then_some(sub)
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RequestHost {
    /// Parses a `Host` header value or URI authority (`name[:port]`).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err("whitespace in host");
        }
        if raw.contains('@') {
            return Err("'@' (user info) in host");
        }
        if raw.contains(['/', '\\']) {
            return Err("slash in host");
        }
        let (name, port) = if raw.starts_with('[') {
            match raw.find(']') {
                Some(end) => {
                    let (n, rest) = raw.split_at(end + 1);
                    match rest {
                        "" => (n, None),
                        _ => (
                            n,
                            Some(rest.strip_prefix(':').ok_or("junk after IPv6 literal")?),
                        ),
                    }
                }
                None => return Err("unterminated IPv6 literal"),
            }
        } else {
            match raw.rsplit_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (raw, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("invalid port");
                }
                match p.parse::<u16>() {
                    Ok(0) | Err(_) => return Err("invalid port"),
                    Ok(n) => Some(n),
                }
            }
        };
        Ok(Self {
            name: HostName::parse(name)?,
            port,
        })
    }

    /// `name[:port]` as the client wrote it, normalised.
    pub fn with_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.name),
            None => self.name.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_table() {
        let ok: &[(&str, &str, Option<u16>)] = &[
            ("acme.chalanpro.net:8080", "acme.chalanpro.net", Some(8080)),
            ("ACME.Chalanpro.NET", "acme.chalanpro.net", None),
            ("acme.localhost.", "acme.localhost", None),
            ("acme.localhost.:8080", "acme.localhost", Some(8080)),
            ("localhost", "localhost", None),
            ("127.0.0.1:8080", "127.0.0.1", Some(8080)),
            ("[::1]:8080", "[::1]", Some(8080)),
            ("[::1]", "[::1]", None),
            ("[0:0:0:0:0:0:0:1]", "[::1]", None),
            ("my_host.test", "my_host.test", None),
        ];
        for (raw, name, port) in ok {
            let h = RequestHost::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(h.name.as_str(), *name, "{raw}");
            assert_eq!(h.port, *port, "{raw}");
        }
        let bad = [
            "",
            ":8080",
            "a b",
            "a\tb",
            "user@host",
            "host/path",
            "host\\x",
            "a..b",
            ".a",
            "..",
            "host:",
            "host:0",
            "host:65536",
            "host:80a",
            "host:-1",
            "[::1",
            "[::1]x",
            "[zz]",
            "-a.com",
            "a-.com",
            "ho%st",
            "héllo",
        ];
        for raw in bad {
            assert!(
                RequestHost::parse(raw).is_err(),
                "{raw:?} should be refused"
            );
        }
    }

    #[test]
    fn loopback_and_labels() {
        let h = |s| HostName::parse(s).unwrap();
        assert!(h("localhost").is_loopback());
        assert!(h("acme.localhost").is_loopback());
        assert!(h("127.0.0.2").is_loopback());
        assert!(h("[::1]").is_loopback());
        assert!(!h("example.com").is_loopback());
        assert!(!h("notlocalhost").is_loopback());
        assert_eq!(
            h("acme.chalanpro.net").label_below(&h("chalanpro.net")),
            Some("acme")
        );
        assert_eq!(
            h("x.acme.chalanpro.net").label_below(&h("chalanpro.net")),
            Some("x.acme")
        );
        assert_eq!(h("chalanpro.net").label_below(&h("chalanpro.net")), None);
        assert_eq!(
            h("evilchalanpro.net").label_below(&h("chalanpro.net")),
            None
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Host-like text: the characters hosts are made of, and some that
        /// they must not contain.
        fn host_like() -> impl Strategy<Value = String> {
            "[a-zA-Z0-9.\\-\\[\\]:_ %@/]{0,40}"
        }

        proptest! {
            #![proptest_config(crate::testing::proptest_config())]

            #[test]
            fn parsing_never_panics(s in any::<String>()) {
                let _ = HostName::parse(&s);
                let _ = RequestHost::parse(&s);
            }

            #[test]
            fn normalisation_is_idempotent(s in host_like()) {
                if let Ok(h) = HostName::parse(&s) {
                    prop_assert_eq!(HostName::parse(h.as_str()), Ok(h.clone()));
                }
                if let Ok(h) = RequestHost::parse(&s) {
                    prop_assert_eq!(RequestHost::parse(&h.with_port()), Ok(h.clone()));
                }
            }
        }
    }
}
