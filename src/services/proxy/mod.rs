//! The HTTP reverse proxy: rewrites the request for the upstream, holds it
//! while the upstream is restarting (`wait_for`), streams both bodies, and
//! rewrites the response's self-references back to the client's address.
//! Upgrade requests are handed to the WebSocket tunnel.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body::Body as _;
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Incoming;

use super::Ctx;
use super::tunnel::{self, Tunnels};
use super::upstream::{
    Conn, Pool, RequestBody, RequestBodyTimeout, Reuse, Seen, finish_response, obtain, raw,
};
use crate::config::{Config, HostMode, RouteTarget, Upstream};
use crate::error::Error;
use crate::http::body::{Body, boxed, empty};
use crate::http::forward;
use crate::http::headers::has_token;
use crate::inspector::Tap;
use prometheus_client::metrics::counter::Counter;

/// The config's forwarding rules, made once per snapshot.
pub struct Rules {
    tenant_header: Option<HeaderName>,
    trusted_proxies: Vec<ipnet::IpNet>,
    underscores: bool,
    /// `Set-Cookie` rewriting (the local suffix's cookie domain, insecure
    /// cookies on plain HTTP).
    pub cookies: crate::http::rewrite::CookieRules,
}

impl Rules {
    pub fn new(config: &Config) -> Rules {
        Rules {
            tenant_header: config.tenants.header.clone(),
            trusted_proxies: config.server.trusted_proxies.clone(),
            underscores: config.server.underscores_in_headers,
            cookies: crate::http::rewrite::CookieRules::new(config),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// Where a proxied request goes and what it may use on the way.
pub(crate) struct Via<'a> {
    pub pool: &'a Arc<Pool>,
    pub rules: &'a Rules,
    pub tunnels: &'a Tunnels,
    /// Where the request body's first bytes are copied for the inspector.
    pub tap: Option<Arc<Tap>>,
    /// Request body bytes, all requests together (the metric).
    pub request_bytes: &'a Counter,
}

/// A request head made ready for the upstream.
pub(crate) struct Prepared {
    /// The `Host` the upstream was sent.
    pub upstream_host: String,
    /// The WebSocket upgrade the route allows, if one was asked for.
    pub upgrade: Option<HeaderValue>,
}

/// Everything done to a request head before it goes upstream, on every
/// path (hyper's and the fast HTTP/1 one): the route's body limit against
/// `Content-Length`, the target rewritten for the upstream, HTTP/1.1, and
/// the forwarding header rules ([`forward::prepare`]).
pub(crate) fn prepare<B>(
    req: &mut Request<B>,
    ctx: &Ctx<'_>,
    rules: &Rules,
    up: &Upstream,
) -> Result<Prepared, Error> {
    let route = ctx.route;

    // Only WebSocket upgrades are tunnelled. Any other protocol (h2c above
    // all: a tunnel would skip routes, tenant rules, limits and forwarding
    // headers) goes on as a plain request: `Upgrade` is hop-by-hop and
    // stripped below, with the `Connection` token naming it.
    let upgrade = tunnel::requested(req, &route.upgrades);

    if let (Some(limit), Some(len)) = (route.body_limit, content_length(req)) {
        if len > limit {
            return Err(Error::PayloadTooLarge {
                route: route.label(),
                limit,
            });
        }
    }

    *req.uri_mut() = upstream_uri(ctx, up, req.uri())?;
    *req.version_mut() = http::Version::HTTP_11;
    let upstream_host = upstream_host(ctx, up);
    let tenant_header = rules.tenant_header.as_ref();
    let client_port = ctx.host.port.unwrap_or(ctx.conn.local.port());
    let port_value = if client_port == ctx.conn.local.port() {
        ctx.conn.local_port.clone()
    } else {
        HeaderValue::from(client_port)
    };
    let f = forward::Forward {
        scheme: ctx.conn.scheme(),
        client_host: ctx.host,
        client_port,
        port_value: &port_value,
        upstream_host: &upstream_host,
        peer: ctx.conn.peer.ip(),
        peer_value: &ctx.conn.peer_ip,
        trusted_peer: rules.is_trusted(ctx.conn.peer.ip()),
        tenant: tenant_header.zip(ctx.tenant.tenant.as_deref()),
        tenant_header,
        underscores: rules.underscores,
    };
    forward::prepare(req.headers_mut(), &f, upgrade.clone());
    Ok(Prepared {
        upstream_host,
        upgrade,
    })
}

/// Forwards `req` to the upstream behind `via` and streams the answer back;
/// an upgrade the route allows becomes a tunnel.
pub(crate) async fn forward(
    mut req: Request<Incoming>,
    ctx: &Ctx<'_>,
    via: Via<'_>,
) -> Result<Response<Body>, Error> {
    let pool = via.pool;
    let up = &pool.upstream;
    let route = ctx.route;
    // Read before `prepare` (which keeps only this token of `TE`), by the
    // same rule.
    let wants_trailers = has_token(req.headers(), header::TE, "trailers");
    let Prepared {
        upstream_host,
        upgrade,
    } = prepare(&mut req, ctx, via.rules, up)?;

    if let Some(proto) = upgrade {
        return tunnel::open(req, ctx, pool, via.tunnels, &upstream_host, proto).await;
    }

    // A body goes up through a `RequestBody`: it gives up on a client that
    // stops sending, and says when it was sent in full, which the
    // connection waits for before it may be pooled again.
    let (parts, body) = req.into_parts();
    let timeout = route.response_timeout.unwrap_or(up.response_timeout);
    // A request without a body to a plain-HTTP upstream goes on a raw
    // connection this task reads and writes (as on the fast HTTP/1 path),
    // not through hyper's client and its connection task. A client that
    // asked for trailers (`TE: trailers`, gRPC) keeps hyper's client, which
    // passes them on; the raw body drops them.
    if body.is_end_stream() && pool.raw_capable() && !wants_trailers {
        let head = Request::from_parts(parts, ());
        return raw::forward_bodiless(head, pool, timeout, ctx, &upstream_host).await;
    }
    let idle = up.request_body_timeout;
    let (body, reuse) = if body.is_end_stream() {
        (empty(), Reuse::Yes)
    } else {
        let seen = Seen {
            tap: via.tap,
            bytes: via.request_bytes.clone(),
        };
        let (body, sent) = match route.body_limit {
            Some(limit) => {
                let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
                let (b, sent) = RequestBody::new(limited, idle, seen);
                (boxed(b), sent)
            }
            None => {
                let (b, sent) = RequestBody::new(body, idle, seen);
                (boxed(b), sent)
            }
        };
        (body, Reuse::AfterBody(sent))
    };
    let req = Request::from_parts(parts, body);
    let (resp, conn) = send(pool, req, timeout, ctx).await?;
    finish_response(resp, (conn, pool, reuse), ctx, &upstream_host)
}

/// Sends `req` on a pooled or new connection. A request is only re-sent
/// when hyper hands it back unsent (a pooled connection the upstream had
/// closed): a request that went out, even partly, is never replayed.
async fn send(
    pool: &Arc<Pool>,
    req: Request<Body>,
    timeout: Duration,
    ctx: &Ctx<'_>,
) -> Result<(Response<Incoming>, Conn), Error> {
    let up = &pool.upstream;
    let mut req = req;
    // Bounds re-sends on fresh connections that die before writing.
    let mut fresh_failures = 0;
    loop {
        // A connection that failed is dropped (its permit freed) before the
        // next is obtained.
        let (mut conn, pooled) = obtain(pool, false).await?;
        match tokio::time::timeout(timeout, conn.sender.try_send_request(req)).await {
            Err(_) => {
                return Err(Error::upstream_timeout(
                    up,
                    "waiting for the response headers",
                    timeout,
                ));
            }
            Ok(Ok(resp)) => return Ok((resp, conn)),
            Ok(Err(mut e)) => match e.take_message() {
                Some(back) if pooled || fresh_failures < 3 => {
                    fresh_failures += usize::from(!pooled);
                    req = back;
                }
                _ => return Err(send_error(up, e.into_error(), ctx)),
            },
        }
    }
}

/// A failed exchange: the body limit or the client's body when that is
/// what stopped it, otherwise the upstream's failure.
fn send_error(up: &Upstream, e: hyper::Error, ctx: &Ctx<'_>) -> Error {
    // A response head no correct server sends (the fast path's parser
    // says the same of it: `h1::BadResponse`).
    if e.is_parse() || e.is_parse_status() {
        return Error::upstream_protocol(up, e.to_string());
    }
    let mut source = std::error::Error::source(&e);
    while let Some(err) = source {
        if let Some(t) = err.downcast_ref::<RequestBodyTimeout>() {
            return Error::RequestTimeout { after: t.0 };
        }
        if err.is::<LengthLimitError>() {
            return Error::PayloadTooLarge {
                route: ctx.route.label(),
                limit: ctx.route.body_limit.unwrap_or(0),
            };
        }
        // A hyper error below the client's own is the request body's, read
        // from the client: a malformed chunk or an upload cut short is the
        // client's fault, not the upstream's.
        if err.is::<hyper::Error>() {
            return Error::BadRequest("the request body is malformed or was cut short");
        }
        source = err.source();
    }
    Error::upstream_unavailable(up, e)
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The `Host` the upstream receives, by the route's mode. A dev server
/// behind the SPA route serves one site, not tenants, and checks `Host`
/// against its own name ("Invalid Host header"): it gets its own authority.
fn upstream_host(ctx: &Ctx<'_>, up: &Upstream) -> String {
    if ctx.route.target == RouteTarget::Spa {
        return up.url.authority.to_string();
    }
    match ctx.route.host {
        HostMode::StripPort => ctx.tenant.forward_host.to_string(),
        HostMode::Preserve => ctx.host.with_port(),
        HostMode::Upstream => up.url.authority.to_string(),
    }
}

/// The origin-form target sent upstream: the normalised path the route was
/// matched on (never the raw one), with the route's strip/rewrite applied,
/// under the upstream's base path, plus the query.
fn upstream_uri(ctx: &Ctx<'_>, up: &Upstream, original: &Uri) -> Result<Uri, Error> {
    let route = ctx.route;
    let path = ctx.path;
    // Most requests go on as they came: an origin-form target whose path
    // is already normal, no base path, no strip or rewrite. Its bytes are
    // shared, not copied and parsed again.
    if original.path() == path
        && up.url.base_path.is_empty()
        && route.rewrite.is_none()
        && !route.strip_prefix
    {
        if original.scheme().is_none() {
            return Ok(original.clone());
        }
        // Absolute-form (HTTP/2's :scheme and :authority, or an HTTP/1
        // absolute target): its path and query, shared, as origin-form.
        if let Some(pq) = original.path_and_query() {
            return Ok(Uri::from(pq.clone()));
        }
    }
    let prefix = route.prefix.as_str();
    let below = if prefix == "/" {
        path
    } else {
        path.strip_prefix(prefix).unwrap_or(path)
    };
    let mut target = String::with_capacity(up.url.base_path.len() + path.len() + 16);
    target.push_str(&up.url.base_path);
    match (&route.rewrite, route.strip_prefix) {
        (Some(new), _) => {
            if new.as_str() != "/" {
                target.push_str(new.as_str());
            }
            push_below(&mut target, below);
        }
        (None, true) => push_below(&mut target, below),
        (None, false) => target.push_str(path),
    }
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = original.query() {
        target.push('?');
        target.push_str(q);
    }
    target
        .parse()
        .map_err(|_| Error::BadRequest("the request target cannot be forwarded"))
}

fn push_below(target: &mut String, below: &str) {
    if below.is_empty() {
        target.push('/');
    } else {
        target.push_str(below);
    }
}
