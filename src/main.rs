//! The `portero` command: parses flags, sets up logging, loads the config,
//! binds, runs the library until SIGINT/SIGTERM, and maps failures to exit
//! codes (0 ok, 1 runtime failure, 2 invalid config or usage).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use portero::config::{Config, ConfigErrors, LoadError, Overrides, Source};

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
    /// 127.0.0.1, ::1, the base domain and the configured tenants, signed by
    /// it. With the CA, `--tls-listen` alone serves HTTPS for every tenant.
    Cert(CertArgs),
    /// Check the setup and say how to fix what is wrong: the config, each
    /// upstream (and which server answers), every tenant through portero's
    /// routing, *.localhost, TLS and trust; then print the Django settings
    /// it needs (exit 0 all well, 1 something to fix).
    Doctor(DoctorArgs),
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
    #[command(flatten)]
    flags: ConfigFlags,
    /// Log level: error, warn, info, debug, trace (RUST_LOG overrides it for fine control).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
}

/// The flags that change the config, taken by `portero` and `portero doctor`.
#[derive(Args, Clone, Default)]
struct ConfigFlags {
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
    /// Address for the TLS listener. Without --tls-cert/--tls-key (and no
    /// [tls] in the config), every allowed host gets a certificate minted by
    /// the development CA in ./certs (run `portero cert` first).
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<String>,
    /// Certificate chain (PEM) for the TLS listener.
    #[arg(long, value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for the TLS listener.
    #[arg(long, value_name = "PEM")]
    tls_key: Option<PathBuf>,
}

#[derive(Args)]
struct DoctorArgs {
    #[command(flatten)]
    flags: ConfigFlags,
    /// Also check this tenant through portero (repeatable); tenants in
    /// [tenants.overrides] are always checked.
    #[arg(long = "tenant", value_name = "NAME")]
    tenants: Vec<String>,
    /// The path requested through portero for each tenant [default:
    /// /admin/ if routed to an upstream, else the first upstream route].
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
}

impl ConfigFlags {
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

    /// `self`'s flags, else `other`'s (`portero --backend X doctor`).
    fn or(&self, other: &ConfigFlags) -> ConfigFlags {
        ConfigFlags {
            listen: self.listen.clone().or_else(|| other.listen.clone()),
            backend: self.backend.clone().or_else(|| other.backend.clone()),
            spa: self.spa.clone().or_else(|| other.spa.clone()),
            base_domain: self
                .base_domain
                .clone()
                .or_else(|| other.base_domain.clone()),
            tls_listen: self.tls_listen.clone().or_else(|| other.tls_listen.clone()),
            tls_cert: self.tls_cert.clone().or_else(|| other.tls_cert.clone()),
            tls_key: self.tls_key.clone().or_else(|| other.tls_key.clone()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(cli.run.config),
        Some(Command::Doctor(args)) => {
            let opts = portero::doctor::Options {
                config: cli.run.config.clone(),
                overrides: args.flags.or(&cli.run.flags).overrides(),
                tenants: args.tenants,
                path: args.path,
            };
            if portero::doctor::run(&opts, &mut std::io::stdout().lock()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
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
                Ok(config) => match serve(config, cli.run.flags.overrides()) {
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
            let problems = portero::check_files(&c);
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
    let base_domain = match args
        .base_domain
        .as_deref()
        .or(run.flags.base_domain.as_deref())
    {
        Some(d) => Some(
            portero::host::HostName::parse(d)
                .map_err(|m| anyhow::anyhow!("--base-domain {d:?}: {m}"))?,
        ),
        None => config.tenants.base_domain.clone(),
    };
    for n in &args.names {
        let valid = n.parse::<std::net::IpAddr>().is_ok()
            || portero::host::HostName::parse(n.strip_prefix("*.").unwrap_or(n)).is_ok();
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
        "note: {} names no *.localhost wildcard (browsers reject it); portero --tls-listen \
         without --tls-cert needs no names: it makes a certificate for each tenant it serves\n",
        files.cert.display()
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
    if let Err(errors) = args.flags.overrides().apply(&mut config) {
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
    let reloader = match &config.source {
        Source::File(path) => Some(portero::Reloader {
            path: path.clone(),
            overrides,
        }),
        Source::Embedded => None,
    };
    portero::launch(config, reloader)?;
    Ok(())
}
