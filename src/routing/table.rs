//! The route table: exact routes first, then the longest prefix on whole
//! path segments.

use std::sync::Arc;

use crate::config::Route;

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// Exact routes, then prefix routes from longest to shortest prefix, so
    /// the first match is the right one.
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> Self {
        let mut routes: Vec<Arc<Route>> = routes.iter().cloned().map(Arc::new).collect();
        routes.sort_by_key(|r| (!r.exact, std::cmp::Reverse(r.prefix.as_str().len())));
        Self { routes }
    }

    /// The route for an already-normalised path.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| {
            if r.exact {
                path == r.prefix.as_str()
            } else {
                r.prefix.matches(path)
            }
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Source};

    fn table(toml: &str) -> RouteTable {
        let c = Config::from_str(toml, Source::Embedded).unwrap();
        RouteTable::new(&c.routes)
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
        let label = |p: &str| t.find(p).map(|r| r.label());
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
