//! portero's own endpoints under `/__portero/`: the probes (health:
//! the process serves; ready: the config is loaded and portero is not
//! draining) and status. (`/__portero/livereload*` belongs to the
//! live-reload service.)

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

/// The orchestrator's probes: they answer their own networks
/// (`admin.probes`), not only those of the status page.
pub(crate) fn is_probe(path: &str) -> bool {
    path == HEALTH || path == READY
}

const HEALTH: &str = "/__portero/health";
const READY: &str = "/__portero/ready";
const METRICS: &str = "/__portero/metrics";

/// What the endpoints show, asked only when one needs it.
pub(crate) trait View {
    /// Shutdown has begun: readiness is withdrawn.
    fn draining(&self) -> bool;
    fn status(&self) -> Status;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
}

/// Serves `path`.
pub(crate) fn serve(method: &Method, path: &str, view: &dyn View) -> Result<Response<Body>, Error> {
    crate::http::get_or_head(method)?;
    let text = "text/plain; charset=utf-8";
    let (ctype, body) = match path {
        HEALTH => (text, "ok\n".to_string()),
        READY if view.draining() => {
            let mut resp = Response::new(full("draining\n"));
            *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(text));
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(resp);
        }
        READY => (text, "ready\n".to_string()),
        "/__portero/status" => {
            let mut body =
                serde_json::to_string(&view.status()).expect("strings and numbers serialize");
            body.push('\n');
            ("application/json", body)
        }
        METRICS => ("text/plain; version=0.0.4; charset=utf-8", view.metrics()),
        _ => return Err(Error::NotFound { path: path.into() }),
    };
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
