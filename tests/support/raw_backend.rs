//! A scripted raw TCP backend on 127.0.0.1:0: records the exact bytes of
//! every request it receives and answers each with the same scripted bytes.
//!
//! Per connection it reads one request head, then its body by
//! `Content-Length` or chunked framing; a request whose framing it cannot
//! work out (or that never ends) is read until a short idle gap and marked
//! incomplete. Every read has a timeout, so a case can never hang here.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a connection may sit idle before its next request head starts.
const NEXT_REQUEST: Duration = Duration::from_secs(2);
/// The idle gap that ends a message already started ("did anything else
/// arrive?").
const IDLE_GAP: Duration = Duration::from_millis(300);

/// What the backend does with each request.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    /// Written back, byte for byte, after each request.
    pub reply: Vec<u8>,
    /// Close the connection after replying (otherwise wait for the next
    /// request on it).
    pub close: bool,
}

impl Script {
    /// `200 OK`, body `ok`, connection kept alive.
    pub(crate) fn ok() -> Script {
        Script {
            reply: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            close: false,
        }
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub bytes: Vec<u8>,
    /// The head ended and the body ended by its own framing.
    pub complete: bool,
}

pub(crate) struct RawBackend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl RawBackend {
    pub(crate) async fn start(script: Script) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                conns.spawn(serve(s, script.clone(), rec.clone()));
            }
        });
        RawBackend {
            addr,
            received,
            task,
        }
    }

    /// Every request received so far, in the order they were read.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every
        // connection task with it.
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, script: Script, rec: Arc<Mutex<Vec<Received>>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(req) = read_request(&mut s, &mut buf).await else {
            return;
        };
        let complete = req.complete;
        rec.lock().unwrap().push(req);
        if s.write_all(&script.reply).await.is_err() {
            return;
        }
        if script.close || !complete {
            let _ = s.shutdown().await;
            return;
        }
    }
}

/// Reads into `buf` until `pred` says it holds enough, the peer closes, or
/// `wait` passes without a byte. True when `pred` was met.
async fn fill(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    wait: Duration,
    pred: impl Fn(&[u8]) -> bool,
) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    while !pred(buf) {
        match tokio::time::timeout(wait, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
    true
}

fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// One request from the front of `buf` (reading more as needed); the bytes
/// after it stay in `buf` for the next one.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    if buf.is_empty() && !fill(s, buf, NEXT_REQUEST, |b| !b.is_empty()).await {
        return None;
    }
    if !fill(s, buf, IDLE_GAP, |b| head_end(b).is_some()).await {
        return Some(drain(s, buf).await);
    }
    let head_len = head_end(buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    let values = |name: &str| -> Vec<String> {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    let te = values("transfer-encoding");
    let cl = values("content-length");
    let end = if te.iter().any(|v| v.contains("chunked")) {
        if !cl.is_empty() {
            None
        } else {
            // Read until the chunked body's end can be found.
            let mut end = None;
            loop {
                match chunked_end(&buf[head_len..]) {
                    Chunked::End(n) => {
                        end = Some(head_len + n);
                        break;
                    }
                    Chunked::Bad => break,
                    Chunked::More => {
                        let len = buf.len();
                        if !fill(s, buf, IDLE_GAP, |b| b.len() > len).await {
                            break;
                        }
                    }
                }
            }
            end
        }
    } else if !te.is_empty() || cl.len() > 1 {
        None
    } else if let Some(v) = cl.first() {
        match v.parse::<usize>() {
            Ok(n) if v.bytes().all(|c| c.is_ascii_digit()) => {
                let want = head_len + n;
                fill(s, buf, IDLE_GAP, |b| b.len() >= want)
                    .await
                    .then_some(want)
            }
            _ => None,
        }
    } else {
        Some(head_len)
    };
    match end {
        Some(n) => {
            let rest = buf.split_off(n);
            let bytes = std::mem::replace(buf, rest);
            Some(Received {
                bytes,
                complete: true,
            })
        }
        None => Some(drain(s, buf).await),
    }
}

/// Everything until the idle gap, as one incomplete request.
async fn drain(s: &mut TcpStream, buf: &mut Vec<u8>) -> Received {
    fill(s, buf, IDLE_GAP, |_| false).await;
    Received {
        bytes: std::mem::take(buf),
        complete: false,
    }
}

pub(crate) enum Chunked {
    End(usize),
    More,
    Bad,
}

/// Where a chunked body starting at `b[0]` ends (trailers included).
pub(crate) fn chunked_end(b: &[u8]) -> Chunked {
    let mut i = 0;
    loop {
        let Some(eol) = b[i..].windows(2).position(|w| w == b"\r\n") else {
            return Chunked::More;
        };
        let line = &b[i..i + eol];
        let size_text = line.split(|&c| c == b';').next().unwrap_or(b"");
        let Some(size) = std::str::from_utf8(size_text)
            .ok()
            .and_then(|t| usize::from_str_radix(t.trim(), 16).ok())
        else {
            return Chunked::Bad;
        };
        i += eol + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let Some(eol) = b[i..].windows(2).position(|w| w == b"\r\n") else {
                    return Chunked::More;
                };
                i += eol + 2;
                if eol == 0 {
                    return Chunked::End(i);
                }
            }
        }
        if b.len() < i + size + 2 {
            return Chunked::More;
        }
        if &b[i + size..i + size + 2] != b"\r\n" {
            return Chunked::Bad;
        }
        i += size + 2;
    }
}
