//! The one place every request goes through, in data-flow order:
//! host (and its agreement with SNI) → tenant → HTTPS redirect → portero's
//! own endpoints → route → service.
//! Failures become error pages here and nowhere else.

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::access_log::{Entry, LoggedBody, RouteLabel};
use crate::config::Profile;
use crate::conn::Conn;
use crate::error::Error;
use crate::host::RequestHost;
use crate::http::body::Body;
use crate::http::body::empty;
use crate::http::error_page::{self, Disclosure};
use crate::http::headers::Accepts;
use crate::http::{request_rules, reserved, tls_rules};
use crate::routing::{path, tenant};
use crate::services::{Ctx, admin, livereload, proxy, welcome};
use crate::snapshot::{Routed, Shared, Snapshot, Target};

pub(crate) async fn handle(
    req: Request<Incoming>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) -> Response<LoggedBody> {
    let mut entry = Entry::new(&req, &conn, shared.metrics.clone(), Instant::now());
    let accepts = Accepts::of(req.headers());
    let mut hsts = None;
    let mut resp = match route_request(req, &conn, &shared, &mut entry, &mut hsts).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err, accepts, &conn, &shared, &mut entry),
    };
    if let Some(v) = hsts {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    entry.status = resp.status();
    LoggedBody::wrap(resp, entry)
}

/// The error page for `err`, counted on `entry`: the one way a failed
/// request is answered, on every path.
pub(crate) fn error_response(
    err: &Error,
    accepts: Accepts,
    conn: &Conn,
    shared: &Shared,
    entry: &mut Entry,
) -> Response<Body> {
    entry.error(err);
    let mut resp = error_page::render(err, accepts, disclosure(conn, shared));
    // After a malformed request the connection's framing cannot be
    // trusted (and a client that sends one is rarely worth keeping):
    // close it, as nginx does.
    if err.status() == http::StatusCode::BAD_REQUEST {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Where a request goes, decided from its head alone: everything dispatch
/// checks before a service runs. The HTTP/1 fast path asks the same
/// question and serves only [`Routing::Routed`] proxy routes itself.
pub(crate) enum Routing {
    /// Answered by dispatch itself (`OPTIONS *`, the HTTPS redirect).
    Answer(Response<Body>),
    /// One of portero's own paths (`/__portero/`).
    Reserved {
        snap: Arc<Snapshot>,
        host: RequestHost,
    },
    /// A route matched.
    Routed(Box<RoutedRequest>),
}

/// A request whose route matched, with what its service needs.
pub(crate) struct RoutedRequest {
    pub snap: Arc<Snapshot>,
    pub host: RequestHost,
    pub resolved: tenant::Resolved,
    pub path: String,
    pub route: Arc<crate::config::Route>,
    pub routed: Routed,
}

impl RoutedRequest {
    /// The context a service is given.
    pub(crate) fn ctx<'a>(&'a self, conn: &'a Conn) -> Ctx<'a> {
        Ctx {
            conn,
            host: &self.host,
            tenant: &self.resolved,
            path: &self.path,
            route: &self.route,
            cookies: &self.snap.rules.cookies,
        }
    }
}

/// Host (and its agreement with SNI), the request-head rules, tenant,
/// `OPTIONS *`, HTTPS redirect, reserved paths and the route, in that
/// order; fills in `entry` and `hsts` as it learns them.
pub(crate) fn route_head<B>(
    req: &Request<B>,
    conn: &Conn,
    shared: &Shared,
    entry: &mut Entry,
    hsts: &mut Option<HeaderValue>,
) -> Result<Routing, Error> {
    let host = request_host(req, conn)?;
    tls_rules::check_sni(conn.sni(), &host.name)?;
    request_rules::check(req)?;
    if req.method() == Method::CONNECT {
        // Not a forward proxy: a tunnel to anywhere is never opened.
        return Err(Error::MethodNotAllowed {
            method: Method::CONNECT,
            allow: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
        });
    }
    let snap = shared.snapshot.load_full();
    let resolved = tenant::resolve(&host.name, &snap.config.tenants)?;
    entry.tenant = resolved.tenant.clone();
    if request_rules::is_options_star(req) {
        entry.route = RouteLabel::Fixed("OPTIONS *");
        return Ok(Routing::Answer(options_star()));
    }
    let tls = snap.config.tls.as_ref();
    if conn.is_tls() {
        *hsts = tls_rules::hsts(&host.name, tls);
    } else if let Some(resp) = tls_rules::https_redirect(conn.is_tls(), &host, req.uri(), tls) {
        entry.route = RouteLabel::Fixed("https-redirect");
        return Ok(Routing::Answer(resp));
    }

    let raw_path = req.uri().path();
    if reserved::is_reserved(raw_path) {
        entry.route = RouteLabel::Fixed("/__portero");
        return Ok(Routing::Reserved { snap, host });
    }

    let path = path::normalize(raw_path).into_owned();
    let (route, routed) = snap
        .route(resolved.tenant.as_deref(), &path)
        .ok_or_else(|| Error::NoRoute { path: path.clone() })?;
    let (route, routed) = (route.clone(), routed.clone());
    entry.route = RouteLabel::Route(route.clone());
    entry.stats = Some(routed.stats.clone());
    if let Target::Proxy(pool) = &routed.target {
        entry.upstream = Some(pool.upstream.clone());
    }
    Ok(Routing::Routed(Box::new(RoutedRequest {
        snap,
        host,
        resolved,
        path,
        route,
        routed,
    })))
}

async fn route_request(
    req: Request<Incoming>,
    conn: &Conn,
    shared: &Arc<Shared>,
    entry: &mut Entry,
    hsts: &mut Option<HeaderValue>,
) -> Result<Response<Body>, Error> {
    let r = match route_head(&req, conn, shared, entry, hsts)? {
        Routing::Answer(resp) => return Ok(resp),
        Routing::Reserved { snap, host } => return own(req, conn, shared, &snap, &host).await,
        Routing::Routed(r) => r,
    };
    let ctx = r.ctx(conn);
    match &r.routed.target {
        Target::Proxy(pool) => {
            let via = proxy::Via {
                pool,
                rules: &r.snap.rules,
                tunnels: &shared.tunnels,
                tap: entry.request_tap(),
                request_bytes: &shared.metrics.request_bytes,
            };
            proxy::forward(req, &ctx, via).await
        }
        Target::Spa(slot) => match slot.dir() {
            Some(dir) => {
                dir.serve(req.method(), req.headers(), ctx.below_prefix())
                    .await
            }
            None => welcome::serve(
                req.method(),
                &r.path,
                &r.snap.config,
                &slot.root.to_string_lossy(),
            ),
        },
        Target::Static(dir) => {
            dir.serve(req.method(), req.headers(), ctx.below_prefix())
                .await
        }
    }
}

/// portero's own paths: live reload, probes, the admin pages.
async fn own(
    req: Request<Incoming>,
    conn: &Conn,
    shared: &Arc<Shared>,
    snap: &Snapshot,
    host: &RequestHost,
) -> Result<Response<Body>, Error> {
    let raw_path = req.uri().path();
    if livereload::owns(raw_path) && snap.config.spa.live_reload {
        return livereload::serve(req, host, &shared.livereload, &shared.tunnels);
    }
    let ip = conn.peer.ip();
    if admin::is_probe(raw_path) {
        if !snap.config.admin.allows_probe(ip) {
            return Err(Error::Forbidden(
                "health and readiness answer only the networks in admin.probes",
            ));
        }
    } else if !snap.config.admin.allows(ip) {
        return Err(Error::Forbidden(
            "portero's own endpoints answer only the networks in admin.allow",
        ));
    }
    let view = AdminView { snap, shared };
    if admin::is_replay(raw_path) {
        let host = host.with_port();
        return admin::replay(req.method(), req.headers(), raw_path, &host, &view).await;
    }
    admin::serve(req.method(), raw_path, &view)
}

/// What portero's own endpoints show, read from the running state.
struct AdminView<'a> {
    snap: &'a Snapshot,
    shared: &'a Arc<Shared>,
}

impl admin::View for AdminView<'_> {
    fn draining(&self) -> bool {
        self.shared.draining.is_cancelled()
    }

    fn status(&self) -> admin::Status {
        self.snap.status(self.shared.tunnels.open())
    }

    fn metrics(&self) -> String {
        let certs = self
            .shared
            .tls_certs
            .get()
            .map(|store| store.expiries())
            .unwrap_or_default();
        self.shared
            .metrics
            .encode(self.shared.tunnels.open(), &certs)
    }

    fn summary(&self) -> admin::Summary {
        self.snap
            .summary(&self.shared.metrics, &self.shared.tunnels)
    }

    fn requests(&self) -> Vec<Arc<crate::inspector::Captured>> {
        self.shared.metrics.inspector.requests()
    }

    fn request(&self, id: u64) -> Option<Arc<crate::inspector::Captured>> {
        self.shared.metrics.inspector.request(id)
    }

    fn unmasked(&self) -> bool {
        self.shared.metrics.inspector.unmasked()
    }

    fn events(&self) -> Option<admin::Events> {
        let inspector = &self.shared.metrics.inspector;
        let slot = inspector.stream_slot()?;
        let shared = self.shared.clone();
        Some(admin::Events {
            records: inspector.subscribe(),
            stop: shared.draining.clone(),
            // The running snapshot at each tick, not this request's.
            summary: Box::new(move || {
                let summary = shared
                    .snapshot
                    .load()
                    .summary(&shared.metrics, &shared.tunnels);
                serde_json::to_string(&summary).expect("strings and numbers serialize")
            }),
            _slot: slot,
        })
    }
}

/// Staging tells clients from elsewhere which upstream failed but not its
/// address or the cause; the operator's own machine and the dev profile
/// hear everything (the access log always has it all).
fn disclosure(conn: &Conn, shared: &Shared) -> Disclosure {
    let staging = shared.snapshot.load().config.profile == Profile::Staging;
    if staging && !conn.peer.ip().to_canonical().is_loopback() {
        Disclosure::Brief
    } else {
        Disclosure::Full
    }
}

/// `OPTIONS *` asks what the server supports; portero answers for itself.
fn options_star() -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    resp
}

/// The request's host, by the rules hyper leaves to us (RFC 9112 §3.2):
/// exactly one `Host` on HTTP/1.1; an absolute-form target or HTTP/2
/// `:authority` must agree with it.
fn request_host<B>(req: &Request<B>, conn: &Conn) -> Result<RequestHost, Error> {
    request_host_parts(req.version(), req.uri(), req.headers(), conn)
}

fn request_host_parts(
    version: Version,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    conn: &Conn,
) -> Result<RequestHost, Error> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host_header = hosts.next();
    if hosts.next().is_some() {
        return Err(Error::BadRequest("several Host headers"));
    }
    let parse = |raw: &str| {
        RequestHost::parse(raw).map_err(|reason| Error::InvalidHost {
            host: raw.to_string(),
            reason,
        })
    };
    let from_header = match host_header {
        Some(v) => Some(parse(v.to_str().map_err(|_| Error::InvalidHost {
            host: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            reason: "non-ASCII bytes in Host",
        })?)?),
        None => None,
    };
    let from_uri = match uri.authority() {
        Some(a) => Some(parse(a.as_str())?),
        None => None,
    };
    match (from_uri, from_header) {
        (Some(u), Some(h)) if u != h => Err(Error::BadRequest(
            "the request target's authority and the Host header disagree",
        )),
        (Some(u), _) => Ok(u),
        (None, Some(h)) => Ok(h),
        (None, None) if version == Version::HTTP_10 || version == Version::HTTP_09 => {
            // HTTP/1.0 has no Host: the address the client connected to.
            parse(&conn.local.to_string())
        }
        (None, None) => Err(Error::BadRequest("missing Host header")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn::new(
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            crate::conn::Transport::Plain,
        )
    }

    fn host(version: Version, uri: &str, hosts: &[&str]) -> Result<String, u16> {
        let mut h = http::HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, v.parse().unwrap());
        }
        request_host_parts(version, &uri.parse().unwrap(), &h, &conn())
            .map(|h| h.with_port())
            .map_err(|e| e.status().as_u16())
    }

    #[test]
    fn host_rules() {
        let v11 = Version::HTTP_11;
        assert_eq!(
            host(v11, "/", &["Acme.localhost:8080"]),
            Ok("acme.localhost:8080".into())
        );
        assert_eq!(host(v11, "/", &[]), Err(400));
        assert_eq!(host(v11, "/", &["a", "b"]), Err(400));
        assert_eq!(host(v11, "/", &["a b"]), Err(400));
        assert_eq!(host(v11, "http://a:1/", &["a:1"]), Ok("a:1".into()));
        assert_eq!(host(v11, "http://a:1/", &["b:1"]), Err(400));
        assert_eq!(host(v11, "http://a:1/", &[]), Ok("a:1".into()));
        assert_eq!(
            host(Version::HTTP_10, "/", &[]),
            Ok("127.0.0.1:8080".into())
        );
        assert_eq!(
            host(Version::HTTP_2, "http://x.localhost/", &[]),
            Ok("x.localhost".into())
        );
    }
}
