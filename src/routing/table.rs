//! The route table: exact routes first, then the longest prefix on whole
//! path segments.

use std::sync::Arc;

use crate::config::Route;

/// Routes with what each leads to (`T`: a resolved target in the running
/// snapshot, `()` where only the match matters).
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    /// Exact routes, then prefix routes from longest to shortest prefix, so
    /// the first match is the right one.
    routes: Vec<(Arc<Route>, T)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> RouteTable<T> {
    pub fn new(routes: impl IntoIterator<Item = (Arc<Route>, T)>) -> Self {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by_key(|(r, _)| (!r.exact, std::cmp::Reverse(r.prefix.as_str().len())));
        Self { routes }
    }

    /// The route for an already-normalised path.
    pub fn find(&self, path: &str) -> Option<&(Arc<Route>, T)> {
        self.routes.iter().find(|(r, _)| {
            if r.exact {
                path == r.prefix.as_str()
            } else {
                r.prefix.matches(path)
            }
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Arc<Route>, T)> {
        self.routes.iter()
    }
}

impl RouteTable<()> {
    /// The table of bare routes, for matching only.
    pub fn of(routes: &[Route]) -> Self {
        Self::new(routes.iter().map(|r| (Arc::new(r.clone()), ())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Source};

    fn table(toml: &str) -> RouteTable<()> {
        let c = Config::from_str(toml, Source::Embedded).unwrap();
        RouteTable::of(&c.routes)
    }

    #[test]
    fn longest_prefix_on_whole_segments() {
        let t = table(
            r#"
[upstreams.backend]
url = "http://127.0.0.1:8000"
[upstreams.dev]
url = "http://127.0.0.1:5173"
[[routes]]
prefix = "/"
spa = true
[[routes]]
prefix = "/api"
upstream = "backend"
[[routes]]
prefix = "/api/v2"
upstream = "dev"
[[routes]]
prefix = "/ws"
upstream = "backend"
[[routes]]
prefix = "/ws"
exact = true
upstream = "dev"
"#,
        );
        let label = |p: &str| t.find(p).map(|(r, _)| r.label());
        assert_eq!(label("/api").as_deref(), Some("/api"));
        assert_eq!(label("/api/x").as_deref(), Some("/api"));
        assert_eq!(label("/apix").as_deref(), Some("/"));
        assert_eq!(label("/api/v2/x").as_deref(), Some("/api/v2"));
        assert_eq!(label("/api/v22").as_deref(), Some("/api"));
        assert_eq!(label("/ws").as_deref(), Some("=/ws"));
        assert_eq!(label("/ws/").as_deref(), Some("/ws"));
        assert_eq!(label("/ws/calendar-updates/").as_deref(), Some("/ws"));
        assert_eq!(label("/").as_deref(), Some("/"));
    }

    #[test]
    fn no_catch_all_means_no_route() {
        let t = table(
            r#"
[upstreams.backend]
url = "http://127.0.0.1:8000"
[[routes]]
prefix = "/api"
upstream = "backend"
"#,
        );
        assert!(t.find("/other").is_none());
    }
}
