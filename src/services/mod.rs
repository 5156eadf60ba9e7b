//! The things a route can lead to. Each takes the request and the
//! [`Ctx`](crate::dispatch::Ctx) dispatch built, and answers or fails with
//! an [`Error`](crate::error::Error).

pub mod admin;
pub mod livereload;
pub mod proxy;
pub mod static_files;
pub mod tunnel;
pub mod welcome;
