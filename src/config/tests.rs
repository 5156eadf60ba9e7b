//! Config loading: valid files, every error at once with positions, flags.

use super::*;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_str(text, Source::File("test.toml".into()))
}

fn errors(text: &str) -> Vec<String> {
    load(text)
        .expect_err("config should be invalid")
        .to_string()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn embedded_default_is_the_config_file_and_is_valid() {
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/portero.toml"))
            .expect("config/portero.toml exists");
    assert_eq!(on_disk, DEFAULT_TOML);
    let c = Config::embedded();
    assert_eq!(c.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(
        c.upstreams["backend"].url.to_string(),
        "http://127.0.0.1:8000"
    );
    let prefixes: Vec<String> = c.routes.iter().map(|r| r.prefix.to_string()).collect();
    assert_eq!(
        prefixes,
        ["/api", "/admin", "/static", "/media", "/ws", "/"]
    );
    assert_eq!(c.spa.source, SpaSource::Dir("./dist".into()));
    assert!(c.spa.live_reload);
    assert_eq!(c.upstreams["backend"].wait_for, Duration::from_secs(10));
}

#[test]
fn example_configs_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 1, "no example configs found");
}

#[test]
fn server_timers_and_the_connection_cap() {
    let c = load("[server]\n").unwrap();
    assert_eq!(c.server.tls_handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.server.http2_idle_timeout, Duration::from_secs(60));
    assert_eq!(c.server.send_timeout, Duration::from_secs(60));
    assert_eq!(c.server.max_connections, None);
    let c = load(
        "[server]\ntls_handshake_timeout = \"2s\"\nhttp2_idle_timeout = \"5m\"\nsend_timeout = 30\nmax_connections = 500\n",
    )
    .unwrap();
    assert_eq!(c.server.tls_handshake_timeout, Duration::from_secs(2));
    assert_eq!(c.server.http2_idle_timeout, Duration::from_secs(300));
    assert_eq!(c.server.send_timeout, Duration::from_secs(30));
    assert_eq!(c.server.max_connections, Some(500));
    let errors = load("[server]\nsend_timeout = \"0s\"\nmax_connections = 0\n").unwrap_err();
    let keys: Vec<&str> = errors.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["server.send_timeout", "server.max_connections"]);
}

#[test]
fn a_valid_file() {
    let c = load(
        r#"
profile = "staging"
[server]
listen = ["0.0.0.0:8080", "[::1]:9090"]
header_read_timeout = "5s"
trusted_proxies = ["10.0.0.0/8", "192.168.1.1"]
[upstreams.backend]
url = "http://localhost:8000"
[upstreams.branch]
url = "https://127.0.0.1:8001/base/"
wait_for = "3s"
[[routes]]
prefix = "/api/"
upstream = "backend"
body_limit = "10MB"
host = "preserve"
[[routes]]
prefix = "/ws"
exact = true
upstream = "branch"
[[routes]]
prefix = "/files"
static_dir = "./files"
[[routes]]
prefix = "/"
spa = true
[spa]
root = "app/dist"
[tenants]
base_domain = "Chalanpro.NET."
allowed_hosts = ["*.example.com", "lan.box"]
header = "X-Tenant"
[tenants.overrides.acme]
upstream = "branch"
"#,
    )
    .unwrap();
    assert_eq!(c.profile, Profile::Staging);
    assert_eq!(c.server.listen.len(), 2);
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(5));
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert_eq!(c.upstreams["backend"].wait_for, Duration::ZERO);
    assert_eq!(c.upstreams["branch"].wait_for, Duration::from_secs(3));
    assert_eq!(c.routes[0].prefix.as_str(), "/api");
    assert_eq!(c.routes[0].body_limit, Some(10_000_000));
    assert_eq!(c.routes[0].host, HostMode::Preserve);
    assert!(c.routes[1].exact);
    assert_eq!(c.routes[2].target, RouteTarget::Static("./files".into()));
    assert!(!c.spa.live_reload, "staging turns live reload off");
    assert_eq!(
        c.tenants.base_domain.as_ref().unwrap().as_str(),
        "chalanpro.net"
    );
    assert_eq!(c.tenants.allowed_hosts.len(), 2);
    assert_eq!(
        c.tenants.overrides["acme"].upstream.as_deref(),
        Some("branch")
    );
}

#[test]
fn several_errors_are_all_reported_with_positions() {
    let text = r#"[server]
listen = "nowhere"

[upstreams.backend]
url = "ftp://127.0.0.1:8000"

[[routes]]
prefix = "api"
upstream = "backend"

[[routes]]
prefix = "/admin"
upstream = "bakend"

[[routes]]
prefix = "/x"
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    let expect = [
        "test.toml:2:10: server.listen[0]:",
        "test.toml:5:7: upstreams.backend.url:",
        "test.toml:8:10: routes[0].prefix:",
        "test.toml:13:12: routes[1].upstream: no upstream named \"bakend\" (known: backend)",
        "test.toml:15:1: routes[2]: no target",
    ];
    for want in expect {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errs:#?}"
        );
    }
}

#[test]
fn unknown_keys_are_rejected_without_hiding_other_errors() {
    let errs = errors(
        r#"
[server]
lisen = "127.0.0.1:8080"
[upstreams.backend]
url = "http://127.0.0.1:8000"
[[routes]]
prefix = "/api"
upstream = "backend"
fooo = 1
[[routes]]
prefix = "/admin"
upstream = "nope"
[surprise]
"#,
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(
        errs[0].contains("test.toml:3:1: server.lisen: unknown field `lisen`"),
        "{errs:#?}"
    );
    assert!(
        errs[1].contains("test.toml:9:1: routes[0].fooo: unknown field `fooo`"),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("routes[1].upstream: no upstream named \"nope\" (known: backend)"))
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("test.toml:13:2: surprise: unknown key"))
    );
}

#[test]
fn syntax_errors_have_positions() {
    let errs = errors("[server\nlisten = 1\n");
    assert!(errs[0].starts_with("test.toml:1:"), "{errs:#?}");
}

#[test]
fn meaning_is_checked() {
    let errs = errors(
        r#"
profile = "prod"
[server]
runtime = "green-threads"
http1 = "h1"
[upstreams.backend]
url = "127.0.0.1:8000"
[upstreams.other]
[[routes]]
prefix = "/a"
spa = true
upstream = "backend"
[[routes]]
prefix = "/b"
static_dir = "x"
body_limit = "1MB"
[[routes]]
prefix = "/c/../d"
spa = true
[[routes]]
prefix = "/b/"
spa = true
[tenants]
base_domain = "bad domain"
header = "X Tenant"
"#,
    );
    let want = [
        "profile: unknown profile",
        "server.runtime: unknown runtime \"green-threads\" (known: per-core, threads)",
        "server.http1: unknown HTTP/1 path \"h1\" (known: fast, hyper)",
        "upstreams.backend.url: \"127.0.0.1:8000\" has no scheme",
        "upstreams.other: missing `url`",
        "routes[0]: several targets",
        "routes[1].body_limit: only applies to `upstream` routes",
        "routes[2].prefix:",
        "routes[3].prefix: prefix \"/b\" is already used by routes[1]",
        "tenants.base_domain:",
        "tenants.header:",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.contains(w)),
            "missing {w:?} in {errs:#?}"
        );
    }
}

#[test]
fn flags_override_the_file() {
    let mut c = load(
        r#"
[server]
listen = "0.0.0.0:9000"
[upstreams.backend]
url = "http://127.0.0.1:8000"
wait_for = "2s"
[spa]
root = "app/dist"
"#,
    )
    .unwrap();
    Overrides {
        listen: Some("127.0.0.1:0".into()),
        backend: Some("http://127.0.0.1:9999".into()),
        spa: Some("other/dist".into()),
        base_domain: Some("example.net".into()),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap();
    assert_eq!(c.server.listen, vec!["127.0.0.1:0".parse().unwrap()]);
    let backend = &c.upstreams["backend"];
    assert_eq!(backend.url.to_string(), "http://127.0.0.1:9999");
    assert_eq!(
        backend.wait_for,
        Duration::from_secs(2),
        "other upstream settings kept"
    );
    assert_eq!(c.spa.source, SpaSource::Dir("other/dist".into()));
    assert_eq!(c.tenants.base_domain.unwrap().as_str(), "example.net");
}

#[test]
fn bad_flags_are_named() {
    let mut c = Config::embedded();
    let errs = Overrides {
        listen: Some("nope".into()),
        backend: Some("ftp://x".into()),
        tls_listen: Some("127.0.0.1:0".into()),
        tls_cert: Some("certs/dev.pem".into()),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap_err();
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["--listen", "--backend", "--tls-cert"]);
}

#[test]
fn the_http1_flag_picks_the_path_and_names_a_bad_one() {
    let mut c = Config::embedded();
    assert_eq!(c.server.http1, Http1Mode::Fast, "the default");
    let flag = |v: &str| Overrides {
        http1: Some(v.into()),
        ..Default::default()
    };
    flag("hyper").apply(&mut c).unwrap();
    assert_eq!(c.server.http1, Http1Mode::Hyper);
    let errs = flag("h1").apply(&mut c).unwrap_err();
    assert_eq!(errs[0].key, "--http1");
    assert!(
        errs[0].message.contains("known: fast, hyper"),
        "{:?}",
        errs[0]
    );
    assert_eq!(c.server.http1, Http1Mode::Hyper, "unchanged by a bad flag");
}

/// `--tls-listen` alone: certificates minted by the dev CA in `certs/`,
/// or the file's own [tls] moved to that address.
#[test]
fn tls_listen_alone_mints_or_moves_the_files_tls() {
    let mut c = Config::embedded();
    let flags = Overrides {
        tls_listen: Some("127.0.0.1:8443".into()),
        ..Default::default()
    };
    flags.apply(&mut c).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.listen, ["127.0.0.1:8443".parse().unwrap()]);
    assert!(tls.certs.is_empty());
    assert_eq!(tls.ca_dir, std::path::Path::new("certs"));

    let text = "[tls]\nlisten = \"127.0.0.1:9443\"\n\
                [[tls.certs]]\ncert = \"a.pem\"\nkey = \"a-key.pem\"\n";
    let mut c = Config::from_str(text, Source::Embedded).unwrap();
    flags.apply(&mut c).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.listen, ["127.0.0.1:8443".parse().unwrap()]);
    assert_eq!(tls.certs.len(), 1);
}

#[test]
fn tls_without_certificates_is_valid_with_a_ca_dir() {
    let c = Config::from_str("[tls]\nlisten = \"127.0.0.1:8443\"\n", Source::Embedded).unwrap();
    let tls = c.tls.unwrap();
    assert!(tls.certs.is_empty());
    assert_eq!(tls.ca_dir, std::path::Path::new("certs"));
    let text = "[tls]\nlisten = \"127.0.0.1:8443\"\nca_dir = \"/etc/portero/ca\"\n";
    let c = Config::from_str(text, Source::Embedded).unwrap();
    assert_eq!(
        c.tls.unwrap().ca_dir,
        std::path::Path::new("/etc/portero/ca")
    );
}

#[test]
fn spa_flag_accepts_a_dev_server_url() {
    let mut c = Config::embedded();
    Overrides {
        spa: Some("http://127.0.0.1:5173".into()),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap();
    assert_eq!(c.spa.source, SpaSource::DevServer("spa-dev-server".into()));
    assert!(c.upstreams.contains_key("spa-dev-server"));
}

#[test]
fn proxied_routes_have_a_body_limit_by_profile() {
    let dev = Config::embedded();
    let api = |c: &Config| {
        c.routes
            .iter()
            .find(|r| r.prefix.as_str() == "/api")
            .unwrap()
            .body_limit
    };
    assert_eq!(api(&dev), Some(1 << 30));
    let spa = dev.routes.iter().find(|r| r.target == RouteTarget::Spa);
    assert_eq!(spa.unwrap().body_limit, None, "only proxied routes");
    let staging = load("profile = \"staging\"\n").unwrap();
    assert_eq!(api(&staging), Some(100 << 20));
    let file = |limit: &str| {
        load(&format!(
            "profile = \"staging\"\n[upstreams.backend]\nurl = \"http://127.0.0.1:8000\"\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n{limit}"
        ))
        .unwrap()
        .routes[0]
            .body_limit
    };
    assert_eq!(file(""), Some(100 << 20));
    assert_eq!(file("body_limit = \"0\""), None, "0 lifts the limit");
    assert_eq!(file("body_limit = \"5MB\""), Some(5_000_000));
}

#[test]
fn admin_endpoints_default_to_loopback() {
    let c = Config::embedded();
    for ip in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
        assert!(c.admin.allows(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["10.0.0.1", "192.168.1.5", "::ffff:10.0.0.1", "2001:db8::1"] {
        assert!(!c.admin.allows(ip.parse().unwrap()), "{ip}");
    }
    let c = load("[admin]\nallow = [\"10.0.0.0/8\", \"192.168.1.5\"]\n").unwrap();
    assert!(c.admin.allows("192.168.1.5".parse().unwrap()));
    assert!(!c.admin.allows("127.0.0.1".parse().unwrap()));
    assert_eq!(
        errors("[admin]\nallow = [\"nope\"]\n"),
        vec![
            "test.toml:2:10: admin.allow[0]: \"nope\" is not an IP address or CIDR like \"10.0.0.0/8\""
        ]
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Lines a config is made of, valid and not, in any order.
    fn toml_like() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            Just("[server]".to_string()),
            Just("[[routes]]".to_string()),
            Just("[upstreams.backend]".to_string()),
            Just("[tenants]".to_string()),
            Just("[tls]".to_string()),
            Just("[spa]".to_string()),
            Just("[admin]".to_string()),
            Just("url = \"http://127.0.0.1:8000\"".to_string()),
            Just("prefix = \"/api\"".to_string()),
            Just("upstream = \"backend\"".to_string()),
            Just("spa = true".to_string()),
            "[a-z_]{1,12} = \"[ -~]{0,12}\"",
            "[a-z_]{1,12} = [0-9]{1,4}",
            "[a-z_]{1,12} = \\[\"[ -~]{0,8}\"\\]",
            "[ -~]{0,20}",
        ];
        proptest::collection::vec(line, 0..12).prop_map(|l| l.join("\n"))
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]

        #[test]
        fn loading_never_panics_and_every_error_points_into_the_file(text in toml_like()) {
            if let Err(errs) = Config::from_str(&text, Source::Embedded) {
                prop_assert!(!errs.errors.is_empty());
                for e in &errs.errors {
                    let span = e.span.as_ref();
                    prop_assert!(
                        span.is_some_and(|s| s.start <= s.end && s.end <= text.len()),
                        "{e:?}"
                    );
                    // Rendering (line:column from the span) never panics.
                    let _ = errs.to_string();
                }
            }
        }
    }
}

#[test]
fn routes_list_the_upgrades_they_tunnel() {
    let route = |extra: &str| {
        load(&format!(
            "[upstreams.backend]\nurl = \"http://127.0.0.1:8000\"\n\
             [[routes]]\nprefix = \"/ws\"\nupstream = \"backend\"\n{extra}"
        ))
        .map(|c| c.routes[0].upgrades.clone())
    };
    assert_eq!(route("").unwrap(), ["websocket"]);
    assert_eq!(route("websocket = false").unwrap(), Vec::<String>::new());
    assert_eq!(
        route("upgrades = [\"WebSocket\", \"my-proto\"]").unwrap(),
        ["websocket", "my-proto"]
    );
    assert_eq!(route("upgrades = []").unwrap(), Vec::<String>::new());
    let err = route("upgrades = [\"h2c\"]").unwrap_err().to_string();
    assert!(
        err.contains("routes[0].upgrades: h2c is never tunnelled"),
        "{err}"
    );
    let err = route("upgrades = [\"a,b\"]").unwrap_err().to_string();
    assert!(err.contains("is not a protocol name"), "{err}");
    let err = route("websocket = true\nupgrades = []")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not both"), "{err}");
}

#[test]
fn probes_answer_anyone_and_shutdown_delay_follows_the_profile() {
    let dev = Config::embedded();
    assert!(dev.admin.allows_probe("203.0.113.9".parse().unwrap()));
    assert!(dev.admin.allows_probe("2001:db8::1".parse().unwrap()));
    assert_eq!(dev.server.shutdown_delay, Duration::ZERO);
    let staging = load("profile = \"staging\"\n").unwrap();
    assert_eq!(staging.server.shutdown_delay, Duration::from_secs(5));
    let c = load("[admin]\nprobes = [\"10.0.0.0/8\"]\n").unwrap();
    assert!(c.admin.allows_probe("10.1.2.3".parse().unwrap()));
    assert!(!c.admin.allows_probe("127.0.0.1".parse().unwrap()));
}

#[test]
fn a_dev_server_gets_hot_reload_routes_only_with_default_routes() {
    let labels = |c: &Config| c.routes.iter().map(|r| r.label()).collect::<Vec<_>>();
    // The file names the dev server and no routes.
    let c = Config::from_str(
        "[spa]\ndev_server = \"http://127.0.0.1:8081\"\n",
        Source::Embedded,
    )
    .unwrap();
    assert_eq!(
        labels(&c),
        [
            "=/ws",
            "/sockjs-node",
            "/api",
            "/admin",
            "/static",
            "/media",
            "/ws",
            "/"
        ]
    );
    assert!(c.routes[..2].iter().all(|r| r.target == RouteTarget::Spa));
    // The flag over the embedded default (which spells the default routes out).
    let mut c = Config::embedded();
    Overrides {
        spa: Some("http://127.0.0.1:8081".into()),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap();
    assert_eq!(labels(&c)[..2], ["=/ws", "/sockjs-node"]);
    // And back to a folder: no dev-server routes.
    Overrides {
        spa: Some("dist".into()),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap();
    assert_eq!(
        labels(&c),
        ["/api", "/admin", "/static", "/media", "/ws", "/"]
    );
    // A file's own routes are kept as written.
    let c = Config::from_str(
        "[spa]\ndev_server = \"http://127.0.0.1:8081\"\n[[routes]]\nprefix = \"/\"\nspa = true\n",
        Source::Embedded,
    )
    .unwrap();
    assert_eq!(labels(&c), ["/"]);
}

#[test]
fn insecure_cookies_default_by_profile_and_never_in_staging() {
    assert!(load("").unwrap().server.insecure_cookies, "dev default");
    assert!(
        !load("[server]\ninsecure_cookies = false\n")
            .unwrap()
            .server
            .insecure_cookies
    );
    let staging = load("profile = \"staging\"\n").unwrap();
    assert!(!staging.server.insecure_cookies, "staging default");
    let errs = load("profile = \"staging\"\n[server]\ninsecure_cookies = true\n")
        .unwrap_err()
        .errors;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].key, "server.insecure_cookies");
    assert!(errs[0].span.is_some());
}

#[test]
fn the_inspector_is_on_in_dev_and_off_in_staging() {
    assert_eq!(Config::embedded().admin.inspector_size, 300);
    let staging = load("profile = \"staging\"\n").unwrap();
    assert_eq!(staging.admin.inspector_size, 0);
    let on = load("profile = \"staging\"\n[admin]\ninspector_size = 50\n").unwrap();
    assert_eq!(on.admin.inspector_size, 50);
}

#[test]
fn inspector_bodies_is_a_size_up_to_64k() {
    assert_eq!(Config::embedded().admin.inspector_bodies, 0);
    let on = load("[admin]\ninspector_bodies = \"4KiB\"\n").unwrap();
    assert_eq!(on.admin.inspector_bodies, 4096);
    for bad in ["\"65KiB\"", "\"lots\""] {
        let errs = load(&format!("[admin]\ninspector_bodies = {bad}\n"))
            .unwrap_err()
            .errors;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].key, "admin.inspector_bodies");
        assert!(errs[0].span.is_some());
    }
}
