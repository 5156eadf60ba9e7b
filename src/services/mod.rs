//! The things a route can lead to. Each takes the request and a [`Ctx`]
//! that dispatch built (what is known about the request: nothing more), and
//! answers or fails with an [`Error`](crate::error::Error).

pub(crate) mod admin;
pub(crate) mod livereload;
pub(crate) mod proxy;
pub(crate) mod static_files;
pub(crate) mod tunnel;
pub(crate) mod upstream;
pub(crate) mod welcome;

use crate::config::Route;
use crate::conn::Conn;
use crate::host::RequestHost;
use crate::http::rewrite::CookieRules;
use crate::routing::tenant::Resolved;

/// What dispatch learned about a request, lent to the service.
pub(crate) struct Ctx<'a> {
    pub conn: &'a Conn,
    /// The host as the client sent it (normalised, with its port).
    pub host: &'a RequestHost,
    pub tenant: &'a Resolved,
    /// The normalised path: the one the route was chosen by and the one
    /// forwarded.
    pub path: &'a str,
    pub route: &'a Route,
    /// How `Set-Cookie` is rewritten for this client.
    pub cookies: &'a CookieRules,
}

impl Ctx<'_> {
    /// The path below the route's prefix, always starting with `/`.
    pub(crate) fn below_prefix(&self) -> &str {
        let prefix = self.route.prefix.as_str();
        if prefix == "/" {
            return self.path;
        }
        match self.path.strip_prefix(prefix) {
            Some("") | None => "/",
            Some(rest) => rest,
        }
    }
}
