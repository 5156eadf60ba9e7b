//! One access-log line per request, written when the response body ends
//! (or is dropped), so duration and byte count are the real ones; the
//! request is counted in the metrics at the same moment.
//!
//! Where lines go is set once per process ([`init`]): a buffer written out
//! in batches by a thread of its own ([`writer`]), so a request never waits
//! for a terminal or a disk; without it (tests, embedding), a
//! `portero::access` tracing event.

mod writer;

pub use writer::Flush;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::config::Upstream;
use crate::conn::Conn;
use crate::error::Error;
use crate::http::body::{Body, BoxError};
use crate::inspector::{Finished, Handshake, Headers, Tap};
use crate::metrics::{Metrics, RouteStats};

/// How access lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One human-readable line: time, tenant, method, host and path,
    /// status, duration, upstream; coloured on a terminal.
    Text { colour: bool },
    /// One JSON object per line, with peer, bytes and route too.
    Json,
}

struct Sink {
    buffer: Arc<writer::Buffer>,
    format: Format,
}

static SINK: OnceLock<Option<Sink>> = OnceLock::new();

thread_local! {
    /// Each thread formats its lines here: no allocation per line.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// Sends access lines to `out` (`None`: no access log) in `format`, for the
/// life of the process; only the first call counts. Keep the returned
/// [`Flush`] until the process ends: dropping it writes what is still
/// buffered.
pub fn init(
    out: Option<Box<dyn std::io::Write + Send>>,
    format: Format,
) -> std::io::Result<Option<Flush>> {
    let Some(out) = out else {
        let _ = SINK.set(None);
        return Ok(None);
    };
    let (buffer, flush) = writer::start(out)?;
    let _ = SINK.set(Some(Sink { buffer, format }));
    Ok(Some(flush))
}

/// The fields of one access-log line, filled in as dispatch learns them.
pub(crate) struct Entry {
    start: Instant,
    method: Method,
    /// The request target and `Host` as received: cheap reference-counted
    /// clones, formatted only if the line is written.
    uri: Uri,
    host: Option<HeaderValue>,
    peer: std::net::SocketAddr,
    pub tenant: Option<String>,
    pub route: RouteLabel,
    pub status: StatusCode,
    /// The upstream that answered, for proxied requests.
    pub upstream: Option<Arc<Upstream>>,
    /// The route's counters, once a route matched.
    pub stats: Option<Arc<RouteStats>>,
    metrics: Arc<Metrics>,
    error: Option<(String, &'static str)>,
    /// Over TLS (for the inspector's URLs).
    tls: bool,
    /// The address the client connected to (for the inspector's replay).
    local: std::net::SocketAddr,
    /// Set when the request asks for a WebSocket (refusals are shown).
    handshake: Option<Handshake>,
    /// The request's headers, then the response's, while the inspector is
    /// on; `None` (nothing copied) when it is off.
    headers: Option<Box<Headers>>,
}

impl Entry {
    pub(crate) fn new<B>(
        req: &Request<B>,
        conn: &Conn,
        metrics: Arc<Metrics>,
        start: Instant,
    ) -> Entry {
        // A reference-counted copy of the header map, only for the
        // inspector.
        let headers = metrics.inspector.on().then(|| {
            Box::new(Headers::new(
                req.headers().clone(),
                metrics.inspector.bodies(),
            ))
        });
        let handshake = req
            .headers()
            .get(http::header::UPGRADE)
            .filter(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
            .map(|_| Handshake {
                origin: req
                    .headers()
                    .get(http::header::ORIGIN)
                    .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned()),
            });
        Entry {
            tls: conn.is_tls(),
            local: conn.local,
            handshake,
            headers,
            start,
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: req.headers().get(http::header::HOST).cloned(),
            peer: conn.peer,
            tenant: None,
            route: RouteLabel::Fixed("-"),
            status: StatusCode::OK,
            upstream: None,
            stats: None,
            metrics,
            error: None,
        }
    }

    /// Where the proxy copies the first bytes of the request body, while
    /// body capture is on.
    pub(crate) fn request_tap(&self) -> Option<Arc<Tap>> {
        self.headers.as_ref()?.request_body.clone()
    }

    pub(crate) fn error(&mut self, err: &Error) {
        self.metrics.upstream_error(err);
        self.error = Some((err.to_string(), err.fault().as_str()));
    }

    /// Where the response body's first bytes are copied, while body
    /// capture is on.
    pub(crate) fn response_tap(&self) -> Option<&Tap> {
        self.headers.as_ref()?.response_body.as_ref()
    }

    /// Keeps the response's headers for the inspector (when it is on).
    pub(crate) fn response_headers(&mut self, headers: &http::HeaderMap) {
        if let Some(h) = &mut self.headers {
            h.response = headers.clone();
        }
    }

    /// Ends the request now, `bytes` of body sent: for a path that writes
    /// the response body itself instead of through a [`LoggedBody`].
    pub(crate) fn end(mut self, bytes: u64, complete: bool) {
        self.finish(bytes, complete);
    }

    /// Counts the request, writes its line and hands it to the inspector.
    fn finish(&mut self, bytes: u64, complete: bool) {
        if complete {
            if let Some(tap) = self.headers.as_ref().and_then(|h| h.response_body.as_ref()) {
                tap.end();
            }
        }
        let took = self.start.elapsed();
        let unrouted = match self.route {
            RouteLabel::Fixed(label) => label,
            RouteLabel::Route(_) => "-",
        };
        self.metrics.observe(
            self.stats.as_deref().ok_or(unrouted),
            self.tenant.as_deref(),
            self.status,
            took,
            bytes,
        );
        match SINK.get() {
            Some(None) => {}
            Some(Some(sink)) => LINE.with_borrow_mut(|line| {
                line.clear();
                match sink.format {
                    Format::Text { colour } => {
                        let suffix = if complete { "" } else { " (incomplete)" };
                        self.text(line, took, suffix, colour)
                    }
                    Format::Json => self.json(line, took, bytes, complete),
                }
                sink.buffer.push(line);
                // A line that was unusually long keeps no memory.
                if line.capacity() > 64 * 1024 {
                    *line = Vec::with_capacity(512);
                }
            }),
            None => {
                if self.error.is_some()
                    || tracing::enabled!(target: "portero::access", tracing::Level::INFO)
                {
                    self.write(bytes, complete);
                }
            }
        }
        let own = matches!(self.route, RouteLabel::Fixed("/__portero"));
        let (error, headers) = (self.error.take(), self.headers.take());
        let handshake = self.handshake.take();
        self.metrics.inspector.record(Finished {
            method: &self.method,
            uri: &self.uri,
            tls: self.tls,
            host: self.host(),
            tenant: self.tenant.as_deref(),
            route: &self.route,
            own,
            status: self.status,
            took,
            upstream: self.upstream.as_ref().map(|u| u.name.as_str()),
            bytes,
            complete,
            error,
            headers,
            local: self.local,
            handshake,
        });
    }

    /// The human-readable line, appended to `line`. Writing into a `Vec`
    /// cannot fail.
    fn text(&self, line: &mut Vec<u8>, took: std::time::Duration, suffix: &str, colour: bool) {
        let status = self.status.as_u16();
        let (on, off) = match (colour, status) {
            (false, _) => ("", ""),
            (true, 500..) => ("\x1b[31m", "\x1b[0m"),
            (true, 400..) => ("\x1b[33m", "\x1b[0m"),
            (true, _) => ("\x1b[32m", "\x1b[0m"),
        };
        let _ = write!(
            line,
            "{} {} {} {}{} {on}{status}{off} {:.1}ms {}{}",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            self.tenant.as_deref().unwrap_or("-"),
            self.method,
            self.host(),
            self.uri.path(),
            took.as_secs_f64() * 1000.0,
            self.upstream.as_ref().map_or("-", |u| u.name.as_str()),
            suffix,
        );
        if let Some((msg, fault)) = &self.error {
            let _ = write!(line, " {fault} fault: {msg}");
        }
        line.push(b'\n');
    }

    /// The JSON object, and a newline, appended to `line`.
    fn json(&self, line: &mut Vec<u8>, took: std::time::Duration, bytes: u64, complete: bool) {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            time: Shown<humantime::Rfc3339Timestamp>,
            peer: Shown<std::net::IpAddr>,
            tenant: Option<&'a str>,
            method: &'a str,
            host: &'a str,
            path: &'a str,
            route: Shown<&'a RouteLabel>,
            status: u16,
            ms: f64,
            bytes: u64,
            upstream: Option<&'a str>,
            complete: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            fault: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            error: Option<&'a str>,
        }
        serde_json::to_writer(
            &mut *line,
            &Line {
                time: Shown(humantime::format_rfc3339_millis(
                    std::time::SystemTime::now(),
                )),
                peer: Shown(self.peer.ip()),
                tenant: self.tenant.as_deref(),
                method: self.method.as_str(),
                host: self.host(),
                path: self.uri.path(),
                route: Shown(&self.route),
                status: self.status.as_u16(),
                ms: (took.as_secs_f64() * 10_000.0).round() / 10.0,
                bytes,
                upstream: self.upstream.as_ref().map(|u| u.name.as_str()),
                complete,
                fault: self.error.as_ref().map(|(_, f)| *f),
                error: self.error.as_ref().map(|(m, _)| m.as_str()),
            },
        )
        .expect("strings and numbers serialize");
        line.push(b'\n');
    }

    /// The host the client named: the target's authority, else `Host`.
    fn host(&self) -> &str {
        match self.uri.authority() {
            Some(a) => a.as_str(),
            None => self
                .host
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
        }
    }

    fn write(&self, bytes: u64, complete: bool) {
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let (host, path) = (self.host(), self.uri.path());
        let tenant = self.tenant.as_deref().unwrap_or("-");
        let incomplete = if complete { "" } else { " (incomplete)" };
        match &self.error {
            None => tracing::info!(
                target: "portero::access",
                "{} {} {} {} route={} tenant={} status={} {:.1}ms {}B{}",
                self.peer.ip(), self.method, host, path, self.route, tenant,
                self.status.as_u16(), ms, bytes, incomplete
            ),
            Some((msg, fault)) => tracing::warn!(
                target: "portero::access",
                "{} {} {} {} route={} tenant={} status={} {:.1}ms {}B{} fault={} error=\"{}\"",
                self.peer.ip(), self.method, host, path, self.route, tenant,
                self.status.as_u16(), ms, bytes, incomplete, fault, msg
            ),
        }
    }
}

/// A value serialized as its `Display` text, written straight into the
/// line (no `String` in between).
struct Shown<T>(T);

impl<T: std::fmt::Display> serde::Serialize for Shown<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// Which route served the request. The route is kept, not its label:
/// formatting happens only if the line is written.
pub(crate) enum RouteLabel {
    Fixed(&'static str),
    Route(std::sync::Arc<crate::config::Route>),
}

impl std::fmt::Display for RouteLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteLabel::Fixed(s) => f.write_str(s),
            RouteLabel::Route(r) => write!(f, "{r}"),
        }
    }
}

/// A response body that counts bytes and logs the entry when it ends.
pub(crate) struct LoggedBody {
    inner: Body,
    bytes: u64,
    /// `Some` until the request is counted and its line written.
    entry: Option<Box<Entry>>,
}

impl LoggedBody {
    pub(crate) fn wrap(resp: Response<Body>, mut entry: Entry) -> Response<LoggedBody> {
        entry.response_headers(resp.headers());
        resp.map(|inner| LoggedBody {
            inner,
            bytes: 0,
            entry: Some(Box::new(entry)),
        })
    }

    fn finish(&mut self, complete: bool) {
        if let Some(mut e) = self.entry.take() {
            e.finish(self.bytes, complete);
        }
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                    let tap = this.entry.as_ref().and_then(|e| e.headers.as_ref());
                    if let Some(tap) = tap.and_then(|h| h.response_body.as_ref()) {
                        tap.feed(d);
                    }
                }
                if this.inner.is_end_stream() {
                    this.finish(true);
                }
            }
            Poll::Ready(None) => this.finish(true),
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // hyper drops bodies it never polls (HEAD, 304, empty bodies): those
        // are complete. A body with data left was cut short by the client.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}
