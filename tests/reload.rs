//! Config hot reload: a changed file takes effect, a broken one is reported
//! and the running config stays; an SPA folder built after startup is served.

mod support;

use std::time::Duration;

use portero::config::{Config, Overrides};
use portero::{Outcome, Reloader};
use support::backends::Echo;
use support::{get, start, start_reloading};

fn write_config(path: &std::path::Path, backend: std::net::SocketAddr) {
    std::fs::write(
        path,
        format!("[upstreams.backend]\nurl = \"http://{backend}\"\nwait_for = \"0s\"\n[[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n"),
    )
    .unwrap();
}

/// Polls until the request lands on `backend` (reloads are asynchronous;
/// the file watcher is the only signal).
async fn until_served_by(p: &support::Portero, backend: &Echo) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let before = backend.hits();
            let r = get(&p.url("/api/x"), &[]).await;
            if r.status == 200 && backend.hits() > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the new config took effect within 10 s");
}

#[tokio::test]
async fn a_changed_file_takes_effect_and_a_broken_one_is_refused() {
    let (a, b) = (Echo::start().await, Echo::start().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portero.toml");
    write_config(&path, a.addr);
    let config = Config::load_file(&path).unwrap();
    let reloader = Reloader {
        path: path.clone(),
        overrides: Overrides::default(),
    };
    let p = start_reloading(config, Some(reloader.clone())).await;
    assert_eq!(get(&p.url("/api/x"), &[]).await.status, 200);
    assert_eq!(a.hits(), 1);

    write_config(&path, b.addr);
    until_served_by(&p, &b).await;

    // A broken file: every problem reported, the running config kept.
    std::fs::write(&path, "[[routes]]\nprefix = \"api\"\nupstream = \"nope\"\n").unwrap();
    let shared_check = reloader.reload_report();
    assert!(shared_check.contains("routes[0].prefix"), "{shared_check}");
    assert!(
        shared_check.contains("routes[0].upstream"),
        "{shared_check}"
    );
    let before = b.hits();
    assert_eq!(get(&p.url("/api/x"), &[]).await.status, 200);
    assert_eq!(b.hits(), before + 1, "still served by the last good config");
}

#[tokio::test]
async fn an_spa_folder_built_after_startup_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let dist = dir.path().join("dist");
    let mut c = support::config("[upstreams.backend]\nurl = \"http://127.0.0.1:9\"\n");
    portero::config::Overrides {
        spa: Some(dist.to_string_lossy().into_owned()),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap();
    let p = start(c).await;
    let r = get(&p.url("/"), &[("accept", "text/html")]).await;
    assert!(
        r.text().contains("portero is running"),
        "welcome page first"
    );
    std::fs::create_dir(&dist).unwrap();
    std::fs::write(dist.join("index.html"), "<html><body>built</body></html>").unwrap();
    // The folder's appearance is noticed by a watcher, not by requests:
    // poll until it is served.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = get(&p.url("/"), &[("accept", "text/html")]).await;
        if r.status == 200 && r.text().contains("built") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new folder is not served after 10 s: {} {}",
            r.status,
            r.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

trait Report {
    fn reload_report(&self) -> String;
}

impl Report for Reloader {
    /// Runs a reload against a throwaway state and returns why it was kept.
    fn reload_report(&self) -> String {
        let shared = portero::internals::Shared::new(Config::embedded(), 1);
        match self.reload(&shared) {
            Outcome::Kept(why) => why,
            Outcome::Applied { .. } => panic!("a broken config was applied"),
        }
    }
}

/// A Kubernetes ConfigMap volume: `portero.toml -> ..data/portero.toml`,
/// `..data -> ..<timestamp>/`. An update writes a new timestamped folder
/// and swaps `..data` atomically (a new symlink renamed over the old one);
/// no file named portero.toml is ever written.
#[cfg(unix)]
#[tokio::test]
async fn a_configmap_style_symlink_swap_reloads_the_config() {
    use std::os::unix::fs::symlink;
    let (a, b) = (Echo::start().await, Echo::start().await);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = root.join("..2026_11_30_12_00_00.123");
    std::fs::create_dir(&first).unwrap();
    write_config(&first.join("portero.toml"), a.addr);
    symlink("..2026_11_30_12_00_00.123", root.join("..data")).unwrap();
    symlink("..data/portero.toml", root.join("portero.toml")).unwrap();
    let path = root.join("portero.toml");
    let config = Config::load_file(&path).unwrap();
    let reloader = Reloader {
        path: path.clone(),
        overrides: Overrides::default(),
    };
    let p = start_reloading(config, Some(reloader)).await;
    assert_eq!(get(&p.url("/api/x"), &[]).await.status, 200);
    assert_eq!(a.hits(), 1);

    // What the kubelet does: a new folder, a new symlink, renamed over.
    let second = root.join("..2026_11_30_12_05_00.456");
    std::fs::create_dir(&second).unwrap();
    write_config(&second.join("portero.toml"), b.addr);
    symlink("..2026_11_30_12_05_00.456", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(&first).unwrap();
    until_served_by(&p, &b).await;
}
