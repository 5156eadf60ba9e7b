//! Per-file response policy decided by the file name: content type and
//! cache lifetime.

use http::HeaderValue;

pub(super) const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub(super) const NO_CACHE: &str = "no-cache";

/// `Content-Type` from the extension, with `charset=utf-8` for text types
/// (build tools emit UTF-8; without a charset browsers guess).
pub(super) fn content_type(name: &str) -> HeaderValue {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml")
        || matches!(mime.suffix().map(|s| s.as_str()), Some("json" | "xml"));
    let value = if textual && mime.get_param("charset").is_none() {
        format!("{}; charset=utf-8", mime.essence_str())
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

pub(super) fn is_html(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".html") || lower.ends_with(".htm")
}

/// `Cache-Control`: content-hashed names never change, so browsers may keep
/// them for a year without asking; everything else (index.html above all)
/// must be revalidated on every use.
///
/// A name whose tail could be an all-letter hash or a word
/// (`index-qwfkztbd.js`, `about-settings.js`) counts as hashed only if
/// `siblings` (the other names in its folder, asked only then) are all
/// hash-shaped, at least two of them surely: a bundler's output folder,
/// which holds nothing else. A wrongly immutable file would stay stale for a year; a missed
/// hash only costs a revalidation.
pub(super) fn cache_control(name: &str, siblings: impl FnOnce() -> Vec<String>) -> HeaderValue {
    let hashed = is_hashed(name)
        || (maybe_hashed(name) && {
            let others = siblings();
            let others = || {
                others
                    .iter()
                    .map(|n| strip_derived(n))
                    .filter(|n| *n != name)
            };
            others().all(|n| is_hashed(n) || maybe_hashed(n))
                && others().filter(|n| is_hashed(n)).count() >= 2
        });
    HeaderValue::from_static(if hashed && !is_html(name) {
        IMMUTABLE
    } else {
        NO_CACHE
    })
}

/// True when the file name carries a content hash, as bundlers write them:
/// - webpack/Vue CLI `[name].[contenthash:8].js`: a `.`- or `-`-separated
///   segment of at least 8 hex digits (`app.3f9a1c2b.js`,
///   `chunk-vendors.a1b2c3d4.js`);
/// - Vite/Rollup `[name]-[hash].js`: the stem ends in `-` or `.` and 8
///   base64url characters (`index-BxY3zK9a.js`). Random base64 looks
///   nothing like a word, so an all-lowercase or capitalised tail
///   (`about-settings.js`, `x-Settings.js`) is not taken for a hash.
///
/// In Vite's `assets/` folder (see [`cache_control`]) every `[name]-[hash]`
/// counts, all-letter hashes included (about 0.4% of them: `-qWfkZtbd`).
pub(super) fn is_hashed(name: &str) -> bool {
    let Some(stem) = stem(name) else {
        return false;
    };
    let hex_segment = stem
        .split(['.', '-', '_'])
        .any(|s| s.len() >= 8 && s.bytes().all(|b| b.is_ascii_hexdigit()));
    hex_segment || vite_hash(stem, Tail::LooksRandom)
}

/// Whether the name has a Vite-shaped tail that may be an all-letter hash.
fn maybe_hashed(name: &str) -> bool {
    stem(name).is_some_and(|s| vite_hash(s, Tail::AnyLetters))
}

/// A name without the suffixes of files derived from it (precompressed
/// copies, source maps).
fn strip_derived(name: &str) -> &str {
    [".gz", ".br", ".map"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

fn stem(name: &str) -> Option<&str> {
    match name.rfind('.') {
        Some(i) if i > 0 => Some(&name[..i]),
        _ => None,
    }
}

/// Which 8-character tails count as a Vite hash.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tail {
    /// Only those that cannot be a word: a digit, or mixed case inside.
    LooksRandom,
    /// Any base64url tail (where every name is known to be hashed).
    AnyLetters,
}

fn vite_hash(stem: &str, tail_rule: Tail) -> bool {
    const LEN: usize = 8;
    let bytes = stem.as_bytes();
    if bytes.len() < LEN + 2 {
        return false;
    }
    let (head, tail) = bytes.split_at(bytes.len() - LEN);
    if !matches!(head.last(), Some(b'-' | b'.')) {
        return false;
    }
    if !tail
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return false;
    }
    if tail_rule == Tail::AnyLetters {
        return true;
    }
    let digit = tail.iter().any(u8::is_ascii_digit);
    let inner_upper = tail[1..].iter().any(u8::is_ascii_uppercase);
    let lower = tail.iter().any(u8::is_ascii_lowercase);
    digit || (inner_upper && lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names() {
        for name in [
            "app.3f9a1c2b.js",
            "chunk-vendors.a1b2c3d4.js",
            "app.3f9a1c2b4d5e6f70.css",
            "index-BxY3zK9a.js",
            "index-B_x3-K9a.js",
            "vendor-DqTfLmRw.js",
            "logo.a1b2c3d4.svg",
            "3f9a1c2b.js",
        ] {
            assert!(is_hashed(name), "{name}");
        }
        for name in [
            "index.html",
            "app.js",
            "style.css",
            "about-settings.js",
            "x-Settings.js",
            "x-SETTINGS.js",
            "app.3f9a1c2.js",
            "favicon.ico",
            "a1b2c3d4",
            ".a1b2c3d4e5",
        ] {
            assert!(!is_hashed(name), "{name}");
        }
    }

    #[test]
    fn cache_control_by_name() {
        let none = Vec::new;
        assert_eq!(cache_control("app.3f9a1c2b.js", none), IMMUTABLE);
        assert_eq!(cache_control("index.html", none), NO_CACHE);
        assert_eq!(cache_control("page.a1b2c3d4.html", none), NO_CACHE);
        assert_eq!(cache_control("style.css", none), NO_CACHE);
        // All-letter Vite hashes count in a folder of hashed names only.
        let vite = || {
            [
                "index-BxY3zK9a.js",
                "index-BxY3zK9a.js.gz",
                "vendor-a1B2c3D4.css",
                "x-qwfkztbd.js",
            ]
            .map(String::from)
            .to_vec()
        };
        let mixed = || {
            ["index-BxY3zK9a.js", "logo-abc12345.svg", "data.json"]
                .map(String::from)
                .to_vec()
        };
        for name in ["x-qwfkztbd.js", "index-QWFKZTBD.css", "vendor-Qwfkztbd.js"] {
            assert_eq!(cache_control(name, vite), IMMUTABLE, "{name}");
            assert_eq!(cache_control(name, mixed), NO_CACHE, "{name}");
            assert_eq!(cache_control(name, none), NO_CACHE, "{name}");
        }
        assert_eq!(cache_control("about-settings.js", mixed), NO_CACHE);
        assert_eq!(cache_control("favicon.ico", vite), NO_CACHE);
        assert_eq!(cache_control("index.html", vite), NO_CACHE);
    }

    #[test]
    fn content_types_carry_utf8_for_text() {
        let ct = |n: &str| content_type(n).to_str().unwrap().to_string();
        assert_eq!(ct("index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("style.css"), "text/css; charset=utf-8");
        assert_eq!(ct("data.json"), "application/json; charset=utf-8");
        assert_eq!(ct("logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(ct("feed.xml"), "text/xml; charset=utf-8");
        assert_eq!(ct("logo.png"), "image/png");
        assert_eq!(ct("font.woff2"), "font/woff2");
        assert_eq!(ct("blob"), "application/octet-stream");
    }
}
