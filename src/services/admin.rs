//! portero's own endpoints under `/__portero/`: health and status.
//! (`/__portero/livereload*` belongs to the live-reload service.)

use http::header::{self, HeaderValue};
use http::{Method, Response};
use serde::Serialize;

use crate::error::Error;
use crate::http::body::{Body, full};

/// What `/__portero/status` reports, built by the caller from the running
/// snapshot.
#[derive(Debug, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub open_tunnels: usize,
    pub routes: Vec<String>,
    pub upstreams: Vec<UpstreamStatus>,
}

#[derive(Debug, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub url: String,
}

/// Serves `path`; `status` is called only for the status endpoint.
pub(crate) fn serve(
    method: &Method,
    path: &str,
    status: impl FnOnce() -> Status,
) -> Result<Response<Body>, Error> {
    crate::http::get_or_head(method)?;
    let (ctype, body) = match path {
        "/__portero/health" => ("text/plain; charset=utf-8", "ok\n".to_string()),
        "/__portero/status" => {
            let mut body = serde_json::to_string(&status()).expect("strings and numbers serialize");
            body.push('\n');
            ("application/json", body)
        }
        _ => return Err(Error::NotFound { path: path.into() }),
    };
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
