//! The HTTP reverse proxy: rewrites the request for the upstream, holds it
//! while the upstream is restarting (`wait_for`), streams both bodies, and
//! rewrites the response's self-references back to the client's address.
//! Upgrade requests are handed to the WebSocket tunnel.

mod body;
pub mod pool;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;

use self::body::{LimitedBody, PooledBody};
use self::pool::{ConnectError, Pool, Sender};
use crate::config::{Config, HostMode, Route, Upstream};
use crate::dispatch::Ctx;
use crate::error::Error;
use crate::http::body::{Body, boxed, empty};
use crate::http::{forward, rewrite};
use crate::services::tunnel;

pub struct Proxy {
    pools: HashMap<String, Arc<Pool>>,
}

impl Proxy {
    pub fn new(config: &Config) -> Self {
        let pools = config
            .upstreams
            .iter()
            .map(|(name, up)| (name.clone(), Arc::new(Pool::new(up.clone(), tls_for(up)))))
            .collect();
        Proxy { pools }
    }

    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        ctx: &Ctx,
        upstream: &str,
    ) -> Result<Response<Body>, Error> {
        let pool = self
            .pools
            .get(upstream)
            .ok_or_else(|| Error::Internal(format!("no pool for upstream {upstream}")))?;
        let up = &pool.upstream;
        let route = &ctx.route;

        // An upgrade needs HTTP/1.1 and `Connection: upgrade`; anything else
        // with an `Upgrade` header is a plain request (the header is
        // hop-by-hop and stripped below).
        let upgrade = (route.websocket && tunnel::is_upgrade(&req))
            .then(|| req.headers()[header::UPGRADE].clone());

        if let (Some(limit), Some(len)) = (route.body_limit, content_length(&req)) {
            if len > limit {
                return Err(Error::PayloadTooLarge {
                    route: route.label(),
                    limit,
                });
            }
        }

        *req.uri_mut() = upstream_uri(ctx, route, up, req.uri())?;
        *req.version_mut() = http::Version::HTTP_11;
        let upstream_host = upstream_host(ctx, route, up);
        let cfg = &ctx.rt.config;
        let tenant_header = cfg.tenants.header.as_ref();
        let client_port = ctx.host.port.unwrap_or(ctx.conn.local.port());
        let port_value = if client_port == ctx.conn.local.port() {
            ctx.conn.local_port.clone()
        } else {
            HeaderValue::from(client_port)
        };
        let f = forward::Forward {
            scheme: ctx.conn.scheme(),
            client_host: &ctx.host,
            client_port,
            port_value: &port_value,
            upstream_host: &upstream_host,
            peer: ctx.conn.peer.ip(),
            peer_value: &ctx.conn.peer_ip,
            trusted_peer: is_trusted(ctx.conn.peer.ip(), &cfg.server.trusted_proxies),
            tenant: tenant_header.zip(ctx.tenant.tenant.as_deref()),
            tenant_header,
        };
        forward::prepare(req.headers_mut(), &f, upgrade.clone());

        if let Some(proto) = upgrade {
            return tunnel::open(req, ctx, pool, proto).await;
        }

        let (parts, body) = req.into_parts();
        let body = if body.is_end_stream() {
            empty()
        } else {
            match route.body_limit {
                Some(limit) => boxed(LimitedBody::new(body, limit)),
                None => boxed(body),
            }
        };
        let req = Request::from_parts(parts, body);
        let timeout = route.response_timeout.unwrap_or(up.response_timeout);
        let (resp, sender) = send(pool, req, timeout, route).await?;
        Ok(finish_response(
            resp,
            Some((sender, pool.clone())),
            ctx,
            &upstream_host,
            up,
        ))
    }
}

/// A new connection to the pool's upstream, holding on while the upstream
/// refuses connections (it is restarting) for up to its `wait_for`.
pub(crate) async fn connect_waiting(pool: &Pool, upgrades: bool) -> Result<Sender, Error> {
    let up = &pool.upstream;
    let started = Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut logged = false;
    loop {
        match pool.connect(upgrades).await {
            Ok(s) => return Ok(s),
            Err(ConnectError::Refused(e)) if started.elapsed() < up.wait_for => {
                if !logged {
                    tracing::info!(
                        "upstream {} ({}) refuses connections ({e}); holding requests for up to {:?}",
                        up.name,
                        up.url,
                        up.wait_for
                    );
                    logged = true;
                }
                let remaining = up.wait_for.saturating_sub(started.elapsed());
                tokio::time::sleep(backoff.min(remaining)).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(connect_error(up, e)),
        }
    }
}

/// Sends `req` on a pooled or new connection. A request is only re-sent
/// when hyper hands it back unsent (a pooled connection the upstream had
/// closed): a request that went out, even partly, is never replayed.
async fn send(
    pool: &Arc<Pool>,
    req: Request<Body>,
    timeout: Duration,
    route: &Route,
) -> Result<(Response<Incoming>, Sender), Error> {
    let up = &pool.upstream;
    let mut req = req;
    // Bounds re-sends on fresh connections that die before writing.
    let mut fresh_failures = 0;
    loop {
        let (mut sender, pooled) = match pool.checkout().await {
            Some(s) => (s, true),
            None => (connect_waiting(pool, false).await?, false),
        };
        match tokio::time::timeout(timeout, sender.try_send_request(req)).await {
            Err(_) => {
                return Err(Error::UpstreamTimeout {
                    upstream: up.name.clone(),
                    url: up.url.to_string(),
                    what: "waiting for the response headers",
                    after: timeout,
                });
            }
            Ok(Ok(resp)) => return Ok((resp, sender)),
            Ok(Err(mut e)) => match e.take_message() {
                Some(back) if pooled || fresh_failures < 3 => {
                    fresh_failures += usize::from(!pooled);
                    req = back;
                }
                _ => return Err(send_error(up, e.into_error(), route)),
            },
        }
    }
}

fn connect_error(up: &Upstream, e: ConnectError) -> Error {
    match e {
        ConnectError::Timeout(after) => Error::UpstreamTimeout {
            upstream: up.name.clone(),
            url: up.url.to_string(),
            what: "connecting",
            after,
        },
        other => Error::UpstreamUnavailable {
            upstream: up.name.clone(),
            url: up.url.to_string(),
            cause: other.to_string(),
        },
    }
}

fn send_error(up: &Upstream, e: hyper::Error, route: &Route) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<body::LimitExceeded>() {
            return Error::PayloadTooLarge {
                route: route.label(),
                limit: route.body_limit.unwrap_or(0),
            };
        }
        source = err.source();
    }
    let cause = match std::error::Error::source(&e) {
        Some(inner) => format!("{e}: {inner}"),
        None => e.to_string(),
    };
    Error::UpstreamUnavailable {
        upstream: up.name.clone(),
        url: up.url.to_string(),
        cause,
    }
}

/// Strips hop-by-hop headers from the upstream's response, rewrites its
/// self-references, and streams its body (returning the connection to the
/// pool when the body ends, when `sender` is given).
pub(crate) fn finish_response(
    resp: Response<Incoming>,
    sender: Option<(Sender, Arc<Pool>)>,
    ctx: &Ctx,
    upstream_host: &str,
    up: &Upstream,
) -> Response<Body> {
    let (mut parts, body) = resp.into_parts();
    crate::http::headers::strip_hop_by_hop(&mut parts.headers);
    // Most responses carry none of the rewritten headers: skip building
    // the rewrite for them.
    if rewrite::applies(&parts.headers) {
        let client_origin = format!("{}://{}", ctx.conn.scheme(), ctx.host.with_port());
        // The name the upstream was sent, without a port (Preserve and
        // Upstream host modes carry one).
        let forwarded_host = crate::routing::host::RequestHost::parse(upstream_host)
            .map(|h| h.name.to_string())
            .unwrap_or_else(|_| upstream_host.to_string());
        rewrite::response(
            &mut parts.headers,
            &rewrite::Rewrite {
                client_origin: &client_origin,
                client_host: ctx.host.name.as_str(),
                forwarded_host: &forwarded_host,
                upstream_authority: up.url.authority.as_str(),
            },
        );
    }
    let body = match sender {
        Some((sender, pool)) => boxed(PooledBody::new(body, sender, pool)),
        None => boxed(body),
    };
    Response::from_parts(parts, body)
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn is_trusted(ip: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    !trusted.is_empty() && trusted.iter().any(|n| n.contains(&ip))
}

/// The `Host` the upstream receives, by the route's mode. A dev server
/// behind the SPA route serves one site, not tenants, and checks `Host`
/// against its own name ("Invalid Host header"): it gets its own authority.
pub(crate) fn upstream_host(ctx: &Ctx, route: &Route, up: &Upstream) -> String {
    if route.target == crate::config::RouteTarget::Spa {
        return up.url.authority.to_string();
    }
    match route.host {
        HostMode::StripPort => ctx.tenant.forward_host.to_string(),
        HostMode::Preserve => ctx.host.with_port(),
        HostMode::Upstream => up.url.authority.to_string(),
    }
}

/// The origin-form target sent upstream: the normalised path the route was
/// matched on (never the raw one), with the route's strip/rewrite applied,
/// under the upstream's base path, plus the query.
fn upstream_uri(ctx: &Ctx, route: &Route, up: &Upstream, original: &Uri) -> Result<Uri, Error> {
    let path = ctx.path.as_str();
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

/// TLS settings for an https upstream; `None` for http. A broken TLS
/// setup is logged at startup and reported by every connection attempt.
fn tls_for(up: &Upstream) -> Result<Option<pool::Tls>, String> {
    if !up.url.is_https() {
        return Ok(None);
    }
    let result = crate::server::tls::client_config(up)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            let server_name = rustls::pki_types::ServerName::try_from(up.url.host().to_string())
                .map_err(|e| format!("{} is not a valid TLS server name: {e}", up.url.host()))?;
            Ok(Some(pool::Tls {
                connector: tokio_rustls::TlsConnector::from(config),
                server_name,
            }))
        });
    if let Err(e) = &result {
        tracing::error!("upstream {} ({}): {e}", up.name, up.url);
    }
    result
}
