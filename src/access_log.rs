//! One access-log line per request, written when the response body ends
//! (or is dropped), so duration and byte count are the real ones.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::error::Error;
use crate::http::body::{Body, BoxError};

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
    error: Option<(String, &'static str)>,
}

impl Entry {
    pub(crate) fn new<B>(req: &Request<B>, peer: std::net::SocketAddr, start: Instant) -> Entry {
        Entry {
            start,
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: req.headers().get(http::header::HOST).cloned(),
            peer,
            tenant: None,
            route: RouteLabel::Fixed("-"),
            status: StatusCode::OK,
            error: None,
        }
    }

    pub(crate) fn error(&mut self, err: &Error) {
        self.error = Some((err.to_string(), err.fault().as_str()));
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
    /// `Some` until the line is written.
    entry: Option<Box<Entry>>,
}

impl LoggedBody {
    pub(crate) fn wrap(resp: Response<Body>, entry: Entry) -> Response<LoggedBody> {
        let enabled = tracing::enabled!(target: "portero::access", tracing::Level::INFO)
            || (entry.error.is_some()
                && tracing::enabled!(target: "portero::access", tracing::Level::WARN));
        resp.map(|inner| LoggedBody {
            inner,
            bytes: 0,
            entry: enabled.then(|| Box::new(entry)),
        })
    }

    fn finish(&mut self, complete: bool) {
        if let Some(e) = self.entry.take() {
            e.write(self.bytes, complete);
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
