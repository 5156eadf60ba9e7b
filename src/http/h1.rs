//! HTTP/1.1 message heads and chunked bodies for the fast HTTP/1 path
//! (`server::fast_h1`): heads parsed with `httparse` (the parser hyper
//! uses) straight from a connection's read buffer into the `http` types the
//! header rules take, and written from them straight into a write buffer.
//!
//! Only the common shape is taken ([`parse_request`]): anything else is
//! [`Parse::Other`], and the connection goes to hyper with the bytes
//! unread, so every odd case is decided by one parser, hyper's.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};

/// The most header fields in one request or response (hyper's server is
/// configured with the same: 431 beyond).
pub(crate) const MAX_HEADERS: usize = 100;

/// What a parse found at the start of a buffer.
pub(crate) enum Parse<T> {
    /// Not a complete head yet.
    Partial,
    Complete(T),
    /// Not the common shape (or not valid): someone else decides.
    Other,
}

/// A request head in the common shape.
pub(crate) struct RequestHead {
    /// Method, target, version and headers; no body.
    pub req: Request<()>,
    /// The head's bytes as received (replayed to hyper on a fall-back).
    pub raw: Bytes,
    pub body: RequestBody,
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestBody {
    /// `Content-Length` (0 without one).
    Length(u64),
    /// A single `Transfer-Encoding: chunked`.
    Chunked,
}

fn method(m: &str) -> Option<Method> {
    Some(match m {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    })
}

/// A decimal `Content-Length` value, as hyper reads one (digits only).
pub(crate) fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Where `part` (a slice of `base`) starts in it.
fn offset(base: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - base.as_ptr() as usize
}

/// Header slots for `httparse`, left uninitialised (it fills them).
type Slots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

fn slots<'b>() -> Slots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Where each field's name and value lie in the head: offsets, so the head
/// can be taken off the buffer before the header map is filled.
type Spans = [[u32; 4]; MAX_HEADERS];

fn span(base: &[u8], name: &[u8], value: &[u8]) -> [u32; 4] {
    let (n, v) = (offset(base, name), offset(base, value));
    [
        n as u32,
        (n + name.len()) as u32,
        v as u32,
        (v + value.len()) as u32,
    ]
}

/// Fills `headers` (cleared) from the fields of `raw` at `spans`.
fn fill_headers(raw: &Bytes, spans: &[[u32; 4]], headers: &mut HeaderMap) -> Option<()> {
    headers.clear();
    headers.reserve(spans.len() + 6);
    for &[n0, n1, v0, v1] in spans {
        let name = HeaderName::from_bytes(&raw[n0 as usize..n1 as usize]).ok()?;
        let value = HeaderValue::from_maybe_shared(raw.slice(v0 as usize..v1 as usize)).ok()?;
        headers.append(name, value);
    }
    Some(())
}

/// Parses the request head at the start of `buf` and, when it is the
/// common shape, takes it off `buf`: HTTP/1.1, a method among GET, HEAD,
/// POST, PUT, PATCH, DELETE and OPTIONS, an origin-form target, exactly one
/// `Host`, no `Upgrade`, `Expect` or `TE`, no `Connection` but
/// `keep-alive`, and either at most one `Content-Length` of digits or one
/// `Transfer-Encoding: chunked`.
/// Anything else is [`Parse::Other`] and `buf` is left as it was. The
/// header map is `cache`'s (taken, its allocation reused).
pub(crate) fn parse_request(buf: &mut BytesMut, cache: &mut HeaderMap) -> Parse<RequestHead> {
    let mut slots = slots();
    let mut spans: Spans = [[0; 4]; MAX_HEADERS];
    let mut r = httparse::Request::new(&mut []);
    let len = match r.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Other,
    };
    if r.version != Some(1) {
        return Parse::Other;
    }
    let Some(method) = r.method.and_then(method) else {
        return Parse::Other;
    };
    let path = r.path.unwrap_or("");
    if !path.starts_with('/') {
        return Parse::Other;
    }
    let base: &[u8] = buf;
    let path_at = offset(base, path.as_bytes());
    let path_len = path.len();
    let mut hosts = 0;
    let mut body = None;
    let mut chunked = 0;
    let n = r.headers.len();
    for (slot, h) in spans.iter_mut().zip(r.headers.iter()) {
        let name = h.name.as_bytes();
        let v = h.value;
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        if is("host") {
            hosts += 1;
        } else if is("content-length") {
            match (body, digits(v)) {
                (None, Some(n)) => body = Some(n),
                _ => return Parse::Other,
            }
        } else if is("connection") {
            if !v.eq_ignore_ascii_case(b"keep-alive") {
                return Parse::Other;
            }
        } else if is("transfer-encoding") {
            if !v.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Parse::Other;
            }
            chunked += 1;
        } else if is("upgrade") || is("expect") || is("te") {
            return Parse::Other;
        }
        *slot = span(base, name, v);
    }
    let body = match (body, chunked) {
        (None, 0) => RequestBody::Length(0),
        (Some(n), 0) => RequestBody::Length(n),
        (None, 1) => RequestBody::Chunked,
        _ => return Parse::Other,
    };
    if hosts != 1 {
        return Parse::Other;
    }
    let raw = buf.split_to(len).freeze();
    let mut headers = std::mem::take(cache);
    let uri = Uri::from_maybe_shared(raw.slice(path_at..path_at + path_len));
    let (Ok(uri), Some(())) = (uri, fill_headers(&raw, &spans[..n], &mut headers)) else {
        // The bytes go back for hyper to judge.
        *cache = headers;
        let mut back = BytesMut::from(&raw[..]);
        back.extend_from_slice(buf);
        *buf = back;
        return Parse::Other;
    };
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Parse::Complete(RequestHead { req, raw, body })
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes.
    Close,
}

/// A response head from the upstream.
pub(crate) struct ResponseHead {
    pub status: StatusCode,
    /// The reason phrase, when not the status's canonical one (written
    /// back as received, as hyper does).
    pub reason: Option<Bytes>,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// The connection may carry another exchange.
    pub keep_alive: bool,
    /// When the response rules have nothing to do but drop hop-by-hop
    /// fields (and the caller allowed it): the head's bytes, its fields at
    /// the spans the caller passed, and `headers` is left empty.
    pub raw: Option<Bytes>,
}

/// What [`parse_response`] found.
pub(crate) enum Response {
    /// An interim (1xx) response, taken off the buffer: skipped, as hyper
    /// does.
    Interim,
    Final(ResponseHead),
}

/// Why a response head was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BadResponse {
    #[error("invalid response head: {0}")]
    Parse(httparse::Error),
    #[error("invalid response header")]
    Header,
    #[error("unexpected 101 Switching Protocols")]
    Switching,
    #[error("invalid Content-Length")]
    Length,
    #[error("both Transfer-Encoding and Content-Length")]
    LengthAndChunked,
}

/// Parses the response head at the start of `buf` and takes it off `buf`
/// when complete. `head`: the request was `HEAD`. The header map is
/// `cache`'s (taken, its allocation reused).
pub(crate) fn parse_response(
    buf: &mut BytesMut,
    head: bool,
    cache: &mut HeaderMap,
    raw_spans: Option<&mut Vec<[u32; 4]>>,
) -> Result<Option<Response>, BadResponse> {
    let mut slots = slots();
    let mut spans: Spans = [[0; 4]; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut r, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadResponse::Parse(e)),
    };
    let code = r.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| BadResponse::Header)?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(BadResponse::Switching);
    }
    if status.is_informational() {
        let _ = buf.split_to(len);
        return Ok(Some(Response::Interim));
    }
    let base: &[u8] = buf;
    let reason = r.reason.unwrap_or("");
    let reason = (Some(reason) != status.canonical_reason())
        .then(|| (offset(base, reason.as_bytes()), reason.len()));
    let mut keep_alive = r.version == Some(1);
    let n = r.headers.len();
    let (mut chunked, mut te, mut length, mut lengths) = (false, false, None, 0);
    // The rules would only drop hop-by-hop fields: no field they rewrite,
    // and `Connection` names nothing but `keep-alive` (itself dropped).
    let mut plain = raw_spans.is_some();
    for (slot, h) in spans.iter_mut().zip(r.headers.iter()) {
        let name = h.name.as_bytes();
        let v = h.value;
        plain &= !crate::http::rewrite::is_rewritten_name(name);
        if name.eq_ignore_ascii_case(b"connection") {
            let close = v
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
            keep_alive &= !close;
            plain &= v
                .split(|&b| b == b',')
                .all(|t| t.trim_ascii().eq_ignore_ascii_case(b"keep-alive"));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
            // The last coding decides (RFC 9112 §6.3).
            chunked = v
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            for part in v.split(|&b| b == b',') {
                let n = digits(part.trim_ascii()).ok_or(BadResponse::Length)?;
                if length.is_some_and(|l| l != n) {
                    return Err(BadResponse::Length);
                }
                length = Some(n);
            }
        }
        *slot = span(base, name, v);
    }
    let framing = if head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if te && lengths > 0 {
        return Err(BadResponse::LengthAndChunked);
    } else if te {
        if chunked && r.version == Some(1) {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    let raw = buf.split_to(len).freeze();
    let mut headers = std::mem::take(cache);
    let raw_head = match raw_spans {
        Some(out) if plain && lengths <= 1 => {
            out.clear();
            out.extend_from_slice(&spans[..n]);
            Some(raw.clone())
        }
        _ => {
            if fill_headers(&raw, &spans[..n], &mut headers).is_none() {
                *cache = headers;
                return Err(BadResponse::Header);
            }
            None
        }
    };
    Ok(Some(Response::Final(ResponseHead {
        status,
        reason: reason.map(|(at, len)| raw.slice(at..at + len)),
        headers,
        framing,
        keep_alive,
        raw: raw_head,
    })))
}

/// Writes a request head for the upstream: origin-form target, HTTP/1.1,
/// the fields as the header map holds them (lower-case names, as hyper
/// writes them).
pub(crate) fn write_request_head(out: &mut Vec<u8>, req: &Request<()>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, req.headers());
    out.extend_from_slice(b"\r\n");
}

fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a response head for the client: the status line (`reason` when
/// not the canonical one), the fields, `date` unless there is one (as
/// hyper does), `extra` (framing the fast path adds) and the blank line.
pub(crate) fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: Option<&[u8]>,
    headers: &HeaderMap,
    extra: &[u8],
) {
    write_status_line(out, status, reason);
    write_fields(out, headers);
    if !headers.contains_key(header::DATE) {
        out.extend_from_slice(b"date: ");
        date::extend(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

/// [`write_response_head`] for a head the rules leave alone but for its
/// hop-by-hop fields ([`ResponseHead::raw`]): the fields copied from `raw`
/// at `spans`, names lower-cased, hop-by-hop ones left out.
pub(crate) fn write_raw_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: Option<&[u8]>,
    raw: &[u8],
    spans: &[[u32; 4]],
    extra: &[u8],
) {
    write_status_line(out, status, reason);
    let mut date = false;
    for &[n0, n1, v0, v1] in spans {
        let name = &raw[n0 as usize..n1 as usize];
        if crate::http::headers::is_hop_by_hop_name(name) {
            continue;
        }
        date |= name.eq_ignore_ascii_case(b"date");
        out.extend(name.iter().map(u8::to_ascii_lowercase));
        out.extend_from_slice(b": ");
        out.extend_from_slice(&raw[v0 as usize..v1 as usize]);
        out.extend_from_slice(b"\r\n");
    }
    if !date {
        out.extend_from_slice(b"date: ");
        date::extend(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
}

fn write_status_line(out: &mut Vec<u8>, status: StatusCode, reason: Option<&[u8]>) {
    if status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        match reason {
            Some(r) => out.extend_from_slice(r),
            None => out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The `Date` value, formatted once a second per thread (as hyper does).
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
    }

    pub(super) fn extend(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHED.with_borrow_mut(|(at, text)| {
            if *at != secs {
                let s = httpdate::fmt_http_date(now);
                text.copy_from_slice(&s.as_bytes()[..29]);
                *at = secs;
            }
            out.extend_from_slice(text);
        });
    }
}

/// A chunked body being decoded (RFC 9112 §7.1), strictly: CRLF line ends,
/// at most 16 hex digits of size, extensions (ignored) and trailers
/// (dropped, as hyper drops them for a client that did not ask) bounded.
#[derive(Debug, Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    /// Bytes of extension or trailer seen, bounded.
    extra: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// At least one digit read.
    SizeDigits(u64, u8),
    SizeWs(u64),
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: at the start of a trailer line (or the end).
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// The most bytes of chunk extensions and trailers in one body.
const CHUNK_EXTRA_MAX: usize = 16 * 1024;

/// A chunked body broke its framing.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunked body")]
pub(crate) struct BadChunk;

impl Chunked {
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, handing each piece of data to `data`; returns
    /// how many bytes of `input` were used (all of them unless the body
    /// ended within them).
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, BadChunk> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                Size => SizeDigits(hex(b).ok_or(BadChunk)?, 1),
                SizeDigits(n, len) => match (b, hex(b)) {
                    (_, Some(d)) if len < 16 => SizeDigits(n << 4 | d, len + 1),
                    (_, Some(_)) => return Err(BadChunk),
                    (b' ' | b'\t', _) => SizeWs(n),
                    (b';', _) => Ext(n),
                    (b'\r', _) => SizeLf(n),
                    _ => return Err(BadChunk),
                },
                SizeWs(n) => match b {
                    b' ' | b'\t' => SizeWs(n),
                    b';' => Ext(n),
                    b'\r' => SizeLf(n),
                    _ => return Err(BadChunk),
                },
                Ext(n) => {
                    self.extra += 1;
                    if self.extra > CHUNK_EXTRA_MAX || b == b'\n' {
                        return Err(BadChunk);
                    }
                    if b == b'\r' { SizeLf(n) } else { Ext(n) }
                }
                SizeLf(n) => match (b, n) {
                    (b'\n', 0) => TrailerStart,
                    (b'\n', n) => Data(n),
                    _ => return Err(BadChunk),
                },
                Data(n) => {
                    let take = usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - i);
                    data(&input[i..i + take]);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 { DataCr } else { Data(left) };
                    continue;
                }
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Size,
                DataCr | DataLf => return Err(BadChunk),
                TrailerStart => match b {
                    b'\r' => EndLf,
                    _ => Trailer,
                },
                Trailer => {
                    self.extra += 1;
                    if self.extra > CHUNK_EXTRA_MAX || b == b'\n' {
                        return Err(BadChunk);
                    }
                    if b == b'\r' { TrailerLf } else { Trailer }
                }
                TrailerLf if b == b'\n' => TrailerStart,
                EndLf if b == b'\n' => {
                    self.state = Done;
                    return Ok(i + 1);
                }
                TrailerLf | EndLf => return Err(BadChunk),
                Done => return Ok(i),
            };
            i += 1;
        }
        Ok(i)
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// Appends one chunk of `data` to `out` in chunked framing.
pub(crate) fn write_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and an empty trailer section.
pub(crate) const CHUNKED_END: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn req(bytes: &str) -> Option<RequestHead> {
        let mut b = BytesMut::from(bytes);
        match parse_request(&mut b, &mut HeaderMap::new()) {
            Parse::Complete(h) => Some(h),
            Parse::Partial => panic!("partial"),
            Parse::Other => {
                assert_eq!(&b[..], bytes.as_bytes(), "left as it was");
                None
            }
        }
    }

    #[test]
    fn the_common_shape_is_taken_and_the_rest_is_not() {
        let h = req("GET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(h.req.uri(), "/a?b");
        assert_eq!(h.req.headers()["host"], "x");
        assert_eq!(h.body, RequestBody::Length(0));
        let h = req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(h.body, RequestBody::Length(5));
        let h = req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n").unwrap();
        assert_eq!(h.body, RequestBody::Chunked);
        for other in [
            "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "CONNECT x:1 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
        ] {
            assert!(req(other).is_none(), "{other:?}");
        }
    }

    fn resp(bytes: &str, head: bool) -> Result<ResponseHead, BadResponse> {
        let mut b = BytesMut::from(bytes);
        loop {
            match parse_response(&mut b, head, &mut HeaderMap::new(), None)? {
                Some(Response::Final(h)) => return Ok(h),
                Some(Response::Interim) => continue,
                None => panic!("partial"),
            }
        }
    }

    #[test]
    fn response_framing() {
        let f = |s: &str| resp(s, false).map(|h| (h.framing, h.keep_alive));
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n").unwrap(),
            (Framing::Length(2), true)
        );
        assert_eq!(
            f("HTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
                .unwrap(),
            (Framing::Length(2), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap(),
            (Framing::Chunked, true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\n\r\n").unwrap(),
            (Framing::Close, false)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n").unwrap(),
            (Framing::Length(0), false)
        );
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n").is_err());
        assert!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n")
                .is_err()
        );
        assert!(f("HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
        assert!(f("HTTP/1.1 2000 OK\r\n\r\n").is_err());
        assert!(f("hello world\r\n\r\n").is_err());
        let h = resp("HTTP/1.1 200 Fine\r\ncontent-length: 2\r\n\r\n", true).unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(h.reason.as_deref(), Some(&b"Fine"[..]));
    }

    fn dechunk(input: &[u8]) -> Result<(Vec<u8>, usize, bool), BadChunk> {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        // One byte at a time: state survives every split.
        let mut used = 0;
        for i in 0..input.len() {
            used += c.decode(&input[i..=i], |d| out.extend_from_slice(d))?;
            if c.is_done() {
                break;
            }
        }
        Ok((out, used, c.is_done()))
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n1;a=b\r\n!\r\n0\r\nX-T: 1\r\n\r\nextra").unwrap(),
            (b"hello!".to_vec(), 33, true)
        );
        assert!(dechunk(b"5\nhello\n0\n\n").is_err());
        assert!(dechunk(b"ffffffffffffffffffff\r\n").is_err());
        assert!(dechunk(b"5\r\nhelloXX").is_err());
        assert!(dechunk(b"g\r\n").is_err());
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let used = c
            .decode(b"2\r\nok\r\n0\r\n\r\nHTTP/1.1", |d| {
                out.extend_from_slice(d)
            })
            .unwrap();
        assert_eq!((used, c.is_done(), &out[..]), (12, true, &b"ok"[..]));
    }

    mod raw_heads {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "Content-Type",
            "content-length",
            "Connection",
            "keep-alive",
            "Proxy-Connection",
            "te",
            "Trailer",
            "upgrade",
            "Transfer-Encoding",
            "location",
            "Set-Cookie",
            "content-location",
            "refresh",
            "link",
            "Date",
            "server",
            "x-a",
            "X-B",
            "vary",
        ];
        const VALUES: &[&str] = &[
            "keep-alive",
            "close",
            "Keep-Alive, x-a",
            "x-a",
            "chunked",
            "gzip, chunked",
            "2",
            "text/plain",
            "a, b",
            "",
            "http://127.0.0.1:8000/x",
        ];

        fn header() -> impl Strategy<Value = (&'static str, &'static str)> {
            (prop::sample::select(NAMES), prop::sample::select(VALUES))
        }

        /// The head's lines but the status line and `date`, sorted.
        fn lines(out: &[u8]) -> Vec<String> {
            let mut l: Vec<String> = String::from_utf8_lossy(out)
                .split("\r\n")
                .skip(1)
                .filter(|l| !l.is_empty() && !l.starts_with("date:"))
                .map(str::to_string)
                .collect();
            l.sort();
            l
        }

        proptest! {
            #![proptest_config(crate::testing::proptest_config())]

            /// A head written through from the upstream's bytes is the
            /// head the header-map path writes (hop-by-hop fields stripped
            /// by the same rule, nothing for the rewrite to do), but for
            /// the order of fields.
            #[test]
            fn a_head_written_through_is_the_rules_head(
                headers in proptest::collection::vec(header(), 0..10),
            ) {
                let mut text = String::from("HTTP/1.1 200 OK\r\n");
                for (n, v) in &headers {
                    text.push_str(&format!("{n}: {v}\r\n"));
                }
                text.push_str("\r\n");
                let mut spans = Vec::new();
                let through = parse_response(
                    &mut BytesMut::from(text.as_str()),
                    false,
                    &mut HeaderMap::new(),
                    Some(&mut spans),
                );
                let mapped =
                    parse_response(&mut BytesMut::from(text.as_str()), false, &mut HeaderMap::new(), None);
                let (through, mapped) = match (through, mapped) {
                    (Ok(Some(Response::Final(a))), Ok(Some(Response::Final(b)))) => (a, b),
                    (Err(_), Err(_)) => return Ok(()),
                    (a, b) => panic!("the two parses disagree: {:?} and {:?}", a.is_ok(), b.is_ok()),
                };
                prop_assert_eq!(through.framing, mapped.framing);
                prop_assert_eq!(through.keep_alive, mapped.keep_alive);
                let Some(raw) = through.raw else {
                    return Ok(());
                };
                let mut map = mapped.headers;
                prop_assert!(!crate::http::rewrite::applies(&map));
                crate::http::headers::strip_hop_by_hop(&mut map);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                write_raw_response_head(&mut a, through.status, None, &raw, &spans, b"");
                write_response_head(&mut b, mapped.status, None, &map, b"");
                prop_assert_eq!(lines(&a), lines(&b));
            }
        }
    }
}
