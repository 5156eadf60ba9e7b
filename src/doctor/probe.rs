//! One HTTP/1.1 request over a fresh connection, with a deadline, and what
//! the answer says about the server that sent it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use super::{Report, UPSTREAM_TIMEOUT};
use crate::config::{Config, SpaSource, Upstream};

/// Most of a body kept for a look at it.
const BODY_KEPT: usize = 64 * 1024;

/// A response, its body cut at [`BODY_KEPT`].
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why there is no answer.
#[derive(Debug)]
pub(crate) enum NoAnswer {
    /// Nothing accepts connections there.
    Connect(std::io::Error),
    /// The connection (or TLS handshake) took longer than the deadline.
    ConnectTimeout,
    /// Connected, but no (complete) response within the deadline.
    Timeout,
    /// Connected, but what came back is not HTTP, or the TLS handshake failed.
    Protocol(String),
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::Connect(e) => write!(f, "cannot connect: {e}"),
            NoAnswer::ConnectTimeout => f.write_str("no connection within the timeout"),
            NoAnswer::Timeout => {
                f.write_str("accepts connections but sent no response within the timeout")
            }
            NoAnswer::Protocol(e) => write!(f, "connected, but {e}"),
        }
    }
}

/// `GET path` with `Host: host` to `addr_host:port`, over TLS when `tls`
/// is given, all within `limit`.
pub(crate) async fn get(
    addr_host: &str,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
    host: &str,
    path: &str,
    limit: Duration,
) -> Result<Answer, NoAnswer> {
    let deadline = tokio::time::Instant::now() + limit;
    let stream = tokio::time::timeout_at(deadline, TcpStream::connect((addr_host, port)))
        .await
        .map_err(|_| NoAnswer::ConnectTimeout)?
        .map_err(NoAnswer::Connect)?;
    let _ = stream.set_nodelay(true);
    let exchange = async {
        match tls {
            None => exchange(TokioIo::new(stream), host, path).await,
            Some(config) => {
                let name = rustls_pki_types::ServerName::try_from(addr_host.to_string())
                    .map_err(|e| NoAnswer::Protocol(format!("bad TLS server name: {e}")))?;
                let s = tokio_rustls::TlsConnector::from(config)
                    .connect(name, stream)
                    .await
                    .map_err(|e| NoAnswer::Protocol(format!("the TLS handshake failed: {e}")))?;
                exchange(TokioIo::new(s), host, path).await
            }
        }
    };
    tokio::time::timeout_at(deadline, exchange)
        .await
        .map_err(|_| NoAnswer::Timeout)?
}

async fn exchange<I>(io: I, host: &str, path: &str) -> Result<Answer, NoAnswer>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let protocol = |e: hyper::Error| NoAnswer::Protocol(format!("no HTTP answer: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(protocol)?;
    let req = Request::get(path)
        .header(http::header::HOST, host)
        .header(http::header::USER_AGENT, "portero-doctor")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| NoAnswer::Protocol(e.to_string()))?;
    let work = async move {
        let resp = sender.send_request(req).await.map_err(protocol)?;
        let (parts, mut body) = resp.into_parts();
        let mut kept = Vec::new();
        while kept.len() < BODY_KEPT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        kept.extend_from_slice(&data);
                    }
                }
                // A body cut short still says what it says so far.
                Some(Err(_)) | None => break,
            }
        }
        kept.truncate(BODY_KEPT);
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&kept).into_owned(),
        })
    };
    // `work` owns the sender: once it is done the connection closes and
    // `conn` completes.
    let (answer, _) = tokio::join!(work, conn);
    answer
}

/// What answered, as far as its headers and body tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    Daphne,
    Gunicorn,
    Uvicorn,
    Hypercorn,
    /// Django's `manage.py runserver` (`WSGIServer/0.2 CPython/3.x`).
    DjangoRunserver,
    Nginx,
    /// webpack-dev-server (Vue CLI, Create React App): Express underneath.
    WebpackDevServer,
    Vite,
    /// Anything else, with its `Server` header if any.
    Unknown(Option<String>),
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Server::Daphne => f.write_str("Daphne (ASGI: HTTP and WebSockets)"),
            Server::Gunicorn => f.write_str(
                "gunicorn (WSGI: no WebSockets; Channels needs Daphne or uvicorn workers)",
            ),
            Server::Uvicorn => f.write_str("uvicorn (ASGI: HTTP and WebSockets)"),
            Server::Hypercorn => f.write_str("Hypercorn (ASGI: HTTP and WebSockets)"),
            Server::DjangoRunserver => f.write_str(
                "Django's runserver (WSGIServer: no WebSockets unless daphne is in INSTALLED_APPS)",
            ),
            Server::Nginx => f.write_str("nginx"),
            Server::WebpackDevServer => f.write_str("a webpack dev server (Vue CLI / Express)"),
            Server::Vite => f.write_str("the Vite dev server"),
            Server::Unknown(Some(s)) => write!(f, "an unrecognised server (Server: {s})"),
            Server::Unknown(None) => f.write_str("an unrecognised server (no Server header)"),
        }
    }
}

/// Names the server from its `Server` header, then its other habits
/// (`X-Powered-By: Express`, Vite's client script).
pub fn identify(headers: &http::HeaderMap, body: &str) -> Server {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let server = get("server");
    if let Some(s) = &server {
        let l = s.to_ascii_lowercase();
        for (needle, what) in [
            ("daphne", Server::Daphne),
            ("gunicorn", Server::Gunicorn),
            ("uvicorn", Server::Uvicorn),
            ("hypercorn", Server::Hypercorn),
            ("wsgiserver", Server::DjangoRunserver),
            ("nginx", Server::Nginx),
        ] {
            if l.contains(needle) {
                return what;
            }
        }
    }
    if body.contains("/@vite/client") {
        return Server::Vite;
    }
    if get("x-powered-by").is_some_and(|p| p.eq_ignore_ascii_case("express")) {
        return Server::WebpackDevServer;
    }
    Server::Unknown(server)
}

/// How to start what should be listening at `up`.
fn start_hint(config: &Config, up: &Upstream) -> String {
    let host = up.url.host();
    let port = up.url.port();
    if matches!(&config.spa.source, SpaSource::DevServer(n) if *n == up.name) {
        return format!(
            "start the dev server on {host}:{port}: `npm run dev -- --host {host} --port {port}` \
             (Vite) or `npm run serve -- --host {host} --port {port}` (Vue CLI)"
        );
    }
    format!(
        "start it with `daphne -b {host} -p {port} project.asgi:application` \
         (or `python manage.py runserver {host}:{port}`)"
    )
}

/// Probes every upstream; returns the names of those that answered.
pub(crate) async fn upstreams(config: &Config, report: &mut Report<'_>) -> BTreeSet<String> {
    let mut answered = BTreeSet::new();
    for up in config.upstreams.values() {
        let label = format!("upstream {} ({})", up.name, up.url);
        let tls = if up.url.is_https() {
            match crate::tls::client_config(up) {
                Ok(c) => Some(c),
                Err(e) => {
                    report.fail(format!("{label}: {e}"));
                    continue;
                }
            }
        } else {
            None
        };
        let authority = up.url.authority.as_str();
        let path = if up.url.base_path.is_empty() {
            "/".to_string()
        } else {
            format!("{}/", up.url.base_path)
        };
        match get(
            up.url.host(),
            up.url.port(),
            tls,
            authority,
            &path,
            UPSTREAM_TIMEOUT,
        )
        .await
        {
            Ok(a) => {
                answered.insert(up.name.clone());
                report.ok(format!(
                    "{label}: {} answers (GET {path} → {})",
                    identify(&a.headers, &a.body),
                    a.status
                ));
            }
            Err(e @ (NoAnswer::Connect(_) | NoAnswer::ConnectTimeout)) => {
                report.fail(format!("{label}: {e}; {}", start_hint(config, up)));
            }
            Err(e) => report.fail(format!(
                "{label}: {e} (is something else listening on port {}?)",
                up.url.port()
            )),
        }
    }
    answered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn servers_are_named_from_their_headers_and_habits() {
        let cases = [
            (headers(&[("server", "daphne")]), "", Server::Daphne),
            (headers(&[("server", "gunicorn")]), "", Server::Gunicorn),
            (headers(&[("server", "uvicorn")]), "", Server::Uvicorn),
            (
                headers(&[("server", "WSGIServer/0.2 CPython/3.12.3")]),
                "",
                Server::DjangoRunserver,
            ),
            (headers(&[("server", "nginx/1.22.1")]), "", Server::Nginx),
            (
                headers(&[("x-powered-by", "Express")]),
                "<div id=app>",
                Server::WebpackDevServer,
            ),
            (
                headers(&[]),
                "<script type=\"module\" src=\"/@vite/client\"></script>",
                Server::Vite,
            ),
            (
                headers(&[("server", "Caddy")]),
                "",
                Server::Unknown(Some("Caddy".into())),
            ),
            (headers(&[]), "", Server::Unknown(None)),
        ];
        for (h, body, want) in cases {
            assert_eq!(identify(&h, body), want, "{h:?}");
        }
    }
}
