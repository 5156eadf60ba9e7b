//! The SPA's folder as a slot: filled when the snapshot is built if the
//! folder exists, otherwise by a watcher when the first build creates it.
//! Requests only read the slot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwapOption;

use crate::services::livereload::LiveReload;
use crate::services::static_files::{Options, StaticDir};
use crate::watch::{self, Watch};

pub(crate) struct SpaSlot {
    pub root: PathBuf,
    options: Options,
    livereload: Option<LiveReload>,
    dir: ArcSwapOption<StaticDir>,
    /// Watches for the folder to appear, while it is missing.
    appear: Mutex<Option<Watch>>,
}

impl SpaSlot {
    /// A slot for `root`; with `livereload`, changes under the folder are
    /// sent there.
    pub(crate) fn new(
        root: PathBuf,
        options: Options,
        livereload: Option<LiveReload>,
    ) -> Arc<SpaSlot> {
        let slot = Arc::new(SpaSlot {
            root,
            options,
            livereload,
            dir: ArcSwapOption::empty(),
            appear: Mutex::new(None),
        });
        if !slot.fill() {
            let weak: Weak<SpaSlot> = Arc::downgrade(&slot);
            // The watcher holds the slot weakly: a snapshot dropped while
            // its folder is still missing frees the slot and its watcher.
            match watch::appear(&slot.root, move || {
                if let Some(slot) = weak.upgrade() {
                    slot.fill();
                }
            }) {
                Ok(w) => *slot.appear.lock().expect("never poisoned") = Some(w),
                Err(e) => tracing::warn!(
                    "not watching for {} to appear ({e}); restart portero once it exists",
                    slot.root.display()
                ),
            }
        }
        slot
    }

    /// Serves the folder from now on if it exists; true when it does.
    fn fill(&self) -> bool {
        if self.dir.load().is_some() {
            return true;
        }
        if !self.root.is_dir() {
            return false;
        }
        let livereload = self.livereload.clone();
        let dir = StaticDir::new(self.root.clone(), self.options).watched(move |paths| {
            if let Some(lr) = &livereload {
                lr.notify(paths);
            }
        });
        self.dir.store(Some(Arc::new(dir)));
        // Once filled, the folder's own watcher takes over.
        self.appear.lock().expect("never poisoned").take();
        true
    }

    /// The folder, once it exists.
    pub(crate) fn dir(&self) -> Option<Arc<StaticDir>> {
        self.dir.load_full()
    }
}
