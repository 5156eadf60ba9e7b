//! The one place every request goes through, in data-flow order:
//! host (and its agreement with SNI) → tenant → HTTPS redirect → portero's
//! own endpoints → route → service.
//! Failures become error pages here and nowhere else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, Version};
use hyper::body::Incoming;

use crate::access_log::{Entry, LoggedBody, RouteLabel};
use crate::config::{Route, RouteTarget, SpaSource};
use crate::error::Error;
use crate::http::body::Body;
use crate::http::error_page::{self, Flavor};
use crate::http::tls_rules;
use crate::routing::host::RequestHost;
use crate::routing::path;
use crate::routing::tenant::{self, Resolved};
use crate::services::{admin, livereload, welcome};
use crate::state::{Runtime, Shared};

/// What is known about a client connection.
#[derive(Debug, Clone)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The connection is TLS: the scheme the client used is https.
    pub tls: bool,
    /// The TLS server name the client asked for (SNI), lowercased.
    pub sni: Option<String>,
    /// The peer's IP as a header value, made once per connection for
    /// `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// The local port as a header value, for `X-Forwarded-Port`.
    pub local_port: HeaderValue,
}

impl Conn {
    pub fn new(peer: SocketAddr, local: SocketAddr, tls: bool, sni: Option<String>) -> Conn {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Conn {
            peer,
            local,
            tls,
            sni,
            peer_ip,
            local_port: HeaderValue::from(local.port()),
        }
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// What dispatch learned about a request, handed to the service.
pub struct Ctx {
    pub conn: Arc<Conn>,
    /// The host as the client sent it (normalised, with its port).
    pub host: RequestHost,
    pub tenant: Resolved,
    /// The normalised path: the one the route was chosen by and the one
    /// forwarded.
    pub path: String,
    pub route: Arc<Route>,
    pub rt: Arc<Runtime>,
    pub shared: Arc<Shared>,
}

pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
) -> Response<LoggedBody> {
    let mut entry = Entry::new(&req, &conn, Instant::now());
    let flavor = Flavor::from_request(req.headers());
    let mut hsts = None;
    let mut resp = match route_request(req, conn, shared, &mut entry, &mut hsts).await {
        Ok(resp) => resp,
        Err(err) => {
            entry.error(&err);
            let mut resp = error_page::render(&err, flavor);
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
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    entry: &mut Entry,
    hsts: &mut Option<HeaderValue>,
) -> Result<Response<Body>, Error> {
    let host = request_host(&req, &conn)?;
    tls_rules::check_sni(conn.sni.as_deref(), &host.name)?;
    let rt = shared.runtime.load_full();
    let resolved = tenant::resolve(&host.name, &rt.config.tenants)?;
    entry.tenant = resolved.tenant.clone();
    let tls = rt.config.tls.as_ref();
    if conn.tls {
        *hsts = tls_rules::hsts(&host.name, tls);
    } else if let Some(resp) = tls_rules::https_redirect(conn.tls, &host, req.uri(), tls) {
        entry.route = RouteLabel::Fixed("https-redirect");
        return Ok(resp);
    }

    let raw_path = req.uri().path();
    if let Some(rest) = raw_path.strip_prefix(admin::PREFIX) {
        entry.route = RouteLabel::Fixed("/__portero");
        if rest.starts_with("livereload") {
            return livereload::serve(req, &shared).await;
        }
        let path = raw_path.to_string();
        return admin::serve(req.method(), &path, &shared);
    }

    let path = path::normalize(raw_path).into_owned();
    let tenant_route = resolved
        .tenant
        .as_ref()
        .and_then(|t| rt.tenant_routes.get(t))
        .and_then(|table| table.find(&path));
    let own_route = tenant_route.is_some();
    let route = tenant_route
        .or_else(|| rt.routes.find(&path))
        .cloned()
        .ok_or_else(|| Error::NoRoute { path: path.clone() })?;
    entry.route = RouteLabel::Route(route.clone());

    let ctx = Ctx {
        conn,
        host,
        tenant: resolved,
        path,
        route: route.clone(),
        rt: rt.clone(),
        shared,
    };
    match &route.target {
        RouteTarget::Upstream(name) => {
            // A tenant's `upstream` override takes over the shared routes'
            // proxied traffic; the tenant's own routes name their upstream
            // explicitly and keep it.
            let overridden = ctx
                .tenant
                .tenant
                .as_ref()
                .and_then(|t| rt.config.tenants.overrides.get(t))
                .and_then(|o| o.upstream.as_deref())
                .filter(|_| !own_route);
            let name = overridden.unwrap_or(name);
            rt.proxy.forward(req, &ctx, name).await
        }
        RouteTarget::Spa => match &rt.config.spa.source {
            SpaSource::DevServer(name) => rt.proxy.forward(req, &ctx, name).await,
            SpaSource::Dir(root) => match &rt.spa {
                Some(dir) => {
                    let rel = below_prefix(&ctx.path, &route);
                    dir.serve(req.method(), req.headers(), rel).await
                }
                // The folder appeared after startup (the first build
                // finished): serve it from a fresh snapshot from now on.
                None if root.is_dir() => {
                    let fresh = Arc::new(Runtime::new(rt.config.clone(), &ctx.shared.livereload));
                    ctx.shared.runtime.compare_and_swap(&rt, fresh.clone());
                    match &fresh.spa {
                        Some(dir) => {
                            let rel = below_prefix(&ctx.path, &route);
                            dir.serve(req.method(), req.headers(), rel).await
                        }
                        None => Err(Error::NotFound {
                            path: ctx.path.clone(),
                        }),
                    }
                }
                None => {
                    welcome::serve(req.method(), &ctx.path, &rt.config, &root.to_string_lossy())
                }
            },
        },
        RouteTarget::Static(dir) => {
            let rel = below_prefix(&ctx.path, &route);
            match rt.static_dirs.get(dir) {
                Some(d) => d.serve(req.method(), req.headers(), rel).await,
                None => Err(Error::Internal(format!(
                    "static folder {} was not prepared",
                    dir.display()
                ))),
            }
        }
    }
}

/// The path below a route's prefix, always starting with `/`.
fn below_prefix<'a>(path: &'a str, route: &Route) -> &'a str {
    let prefix = route.prefix.as_str();
    if prefix == "/" {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") | None => "/",
        Some(rest) => rest,
    }
}

/// The request's host, by the rules hyper leaves to us (RFC 9112 §3.2):
/// exactly one `Host` on HTTP/1.1; an absolute-form target or HTTP/2
/// `:authority` must agree with it.
pub fn request_host(req: &Request<Incoming>, conn: &Conn) -> Result<RequestHost, Error> {
    request_host_parts(req.version(), req.uri(), req.headers(), conn)
}

pub fn request_host_parts(
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
            false,
            None,
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
