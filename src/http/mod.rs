//! HTTP plumbing shared by the services: body types, header rules, error pages.

pub mod body;
pub mod error_page;
pub mod forward;
pub mod headers;
pub mod rewrite;
