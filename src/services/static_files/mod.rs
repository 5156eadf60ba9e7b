//! Static files: the SPA's `dist/` and `static_dir` routes, answered from
//! responses prepared once and kept in memory while a watcher keeps them
//! fresh.
//!
//! A request goes: method check → [`Cache`] lookup by path (the hot path
//! ends here with a hit) → on a miss, [`resolve`] (one percent-decode,
//! normal components only, no escaping symlinks, no dotfiles) and
//! [`cache::build`] off the async threads → history fallback for app routes
//! → [`respond`]: encoding negotiation, RFC 9110 preconditions, one range.

mod cache;
mod conditional;
mod encoding;
mod policy;
mod range;
mod resolve;

use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::TryStreamExt;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use self::cache::{Cache, Entry, Repr, Source};
use self::conditional::Precondition;
use self::encoding::Coding;
use self::range::Ranged;
use self::resolve::Resolution;
use crate::error::Error;
use crate::http::body::{Body, boxed, empty, full, html_page};
use crate::http::headers::Accepts;
use crate::http::reserved;
use crate::watch::{self, Watch};

/// Chunk size when streaming a file that is not in memory.
const STREAM_CHUNK: usize = 64 * 1024;

/// How a folder is served.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Options {
    /// App routes (no extension, HTML wanted) get `index.html`.
    pub history_fallback: bool,
    /// Inject the live-reload script into HTML.
    pub live_reload: bool,
    /// Bytes of file content kept in memory, at most.
    pub memory_cache: u64,
}

pub(crate) struct StaticDir {
    pub root: PathBuf,
    options: Options,
    /// Prepared entries; only while a watcher can invalidate them, since
    /// a stale entry would serve old headers for a changed file.
    cache: Option<Arc<Cache>>,
    /// Stops the watcher when the folder's runtime snapshot is dropped.
    _watch: Option<Watch>,
}

enum Lookup {
    Found(Arc<Entry>),
    /// Nothing there: the history fallback may apply.
    Missing,
}

/// A file changed under a disk-streamed entry: rebuild and retry.
struct Stale;

impl StaticDir {
    pub(crate) fn new(root: PathBuf, options: Options) -> Self {
        Self {
            root,
            options,
            cache: None,
            _watch: None,
        }
    }

    /// Watches the folder, enabling the in-memory cache (cleared on every
    /// change), and calls `on_change` with the changed paths after the
    /// cache is cleared. Without a Tokio runtime, or when the watch cannot
    /// be set up, the folder is still served, read from disk on every
    /// request.
    pub(crate) fn watched(mut self, on_change: impl Fn(&[String]) + Send + 'static) -> Self {
        let cache = Arc::new(Cache::new(self.options.memory_cache));
        let on_change = {
            let cache = cache.clone();
            move |paths: Vec<String>| {
                cache.invalidate();
                on_change(&paths);
            }
        };
        match watch::folder(&self.root, on_change) {
            Ok(w) => {
                self.warm_index(cache.clone());
                self.cache = Some(cache);
                self._watch = Some(w);
            }
            Err(e) => tracing::warn!(
                "not watching {}: {e}; serving it from disk on every request, without live reload",
                self.root.display()
            ),
        }
        self
    }

    /// Prepares `index.html` in the background, so the first page load does
    /// not wait for the disk and startup does not wait for the page.
    fn warm_index(&self, cache: Arc<Cache>) {
        let root = self.root.clone();
        let inject = self.options.live_reload;
        let (generation, budget) = cache.ticket();
        tokio::task::spawn_blocking(move || {
            if let Ok(Resolution::File(found)) = resolve::resolve(&root, &[]) {
                if let Ok(entry) = cache::build(&found, budget, inject) {
                    cache.insert("/", generation, Some(Arc::new(entry)));
                }
            }
        });
    }

    /// Serves `path` (the request path below the route prefix, normalised
    /// by routing but still percent-encoded).
    pub(crate) async fn serve(
        &self,
        method: &Method,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Response<Body>, Error> {
        crate::http::get_or_head(method)?;
        // Once more after a stale disk entry; twice stale is a 404.
        for _ in 0..2 {
            let entry = match self.lookup(path).await? {
                // A folder asked for without its slash: its index.html's
                // relative links would resolve one level up.
                Lookup::Found(e) if e.folder && !path.ends_with('/') => {
                    return Ok(add_slash(method, path));
                }
                Lookup::Found(e) => e,
                Lookup::Missing if self.falls_back(headers, path) => {
                    match self.lookup("/").await? {
                        Lookup::Found(e) => e,
                        Lookup::Missing => break,
                    }
                }
                Lookup::Missing => break,
            };
            match respond(&entry, method, headers).await {
                Ok(resp) => return Ok(resp),
                Err(Stale) => {
                    if let Some(c) = &self.cache {
                        c.invalidate();
                    }
                }
            }
        }
        // A page load while the build has emptied the folder (Vite and
        // webpack clear `dist/` before writing it): a plain 404 would carry
        // no live-reload script and strand the tab. This page waits and
        // comes back by itself.
        if self.options.live_reload
            && Accepts::of(headers) == Accepts::Html
            && self.index_missing().await
        {
            return Ok(waiting_for_build(method));
        }
        Err(not_found(path))
    }

    async fn index_missing(&self) -> bool {
        matches!(self.lookup("/").await, Ok(Lookup::Missing))
    }

    async fn lookup(&self, path: &str) -> Result<Lookup, Error> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(path)) {
            return Ok(match hit {
                Some(e) => Lookup::Found(e),
                None => Lookup::Missing,
            });
        }
        let comps = resolve::components(path).ok_or_else(|| not_found(path))?;
        let (generation, budget) = self.cache.as_ref().map_or((0, 0), |c| c.ticket());
        let root = self.root.clone();
        let inject = self.options.live_reload;
        let built = tokio::task::spawn_blocking(move || match resolve::resolve(&root, &comps)? {
            Resolution::File(found) => cache::build(&found, budget, inject).map(Some),
            Resolution::Missing => Ok(None),
            Resolution::Forbidden => Err(io::ErrorKind::PermissionDenied.into()),
        })
        .await
        .map_err(|e| Error::Internal {
            what: "static file lookup",
            cause: e.into(),
        })?;
        let found = match built {
            Ok(entry) => entry.map(Arc::new),
            // Deleted between the lookup and the read.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                None
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(not_found(path));
            }
            // Any other I/O error (a symlink loop, a name too long for this
            // platform, a failing disk): logged here with the folder, and a
            // plain 404 for the client, whose body names only the request
            // path. Not 414: the request target was acceptable, the file
            // just cannot be there.
            Err(e) => {
                tracing::warn!("static file {path} below {}: {e}", self.root.display());
                return Err(not_found(path));
            }
        };
        if let Some(c) = &self.cache {
            c.insert(path, generation, found.clone());
        }
        Ok(match found {
            Some(e) => Lookup::Found(e),
            None => Lookup::Missing,
        })
    }

    /// History fallback: an app route (a GET or HEAD from a page that
    /// accepts HTML, whose last segment has no extension) gets `index.html`.
    /// A missing asset such as `/missing.js` stays a 404.
    fn falls_back(&self, headers: &HeaderMap, path: &str) -> bool {
        // `/__portero/` never falls back to the app, whatever route it
        // reaches.
        if !self.options.history_fallback || reserved::is_reserved(path) {
            return false;
        }
        let last = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
        if last.contains('.') {
            return false;
        }
        matches!(Accepts::of(headers), Accepts::Html | Accepts::Any)
    }
}

/// 503 with the live-reload script and a 1-second refresh (in case the
/// build finished between this page's request and its socket connecting).
fn waiting_for_build(method: &Method) -> Response<Body> {
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"1\">\
<title>Waiting for the build</title></head><body style=\"font:16px/1.5 system-ui,sans-serif;margin:3em\">\
<h1>Waiting for the build</h1><p>The app's <code>index.html</code> is not there right now \
(a build is probably rewriting the folder). This page comes back by itself.</p>{}</body></html>\n",
        reserved::LIVERELOAD_TAG
    );
    let mut resp = html_page(method, StatusCode::SERVICE_UNAVAILABLE, page, "no-store");
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// 301 to the folder with its slash, as a relative reference (`docs/` for
/// `/docs`), so it holds below any route prefix.
fn add_slash(method: &Method, path: &str) -> Response<Body> {
    let last = path.rsplit('/').next().unwrap_or("");
    let mut resp = html_page(
        method,
        StatusCode::MOVED_PERMANENTLY,
        String::new(),
        "no-cache",
    );
    let location = format!("{last}/");
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn not_found(path: &str) -> Error {
    Error::NotFound { path: path.into() }
}

/// Answers from a prepared entry: choose the representation, evaluate
/// preconditions, then the range, and clone the prepared headers.
async fn respond(
    entry: &Entry,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<Body>, Stale> {
    let coding = if entry.has_variants() {
        encoding::preferred(
            headers.get(header::ACCEPT_ENCODING).map(|v| v.as_bytes()),
            encoding::Variants {
                br: entry.br.is_some(),
                gzip: entry.gzip.is_some(),
            },
        )
    } else {
        Coding::Identity
    };
    let repr = match coding {
        Coding::Br => entry.br.as_ref(),
        Coding::Gzip => entry.gzip.as_ref(),
        Coding::Identity => None,
    }
    .unwrap_or(&entry.identity);

    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    h.insert(header::ETAG, repr.etag.clone());
    h.insert(header::LAST_MODIFIED, entry.last_modified.clone());
    h.insert(header::CACHE_CONTROL, entry.cache_control.clone());
    if entry.has_variants() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    match conditional::evaluate(method, headers, &repr.etag, entry.modified) {
        Precondition::Proceed => {}
        Precondition::NotModified => {
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            return Ok(resp);
        }
        Precondition::Failed => {
            *resp.status_mut() = StatusCode::PRECONDITION_FAILED;
            return Ok(resp);
        }
    }

    let h = resp.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_TYPE, entry.content_type.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(enc) = &repr.encoding {
        h.insert(header::CONTENT_ENCODING, enc.clone());
    }
    // 5. (RFC 9110 §13.2.2) Range, for GET only, if If-Range allows.
    let ranged = match headers.get(header::RANGE) {
        Some(r)
            if method == Method::GET
                && headers
                    .get(header::IF_RANGE)
                    .is_none_or(|ir| range::if_range_matches(ir, &repr.etag, entry.modified)) =>
        {
            range::parse(r.as_bytes(), repr.len)
        }
        _ => Ranged::Full,
    };
    let mut status = StatusCode::OK;
    let span = match ranged {
        Ranged::Full => {
            h.insert(header::CONTENT_LENGTH, repr.content_length.clone());
            0..repr.len
        }
        Ranged::Partial(span) => {
            status = StatusCode::PARTIAL_CONTENT;
            let content_range = format!("bytes {}-{}/{}", span.start, span.end - 1, repr.len);
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range).expect("digits are a valid header value"),
            );
            h.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(span.end - span.start),
            );
            span
        }
        Ranged::Unsatisfiable => {
            let content_range = format!("bytes */{}", repr.len);
            h.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range).expect("digits are a valid header value"),
            );
            h.remove(header::CONTENT_TYPE);
            h.remove(header::CONTENT_ENCODING);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            return Ok(resp);
        }
    };
    *resp.status_mut() = status;
    if method == Method::GET {
        *resp.body_mut() = body(repr, span).await?;
    }
    Ok(resp)
}

async fn body(repr: &Repr, span: Range<u64>) -> Result<Body, Stale> {
    match &repr.source {
        Source::Memory(data) => Ok(full(data.slice(span.start as usize..span.end as usize))),
        Source::Disk(path) => {
            let mut file = tokio::fs::File::open(path).await.map_err(|_| Stale)?;
            // The entry's headers promise this length; a file rewritten
            // since must not be streamed under them.
            let len = file.metadata().await.map_err(|_| Stale)?.len();
            if len != repr.len {
                return Err(Stale);
            }
            if span.start > 0 {
                file.seek(SeekFrom::Start(span.start))
                    .await
                    .map_err(|_| Stale)?;
            }
            let stream =
                ReaderStream::with_capacity(file.take(span.end - span.start), STREAM_CHUNK);
            Ok(boxed(StreamBody::new(stream.map_ok(Frame::data))))
        }
    }
}
