//! Issue #13, "the staging front door under hostile traffic": a table of raw
//! requests sent over TCP to portero, each with the rule it proves, what the
//! client must see, and the exact bytes the (scripted, raw) backend must
//! receive.
//!
//! Every case gets its own portero and its own raw backend, and the cases of
//! a group run concurrently. Backend bytes are compared exactly, after
//! substituting `{portero_port}`, `{backend_port}` and `{xf}` (portero's own
//! X-Forwarded-* block) into the expectation, and after putting the header
//! lines of both in one order (RFC 9110 §5.3: the order of different field
//! names carries no meaning; lines of the same name keep theirs).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::raw_backend::{Chunked, RawBackend, Received, Script, chunked_end};
use support::{config, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Longest wait for the first byte of portero's answer.
const FIRST_BYTE: Duration = Duration::from_secs(4);
/// After some answer: the gap that means "nothing else is coming".
const IDLE: Duration = Duration::from_millis(800);

// ---------------------------------------------------------------- harness

/// What the client must see first.
#[derive(Clone, Debug)]
enum First {
    /// A final response with one of these statuses.
    Status(&'static [u16]),
    /// The connection closed without a single byte of response.
    Closed,
    /// Either of the above.
    StatusOrClosed(&'static [u16]),
}

/// What the client must see after the first response (pipelined requests).
#[derive(Clone, Debug)]
enum Second {
    /// Not checked.
    Any,
    /// No second response, ever.
    None,
    Status(u16),
}

/// What the backend must have received.
#[derive(Clone, Debug)]
enum Backend {
    /// Not a byte: no connection carried a request.
    Nothing,
    /// Exactly these requests, in order (templates).
    Requests(Vec<String>),
    /// Maybe the start of a request, never a complete one.
    NoCompleteRequest,
}

#[derive(Clone, Debug)]
struct Case {
    group: &'static str,
    name: &'static str,
    rule: &'static str,
    request: Vec<u8>,
    script: Script,
    first: First,
    second: Second,
    backend: Backend,
    /// Header names the first response must not carry.
    lacks: Vec<&'static str>,
    /// Byte strings (templates) that must appear nowhere in what the client
    /// received.
    never: Vec<String>,
    /// The client's connection must be closed before the exchange ends.
    closes: bool,
}

fn case(
    group: &'static str,
    name: &'static str,
    rule: &'static str,
    req: impl AsRef<[u8]>,
) -> Case {
    Case {
        group,
        name,
        rule,
        request: req.as_ref().to_vec(),
        script: Script::ok(),
        first: First::Status(&[200]),
        second: Second::Any,
        backend: Backend::Nothing,
        lacks: vec![],
        never: vec![],
        closes: false,
    }
}

impl Case {
    fn status(mut self, s: &'static [u16]) -> Case {
        self.first = First::Status(s);
        self
    }
    fn closed(mut self) -> Case {
        self.first = First::Closed;
        self
    }
    fn status_or_closed(mut self, s: &'static [u16]) -> Case {
        self.first = First::StatusOrClosed(s);
        self
    }
    fn second(mut self, s: Second) -> Case {
        self.second = s;
        self
    }
    /// The backend receives exactly these requests.
    fn got(mut self, reqs: &[&str]) -> Case {
        self.backend = Backend::Requests(reqs.iter().map(|s| s.to_string()).collect());
        self
    }
    fn got_owned(mut self, reqs: Vec<String>) -> Case {
        self.backend = Backend::Requests(reqs);
        self
    }
    fn nothing(mut self) -> Case {
        self.backend = Backend::Nothing;
        self
    }
    fn no_complete_request(mut self) -> Case {
        self.backend = Backend::NoCompleteRequest;
        self
    }
    fn reply(mut self, bytes: &str, close: bool) -> Case {
        self.script = Script {
            reply: bytes.as_bytes().to_vec(),
            close,
        };
        self
    }
    fn lacks(mut self, names: &[&'static str]) -> Case {
        self.lacks.extend_from_slice(names);
        self
    }
    fn never(mut self, s: &str) -> Case {
        self.never.push(s.to_string());
        self
    }
    fn closes(mut self) -> Case {
        self.closes = true;
        self
    }
}

/// One response as the client parsed it.
#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: Vec<u8>,
    complete: bool,
}

/// Everything the client saw on its connection.
#[derive(Debug)]
struct ClientSaw {
    bytes: Vec<u8>,
    /// The server closed (or reset) the connection.
    eof: bool,
    /// Final responses (and a 101, after which nothing is parsed).
    responses: Vec<Resp>,
    /// Bytes after the last complete response that do not form one.
    trailing: Vec<u8>,
}

struct Env {
    portero: SocketAddr,
    backend: SocketAddr,
    static_root: String,
}

impl Env {
    fn expand(&self, t: &str) -> String {
        t.replace(
            "{xf}",
            "x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: localhost\r\nx-forwarded-port: {portero_port}\r\n",
        )
        .replace("{portero_port}", &self.portero.port().to_string())
        .replace("{backend_port}", &self.backend.port().to_string())
        .replace("{static_root}", &self.static_root)
    }
}

/// Header lines in one order (by lower-cased name, stable), the request
/// line and the body untouched.
fn normalise(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return text.into_owned();
    };
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut fields: Vec<&str> = lines.collect();
    fields.sort_by_key(|l| l.split(':').next().unwrap_or("").to_ascii_lowercase());
    let mut out = String::from(first);
    for f in fields {
        out.push_str("\r\n");
        out.push_str(f);
    }
    out.push_str("\r\n\r\n");
    out.push_str(body);
    out
}

fn config_for(backend: SocketAddr, static_root: &Path) -> portero::Config {
    config(&format!(
        r#"
profile = "staging"
[server]
header_read_timeout = "1s"
[upstreams.backend]
url = "http://{backend}"
wait_for = "0s"
connect_timeout = "1s"
response_timeout = "3s"
# Shorter than IDLE: a stalled response body is cut off within a case.
body_idle_timeout = "500ms"
[[routes]]
prefix = "/api"
upstream = "backend"
[[routes]]
prefix = "/admin"
upstream = "backend"
[[routes]]
prefix = "/static"
upstream = "backend"
[[routes]]
prefix = "/media"
upstream = "backend"
[[routes]]
prefix = "/ws"
upstream = "backend"
[[routes]]
prefix = "/files"
static_dir = "{root}"
[[routes]]
prefix = "/"
spa = true
[spa]
dev_server = "http://{backend}"
# On for the live-reload socket's own cases (staging turns it off).
live_reload = true
"#,
        root = static_root.display()
    ))
}

/// Sends `req` and reads until portero closes, stays silent for `IDLE`
/// after answering, or says nothing for `FIRST_BYTE`.
async fn exchange(addr: SocketAddr, req: &[u8]) -> ClientSaw {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // Written alongside the reads: portero may answer (and close) before
    // a large request is fully sent.
    let req = req.to_vec();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&req).await;
        wr
    });
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut eof = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let wait = if bytes.is_empty() { FIRST_BYTE } else { IDLE };
        let wait = wait.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                eof = true;
                break;
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    // Keeps the write half (and so the connection) open until here.
    drop(writer.await);
    let (responses, trailing) = parse_responses(&bytes, eof);
    ClientSaw {
        bytes,
        eof,
        responses,
        trailing,
    }
}

fn parse_responses(b: &[u8], eof: bool) -> (Vec<Resp>, Vec<u8>) {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let Some(end) = b[i..].windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&b[i..i + end + 4]).into_owned();
        let status = head
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status else { break };
        let body_start = i + end + 4;
        let lower = head.to_ascii_lowercase();
        let field = |name: &str| {
            lower
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim() == name)
                .map(|(_, v)| v.trim().to_string())
        };
        if (100..200).contains(&status) && status != 101 {
            // Interim: skipped.
            i = body_start;
            continue;
        }
        if status == 101 {
            out.push(Resp {
                status,
                head,
                body: vec![],
                complete: true,
            });
            return (out, vec![]);
        }
        let rest = &b[body_start..];
        let (len, complete) = if status == 204 || status == 304 {
            (0, true)
        } else if field("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            match chunked_end(rest) {
                Chunked::End(n) => (n, true),
                _ => (rest.len(), false),
            }
        } else if let Some(n) = field("content-length").and_then(|v| v.parse::<usize>().ok()) {
            (n.min(rest.len()), rest.len() >= n)
        } else {
            (rest.len(), eof)
        };
        out.push(Resp {
            status,
            head,
            body: rest[..len].to_vec(),
            complete,
        });
        i = body_start + len;
        if !complete {
            return (out, vec![]);
        }
    }
    (out, b[i..].to_vec())
}

fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.len() > 1500 {
        format!("{:?}... ({} bytes)", &s[..1500], b.len())
    } else {
        format!("{s:?}")
    }
}

/// Runs one case; `Err` describes every way it failed.
async fn run_case(c: &Case, static_root: &Path) -> Result<(), String> {
    let backend = RawBackend::start(c.script.clone()).await;
    let p = start(config_for(backend.addr, static_root)).await;
    let env = Env {
        portero: p.addr,
        backend: backend.addr,
        static_root: static_root.display().to_string(),
    };
    let saw = exchange(p.addr, &c.request).await;
    let got = backend.received();
    let mut problems = Vec::new();

    let first = saw.responses.first();
    let status_ok = |allowed: &[u16]| first.is_some_and(|r| allowed.contains(&r.status));
    let closed_silently = saw.bytes.is_empty() && saw.eof;
    match &c.first {
        First::Status(s) if !status_ok(s) => problems.push(format!("first response: want {s:?}")),
        First::Closed if !closed_silently => {
            problems.push("want the connection closed without a response".into())
        }
        First::StatusOrClosed(s) if !status_ok(s) && !closed_silently => {
            problems.push(format!("want {s:?} or closed without a response"))
        }
        _ => {}
    }
    if c.closes && !saw.eof {
        problems.push(format!(
            "want the connection closed, still open {IDLE:?} after the last byte"
        ));
    }
    if saw.bytes.is_empty() && !saw.eof {
        problems.push(format!(
            "stall: no response and the connection still open after {FIRST_BYTE:?}"
        ));
    }
    match c.second {
        Second::Any => {}
        Second::None => {
            if saw.responses.len() > 1 || !saw.trailing.is_empty() {
                problems.push("a second response arrived".into());
            }
        }
        Second::Status(s) => {
            if saw.responses.get(1).map(|r| r.status) != Some(s) {
                problems.push(format!("second response: want {s}"));
            }
        }
    }
    if let Some(r) = first {
        let lower = r.head.to_ascii_lowercase();
        for name in &c.lacks {
            if lower
                .split("\r\n")
                .any(|l| l.split(':').next() == Some(*name))
            {
                problems.push(format!("the response carries {name}"));
            }
        }
    }
    for n in &c.never {
        let n = env.expand(n);
        if saw.bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
            problems.push(format!("the client received {n:?}"));
        }
    }

    // `HARDENING_DUMP=dir`: what each case saw, one file per case, to diff
    // two runs (the fast HTTP/1 path against hyper's: `PORTERO_TEST_HTTP1=hyper`).
    if let Some(dir) = std::env::var_os("HARDENING_DUMP") {
        let statuses: Vec<String> = saw
            .responses
            .iter()
            .map(|r| {
                format!(
                    "{}{}",
                    r.status,
                    if r.complete { "" } else { " (incomplete)" }
                )
            })
            .collect();
        let backend: Vec<String> = got.iter().map(|r| normalise(&r.bytes)).collect();
        let text = format!(
            "client: {statuses:?} closed={} trailing={}\nbackend: {backend:#?}\n",
            saw.eof,
            saw.trailing.len()
        );
        let text = text.replace(&env.portero.port().to_string(), "{portero_port}");
        let text = text.replace(&env.backend.port().to_string(), "{backend_port}");
        let _ = std::fs::create_dir_all(&dir);
        let file = std::path::Path::new(&dir).join(format!("{}.{}", c.group, c.name));
        let _ = std::fs::write(file, text);
    }

    let complete: Vec<&Received> = got.iter().filter(|r| r.complete).collect();
    match &c.backend {
        Backend::Nothing => {
            if !got.is_empty() {
                problems.push("the backend received bytes".into());
            }
        }
        Backend::NoCompleteRequest => {
            if !complete.is_empty() {
                problems.push("the backend received a complete request".into());
            }
        }
        Backend::Requests(want) => {
            let want: Vec<String> = want
                .iter()
                .map(|t| normalise(env.expand(t).as_bytes()))
                .collect();
            let have: Vec<String> = got.iter().map(|r| normalise(&r.bytes)).collect();
            if want != have || complete.len() != got.len() {
                problems.push(format!(
                    "backend bytes differ:\n    want: {want:?}\n    have: {have:?}"
                ));
            }
        }
    }
    drop(p);
    if problems.is_empty() {
        return Ok(());
    }
    let responses: Vec<String> = saw
        .responses
        .iter()
        .map(|r| {
            format!(
                "{} ({} body bytes{})",
                r.status,
                r.body.len(),
                if r.complete { "" } else { ", incomplete" }
            )
        })
        .collect();
    Err(format!(
        "[{}] {}\n  RULE: {}\n  problems: {}\n  client saw: {responses:?}, closed: {}\n  client bytes: {}\n  backend got: {:?}",
        c.group,
        c.name,
        c.rule,
        problems.join("; "),
        saw.eof,
        show(&saw.bytes),
        got.iter().map(|r| show(&r.bytes)).collect::<Vec<_>>(),
    ))
}

/// Runs `cases` concurrently; panics listing every failure with its rule.
async fn run_all(cases: Vec<Case>) {
    assert!(!cases.is_empty(), "no cases selected");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    let root = std::sync::Arc::new(dir.path().canonicalize().unwrap());
    let total = cases.len();
    let mut set = JoinSet::new();
    for c in cases {
        let root = root.clone();
        set.spawn(async move { run_case(&c, &root).await });
    }
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.unwrap() {
            failures.push(e);
        }
    }
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn of_group(group: &str) -> Vec<Case> {
    corpus().into_iter().filter(|c| c.group == group).collect()
}

// ---------------------------------------------------------------- corpus

const WS_KEY: &str = "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const WS_101: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
/// The plain GET /api/x portero forwards.
const GET_API: &str = "GET /api/x HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n";
const SMUGGLED: &str = "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled";

fn corpus() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(framing_cases());
    v.extend(host_cases());
    v.extend(pipelining_cases());
    v.extend(expect_cases());
    v.extend(upgrades_cases());
    v.extend(hop_by_hop_cases());
    v.extend(forwarding_cases());
    v.extend(bad_backend_cases());
    v.extend(methods_cases());
    v.extend(limits_cases());
    v.extend(exposure_cases());
    v
}

fn framing_cases() -> Vec<Case> {
    let g = "framing";
    let post = |name, rule, headers: &str, body: &str| {
        case(
            g,
            name,
            rule,
            format!("POST /api/x HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n{body}"),
        )
    };
    vec![
        case(g, "plain_get", "A well-formed GET is forwarded with only Host and X-Forwarded-* set by portero.",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .got(&[GET_API]),
        post("content_length_body", "A Content-Length body is forwarded with that length and those bytes.",
            "Content-Length: 5\r\n", "hello")
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n{xf}\r\nhello"]),
        post("chunked_body", "A chunked body is decoded and re-framed by portero, never passed through as sent.",
            "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\n{xf}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]),
        post("chunked_uppercase", "Transfer codings are case-insensitive: CHUNKED is chunked.",
            "Transfer-Encoding: CHUNKED\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\n{xf}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]),
        post("chunk_extension_benign", "A short chunk extension is accepted and not forwarded.",
            "Transfer-Encoding: chunked\r\n", "5;name=value\r\nhello\r\n0\r\n\r\n")
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\n{xf}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]),
        post("cl_and_te", "Content-Length with Transfer-Encoding: chunked wins and Content-Length is never forwarded, and the connection closes after the answer (RFC 9112 §6.3 ¶3); a 400 would do too.",
            "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .status(&[200, 400]).closes()
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\n{xf}transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]),
        post("two_cl_different", "Two different Content-Length values are refused with 400.",
            "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")
            .status(&[400]).nothing(),
        post("two_cl_same", "Two equal Content-Length fields are forwarded as one (RFC 9110 §8.6 allows that or a 400): the backend never sees two.",
            "Content-Length: 5\r\nContent-Length: 5\r\n", "hello")
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n{xf}\r\nhello"]),
        post("cl_list", "A Content-Length list (5, 5) is refused with 400.",
            "Content-Length: 5, 5\r\n", "hello")
            .status(&[400]).nothing(),
        post("cl_plus_sign", "A Content-Length with a sign is refused with 400.",
            "Content-Length: +5\r\n", "hello")
            .status(&[400]).nothing(),
        post("cl_negative", "A negative Content-Length is refused with 400.",
            "Content-Length: -5\r\n", "hello")
            .status(&[400]).nothing(),
        post("cl_inner_space", "A Content-Length with a space inside the number is refused with 400.",
            "Content-Length: 1 0\r\n", "hellohello")
            .status(&[400]).nothing(),
        post("cl_hex", "A hexadecimal Content-Length is refused with 400.",
            "Content-Length: 0x5\r\n", "hello")
            .status(&[400]).nothing(),
        post("cl_overflow", "A Content-Length beyond 64 bits is refused with 400.",
            "Content-Length: 99999999999999999999999\r\n", "hello")
            .status(&[400]).nothing(),
        post("te_chunked_identity", "Transfer-Encoding whose last coding is not chunked is refused with 400 (RFC 9112 §6.3).",
            "Transfer-Encoding: chunked, identity\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .status(&[400, 501]).nothing(),
        post("te_identity_chunked", "Only `chunked` alone is accepted: an unknown coding before it is refused (400/501).",
            "Transfer-Encoding: identity, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .status(&[400, 501]).nothing(),
        post("te_xchunked", "An unknown transfer coding (xchunked) is refused (400/501), never forwarded.",
            "Transfer-Encoding: xchunked\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .status(&[400, 501]).nothing(),
        post("te_chunked_twice", "chunked applied twice is refused with 400 (RFC 9112 §6.1).",
            "Transfer-Encoding: chunked, chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .status(&[400]).nothing(),
        post("te_two_fields", "Two Transfer-Encoding: chunked fields (chunked twice) are refused with 400.",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .status(&[400]).nothing(),
        post("te_leading_comma", "An empty list element before chunked is refused, never forwarded as sent.",
            "Transfer-Encoding: ,chunked\r\n", "5\r\nhello\r\n0\r\n\r\n")
            .status(&[400, 501]).nothing(),
        post("chunk_size_overflow", "A chunk size beyond 64 bits is a framing error: 400 or closed, and the backend never gets a complete request.",
            "Transfer-Encoding: chunked\r\n", "ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n")
            .status_or_closed(&[400]).no_complete_request(),
        post("chunk_extension_abusive", "A 20 KiB chunk extension is refused: 400 or closed, and the backend never gets a complete request.",
            "Transfer-Encoding: chunked\r\n", &format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(20 * 1024)))
            .status_or_closed(&[400]).no_complete_request(),
        case(g, "bare_lf_head", "A request head with bare LF line endings is read as CRLF (RFC 9112 §2.2 allows it) and forwarded with CRLF only: the backend never sees a bare LF.",
            "GET /api/x HTTP/1.1\nHost: localhost\n\n")
            .got(&[GET_API]),
        post("bare_lf_chunked", "A chunked body with bare LF line endings is a framing error: 400 or closed, no complete request upstream.",
            "Transfer-Encoding: chunked\r\n", "5\nhello\n0\n\n")
            .status_or_closed(&[400]).no_complete_request(),
        case(g, "obs_fold", "An obs-fold continuation line is refused with 400 (RFC 9112 §5.2).",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Foo: a\r\n b\r\n\r\n")
            .status(&[400]).nothing(),
        case(g, "nul_in_value", "A NUL byte in a header value is refused with 400.",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Foo: a\0b\r\n\r\n")
            .status(&[400]).nothing(),
        case(g, "cr_in_value", "A bare CR in a header value is refused with 400.",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Foo: a\rb\r\n\r\n")
            .status(&[400]).nothing(),
        case(g, "space_in_name", "A space inside a header name is refused with 400.",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nX Foo: 1\r\n\r\n")
            .status(&[400]).nothing(),
        case(g, "space_before_colon", "Whitespace between a header name and the colon is refused with 400 (RFC 9112 §5.1).",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n")
            .status(&[400]).nothing(),
        case(g, "head_never_ends", "A request head that never ends is cut off at header_read_timeout: closed without a response, nothing forwarded.",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Foo: 1\r\n")
            .closed().nothing(),
        case(g, "not_http", "Bytes that are not HTTP (a TLS ClientHello on the plain port) get a 400 or a closed connection, nothing forwarded.",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n")
            .status_or_closed(&[400]).nothing(),
        case(g, "preface_first_byte_only", "A connection that sends only \"P\" (it could begin the HTTP/2 preface) is closed at header_read_timeout without a response.",
            "P")
            .closed().nothing(),
        case(g, "preface_cut_short", "The first line of the HTTP/2 preface and nothing more is closed at header_read_timeout without a response.",
            "PRI * HTTP/2.0\r\n")
            .closed().nothing(),
        case(g, "double_space_request_line", "A request line with two spaces between method and target is refused with 400.",
            "GET  /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .status(&[400]).nothing(),
    ]
}

fn host_cases() -> Vec<Case> {
    let g = "host";
    vec![
        case(
            g,
            "missing",
            "An HTTP/1.1 request without Host is refused with 400.",
            "GET /api/x HTTP/1.1\r\n\r\n",
        )
        .status(&[400])
        .nothing(),
        case(
            g,
            "two_hosts",
            "Two Host fields are refused with 400.",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nHost: a.localhost\r\n\r\n",
        )
        .status(&[400])
        .nothing(),
        case(
            g,
            "invalid_chars",
            "A Host with characters no host name has is refused with 400.",
            "GET /api/x HTTP/1.1\r\nHost: local<host>\r\n\r\n",
        )
        .status(&[400])
        .nothing(),
        case(
            g,
            "empty",
            "An empty Host is refused with 400.",
            "GET /api/x HTTP/1.1\r\nHost: \r\n\r\n",
        )
        .status(&[400])
        .nothing(),
        case(
            g,
            "bad_port",
            "A Host whose port is out of range is refused with 400.",
            "GET /api/x HTTP/1.1\r\nHost: localhost:99999\r\n\r\n",
        )
        .status(&[400])
        .nothing(),
        case(
            g,
            "userinfo_in_host",
            "Userinfo in Host is refused with 400.",
            "GET /api/x HTTP/1.1\r\nHost: user@localhost\r\n\r\n",
        )
        .status(&[400])
        .nothing(),
        case(
            g,
            "foreign_host",
            "A host that is not allowed is refused with 421, nothing forwarded.",
            "GET /api/x HTTP/1.1\r\nHost: evil.example.com\r\n\r\n",
        )
        .status(&[421])
        .nothing(),
        case(
            g,
            "absolute_form_agrees",
            "An absolute-form target agreeing with Host is forwarded in origin-form.",
            "GET http://localhost/api/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .got(&[GET_API]),
        case(
            g,
            "absolute_form_disagrees",
            "An absolute-form target whose authority disagrees with Host is refused with 400.",
            "GET http://a.localhost/api/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .status(&[400])
        .nothing(),
        case(
            g,
            "absolute_form_userinfo",
            "Userinfo in an absolute-form target is refused with 400.",
            "GET http://user:pw@localhost/api/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
        .status(&[400])
        .nothing(),
    ]
}

fn pipelining_cases() -> Vec<Case> {
    let g = "pipelining";
    let next = "GET /admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n";
    vec![
        case(g, "two_good", "Two pipelined good requests are both answered, in order, and both forwarded.",
            format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n{next}"))
            .second(Second::Status(200))
            .got(&[GET_API, "GET /admin/secret HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n"]),
        case(g, "after_bad_cl", "After a request refused for its Content-Length, the pipelined request is never processed.",
            format!("POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\nhello{next}"))
            .status(&[400]).second(Second::None).nothing(),
        case(g, "after_cl_te", "CL.TE smuggling: chunked framing wins, the connection closes after the answer, and the request hidden behind it is never processed.",
            format!("POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{next}"))
            .status(&[200, 400]).second(Second::None).closes()
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\n{xf}transfer-encoding: chunked\r\n\r\n0\r\n\r\n"]),
        case(g, "after_missing_host", "After a request refused for its Host, the pipelined request is never processed.",
            format!("GET /api/x HTTP/1.1\r\n\r\n{next}"))
            .status(&[400]).second(Second::None).nothing(),
        case(g, "after_obs_fold", "After a request refused for obs-fold, the pipelined request is never processed.",
            format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n 2\r\n\r\n{next}"))
            .status(&[400]).second(Second::None).nothing(),
        case(g, "after_upgrade_with_body", "After an upgrade request refused for its body, the pipelined request is never processed.",
            format!("GET /ws/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{WS_KEY}Content-Length: 5\r\n\r\nhello{next}"))
            .status(&[400]).second(Second::None).nothing(),
    ]
}

fn expect_cases() -> Vec<Case> {
    let g = "expect";
    vec![
        case(g, "100_continue", "Expect: 100-continue is answered by portero; the backend gets the body and no Expect.",
            "POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n{xf}\r\nhello"]),
        case(g, "unknown_expectation", "An expectation other than 100-continue is refused with 417, nothing forwarded (RFC 9110 §10.1.1).",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nExpect: foo\r\n\r\n")
            .status(&[417]).nothing(),
    ]
}

fn upgrades_cases() -> Vec<Case> {
    let g = "upgrades";
    let ws_head = "GET /ws/x HTTP/1.1\r\nhost: localhost\r\nsec-websocket-version: 13\r\n\
sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{xf}connection: upgrade\r\nupgrade: websocket\r\n\r\n";
    let ws_req = format!(
        "GET /ws/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{WS_KEY}\r\n"
    );
    vec![
        case(g, "websocket_ok", "A WebSocket upgrade on /ws is forwarded with Connection/Upgrade and the 101 comes back.",
            &ws_req)
            .reply(WS_101, true).status(&[101]).got(&[ws_head]),
        case(g, "h2c_on_api", "Upgrade: h2c is never tunnelled: the backend gets neither Upgrade nor HTTP2-Settings, the client a normal response.",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
            .status(&[200]).got(&[GET_API]),
        case(g, "h2c_settings_not_in_connection", "HTTP2-Settings is dropped even when Connection does not name it; h2c is not tunnelled.",
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
            .status(&[200]).got(&[GET_API]),
        case(g, "unknown_protocol", "Only websocket is tunnelled: Upgrade: foo becomes a plain request without Upgrade.",
            "GET /ws/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n")
            .status(&[200]).got(&["GET /ws/x HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n"]),
        case(g, "upgrade_without_connection", "Upgrade without Connection: upgrade is a plain request; Upgrade is dropped.",
            "GET /ws/x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\r\n")
            .status(&[200]).got(&["GET /ws/x HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n"]),
        case(g, "refused_then_extra_bytes", "A backend refusing the upgrade (403) and sending more bytes: the client gets the 403 and never the extra bytes.",
            &ws_req)
            .reply(&format!("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n{SMUGGLED}"), true)
            .status(&[403]).second(Second::None).never("smuggled").got(&[ws_head]),
        case(g, "wrong_101_upgrade", "A backend answering 101 with another protocol than asked is a 502.",
            &ws_req)
            .reply("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", true)
            .status(&[502]).got(&[ws_head]),
        case(g, "101_without_upgrade", "A backend answering 101 without an Upgrade field is a 502.",
            &ws_req)
            .reply("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", true)
            .status(&[502]).got(&[ws_head]),
        case(g, "upgrade_with_content_length_body", "An upgrade request with a body (Content-Length: 5) is refused with 400, nothing forwarded.",
            format!("GET /ws/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{WS_KEY}Content-Length: 5\r\n\r\nhello"))
            .status(&[400]).nothing(),
        case(g, "upgrade_with_chunked_body", "An upgrade request with a chunked body is refused with 400, nothing forwarded.",
            format!("GET /ws/x HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{WS_KEY}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
            .status(&[400]).nothing(),
        case(g, "upgrade_http10", "An HTTP/1.0 request cannot upgrade: forwarded as a plain request without Upgrade.",
            "GET /ws/x HTTP/1.0\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .status(&[200]).got(&["GET /ws/x HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n"]),
    ]
}

fn hop_by_hop_cases() -> Vec<Case> {
    let g = "hop_by_hop";
    let get = |name, rule, headers: &str| {
        case(
            g,
            name,
            rule,
            format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"),
        )
    };
    vec![
        get("connection_close", "Connection: close applies to the client hop only: not forwarded.",
            "Connection: close\r\n")
            .got(&[GET_API]),
        get("keep_alive", "Connection: keep-alive and Keep-Alive are not forwarded.",
            "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n")
            .got(&[GET_API]),
        get("te_gzip", "TE is hop-by-hop: only `trailers` is passed on.",
            "TE: gzip, trailers\r\n")
            .got(&["GET /api/x HTTP/1.1\r\nhost: localhost\r\nte: trailers\r\n{xf}\r\n"]),
        get("trailer", "Trailer is hop-by-hop: not forwarded.",
            "Trailer: X-Foo\r\n")
            .got(&[GET_API]),
        get("proxy_connection", "Proxy-Connection is not forwarded.",
            "Proxy-Connection: keep-alive\r\n")
            .got(&[GET_API]),
        get("connection_named", "A header named in Connection (X-Foo) is not forwarded.",
            "Connection: X-Foo\r\nX-Foo: 1\r\n")
            .got(&[GET_API]),
        case(g, "connection_names_content_length", "Connection naming Content-Length cannot unframe a body: it still arrives framed, whole.",
            "POST /api/x HTTP/1.1\r\nHost: localhost\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello")
            .got(&["POST /api/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\n{xf}\r\nhello"]),
        get("response_connection_named", "Hop-by-hop headers of the backend's response (Connection, what it names, Keep-Alive, Proxy-Connection) never reach the client.", "")
            .reply("HTTP/1.1 200 OK\r\nConnection: X-Bar\r\nX-Bar: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\ncontent-length: 2\r\n\r\nok", false)
            .lacks(&["x-bar", "keep-alive", "proxy-connection"]).got(&[GET_API]),
        get("response_upgrade_on_200", "An Upgrade field on a backend's 200 never reaches the client.", "")
            .reply("HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nTrailer: X-T\r\ncontent-length: 2\r\n\r\nok", false)
            .lacks(&["upgrade", "trailer"]).got(&[GET_API]),
    ]
}

fn forwarding_cases() -> Vec<Case> {
    let g = "forwarding";
    let get = |name, rule, headers: &str| {
        case(
            g,
            name,
            rule,
            format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n"),
        )
    };
    vec![
        get("x_forwarded_for", "An untrusted peer's X-Forwarded-For is replaced by its own address.",
            "X-Forwarded-For: 6.6.6.6\r\n").got(&[GET_API]),
        get("x_forwarded_host", "An untrusted peer's X-Forwarded-Host is replaced by the Host it sent.",
            "X-Forwarded-Host: evil.example.com\r\n").got(&[GET_API]),
        get("x_forwarded_proto_port", "An untrusted peer's X-Forwarded-Proto and -Port are replaced.",
            "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n").got(&[GET_API]),
        get("forwarded", "An untrusted peer's Forwarded header never reaches the backend.",
            "Forwarded: for=6.6.6.6;host=evil.example.com;proto=https\r\n").got(&[GET_API]),
        get("x_real_ip", "An untrusted peer's X-Real-IP never reaches the backend.",
            "X-Real-IP: 6.6.6.6\r\n").got(&[GET_API]),
        get("underscore_x_forwarded_for", "Header names with underscores (X_Forwarded_For, which WSGI reads as X-Forwarded-For) are dropped.",
            "X_Forwarded_For: 6.6.6.6\r\n").got(&[GET_API]),
        get("underscore_x_tenant", "Header names with underscores (X_Tenant) are dropped.",
            "X_Tenant: globex\r\n").got(&[GET_API]),
    ]
}

fn bad_backend_cases() -> Vec<Case> {
    let g = "bad_backend";
    let get = |name, rule| {
        case(
            g,
            name,
            rule,
            "GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
        )
    };
    vec![
        get("cl_and_chunked", "A backend response with both Content-Length and chunked is a 502 (RFC 9112 §6.3: an error), never passed on.")
            .reply(&format!("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"), true)
            .status(&[502]).second(Second::None).never("smuggled").got(&[GET_API]),
        get("two_different_cls", "A backend response with two different Content-Lengths is a 502 (or closed).")
            .reply(&format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok{SMUGGLED}"), true)
            .status_or_closed(&[502]).second(Second::None).never("smuggled").got(&[GET_API]),
        get("cl_shorter_than_body", "Bytes after a backend response's Content-Length never reach the client as a response.")
            .reply(&format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok{SMUGGLED}"), true)
            .status(&[200]).second(Second::None).never("smuggled").got(&[GET_API]),
        case(g, "cl_shorter_pipelined", "Extra bytes on a kept-alive backend connection are never taken as the next request's response.",
            "GET /api/a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /api/b HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .reply(&format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok{SMUGGLED}"), false)
            .status(&[200]).second(Second::Status(200)).never("smuggled")
            .got(&["GET /api/a HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n", "GET /api/b HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n"]),
        get("cl_longer_than_body", "A backend response shorter than its Content-Length ends the client connection (no stall, no second response).")
            .reply("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok", true)
            .status_or_closed(&[200, 502]).second(Second::None).got(&[GET_API]),
        get("stalled_body", "A backend that stops sending its response body is cut off after upstreams.*.body_idle_timeout: the client's connection is closed, the response short (no stall, no padding).")
            .reply("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789", false)
            .status(&[200]).second(Second::None).closes().got(&[GET_API]),
        get("garbage_response", "A backend answering something that is not HTTP is a 502.")
            .reply("hello world\r\n\r\n", true)
            .status(&[502]).got(&[GET_API]),
        get("bad_status_code", "A backend status line with a 4-digit code is a 502.")
            .reply("HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok", true)
            .status(&[502]).got(&[GET_API]),
        get("closes_without_answer", "A backend closing without answering is a 502.")
            .reply("", true)
            .status(&[502]).got(&[GET_API]),
    ]
}

fn methods_cases() -> Vec<Case> {
    let g = "methods";
    vec![
        case(g, "connect", "CONNECT is refused with 405 by portero and never forwarded (it is not a forward proxy).",
            "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n")
            .status(&[405]).nothing(),
        case(g, "options_star", "OPTIONS * is answered by portero itself (200/204), never forwarded as a path /*.",
            "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .status(&[200, 204]).nothing(),
        case(g, "options_path", "OPTIONS on a path is an ordinary request, forwarded.",
            "OPTIONS /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .got(&["OPTIONS /api/x HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n"]),
    ]
}

fn limits_cases() -> Vec<Case> {
    let g = "limits";
    let big_header = format!(
        "GET /api/x HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let long_uri = format!(
        "GET /api/{} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let headers = |n: usize| -> String { (0..n).map(|i| format!("X-H{i}: {i}\r\n")).collect() };
    let hundred = format!(
        "GET /api/x HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        headers(99)
    );
    let hundred_fwd = format!(
        "GET /api/x HTTP/1.1\r\nhost: localhost\r\n{}{{xf}}\r\n",
        headers(99).to_ascii_lowercase()
    );
    let over = format!(
        "GET /api/x HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        headers(101)
    );
    vec![
        case(
            g,
            "head_over_64k",
            "A request head larger than 64 KiB is refused with 431, nothing forwarded.",
            big_header,
        )
        .status(&[431])
        .nothing(),
        case(
            g,
            "uri_over_16k",
            "A request target longer than 16 KiB is refused with 414, nothing forwarded.",
            long_uri,
        )
        .status(&[414])
        .nothing(),
        case(
            g,
            "over_100_headers",
            "More than 100 header fields are refused with 431, nothing forwarded.",
            over,
        )
        .status(&[431])
        .nothing(),
        case(
            g,
            "exactly_100_headers",
            "100 header fields (Host included) are accepted and forwarded.",
            hundred,
        )
        .got_owned(vec![hundred_fwd]),
    ]
}

fn exposure_cases() -> Vec<Case> {
    let g = "exposure";
    let livereload = |origin: &str| {
        format!(
            "GET /__portero/livereload HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n{WS_KEY}Origin: {origin}\r\n\r\n"
        )
    };
    vec![
        case(g, "status_from_loopback", "/__portero/status is answered to a loopback peer, by portero itself.",
            "GET /__portero/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .status(&[200]).nothing(),
        case(g, "livereload_same_origin", "The livereload WebSocket opens for a page on the same origin.",
            livereload("http://localhost"))
            .status(&[101]).nothing(),
        case(g, "livereload_foreign_origin", "The livereload WebSocket is refused (403) to a foreign Origin.",
            livereload("http://evil.example.com"))
            .status(&[403]).nothing(),
        case(g, "static_long_segment", "A 300-byte path segment under a static folder is 404/414 and the page never shows the folder's absolute path.",
            format!("GET /files/{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "a".repeat(300)))
            .status(&[404, 414]).never("{static_root}").nothing(),
        case(g, "static_traversal", "Dot segments are resolved before routing: /files/../../etc/passwd is /etc/passwd on the / route (here the dev server), never a file outside the static folder.",
            "GET /files/../../../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .never("{static_root}").never("root:")
            .got(&["GET /etc/passwd HTTP/1.1\r\nhost: 127.0.0.1:{backend_port}\r\n{xf}\r\n"]),
        case(g, "static_encoded_traversal", "An encoded dot-dot under a static folder never leaves it and never shows its absolute path.",
            "GET /files/..%2f..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .status(&[400, 404]).never("{static_root}").never("root:").nothing(),
    ]
}

// ---------------------------------------------------------------- tests

#[test]
fn corpus_is_large_and_well_formed() {
    let all = corpus();
    assert!(all.len() >= 60, "{} cases", all.len());
    let mut names: Vec<(&str, &str)> = all.iter().map(|c| (c.group, c.name)).collect();
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    assert_eq!(names.len(), n, "case names are unique within a group");
}

/// The harness can fail: a case with a wrong expectation is reported, with
/// its rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expectation_is_reported_with_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let c = case(
        "meta",
        "wrong",
        "THE RULE",
        "GET /api/x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .status(&[418])
    .got(&["GET /api/y HTTP/1.1\r\nhost: localhost\r\n{xf}\r\n"]);
    let err = run_case(&c, dir.path()).await.unwrap_err();
    assert!(err.contains("RULE: THE RULE"), "{err}");
    assert!(err.contains("first response: want [418]"), "{err}");
    assert!(err.contains("backend bytes differ"), "{err}");
}

macro_rules! group {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            run_all(of_group(stringify!($name))).await;
        }
    };
}

group!(framing);
group!(host);
group!(pipelining);
group!(expect);
group!(upgrades);
group!(hop_by_hop);
group!(forwarding);
group!(bad_backend);
group!(methods);
group!(limits);
group!(exposure);
