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
use crate::snapshot::{Shared, Snapshot, Target};

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
        Err(err) => {
            entry.error(&err);
            let mut resp = error_page::render(&err, accepts, disclosure(&conn, &shared));
            // After a malformed request the connection's framing cannot be
            // trusted (and a client that sends one is rarely worth keeping):
            // close it, as nginx does.
            if err.status() == http::StatusCode::BAD_REQUEST {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    };
    if let Some(v) = hsts {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
    entry.status = resp.status();
    LoggedBody::wrap(resp, entry)
}

async fn route_request(
    req: Request<Incoming>,
    conn: &Conn,
    shared: &Arc<Shared>,
    entry: &mut Entry,
    hsts: &mut Option<HeaderValue>,
) -> Result<Response<Body>, Error> {
    let host = request_host(&req, conn)?;
    tls_rules::check_sni(conn.sni(), &host.name)?;
    request_rules::check(&req)?;
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
    if request_rules::is_options_star(&req) {
        entry.route = RouteLabel::Fixed("OPTIONS *");
        return Ok(options_star());
    }
    let tls = snap.config.tls.as_ref();
    if conn.is_tls() {
        *hsts = tls_rules::hsts(&host.name, tls);
    } else if let Some(resp) = tls_rules::https_redirect(conn.is_tls(), &host, req.uri(), tls) {
        entry.route = RouteLabel::Fixed("https-redirect");
        return Ok(resp);
    }

    let raw_path = req.uri().path();
    if reserved::is_reserved(raw_path) {
        entry.route = RouteLabel::Fixed("/__portero");
        if livereload::owns(raw_path) && snap.config.spa.live_reload {
            return livereload::serve(req, &host, &shared.livereload, &shared.tunnels);
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
        let view = AdminView {
            snap: &snap,
            shared,
        };
        if admin::is_replay(raw_path) {
            let host = host.with_port();
            return admin::replay(req.method(), req.headers(), raw_path, &host, &view).await;
        }
        return admin::serve(req.method(), raw_path, &view);
    }

    let path = path::normalize(raw_path).into_owned();
    let (route, routed) = snap
        .route(resolved.tenant.as_deref(), &path)
        .ok_or_else(|| Error::NoRoute { path: path.clone() })?;
    entry.route = RouteLabel::Route(route.clone());
    entry.stats = Some(routed.stats.clone());

    let ctx = Ctx {
        conn,
        host: &host,
        tenant: &resolved,
        path: &path,
        route,
        cookies: &snap.rules.cookies,
    };
    match &routed.target {
        Target::Proxy(pool) => {
            entry.upstream = Some(pool.upstream.clone());
            let via = proxy::Via {
                pool,
                rules: &snap.rules,
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
                &path,
                &snap.config,
                &slot.root.to_string_lossy(),
            ),
        },
        Target::Static(dir) => {
            dir.serve(req.method(), req.headers(), ctx.below_prefix())
                .await
        }
    }
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
fn request_host(req: &Request<Incoming>, conn: &Conn) -> Result<RequestHost, Error> {
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
