//! A tokio-tungstenite echo backend and client helpers.
// tungstenite's handshake callback API dictates a large Err type.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the backend saw in the last handshake.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub host: Option<String>,
    pub origin: Option<String>,
    pub path: String,
}

/// Echo server. Paths: `/ws/refuse` answers 403; a client offering
/// subprotocols gets the first it offers; everything else echoes every
/// message (pings are answered by tungstenite itself; close frames echo
/// their code).
pub(crate) struct WsEcho {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl WsEcho {
    pub(crate) async fn start() -> WsEcho {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (s, c) = (seen.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                let h = tokio::spawn(async move {
                    let callback =
                        |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
                            let get = |n: &str| {
                                req.headers()
                                    .get(n)
                                    .and_then(|v| v.to_str().ok())
                                    .map(String::from)
                            };
                            *s.lock().unwrap() = Seen {
                                host: get("host"),
                                origin: get("origin"),
                                path: req.uri().path().to_string(),
                            };
                            if req.uri().path() == "/ws/refuse" {
                                let mut e = ErrorResponse::new(Some("refused".into()));
                                *e.status_mut() = http::StatusCode::FORBIDDEN;
                                return Err(e);
                            }
                            if let Some(first) = get("sec-websocket-protocol")
                                .and_then(|p| p.split(',').next().map(|x| x.trim().to_string()))
                            {
                                resp.headers_mut()
                                    .insert("sec-websocket-protocol", first.parse().unwrap());
                            }
                            Ok(resp)
                        };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        // Close replies are queued by tungstenite itself;
                        // reading on flushes them and ends the stream.
                        let echo = matches!(msg, Message::Text(_) | Message::Binary(_));
                        if echo && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
                c.lock().unwrap().push(h);
            }
        });
        WsEcho {
            addr,
            seen,
            task,
            conns,
        }
    }

    /// Kills the server and every open connection, as a crashed backend would.
    pub(crate) fn kill(&self) {
        self.task.abort();
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects through portero at `addr` with the given Host, path and extra headers.
pub(crate) async fn connect(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(Client, http::Response<Option<Vec<u8>>>), tokio_tungstenite::tungstenite::Error> {
    let mut req = http::Request::builder()
        .uri(format!("ws://{host}{path}"))
        .header("host", host)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tokio_tungstenite::tungstenite::handshake::client::generate_key(),
        );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let stream = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async_with_config(
        req.body(()).unwrap(),
        MaybeTlsStream::Plain(stream),
        None,
    )
    .await
}
