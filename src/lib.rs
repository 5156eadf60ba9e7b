//! portero: a tenant-aware reverse proxy and dev gateway.
//!
//! A request flows through the modules in this order (see ARCHITECTURE.md):
//!
//! ```text
//! server      listeners, one runtime per core or one shared, TLS handshake
//!   connection  one accepted socket (→ conn::Conn): HTTP/1 on the fast path
//!               (server::fast_h1) until a request it hands to hyper; hyper
//!               for the rest of HTTP/1 and for HTTP/2
//!   → dispatch    the one place: host → tenant → route → service
//!       host            normalised Host newtypes
//!       routing::tenant tenant + the host the backend sees, allow-list
//!       routing::path   path normalisation
//!       snapshot        the running config, routes resolved to their targets
//!   → services::{static_files, proxy → upstream, tunnel, livereload, admin, welcome}
//!   → access_log  one line per request, written when the body ends
//! ```
//!
//! Layers, from the bottom; a module imports only from layers below it (or
//! its own), which `tests/layers.rs` checks:
//!
//! 0. `host`, `conn`: value types with no dependencies
//! 1. `config`: TOML → raw structs → validated [`Config`]
//! 2. `error`: the request error type and its one mapping to HTTP status
//! 3. `routing`, `http`, `tls`, `watch`, `cert`, `trust`, `hosts`, `access_log`,
//!    `metrics`: rules and plumbing, each knowing nothing of the services
//! 4. `services`: what a route leads to; each takes a narrow context
//! 5. `snapshot`: the running snapshot (resolved routes, pools, folders)
//!    and the state shared by connections
//! 6. `dispatch`
//! 7. `server`: listeners, connections, config reload, start-up
//! 8. `doctor`: `portero doctor`'s checks (it starts portero in-process)

mod access_log;
pub mod cert;
pub mod config;
mod conn;
mod dispatch;
pub mod doctor;
mod error;
pub mod host;
pub mod hosts;
mod http;
mod inspector;
mod metrics;
mod routing;
mod server;
mod services;
mod snapshot;
mod tls;
pub mod trust;
mod watch;

/// What the property tests share.
#[cfg(test)]
mod testing {
    /// 256 cases per property, or `PROPTEST_CASES` when set (a long run:
    /// `PROPTEST_CASES=100000 cargo test --lib`).
    pub(crate) fn proptest_config() -> proptest::test_runner::Config {
        let mut config = proptest::test_runner::Config::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = 256;
        }
        config
    }
}

pub use config::Config;
pub use error::StartupError;
pub use server::{Listeners, Outcome, Reloader, launch, run, run_per_core, run_with_reload};
pub use tls::check as check_files;

/// Where access lines go, set once per process by the command line.
pub mod access {
    pub use crate::access_log::{Flush, Format, init};
}

/// What the benches and integration tests reach below the public API. Not
/// part of it: it changes whenever the inside does.
#[doc(hidden)]
pub mod internals {
    pub use crate::http::{forward, rewrite};
    pub use crate::routing::{path, table, tenant};
    pub use crate::snapshot::Shared;
    pub mod tls {
        pub use crate::tls::{CertStore, NoVerification, acceptor, client_config};
    }
}
