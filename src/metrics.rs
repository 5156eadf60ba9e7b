//! Prometheus metrics (`/__portero/metrics`), kept with prometheus-client:
//! requests by route, status class and tenant, latency, upstream errors,
//! held requests, open connections and tunnels, bytes, reloads, and the
//! seconds left on each certificate.
//!
//! Per-route handles are made when a snapshot is built ([`RouteStats`]), so
//! a request only increments counters it already holds; the tenant label is
//! bounded ([`MAX_TENANTS`] names, the rest counted as `other`).

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::Error;
use crate::inspector::Inspector;

/// Tenants named in labels, at most; the others are `other`.
pub(crate) const MAX_TENANTS: usize = 50;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: StatusClass,
}

/// `1xx` to `5xx`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct StatusClass(u8);

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        write!(encoder, "{}xx", self.0)
    }
}

const CLASSES: [StatusClass; 5] = [
    StatusClass(1),
    StatusClass(2),
    StatusClass(3),
    StatusClass(4),
    StatusClass(5),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
    status: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabel {
    name: String,
}

/// Every metric of one server.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabel, Histogram>,
    tenant_requests: Family<TenantLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    reloads: Family<ResultLabel, Counter>,
    cert_expiry: Family<CertLabel, Gauge>,
    /// Requests held right now while their upstream refuses connections.
    pub(crate) held: Gauge,
    open_connections: Gauge,
    open_tunnels: Gauge,
    response_bytes: Counter,
    /// Request body bytes received (and sent on to an upstream).
    pub(crate) request_bytes: Counter,
    /// Bytes through WebSocket tunnels: client to upstream, and back.
    pub(crate) tunnel_bytes: [Counter; 2],
    /// HTTP/1 connections the fast path handed to hyper.
    pub(crate) http1_handoffs: Counter,
    /// The tenants that have their own label.
    named_tenants: Mutex<HashSet<String>>,
    /// This instance's number (from `NEXT_ID`).
    id: u64,
    /// What `/__portero/` shows of recent traffic, kept beside the
    /// counters so a request carries one handle for both.
    pub(crate) inspector: Inspector,
}

/// Tells apart the `Metrics` of one process (tests run several servers).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A thread's last tenant counter (see [`Metrics::count_tenant`]).
struct LastTenant {
    metrics: u64,
    tenant: Box<str>,
    status: StatusClass,
    counter: Counter,
}

thread_local! {
    static LAST_TENANT: RefCell<Option<LastTenant>> = const { RefCell::new(None) };
}

/// An open client connection, counted until dropped.
pub(crate) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One route's counters, held by the snapshot's route table.
#[derive(Debug)]
pub(crate) struct RouteStats {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portero");
        let requests = Family::<RequestLabels, Counter>::default();
        // 0.5 ms to ~16 s.
        let duration = Family::<RouteLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        let tenant_requests = Family::<TenantLabels, Counter>::default();
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        let reloads = Family::<ResultLabel, Counter>::default();
        let cert_expiry = Family::<CertLabel, Gauge>::default();
        let held = Gauge::default();
        let open_connections = Gauge::default();
        let open_tunnels = Gauge::default();
        let response_bytes = Counter::default();
        let request_bytes = Counter::default();
        let http1_handoffs = Counter::default();
        let tunnel_family = Family::<DirectionLabel, Counter>::default();
        let tunnel_bytes = ["up", "down"].map(|direction| {
            tunnel_family
                .get_or_create(&DirectionLabel { direction })
                .clone()
        });
        registry.register(
            "requests",
            "Requests answered, by route and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from the request to the end of its response body, by route",
            duration.clone(),
        );
        registry.register(
            "tenant_requests",
            "Requests answered, by tenant (the first 50 seen by name, the rest as other) and status class",
            tenant_requests.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failed exchanges with an upstream, by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads, by result",
            reloads.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until each configured certificate expires",
            cert_expiry.clone(),
        );
        registry.register(
            "held_requests",
            "Requests waiting for a restarting upstream",
            held.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open",
            open_connections.clone(),
        );
        registry.register(
            "open_tunnels",
            "WebSocket tunnels and live-reload sockets open",
            open_tunnels.clone(),
        );
        registry.register(
            "response_bytes",
            "Response body bytes sent to clients",
            response_bytes.clone(),
        );
        registry.register(
            "request_bytes",
            "Request body bytes received from clients and sent to upstreams",
            request_bytes.clone(),
        );
        registry.register(
            "tunnel_bytes",
            "Bytes through WebSocket tunnels, client to upstream (up) and back (down)",
            tunnel_family,
        );
        registry.register(
            "http1_handoffs",
            "HTTP/1 connections handed from the fast path to hyper's, at the first request \
             that is not a proxied request of the common shape with its body whole",
            http1_handoffs.clone(),
        );
        Metrics {
            registry,
            requests,
            duration,
            tenant_requests,
            upstream_errors,
            reloads,
            cert_expiry,
            held,
            open_connections,
            open_tunnels,
            response_bytes,
            request_bytes,
            tunnel_bytes,
            http1_handoffs,
            named_tenants: Mutex::new(HashSet::new()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            inspector: Inspector::new(),
        }
    }

    /// The counters of the route labelled `route`.
    pub(crate) fn route(&self, route: &str) -> Arc<RouteStats> {
        let by_class = CLASSES.map(|status| {
            self.requests
                .get_or_create(&RequestLabels {
                    route: route.to_string(),
                    status,
                })
                .clone()
        });
        let duration = self
            .duration
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .clone();
        Arc::new(RouteStats { by_class, duration })
    }

    /// Counts one answered request.
    /// `route` is the matched route's counters; without one, the request is
    /// counted under `unrouted` (a fixed label: `-`, `/__portero`, ...).
    pub(crate) fn observe(
        &self,
        route: Result<&RouteStats, &'static str>,
        tenant: Option<&str>,
        status: StatusCode,
        took: Duration,
        bytes: u64,
    ) {
        let class = class(status);
        match route {
            Ok(r) => {
                r.by_class[usize::from(class.0 - 1)].inc();
                r.duration.observe(took.as_secs_f64());
            }
            Err(label) => {
                self.requests
                    .get_or_create(&RequestLabels {
                        route: label.into(),
                        status: class,
                    })
                    .inc();
            }
        }
        if let Some(t) = tenant {
            self.count_tenant(t, class);
        }
        self.response_bytes.inc_by(bytes);
    }

    /// Counts a request of `tenant`. The counter last used on this thread
    /// is kept: consecutive requests mostly come from one tenant with one
    /// status class, and for them this skips a lock, two hash lookups and
    /// an allocation.
    fn count_tenant(&self, tenant: &str, status: StatusClass) {
        LAST_TENANT.with_borrow_mut(|last| {
            if let Some(c) = last
                .as_ref()
                .filter(|c| c.metrics == self.id && c.status == status && *c.tenant == *tenant)
            {
                c.counter.inc();
                return;
            }
            let counter = self
                .tenant_requests
                .get_or_create(&TenantLabels {
                    tenant: self.tenant_label(tenant),
                    status,
                })
                .clone();
            counter.inc();
            *last = Some(LastTenant {
                metrics: self.id,
                tenant: tenant.into(),
                status,
                counter,
            });
        });
    }

    /// Counts a failure that is an upstream's.
    pub(crate) fn upstream_error(&self, err: &Error) {
        let (upstream, kind) = match err {
            Error::UpstreamUnavailable { upstream, .. } => (upstream, "unavailable"),
            Error::UpstreamTimeout { upstream, .. } => (upstream, "timeout"),
            Error::UpstreamProtocol { upstream, .. } => (upstream, "protocol"),
            Error::UpstreamBusy { upstream, .. } => (upstream, "busy"),
            _ => return,
        };
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                upstream: upstream.name.clone(),
                kind,
            })
            .inc();
    }

    /// Counts a client connection as open until the guard is dropped.
    /// Client connections open now.
    pub(crate) fn connections(&self) -> i64 {
        self.open_connections.get()
    }

    pub(crate) fn connection(&self) -> OpenConnection {
        self.open_connections.inc();
        OpenConnection(self.open_connections.clone())
    }

    pub(crate) fn reloaded(&self, applied: bool) {
        let result = if applied { "applied" } else { "kept" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }

    /// The text exposition, with the gauges read at scrape time set first.
    pub(crate) fn encode(&self, open_tunnels: usize, certs: &[(String, i64)]) -> String {
        self.open_tunnels.set(open_tunnels as i64);
        self.cert_expiry.clear();
        for (name, seconds) in certs {
            self.cert_expiry
                .get_or_create(&CertLabel { name: name.clone() })
                .set(*seconds);
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn tenant_label(&self, tenant: &str) -> String {
        let mut named = self.named_tenants.lock().expect("never poisoned");
        if named.contains(tenant) {
            return tenant.to_string();
        }
        if named.len() < MAX_TENANTS {
            named.insert(tenant.to_string());
            return tenant.to_string();
        }
        "other".into()
    }
}

fn class(status: StatusCode) -> StatusClass {
    // StatusCode is 100..=999; anything above 5xx counts as 5xx.
    StatusClass((status.as_u16() / 100).clamp(1, 5) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant_count(m: &Metrics, tenant: &str, class: &str) -> String {
        let text = m.encode(0, &[]);
        let key =
            format!("portero_tenant_requests_total{{tenant=\"{tenant}\",status=\"{class}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .unwrap_or("none")
            .to_string()
    }

    #[test]
    fn tenant_counts_stay_apart_by_tenant_class_and_server() {
        // Two servers on one thread share the thread's last-tenant cache.
        let (a, b) = (Metrics::new(), Metrics::new());
        let ok = StatusCode::OK;
        let took = Duration::from_millis(1);
        for _ in 0..3 {
            a.observe(Err("-"), Some("acme"), ok, took, 0);
        }
        b.observe(Err("-"), Some("acme"), ok, took, 0);
        a.observe(Err("-"), Some("globex"), ok, took, 0);
        a.observe(Err("-"), Some("acme"), StatusCode::NOT_FOUND, took, 0);
        a.observe(Err("-"), Some("acme"), ok, took, 0);
        assert_eq!(tenant_count(&a, "acme", "2xx"), "4");
        assert_eq!(tenant_count(&a, "acme", "4xx"), "1");
        assert_eq!(tenant_count(&a, "globex", "2xx"), "1");
        assert_eq!(tenant_count(&b, "acme", "2xx"), "1");
        assert_eq!(tenant_count(&b, "globex", "2xx"), "none");
    }
}
