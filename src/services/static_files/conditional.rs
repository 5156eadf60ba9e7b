//! Conditional requests: RFC 9110 §13.2.2 preconditions, evaluated in the
//! order the RFC gives.

use std::time::UNIX_EPOCH;

use http::{HeaderMap, HeaderValue, Method, header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Precondition {
    /// Serve the representation (Range handling, step 5, comes next).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Evaluates the preconditions of RFC 9110 §13.2.2 for a representation
/// that exists, with strong entity tag `etag` and Last-Modified
/// `last_modified` (seconds since the epoch). Step 5 (If-Range) belongs to
/// Range handling and is done by the caller.
pub(super) fn evaluate(
    method: &Method,
    headers: &HeaderMap,
    etag: &HeaderValue,
    last_modified: u64,
) -> Precondition {
    let get_or_head = method == Method::GET || method == Method::HEAD;
    // 1. If-Match: false (no current entity tag matches, by strong
    //    comparison) → 412.
    if let Some(if_match) = headers.get(header::IF_MATCH) {
        if !etag_list_matches(if_match.as_bytes(), etag.as_bytes(), Comparison::Strong) {
            return Precondition::Failed;
        }
    }
    // 2. No If-Match, and If-Unmodified-Since is a valid date: false (the
    //    representation was modified after it) → 412.
    else if let Some(since) = headers.get(header::IF_UNMODIFIED_SINCE).and_then(http_date) {
        if last_modified > since {
            return Precondition::Failed;
        }
    }
    // 3. If-None-Match: false (some entity tag matches, by weak comparison)
    //    → 304 for GET and HEAD, 412 otherwise.
    if let Some(if_none_match) = headers.get(header::IF_NONE_MATCH) {
        if etag_list_matches(if_none_match.as_bytes(), etag.as_bytes(), Comparison::Weak) {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    }
    // 4. GET or HEAD, no If-None-Match, and If-Modified-Since is a valid
    //    date: false (not modified since) → 304.
    else if get_or_head {
        if let Some(since) = headers.get(header::IF_MODIFIED_SINCE).and_then(http_date) {
            if last_modified <= since {
                return Precondition::NotModified;
            }
        }
    }
    // 6. Otherwise perform the request (after step 5, If-Range).
    Precondition::Proceed
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// True when `*` or any entity tag in the comma-separated `list` matches
/// `etag` (RFC 9110 §8.8.3.2). Tags are parsed, not split on commas: a
/// quoted tag may itself contain a comma.
fn etag_list_matches(list: &[u8], etag: &[u8], cmp: Comparison) -> bool {
    let (ours_weak, ours) = match etag.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, etag),
    };
    let mut rest = list;
    loop {
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return false;
        }
        if rest[0] == b'*' {
            return true;
        }
        let (weak, tagged) = match rest.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if tagged.first() != Some(&b'"') {
            return false;
        }
        let Some(close) = tagged[1..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &tagged[..close + 2];
        let matches = tag == ours
            && match cmp {
                Comparison::Strong => !weak && !ours_weak,
                Comparison::Weak => true,
            };
        if matches {
            return true;
        }
        rest = &tagged[close + 2..];
    }
}

/// An HTTP date as whole seconds since the epoch.
pub(super) fn http_date(v: &HeaderValue) -> Option<u64> {
    let t = httpdate::parse_http_date(v.to_str().ok()?).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Precondition::*;
    use std::time::Duration;

    const LM: u64 = 1_700_000_000;

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn eval(method: Method, hs: &[(&str, &str)]) -> Precondition {
        let mut h = HeaderMap::new();
        for (k, v) in hs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        evaluate(&method, &h, &HeaderValue::from_static("\"v1\""), LM)
    }

    #[test]
    fn step_1_if_match() {
        assert_eq!(eval(Method::GET, &[("if-match", "\"v1\"")]), Proceed);
        assert_eq!(eval(Method::GET, &[("if-match", "\"x\", \"v1\"")]), Proceed);
        assert_eq!(eval(Method::GET, &[("if-match", "*")]), Proceed);
        assert_eq!(eval(Method::GET, &[("if-match", "\"x\"")]), Failed);
        // Strong comparison: a weak tag never matches.
        assert_eq!(eval(Method::GET, &[("if-match", "W/\"v1\"")]), Failed);
        // If-Match wins over If-Unmodified-Since (step 2 is skipped).
        let old = date(LM - 100);
        assert_eq!(
            eval(
                Method::GET,
                &[("if-match", "\"v1\""), ("if-unmodified-since", &old)]
            ),
            Proceed
        );
    }

    #[test]
    fn step_2_if_unmodified_since() {
        assert_eq!(
            eval(Method::GET, &[("if-unmodified-since", &date(LM))]),
            Proceed
        );
        assert_eq!(
            eval(Method::GET, &[("if-unmodified-since", &date(LM - 1))]),
            Failed
        );
        assert_eq!(
            eval(Method::GET, &[("if-unmodified-since", "not a date")]),
            Proceed
        );
    }

    #[test]
    fn step_3_if_none_match() {
        assert_eq!(
            eval(Method::GET, &[("if-none-match", "\"v1\"")]),
            NotModified
        );
        assert_eq!(
            eval(Method::HEAD, &[("if-none-match", "W/\"v1\"")]),
            NotModified
        );
        assert_eq!(
            eval(Method::GET, &[("if-none-match", "\"a,b\", \"v1\"")]),
            NotModified
        );
        assert_eq!(eval(Method::GET, &[("if-none-match", "*")]), NotModified);
        assert_eq!(eval(Method::GET, &[("if-none-match", "\"x\"")]), Proceed);
        assert_eq!(eval(Method::POST, &[("if-none-match", "\"v1\"")]), Failed);
        // If-None-Match wins over If-Modified-Since (step 4 is skipped).
        assert_eq!(
            eval(
                Method::GET,
                &[("if-none-match", "\"x\""), ("if-modified-since", &date(LM))]
            ),
            Proceed
        );
    }

    #[test]
    fn step_4_if_modified_since() {
        assert_eq!(
            eval(Method::GET, &[("if-modified-since", &date(LM))]),
            NotModified
        );
        assert_eq!(
            eval(Method::GET, &[("if-modified-since", &date(LM + 5))]),
            NotModified
        );
        assert_eq!(
            eval(Method::GET, &[("if-modified-since", &date(LM - 1))]),
            Proceed
        );
        assert_eq!(
            eval(Method::POST, &[("if-modified-since", &date(LM))]),
            Proceed
        );
    }

    #[test]
    fn order_412_before_304() {
        assert_eq!(
            eval(
                Method::GET,
                &[("if-match", "\"x\""), ("if-none-match", "\"v1\"")]
            ),
            Failed
        );
    }

    #[test]
    fn malformed_lists_do_not_match() {
        assert!(!etag_list_matches(b"v1", b"\"v1\"", Comparison::Weak));
        assert!(!etag_list_matches(b"\"v1", b"\"v1\"", Comparison::Weak));
        assert!(!etag_list_matches(b"", b"\"v1\"", Comparison::Weak));
    }
}
