//! Live reload: the `/__portero/livereload` WebSocket that tells pages what
//! changed, and the client script that listens to it.

use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;

use super::tunnel::Tunnels;
use crate::error::Error;
use crate::host::RequestHost;
use crate::http::body::{Body, empty, full};
use crate::http::headers::has_token;
use crate::http::reserved::{LIVERELOAD_SCRIPT, LIVERELOAD_SOCKET};

const CLIENT_JS: &str = include_str!("livereload.js");
/// The largest message a page may send on the socket.
const MAX_MESSAGE: usize = 4 * 1024;
const HELLO: &str = r#"{"type":"hello"}"#;
/// Sent when a socket fell behind and missed messages: reload to be safe.
const RELOAD: &str = r#"{"type":"change","paths":[],"css_only":false}"#;

/// The channel change messages go out on, one JSON text per debounced
/// batch. Cheap to clone: every clone sends to the same sockets.
#[derive(Clone)]
pub struct LiveReload {
    pub changes: broadcast::Sender<String>,
}

impl LiveReload {
    pub fn new() -> Self {
        Self {
            changes: broadcast::channel(64).0,
        }
    }

    /// Tells every open socket that `paths` changed.
    pub fn notify(&self, paths: &[String]) {
        // No receivers is the normal case with no page open.
        let _ = self.changes.send(change_message(paths));
    }
}

impl Default for LiveReload {
    fn default() -> Self {
        Self::new()
    }
}

/// `{"type":"change","paths":[...],"css_only":bool}`. CSS-only batches let
/// the page swap its stylesheets instead of reloading.
pub(crate) fn change_message(paths: &[String]) -> String {
    let css_only = !paths.is_empty()
        && paths
            .iter()
            .all(|p| p.to_ascii_lowercase().ends_with(".css"));
    #[derive(serde::Serialize)]
    struct Change<'a> {
        r#type: &'static str,
        paths: &'a [String],
        css_only: bool,
    }
    serde_json::to_string(&Change {
        r#type: "change",
        paths,
        css_only,
    })
    .expect("strings and booleans serialize")
}

/// Whether `path` is one of live reload's own.
pub(crate) fn owns(path: &str) -> bool {
    path == LIVERELOAD_SCRIPT || path == LIVERELOAD_SOCKET
}

/// Serves `/__portero/livereload` (WebSocket) and `/__portero/livereload.js`.
pub(crate) fn serve(
    req: Request<Incoming>,
    host: &RequestHost,
    livereload: &LiveReload,
    tunnels: &Tunnels,
) -> Result<Response<Body>, Error> {
    match req.uri().path() {
        LIVERELOAD_SCRIPT => script(req.method()),
        LIVERELOAD_SOCKET => upgrade(req, host, livereload, tunnels),
        other => Err(Error::NotFound { path: other.into() }),
    }
}

fn script(method: &Method) -> Result<Response<Body>, Error> {
    crate::http::get_or_head(method)?;
    let body = if method == Method::HEAD {
        empty()
    } else {
        full(CLIENT_JS)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(CLIENT_JS.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// Accepts the WebSocket handshake (RFC 6455 §4.2) and hands the upgraded
/// connection to a task tracked with the other tunnels.
fn upgrade(
    mut req: Request<Incoming>,
    host: &RequestHost,
    livereload: &LiveReload,
    tunnels: &Tunnels,
) -> Result<Response<Body>, Error> {
    if req.method() != Method::GET {
        return Err(Error::MethodNotAllowed {
            method: req.method().clone(),
            allow: "GET",
        });
    }
    let h = req.headers();
    if !has_token(h, header::UPGRADE, "websocket") || !has_token(h, header::CONNECTION, "upgrade") {
        return Err(Error::BadRequest(
            "/__portero/livereload is a WebSocket: send an Upgrade request",
        ));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(Error::BadRequest(
            "unsupported Sec-WebSocket-Version (want 13)",
        ));
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Error::BadRequest("missing Sec-WebSocket-Key"));
    };
    // A page of another site must not listen in (cross-site WebSocket
    // hijacking): a browser always sends Origin, and it must name the host
    // the socket is on. Clients without Origin are not browsers.
    if let Some(origin) = h.get(header::ORIGIN) {
        if !same_host(origin, host) {
            return Err(Error::Forbidden(
                "the live-reload socket only serves pages of its own host",
            ));
        }
    }
    let accept = derive_accept_key(key.as_bytes());

    // Subscribe now, so no change between the 101 and the socket task's
    // start is lost.
    let changes = livereload.changes.subscribe();
    let close = tunnels.shutting_down.clone();
    // Ordering: the upgrade future must exist before the 101 goes out, or
    // hyper has nothing to hand the connection to.
    let on_upgrade = hyper::upgrade::on(&mut req);
    tunnels.tracker.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(socket_config()),
                )
                .await;
                run_socket(ws, changes, close).await;
            }
            Err(e) => tracing::debug!("live-reload upgrade failed: {e}"),
        }
    });

    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    Ok(resp)
}

/// Pages only ever send pings and closes: a few KiB is plenty.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Whether `origin` (`scheme://host[:port]`) names `host` (with its port).
fn same_host(origin: &HeaderValue, host: &RequestHost) -> bool {
    let Ok(uri) = origin.to_str().unwrap_or("").parse::<http::Uri>() else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    let Ok(origin_host) = RequestHost::parse(authority.as_str()) else {
        return false;
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    origin_host.name == host.name
        && origin_host.port.unwrap_or(default_port) == host.port.unwrap_or(default_port)
}

async fn run_socket<S>(
    mut ws: WebSocketStream<S>,
    mut changes: broadcast::Receiver<String>,
    close: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if ws.send(Message::text(HELLO)).await.is_err() {
        return;
    }
    loop {
        let out = tokio::select! {
            _ = close.cancelled() => break,
            change = changes.recv() => match change {
                Ok(text) => text,
                Err(broadcast::error::RecvError::Lagged(_)) => RELOAD.to_string(),
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = ws.next() => match incoming {
                // Pings are answered by tungstenite; other messages ignored.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => continue,
            },
        };
        if ws.send(Message::text(out)).await.is_err() {
            return;
        }
    }
    // Sends our close frame (or the reply to the client's).
    let _ = ws.close(None).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_messages() {
        assert_eq!(
            change_message(&["/app.css".into()]),
            r#"{"type":"change","paths":["/app.css"],"css_only":true}"#
        );
        assert_eq!(
            change_message(&["/a.css".into(), "/index.html".into()]),
            r#"{"type":"change","paths":["/a.css","/index.html"],"css_only":false}"#
        );
        assert_eq!(
            change_message(&[]),
            r#"{"type":"change","paths":[],"css_only":false}"#
        );
        assert_eq!(
            change_message(&["/q\"\\\n.js".into()]),
            r#"{"type":"change","paths":["/q\"\\\n.js"],"css_only":false}"#
        );
    }
}
