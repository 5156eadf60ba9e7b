//! Shared test support: start portero on 127.0.0.1:0 with a config, talk to
//! it with a plain HTTP client or raw bytes.
#![allow(dead_code)]

pub(crate) mod fixtures;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use portero::config::{Config, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) mod backends;
pub(crate) mod raw_backend;
pub(crate) mod ws;

/// A running portero. Dropping it without `stop` aborts the server task.
pub(crate) struct Portero {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Config text with the `[server]` section defaulted for tests: callers
/// give the rest. Listen addresses are ignored: tests bind port 0.
pub(crate) fn config(text: &str) -> Config {
    Config::from_str(text, Source::Embedded).unwrap_or_else(|e| panic!("test config invalid:\n{e}"))
}

pub(crate) async fn start(config: Config) -> Portero {
    start_reloading(config, None).await
}

/// `PORTERO_TEST_HTTP1=hyper` (or `fast`) runs the tests on that HTTP/1
/// path: CI runs the suite on the default (fast) and the protocol-heavy
/// targets again on hyper's, so both paths pass the same tests.
pub(crate) fn http1_from_env(config: &mut Config) {
    if let Ok(mode) = std::env::var("PORTERO_TEST_HTTP1") {
        config.server.http1 =
            portero::config::Http1Mode::parse(&mode).expect("PORTERO_TEST_HTTP1: fast or hyper");
    }
}

/// Starts portero with hot reload from `reloader`'s file.
pub(crate) async fn start_reloading(
    mut config: Config,
    reloader: Option<portero::Reloader>,
) -> Portero {
    http1_from_env(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listeners = portero::Listeners {
        plain: vec![listener],
        tls: vec![],
    };
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        portero::run_with_reload(listeners, config, reloader, async {
            let _ = rx.await;
        })
        .await
        .expect("portero runs");
    });
    Portero {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// Starts portero with the default config, the backend pointed at `backend`.
pub(crate) async fn start_default(backend: SocketAddr) -> Portero {
    let mut c = Config::embedded();
    portero::config::Overrides {
        backend: Some(format!("http://{backend}")),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap();
    start(c).await
}

impl Portero {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Begins graceful shutdown; the returned handle completes when portero
    /// has drained.
    pub(crate) fn begin_stop(&mut self) -> JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("not stopped twice")
    }

    pub(crate) async fn stop(mut self) {
        let h = self.begin_stop();
        tokio::time::timeout(Duration::from_secs(30), h)
            .await
            .expect("portero stops within 30 s")
            .unwrap();
    }
}

impl Drop for Portero {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

pub(crate) struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request through a fresh hyper client. `headers` may include `host`.
pub(crate) async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("response within 30 s")
        .expect("request succeeds");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub(crate) async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    request("GET", url, headers, b"").await
}

/// Sends raw bytes and reads until the server closes or `timeout` passes.
pub(crate) async fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 response head (through the blank line) from `s`.
pub(crate) async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("head within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed mid-head: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

pub(crate) mod tls;
