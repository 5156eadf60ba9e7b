//! portero's own endpoints under `/__portero/`: the probes (health:
//! the process serves; ready: the config is loaded and portero is not
//! draining), status, metrics, and the page at `/__portero/` with its
//! request inspector. (`/__portero/livereload*` belongs to the live-reload
//! service.)
//!
//! The page is live by Server-Sent Events rather than polling: one stream
//! per open page, fed by the inspector's broadcast channel, costs nothing
//! while nobody changes, shows each request as it ends rather than a second
//! later, and needs no WebSocket (the browser's `EventSource` reconnects by
//! itself). The page's first view comes from `/__portero/state.json`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

mod replay;

use crate::error::Error;
use crate::http::body::{Body, boxed, full};
use crate::inspector::{Captured, Refused, Reload, StreamSlot, TenantView, UpstreamView};

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
const PAGE: &str = "/__portero/";
const PAGE_JS: &str = "/__portero/inspector.js";
const PAGE_CSS: &str = "/__portero/inspector.css";
const STATE: &str = "/__portero/state.json";
const EVENTS: &str = "/__portero/events";

/// The page's summary event comes this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(2);

/// The header, upstream and tenant panels of `/__portero/`.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub version: &'static str,
    pub uptime_s: u64,
    pub started: String,
    pub profile: &'static str,
    pub listeners: Vec<String>,
    pub config: String,
    pub last_reload: Option<Reload>,
    /// Requests held right now, all upstreams together.
    pub held: i64,
    /// Client connections open now.
    pub connections: i64,
    pub open_tunnels: usize,
    pub inspector_size: usize,
    pub inspector_unmask: bool,
    pub inspector_bodies: usize,
    pub upstreams: Vec<UpstreamRow>,
    /// Proxied WebSocket tunnels open now, oldest first.
    pub tunnels: Vec<TunnelRow>,
    /// WebSocket handshakes refused recently, newest first.
    pub refused: Vec<Refused>,
    pub tenants: Vec<TenantRow>,
    /// Tenants beyond the ones counted by name, added up.
    pub other_tenants: TenantView,
}

#[derive(Debug, Serialize)]
pub(crate) struct UpstreamRow {
    pub name: String,
    pub url: String,
    pub held: i64,
    /// Connections open to it now, and how many of those are idle.
    pub open: usize,
    pub idle: usize,
    /// `None` until a request went to it.
    pub traffic: Option<UpstreamView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct TunnelRow {
    pub tenant: Option<String>,
    pub host: String,
    pub path: String,
    pub opened: String,
    pub age_s: u64,
    /// Bytes so far, client to upstream and back.
    pub up: u64,
    pub down: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct TenantRow {
    pub name: String,
    #[serde(flatten)]
    pub seen: TenantView,
}

/// What a live page is fed from.
pub(crate) struct Events {
    pub records: broadcast::Receiver<Arc<Captured>>,
    /// The summary, as JSON.
    pub summary: Box<dyn Fn() -> String + Send + Sync>,
    /// Ends the stream (shutdown): a page never holds up a drain.
    pub stop: CancellationToken,
    /// Counts this page among the open ones while the stream lasts.
    pub _slot: StreamSlot,
}

/// What the endpoints show, asked only when one needs it.
pub(crate) trait View {
    /// Shutdown has begun: readiness is withdrawn.
    fn draining(&self) -> bool;
    fn status(&self) -> Status;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
    /// The page's panels.
    fn summary(&self) -> Summary;
    /// The requests the inspector keeps, oldest first.
    fn requests(&self) -> Vec<Arc<Captured>>;
    /// A live feed, `None` when too many pages are open.
    fn events(&self) -> Option<Events>;
    /// One kept request.
    fn request(&self, id: u64) -> Option<Arc<Captured>>;
    /// Credentials are shown as they are.
    fn unmasked(&self) -> bool;
}

const REPLAY: &str = "/__portero/replay/";

/// Whether `path` is a replay (which [`replay`] serves, not [`serve`]).
pub(crate) fn is_replay(path: &str) -> bool {
    path.starts_with(REPLAY)
}

/// `POST /__portero/replay/<id>`: sends a kept request again through
/// portero and answers with what came back.
///
/// A page on another site cannot make the browser do this: the request
/// must carry `X-Portero-Replay` (a header no form sets, and no script on
/// another origin may set without a preflight portero never grants), and an
/// `Origin`, when sent, must be the page's own (`host`: the request's).
pub(crate) async fn replay(
    method: &Method,
    headers: &http::HeaderMap,
    path: &str,
    host: &str,
    view: &(dyn View + Sync),
) -> Result<Response<Body>, Error> {
    if method != Method::POST {
        return Err(Error::MethodNotAllowed {
            method: method.clone(),
            allow: "POST",
        });
    }
    if !headers.contains_key("x-portero-replay") {
        return Err(Error::Forbidden(
            "a replay needs the X-Portero-Replay header, which the page sends: \
             other sites cannot replay requests through your browser",
        ));
    }
    let same_origin = |o: &HeaderValue| {
        let o = o.as_bytes();
        [&b"http://"[..], b"https://"]
            .iter()
            .any(|scheme| o.strip_prefix(*scheme) == Some(host.as_bytes()))
    };
    if headers.get(header::ORIGIN).is_some_and(|o| !same_origin(o)) {
        return Err(Error::Forbidden(
            "a replay is only sent from portero's own page (the Origin is another site)",
        ));
    }
    #[derive(Serialize)]
    struct Refusal<'a> {
        error: &'a str,
    }
    let id = &path[REPLAY.len()..];
    let Some(kept) = id.parse().ok().and_then(|id| view.request(id)) else {
        let error = "no such request: the inspector keeps only the last ones";
        return Ok(replay::json(StatusCode::NOT_FOUND, &Refusal { error }));
    };
    let Some(r) = &kept.replay else {
        let error = kept.replay_blocked.unwrap_or("it cannot be replayed");
        return Ok(replay::json(StatusCode::CONFLICT, &Refusal { error }));
    };
    let unmask = view.unmasked();
    Ok(match replay::send(r, unmask).await {
        Ok(outcome) => replay::json(StatusCode::OK, &outcome),
        Err(error) => replay::json(StatusCode::BAD_GATEWAY, &Refusal { error: &error }),
    })
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
        PAGE => return Ok(asset(method, "text/html; charset=utf-8", PAGE_HTML)),
        PAGE_JS => {
            return Ok(asset(
                method,
                "text/javascript; charset=utf-8",
                include_str!("admin/inspector.js"),
            ));
        }
        PAGE_CSS => {
            return Ok(asset(
                method,
                "text/css; charset=utf-8",
                include_str!("admin/inspector.css"),
            ));
        }
        STATE => {
            #[derive(Serialize)]
            struct State<'a> {
                summary: Summary,
                requests: Vec<&'a Captured>,
            }
            let kept = view.requests();
            let state = State {
                summary: view.summary(),
                requests: kept.iter().map(|r| &**r).collect(),
            };
            let mut body = serde_json::to_string(&state).expect("strings and numbers serialize");
            body.push('\n');
            ("application/json", body)
        }
        EVENTS => return Ok(events(view.events())),
        _ => return Err(Error::NotFound { path: path.into() }),
    };
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

const PAGE_HTML: &str = include_str!("admin/index.html");

/// One of the page's files: no body for HEAD, and a policy that lets it load
/// nothing but portero's own files.
fn asset(method: &Method, ctype: &'static str, text: &'static str) -> Response<Body> {
    let body = if method == Method::HEAD {
        crate::http::body::empty()
    } else {
        full(text)
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `/__portero/events`: a `summary` event now and every [`SUMMARY_EVERY`],
/// a `request` event per request the inspector keeps.
fn events(events: Option<Events>) -> Response<Body> {
    let Some(events) = events else {
        let mut resp = Response::new(full("too many live pages open\n"));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return resp;
    };
    let mut tick = tokio::time::interval(SUMMARY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let first = Bytes::from_static(b"retry: 2000\n\n");
    let stream = futures_util::stream::unfold(
        (events, tick, Some(first)),
        |(mut ev, mut tick, first)| async move {
            if let Some(first) = first {
                return Some((first, (ev, tick, None)));
            }
            let chunk = tokio::select! {
                _ = ev.stop.cancelled() => return None,
                _ = tick.tick() => sse("summary", &(ev.summary)()),
                got = ev.records.recv() => match got {
                    Ok(rec) => sse(
                        "request",
                        &serde_json::to_string(&*rec).expect("strings and numbers serialize"),
                    ),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        sse("lagged", &n.to_string())
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            Some((chunk, (ev, tick, None)))
        },
    );
    use futures_util::StreamExt as _;
    let body = http_body_util::StreamBody::new(stream.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut resp = Response::new(boxed(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// One event; `data` is one line (JSON has no raw newlines).
fn sse(event: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}
