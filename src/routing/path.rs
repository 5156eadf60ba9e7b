//! Path normalisation for route matching. The proxy forwards exactly the
//! path the matcher saw, so no request can reach a route the matcher did not
//! choose (`/static/..%2fadmin` stays below `/static`).

use std::borrow::Cow;

/// Normalises a request path (no query), byte by byte:
/// 1. percent-encodings of unreserved characters (RFC 3986 §2.3: ALPHA,
///    DIGIT, `-`, `.`, `_`, `~`) are decoded, once; other encodings are
///    kept, with upper-case hex (§6.2.2.1); a malformed `%` is encoded as
///    `%25`;
/// 2. bytes that may not stand raw in a request target are percent-encoded
///    with upper-case hex: every non-ASCII byte, so a raw UTF-8 `é` becomes
///    `%C3%A9`, as browsers send it (RFC 3987 §3.1), and, from callers other
///    than hyper (which refuses them), controls, space, `#`, `<`, `>`, `?`,
///    `` ` `` and DEL. The ASCII that hyper lets through is kept as it came
///    (`"`, `{`, `}`, `\`, `|`, `^`, `[`, `]` included);
/// 3. dot-segments are removed (§5.2.4), never climbing above the root.
///
/// Encoded slashes (`%2F`) stay encoded: they are data, not separators.
///
/// The result is ASCII and a valid origin-form path. Non-ASCII is encoded
/// rather than kept raw so that each path has one spelling: `/café` and
/// `/caf%C3%A9` match the same routes, share one static-cache entry and
/// reach the backend alike, and the backend never sees raw non-ASCII, which
/// RFC 9112 §3.2 does not allow and strict servers refuse (`http::Uri`
/// itself would accept raw UTF-8). The static lookup decodes each segment
/// once, so both spellings find a file named `café.txt`.
pub fn normalize(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    if !needs_work(bytes) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(bytes);
    Cow::Owned(remove_dot_segments(&decoded))
}

/// Bytes kept as they are: the ones `http::Uri` accepts raw in a path.
fn is_kept(b: u8) -> bool {
    matches!(
        b,
        0x21 | 0x24..=0x3B | 0x3D | 0x40..=0x5F | 0x61..=0x7A | 0x7C | 0x7E | b'"' | b'{' | b'}'
    )
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn needs_work(path: &[u8]) -> bool {
    if path.first() != Some(&b'/') || path.iter().any(|&b| b == b'%' || !is_kept(b)) {
        return true;
    }
    // A dot-segment is "." or ".." between slashes or at the end.
    path.split(|&b| b == b'/').any(|s| s == b"." || s == b"..")
}

fn hex_value(h: u8) -> Option<u8> {
    match h {
        b'0'..=b'9' => Some(h - b'0'),
        b'a'..=b'f' => Some(h - b'a' + 10),
        b'A'..=b'F' => Some(h - b'A' + 10),
        _ => None,
    }
}

fn push_encoded(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]]);
}

/// Steps 1 and 2; the result is ASCII and starts with `/`.
fn decode_unreserved(path: &[u8]) -> String {
    let mut out = Vec::with_capacity(path.len() + 1);
    if path.first() != Some(&b'/') {
        out.push(b'/');
    }
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let escaped = match path.get(i + 1..i + 3) {
                Some(&[hi, lo]) => hex_value(hi).zip(hex_value(lo)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            match escaped {
                Some(v) if is_unreserved(v) => out.push(v),
                Some(v) => push_encoded(&mut out, v),
                None => {
                    push_encoded(&mut out, b'%');
                    i += 1;
                    continue;
                }
            }
            i += 3;
        } else {
            if is_kept(b) {
                out.push(b);
            } else {
                push_encoded(&mut out, b);
            }
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII is written")
}

fn remove_dot_segments(path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                stack.pop();
                trailing_slash = i == last;
            }
            s => {
                stack.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether a file or folder name is hidden: never served, never reported
/// as a change. Dotfiles are (`.env`, `.git`, editors' swap files), except
/// a top-level `.well-known` (RFC 8615 well-known URIs). `top` says whether
/// the name is directly below the served root.
pub(crate) fn is_hidden(name: &str, top: bool) -> bool {
    name.starts_with('.') && !(top && name == ".well-known")
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("api/x", "/api/x"),
            ("/api/x", "/api/x"),
            ("/api/./x", "/api/x"),
            ("/api/../admin", "/admin"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/%61pi/x", "/api/x"),
            ("/static/%2e%2e/admin", "/admin"),
            ("/static/..%2fadmin", "/static/..%2Fadmin"),
            ("/static/%2E%2E%2Fadmin", "/static/..%2Fadmin"),
            ("/a%20b", "/a%20b"),
            ("/a%zzb", "/a%25zzb"),
            ("/a%", "/a%25"),
            ("/a%4", "/a%254"),
            ("/%%41", "/%25A"),
            // `u8::from_str_radix` would take "+f" as 15.
            ("/a%+fb", "/a%25+fb"),
            ("/api//x", "/api//x"),
            ("/x%7e", "/x~"),
            // Raw UTF-8 next to an escape: each byte once, encoded.
            ("/api/café/x%20y", "/api/caf%C3%A9/x%20y"),
            ("/日本", "/%E6%97%A5%E6%9C%AC"),
            // Raw and encoded spellings meet; never decoded to raw bytes.
            ("/café.txt", "/caf%C3%A9.txt"),
            ("/caf%C3%A9.txt", "/caf%C3%A9.txt"),
            ("/caf%c3%a9.txt", "/caf%C3%A9.txt"),
            // Invalid UTF-8 escapes stay escapes.
            ("/%FF", "/%FF"),
            ("/%ff/x", "/%FF/x"),
            ("/a%C3", "/a%C3"),
            ("/%C0%AE%C0%AE/x", "/%C0%AE%C0%AE/x"),
            // Mixed-case hex: unreserved decoded, the rest upper-cased.
            ("/%4a%4B%7e%7E", "/JK~~"),
            ("/%3a%3A%c3%A9", "/%3A%3A%C3%A9"),
            // NUL stays encoded.
            ("/a%00b", "/a%00b"),
            ("/%00/..", "/"),
            // Encoded slash and backslash stay data; a raw backslash is kept.
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb/..", "/"),
            ("/a%5cb", "/a%5Cb"),
            ("/a\\b", "/a\\b"),
            ("/a/%2e%2e%5c%2e%2e/b", "/a/..%5C../b"),
            // Dot segments spelt with escapes, next to other escapes.
            ("/a/%2E/b", "/a/b"),
            ("/a/.%2e/b", "/b"),
            ("/a/%2e%2E/%2E%2e/b", "/b"),
            ("/a/..%2F/b", "/a/..%2F/b"),
            ("/é/../x%20y", "/x%20y"),
            ("/a/%2e%2e%2e", "/a/..."),
            ("/a/%2e%2e%20", "/a/..%20"),
            // Decoded once: a double encoding is not a dot segment.
            ("/a/%252e%252e/b", "/a/%252e%252e/b"),
            // Bytes hyper refuses, should another caller pass them.
            ("/a b#c?d", "/a%20b%23c%3Fd"),
            ("/\u{7f}\t", "/%7F%09"),
            // ASCII that hyper lets through stays as it came.
            ("/{\"a\"}|^[]", "/{\"a\"}|^[]"),
        ];
        for (input, want) in cases {
            let got = normalize(input);
            assert_eq!(got, want, "{input:?}");
            assert!(
                got.parse::<http::Uri>().is_ok(),
                "{input:?} -> {got:?} is not a URI"
            );
        }
    }

    #[test]
    fn unchanged_paths_are_borrowed() {
        for clean in ["/api/x/y.json", "/", "/a//b/", "/{x}", "/a..b/.c"] {
            assert!(
                matches!(normalize(clean), std::borrow::Cow::Borrowed(_)),
                "{clean}"
            );
        }
        assert!(matches!(normalize("/é"), std::borrow::Cow::Owned(_)));
    }

    /// Upstream URIs are built from the result with `parse::<http::Uri>()`;
    /// raw UTF-8 would parse too (http 1.x), but is not what we send.
    #[test]
    fn raw_utf8_would_parse_but_is_encoded() {
        assert!("/api/café".parse::<http::Uri>().is_ok());
        assert_eq!(normalize("/api/café"), "/api/caf%C3%A9");
    }

    /// `ProptestConfig::with_cases` ignores `PROPTEST_CASES`; `default()`
    /// reads it, so only its absence sets the modest default here.
    use crate::testing::proptest_config as config;

    /// Paths built from the pieces that matter: separators, dots, escapes
    /// of dots and slashes, broken escapes, non-ASCII.
    fn tricky() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("."),
            Just(".."),
            Just("%"),
            Just("%2e"),
            Just("%2E"),
            Just("%2f"),
            Just("%2F"),
            Just("%5c"),
            Just("%25"),
            Just("%C3%A9"),
            Just("%c3"),
            Just("%ff"),
            Just("%00"),
            Just("%4"),
            Just("%+f"),
            Just("é"),
            Just("日"),
            Just("\\"),
            Just("a"),
            Just("B"),
            Just("~"),
            Just(" "),
            Just("?"),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    /// Anything hyper could hand over, and more: arbitrary bytes made text
    /// the lossy way, arbitrary strings, and tricky compositions.
    fn any_path() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|v| String::from_utf8_lossy(&v).into_owned()),
            any::<String>(),
            tricky(),
            tricky().prop_map(|s| format!("/{s}")),
        ]
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn normal_form(p in any_path()) {
            let once = normalize(&p);
            prop_assert!(once.starts_with('/'), "{:?}", once);
            prop_assert!(once.is_ascii(), "{:?}", once);
            prop_assert!(
                once.split('/').all(|s| s != "." && s != ".."),
                "dot segment in {:?}",
                once
            );
            prop_assert!(once.parse::<http::Uri>().is_ok(), "{:?}", once);
            let twice = normalize(&once);
            prop_assert_eq!(&twice, &once);
        }

        /// Separators only ever disappear (dot segments): an encoded slash
        /// never becomes one.
        #[test]
        fn no_new_separators(p in any_path()) {
            let out = normalize(&p);
            let before = p.matches('/').count() + usize::from(!p.starts_with('/'));
            prop_assert!(out.matches('/').count() <= before, "{:?} -> {:?}", p, out);
        }

        /// Without dots or escapes to resolve, decoding the result once
        /// gives the input back: non-ASCII survives, byte for byte.
        #[test]
        fn text_survives(segs in proptest::collection::vec("[^/.%]{0,8}", 0..6)) {
            let p = format!("/{}", segs.join("/"));
            let out = normalize(&p);
            let back = percent_encoding::percent_decode_str(&out).decode_utf8();
            prop_assert_eq!(back.as_deref(), Ok(p.as_str()));
        }
    }
}
