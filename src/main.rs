//! The `portero` command: parses flags, sets up logging, loads the config,
//! binds, runs the library until SIGINT/SIGTERM, and maps failures to exit
//! codes (0 ok, 1 runtime failure, 2 invalid config or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use portero::config::{Config, ConfigErrors, LoadError, Overrides, RuntimeMode, Source};

#[derive(Parser)]
#[command(
    name = "portero",
    version,
    about = "A tenant-aware reverse proxy and dev gateway: one front door for your SPA, \
             your Django/Channels backend and its WebSockets.",
    after_help = "With no config file and no flags, portero listens on 127.0.0.1:8080, proxies \
                  /api, /admin, /static, /media and /ws to http://127.0.0.1:8000 and serves ./dist."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and print every problem (exit 0 valid, 2 invalid).
    Check,
    /// Create a local development CA (once) and a certificate for localhost,
    /// *.localhost, 127.0.0.1, ::1 and the base domain, signed by it.
    Cert(CertArgs),
}

#[derive(Args)]
struct CertArgs {
    /// Folder for dev-ca.pem, dev-ca-key.pem, dev.pem and dev-key.pem.
    #[arg(long, value_name = "DIR", default_value = "certs")]
    dir: PathBuf,
    /// Also cover DOMAIN and *.DOMAIN [default: tenants.base_domain from the config].
    #[arg(long, value_name = "DOMAIN")]
    base_domain: Option<String>,
    /// Another name or IP address to cover, e.g. acme.localhost (repeatable).
    /// Tenants in [tenants.overrides] are added as <tenant>.localhost.
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Config file (default: ./portero.toml if present, else the embedded default).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Address to listen on for plain HTTP [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The backend's URL, the `backend` upstream [default: http://127.0.0.1:8000].
    #[arg(long, value_name = "URL")]
    backend: Option<String>,
    /// The SPA's built files [default: ./dist], or a dev server URL (http://127.0.0.1:5173).
    #[arg(long, value_name = "DIR|URL")]
    spa: Option<String>,
    /// Tenant base domain: <tenant>.DOMAIN and <tenant>.localhost reach tenant <tenant>.
    #[arg(long, value_name = "DOMAIN")]
    base_domain: Option<String>,
    /// Address for the TLS listener (needs --tls-cert and --tls-key).
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<String>,
    /// Certificate chain (PEM) for the TLS listener.
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for the TLS listener.
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace (RUST_LOG overrides it for fine control).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

impl RunArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            backend: self.backend.clone(),
            spa: self.spa.clone(),
            base_domain: self.base_domain.clone(),
            tls_listen: self.tls_listen.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(cli.run.config),
        Some(Command::Cert(args)) => match cert(&args, &cli.run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
        None => {
            init_logging(&cli.run.log_level);
            match load(&cli.run) {
                Ok(config) => match serve(config, cli.run.overrides()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        ExitCode::FAILURE
                    }
                },
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn check(path: Option<PathBuf>) -> ExitCode {
    match Config::discover(path.as_deref()) {
        Ok(c) => {
            // Certificates are files the config names: load them too, so a
            // config that passes check also starts.
            let mut problems: Vec<String> = Vec::new();
            if let Some(tls) = &c.tls {
                if let Err(e) = portero::server::tls::acceptor(tls) {
                    problems.push(format!("{}: tls: {e}", c.source));
                }
            }
            for up in c.upstreams.values().filter(|u| u.url.is_https()) {
                if let Err(e) = portero::upstream_tls::client_config(up) {
                    problems.push(format!("{}: upstreams.{}: {e}", c.source, up.name));
                }
            }
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{} problem(s) found", problems.len());
                return ExitCode::from(2);
            }
            println!(
                "{}: ok ({} route(s), {} upstream(s))",
                c.source,
                c.routes.len(),
                c.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(LoadError::Invalid(errs)) => {
            eprintln!("{errs}");
            eprintln!("{} problem(s) found", errs.errors.len());
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `portero cert`: the base domain comes from the flag, else the config;
/// tenants named in the config get explicit `<tenant>.localhost` names.
fn cert(args: &CertArgs, run: &RunArgs) -> anyhow::Result<()> {
    let config = Config::discover(run.config.as_deref()).context("cannot load the config")?;
    let base_domain = match args.base_domain.as_deref().or(run.base_domain.as_deref()) {
        Some(d) => Some(
            portero::routing::host::HostName::parse(d)
                .map_err(|m| anyhow::anyhow!("--base-domain {d:?}: {m}"))?,
        ),
        None => config.tenants.base_domain.clone(),
    };
    for n in &args.names {
        let valid = n.parse::<std::net::IpAddr>().is_ok()
            || portero::routing::host::HostName::parse(n.strip_prefix("*.").unwrap_or(n)).is_ok();
        if !valid {
            anyhow::bail!("--name {n:?} is not a host name or IP address");
        }
    }
    let req = portero::cert::Request {
        base_domain,
        tenants: config.tenants.overrides.keys().cloned().collect(),
        names: args.names.clone(),
    };
    let files = portero::cert::generate(&args.dir, &req)?;
    if files.ca_created {
        println!(
            "created the development CA: {} (key {})",
            files.ca_cert.display(),
            files.ca_key.display()
        );
    } else {
        println!("reusing the development CA: {}", files.ca_cert.display());
    }
    println!(
        "wrote {} and {} for: {}\n",
        files.cert.display(),
        files.key.display(),
        files.names.join(", ")
    );
    println!(
        "note: browsers and curl ignore the *.localhost wildcard; name each tenant you open \
         (--name acme.localhost, or list it in [tenants.overrides])\n"
    );
    print!("{}", portero::cert::instructions(&files));
    Ok(())
}

fn load(args: &RunArgs) -> Result<Config, String> {
    let mut config = match Config::discover(args.config.as_deref()) {
        Ok(c) => c,
        Err(LoadError::Invalid(errs)) => {
            return Err(format!(
                "{errs}\n{} problem(s) in the config; nothing started",
                errs.errors.len()
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    if let Err(errors) = args.overrides().apply(&mut config) {
        let errs = ConfigErrors {
            origin: Source::Embedded,
            text: String::new(),
            errors,
        };
        return Err(format!("{errs}"));
    }
    Ok(config)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn serve(config: Config, overrides: Overrides) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(cores);
    let reloader = match &config.source {
        portero::config::Source::File(path) => Some(portero::config::reload::Reloader {
            path: path.clone(),
            overrides: overrides.clone(),
        }),
        portero::config::Source::Embedded => None,
    };
    if workers > 1 && config.server.runtime == RuntimeMode::PerCore {
        // No runtime exists yet: the library builds one per worker.
        portero::server::run_per_core(config, reloader, workers, banner, shutdown_signal())?;
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
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listeners = portero::Listeners::bind(&config).await?;
        banner(&config, &listeners);
        portero::run_with_reload(listeners, config, reloader, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// The startup banner goes to stderr whatever the log level: it is how
/// users (and scripts waiting for readiness) learn the address.
fn banner(config: &Config, listeners: &portero::Listeners) {
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
        for (what, url) in portero::routing::tenant::urls(&config.tenants, scheme, a) {
            eprintln!("    {what:<16} {url}");
        }
    }
    if config.tenants.base_domain.is_none() && !config.tenants.overrides.is_empty() {
        tracing::warn!(
            "[tenants.overrides] has no effect without tenants.base_domain (or --base-domain)"
        );
    }
    for r in &config.routes {
        let target = match &r.target {
            portero::config::RouteTarget::Upstream(u) => match config.upstreams.get(u) {
                Some(up) => format!("{u} ({})", up.url),
                None => u.clone(),
            },
            portero::config::RouteTarget::Spa => match &config.spa.source {
                portero::config::SpaSource::Dir(d) if d.is_dir() => format!("spa {}", d.display()),
                portero::config::SpaSource::Dir(d) => {
                    format!("welcome page ({} does not exist)", d.display())
                }
                portero::config::SpaSource::DevServer(u) => match config.upstreams.get(u) {
                    Some(up) => format!("dev server {}", up.url),
                    None => u.clone(),
                },
            },
            portero::config::RouteTarget::Static(d) => format!("static {}", d.display()),
        };
        eprintln!("  route {:<10} -> {target}", r.label());
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
