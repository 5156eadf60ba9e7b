//! The SPA fixture: a temp copy of `tests/fixtures/spa` plus what git
//! cannot hold (a `.git/` folder, symlinks), with a secret file beside the
//! root that no request may ever read.

use std::fs;
use std::path::{Path, PathBuf};

use portero::Config;
use tempfile::TempDir;

/// The content of `secret.txt`, which sits next to the served root.
pub(crate) const SECRET: &str = "portero-test-secret-outside-the-root-7d1f3a";
/// Markers inside dotfiles of the fixture, which must never be served.
pub(crate) const DOTENV_MARKER: &str = "fixture-dotenv-must-not-leak";
pub(crate) const GIT_MARKER: &str = "fixture-git-config-must-not-leak";

pub(crate) struct Spa {
    /// Holds `dist/` (the root) and `secret.txt`; removed on drop.
    pub dir: TempDir,
    pub root: PathBuf,
}

impl Spa {
    /// A file below the root.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The committed fixture file's bytes.
    pub(crate) fn original(rel: &str) -> Vec<u8> {
        fs::read(fixture_root().join(rel)).unwrap()
    }

    /// A config serving this root at `/` (plus `extra` TOML appended to
    /// `[spa]`, e.g. `live_reload = false`).
    pub(crate) fn config(&self, spa_extra: &str) -> Config {
        self.config_with_routes("", spa_extra)
    }

    /// As [`Spa::config`], with extra `[[routes]]` before the SPA's.
    pub(crate) fn config_with_routes(&self, routes: &str, spa_extra: &str) -> Config {
        super::config(&format!(
            "[server]\nshutdown_timeout = \"2s\"\n\n{routes}\n[[routes]]\nprefix = \"/\"\nspa = true\n\n\
             [spa]\nroot = {root:?}\n{spa_extra}\n",
            root = self.root.to_str().unwrap(),
        ))
    }
}

pub(crate) fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spa")
}

/// Copies the fixture into a fresh temp folder and adds:
/// - `secret.txt` beside the root, and `.git/config` inside it;
/// - `escape.txt` → `../secret.txt` and `outside/` → `..` (symlinks out);
/// - `linked.js` → `app.3f9a1c2b.js` (a symlink that stays inside);
/// - `env-link.txt` → `.env` (a symlink into a dotfile).
pub(crate) fn spa() -> Spa {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dist");
    copy_dir(&fixture_root(), &root);
    fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(
        root.join(".git/config"),
        format!("[core]\n\tbare = false\n# {GIT_MARKER}\n"),
    )
    .unwrap();
    let link =
        |target: &Path, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
    link(&dir.path().join("secret.txt"), "escape.txt");
    link(dir.path(), "outside");
    link(Path::new("app.3f9a1c2b.js"), "linked.js");
    link(Path::new(".env"), "env-link.txt");
    Spa { dir, root }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}
