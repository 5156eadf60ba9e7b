//! portero's own endpoints under `/__portero/`: health and status.
//! (`/__portero/livereload*` belongs to the live-reload service.)

use http::header::{self, HeaderValue};
use http::{Method, Response};

use crate::error::Error;
use crate::http::body::{Body, full};
use crate::http::json;
use crate::state::Shared;

pub const PREFIX: &str = "/__portero/";

pub fn serve(method: &Method, path: &str, shared: &Shared) -> Result<Response<Body>, Error> {
    if method != Method::GET && method != Method::HEAD {
        return Err(Error::MethodNotAllowed {
            method: method.clone(),
            allow: "GET, HEAD",
        });
    }
    let (ctype, body) = match path {
        "/__portero/health" => ("text/plain; charset=utf-8", "ok\n".to_string()),
        "/__portero/status" => {
            let rt = shared.runtime.load();
            let upstreams: Vec<String> = rt
                .config
                .upstreams
                .values()
                .map(|u| {
                    format!(
                        "{{\"name\":{},\"url\":{}}}",
                        json::string(&u.name),
                        json::string(&u.url.to_string())
                    )
                })
                .collect();
            let routes: Vec<String> = rt.routes.iter().map(|r| json::string(&r.label())).collect();
            (
                "application/json",
                format!(
                    "{{\"version\":\"{}\",\"open_tunnels\":{},\"routes\":[{}],\"upstreams\":[{}]}}\n",
                    env!("CARGO_PKG_VERSION"),
                    shared.open_tunnels(),
                    routes.join(","),
                    upstreams.join(",")
                ),
            )
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
