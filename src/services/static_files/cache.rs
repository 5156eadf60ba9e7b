//! Prepared responses: each served file as an [`Entry`] whose headers are
//! built once, and the in-memory map from request path to entry that the
//! folder watcher clears.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::HeaderValue;

use super::policy;
use super::resolve::Found;
use crate::http::reserved::LIVERELOAD_TAG;

/// HTML larger than this is served as is, without the live-reload script:
/// injecting means holding the whole page in memory.
const MAX_INJECTED_HTML: u64 = 8 << 20;

/// Path keys the map holds at most (found and missing alike), so random
/// paths cannot grow it without bound.
const MAX_KEYS: usize = 20_000;

/// One file, ready to answer for: its representations and the headers they
/// share.
#[derive(Debug)]
pub(super) struct Entry {
    pub content_type: HeaderValue,
    pub cache_control: HeaderValue,
    pub last_modified: HeaderValue,
    /// Last-Modified as seconds since the epoch, for preconditions.
    pub modified: u64,
    pub identity: Repr,
    pub br: Option<Repr>,
    pub gzip: Option<Repr>,
    /// Served for a folder (its `index.html`).
    pub folder: bool,
}

impl Entry {
    /// Whether the response depends on `Accept-Encoding` (`Vary`).
    pub(super) fn has_variants(&self) -> bool {
        self.br.is_some() || self.gzip.is_some()
    }

    /// Bytes of file content this entry keeps in memory.
    fn memory_size(&self) -> u64 {
        [Some(&self.identity), self.br.as_ref(), self.gzip.as_ref()]
            .into_iter()
            .flatten()
            .filter(|r| matches!(r.source, Source::Memory(_)))
            .map(|r| r.len)
            .sum()
    }
}

/// One representation (identity or a precompressed variant).
#[derive(Debug)]
pub(super) struct Repr {
    /// A strong entity tag, different per representation.
    pub etag: HeaderValue,
    pub len: u64,
    pub content_length: HeaderValue,
    /// `Content-Encoding`, for compressed variants.
    pub encoding: Option<HeaderValue>,
    pub source: Source,
}

#[derive(Debug)]
pub(super) enum Source {
    /// Cloned per request: a reference count, no copy.
    Memory(Bytes),
    /// Streamed from the file on every request.
    Disk(PathBuf),
}

/// The names of the other entries in `path`'s folder, up to a bound (a
/// bundler's folder of thousands is judged by its first ones).
fn siblings(path: &std::path::Path) -> Vec<String> {
    const MAX: usize = 256;
    let Some(dir) = path.parent().and_then(|d| fs::read_dir(d).ok()) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| path.file_name().is_none_or(|own| own != n.as_str()))
        .take(MAX)
        .collect()
}

/// Builds the entry for a resolved file. Blocking: call it off the async
/// threads. Content goes into memory when it all fits in `budget` bytes;
/// otherwise it streams from disk and its ETag comes from size and mtime.
/// With `inject`, HTML gets the live-reload script and is served only as
/// identity: precompressed HTML would be the stale, uninjected page.
pub(super) fn build(found: &Found, budget: u64, inject: bool) -> io::Result<Entry> {
    let modified = found
        .meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let last_modified = HeaderValue::from_str(&httpdate::fmt_http_date(
        UNIX_EPOCH + std::time::Duration::from_secs(modified),
    ))
    .expect("an HTTP date is a valid header value");
    let mut entry = Entry {
        content_type: policy::content_type(&found.name),
        cache_control: policy::cache_control(&found.name, || siblings(&found.path)),
        last_modified,
        modified,
        identity: disk_repr(&found.path, &found.meta, None),
        br: None,
        gzip: None,
        folder: found.folder,
    };

    if inject && policy::is_html(&found.name) && found.meta.len() <= MAX_INJECTED_HTML {
        let page = inject_script(&fs::read(&found.path)?);
        entry.identity = memory_repr(Bytes::from(page), None, "lr");
        return Ok(entry);
    }

    let variants = [(&found.br, "br"), (&found.gzip, "gzip")];
    let total = found.meta.len()
        + variants
            .iter()
            .filter_map(|(v, _)| v.as_ref().map(|(_, m)| m.len()))
            .sum::<u64>();
    let in_memory = total <= budget;
    if in_memory {
        entry.identity = memory_repr(Bytes::from(fs::read(&found.path)?), None, "");
    }
    for (variant, coding) in variants {
        let Some((path, meta)) = variant else {
            continue;
        };
        let repr = if in_memory {
            memory_repr(Bytes::from(fs::read(path)?), Some(coding), coding)
        } else {
            disk_repr(path, meta, Some(coding))
        };
        match coding {
            "br" => entry.br = Some(repr),
            _ => entry.gzip = Some(repr),
        }
    }
    Ok(entry)
}

fn memory_repr(data: Bytes, coding: Option<&'static str>, tag: &str) -> Repr {
    let etag = format!(
        "\"{:016x}{}{tag}\"",
        fnv1a(&data),
        if tag.is_empty() { "" } else { "-" }
    );
    repr(etag, data.len() as u64, coding, Source::Memory(data))
}

fn disk_repr(path: &std::path::Path, meta: &fs::Metadata, coding: Option<&'static str>) -> Repr {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let suffix = coding.map(|c| format!("-{c}")).unwrap_or_default();
    let etag = format!("\"{:x}-{mtime:x}{suffix}\"", meta.len());
    repr(etag, meta.len(), coding, Source::Disk(path.to_path_buf()))
}

fn repr(etag: String, len: u64, coding: Option<&'static str>, source: Source) -> Repr {
    Repr {
        etag: HeaderValue::from_str(&etag).expect("hex and dashes are a valid header value"),
        len,
        content_length: HeaderValue::from(len),
        encoding: coding.map(HeaderValue::from_static),
        source,
    }
}

/// FNV-1a, 64 bits: a content hash for entity tags, stable across runs and
/// builds (unlike std's randomly keyed hasher), and with no dependency.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Inserts the live-reload script before the last `</body>` (any case), or
/// appends it when the page has none.
pub(super) fn inject_script(page: &[u8]) -> Vec<u8> {
    let tag = LIVERELOAD_TAG.as_bytes();
    let at = page
        .windows(7)
        .rposition(|w| w.eq_ignore_ascii_case(b"</body>"))
        .unwrap_or(page.len());
    let mut out = Vec::with_capacity(page.len() + tag.len());
    out.extend_from_slice(&page[..at]);
    out.extend_from_slice(tag);
    out.extend_from_slice(&page[at..]);
    out
}

/// The map from request path (below the route prefix) to its entry, or to
/// `None` when nothing is there. Filled lazily; cleared by the watcher.
pub(super) struct Cache {
    inner: RwLock<Inner>,
    budget: u64,
}

struct Inner {
    /// Bumped on every invalidation, so an entry built from files read
    /// before a change is not stored after it.
    generation: u64,
    map: HashMap<Box<str>, Option<Arc<Entry>>>,
    used: u64,
}

impl Cache {
    pub(super) fn new(budget: u64) -> Self {
        Cache {
            inner: RwLock::new(Inner {
                generation: 0,
                map: HashMap::new(),
                used: 0,
            }),
            budget,
        }
    }

    /// The hot path: one read-locked hash lookup.
    pub(super) fn get(&self, path: &str) -> Option<Option<Arc<Entry>>> {
        self.read().map.get(path).cloned()
    }

    /// The generation to build against, and the memory budget left.
    pub(super) fn ticket(&self) -> (u64, u64) {
        let inner = self.read();
        (inner.generation, self.budget.saturating_sub(inner.used))
    }

    /// Stores what was built for `path` at `generation`, unless the folder
    /// changed meanwhile or the entry no longer fits.
    pub(super) fn insert(&self, path: &str, generation: u64, value: Option<Arc<Entry>>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if inner.generation != generation || inner.map.len() >= MAX_KEYS {
            return;
        }
        let size = value.as_ref().map_or(0, |e| e.memory_size());
        if inner.used + size > self.budget {
            return;
        }
        inner.used += size;
        if let Some(old) = inner.map.insert(path.into(), value) {
            inner.used -= old.map_or(0, |e| e.memory_size());
        }
    }

    pub(super) fn invalidate(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.generation += 1;
        inner.map.clear();
        inner.used = 0;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a harmful way: every write is a whole insert or clear.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injects_before_the_last_body_close() {
        let tag = LIVERELOAD_TAG;
        assert_eq!(
            String::from_utf8(inject_script(b"<body>a</body>x</BODY>\n")).unwrap(),
            format!("<body>a</body>x{tag}</BODY>\n")
        );
        assert_eq!(
            String::from_utf8(inject_script(b"<p>no body")).unwrap(),
            format!("<p>no body{tag}")
        );
    }

    #[test]
    fn budget_and_generation_guard_inserts() {
        let entry = |n: usize| {
            Arc::new(Entry {
                content_type: HeaderValue::from_static("text/plain"),
                cache_control: HeaderValue::from_static("no-cache"),
                last_modified: HeaderValue::from_static("x"),
                modified: 0,
                identity: memory_repr(Bytes::from(vec![b'a'; n]), None, ""),
                br: None,
                gzip: None,
                folder: false,
            })
        };
        let cache = Cache::new(10);
        let (generation, left) = cache.ticket();
        assert_eq!(left, 10);
        cache.insert("/a", generation, Some(entry(6)));
        cache.insert("/b", generation, Some(entry(6)));
        cache.insert("/none", generation, None);
        assert!(cache.get("/a").unwrap().is_some());
        assert!(cache.get("/b").is_none(), "over budget: not stored");
        assert!(cache.get("/none").unwrap().is_none());
        assert_eq!(cache.ticket().1, 4);
        cache.invalidate();
        assert!(cache.get("/a").is_none());
        cache.insert("/a", generation, Some(entry(1)));
        assert!(
            cache.get("/a").is_none(),
            "built before the change: dropped"
        );
    }

    #[test]
    fn etags_differ_by_content_and_coding() {
        let a = memory_repr(Bytes::from_static(b"a"), None, "");
        let b = memory_repr(Bytes::from_static(b"b"), None, "");
        let a_gz = memory_repr(Bytes::from_static(b"a"), Some("gzip"), "gzip");
        assert_ne!(a.etag, b.etag);
        assert_ne!(a.etag, a_gz.etag);
        assert!(a.etag.to_str().unwrap().starts_with('"'));
    }
}
