//! The running snapshot every request reads, and the state shared across
//! connections. A config reload builds a whole new [`Snapshot`] and swaps it
//! in one step; requests in flight keep the snapshot they started with.
//!
//! A snapshot is resolved when it is built: each route holds what it leads
//! to (an upstream's pool, a static folder, the SPA's slot), and tenant
//! overrides are tables of their own, so a request looks nothing up by name.

mod spa;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

pub(crate) use self::spa::SpaSlot;
use crate::config::{Config, Route, RouteTarget, SpaSource};
use crate::metrics::{Metrics, RouteStats};
use crate::routing::table::RouteTable;
use crate::services::livereload::LiveReload;
use crate::services::static_files::{Options, StaticDir};
use crate::services::tunnel::Tunnels;
use crate::services::upstream::{self, Pool};
use crate::services::{admin, proxy};
use crate::tls::CertStore;

/// A route's target and its counters.
#[derive(Clone)]
pub struct Routed {
    pub(crate) target: Target,
    pub(crate) stats: Arc<RouteStats>,
}

/// What a route leads to, resolved.
#[derive(Clone)]
pub(crate) enum Target {
    /// Proxy to this upstream (an `upstream` route, or the SPA's dev server).
    Proxy(Arc<Pool>),
    /// The SPA's folder: served once it exists, a welcome page until then.
    Spa(Arc<SpaSlot>),
    /// A `static_dir` route's folder.
    Static(Arc<StaticDir>),
}

/// Everything derived from one config.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub rules: proxy::Rules,
    routes: RouteTable<Routed>,
    /// Tenants with overrides: their own routes, consulted first, then the
    /// shared routes with the tenant's upstream in place of the shared one.
    tenants: HashMap<String, TenantRoutes>,
}

struct TenantRoutes {
    own: RouteTable<Routed>,
    shared: RouteTable<Routed>,
}

impl Snapshot {
    /// Builds the snapshot for `config`: one pool per upstream (with an idle
    /// list per worker), one watched folder per static folder, the SPA's
    /// slot. `livereload` is where the SPA folder's watcher reports changes;
    /// it outlives snapshots, so open pages stay connected across reloads.
    pub(crate) fn build(
        config: Arc<Config>,
        workers: usize,
        livereload: &LiveReload,
        metrics: &Metrics,
    ) -> Snapshot {
        metrics
            .inspector
            .configure(&config.admin, config.upstreams.keys().map(String::as_str));
        let pools: HashMap<&str, Arc<Pool>> = config
            .upstreams
            .iter()
            .map(|(name, up)| (name.as_str(), upstream::pool(up, workers, &metrics.held)))
            .collect();
        let pool = |name: &str| {
            pools
                .get(name)
                .cloned()
                .expect("validation checks that every upstream a route names exists")
        };
        let spa = match &config.spa.source {
            SpaSource::Dir(root) => {
                let options = Options {
                    history_fallback: config.spa.history_fallback,
                    live_reload: config.spa.live_reload,
                    memory_cache: config.spa.memory_cache,
                };
                let livereload = config.spa.live_reload.then(|| livereload.clone());
                Target::Spa(SpaSlot::new(root.clone(), options, livereload))
            }
            SpaSource::DevServer(name) => Target::Proxy(pool(name)),
        };
        let mut static_dirs: HashMap<PathBuf, Arc<StaticDir>> = HashMap::new();
        let mut resolve = |route: &Route| match &route.target {
            RouteTarget::Upstream(name) => Target::Proxy(pool(name)),
            RouteTarget::Spa => spa.clone(),
            RouteTarget::Static(dir) => Target::Static(
                static_dirs
                    .entry(dir.clone())
                    .or_insert_with(|| Arc::new(StaticDir::new(dir.clone(), Options::default())))
                    .clone(),
            ),
        };
        let table = |routes: &[Route], resolve: &mut dyn FnMut(&Route) -> Target| {
            RouteTable::new(routes.iter().map(|r| {
                let routed = Routed {
                    target: resolve(r),
                    stats: metrics.route(&r.label()),
                };
                (Arc::new(r.clone()), routed)
            }))
        };
        let routes = table(&config.routes, &mut resolve);
        let mut tenants = HashMap::new();
        for (name, o) in &config.tenants.overrides {
            if o.routes.is_empty() && o.upstream.is_none() {
                continue;
            }
            // A tenant's `upstream` takes over the shared routes' proxied
            // traffic (not the SPA's dev server); the tenant's own routes
            // name their upstream explicitly and keep it.
            let shared = match o.upstream.as_deref() {
                Some(up) => RouteTable::new(routes.iter().map(|(r, routed)| {
                    let target = match (&r.target, &routed.target) {
                        (RouteTarget::Upstream(_), Target::Proxy(_)) => Target::Proxy(pool(up)),
                        (_, t) => t.clone(),
                    };
                    let stats = routed.stats.clone();
                    (r.clone(), Routed { target, stats })
                })),
                None => routes.clone(),
            };
            let own = table(&o.routes, &mut resolve);
            tenants.insert(name.clone(), TenantRoutes { own, shared });
        }
        Snapshot {
            rules: proxy::Rules::new(&config),
            config,
            routes,
            tenants,
        }
    }

    /// The route for a normalised path, for `tenant` when there is one.
    pub fn route(&self, tenant: Option<&str>, path: &str) -> Option<&(Arc<Route>, Routed)> {
        match tenant.and_then(|t| self.tenants.get(t)) {
            Some(t) => t.own.find(path).or_else(|| t.shared.find(path)),
            None => self.routes.find(path),
        }
    }

    /// What `/__portero/status` shows.
    pub fn status(&self, open_tunnels: usize) -> admin::Status {
        admin::Status {
            version: env!("CARGO_PKG_VERSION"),
            open_tunnels,
            routes: self.routes.iter().map(|(r, _)| r.label()).collect(),
            upstreams: self
                .config
                .upstreams
                .values()
                .map(|u| admin::UpstreamStatus {
                    name: u.name.clone(),
                    url: u.url.to_string(),
                })
                .collect(),
        }
    }
}

impl Snapshot {
    /// The panels of `/__portero/`: this snapshot's config, what the
    /// inspector saw.
    pub(crate) fn summary(&self, metrics: &Metrics, tunnels: &Tunnels) -> admin::Summary {
        let insp = &metrics.inspector;
        let c = &self.config;
        // Each upstream's pool, wherever a route leads to it.
        let mut pools: HashMap<&str, &Pool> = HashMap::new();
        let tables = std::iter::once(&self.routes)
            .chain(self.tenants.values().flat_map(|t| [&t.own, &t.shared]));
        for table in tables {
            for (_, routed) in table.iter() {
                if let Target::Proxy(pool) = &routed.target {
                    pools.insert(pool.upstream.name.as_str(), pool);
                }
            }
        }
        let mut listeners: Vec<String> = c
            .server
            .listen
            .iter()
            .map(|a| format!("http://{a}"))
            .collect();
        if let Some(tls) = &c.tls {
            listeners.extend(tls.listen.iter().map(|a| format!("https://{a}")));
        }
        let (tenants, other_tenants) = insp.tenants();
        admin::Summary {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: insp.uptime().as_secs(),
            started: humantime::format_rfc3339_seconds(insp.started).to_string(),
            profile: match c.profile {
                crate::config::Profile::Dev => "dev",
                crate::config::Profile::Staging => "staging",
            },
            listeners,
            config: c.source.to_string(),
            last_reload: insp.last_reload(),
            held: metrics.held.get(),
            connections: metrics.connections(),
            open_tunnels: tunnels.open(),
            inspector_size: insp.size(),
            inspector_unmask: insp.unmasked(),
            inspector_bodies: insp.bodies(),
            upstreams: c
                .upstreams
                .values()
                .map(|u| {
                    let pool = pools.get(u.name.as_str());
                    let (open, idle) = pool.map_or((0, 0), |p| p.connections());
                    admin::UpstreamRow {
                        name: u.name.clone(),
                        url: u.url.to_string(),
                        held: pool.map_or(0, |p| p.held_here.get()),
                        open,
                        idle,
                        traffic: insp.upstream(&u.name),
                    }
                })
                .collect(),
            tunnels: tunnels
                .list()
                .iter()
                .map(|t| {
                    let (up, down) = t.bytes();
                    admin::TunnelRow {
                        tenant: t.tenant.clone(),
                        host: t.host.clone(),
                        path: t.path.clone(),
                        opened: humantime::format_rfc3339_seconds(t.opened).to_string(),
                        age_s: t.opened.elapsed().map_or(0, |d| d.as_secs()),
                        up,
                        down,
                    }
                })
                .collect(),
            refused: insp.refusals(),
            tenants: tenants
                .into_iter()
                .map(|(name, seen)| admin::TenantRow { name, seen })
                .collect(),
            other_tenants,
        }
    }
}

/// State shared by every connection for the life of the server.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub tunnels: Tunnels,
    pub livereload: LiveReload,
    /// The TLS listeners' certificates, once they are bound; a config
    /// reload reads the certificate files again into it.
    pub tls_certs: OnceLock<Arc<CertStore>>,
    /// Cancelled on SIGTERM, before the drain: readiness says 503 while
    /// portero keeps serving for `server.shutdown_delay`.
    pub(crate) draining: tokio_util::sync::CancellationToken,
    pub(crate) metrics: Arc<Metrics>,
    /// Workers serving with a runtime each (1 with a shared runtime): each
    /// snapshot's pools have an idle list per worker.
    pub workers: usize,
}

impl Shared {
    pub fn new(config: Config, workers: usize) -> Arc<Shared> {
        let livereload = LiveReload::new();
        let metrics = Arc::new(Metrics::new());
        let snapshot = Snapshot::build(Arc::new(config), workers, &livereload, &metrics);
        Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            livereload,
            tunnels: Tunnels::counting(metrics.tunnel_bytes.clone()),
            tls_certs: OnceLock::new(),
            draining: Default::default(),
            metrics,
            workers,
        })
    }

    /// Builds a snapshot for `config` and makes it the running one.
    pub fn install(&self, config: Config) {
        let snapshot = Snapshot::build(
            Arc::new(config),
            self.workers,
            &self.livereload,
            &self.metrics,
        );
        self.snapshot.store(Arc::new(snapshot));
    }
}
