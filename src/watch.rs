//! Watching the filesystem: a folder's changes in debounced batches
//! (surviving editors' save-and-rename and build tools that delete and
//! recreate the folder), a single file, a folder that does not exist yet;
//! and the one debouncer all of them, and the config reloader, use.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::routing::path::is_hidden;

/// A batch ends when the folder has been quiet this long: a build writes
/// many files in a burst, and one reload should follow, not fifty.
const QUIET: Duration = Duration::from_millis(50);
/// A batch is reported after this long even if writes keep coming.
const MAX_BATCH: Duration = Duration::from_millis(500);

/// A running watch. Dropping it stops the watcher and its task.
pub(crate) struct Watch {
    _stop: DropGuard,
}

/// Watches `root` recursively and calls `on_change` with the changed paths
/// (relative, `/`-separated, starting with `/`; `/` itself when the folder
/// was replaced) after each burst of changes. Must be called inside a Tokio
/// runtime.
///
/// The parent folder is watched too, without recursion: when `root` is
/// deleted its watch dies with it, and the parent's event for the new
/// `root` is what re-arms the watch.
pub(crate) fn folder<F>(root: &Path, on_change: F) -> Result<Watch, notify::Error>
where
    F: Fn(Vec<String>) + Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| notify::Error::generic(&format!("no Tokio runtime: {e}")))?;
    let root = root.canonicalize().map_err(notify::Error::io)?;
    let (tx, rx) = mpsc::unbounded_channel();
    // notify calls this on its own thread; an unbounded send never blocks
    // it, and the batch loop drains the channel as fast as events come.
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        // notify's inotify backend reports every open of every file under
        // the root (by any process); drop those here, on notify's thread,
        // so a reader never wakes the runtime.
        if event.as_ref().is_ok_and(|e| !changes_content(&e.kind)) {
            return;
        }
        let _ = tx.send(event);
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    if let Some(parent) = root.parent() {
        if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
            tracing::warn!(
                "cannot watch {} (so a deleted and recreated {} will not be noticed): {e}",
                parent.display(),
                root.display()
            );
        }
    }
    let stop = CancellationToken::new();
    handle.spawn(run(watcher, root, rx, stop.clone(), on_change));
    Ok(Watch {
        _stop: stop.drop_guard(),
    })
}

/// The next batch from `rx`: it starts with the next item and ends when
/// `quiet` passes with nothing new, or `max` after it started even if items
/// keep coming. `None` once the channel is closed or `stop` is cancelled.
pub(crate) async fn batch<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    quiet: Duration,
    max: Duration,
    stop: &CancellationToken,
) -> Option<Vec<T>> {
    let first = tokio::select! {
        _ = stop.cancelled() => return None,
        item = rx.recv() => item?,
    };
    let mut batch = vec![first];
    let deadline = Instant::now() + max;
    loop {
        let quiet_until = (Instant::now() + quiet).min(deadline);
        tokio::select! {
            _ = stop.cancelled() => return None,
            item = tokio::time::timeout_at(quiet_until, rx.recv()) => match item {
                Ok(Some(item)) => batch.push(item),
                Ok(None) => return None,
                Err(_) => return Some(batch),
            },
        }
    }
}

async fn run<F>(
    mut watcher: RecommendedWatcher,
    root: PathBuf,
    mut rx: mpsc::UnboundedReceiver<notify::Result<Event>>,
    stop: CancellationToken,
    on_change: F,
) where
    F: Fn(Vec<String>),
{
    while let Some(events) = batch(&mut rx, QUIET, MAX_BATCH, &stop).await {
        let mut paths = Vec::new();
        for event in events {
            take(event, &root, &mut watcher, &mut paths);
        }
        if !paths.is_empty() {
            paths.sort();
            paths.dedup();
            on_change(paths);
        }
    }
}

/// Watches the file at `path` (which may not exist yet) and sends `()` on
/// `tx` for every change to it. The folder is watched, not the file:
/// editors replace files by rename, which a watch on the file would lose.
///
/// Besides events that name the file, any change in the folder that
/// changes what the path resolves to counts: a Kubernetes ConfigMap volume
/// holds `portero.toml -> ..data/portero.toml` and is updated by pointing
/// the `..data` symlink at a new folder, which never touches a file named
/// `portero.toml`.
pub(crate) fn file(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<RecommendedWatcher> {
    let path = std::path::absolute(path).map_err(notify::Error::io)?;
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = path.file_name().map(|n| n.to_os_string());
    let mut resolved = std::fs::canonicalize(&path).ok();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let Ok(event) = event else { return };
        if !changes_content(&event.kind) {
            return;
        }
        let named = event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
        let now = std::fs::canonicalize(&path).ok();
        let moved = now != resolved;
        resolved = now;
        if named || moved {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Calls `on_appear` (after the burst settles) each time something is
/// created at `path`, by watching its parent folder without recursion.
/// Must be called inside a Tokio runtime.
pub(crate) fn appear<F>(path: &Path, on_appear: F) -> Result<Watch, notify::Error>
where
    F: Fn() + Send + 'static,
{
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| notify::Error::generic(&format!("no Tokio runtime: {e}")))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watcher = file(path, tx)?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    handle.spawn(async move {
        // Kept alive for as long as this task runs.
        let _watcher = watcher;
        while batch(&mut rx, QUIET, MAX_BATCH, &token).await.is_some() {
            on_appear();
        }
    });
    Ok(Watch {
        _stop: stop.drop_guard(),
    })
}

/// Adds the paths an event touched to `batch`, re-arming the watch when
/// `root` itself reappears.
fn take(
    event: notify::Result<Event>,
    root: &Path,
    watcher: &mut RecommendedWatcher,
    batch: &mut Vec<String>,
) {
    let event = match event {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!("watching {}: {e}", root.display());
            return;
        }
    };
    if !changes_content(&event.kind) {
        return;
    }
    for path in &event.paths {
        if path == root {
            if appeared(&event.kind) && root.is_dir() {
                // The old watch (if any) died with the old folder.
                let _ = watcher.unwatch(root);
                if let Err(e) = watcher.watch(root, RecursiveMode::Recursive) {
                    tracing::warn!("re-watching {}: {e}", root.display());
                }
            }
            batch.push("/".into());
        } else if let Some(rel) = relative(root, path) {
            batch.push(rel);
        }
    }
}

/// Reads (open, access, close-after-read) are not changes: serving a file
/// opens it, and must not trigger a reload.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(notify::event::AccessKind::Close(notify::event::AccessMode::Write)) => {
            true
        }
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

fn appeared(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Name(
                RenameMode::To | RenameMode::Any | RenameMode::Both
            ))
    )
}

/// `path` relative to `root` as a URL-style path, or `None` for paths
/// outside it (siblings seen through the parent's watch) and for editor
/// noise: dotfiles (swap files, `.git`) and backup files.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut out = String::new();
    for (i, c) in rel.components().enumerate() {
        let Component::Normal(name) = c else {
            return None;
        };
        let name = name.to_string_lossy();
        if is_hidden(&name, i == 0) {
            return None;
        }
        out.push('/');
        out.push_str(&name);
    }
    let noise = out.ends_with('~')
        || [".swp", ".swx", ".tmp"].iter().any(|s| out.ends_with(s))
        || out.contains("___jb_");
    (!out.is_empty() && !noise).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_skip_noise_and_outsiders() {
        let root = Path::new("/srv/dist");
        let rel = |p: &str| relative(root, Path::new(p));
        assert_eq!(rel("/srv/dist/app.css"), Some("/app.css".into()));
        assert_eq!(rel("/srv/dist/a/b.js"), Some("/a/b.js".into()));
        assert_eq!(
            rel("/srv/dist/.well-known/x"),
            Some("/.well-known/x".into())
        );
        assert_eq!(rel("/srv/dist/.app.css.swp"), None);
        assert_eq!(rel("/srv/dist/app.css~"), None);
        assert_eq!(rel("/srv/dist/x/.git/HEAD"), None);
        assert_eq!(rel("/srv/dist/app.css___jb_tmp___"), None);
        assert_eq!(rel("/srv/other/app.css"), None);
        assert_eq!(rel("/srv/dist2/app.css"), None);
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind};
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Any)));
    }
}
