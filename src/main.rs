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
    /// Print the /etc/hosts lines for the configured tenant names (each
    /// local suffix but `localhost`, and <tenant>.<suffix> for each tenant in
    /// [tenants.overrides] or --tenant), or keep them in a marked block of
    /// /etc/hosts with --write. Needed only where *.localhost does not
    /// resolve by itself (Safari and curl on macOS). Tenants portero has
    /// merely seen are not remembered: name them with --tenant.
    Hosts(HostsArgs),
    /// Check the setup and say how to fix what is wrong: the config, each
    /// upstream (and which server answers), every tenant through portero's
    /// routing, *.localhost, TLS and trust; then print the Django settings
    /// it needs (exit 0 all well, 1 something to fix).
    Doctor(DoctorArgs),
}

#[derive(Args)]
struct HostsArgs {
    /// Tenant base domain [default: tenants.base_domain from the config].
    #[arg(long, value_name = "DOMAIN")]
    base_domain: Option<String>,
    /// A tenant to add as <tenant>.<suffix> for each local suffix (repeatable).
    #[arg(long = "tenant", value_name = "TENANT")]
    tenants: Vec<String>,
    /// A further host name, as given (repeatable).
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Write the lines into the "# BEGIN portero" … "# END portero" block of
    /// the hosts file (replacing the block, keeping every other line), after
    /// copying the file to <file>.portero.bak. /etc/hosts needs root:
    /// run it with sudo yourself.
    #[arg(long)]
    write: bool,
    /// The hosts file to write.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/hosts",
        requires = "write"
    )]
    file: PathBuf,
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
    /// Then trust the CA: the system store (Debian/Ubuntu, Fedora, macOS)
    /// and the NSS databases of Chromium and Firefox (with certutil). Each
    /// step is printed first; a step that needs root is printed as a sudo
    /// command instead of run.
    #[arg(long, conflicts_with = "uninstall")]
    install: bool,
    /// Remove the CA from everywhere --install puts it (creates nothing).
    #[arg(long)]
    uninstall: bool,
    /// Prefix for every path --install and --uninstall touch (tests, packaging).
    #[arg(long, hide = true, env = "PORTERO_INSTALL_ROOT", value_name = "DIR")]
    install_root: Option<PathBuf>,
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
    /// Log format: text (human-readable; coloured on a terminal) or json
    /// (one object per line), for portero's log and its access log.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Where access lines go: - (stderr), a file (appended to), or off.
    #[arg(long, value_name = "FILE|off", default_value = "-")]
    access_log: String,
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
    /// HTTP/1 path: fast (portero's own for proxied requests of the common
    /// shape, hyper for the rest) or hyper (hyper for everything) [default: fast].
    #[arg(long, value_name = "fast|hyper")]
    http1: Option<String>,
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
            http1: self.http1.clone(),
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
            http1: self.http1.clone().or_else(|| other.http1.clone()),
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
            Ok(code) => code,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Hosts(args)) => match hosts(&args, &cli.run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
        None => {
            let json = cli.run.log_format == "json";
            init_logging(&cli.run.log_level, json);
            // Kept until main returns: dropping it flushes the access lines
            // still buffered (nothing is lost on a graceful stop).
            let _flush = match access_log(&cli.run.access_log, json) {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("--access-log {}: {e:#}", cli.run.access_log);
                    return ExitCode::from(2);
                }
            };
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
fn cert(args: &CertArgs, run: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.uninstall {
        let ca = args.dir.join(portero::cert::CA_CERT);
        let ca = std::path::absolute(&ca).unwrap_or(ca);
        return trust(&portero::trust::uninstall, args, &ca);
    }
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
    if args.install {
        let ca = std::path::absolute(&files.ca_cert).unwrap_or(files.ca_cert.clone());
        return trust(&portero::trust::install, args, &ca);
    }
    print!("{}", portero::cert::instructions(&files));
    Ok(ExitCode::SUCCESS)
}

/// `--install` / `--uninstall`: prints and runs the plan; exit 1 when a
/// step failed (steps left for sudo or missing tools are not failures).
fn trust(
    plan: &dyn Fn(&portero::trust::Env, &std::path::Path) -> portero::trust::Plan,
    args: &CertArgs,
    ca: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let env = portero::trust::Env::current(args.install_root.clone());
    let plan = plan(&env, ca);
    let outcome = portero::trust::execute(&env, &plan, &mut std::io::stdout())?;
    if outcome.needs_root > 0 {
        println!(
            "\n{} step(s) need root: run the sudo commands above (portero never runs sudo itself)",
            outcome.needs_root
        );
    }
    if args.install && outcome.done > 0 {
        println!("restart the browser to pick up the CA");
    }
    Ok(if outcome.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `portero hosts [--write [--file PATH]]`.
fn hosts(args: &HostsArgs, run: &RunArgs) -> anyhow::Result<()> {
    let mut config = Config::discover(run.config.as_deref()).context("cannot load the config")?;
    if let Some(d) = args.base_domain.as_ref().or(run.flags.base_domain.as_ref()) {
        config.tenants.base_domain = Some(
            portero::host::HostName::parse(d)
                .map_err(|m| anyhow::anyhow!("--base-domain {d:?}: {m}"))?,
        );
    }
    for n in args.names.iter().chain(&args.tenants) {
        portero::host::HostName::parse(n)
            .map_err(|m| anyhow::anyhow!("{n:?} is not a host name: {m}"))?;
    }
    let names = portero::hosts::names(&config.tenants, &args.tenants, &args.names);
    let lines = portero::hosts::lines(&names);
    if !args.write {
        if lines.is_empty() {
            eprintln!(
                "no names: name tenants with --tenant (or [tenants.overrides]), or a \
                 local suffix other than localhost"
            );
        }
        for l in &lines {
            println!("{l}");
        }
        eprintln!("(portero hosts --write keeps these in /etc/hosts; it needs root)");
        return Ok(());
    }
    let path = &args.file;
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let new = portero::hosts::merge(&existing, &portero::hosts::block(&lines))
        .map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    if new == existing {
        println!("{} is up to date ({} name(s))", path.display(), names.len());
        return Ok(());
    }
    let mut backup = path.clone().into_os_string();
    backup.push(".portero.bak");
    let backup = PathBuf::from(backup);
    let written = std::fs::write(&backup, &existing).and_then(|()| std::fs::write(path, &new));
    match written {
        Ok(()) => {
            println!(
                "wrote {} name(s) to {} (previous file: {})",
                names.len(),
                path.display(),
                backup.display()
            );
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "portero".into());
            let rest: Vec<String> = std::env::args().skip(1).collect();
            anyhow::bail!(
                "cannot write {}: permission denied. Editing it needs root; run:\n  sudo {exe} {}\n\
                 (portero never runs sudo itself)",
                path.display(),
                rest.join(" ")
            )
        }
        Err(e) => anyhow::bail!("cannot write {}: {e}", path.display()),
    }
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

fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        fmt.json().init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Sets up the access log: a buffer written out in batches by a thread of
/// its own, so a slow terminal or disk never holds a request. The guard
/// writes what is still buffered when dropped.
fn access_log(target: &str, json: bool) -> anyhow::Result<Option<portero::access::Flush>> {
    use portero::access::Format;
    let (out, colour): (Box<dyn std::io::Write + Send>, bool) = match target {
        "off" => return Ok(portero::access::init(None, Format::Json)?),
        "-" => (
            Box::new(std::io::stderr()),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {path}"))?;
            (Box::new(file), false)
        }
    };
    let format = if json {
        Format::Json
    } else {
        Format::Text { colour }
    };
    Ok(portero::access::init(Some(out), format)?)
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
