//! Error responses: short, plain, and naming the cause. HTML for browsers,
//! JSON for API clients that ask for it, plain text otherwise.

use http::Response;
use http::header::{self, HeaderValue};

use super::body::{Body, full};
use super::headers::Accepts;
use crate::error::Error;

/// What the page says besides the error itself.
fn hint(err: &Error) -> Option<String> {
    match err {
        Error::UnknownHost { host } => Some(format!(
            "To allow it, add it to the config: [tenants] allowed_hosts = [\"{host}\"] \
             (or set tenants.base_domain / --base-domain if it is a tenant domain)."
        )),
        Error::UpstreamUnavailable { .. } => Some(
            "Is the backend running? portero waited for it and gave up; this page retries by itself.".into(),
        ),
        Error::NoRoute { .. } => Some("No route in the config matches this path.".into()),
        _ => None,
    }
}

#[derive(serde::Serialize)]
struct JsonError<'a> {
    status: u16,
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
}

fn json_body(e: &JsonError<'_>) -> String {
    let mut out = serde_json::to_string(e).expect("plain strings and numbers serialize");
    out.push('\n');
    out
}

/// How much an error page tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disclosure {
    /// Everything: upstream URLs, causes, hints (development, loopback).
    Full,
    /// Upstreams by name only, no causes or hints: what a stranger on the
    /// internet sees of a staging server.
    Brief,
}

/// The error page for `err`, in the form `accepts` asks for: HTML for
/// browsers, JSON for API clients that ask for it, plain text otherwise.
pub(crate) fn render(err: &Error, accepts: Accepts, disclosure: Disclosure) -> Response<Body> {
    let status = err.status();
    let reason = status.canonical_reason().unwrap_or("Error");
    let (message, hint) = match disclosure {
        Disclosure::Full => (err.to_string(), hint(err)),
        Disclosure::Brief => (err.public_message(), None),
    };
    let (ctype, body) = match accepts {
        Accepts::Html => {
            // A 502 page reloads itself so the tab comes back when the
            // backend does.
            let refresh = if matches!(err, Error::UpstreamUnavailable { .. }) {
                "<meta http-equiv=\"refresh\" content=\"2\">"
            } else {
                ""
            };
            let hint = hint
                .map(|h| format!("<p>{}</p>", escape(&h)))
                .unwrap_or_default();
            (
                "text/html; charset=utf-8",
                format!(
                    "<!doctype html><html><head><meta charset=\"utf-8\">{refresh}<title>{code} {reason}</title>\
                     <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46em;margin:3em auto;padding:0 1em;color:#222}}\
                     code{{background:#f3f3f3;padding:.1em .3em}}</style></head>\
                     <body><h1>{code} {reason}</h1><p><code>{msg}</code></p>{hint}<hr><small>portero</small></body></html>\n",
                    code = status.as_u16(),
                    msg = escape(&message),
                ),
            )
        }
        Accepts::Json => (
            "application/json",
            json_body(&JsonError {
                status: status.as_u16(),
                error: reason,
                message: &message,
                hint: hint.as_deref(),
            }),
        ),
        Accepts::Any | Accepts::Other => (
            "text/plain; charset=utf-8",
            match hint {
                Some(h) => format!("{} {reason}: {message}\n{h}\n", status.as_u16()),
                None => format!("{} {reason}: {message}\n", status.as_u16()),
            },
        ),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Error::MethodNotAllowed { allow, .. } = err {
        h.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(resp: Response<Body>) -> String {
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn flavors() {
        let err = Error::UpstreamUnavailable {
            upstream: crate::error::UpstreamId {
                name: "backend".into(),
                url: "http://127.0.0.1:8000".into(),
            },
            cause: "connection refused".into(),
        };
        let html = render(&err, Accepts::Html, Disclosure::Full);
        assert_eq!(html.status(), 502);
        let body = text(html).await;
        assert!(body.contains("upstream backend (http://127.0.0.1:8000): connection refused"));
        assert!(body.contains("http-equiv=\"refresh\""));
        let json = text(render(&err, Accepts::Json, Disclosure::Full)).await;
        assert!(json.starts_with("{\"status\":502,"), "{json}");
        let plain = text(render(&err, Accepts::Other, Disclosure::Full)).await;
        assert!(
            plain.starts_with("502 Bad Gateway: upstream backend"),
            "{plain}"
        );
    }

    #[tokio::test]
    async fn brief_pages_name_the_upstream_only() {
        let err = Error::UpstreamUnavailable {
            upstream: crate::error::UpstreamId {
                name: "backend".into(),
                url: "http://10.0.0.5:8000".into(),
            },
            cause: "connection refused".into(),
        };
        for accepts in [Accepts::Html, Accepts::Json, Accepts::Other] {
            let body = text(render(&err, accepts, Disclosure::Brief)).await;
            assert!(body.contains("upstream backend is unavailable"), "{body}");
            assert!(!body.contains("10.0.0.5"), "{body}");
            assert!(!body.contains("refused"), "{body}");
        }
    }

    #[tokio::test]
    async fn html_is_escaped() {
        let err = Error::NotFound {
            path: "/<script>".into(),
        };
        let body = text(render(&err, Accepts::Html, Disclosure::Full)).await;
        assert!(body.contains("/&lt;script&gt;"));
        assert!(!body.contains("/<script>"));
    }
}
