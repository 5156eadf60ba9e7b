//! WebSocket (and any HTTP/1.1 upgrade) tunnels: the handshake is forwarded
//! like any proxied request; on `101` both connections are taken over and
//! spliced byte for byte, so subprotocols, extensions, fragmentation, pings
//! and close codes pass untouched.

mod splice;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Ctx;
use super::upstream::{Pool, Reuse, finish_response, obtain};
use crate::error::Error;
use crate::http::body::{Body, empty};
use crate::http::headers::{connection_has, strip_hop_by_hop};

/// Where upgraded connections (WebSocket tunnels, live-reload sockets) run,
/// so graceful shutdown can wait for them and then close them. Cheap to
/// clone: every clone is the same set.
#[derive(Clone, Default)]
pub struct Tunnels {
    pub tracker: TaskTracker,
    /// Cancelled when the shutdown deadline passes: open tunnels close.
    pub close: CancellationToken,
    /// Cancelled as soon as shutdown begins: connections that carry no work
    /// of the user's (live-reload sockets) close at once instead of holding
    /// the drain for the whole deadline.
    pub shutting_down: CancellationToken,
    /// The proxied tunnels open now, by the order they opened (the status
    /// page lists them; live-reload sockets are not listed).
    listed: Arc<Mutex<Listed>>,
    /// Every tunnel's bytes added up (up, down): the metrics' counters.
    totals: [Counter; 2],
}

#[derive(Default)]
struct Listed {
    next: u64,
    open: BTreeMap<u64, Arc<Tunnel>>,
}

/// One open tunnel, as the status page shows it.
pub(crate) struct Tunnel {
    pub tenant: Option<String>,
    /// Host (with port) and path, as the client asked.
    pub host: String,
    pub path: String,
    pub opened: SystemTime,
    counts: splice::Counts,
}

impl Tunnel {
    /// Bytes so far (client → upstream, upstream → client).
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (
            self.counts.up.load(Ordering::Relaxed),
            self.counts.down.load(Ordering::Relaxed),
        )
    }
}

/// Keeps a tunnel listed until dropped.
struct Listing {
    id: u64,
    listed: Arc<Mutex<Listed>>,
}

impl Drop for Listing {
    fn drop(&mut self) {
        self.listed
            .lock()
            .expect("never poisoned")
            .open
            .remove(&self.id);
    }
}

/// The most tunnels the page lists (the oldest ones); the count is exact.
const MAX_LISTED: usize = 200;

impl Tunnels {
    /// Tunnels whose bytes add up in `totals` (up, down) as they pass.
    pub(crate) fn counting(totals: [Counter; 2]) -> Tunnels {
        Tunnels {
            totals,
            ..Tunnels::default()
        }
    }

    pub fn open(&self) -> usize {
        self.tracker.len()
    }

    /// The proxied tunnels open now, oldest first, at most [`MAX_LISTED`].
    pub(crate) fn list(&self) -> Vec<Arc<Tunnel>> {
        let listed = self.listed.lock().expect("never poisoned");
        listed.open.values().take(MAX_LISTED).cloned().collect()
    }

    fn add(&self, tunnel: Tunnel) -> (Arc<Tunnel>, Listing) {
        let tunnel = Arc::new(tunnel);
        let mut listed = self.listed.lock().expect("never poisoned");
        let id = listed.next;
        listed.next += 1;
        listed.open.insert(id, tunnel.clone());
        let listing = Listing {
            id,
            listed: self.listed.clone(),
        };
        (tunnel, listing)
    }
}

/// The protocol an upgrade request asks for, when it is one of `allowed`
/// (lowercase names): HTTP/1.1, one `Upgrade` naming one protocol, and
/// `Connection: upgrade` (RFC 9110 §7.8; HTTP/2 cannot carry one).
pub(crate) fn requested<B>(req: &Request<B>, allowed: &[String]) -> Option<HeaderValue> {
    let h = req.headers();
    if req.version() != Version::HTTP_11 || allowed.is_empty() || !connection_has(h, "upgrade") {
        return None;
    }
    let mut upgrades = h.get_all(header::UPGRADE).iter();
    match (upgrades.next(), upgrades.next()) {
        (Some(v), None) => {
            let proto = v.as_bytes().trim_ascii();
            allowed
                .iter()
                .any(|a| proto.eq_ignore_ascii_case(a.as_bytes()))
                .then(|| v.clone())
        }
        _ => None,
    }
}

/// Forwards the handshake (headers already prepared) and, on 101, splices.
pub(crate) async fn open(
    mut req: Request<Incoming>,
    ctx: &Ctx<'_>,
    pool: &Arc<Pool>,
    tunnels: &Tunnels,
    upstream_host: &str,
    proto: HeaderValue,
) -> Result<Response<Body>, Error> {
    let up = pool.upstream.clone();
    // Taken before the request is consumed: the client side of the tunnel.
    let client_side = hyper::upgrade::on(&mut req);
    let (parts, _) = req.into_parts();
    let req = Request::from_parts(parts, empty());

    // A dedicated connection: it counts against the upstream's
    // max_connections for as long as the tunnel is open.
    let (mut conn, _) = obtain(pool, true).await?;
    let timeout = ctx.route.response_timeout.unwrap_or(up.response_timeout);
    let mut resp = match tokio::time::timeout(timeout, conn.sender.send_request(req)).await {
        Err(_) => {
            return Err(Error::upstream_timeout(
                &up,
                "waiting for the upgrade response",
                timeout,
            ));
        }
        Ok(Err(e)) => return Err(Error::upstream_unavailable(&up, e)),
        Ok(Ok(r)) => r,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Refused (403, 404, ...): an ordinary response; the client's
        // connection stays usable for HTTP.
        return finish_response(resp, (conn, pool, Reuse::No), ctx, upstream_host);
    }
    let agreed = resp
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(proto.as_bytes()));
    if !agreed {
        return Err(Error::upstream_protocol(
            &up,
            format!(
                "answered 101 with Upgrade {:?} to a request for {:?}",
                resp.headers().get(header::UPGRADE),
                proto
            ),
        ));
    }
    let upstream_side = hyper::upgrade::on(&mut resp);
    let permit = conn.into_upgrade();

    let (mut parts, _) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(header::UPGRADE, proto);
    let response = Response::from_parts(parts, empty());

    let idle = ctx.route.idle_timeout;
    let cancel = tunnels.close.clone();
    let label = format!("{} {}", ctx.host.with_port(), ctx.path);
    let (tunnel, listing) = tunnels.add(Tunnel {
        tenant: ctx.tenant.tenant.clone(),
        host: ctx.host.with_port(),
        path: ctx.path.to_string(),
        opened: SystemTime::now(),
        counts: splice::Counts::new(tunnels.totals.clone()),
    });
    // Spawned before the 101 is returned: hyper completes the client-side
    // upgrade only after the response is written.
    tunnels.tracker.spawn(async move {
        let _permit = permit;
        let _listing = listing;
        let (client, upstream) = match tokio::join!(client_side, upstream_side) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!("tunnel {label}: upgrade failed: {e}");
                return;
            }
        };
        tokio::select! {
            r = splice::run(client, upstream, idle, &tunnel.counts) => match r {
                Ok((up, down)) => tracing::debug!("tunnel {label} closed: {up} B up, {down} B down"),
                Err(e) => tracing::debug!("tunnel {label} ended: {e}"),
            },
            _ = cancel.cancelled() => tracing::debug!("tunnel {label} closed by shutdown"),
        }
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_allowed_protocols_are_requested() {
        let ws = vec!["websocket".to_string()];
        let up = |p: &'static str| [("connection", "keep-alive, Upgrade"), ("upgrade", p)];
        let v11 = Version::HTTP_11;
        assert_eq!(
            requested(&req(v11, &up("websocket")), &ws).unwrap(),
            "websocket"
        );
        assert_eq!(
            requested(&req(v11, &up("WebSocket")), &ws).unwrap(),
            "WebSocket"
        );
        assert!(requested(&req(v11, &up("h2c")), &ws).is_none());
        assert!(requested(&req(v11, &up("websocket, h2c")), &ws).is_none());
        assert!(requested(&req(v11, &up("websocket")), &[]).is_none());
        assert!(requested(&req(Version::HTTP_10, &up("websocket")), &ws).is_none());
        assert!(requested(&req(v11, &[("upgrade", "websocket")]), &ws).is_none());
        let raw = vec!["raw".to_string()];
        assert_eq!(requested(&req(v11, &up("raw")), &raw).unwrap(), "raw");
    }
}
