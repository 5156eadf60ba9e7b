//! The upstream side of proxying: pooled connections (held while the
//! upstream restarts), and the response on its way back to the client.

mod body;
mod pool;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Response;
use hyper::body::Incoming;

use self::body::PooledBody;
pub(crate) use self::pool::{ConnectError, Pool, Sender, set_worker};
use super::Ctx;
use crate::config::Upstream;
use crate::error::Error;
use crate::http::body::{Body, boxed};
use crate::http::rewrite;

/// The pool for one upstream, with an idle list for each of `workers`.
pub(crate) fn pool(up: &Arc<Upstream>, workers: usize) -> Arc<Pool> {
    Arc::new(Pool::new(up.clone(), tls_for(up), workers))
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
            Err(ConnectError::Timeout(after)) => {
                return Err(Error::upstream_timeout(up, "connecting", after));
            }
            Err(e) => return Err(Error::upstream_unavailable(up, e)),
        }
    }
}

/// Strips hop-by-hop headers from the upstream's response, rewrites its
/// self-references, and streams its body (returning the connection to the
/// pool when the body ends, when `sender` is given).
pub(crate) fn finish_response(
    resp: Response<Incoming>,
    sender: Option<(Sender, Arc<Pool>)>,
    ctx: &Ctx<'_>,
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
        let forwarded_host = crate::host::RequestHost::parse(upstream_host)
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
