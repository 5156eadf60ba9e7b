//! portero: a tenant-aware reverse proxy and dev gateway.
//!
//! A request flows through the modules in this order:
//!
//! ```text
//! server (listeners, one runtime per core or one shared; TLS with the
//!         certificate picked by SNI; hyper connection)
//!   → dispatch (the one place: host → tenant → route → service)
//!       routing::host    normalised Host newtype
//!       routing::tenant  tenant + the host the backend sees, allow-list
//!       routing::path    path normalisation
//!       routing::table   exact and longest-prefix route match
//!   → services::{static_files, proxy, tunnel, livereload, admin, welcome}
//!   → access_log (one line per request, written when the body ends)
//! ```
//!
//! On the side: `config` (TOML → raw structs → validated `Config`), `state`
//! (the runtime snapshot swapped atomically), `error` (the error type and
//! its one mapping to HTTP status), `http` (body type, header rules, error
//! pages, TLS rules: SNI agreement, HTTPS redirect, HSTS), `upstream_tls`
//! (rustls client config for `https://` upstreams), `cert` (the development
//! CA and certificate behind `portero cert`), `watch` (debounced folder
//! watching: static cache invalidation and live-reload messages).

pub mod access_log;
pub mod cert;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod routing;
pub mod server;
pub mod services;
pub mod state;
pub mod upstream_tls;
pub mod watch;

pub use config::Config;
pub use server::{Listeners, run, run_per_core, run_with_reload};
