//! Safe path resolution: a request path becomes a file below the root only
//! through normal components, after exactly one percent-decode.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;

use crate::routing::path::is_hidden;

/// The longest file name, in bytes, that ext4, XFS, btrfs and APFS take
/// (NTFS: 255 UTF-16 units). A longer segment names nothing, so it is
/// refused without asking the disk, which would answer `ENAMETOOLONG`.
const MAX_NAME_BYTES: usize = 255;

/// The longest path Linux looks up (`PATH_MAX` less the NUL). Beyond it
/// there is nothing to find; other platforms' `ENAMETOOLONG` ends as a 404
/// in the caller like any other I/O error.
const MAX_PATH_BYTES: usize = 4095;

/// Splits a request path (below the route prefix, already normalised by
/// routing) into the names of the folders and file it asks for, or `None`
/// when it must not reach the filesystem at all.
///
/// Each segment is percent-decoded once, after splitting, so an encoded
/// slash (`%2F`) is data that makes the path invalid, never a separator.
/// A segment is accepted only if it is a normal file name: not `.` or `..`,
/// no slash, backslash, NUL or colon (a Windows drive or stream prefix), not
/// a dotfile, except the top-level `.well-known`, and at most 255 bytes.
pub(super) fn components(path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for raw in path.split('/') {
        if raw.is_empty() {
            continue;
        }
        let seg = percent_decode_str(raw).decode_utf8().ok()?;
        if !is_normal_name(&seg, out.is_empty()) {
            return None;
        }
        out.push(seg.into_owned());
    }
    Some(out)
}

fn is_normal_name(seg: &str, first: bool) -> bool {
    if seg.is_empty() || seg.len() > MAX_NAME_BYTES || seg.contains(['/', '\\', '\0', ':']) {
        return false;
    }
    if is_hidden(seg, first) {
        return false;
    }
    // Belt and braces: the platform must see one normal component too.
    let mut comps = Path::new(seg).components();
    matches!(
        (comps.next(), comps.next()),
        (Some(Component::Normal(_)), None)
    )
}

/// How much older than its file a precompressed sibling may be and still
/// count as made from it.
const STALE_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// A regular file found below the root, with its precompressed siblings.
#[derive(Debug)]
pub(super) struct Found {
    pub path: PathBuf,
    /// The file name that decides type and cache policy (`index.html` for a
    /// folder request).
    pub name: String,
    pub meta: Metadata,
    pub br: Option<(PathBuf, Metadata)>,
    pub gzip: Option<(PathBuf, Metadata)>,
    /// The path named a folder; this is its `index.html`.
    pub folder: bool,
}

#[derive(Debug)]
pub(super) enum Resolution {
    File(Box<Found>),
    /// Nothing there: the history fallback may apply.
    Missing,
    /// Something there that must not be served (a symlink out of the root,
    /// or into a dotfile): a plain 404, never the fallback.
    Forbidden,
}

/// Looks `comps` up below `root`. Blocking: call it off the async threads.
///
/// A folder serves its `index.html`, never a listing. Symlinks are followed,
/// and the result is accepted only if its canonical path is still below the
/// canonical root and passes the same dotfile rule. A path longer than Linux
/// looks up is `Missing`; other I/O errors are the caller's to answer.
pub(super) fn resolve(root: &Path, comps: &[String]) -> io::Result<Resolution> {
    let mut path = root.to_path_buf();
    path.extend(comps);
    if path.as_os_str().len() > MAX_PATH_BYTES {
        return Ok(Resolution::Missing);
    }
    let mut meta = match metadata(&path)? {
        Some(m) => m,
        None => return Ok(Resolution::Missing),
    };
    let folder = meta.is_dir();
    if folder {
        path.push("index.html");
        meta = match metadata(&path)? {
            Some(m) => m,
            None => return Ok(Resolution::Missing),
        };
    }
    if !meta.is_file() {
        return Ok(Resolution::Missing);
    }
    let canon_root = root.canonicalize()?;
    if !stays_inside(&canon_root, &path)? {
        return Ok(Resolution::Forbidden);
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A precompressed sibling older than its file is stale (a rebuild that
    // did not recompress, an edit by hand): it would serve the old content,
    // so it is ignored. "Older" allows for STALE_SLACK: a copy of the whole
    // folder (`cp -r`, an rsync without times) writes siblings in any order,
    // microseconds apart, and FAT keeps times to 2 s.
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.checked_sub(STALE_SLACK));
    let sibling = |ext: &str| -> io::Result<Option<(PathBuf, Metadata)>> {
        let mut p = path.clone().into_os_string();
        p.push(ext);
        let p = PathBuf::from(p);
        match metadata(&p)? {
            Some(m)
                if m.is_file()
                    && m.modified().ok() >= modified
                    && stays_inside(&canon_root, &p)? =>
            {
                Ok(Some((p, m)))
            }
            _ => Ok(None),
        }
    };
    let br = sibling(".br")?;
    let gzip = sibling(".gz")?;
    Ok(Resolution::File(Box::new(Found {
        path,
        name,
        meta,
        br,
        gzip,
        folder,
    })))
}

/// `metadata` that treats "not there" (including a file used as a folder)
/// as `None` rather than an error.
fn metadata(path: &Path) -> io::Result<Option<Metadata>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// True when `path`, with every symlink resolved, is below `canon_root` and
/// none of its components there is a dotfile (bar `.well-known`).
fn stays_inside(canon_root: &Path, path: &Path) -> io::Result<bool> {
    let canon = path.canonicalize()?;
    let Ok(rel) = canon.strip_prefix(canon_root) else {
        return Ok(false);
    };
    Ok(rel.components().enumerate().all(|(i, c)| match c {
        Component::Normal(n) => n.to_str().is_some_and(|n| !is_hidden(n, i == 0)),
        _ => false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str) -> Vec<String> {
        components(path).unwrap_or_else(|| panic!("{path} rejected"))
    }

    #[test]
    fn accepts_normal_names_after_one_decode() {
        assert_eq!(ok("/"), Vec::<String>::new());
        assert_eq!(ok("/app.js"), ["app.js"]);
        assert_eq!(ok("/a//b/"), ["a", "b"]);
        assert_eq!(ok("/files/hello%20world.txt"), ["files", "hello world.txt"]);
        assert_eq!(ok("/files/%C3%B1and%C3%BA.txt"), ["files", "ñandú.txt"]);
        assert_eq!(
            ok("/.well-known/security.txt"),
            [".well-known", "security.txt"]
        );
        // Decoded once: %252e stays the literal name "%2e".
        assert_eq!(ok("/%252e%252e/x"), ["%2e%2e", "x"]);
        assert_eq!(ok("/a..b"), ["a..b"]);
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "/..",
            "/../etc/passwd",
            "/%2e%2e/x",
            "/.%2e/x",
            "/%2e/x",
            "/a%2fb",
            "/..%2f..%2fsecret",
            "/a%5cb",
            "/..\\secret",
            "/%2e%2e%5csecret",
            "/%00",
            "/a%00.html",
            "/C:/Windows",
            "/c:",
            "/.env",
            "/%2eenv",
            "/.git/config",
            "/nested/.well-known/x",
            "/.well-known/.hidden",
            "/%c0%ae%c0%ae/x",
            "/%ff",
        ] {
            assert_eq!(components(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_longer_than_filesystems_take_are_refused() {
        let name = |n: usize| format!("/d/{}", "n".repeat(n));
        assert_eq!(ok(&name(255)).len(), 2);
        assert_eq!(components(&name(256)), None);
        assert_eq!(components(&name(300)), None);
        // Bytes after decoding, not characters or escapes: 128 × "é" is 256.
        assert_eq!(components(&format!("/{}", "é".repeat(128))), None);
        assert_eq!(components(&format!("/{}", "%C3%A9".repeat(128))), None);
        assert_eq!(ok(&format!("/{}", "%C3%A9".repeat(127))).len(), 1);
    }

    #[test]
    fn overlong_paths_are_missing_and_lookup_errors_reach_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let deep = ok(&format!("/{}", vec!["d".repeat(250); 20].join("/")));
        assert!(matches!(resolve(root, &deep), Ok(Resolution::Missing)));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve(root, &ok("/loop")).is_err());
    }

    #[test]
    fn resolves_folders_to_index_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/index.html"), "x").unwrap();
        fs::write(root.join("a.js"), "a").unwrap();
        fs::write(root.join("a.js.gz"), "gz").unwrap();
        fs::write(root.join(".env"), "secret").unwrap();
        fs::write(dir.path().join("outside.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("out.txt")).unwrap();
        std::os::unix::fs::symlink(root.join(".env"), root.join("env.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("a.js"), root.join("in.js")).unwrap();

        let res = |p: &str| resolve(&root, &ok(p)).unwrap();
        match res("/sub") {
            Resolution::File(f) => assert_eq!(f.name, "index.html"),
            other => panic!("{other:?}"),
        }
        match res("/a.js") {
            Resolution::File(f) => {
                assert!(f.gzip.is_some());
                assert!(f.br.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(res("/in.js"), Resolution::File(_)));
        assert!(matches!(res("/"), Resolution::Missing));
        assert!(matches!(res("/nope"), Resolution::Missing));
        assert!(matches!(res("/a.js/x"), Resolution::Missing));
        assert!(matches!(res("/out.txt"), Resolution::Forbidden));
        assert!(matches!(res("/env.txt"), Resolution::Forbidden));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::sync::OnceLock;

        /// A tree with nested folders, dotfiles, and symlinks that point
        /// inside the root, outside it, and into dotfiles; built once.
        fn tree() -> &'static (tempfile::TempDir, PathBuf) {
            static TREE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
            TREE.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let root = dir.path().join("root");
                let outside = dir.path().join("outside");
                for d in [
                    &root.join("a/b"),
                    &root.join(".git"),
                    &root.join(".well-known"),
                    &outside,
                ] {
                    fs::create_dir_all(d).unwrap();
                }
                for f in [
                    "index.html",
                    "a/x.js",
                    "a/b/index.html",
                    ".env",
                    ".git/config",
                    ".well-known/security.txt",
                    "a/.hidden",
                ] {
                    fs::write(root.join(f), f).unwrap();
                }
                fs::write(outside.join("secret"), "secret").unwrap();
                #[cfg(unix)]
                {
                    use std::os::unix::fs::symlink;
                    symlink(&outside, root.join("out")).unwrap();
                    symlink(outside.join("secret"), root.join("a/secret")).unwrap();
                    symlink(root.join(".env"), root.join("env-link")).unwrap();
                    symlink(root.join("a/x.js"), root.join("a/b/x-link.js")).unwrap();
                    symlink("../..", root.join("a/b/up")).unwrap();
                }
                (dir, root)
            })
        }

        fn path_like() -> impl Strategy<Value = String> {
            let seg = prop::sample::select(vec![
                "a",
                "b",
                "x.js",
                "index.html",
                ".env",
                ".git",
                "config",
                ".well-known",
                "security.txt",
                ".hidden",
                "out",
                "secret",
                "env-link",
                "x-link.js",
                "up",
                "..",
                ".",
                "%2e%2e",
                "%2f",
                "%2e",
                "",
                "root",
                "outside",
            ]);
            proptest::collection::vec(seg, 0..7).prop_map(|s| format!("/{}", s.join("/")))
        }

        proptest! {
            #![proptest_config(crate::testing::proptest_config())]

            #[test]
            fn nothing_resolves_outside_the_root_or_to_a_dotfile(p in path_like()) {
                let (_, root) = tree();
                let canon_root = root.canonicalize().unwrap();
                let normal = crate::routing::path::normalize(&p);
                let Some(comps) = components(&normal) else { return Ok(()) };
                if let Ok(Resolution::File(found)) = resolve(root, &comps) {
                    let canon = found.path.canonicalize().unwrap();
                    let rel = canon.strip_prefix(&canon_root);
                    prop_assert!(rel.is_ok(), "{} resolved outside: {}", p, canon.display());
                    let rel = rel.unwrap();
                    for (i, c) in rel.components().enumerate() {
                        let n = c.as_os_str().to_string_lossy();
                        prop_assert!(
                            !is_hidden(&n, i == 0),
                            "{} resolved to a dotfile: {}", p, rel.display()
                        );
                    }
                }
            }
        }
    }
}
