//! HTTP plumbing shared by the services: body types, header rules, error
//! pages, the rules TLS adds, the paths portero keeps for itself.

pub(crate) mod body;
pub(crate) mod error_page;
pub mod forward;
pub(crate) mod h1;
pub(crate) mod headers;
pub(crate) mod request_rules;
pub(crate) mod reserved;
pub mod rewrite;
pub(crate) mod tls_rules;
pub(crate) mod url;

use http::Method;

use crate::error::Error;

/// Passes GET and HEAD, the only methods a read-only resource (a file,
/// a page of portero's own) answers; 405 for the others.
pub(crate) fn get_or_head(method: &Method) -> Result<(), Error> {
    if method == Method::GET || method == Method::HEAD {
        Ok(())
    } else {
        Err(Error::MethodNotAllowed {
            method: method.clone(),
            allow: "GET, HEAD",
        })
    }
}
