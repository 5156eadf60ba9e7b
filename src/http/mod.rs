//! HTTP plumbing shared by the services: body types, header rules, error
//! pages, the rules TLS adds.

pub mod body;
pub mod error_page;
pub mod forward;
pub mod headers;
pub mod json;
pub mod rewrite;
pub mod tls_rules;
