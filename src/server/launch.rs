//! Start-up as the `portero` command does it: pick the runtime (one per
//! core, one shared, or one thread), bind, print the banner, serve until
//! SIGINT or SIGTERM.

use crate::config::{Config, RouteTarget, RuntimeMode, SpaSource};
use crate::error::StartupError;
use crate::routing::table::RouteTable;
use crate::routing::tenant;

use super::{Listeners, Reloader, run_per_core, run_with_reload};

/// Serves `config` until SIGINT or SIGTERM, reloading from `reloader`'s
/// file when given. `TOKIO_WORKER_THREADS` overrides the number of cores.
pub fn launch(config: Config, reloader: Option<Reloader>) -> Result<(), StartupError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(cores);
    if workers > 1 && config.server.runtime == RuntimeMode::PerCore {
        // No runtime exists yet: the library builds one per worker.
        run_per_core(config, reloader, workers, banner, shutdown_signal())?;
        tracing::info!("stopped");
        return Ok(());
    }
    // On one core (a container limit, or `taskset`), a single-threaded
    // runtime does the same work without cross-thread wake-ups.
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|cause| StartupError::Runtime(cause.to_string()))?;
    runtime.block_on(async move {
        let listeners = Listeners::bind(&config).await?;
        banner(&config, &listeners);
        run_with_reload(listeners, config, reloader, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The startup banner goes to stderr whatever the log level: it is how
/// users (and scripts waiting for readiness) learn the address.
fn banner(config: &Config, listeners: &Listeners) {
    eprintln!(
        "portero {} (config: {})",
        env!("CARGO_PKG_VERSION"),
        config.source
    );
    let plain = listeners.plain.iter().map(|l| ("http", l));
    let tls = listeners.tls.iter().map(|l| ("https", l));
    for (scheme, l) in plain.chain(tls) {
        let Ok(a) = l.local_addr() else { continue };
        eprintln!("  listening on {scheme}://{a}");
        for (what, url) in tenant::urls(&config.tenants, scheme, a) {
            eprintln!("    {what:<16} {url}");
        }
    }
    if let Some(tls) = config.tls.as_ref().filter(|t| t.certs.is_empty()) {
        let ca = tls.ca_dir.join(crate::cert::CA_CERT);
        eprintln!(
            "  https certificates are minted per host by the development CA {} (trust it once)",
            ca.display()
        );
    }
    if config.tenants.base_domain.is_none() && !config.tenants.overrides.is_empty() {
        tracing::warn!(
            "[tenants.overrides] has no effect without tenants.base_domain (or --base-domain)"
        );
    }
    let describe = |r: &crate::config::Route| match &r.target {
        RouteTarget::Upstream(u) => match config.upstreams.get(u) {
            Some(up) => format!("{u} ({})", up.url),
            None => u.clone(),
        },
        RouteTarget::Spa => match &config.spa.source {
            SpaSource::Dir(d) if d.is_dir() => format!("spa {}", d.display()),
            SpaSource::Dir(d) => {
                format!("welcome page ({} does not exist)", d.display())
            }
            SpaSource::DevServer(u) => match config.upstreams.get(u) {
                Some(up) => format!("dev server {}", up.url),
                None => u.clone(),
            },
        },
        RouteTarget::Static(d) => format!("static {}", d.display()),
    };
    for r in &config.routes {
        eprintln!("  route {:<12} -> {}", r.label(), describe(r));
    }
    if let SpaSource::DevServer(_) = config.spa.source {
        // Where each dev server's hot-reload socket ends up, by the routes
        // actually configured.
        let table = RouteTable::of(&config.routes);
        eprintln!("  hot reload sockets:");
        for (path, shown, who) in [
            ("/ws", "/ws", "webpack-dev-server 4+"),
            ("/sockjs-node/info", "/sockjs-node/…", "Vue CLI 4"),
            ("/", "/ (vite-hmr)", "Vite"),
            ("/ws/x/", "/ws/…", "Django Channels"),
        ] {
            let to = table
                .find(path)
                .map_or_else(|| "no route (404)".to_string(), |(r, _)| describe(r));
            eprintln!("    {shown:<16} {who:<22} -> {to}");
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
