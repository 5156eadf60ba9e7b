//! Static files: the SPA's `dist/` and `static_dir` routes.
//! (Stub: the full service lands with the static-serving issue.)

use std::path::PathBuf;

use http::{Method, Response};

use crate::error::Error;
use crate::http::body::Body;

pub struct StaticDir {
    pub root: PathBuf,
    pub history_fallback: bool,
    pub live_reload: bool,
    pub memory_cache: u64,
}

impl StaticDir {
    pub fn new(
        root: PathBuf,
        history_fallback: bool,
        live_reload: bool,
        memory_cache: u64,
    ) -> Self {
        Self {
            root,
            history_fallback,
            live_reload,
            memory_cache,
        }
    }

    /// Serves `path` (the request path below the route prefix).
    pub async fn serve(
        &self,
        _method: &Method,
        _headers: &http::HeaderMap,
        path: &str,
    ) -> Result<Response<Body>, Error> {
        Err(Error::NotFound { path: path.into() })
    }
}
