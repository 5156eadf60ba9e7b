//! The library's error type for request handling, and its one mapping to an
//! HTTP status, classified by whose fault it is.
//!
//! Every failure a request can meet ends up as an [`Error`]; [`Error::status`]
//! is the only place that decides which status the client sees, and it has no
//! catch-all arm, so a new variant cannot ship without a decision.

use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

use crate::config::Upstream;

/// Any error kept as the cause of another.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which upstream an error is about: its name and URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamId {
    pub name: String,
    pub url: String,
}

impl UpstreamId {
    pub fn of(up: &Upstream) -> UpstreamId {
        UpstreamId {
            name: up.name.clone(),
            url: up.url.to_string(),
        }
    }
}

impl std::fmt::Display for UpstreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.url)
    }
}

/// An error and its sources, `: `-separated, for messages that must say
/// everything on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut last = out.to_ascii_lowercase();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        let lower = text.to_ascii_lowercase();
        // Some errors repeat their source in their own message, or the
        // source says the same again ("connection refused: Connection
        // refused (os error 111)").
        if !last.ends_with(&lower) && !lower.starts_with(&last) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = lower;
        source = s.source();
    }
    out
}

/// Who caused a failed request. Logged with every error and used to pick the
/// log level: client faults are routine, upstream faults are the backend's
/// business, gateway faults are portero's bugs or its environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Client,
    Upstream,
    Gateway,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Upstream => "upstream",
            Fault::Gateway => "gateway",
        }
    }
}

/// Why a request could not be answered normally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(&'static str),

    #[error("invalid Host header {host:?}: {reason}")]
    InvalidHost { host: String, reason: &'static str },

    #[error("host {host:?} is not served here")]
    UnknownHost { host: String },

    /// The TLS connection was opened for one name and the request is for
    /// another (HTTP/2 connection reuse, or a client that lies): RFC 9110
    /// §15.5.20 says 421, and browsers retry on a fresh connection.
    #[error("request for {host:?} on a TLS connection opened for {sni:?}")]
    SniMismatch { sni: String, host: String },

    #[error("forbidden: {0}")]
    Forbidden(&'static str),

    #[error("no route for {path}")]
    NoRoute { path: String },

    #[error("not found: {path}")]
    NotFound { path: String },

    #[error("method {method} is not allowed here (allowed: {allow})")]
    MethodNotAllowed {
        method: http::Method,
        allow: &'static str,
    },

    #[error("the request target is longer than {limit} bytes")]
    UriTooLong { limit: usize },

    #[error("unsupported expectation {0:?} (only 100-continue is)")]
    ExpectationFailed(String),

    #[error("request body is larger than the limit of {limit} bytes for route {route}")]
    PayloadTooLarge { route: String, limit: u64 },

    /// The client stopped sending its request body.
    #[error("the request body sent nothing for {after:?}")]
    RequestTimeout { after: Duration },

    // The cause's whole chain is in the message: it is what the error page
    // and the log line explain. It stays the source too, for callers that
    // look for a particular cause.
    #[error("upstream {upstream}: {}", chain(&**.cause))]
    UpstreamUnavailable {
        upstream: UpstreamId,
        #[source]
        cause: BoxError,
    },

    #[error("upstream {upstream}: {what} timed out after {after:?}")]
    UpstreamTimeout {
        upstream: UpstreamId,
        what: &'static str,
        after: Duration,
    },

    /// This worker holds `max_connections` to the upstream, all in use,
    /// and none came free within its `connect_timeout`.
    #[error("upstream {upstream} has all its {max} connections busy")]
    UpstreamBusy { upstream: UpstreamId, max: usize },

    #[error("upstream {upstream} broke the protocol: {detail}")]
    UpstreamProtocol {
        upstream: UpstreamId,
        detail: String,
    },

    #[error("internal error: {what}: {}", chain(&**.cause))]
    Internal {
        what: &'static str,
        #[source]
        cause: BoxError,
    },
}

impl Error {
    /// The upstream refused, reset or broke the connection.
    pub fn upstream_unavailable(up: &Upstream, cause: impl Into<BoxError>) -> Error {
        Error::UpstreamUnavailable {
            upstream: UpstreamId::of(up),
            cause: cause.into(),
        }
    }

    /// The upstream did not answer `what` in time.
    pub fn upstream_timeout(up: &Upstream, what: &'static str, after: Duration) -> Error {
        Error::UpstreamTimeout {
            upstream: UpstreamId::of(up),
            what,
            after,
        }
    }

    /// The upstream answered something a correct server would not.
    pub fn upstream_protocol(up: &Upstream, detail: String) -> Error {
        Error::UpstreamProtocol {
            upstream: UpstreamId::of(up),
            detail,
        }
    }

    /// What a client outside the operator's own machine is told: the same
    /// as the message, except that upstreams are named without their URL
    /// and failures without their cause.
    pub fn public_message(&self) -> String {
        match self {
            Error::UpstreamUnavailable { upstream, .. } => {
                format!("upstream {} is unavailable", upstream.name)
            }
            Error::UpstreamTimeout { upstream, .. } => {
                format!("upstream {} did not answer in time", upstream.name)
            }
            Error::UpstreamProtocol { upstream, .. } => {
                format!("upstream {} answered incorrectly", upstream.name)
            }
            Error::Internal { .. } => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// The one mapping from error to status. Exhaustive on purpose.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::InvalidHost { .. } => StatusCode::BAD_REQUEST,
            Error::UnknownHost { .. } | Error::SniMismatch { .. } => {
                StatusCode::MISDIRECTED_REQUEST
            }
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NoRoute { .. } | Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Error::ExpectationFailed(_) => StatusCode::EXPECTATION_FAILED,
            Error::UpstreamUnavailable { .. } | Error::UpstreamProtocol { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Error::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::UpstreamBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whose fault the error is. Exhaustive on purpose.
    pub fn fault(&self) -> Fault {
        match self {
            Error::BadRequest(_)
            | Error::InvalidHost { .. }
            | Error::UnknownHost { .. }
            | Error::SniMismatch { .. }
            | Error::Forbidden(_)
            | Error::NoRoute { .. }
            | Error::NotFound { .. }
            | Error::MethodNotAllowed { .. }
            | Error::PayloadTooLarge { .. }
            | Error::RequestTimeout { .. }
            | Error::UriTooLong { .. }
            | Error::ExpectationFailed(_) => Fault::Client,
            Error::UpstreamUnavailable { .. }
            | Error::UpstreamTimeout { .. }
            | Error::UpstreamBusy { .. }
            | Error::UpstreamProtocol { .. } => Fault::Upstream,
            Error::Internal { .. } => Fault::Gateway,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn up() -> UpstreamId {
        UpstreamId {
            name: "backend".into(),
            url: "http://127.0.0.1:8000".into(),
        }
    }

    fn refused() -> BoxError {
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()
    }

    #[test]
    fn every_variant_has_its_status_and_fault() {
        let upstream = up();
        let cases: Vec<(Error, u16, Fault)> = vec![
            (Error::BadRequest("missing Host"), 400, Fault::Client),
            (
                Error::InvalidHost {
                    host: "a b".into(),
                    reason: "whitespace",
                },
                400,
                Fault::Client,
            ),
            (
                Error::UnknownHost {
                    host: "evil.test".into(),
                },
                421,
                Fault::Client,
            ),
            (
                Error::SniMismatch {
                    sni: "a.localhost".into(),
                    host: "b.localhost".into(),
                },
                421,
                Fault::Client,
            ),
            (Error::Forbidden("no"), 403, Fault::Client),
            (Error::NoRoute { path: "/x".into() }, 404, Fault::Client),
            (Error::NotFound { path: "/x".into() }, 404, Fault::Client),
            (
                Error::MethodNotAllowed {
                    method: http::Method::POST,
                    allow: "GET, HEAD",
                },
                405,
                Fault::Client,
            ),
            (
                Error::PayloadTooLarge {
                    route: "/api".into(),
                    limit: 10,
                },
                413,
                Fault::Client,
            ),
            (
                Error::RequestTimeout {
                    after: Duration::from_secs(30),
                },
                408,
                Fault::Client,
            ),
            (Error::UriTooLong { limit: 8192 }, 414, Fault::Client),
            (Error::ExpectationFailed("foo".into()), 417, Fault::Client),
            (
                Error::UpstreamUnavailable {
                    upstream: upstream.clone(),
                    cause: refused(),
                },
                502,
                Fault::Upstream,
            ),
            (
                Error::UpstreamTimeout {
                    upstream: upstream.clone(),
                    what: "connect",
                    after: Duration::from_secs(1),
                },
                504,
                Fault::Upstream,
            ),
            (
                Error::UpstreamBusy {
                    upstream: upstream.clone(),
                    max: 512,
                },
                503,
                Fault::Upstream,
            ),
            (
                Error::UpstreamProtocol {
                    upstream,
                    detail: "bad 101".into(),
                },
                502,
                Fault::Upstream,
            ),
            (
                Error::Internal {
                    what: "static file lookup",
                    cause: "oops".into(),
                },
                500,
                Fault::Gateway,
            ),
        ];
        for (err, status, fault) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
            assert_eq!(err.fault(), fault, "{err}");
        }
    }

    #[test]
    fn upstream_errors_name_the_upstream_and_keep_the_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot connect")]
        struct Outer(#[source] std::io::Error);
        let e = Error::UpstreamUnavailable {
            upstream: up(),
            cause: Box::new(Outer(std::io::Error::other("connection reset"))),
        };
        assert_eq!(
            e.to_string(),
            "upstream backend (http://127.0.0.1:8000): cannot connect: connection reset"
        );
        let source = std::error::Error::source(&e).expect("the cause is the source");
        assert!(source.is::<Outer>());
        // A source that only says the same again is not repeated.
        #[derive(Debug, thiserror::Error)]
        #[error("connection refused")]
        struct Refused(#[source] std::io::Error);
        let io = std::io::Error::other("Connection refused (os error 111)");
        assert_eq!(chain(&Refused(io)), "connection refused");
    }
}

/// Why the server could not start. Not an HTTP error: these end the process
/// with a message that names the file or address at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    // The io::Error is part of the message, not a `source`: callers print
    // error chains, and it would appear twice.
    #[error("cannot listen on {addr}: {cause}{}", bind_hint(cause))]
    Bind {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error("cannot read {}: {cause}", path.display())]
    ReadFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: no certificate found (expected a PEM `BEGIN CERTIFICATE` block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found (expected a PEM `BEGIN PRIVATE KEY` block)", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    BadPem { path: PathBuf, reason: String },
    #[error("the key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("upstream {upstream}: {reason}")]
    UpstreamTls { upstream: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot start the server's threads: {0}")]
    Runtime(String),
}

fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another program, maybe another portero or a dev server, is using it; pick another with --listen)"
        }
        std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    }
}
