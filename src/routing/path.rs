//! Path normalisation for route matching. The proxy forwards exactly the
//! path the matcher saw, so no request can reach a route the matcher did not
//! choose (`/static/..%2fadmin` stays below `/static`).

use std::borrow::Cow;

/// Normalises a request path (no query):
/// 1. percent-encodings of unreserved characters (RFC 3986 §2.3: ALPHA,
///    DIGIT, `-`, `.`, `_`, `~`) are decoded; other encodings are kept, with
///    upper-case hex (§6.2.2.1); a malformed `%` is encoded as `%25`;
/// 2. dot-segments are removed (§5.2.4), never climbing above the root.
///
/// Encoded slashes (`%2F`) stay encoded: they are data, not separators.
pub fn normalize(path: &str) -> Cow<'_, str> {
    if !needs_work(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    Cow::Owned(remove_dot_segments(&decoded))
}

fn needs_work(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('%') {
        return true;
    }
    // A dot-segment is "." or ".." between slashes or at the end.
    path.split('/').any(|s| s == "." || s == "..")
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                let s = std::str::from_utf8(h).ok()?;
                u8::from_str_radix(s, 16).ok()
            });
            match hex {
                Some(v) if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => {
                    out.push(v as char);
                }
                Some(v) => {
                    out.push_str(&format!("%{v:02X}"));
                }
                None => {
                    out.push_str("%25");
                    i += 1;
                    continue;
                }
            }
            i += 3;
        } else {
            out.push(b as char);
            i += 1;
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn table() {
        let cases = [
            ("/", "/"),
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
            ("/api//x", "/api//x"),
            ("/x%7e", "/x~"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), want, "{input}");
        }
    }

    #[test]
    fn unchanged_paths_are_borrowed() {
        assert!(matches!(
            normalize("/api/x/y.json"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
