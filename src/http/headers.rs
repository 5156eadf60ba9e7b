//! Header rules a proxy must apply: hop-by-hop stripping (RFC 9110 §7.6.1).

use http::HeaderMap;
use http::header::{self, Entry, HeaderName, HeaderValue};

/// Headers that are hop-by-hop by definition, besides `Connection` itself,
/// which can name more.
const HOP_BY_HOP: [HeaderName; 9] = [
    HeaderName::from_static("keep-alive"),
    // Only meaningful with `Upgrade: h2c` (RFC 7540 §3.2), which is never
    // forwarded.
    HeaderName::from_static("http2-settings"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Removes hop-by-hop headers in place: `Connection`, every header it names,
/// and the fixed list (RFC 9110 §7.6.1).
///
/// This runs twice per proxied request, so it avoids hashing every
/// hop-by-hop name into the map: one look-up for `Connection`, then one pass
/// over the names present, which most messages end with.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Entry::Occupied(connection) = headers.entry(header::CONNECTION) {
        let mut values = connection.remove_entry_mult().1;
        // Almost always a single value; more are collected (owned, so the
        // map can be edited while reading them).
        let first = values.next();
        let rest: Vec<HeaderValue> = values.collect();
        for value in first.iter().chain(&rest) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',') {
                // A token that is not a valid header name names nothing.
                headers.remove(token.trim());
            }
        }
    }
    if headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// Whether a field named `name` is hop-by-hop by definition (`Connection`
/// or the fixed list [`strip_hop_by_hop`] removes), by its bytes: what the
/// fast HTTP/1 path asks of a response head to know these rules would only
/// drop such fields.
pub(crate) fn is_hop_by_hop_name(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"connection")
        || HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_str().as_bytes()))
}

/// The comma-separated tokens of every `name` header, trimmed (RFC 9110
/// §5.6.1 lists); values that are not text name nothing.
pub(crate) fn tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// True when a `name` list holds `token` (case-insensitive).
pub(crate) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// True when `Connection` lists the token, e.g. `upgrade`.
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    has_token(headers, header::CONNECTION, token)
}

/// What the client's `Accept` says it takes, as far as portero's own
/// answers care. The one reading of `Accept` every service uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepts {
    /// Names `text/html`: a browser navigation.
    Html,
    /// Names `application/json` (and not HTML): an API client.
    Json,
    /// Anything, by `*/*` only (fetch() and curl by default).
    Any,
    /// Something else, or no `Accept` at all.
    Other,
}

impl Accepts {
    pub(crate) fn of(headers: &HeaderMap) -> Accepts {
        let (mut json, mut any) = (false, false);
        for t in tokens(headers, header::ACCEPT) {
            // The media range, without parameters such as `;q=0.8`.
            let range = t.split(';').next().unwrap_or("").trim();
            if range.eq_ignore_ascii_case("text/html") {
                return Accepts::Html;
            }
            json |= range.eq_ignore_ascii_case("application/json");
            any |= range == "*/*";
        }
        match (json, any) {
            (true, _) => Accepts::Json,
            (false, true) => Accepts::Any,
            (false, false) => Accepts::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "keep-alive, X-Secret, bogus header".parse().unwrap(),
        );
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("trailer", "x".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        strip_hop_by_hop(&mut h);
        // The order of different fields carries no meaning (RFC 9110 §5.3).
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-kept"]);
    }

    #[test]
    fn every_connection_field_line_is_honoured() {
        let mut h = HeaderMap::new();
        h.append("connection", "x-one".parse().unwrap());
        h.append("connection", "X-Two, close".parse().unwrap());
        h.insert("x-one", "1".parse().unwrap());
        h.insert("x-two", "2".parse().unwrap());
        h.insert("x-three", "3".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-three"]);
    }

    #[test]
    fn connection_tokens() {
        let mut h = HeaderMap::new();
        h.append("connection", "keep-alive".parse().unwrap());
        h.append("connection", " Upgrade ".parse().unwrap());
        assert!(connection_has(&h, "upgrade"));
        assert!(!connection_has(&h, "close"));
    }
}
