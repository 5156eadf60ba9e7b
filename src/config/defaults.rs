//! Every default value of the config in one table: what a key means when
//! the file does not set it. The embedded default file sets none of these
//! by repeating them; it relies on this module.

use std::net::SocketAddr;
use std::time::Duration;

use super::{HostMode, Profile, Route, RoutePrefix, RouteTarget, Upstream, UpstreamUrl};

/// `server.listen`.
pub(super) const LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
/// `server.header_read_timeout`.
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// `server.tls_handshake_timeout`.
pub(super) const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `server.http2_idle_timeout`: as long as nginx's keepalive_timeout (75 s)
/// rounded down; an idle HTTP/2 connection costs a socket and its buffers.
pub(super) const HTTP2_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `server.send_timeout` (nginx's send_timeout).
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// `tls.ca_dir`: where `portero cert` writes by default.
pub(super) const CA_DIR: &str = "certs";
/// `server.shutdown_timeout`.
pub(super) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// `upstreams.*.connect_timeout`.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `upstreams.*.response_timeout`.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// `upstreams.*.max_connections`, per worker. A backend with 512 requests
/// in flight from one worker is saturated already (a Django or Daphne
/// deployment runs tens of workers): more connections only queue inside
/// it. The cap bounds the file descriptors a flood of slow requests can
/// pin (two per proxied request) well below common limits, and turns
/// the overload into a prompt 503 instead of a pile-up. It sits above the
/// idle list's own cap (256), so pooling never hits it.
pub(super) const MAX_CONNECTIONS: usize = 512;
/// `upstreams.*.request_body_timeout`: the same in both profiles. A real
/// upload never pauses this long (a phone on a bad link resumes within
/// seconds); a slow-body client holding a connection and a backend worker
/// is cut off.
pub(super) const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// `upstreams.*.body_idle_timeout`: as long as `response_timeout`, since a
/// backend streaming a response (an export, a report) may pause between
/// parts as long as it may take before its headers.
pub(super) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `spa.root`.
pub(super) const SPA_ROOT: &str = "./dist";
/// `spa.memory_cache`: bytes of file content kept in memory.
pub(super) const MEMORY_CACHE: u64 = 64 << 20;
/// `routes[].upgrades`: the protocol tunnelled unless a route says
/// otherwise.
pub(super) const UPGRADE: &str = "websocket";
/// Prefixes the default routes send to the `backend` upstream.
const BACKEND_PREFIXES: [&str; 5] = ["/api", "/admin", "/static", "/media", "/ws"];

/// `server.shutdown_delay`: none on a developer's machine; in staging, time
/// for a load balancer or Kubernetes to see the readiness change and stop
/// sending traffic (endpoints usually update within a few seconds).
pub(super) fn shutdown_delay(profile: Profile) -> Duration {
    match profile {
        Profile::Dev => Duration::ZERO,
        Profile::Staging => Duration::from_secs(5),
    }
}

/// `server.insecure_cookies`: on in dev, where portero serves plain HTTP
/// to a browser on the same machine; never in staging.
pub(super) fn insecure_cookies(profile: Profile) -> bool {
    profile == Profile::Dev
}

/// `admin.probes`: anyone (the probes say nothing but "ok" or "ready").
pub(super) fn admin_probes() -> Vec<ipnet::IpNet> {
    ["0.0.0.0/0", "::/0"]
        .iter()
        .map(|n| n.parse().expect("literal networks are valid"))
        .collect()
}

/// `admin.inspector_size`: the last requests `/__portero/` shows. On a
/// developer's machine, 300; in staging, off: keeping requests costs the
/// proxy 5 to 10% of its requests per second (BENCHMARKS.md), and a front
/// door's operator turns it on when they need it.
pub(super) fn inspector_size(profile: Profile) -> usize {
    match profile {
        Profile::Dev => 300,
        Profile::Staging => 0,
    }
}

/// `admin.allow`: loopback clients only.
pub(super) fn admin_allow() -> Vec<ipnet::IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|n| n.parse().expect("literal networks are valid"))
        .collect()
}

pub(super) fn listen() -> SocketAddr {
    SocketAddr::from(LISTEN)
}

/// The upstream name a `spa.dev_server` URL is registered under.
pub(super) const DEV_SERVER_UPSTREAM: &str = "spa-dev-server";

/// How long requests wait for a restarting upstream: long enough for a
/// Django autoreload in dev, never in staging where a fast 502 is better.
pub(super) fn wait_for(profile: Profile) -> Duration {
    match profile {
        Profile::Dev => Duration::from_secs(10),
        Profile::Staging => Duration::ZERO,
    }
}

/// An upstream with every option at its default.
pub(super) fn upstream(name: &str, url: UpstreamUrl, profile: Profile) -> Upstream {
    Upstream {
        name: name.into(),
        url,
        connect_timeout: CONNECT_TIMEOUT,
        response_timeout: RESPONSE_TIMEOUT,
        wait_for: wait_for(profile),
        max_connections: MAX_CONNECTIONS,
        request_body_timeout: REQUEST_BODY_TIMEOUT,
        body_idle_timeout: BODY_IDLE_TIMEOUT,
        ca: None,
        insecure_skip_verify: false,
    }
}

/// `routes[].body_limit`: the largest request body a route accepts (413
/// above) unless the route says otherwise (`"0"`: no limit). In dev, 1 GiB:
/// room for any fixture or media upload a developer tries, while a runaway
/// client still meets a bound. In staging, 100 MiB: the front door of a
/// shared server, where Django streams file uploads to disk but every byte
/// still crosses the network and the worker.
pub(super) fn body_limit(profile: Profile) -> Option<u64> {
    match profile {
        Profile::Dev => Some(1 << 30),
        Profile::Staging => Some(100 << 20),
    }
}

/// The default routes. In front of a dev server (`dev_server`), its
/// hot-reload sockets come first: exactly `/ws` (webpack-dev-server 4+ and
/// 5) and `/sockjs-node/...` (Vue CLI 4's webpack-dev-server 3) go to the
/// dev server, while `/ws/...` stays the backend's (Django Channels). Vite's
/// `vite-hmr` socket on `/` needs nothing: `/` is the dev server already.
pub(super) fn routes(profile: Profile, dev_server: bool) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    if dev_server {
        let mut ws = route(
            RoutePrefix::parse("/ws").expect("literal prefix is valid"),
            RouteTarget::Spa,
            profile,
        );
        ws.exact = true;
        routes.push(ws);
        routes.push(route(
            RoutePrefix::parse("/sockjs-node").expect("literal prefix is valid"),
            RouteTarget::Spa,
            profile,
        ));
    }
    routes.extend(BACKEND_PREFIXES.iter().map(|p| {
        route(
            RoutePrefix::parse(p).expect("literal prefix is valid"),
            RouteTarget::Upstream("backend".into()),
            profile,
        )
    }));
    routes.push(route(
        RoutePrefix::parse("/").expect("literal prefix is valid"),
        RouteTarget::Spa,
        profile,
    ));
    routes
}

pub(super) fn route(prefix: RoutePrefix, target: RouteTarget, profile: Profile) -> Route {
    let body_limit = match target {
        RouteTarget::Upstream(_) => body_limit(profile),
        RouteTarget::Spa | RouteTarget::Static(_) => None,
    };
    Route {
        prefix,
        exact: false,
        target,
        host: HostMode::StripPort,
        strip_prefix: false,
        rewrite: None,
        body_limit,
        response_timeout: None,
        upgrades: vec![UPGRADE.into()],
        idle_timeout: None,
    }
}
