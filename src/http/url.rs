//! Absolute URLs found in headers (`Location`, `Origin`, `Referer`,
//! `Refresh`), split by `http::Uri`, with the part after the authority kept
//! byte for byte (`Uri` drops a fragment and adds a `/` to an empty path).

/// An absolute `http` or `https` URL: its scheme, its authority as
/// written, and everything after the authority.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Absolute<'a> {
    pub(crate) scheme: &'static str,
    pub(crate) authority: &'a str,
    pub(crate) rest: &'a str,
}

/// `url` split, or `None` when it is relative, not a valid URI, or of
/// another scheme.
pub(crate) fn absolute(url: &str) -> Option<Absolute<'_>> {
    use http::uri::Scheme;
    let uri: http::Uri = url.parse().ok()?;
    let scheme = match uri.scheme()? {
        s if *s == Scheme::HTTP => "http",
        s if *s == Scheme::HTTPS => "https",
        _ => return None,
    };
    // A parsed absolute URI starts with `<scheme>://<authority>` as written.
    let start = scheme.len() + "://".len();
    let end = start + uri.authority()?.as_str().len();
    Some(Absolute {
        scheme,
        authority: url.get(start..end)?,
        rest: url.get(end..)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_keeping_the_rest_as_written() {
        let a = |scheme, authority, rest| {
            Some(Absolute {
                scheme,
                authority,
                rest,
            })
        };
        assert_eq!(absolute("http://a.b:8/x?y#z"), a("http", "a.b:8", "/x?y#z"));
        assert_eq!(absolute("HTTP://A.B"), a("http", "A.B", ""));
        assert_eq!(absolute("https://[::1]:8#f"), a("https", "[::1]:8", "#f"));
        assert_eq!(absolute("ftp://h/x"), None);
        assert_eq!(absolute("/relative"), None);
        assert_eq!(absolute("http://a/ b"), None);
        assert_eq!(absolute("not a url"), None);
    }
}
