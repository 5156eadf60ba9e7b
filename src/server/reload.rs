//! Hot reload: when the config file changes (or on SIGHUP), load it again,
//! apply the same command-line overrides, validate, build a whole new
//! runtime snapshot and swap it in one step. A config with problems is
//! reported, every problem at once, and the running one stays.
//!
//! TLS certificate files are read again on every reload, so after a
//! renewal a SIGHUP is enough. Listener addresses are bound at startup; a
//! reload that changes them says a restart is needed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LoadError, Overrides};
use crate::snapshot::Shared;
use crate::watch;

/// Editors write a file in several steps: one reload per burst, once the
/// file has been quiet this long...
const SETTLE: Duration = Duration::from_millis(100);
/// ...or this long after the burst began.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// What a reload needs besides the running state.
#[derive(Debug, Clone)]
pub struct Reloader {
    pub path: PathBuf,
    pub overrides: Overrides,
}

/// The outcome of one reload, for logs and tests.
#[derive(Debug)]
pub enum Outcome {
    Applied { took: Duration },
    Kept(String),
}

impl Reloader {
    /// Loads, validates and swaps in the file's current config.
    pub fn reload(&self, shared: &Shared) -> Outcome {
        let started = Instant::now();
        let mut config = match Config::load_file(&self.path) {
            Ok(c) => c,
            Err(LoadError::Invalid(errs)) => {
                return Outcome::Kept(format!(
                    "{errs}\n{} problem(s): keeping the running config",
                    errs.errors.len()
                ));
            }
            Err(e) => return Outcome::Kept(format!("{e}: keeping the running config")),
        };
        if let Err(errors) = self.overrides.apply(&mut config) {
            let text: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect();
            return Outcome::Kept(format!("{}: keeping the running config", text.join("; ")));
        }
        let old = shared.snapshot.load();
        if !same_listen(&config.server.listen, &old.config.server.listen)
            || config.tls.is_some() != old.config.tls.is_some()
        {
            tracing::warn!(
                "{}: listen addresses, and whether there is a [tls] section, change only on restart",
                self.path.display()
            );
        }
        // Certificates first: they are the part that can still fail (a
        // renewal half written, a key that does not match), and a failure
        // keeps everything running as it was.
        if let (Some(store), Some(tls)) = (shared.tls_certs.get(), &config.tls) {
            if let Err(e) = store.reload(tls, &config.tenants) {
                return Outcome::Kept(format!("tls: {e}: keeping the running config"));
            }
        }
        // The running listen addresses are the bound ones (see
        // server::prepare): they change only on restart.
        config.server.listen = old.config.server.listen.clone();
        if let (Some(new), Some(old)) = (&mut config.tls, &old.config.tls) {
            new.listen = old.listen.clone();
        }
        shared.install(config);
        Outcome::Applied {
            took: started.elapsed(),
        }
    }

    fn reload_and_log(&self, shared: &Shared) {
        match self.reload(shared) {
            Outcome::Applied { took } => {
                shared.metrics.reloaded(true);
                shared.metrics.inspector.reloaded(None);
                tracing::info!("{}: config reloaded in {took:?}", self.path.display())
            }
            Outcome::Kept(why) => {
                shared.metrics.reloaded(false);
                tracing::error!("config reload failed:\n{why}");
                shared.metrics.inspector.reloaded(Some(why));
            }
        }
    }

    /// Reloads on every change to the file and on SIGHUP, until `stop`.
    pub fn spawn(self, shared: Arc<Shared>, stop: CancellationToken) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watcher = watch::file(&self.path, tx.clone());
        if let Err(e) = &watcher {
            tracing::warn!(
                "not watching {} for changes ({e}); send SIGHUP to reload",
                self.path.display()
            );
        }
        spawn_sighup(tx, stop.clone());
        tokio::spawn(async move {
            // Kept alive for as long as this task runs.
            let _watcher = watcher;
            while watch::batch(&mut rx, SETTLE, MAX_SETTLE, &stop)
                .await
                .is_some()
            {
                self.reload_and_log(&shared);
            }
        });
    }
}

#[cfg(unix)]
fn spawn_sighup(tx: mpsc::UnboundedSender<()>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = hup.recv() => {
                    if got.is_none() || tx.send(()).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_sighup(_tx: mpsc::UnboundedSender<()>, _stop: CancellationToken) {}

/// Whether the file's listen addresses are the running ones; port 0 in the
/// file stands for whatever port was bound.
fn same_listen(file: &[std::net::SocketAddr], running: &[std::net::SocketAddr]) -> bool {
    file.len() == running.len()
        && file
            .iter()
            .zip(running)
            .all(|(f, r)| f == r || (f.port() == 0 && f.ip() == r.ip()))
}

#[cfg(test)]
mod tests {
    use super::same_listen;

    #[test]
    fn port_zero_in_the_file_is_the_bound_port() {
        let a = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert!(same_listen(&[a("127.0.0.1:0")], &[a("127.0.0.1:41000")]));
        assert!(same_listen(&[a("0.0.0.0:8080")], &[a("0.0.0.0:8080")]));
        assert!(!same_listen(&[a("0.0.0.0:8081")], &[a("0.0.0.0:8080")]));
        assert!(!same_listen(&[a("127.0.0.2:0")], &[a("127.0.0.1:41000")]));
        assert!(!same_listen(&[], &[a("127.0.0.1:41000")]));
    }
}
