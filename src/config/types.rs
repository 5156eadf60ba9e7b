//! Validated value types used by the typed config: each has one `parse`
//! that turns a raw string into a value routing can trust.

use std::fmt;
use std::time::Duration;

use super::file::Scalar;

/// Parses a duration as humantime does ("500ms", "10s", "2m", "1h 30m",
/// "365d"), or a bare number of seconds (an integer, or a string of digits).
pub fn parse_duration(v: &Scalar) -> Result<Duration, String> {
    let s = match v {
        Scalar::Int(n) if *n >= 0 => return Ok(Duration::from_secs(*n as u64)),
        Scalar::Int(n) => return Err(format!("{n} is negative; use a duration like \"10s\"")),
        Scalar::Str(s) => s.trim(),
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?} is too large"));
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("{s:?} is not a duration ({e}); write e.g. \"500ms\", \"10s\", \"2m\", \"365d\"")
    })
}

/// Parses "512KiB", "10MB", "64MiB", "1GB" or a bare number of bytes.
pub fn parse_size(v: &Scalar) -> Result<u64, String> {
    let s = match v {
        Scalar::Int(n) if *n >= 0 => return Ok(*n as u64),
        Scalar::Int(n) => return Err(format!("{n} is negative; use a size like \"10MB\"")),
        Scalar::Str(s) => s.trim(),
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write e.g. \"512KiB\", \"10MB\""))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use B, KB, KiB, MB, MiB, GB or GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A route's path prefix: starts with `/`, no trailing slash (except `/`
/// itself), no empty, `.` or `..` segments, no `?` or `#`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutePrefix(String);

impl RoutePrefix {
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("{s:?} must start with \"/\""));
        }
        if s.contains(['?', '#', '%', '\\']) || s.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "{s:?} may not contain whitespace, '?', '#', '%' or '\\'"
            ));
        }
        let trimmed = s.trim_end_matches('/');
        if trimmed.is_empty() {
            return Ok(Self("/".into()));
        }
        if trimmed[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(format!("{s:?} has an empty, \".\" or \"..\" segment"));
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `path` (already normalised) is this prefix or lies below it,
    /// on whole segments: `/api` matches `/api` and `/api/x`, never `/apix`.
    pub fn matches(&self, path: &str) -> bool {
        if self.0 == "/" {
            return true;
        }
        match path.strip_prefix(self.0.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

impl fmt::Display for RoutePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An upstream's base URL: http or https, a host, an optional port and an
/// optional base path (no query or fragment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Without trailing slash; empty for none.
    pub base_path: String,
}

impl UpstreamUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => http::uri::Scheme::HTTP,
            Some("https") => http::uri::Scheme::HTTPS,
            Some(other) => {
                return Err(format!(
                    "{s:?}: scheme {other:?} is not supported (use http:// or https://)"
                ));
            }
            None => {
                return Err(format!(
                    "{s:?} has no scheme; write it like \"http://127.0.0.1:8000\""
                ));
            }
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{s:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "{s:?}: user info in upstream URLs is not supported"
            ));
        }
        if authority.host().is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        if uri.query().is_some() {
            return Err(format!("{s:?}: an upstream URL may not have a query"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(Self {
            scheme,
            authority,
            base_path,
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == http::uri::Scheme::HTTPS
    }

    /// The port to connect to, defaulted from the scheme.
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.is_https() { 443 } else { 80 })
    }

    /// The host without brackets for IPv6 literals.
    pub fn host(&self) -> &str {
        self.authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Scalar {
        Scalar::Str(v.into())
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration(&s("500ms")), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(&s("10s")), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(&s("2m")), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(&Scalar::Int(3)), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration(&s("7")), Ok(Duration::from_secs(7)));
        assert_eq!(
            parse_duration(&s("365d")),
            Ok(Duration::from_secs(365 * 86_400))
        );
        assert_eq!(parse_duration(&s("1h 30m")), Ok(Duration::from_secs(5400)));
        assert!(parse_duration(&s("10 parsecs")).is_err());
        assert!(parse_duration(&s("abc")).is_err());
        assert!(parse_duration(&Scalar::Int(-1)).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(&s("64MiB")), Ok(64 << 20));
        assert_eq!(parse_size(&s("10MB")), Ok(10_000_000));
        assert_eq!(parse_size(&Scalar::Int(7)), Ok(7));
        assert!(parse_size(&s("3 furlongs")).is_err());
        assert!(parse_size(&s("99999999999999999999GiB")).is_err());
    }

    #[test]
    fn prefixes() {
        assert_eq!(RoutePrefix::parse("/api/").unwrap().as_str(), "/api");
        assert_eq!(RoutePrefix::parse("/").unwrap().as_str(), "/");
        assert!(RoutePrefix::parse("api").is_err());
        assert!(RoutePrefix::parse("/a//b").is_err());
        assert!(RoutePrefix::parse("/a/../b").is_err());
        assert!(RoutePrefix::parse("/a?b").is_err());
        let p = RoutePrefix::parse("/api").unwrap();
        assert!(p.matches("/api"));
        assert!(p.matches("/api/x"));
        assert!(!p.matches("/apix"));
        assert!(!p.matches("/ap"));
        assert!(RoutePrefix::parse("/").unwrap().matches("/anything"));
    }

    #[test]
    fn upstream_urls() {
        let u = UpstreamUrl::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(u.port(), 8000);
        assert_eq!(u.base_path, "");
        assert_eq!(u.to_string(), "http://127.0.0.1:8000");
        let u = UpstreamUrl::parse("https://example.com/base/").unwrap();
        assert_eq!(u.port(), 443);
        assert_eq!(u.base_path, "/base");
        assert!(UpstreamUrl::parse("ftp://x").is_err());
        assert!(UpstreamUrl::parse("127.0.0.1:8000").is_err());
        assert!(UpstreamUrl::parse("http://u:p@x").is_err());
        assert!(UpstreamUrl::parse("http://x/?q=1").is_err());
        assert_eq!(UpstreamUrl::parse("http://[::1]:9/").unwrap().host(), "::1");
    }
}
