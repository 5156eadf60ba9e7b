//! The paths portero keeps for itself, whatever the routes say, and the tag
//! it injects into HTML pages. Every other module asks here.

/// Everything below this is portero's own (status, health, live reload).
pub(crate) const PREFIX: &str = "/__portero/";

/// The live-reload WebSocket.
pub(crate) const LIVERELOAD_SOCKET: &str = "/__portero/livereload";
/// The live-reload client script.
pub(crate) const LIVERELOAD_SCRIPT: &str = "/__portero/livereload.js";
/// What HTML pages get before their last `</body>` when live reload is on.
pub(crate) const LIVERELOAD_TAG: &str = "<script src=\"/__portero/livereload.js\"></script>";

/// Whether `path` (as received, before normalisation) is portero's own.
pub(crate) fn is_reserved(path: &str) -> bool {
    path.starts_with(PREFIX)
}
