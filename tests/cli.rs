//! The `portero` binary as users run it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_portero");

#[test]
fn check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[upstreams.backend]\nurl = \"http://127.0.0.1:8000\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"nowhere\"\n[[routes]]\nprefix = \"api\"\nupstream = \"bakend\"\n[oops]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "bad.toml:2:10: server.listen[0]",
        "bad.toml:4:10: routes[0].prefix",
        "bad.toml:5:12: routes[0].upstream: no upstream named \"bakend\"",
        "bad.toml:6:2: oops: unknown key",
        "4 problem(s) found",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }

    let out = Command::new(BIN)
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn check_uses_the_embedded_default_in_an_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("<embedded default>: ok"));
}

#[test]
fn help_and_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("portero "));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--listen",
        "--backend",
        "--spa",
        "--base-domain",
        "--log-level",
        "check",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let out = Command::new(BIN)
        .args(["--backend", "ftp://x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--backend"));
}

/// `portero` with no config in an empty folder serves the welcome page
/// (bound to port 0 here: tests never use fixed ports) and exits 0 on SIGTERM.
#[test]
fn no_arguments_in_an_empty_folder_serves_the_welcome_page() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0"]);
    let (mut child, addr) = start(cmd, dir.path(), "http");
    let body = http_get(&addr, "/");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("portero is running"));
    assert!(body.contains("./dist"));
    send_sigterm(child.id());
    let status = wait_timeout(&mut child, Duration::from_secs(10));
    assert_eq!(status, Some(0));
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn send_sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_timeout(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

#[test]
fn check_loads_the_certificates_the_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tls.toml");
    std::fs::write(
        &cfg,
        "[tls]\nlisten = \"127.0.0.1:0\"\n[[tls.certs]]\ncert = \"missing-cert.pem\"\nkey = \"missing-key.pem\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing-cert.pem"), "{err}");
}

#[test]
fn an_address_in_use_is_a_plain_error_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--listen", &addr])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(err.contains("--listen"), "{err}");
    assert_eq!(
        err.matches("Address already in use").count(),
        1,
        "the cause once: {err}"
    );
}

/// Issue #18's flow as users run it: `portero cert` in a folder, then
/// `portero --tls-listen` alone in the same folder serves HTTPS for any
/// tenant with a certificate the development CA signed for its name. In a
/// folder without the CA, startup says to run `portero cert` first.
#[test]
fn cert_then_tls_listen_alone_serves_https_for_any_tenant() {
    use std::io::{Read, Write};
    use std::sync::Arc;

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .current_dir(empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("run `portero cert` first"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["cert", "--base-domain", "example.test"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("for: localhost, 127.0.0.1, ::1, example.test, *.example.test\n"),
        "{text}"
    );
    assert!(
        text.contains("portero --tls-listen 127.0.0.1:8443"),
        "{text}"
    );

    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0"])
        .args(["--base-domain", "example.test"]);
    let (mut child, addr) = start(cmd, dir.path(), "https");

    let ca = std::fs::read(dir.path().join("certs/dev-ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    for name in ["acme.localhost", "globex.example.test", "localhost"] {
        let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let conn = rustls::ClientConnection::new(client.clone(), server_name).unwrap();
        let tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        write!(
            tls,
            "GET /__portero/health HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut reply = String::new();
        // The server may close without close_notify after the response.
        let _ = tls.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{name}: {reply}");
    }
    send_sigterm(child.id());
    assert_eq!(wait_timeout(&mut child, Duration::from_secs(10)), Some(0));
}

/// `--log-format json --access-log FILE`: one JSON object per request, and
/// a graceful stop loses none of them.
#[test]
fn json_access_log_to_a_file_parses_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--access-log",
    ])
    .arg(&log);
    let (mut child, addr) = start(cmd, dir.path(), "http");
    const N: usize = 50;
    for i in 0..N {
        let r = http_get(&addr, &format!("/page-{i}"));
        assert!(r.starts_with("HTTP/1.1 "), "{r}");
    }
    send_sigterm(child.id());
    assert_eq!(wait_timeout(&mut child, Duration::from_secs(10)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), N, "every request, none lost at the stop");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["method"], "GET");
        assert_eq!(l["path"], format!("/page-{i}"));
        assert_eq!(l["host"], "localhost");
        assert_eq!(l["peer"], "127.0.0.1");
        assert!(l["status"].as_u64().is_some(), "{l}");
        assert!(l["ms"].as_f64().is_some(), "{l}");
        assert!(l["bytes"].as_u64().is_some(), "{l}");
        assert_eq!(l["route"], "/");
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
    }
}

#[test]
fn hosts_prints_loopback_lines_for_the_configured_tenants() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("portero.toml"),
        "[upstreams.b2]\nurl = \"http://127.0.0.1:8001\"\n\
         [tenants]\nbase_domain = \"chalanpro.net\"\n\
         local_suffixes = [\"localhost\", \"chalanpro.localhost\"]\n\
         [tenants.overrides.acme]\nupstream = \"b2\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["hosts", "--tenant", "globex"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "127.0.0.1 acme.localhost\n::1 acme.localhost\n",
        "127.0.0.1 globex.localhost\n",
        "127.0.0.1 chalanpro.localhost\n",
        "::1 acme.chalanpro.localhost\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains(" localhost\n"),
        "localhost itself is left alone"
    );
}

#[test]
fn hosts_write_keeps_a_marked_block_with_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    let user = "127.0.0.1 localhost\n10.0.0.7 nas # mine\n";
    std::fs::write(&file, user).unwrap();
    let write = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args([
                "hosts",
                "--base-domain",
                "chalanpro.net",
                "--write",
                "--file",
            ])
            .arg(&file)
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&file).unwrap()
    };
    let once = write(&["--tenant", "acme"]);
    assert!(once.starts_with(user), "{once}");
    assert!(
        once.ends_with(
            "# BEGIN portero\n# written by `portero hosts --write`: edits inside are replaced\n\
             127.0.0.1 acme.localhost\n::1 acme.localhost\n# END portero\n"
        ),
        "{once}"
    );
    let backup = dir.path().join("hosts.portero.bak");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), user);
    assert_eq!(write(&["--tenant", "acme"]), once, "idempotent");
    // A line the user adds after the block stays; the block is replaced.
    std::fs::write(&file, format!("{once}192.168.1.2 printer\n")).unwrap();
    let again = write(&["--tenant", "globex"]);
    assert!(again.starts_with(user));
    assert!(again.contains("::1 globex.localhost\n# END portero\n192.168.1.2 printer\n"));
    assert!(!again.contains("acme"), "{again}");
    assert_eq!(again.matches("# BEGIN portero").count(), 1);
}

#[cfg(unix)]
#[test]
fn hosts_write_without_permission_says_to_use_sudo() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("etc");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("hosts");
    std::fs::write(&file, "127.0.0.1 localhost\n").unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let out = Command::new(BIN)
        .args(["hosts", "--name", "acme.test", "--write", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    if std::fs::read_to_string(&file)
        .unwrap()
        .contains("acme.test")
    {
        return; // running as root: permissions do not apply
    }
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs root"), "{err}");
    assert!(err.contains("sudo "), "{err}");
    assert!(
        err.contains("hosts --name acme.test --write --file"),
        "{err}"
    );
}

/// `portero cert --install` / `--uninstall` against a temporary root with
/// stand-in commands: the CA is copied into the Debian anchor folder and
/// `update-ca-certificates` and `certutil` run for Chromium's and
/// Firefox's databases; uninstall reverses it.
#[cfg(unix)]
#[test]
fn cert_install_and_uninstall_into_a_temporary_root() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let anchors = r.join("usr/local/share/ca-certificates");
    std::fs::create_dir_all(&anchors).unwrap();
    std::fs::create_dir_all(r.join("home/dev/.pki/nssdb")).unwrap();
    std::fs::create_dir_all(r.join("home/dev/.mozilla/firefox/ab12.default-release")).unwrap();
    std::fs::create_dir_all(r.join("home/dev/.mozilla/firefox/Crash Reports")).unwrap();
    let bin = r.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = r.join("log");
    for cmd in ["update-ca-certificates", "certutil"] {
        let p = bin.join(cmd);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{cmd} $*\" >> '{}'\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = |args: &[&str], path: &std::path::Path| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(work.path())
            .env("PORTERO_INSTALL_ROOT", r)
            .env("HOME", "/home/dev")
            .env("PATH", path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };

    let text = run(&["cert", "--install"], &bin);
    let ca = std::fs::read(work.path().join("certs/dev-ca.pem")).unwrap();
    assert_eq!(
        std::fs::read(anchors.join("portero-dev-ca.crt")).unwrap(),
        ca
    );
    let nssdb = format!("sql:{}", r.join("home/dev/.pki/nssdb").display());
    let firefox = format!(
        "sql:{}",
        r.join("home/dev/.mozilla/firefox/ab12.default-release")
            .display()
    );
    let ca_path = work.path().join("certs/dev-ca.pem").canonicalize().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged,
        format!(
            "update-ca-certificates \n\
             certutil -A -n portero development CA -t C,, -i {ca} -d {nssdb}\n\
             certutil -A -n portero development CA -t C,, -i {ca} -d {firefox}\n",
            ca = ca_path.display()
        )
    );
    // Each step is printed before it runs.
    assert!(
        text.contains(&format!(
            "==> cp {} {}\n    ok\n==> update-ca-certificates\n    ok\n",
            ca_path.display(),
            anchors.join("portero-dev-ca.crt").display()
        )),
        "{text}"
    );
    assert!(!text.contains("sudo"), "{text}");

    std::fs::remove_file(&log).unwrap();
    run(&["cert", "--uninstall"], &bin);
    assert!(!anchors.join("portero-dev-ca.crt").exists());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!(
            "update-ca-certificates --fresh\n\
             certutil -D -n portero development CA -d {nssdb}\n\
             certutil -D -n portero development CA -d {firefox}\n"
        )
    );

    // Commands that are not installed are skipped, saying so.
    let empty = r.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let text = run(&["cert", "--install"], &empty);
    assert!(
        text.contains("skipped: update-ca-certificates not found"),
        "{text}"
    );
    assert!(text.contains("skipped: certutil not found"), "{text}");
    assert!(
        anchors.join("portero-dev-ca.crt").exists(),
        "the copy still happens"
    );
}

/// Starts the binary in `dir` and waits for its banner's `listening on
/// <scheme>://` line: the process and the address it bound.
fn start(mut cmd: Command, dir: &std::path::Path, scheme: &str) -> (std::process::Child, String) {
    let mut child = cmd.current_dir(dir).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let marker = format!("listening on {scheme}://");
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("startup banner");
        if let Some(rest) = line.split(&marker).nth(1) {
            break rest.trim().to_string();
        }
    };
    (child, addr)
}
