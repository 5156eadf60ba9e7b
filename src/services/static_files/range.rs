//! Single byte ranges (RFC 9110 §14): `Range: bytes=…` and `If-Range`.

use std::ops::Range;

use http::HeaderValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ranged {
    /// No usable Range: serve the whole representation with 200. Multiple
    /// ranges land here too: a full 200 bounds the work a request can ask
    /// for, which RFC 9110 §14.2 allows.
    Full,
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses a `Range` header against a representation of `len` bytes.
/// An invalid header is ignored (§14.2: "MAY ignore").
pub(super) fn parse(header: &[u8], len: u64) -> Ranged {
    let Ok(header) = std::str::from_utf8(header) else {
        return Ranged::Full;
    };
    let Some((unit, spec)) = header.split_once('=') else {
        return Ranged::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Full;
    };
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Too many digits to be a position in any file: clamp, so
        // `bytes=99999999999999999999-` is unsatisfiable, not ignored.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    match (first, last) {
        ("", suffix) => match number(suffix) {
            None => Ranged::Full,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Partial(len - n.min(len)..len),
        },
        (first, "") => match number(first) {
            None => Ranged::Full,
            Some(start) if start >= len => Ranged::Unsatisfiable,
            Some(start) => Ranged::Partial(start..len),
        },
        (first, last) => match (number(first), number(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= len {
                    Ranged::Unsatisfiable
                } else {
                    Ranged::Partial(start..end.saturating_add(1).min(len))
                }
            }
            _ => Ranged::Full,
        },
    }
}

/// RFC 9110 §13.1.5: the Range applies only if `If-Range` still matches the
/// representation: its strong entity tag, or exactly its Last-Modified date.
pub(super) fn if_range_matches(
    if_range: &HeaderValue,
    etag: &HeaderValue,
    last_modified: u64,
) -> bool {
    let v = if_range.as_bytes();
    if v.starts_with(b"\"") {
        return v == etag.as_bytes();
    }
    if v.starts_with(b"W/") {
        return false;
    }
    super::conditional::http_date(if_range) == Some(last_modified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges() {
        let p = |h: &str| parse(h.as_bytes(), 100);
        assert_eq!(p("bytes=0-9"), Ranged::Partial(0..10));
        assert_eq!(p("bytes=10-"), Ranged::Partial(10..100));
        assert_eq!(p("bytes=-5"), Ranged::Partial(95..100));
        assert_eq!(p("bytes=-500"), Ranged::Partial(0..100));
        assert_eq!(p("bytes=90-200"), Ranged::Partial(90..100));
        assert_eq!(p("BYTES=0-0"), Ranged::Partial(0..1));
        assert_eq!(p("bytes=99-99"), Ranged::Partial(99..100));
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        let p = |h: &str| parse(h.as_bytes(), 100);
        assert_eq!(p("bytes=100-"), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=100-200"), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=99999999999999999999-"), Ranged::Unsatisfiable);
        assert_eq!(parse(b"bytes=-1", 0), Ranged::Unsatisfiable);
        assert_eq!(p("bytes=0-1,5-6"), Ranged::Full);
        assert_eq!(p("bytes=5-1"), Ranged::Full);
        assert_eq!(p("bytes=a-b"), Ranged::Full);
        assert_eq!(p("bytes=-"), Ranged::Full);
        assert_eq!(p("bytes=+1-2"), Ranged::Full);
        assert_eq!(p("items=0-1"), Ranged::Full);
        assert_eq!(p("bytes 0-1"), Ranged::Full);
    }

    #[test]
    fn if_range() {
        let etag = HeaderValue::from_static("\"abc\"");
        let lm = 1_700_000_000;
        let date = HeaderValue::from_str(&httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(lm),
        ))
        .unwrap();
        assert!(if_range_matches(&etag, &etag, lm));
        assert!(!if_range_matches(
            &HeaderValue::from_static("\"x\""),
            &etag,
            lm
        ));
        assert!(!if_range_matches(
            &HeaderValue::from_static("W/\"abc\""),
            &etag,
            lm
        ));
        assert!(if_range_matches(&date, &etag, lm));
        assert!(!if_range_matches(&date, &etag, lm + 1));
        assert!(!if_range_matches(
            &HeaderValue::from_static("garbage"),
            &etag,
            lm
        ));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        fn range_like() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                any::<Vec<u8>>(),
                "(bytes|BYTES|items)?=?[0-9 ,\\-]{0,30}".prop_map(String::into_bytes),
            ]
        }

        proptest! {
            #![proptest_config(crate::testing::proptest_config())]

            #[test]
            fn a_partial_range_lies_inside_the_file(header in range_like(), len in 0u64..10_000) {
                if let Ranged::Partial(r) = parse(&header, len) {
                    prop_assert!(r.start < r.end && r.end <= len, "{:?} of {}", r, len);
                }
            }
        }
    }
}
