//! `portero cert --install` / `--uninstall`: the development CA into (or out
//! of) the system trust store and the NSS databases of Chromium and
//! Firefox.
//!
//! Every step is printed before it runs. A step that needs root, when
//! portero is not root, is not run: the exact command to run with `sudo` is
//! printed instead (portero never runs sudo). A command that is not
//! installed (`certutil`, `update-ca-certificates`) skips its step.
//!
//! [`Env`] holds everything taken from the machine (the path prefix, the
//! home folder, `PATH`, whether portero is root, the platform), so tests
//! install into a temporary folder with stand-in commands.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The name the CA is stored under in NSS databases and the keychain.
pub const NICKNAME: &str = "portero development CA";
/// A Linux system trust store: the folder of extra anchors, the file name
/// the CA gets there, and the command that rebuilds the store from it.
struct Anchors {
    dir: &'static str,
    file: &'static str,
    update: &'static str,
    install_args: &'static [&'static str],
    uninstall_args: &'static [&'static str],
}

/// Debian and Ubuntu, then Fedora; the first whose folder exists is used.
const LINUX_STORES: [Anchors; 2] = [
    Anchors {
        dir: "usr/local/share/ca-certificates",
        file: "portero-dev-ca.crt",
        update: "update-ca-certificates",
        install_args: &[],
        uninstall_args: &["--fresh"],
    },
    Anchors {
        dir: "etc/pki/ca-trust/source/anchors",
        file: "portero-dev-ca.pem",
        update: "update-ca-trust",
        install_args: &["extract"],
        uninstall_args: &["extract"],
    },
];
const STORE_HINT: &str = "install the ca-certificates package and run again";

fn linux_store(env: &Env) -> Option<&'static Anchors> {
    LINUX_STORES.iter().find(|a| env.at(a.dir).is_dir())
}
const MAC_KEYCHAIN: &str = "Library/Keychains/System.keychain";

/// What the steps depend on.
#[derive(Debug, Clone)]
pub struct Env {
    /// Prefixed to every path (`/` normally; `PORTERO_INSTALL_ROOT`).
    pub root: PathBuf,
    /// The user's home folder, below `root`.
    pub home: Option<PathBuf>,
    /// Where commands are looked up.
    pub path: Option<OsString>,
    /// Whether steps that need root may run.
    pub privileged: bool,
    pub macos: bool,
}

impl Env {
    /// The running machine: `root` is `/` unless given; under a given root
    /// (packaging, tests) no step is treated as needing root.
    pub fn current(root: Option<PathBuf>) -> Env {
        let privileged = root.is_some() || is_root();
        Env {
            root: root.unwrap_or_else(|| PathBuf::from("/")),
            home: std::env::var_os("HOME").map(PathBuf::from),
            path: std::env::var_os("PATH"),
            privileged,
            macos: cfg!(target_os = "macos"),
        }
    }

    /// `path` (absolute) under the root.
    fn at(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }

    fn find(&self, program: &str) -> Option<PathBuf> {
        let path = self.path.as_ref()?;
        std::env::split_paths(path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    }
}

/// Whether the effective user is root.
fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to the process's effective user (Linux);
        // elsewhere, ask `id`.
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return m.uid() == 0;
        }
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
    }
    #[cfg(not(unix))]
    {
        false
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Copy { from: PathBuf, to: PathBuf },
    Remove(PathBuf),
    Run { program: String, args: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    pub needs_root: bool,
    /// Printed when the step's command is not installed.
    pub hint: &'static str,
}

impl Step {
    /// The step as a shell command.
    pub fn command(&self) -> String {
        let words: Vec<String> = match &self.action {
            Action::Copy { from, to } => vec![
                "cp".into(),
                from.display().to_string(),
                to.display().to_string(),
            ],
            Action::Remove(p) => vec!["rm".into(), "-f".into(), p.display().to_string()],
            Action::Run { program, args } => std::iter::once(program.clone())
                .chain(args.iter().cloned())
                .collect(),
        };
        words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
    }
}

fn quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// The plan: steps, and notes about what was not found.
#[derive(Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

fn run(program: &str, args: &[&str], needs_root: bool, hint: &'static str) -> Step {
    Step {
        action: Action::Run {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        },
        needs_root,
        hint,
    }
}

const NSS_HINT: &str = "install it (Debian/Ubuntu: libnss3-tools; Fedora: nss-tools) and run again";

/// The NSS databases: Chromium's `~/.pki/nssdb` and each Firefox profile
/// named `*.default*` (the usual and the snap installation), when present.
fn nss_databases(env: &Env) -> Vec<PathBuf> {
    let Some(home) = &env.home else {
        return Vec::new();
    };
    let home = env.at(home);
    let mut dbs = Vec::new();
    let chromium = home.join(".pki/nssdb");
    if chromium.is_dir() {
        dbs.push(chromium);
    }
    for firefox in [".mozilla/firefox", "snap/firefox/common/.mozilla/firefox"] {
        let Ok(entries) = std::fs::read_dir(home.join(firefox)) else {
            continue;
        };
        let mut profiles: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".default"))
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        profiles.sort();
        dbs.extend(profiles);
    }
    dbs
}

/// What `--install` does on this machine, for the CA file `ca`
/// (absolute, so printed commands work from anywhere).
pub fn install(env: &Env, ca: &Path) -> Plan {
    let mut plan = Plan::default();
    let ca_s = ca.display().to_string();
    if env.macos {
        let keychain = env.at(MAC_KEYCHAIN).display().to_string();
        plan.steps.push(run(
            "security",
            &[
                "add-trusted-cert",
                "-d",
                "-r",
                "trustRoot",
                "-k",
                &keychain,
                &ca_s,
            ],
            true,
            "",
        ));
    } else if let Some(store) = linux_store(env) {
        plan.steps.push(Step {
            action: Action::Copy {
                from: ca.to_path_buf(),
                to: env.at(store.dir).join(store.file),
            },
            needs_root: true,
            hint: "",
        });
        plan.steps
            .push(run(store.update, store.install_args, true, STORE_HINT));
    } else {
        let dirs: Vec<String> = LINUX_STORES.iter().map(|a| format!("/{}", a.dir)).collect();
        plan.notes.push(format!(
            "no system trust store found ({} or macOS): trust {ca_s} by hand (certs/README.md)",
            dirs.join(", ")
        ));
    }
    let dbs = nss_databases(env);
    for db in &dbs {
        let d = format!("sql:{}", db.display());
        plan.steps.push(run(
            "certutil",
            &["-A", "-n", NICKNAME, "-t", "C,,", "-i", &ca_s, "-d", &d],
            false,
            NSS_HINT,
        ));
    }
    if dbs.is_empty() {
        plan.notes.push(
            "no Chromium or Firefox NSS database found (~/.pki/nssdb, ~/.mozilla/firefox/*.default*): \
             start the browser once, then run this again"
                .into(),
        );
    }
    plan
}

/// What `--uninstall` does: the reverse of [`install`].
pub fn uninstall(env: &Env, ca: &Path) -> Plan {
    let mut plan = Plan::default();
    if env.macos {
        let keychain = env.at(MAC_KEYCHAIN).display().to_string();
        plan.steps.push(run(
            "security",
            &["delete-certificate", "-c", NICKNAME, &keychain],
            true,
            "",
        ));
    } else if let Some(store) = linux_store(env) {
        plan.steps.push(Step {
            action: Action::Remove(env.at(store.dir).join(store.file)),
            needs_root: true,
            hint: "",
        });
        plan.steps
            .push(run(store.update, store.uninstall_args, true, STORE_HINT));
    } else {
        plan.notes.push(format!(
            "no system trust store found: remove {} by hand if you trusted it",
            ca.display()
        ));
    }
    for db in nss_databases(env) {
        let d = format!("sql:{}", db.display());
        plan.steps.push(run(
            "certutil",
            &["-D", "-n", NICKNAME, "-d", &d],
            false,
            NSS_HINT,
        ));
    }
    plan
}

/// How the steps went.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub done: usize,
    /// Steps left for the user to run with sudo.
    pub needs_root: usize,
    /// Steps whose command is not installed.
    pub missing: usize,
    pub failed: usize,
}

/// Runs `plan`, printing each step to `out` before it runs and what came
/// of it.
pub fn execute(env: &Env, plan: &Plan, out: &mut dyn Write) -> std::io::Result<Outcome> {
    let mut o = Outcome::default();
    for note in &plan.notes {
        writeln!(out, "note: {note}")?;
    }
    for step in &plan.steps {
        writeln!(out, "==> {}", step.command())?;
        if step.needs_root && !env.privileged {
            writeln!(
                out,
                "    needs root, skipped; run it yourself:\n    sudo {}",
                step.command()
            )?;
            o.needs_root += 1;
            continue;
        }
        let result = match &step.action {
            Action::Copy { from, to } => std::fs::copy(from, to).map(|_| ()),
            Action::Remove(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            },
            Action::Run { program, args } => {
                let Some(exe) = env.find(program) else {
                    writeln!(out, "    skipped: {program} not found; {}", step.hint)?;
                    o.missing += 1;
                    continue;
                };
                match Command::new(exe).args(args).status() {
                    Ok(s) if s.success() => Ok(()),
                    Ok(s) => Err(std::io::Error::other(format!("{program} exited with {s}"))),
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) => {
                writeln!(out, "    ok")?;
                o.done += 1;
            }
            Err(e) => {
                writeln!(out, "    failed: {e}")?;
                o.failed += 1;
            }
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_DIR: &str = LINUX_STORES[0].dir;
    const DEBIAN_FILE: &str = LINUX_STORES[0].file;
    const FEDORA_DIR: &str = LINUX_STORES[1].dir;
    const FEDORA_FILE: &str = LINUX_STORES[1].file;

    fn env(root: &Path, privileged: bool) -> Env {
        Env {
            root: root.to_path_buf(),
            home: Some("/home/dev".into()),
            path: Some(root.join("bin").into_os_string()),
            privileged,
            macos: false,
        }
    }

    #[test]
    fn a_step_needing_root_prints_the_sudo_command_and_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(DEBIAN_DIR)).unwrap();
        let ca = dir.path().join("dev-ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let e = env(dir.path(), false);
        let plan = install(&e, &ca);
        let mut out = Vec::new();
        let o = execute(&e, &plan, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(o.needs_root, 2, "{out}");
        let target = dir.path().join(DEBIAN_DIR).join(DEBIAN_FILE);
        assert!(!target.exists(), "nothing copied without root");
        assert!(
            out.contains(&format!(
                "    sudo cp {} {}\n",
                ca.display(),
                target.display()
            )),
            "{out}"
        );
        assert!(out.contains("    sudo update-ca-certificates\n"), "{out}");
        assert!(out.contains("no Chromium or Firefox NSS database"), "{out}");
    }

    #[test]
    fn fedora_and_macos_plans() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(FEDORA_DIR)).unwrap();
        let ca = Path::new("/x/dev-ca.pem");
        let cmds = |p: Plan| p.steps.iter().map(Step::command).collect::<Vec<_>>();
        let e = env(dir.path(), true);
        let anchors = dir.path().join(FEDORA_DIR);
        assert_eq!(
            cmds(install(&e, ca)),
            [
                format!("cp /x/dev-ca.pem {}/{FEDORA_FILE}", anchors.display()),
                "update-ca-trust extract".into()
            ]
        );
        let mac = Env {
            root: "/".into(),
            macos: true,
            ..e
        };
        assert_eq!(
            cmds(install(&mac, ca)),
            [
                "security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain /x/dev-ca.pem"
            ]
        );
        assert_eq!(
            cmds(uninstall(&mac, ca)),
            [
                "security delete-certificate -c 'portero development CA' /Library/Keychains/System.keychain"
            ]
        );
    }
}
