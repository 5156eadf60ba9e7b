//! "Replay" on the page: a kept request is sent again, as it was received,
//! to the listener it came in on, so it takes the whole way through portero
//! again (host, tenant, route, upstream) and shows up in the inspector as a
//! new request. The answer comes back to the page beside the old one.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::http::body::{Body, full};
use crate::http::headers::strip_hop_by_hop;
use crate::inspector::{self, Replay};

/// The most a replay waits for its answer, all of it.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most of the new response's body shown.
const SHOWN: usize = 64 * 1024;

/// What the page shows of the new response.
#[derive(Debug, Serialize)]
pub(crate) struct Outcome {
    pub status: u16,
    pub ms: f64,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub body_truncated: bool,
}

/// Besides the hop-by-hop headers, what described the original body: the
/// replay's own body sets its length anew, and sends it without waiting.
const NOT_RESENT: [HeaderName; 2] = [header::CONTENT_LENGTH, header::EXPECT];

/// Sends `r` again and reads the answer (its body up to [`SHOWN`] bytes).
pub(crate) async fn send(r: &Replay, unmask: bool) -> Result<Outcome, String> {
    let start = Instant::now();
    tokio::time::timeout(TIMEOUT, exchange(r, unmask, start))
        .await
        .map_err(|_| format!("no complete answer within {TIMEOUT:?}"))?
}

async fn exchange(r: &Replay, unmask: bool, start: Instant) -> Result<Outcome, String> {
    let tcp = TcpStream::connect(r.local)
        .await
        .map_err(|e| format!("could not connect to portero's listener {}: {e}", r.local))?;
    let _ = tcp.set_nodelay(true);
    let req = request(r)?;
    let resp = if r.tls {
        let name = server_name(&r.host)?;
        let tls = tokio_rustls::TlsConnector::from(crate::tls::own_listener_config())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with portero's listener failed: {e}"))?;
        round_trip(TokioIo::new(tls), req).await?
    } else {
        round_trip(TokioIo::new(tcp), req).await?
    };
    let status = resp.status().as_u16();
    let headers = inspector::copy(resp.headers(), unmask);
    let mut body = resp.into_body();
    let mut kept = BytesMut::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the answer's body broke off: {e}"))?;
        if let Some(data) = frame.data_ref() {
            let room = SHOWN - kept.len();
            kept.extend_from_slice(&data[..room.min(data.len())]);
            if data.len() > room {
                truncated = true;
                break;
            }
        }
        if body.is_end_stream() {
            break;
        }
    }
    Ok(Outcome {
        status,
        ms: (start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
        headers,
        body: String::from_utf8_lossy(&kept).into_owned(),
        body_truncated: truncated,
    })
}

/// The request as received, minus what belongs to its old connection.
fn request(r: &Replay) -> Result<Request<Full<Bytes>>, String> {
    let mut req = Request::builder()
        .method(r.method.clone())
        .uri(r.target.as_str())
        .body(Full::new(r.body.clone()))
        .map_err(|e| format!("the kept request is not a valid request: {e}"))?;
    let h = req.headers_mut();
    *h = r.headers.clone();
    strip_hop_by_hop(h);
    for name in NOT_RESENT {
        h.remove(name);
    }
    // An HTTP/2 request named its host in `:authority`, not `Host`.
    if !h.contains_key(header::HOST) {
        let host = HeaderValue::from_str(&r.host).map_err(|e| e.to_string())?;
        h.insert(header::HOST, host);
    }
    if !r.body.is_empty() {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.body.len()));
    }
    Ok(req)
}

async fn round_trip<T>(
    io: TokioIo<T>,
    req: Request<Full<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("could not talk HTTP/1.1 to portero's listener: {e}"))?;
    // The connection task ends with the exchange (the sender is dropped).
    tokio::spawn(conn);
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("portero's listener did not answer: {e}"))
}

/// SNI for the replay: the host the client named, without its port.
fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?} is no TLS server name: {e}"))
}

/// A JSON answer for the page.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let mut body = serde_json::to_string(value).expect("strings and numbers serialize");
    body.push('\n');
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_is_the_host_without_its_port() {
        let s = |h| server_name(h).map(|n| n.to_str().into_owned());
        assert_eq!(s("acme.localhost:8443").unwrap(), "acme.localhost");
        assert_eq!(s("acme.localhost").unwrap(), "acme.localhost");
        assert_eq!(s("[::1]:8443").unwrap(), "::1");
        assert_eq!(s("127.0.0.1:8443").unwrap(), "127.0.0.1");
    }

    #[test]
    fn the_old_framing_is_not_resent() {
        let mut headers = http::HeaderMap::new();
        for (n, v) in [
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("expect", "100-continue"),
            ("x-keep", "yes"),
            ("cookie", "a=1"),
        ] {
            headers.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let r = Replay {
            method: http::Method::POST,
            target: "/api/x?y=1".into(),
            host: "acme.localhost:8080".into(),
            headers,
            body: Bytes::from_static(b"{\"a\":1}"),
            local: "127.0.0.1:8080".parse().unwrap(),
            tls: false,
        };
        let req = request(&r).unwrap();
        let h = req.headers();
        assert_eq!(req.uri(), "/api/x?y=1");
        assert_eq!(h["host"], "acme.localhost:8080");
        assert_eq!(h["content-length"], "7");
        assert_eq!(h["x-keep"], "yes");
        assert_eq!(h["cookie"], "a=1");
        for gone in ["transfer-encoding", "connection", "expect", "x-hop"] {
            assert!(!h.contains_key(gone), "{gone}");
        }
    }
}
