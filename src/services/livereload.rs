//! Live reload: the `/__portero/livereload` WebSocket and its client script.
//! (Stub: the full service lands with the live-reload issue.)

use http::Response;
use hyper::body::Incoming;
use tokio::sync::broadcast;

use crate::error::Error;
use crate::http::body::Body;
use crate::state::Shared;

pub struct LiveReload {
    pub changes: broadcast::Sender<String>,
}

impl LiveReload {
    pub fn new() -> Self {
        Self {
            changes: broadcast::channel(64).0,
        }
    }
}

impl Default for LiveReload {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `/__portero/livereload` (WebSocket) and `/__portero/livereload.js`.
pub async fn serve(
    req: http::Request<Incoming>,
    _shared: &Shared,
) -> Result<Response<Body>, Error> {
    Err(Error::NotFound {
        path: req.uri().path().into(),
    })
}
