//! The HTTP reverse proxy. (Stub: lands with the proxy issue.)

use http::{Request, Response};
use hyper::body::Incoming;

use crate::config::Config;
use crate::dispatch::Ctx;
use crate::error::Error;
use crate::http::body::Body;

pub struct Proxy {}

impl Proxy {
    pub fn new(_config: &Config) -> Self {
        Proxy {}
    }

    pub async fn forward(
        &self,
        _req: Request<Incoming>,
        _ctx: &Ctx,
        upstream: &str,
    ) -> Result<Response<Body>, Error> {
        Err(Error::Internal(format!(
            "proxy to {upstream} not implemented"
        )))
    }
}
