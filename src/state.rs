//! The runtime snapshot every request reads, and the state shared across
//! connections. A config reload builds a whole new [`Runtime`] and swaps it
//! in one step; requests in flight keep the snapshot they started with.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, RouteTarget, SpaSource};
use crate::routing::table::RouteTable;
use crate::server::tls::CertStore;
use crate::services::livereload::LiveReload;
use crate::services::proxy::Proxy;
use crate::services::static_files::StaticDir;

/// Everything derived from one config.
pub struct Runtime {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    /// Per-tenant extra routes, consulted before `routes`.
    pub tenant_routes: HashMap<String, RouteTable>,
    pub proxy: Proxy,
    /// The SPA folder, when `[spa]` is a folder that exists.
    pub spa: Option<Arc<StaticDir>>,
    /// `static_dir` routes, by folder.
    pub static_dirs: HashMap<std::path::PathBuf, Arc<StaticDir>>,
}

impl Runtime {
    /// `livereload` is where the SPA folder's watcher reports changes; it
    /// outlives snapshots, so open pages stay connected across reloads.
    pub fn new(config: Arc<Config>, livereload: &LiveReload) -> Runtime {
        let routes = RouteTable::new(&config.routes);
        let tenant_routes = config
            .tenants
            .overrides
            .iter()
            .filter(|(_, o)| !o.routes.is_empty())
            .map(|(name, o)| (name.clone(), RouteTable::new(&o.routes)))
            .collect();
        let spa = match &config.spa.source {
            SpaSource::Dir(root) if root.is_dir() => Some(Arc::new(
                StaticDir::new(
                    root.clone(),
                    config.spa.history_fallback,
                    config.spa.live_reload,
                    config.spa.memory_cache,
                )
                .watched(config.spa.live_reload.then(|| livereload.clone())),
            )),
            _ => None,
        };
        let mut static_dirs = HashMap::new();
        let all_routes = config.routes.iter().chain(
            config
                .tenants
                .overrides
                .values()
                .flat_map(|o| o.routes.iter()),
        );
        for r in all_routes {
            if let RouteTarget::Static(dir) = &r.target {
                static_dirs
                    .entry(dir.clone())
                    .or_insert_with(|| Arc::new(StaticDir::new(dir.clone(), false, false, 0)));
            }
        }
        Runtime {
            proxy: Proxy::new(&config),
            config,
            routes,
            tenant_routes,
            spa,
            static_dirs,
        }
    }
}

/// State shared by every connection for the life of the server.
pub struct Shared {
    pub runtime: ArcSwap<Runtime>,
    /// Upgraded connections (WebSocket tunnels, live-reload sockets), so
    /// graceful shutdown can wait for them and then close them.
    pub tunnels: TaskTracker,
    /// Cancelled when the shutdown deadline passes: open tunnels close.
    pub close_tunnels: CancellationToken,
    /// Cancelled as soon as shutdown begins: connections that carry no work
    /// of the user's (live-reload sockets) close at once instead of holding
    /// the drain for the whole deadline.
    pub shutting_down: CancellationToken,
    pub livereload: LiveReload,
    /// The TLS listeners' certificates, once they are bound; a config
    /// reload reads the certificate files again into it.
    pub tls_certs: OnceLock<Arc<CertStore>>,
}

impl Shared {
    pub fn new(config: Config) -> Arc<Shared> {
        let config = Arc::new(config);
        let livereload = LiveReload::new();
        Arc::new(Shared {
            runtime: ArcSwap::from_pointee(Runtime::new(config, &livereload)),
            livereload,
            tunnels: TaskTracker::new(),
            close_tunnels: CancellationToken::new(),
            shutting_down: CancellationToken::new(),
            tls_certs: OnceLock::new(),
        })
    }

    pub fn open_tunnels(&self) -> usize {
        self.tunnels.len()
    }
}
