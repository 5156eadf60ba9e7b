//! Rules a request head must pass before anything else looks at it, beyond
//! what hyper enforces: one unambiguous framing, known expectations, no
//! body on an upgrade, a bounded target. Each refusal is a client error,
//! and a 400 closes the connection (dispatch), so nothing pipelined behind
//! a refused request is read as a request.

use http::header::{self, HeaderMap};
use http::{Method, Request};

use super::headers::connection_has;
use crate::error::Error;

/// The longest request target accepted (nginx's default buffer is 8 KiB).
pub(crate) const MAX_URI: usize = 8 * 1024;

/// Checks `req`'s head, in order:
/// 1. the target is at most [`MAX_URI`] bytes (414);
/// 2. framing (RFC 9112 §6.1, §6.3): `Transfer-Encoding` only as one field
///    saying exactly `chunked`, never with `Content-Length`, and at most one
///    `Content-Length` field (400): every other shape is how requests are
///    smuggled past one parser and not another;
/// 3. `Expect` only `100-continue` (RFC 9110 §10.1.1: 417);
/// 4. an upgrade request carries no body (400): the body would be read as
///    the first bytes of the new protocol by one side and not the other.
pub(crate) fn check<B>(req: &Request<B>) -> Result<(), Error> {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI {
        return Err(Error::UriTooLong { limit: MAX_URI });
    }
    let h = req.headers();
    let body = framing(h)?;
    let expect: Vec<_> = h.get_all(header::EXPECT).iter().collect();
    match expect.as_slice() {
        [] => {}
        [v] if v.as_bytes().eq_ignore_ascii_case(b"100-continue") => {}
        _ => {
            let all: Vec<String> = expect
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            return Err(Error::ExpectationFailed(all.join(", ")));
        }
    }
    if body && h.contains_key(header::UPGRADE) && connection_has(h, "upgrade") {
        return Err(Error::BadRequest("an upgrade request may not carry a body"));
    }
    Ok(())
}

/// Whether the request has a body, after checking its framing is one
/// unambiguous shape.
fn framing(h: &HeaderMap) -> Result<bool, Error> {
    let te: Vec<_> = h.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<_> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    match (te.as_slice(), cl.as_slice()) {
        ([], []) => Ok(false),
        ([], [len]) => Ok(len.as_bytes() != b"0"),
        ([], _) => Err(Error::BadRequest("several Content-Length fields")),
        ([_, ..], [_, ..]) => Err(Error::BadRequest(
            "both Transfer-Encoding and Content-Length",
        )),
        ([te], []) if te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => Ok(true),
        _ => Err(Error::BadRequest(
            "Transfer-Encoding other than a single `chunked`",
        )),
    }
}

/// `OPTIONS *`: a question about the server itself (RFC 9110 §9.3.7),
/// answered by portero, never forwarded as a path.
pub(crate) fn is_options_star<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS && req.uri() == "*"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(headers: &[(&str, &str)]) -> Option<u16> {
        let mut b = Request::builder().uri("/api/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        check(&b.body(()).unwrap())
            .err()
            .map(|e| e.status().as_u16())
    }

    #[test]
    fn table() {
        let up = [("connection", "Upgrade"), ("upgrade", "websocket")];
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<u16>);
        let cases: &[Case<'_>] = &[
            (&[], None),
            (&[("content-length", "5")], None),
            (&[("transfer-encoding", "chunked")], None),
            (&[("transfer-encoding", "CHUNKED")], None),
            (
                &[("content-length", "5"), ("content-length", "5")],
                Some(400),
            ),
            (
                &[("content-length", "5"), ("transfer-encoding", "chunked")],
                Some(400),
            ),
            (&[("transfer-encoding", "identity, chunked")], Some(400)),
            (&[("transfer-encoding", "chunked, chunked")], Some(400)),
            (&[("transfer-encoding", ",chunked")], Some(400)),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                Some(400),
            ),
            (&[("expect", "100-continue")], None),
            (&[("expect", "foo")], Some(417)),
            (&up, None),
            (&[up[0], up[1], ("content-length", "0")], None),
            (&[up[0], up[1], ("content-length", "5")], Some(400)),
            (&[up[0], up[1], ("transfer-encoding", "chunked")], Some(400)),
        ];
        for (headers, want) in cases {
            assert_eq!(status(headers), *want, "{headers:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_URI));
        let req = Request::builder().uri(long.as_str()).body(()).unwrap();
        assert_eq!(check(&req).unwrap_err().status(), 414);
    }
}
