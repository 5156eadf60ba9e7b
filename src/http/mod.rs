//! HTTP plumbing shared by the services: body types, header rules, error
//! pages, the rules TLS adds, the paths portero keeps for itself.

pub mod body;
pub mod error_page;
pub mod forward;
pub mod headers;
pub mod reserved;
pub mod rewrite;
pub mod tls_rules;

use http::Method;

use crate::error::Error;

/// Passes GET and HEAD, the only methods a read-only resource (a file,
/// a page of portero's own) answers; 405 for the others.
pub fn get_or_head(method: &Method) -> Result<(), Error> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(Error::MethodNotAllowed {
            method: method.clone(),
            allow: "GET, HEAD",
        })
    }
}
