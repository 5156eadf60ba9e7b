//! The one body type every service answers with, and small constructors.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

pub(crate) use crate::error::BoxError;

/// A streaming response body. Unsync because hyper's own bodies are only
/// polled from one task at a time; Send so HTTP/2 can move it between tasks.
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Wraps any body whose errors can be boxed.
pub(crate) fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A small HTML page of portero's own (welcome, waiting for a build), with
/// its length, and no body for HEAD.
pub(crate) fn html_page(
    method: &http::Method,
    status: http::StatusCode,
    page: String,
    cache_control: &'static str,
) -> http::Response<Body> {
    use http::header::{self, HeaderValue};
    let len = page.len();
    let body = if method == http::Method::HEAD {
        empty()
    } else {
        full(page)
    };
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    resp
}
