//! `portero doctor`: checks a setup the way a developer would by hand, and
//! says what to do about each problem, one line per check (`✓` or `✗`):
//!
//! 1. the config is valid (the messages of `portero check`, certificate
//!    files included);
//! 2. each upstream answers (TCP connect, then `GET /`, 3 s), and which
//!    server it is (Daphne, gunicorn, uvicorn, Django's runserver, nginx, a
//!    webpack or Vite dev server), or how to start it;
//! 3. the tenants resolve through portero's own routing: portero is
//!    started in-process on `127.0.0.1:0` with the same config and real
//!    requests go through it with each tenant's host, and what the backend
//!    answered is explained (`ALLOWED_HOSTS`, a tenant missing in the
//!    database);
//! 4. whether `*.localhost` names resolve on this machine;
//! 5. TLS: certificate expiry and names, and whether the development CA is
//!    trusted (system store, browsers' NSS databases); nothing is modified;
//! 6. the Django settings this setup needs, as Python lines.
//!
//! Warnings that need no action are `✓` lines with a note; only `✗` lines
//! make the result a failure.

mod django;
mod probe;
mod routing;
mod tls;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, ConfigErrors, LoadError, Overrides, Source};

pub use django::settings as django_settings;
pub use probe::{Server, identify};

/// How long an upstream gets to accept a connection and answer `GET /`.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// What `portero doctor` was asked.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--config`; `None`: discovered as `portero` does.
    pub config: Option<PathBuf>,
    /// The same flags `portero` takes, applied after the file.
    pub overrides: Overrides,
    /// Tenants to check besides those named in `[tenants.overrides]`.
    pub tenants: Vec<String>,
    /// The path requested through portero; `None`: `/admin/` when a route
    /// sends it to an upstream, else the first upstream route's prefix.
    pub path: Option<String>,
}

/// Counts the `✗` lines while writing every line to `out`.
pub(crate) struct Report<'a> {
    out: &'a mut dyn Write,
    failures: usize,
}

impl Report<'_> {
    pub(crate) fn ok(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "✓ {}", line.as_ref());
    }

    pub(crate) fn fail(&mut self, line: impl AsRef<str>) {
        self.failures += 1;
        let _ = writeln!(self.out, "✗ {}", line.as_ref());
    }

    fn text(&mut self, line: impl AsRef<str>) {
        let _ = writeln!(self.out, "{}", line.as_ref());
    }
}

/// Runs every check, writing one line each to `out`; true when nothing is
/// wrong (exit 0), false otherwise (exit 1).
pub fn run(opts: &Options, out: &mut dyn Write) -> bool {
    let mut report = Report { out, failures: 0 };
    let Some(config) = load(opts, &mut report) else {
        let n = report.failures;
        report.text(format!(
            "{n} problem(s) found; the config must be valid before anything else can be checked"
        ));
        return false;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            report.fail(format!("cannot start a runtime: {e}"));
            return false;
        }
    };
    let tenants = tenants(&config, opts, &mut report);
    let reachable = runtime.block_on(probe::upstreams(&config, &mut report));
    runtime.block_on(routing::check(
        &config,
        &tenants,
        opts.path.as_deref(),
        &reachable,
        &mut report,
    ));
    localhost(&tenants, &mut report);
    tls::check(&config, &tenants, &mut report);
    report.text("");
    report.text("# Django settings for this setup (settings.py):");
    for line in django::settings(&config) {
        report.text(line);
    }
    report.text("");
    match report.failures {
        0 => report.text("all checks passed"),
        n => report.text(format!("{n} problem(s) found")),
    }
    report.failures == 0
}

/// The config as `portero` would run it, or `None` after `✗` lines saying
/// why not.
fn load(opts: &Options, report: &mut Report<'_>) -> Option<Config> {
    let mut config = match Config::discover(opts.config.as_deref()) {
        Ok(c) => c,
        Err(LoadError::Invalid(errs)) => {
            for line in errs.to_string().lines() {
                report.fail(format!("config: {line}"));
            }
            return None;
        }
        Err(e) => {
            report.fail(format!("config: {e}"));
            return None;
        }
    };
    if let Err(errors) = opts.overrides.apply(&mut config) {
        let errs = ConfigErrors {
            origin: Source::Embedded,
            text: String::new(),
            errors,
        };
        for line in errs.to_string().lines() {
            report.fail(format!("flags: {line}"));
        }
        return None;
    }
    let problems = crate::tls::check(&config);
    if !problems.is_empty() {
        for p in &problems {
            report.fail(format!("config: {p}"));
        }
        return None;
    }
    report.ok(format!(
        "config {}: valid ({} route(s), {} upstream(s), profile {})",
        config.source,
        config.routes.len(),
        config.upstreams.len(),
        match config.profile {
            crate::config::Profile::Dev => "dev",
            crate::config::Profile::Staging => "staging",
        }
    ));
    Some(config)
}

/// The tenants to check: `[tenants.overrides]` and `--tenant`, each once.
fn tenants(config: &Config, opts: &Options, report: &mut Report<'_>) -> Vec<String> {
    let mut out: Vec<String> = config.tenants.overrides.keys().cloned().collect();
    for t in &opts.tenants {
        let t = t.trim().to_ascii_lowercase();
        if !t.is_empty() && !out.contains(&t) {
            out.push(t);
        }
    }
    if config.tenants.base_domain.is_none() && !out.is_empty() {
        report.fail(format!(
            "tenants {}: named, but there is no tenants.base_domain (or --base-domain), so \
             portero routes no tenant",
            out.join(", ")
        ));
        out.clear();
    }
    out
}

/// `*.localhost` names: browsers resolve them to loopback themselves; the
/// system resolver (curl, scripts, Python) may not.
fn localhost(tenants: &[String], report: &mut Report<'_>) {
    use std::net::ToSocketAddrs;
    let names: Vec<String> = if tenants.is_empty() {
        vec!["acme.localhost".into()]
    } else {
        tenants.iter().map(|t| format!("{t}.localhost")).collect()
    };
    let hosts_line = format!("127.0.0.1 {}", names.join(" "));
    match ("portero-doctor-check.localhost", 80).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty() {
                report.ok("*.localhost names resolve to loopback on this machine");
            } else {
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                report.fail(format!(
                    "*.localhost names resolve to {} here, not to loopback: a DNS search domain or \
                     resolver answers for them; browsers still use loopback, but fix the resolver \
                     (or add /etc/hosts lines: {hosts_line}) for command-line tools",
                    list.join(", ")
                ));
            }
        }
        Err(_) => report.ok(format!(
            "*.localhost names do not resolve on this machine (note: browsers resolve them \
             themselves, so they work; for curl, scripts and Python add lines to /etc/hosts, \
             e.g. `{hosts_line}`{})",
            if cfg!(target_os = "macos") {
                ", as macOS does not resolve them"
            } else {
                ""
            }
        )),
    }
}
