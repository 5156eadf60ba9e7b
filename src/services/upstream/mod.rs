//! The upstream side of proxying: pooled connections (held while the
//! upstream restarts, capped per worker), the request body on its way up
//! and the response on its way back to the client, on hyper's client or on
//! a raw connection (`raw`: requests without a body to plain-HTTP upstreams,
//! and the fast HTTP/1 path).

mod body;
mod pool;
pub(crate) mod raw;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Response};
use hyper::body::Incoming;

use self::body::PooledBody;
pub(crate) use self::body::{RequestBody, RequestBodyTimeout, Reuse, Seen};
pub(crate) use self::pool::{Conn, ConnectError, Pool, RawConn, set_worker};
use self::pool::{Got, GotRaw};
use super::Ctx;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::Upstream;
use crate::error::{Error, UpstreamId};
use crate::http::body::{Body, boxed};
use crate::http::{h1, rewrite};

/// The pool for one upstream, with an idle list for each of `workers`.
pub(crate) fn pool(up: &Arc<Upstream>, workers: usize, held: &Gauge) -> Arc<Pool> {
    let pool = Arc::new(Pool::new(up.clone(), tls_for(up), workers, held.clone()));
    // The sweeper holds the pool weakly: it ends with the snapshot.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let weak = Arc::downgrade(&pool);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(pool) => pool.close_expired(),
                    None => return,
                }
            }
        });
    }
    pool
}

/// How often idle upstream connections past their timeout are closed.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// A connection for one exchange, and whether it came from the pool: a
/// pooled one, else a new one (with `upgrades`: always a new one, never
/// pooled). At this worker's `max_connections`, waits up to
/// `connect_timeout` for one to free up, then fails with
/// [`Error::UpstreamBusy`].
pub(crate) async fn obtain(pool: &Pool, upgrades: bool) -> Result<(Conn, bool), Error> {
    match pool.acquire(!upgrades).await {
        Some(Got::Pooled(conn)) => Ok((conn, true)),
        Some(Got::Permit(permit)) => {
            let conn = connect_waiting(pool, permit, |p| pool.connect(upgrades, p)).await?;
            Ok((conn, false))
        }
        None => Err(busy(pool)),
    }
}

/// [`obtain`] for the fast HTTP/1 path: a raw connection, pooled or new,
/// with the same cap, wait and hold.
pub(crate) async fn obtain_raw(pool: &Pool) -> Result<RawConn, Error> {
    match pool.acquire_raw().await {
        Some(GotRaw::Pooled(conn)) => Ok(conn),
        Some(GotRaw::Permit(permit)) => {
            connect_waiting(pool, permit, |p| pool.connect_raw(p)).await
        }
        None => Err(busy(pool)),
    }
}

fn busy(pool: &Pool) -> Error {
    Error::UpstreamBusy {
        upstream: UpstreamId::of(&pool.upstream),
        max: pool.upstream.max_connections,
    }
}

/// A new connection to the pool's upstream, holding on while the upstream
/// refuses connections (it is restarting) for up to its `wait_for`.
async fn connect_waiting<'p, T, F, Fut>(
    pool: &'p Pool,
    permit: tokio::sync::OwnedSemaphorePermit,
    connect: F,
) -> Result<T, Error>
where
    F: Fn(tokio::sync::OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = Result<T, (ConnectError, tokio::sync::OwnedSemaphorePermit)>> + 'p,
{
    let up = &pool.upstream;
    let started = Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut held: Option<Held<'_>> = None;
    let mut permit = permit;
    loop {
        let e = match connect(permit).await {
            Ok(c) => return Ok(c),
            Err((e, back)) => {
                permit = back;
                e
            }
        };
        match e {
            ConnectError::Refused(e) if started.elapsed() < up.wait_for => {
                if held.is_none() {
                    tracing::info!(
                        "upstream {} ({}) refuses connections ({e}); holding requests for up to {:?}",
                        up.name,
                        up.url,
                        up.wait_for
                    );
                    held = Some(Held::new(pool));
                }
                let remaining = up.wait_for.saturating_sub(started.elapsed());
                tokio::time::sleep(backoff.min(remaining)).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            ConnectError::Timeout(after) => {
                return Err(Error::upstream_timeout(up, "connecting", after));
            }
            e => return Err(Error::upstream_unavailable(up, e)),
        }
    }
}

/// A request counted as held while it waits for its upstream, in all and
/// for its upstream.
struct Held<'a>(&'a Pool);

impl<'a> Held<'a> {
    fn new(pool: &'a Pool) -> Self {
        pool.held.inc();
        pool.held_here.inc();
        Held(pool)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.dec();
        self.0.held_here.dec();
    }
}

/// Strips hop-by-hop headers from the upstream's response, rewrites its
/// self-references, and streams its body, which gives up on an upstream
/// that stalls for its `body_idle_timeout` and returns `conn` to `pool`
/// when the exchange is complete, as far as `reuse` allows.
pub(crate) fn finish_response(
    resp: Response<Incoming>,
    (conn, pool, reuse): (Conn, &Arc<Pool>, Reuse),
    ctx: &Ctx<'_>,
    upstream_host: &str,
) -> Result<Response<Body>, Error> {
    let (mut parts, body) = resp.into_parts();
    // RFC 9112 §6.3: a message with both is to be handled as an error
    // (hyper's client reads it as chunked and leaves both fields). The fast
    // path's parser refuses it the same way (`h1::BadResponse`). The
    // connection is dropped with the body, never pooled.
    if parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        && parts.headers.contains_key(http::header::CONTENT_LENGTH)
    {
        return Err(Error::upstream_protocol(
            &pool.upstream,
            h1::BadResponse::LengthAndChunked.to_string(),
        ));
    }
    response_headers(&mut parts.headers, ctx, &pool.upstream, upstream_host);
    let body = boxed(PooledBody::new(body, conn, pool.clone(), reuse));
    Ok(Response::from_parts(parts, body))
}

/// The response header rules, on every path: hop-by-hop headers stripped,
/// the upstream's self-references rewritten to the client's address.
pub(crate) fn response_headers(
    headers: &mut HeaderMap,
    ctx: &Ctx<'_>,
    up: &Upstream,
    upstream_host: &str,
) {
    crate::http::headers::strip_hop_by_hop(headers);
    // Most responses carry none of the rewritten headers: skip building
    // the rewrite for them.
    if rewrite::applies(headers) {
        let client_origin = format!("{}://{}", ctx.conn.scheme(), ctx.host.with_port());
        // The name the upstream was sent, without a port (Preserve and
        // Upstream host modes carry one).
        let forwarded_host = crate::host::RequestHost::parse(upstream_host)
            .map(|h| h.name.to_string())
            .unwrap_or_else(|_| upstream_host.to_string());
        rewrite::response(
            headers,
            &rewrite::Rewrite {
                client_origin: &client_origin,
                client_host: ctx.host.name.as_str(),
                forwarded_host: &forwarded_host,
                upstream_authority: up.url.authority.as_str(),
                cookie_domain: ctx.cookies.domain_for(ctx.host.name.as_str()),
                insecure_cookies: ctx.cookies.insecure_for(ctx.conn.is_tls()),
            },
        );
    }
}

/// TLS settings for an https upstream; `None` for http. A broken TLS
/// setup is logged at startup and reported by every connection attempt.
fn tls_for(up: &Upstream) -> Result<Option<pool::Tls>, Arc<str>> {
    if !up.url.is_https() {
        return Ok(None);
    }
    let result = crate::tls::client_config(up)
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
    result.map_err(Arc::from)
}
