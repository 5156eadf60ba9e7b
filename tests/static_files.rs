//! Serving the SPA's built files: safe paths, headers, conditional and
//! range requests, precompressed variants, cache policy, history fallback.

mod support;

use std::fs;
use std::time::Duration;

use support::fixtures::{self, DOTENV_MARKER, GIT_MARKER, SECRET, Spa};
use support::{Portero, Reply, get, request};

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml,*/*;q=0.8");

/// The fixture served without live reload, so bodies equal the files.
async fn plain() -> (Spa, Portero) {
    let spa = fixtures::spa();
    let p = support::start(spa.config("live_reload = false")).await;
    (spa, p)
}

fn assert_file(r: &Reply, rel: &str) {
    assert_eq!(r.status, 200, "{rel}: {}", r.text());
    assert_eq!(r.body.as_ref(), Spa::original(rel).as_slice(), "{rel}");
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn index_is_served_with_its_headers() {
    let (_spa, p) = plain().await;
    for path in ["/", "/index.html"] {
        let r = get(&p.url(path), &[]).await;
        assert_file(&r, "index.html");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        let etag = r.header("etag").unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong: {etag}"
        );
        assert!(httpdate::parse_http_date(r.header("last-modified").unwrap()).is_ok());
        assert_eq!(r.header("vary"), None, "no variants, no Vary");
    }
    p.stop().await;
}

#[tokio::test]
async fn folders_serve_their_index_and_never_a_listing() {
    let (_spa, p) = plain().await;
    for (path, file) in [
        ("/nested/", "nested/index.html"),
        ("/nested/deeper/", "nested/deeper/index.html"),
    ] {
        assert_file(&get(&p.url(path), &[]).await, file);
    }
    // Without the slash, a redirect to it: the page's relative links would
    // otherwise resolve one level up.
    for (path, location) in [("/nested", "nested/"), ("/nested/deeper", "deeper/")] {
        let r = get(&p.url(path), &[]).await;
        assert_eq!(r.status, 301, "{path}");
        assert_eq!(r.header("location"), Some(location), "{path}");
    }
    // A folder without index.html: 404, not a listing (and not the
    // fallback for a non-HTML client).
    let r = get(&p.url("/files/"), &[]).await;
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("hello world.txt"));
    p.stop().await;
}

#[tokio::test]
async fn names_with_spaces_and_non_ascii() {
    let (_spa, p) = plain().await;
    let r = get(&p.url("/files/hello%20world.txt"), &[]).await;
    assert_file(&r, "files/hello world.txt");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_file(
        &get(&p.url("/files/%C3%B1and%C3%BA.txt"), &[]).await,
        "files/ñandú.txt",
    );
    p.stop().await;
}

#[tokio::test]
async fn dotfiles_are_404_except_well_known() {
    let (_spa, p) = plain().await;
    for path in [
        "/.env",
        "/.git/config",
        "/.git/",
        "/%2eenv",
        "/env-link.txt",
    ] {
        let r = get(&p.url(path), &[HTML]).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains(DOTENV_MARKER) && !r.text().contains(GIT_MARKER));
    }
    assert_file(
        &get(&p.url("/.well-known/security.txt"), &[]).await,
        ".well-known/security.txt",
    );
    p.stop().await;
}

#[tokio::test]
async fn symlinks_inside_are_served_and_outside_are_404() {
    let (_spa, p) = plain().await;
    assert_file(&get(&p.url("/linked.js"), &[]).await, "app.3f9a1c2b.js");
    // The rule is where the link resolves to: back inside the root is fine.
    assert_file(
        &get(&p.url("/outside/dist/index.html"), &[]).await,
        "index.html",
    );
    for path in ["/escape.txt", "/outside/secret.txt", "/outside/dist/.env"] {
        let r = get(&p.url(path), &[HTML]).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.text().contains(SECRET));
    }
    p.stop().await;
}

#[tokio::test]
async fn traversal_payloads_never_leak() {
    let (_spa, p) = plain().await;
    let payloads = [
        "/../secret.txt",
        "/../../secret.txt",
        "/../../../../../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/..%5csecret.txt",
        "/%2e%2e%5csecret.txt",
        "/..\\secret.txt",
        "/..\\..\\secret.txt",
        "/%252e%252e/secret.txt",
        "/%252e%252e%252fsecret.txt",
        "/%00../secret.txt",
        "/secret.txt%00.html",
        "/.env%00.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/%c0%ae%c0%ae%c0%afsecret.txt",
        "/C:/secret.txt",
        "/C:%5csecret.txt",
        "/....//secret.txt",
        "/....//....//secret.txt",
        "/.%2e/secret.txt",
        "/%2e./secret.txt",
        "/%2e/.env",
        "//../secret.txt",
        "/nested/../../secret.txt",
        "/nested/%2e%2e/%2e%2e/secret.txt",
        "/./.env",
        "/.env",
        "/.git/config",
        "/%2eenv",
        "/%2Egit/config",
        "/.well-known/../.env",
        "/.well-known/%2e%2e/.env",
        "/escape.txt",
        "/outside/secret.txt",
        "/outside/dist/.env",
        "/env-link.txt",
        "/..;/secret.txt",
    ];
    assert!(payloads.len() >= 20);
    for payload in payloads {
        for accept in ["text/html", "*/*"] {
            let req = format!(
                "GET {payload} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
            );
            let resp = support::raw(p.addr, req.as_bytes(), Duration::from_secs(5)).await;
            let status = resp.get(9..12).unwrap_or("");
            assert!(
                matches!(status, "400" | "404" | "200"),
                "{payload}: unexpected response {resp}"
            );
            for marker in [SECRET, DOTENV_MARKER, GIT_MARKER, "root:x:0:0"] {
                assert!(!resp.contains(marker), "{payload} leaked {marker}:\n{resp}");
            }
            // A 200 can only be the app's index (history fallback).
            if status == "200" {
                assert!(resp.contains("fixture index"), "{payload}: {resp}");
            }
        }
    }
    p.stop().await;
}

#[tokio::test]
async fn content_types_and_cache_policy() {
    let (_spa, p) = plain().await;
    let immutable = "public, max-age=31536000, immutable";
    for (path, ctype, cache) in [
        (
            "/app.3f9a1c2b.js",
            "text/javascript; charset=utf-8",
            immutable,
        ),
        (
            "/assets/index-BxY3zK9a.js",
            "text/javascript; charset=utf-8",
            immutable,
        ),
        (
            "/assets/chunk-vendors.a1b2c3d4.js",
            "text/javascript; charset=utf-8",
            immutable,
        ),
        (
            "/assets/about-settings.js",
            "text/javascript; charset=utf-8",
            "no-cache",
        ),
        (
            "/assets/data.json",
            "application/json; charset=utf-8",
            "no-cache",
        ),
        ("/style.css", "text/css; charset=utf-8", "no-cache"),
        ("/index.html", "text/html; charset=utf-8", "no-cache"),
    ] {
        let r = get(&p.url(path), &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        assert_eq!(r.header("cache-control"), Some(cache), "{path}");
    }
    p.stop().await;
}

#[tokio::test]
async fn all_letter_hashes_count_in_a_folder_of_hashed_names() {
    let spa = fixtures::spa();
    let vite = spa.path("vite");
    fs::create_dir(&vite).unwrap();
    for name in [
        "index-BxY3zK9a.js",
        "vendor-a1B2c3D4.js",
        "index-qwfkztbd.css",
    ] {
        fs::write(vite.join(name), "x").unwrap();
    }
    let p = support::start(spa.config("live_reload = false")).await;
    let r = get(&p.url("/vite/index-qwfkztbd.css"), &[]).await;
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    // The same tail among unhashed names is taken for a word.
    let r = get(&p.url("/assets/about-settings.js"), &[]).await;
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    p.stop().await;
}

#[tokio::test]
async fn head_has_the_same_headers_and_no_body() {
    let (_spa, p) = plain().await;
    for path in ["/", "/app.3f9a1c2b.js", "/style.css"] {
        let g = get(&p.url(path), &[]).await;
        let h = request("HEAD", &p.url(path), &[], b"").await;
        assert_eq!(h.status, 200);
        assert!(h.body.is_empty());
        for name in [
            "content-type",
            "content-length",
            "etag",
            "last-modified",
            "cache-control",
            "accept-ranges",
            "vary",
        ] {
            assert_eq!(h.header(name), g.header(name), "{path} {name}");
        }
    }
    p.stop().await;
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let (_spa, p) = plain().await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ["/", "/app.3f9a1c2b.js", "/some/app/route"] {
            let r = request(method, &p.url(path), &[HTML], b"").await;
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
        }
    }
    p.stop().await;
}

#[tokio::test]
async fn conditional_requests_follow_rfc_9110() {
    let (_spa, p) = plain().await;
    let url = p.url("/style.css");
    let r = get(&url, &[]).await;
    let etag = r.header("etag").unwrap().to_string();
    let lm = r.header("last-modified").unwrap().to_string();
    let long_ago = "Sat, 01 Jan 2000 00:00:00 GMT";

    let r = get(&url, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let weak = format!("W/{etag}");
    assert_eq!(get(&url, &[("if-none-match", &weak)]).await.status, 304);
    assert_eq!(
        get(&url, &[("if-none-match", "\"other\"")]).await.status,
        200
    );
    assert_eq!(get(&url, &[("if-modified-since", &lm)]).await.status, 304);
    assert_eq!(
        get(&url, &[("if-modified-since", long_ago)]).await.status,
        200
    );
    // If-None-Match takes precedence over If-Modified-Since.
    let r = get(
        &url,
        &[("if-none-match", "\"other\""), ("if-modified-since", &lm)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&url, &[("if-match", &etag)]).await.status, 200);
    assert_eq!(get(&url, &[("if-match", "\"other\"")]).await.status, 412);
    assert_eq!(
        get(&url, &[("if-unmodified-since", long_ago)]).await.status,
        412
    );
    assert_eq!(get(&url, &[("if-unmodified-since", &lm)]).await.status, 200);
    // 412 is decided before 304.
    let r = get(&url, &[("if-match", "\"other\""), ("if-none-match", &etag)]).await;
    assert_eq!(r.status, 412);
    p.stop().await;
}

#[tokio::test]
async fn single_ranges_and_if_range() {
    let (_spa, p) = plain().await;
    let url = p.url("/app.3f9a1c2b.js");
    let full = Spa::original("app.3f9a1c2b.js");
    let len = full.len();
    let etag = get(&url, &[]).await.header("etag").unwrap().to_string();

    let r = get(&url, &[("range", "bytes=0-9")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body.as_ref(), &full[..10]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-9/{len}").as_str())
    );
    assert_eq!(r.header("content-length"), Some("10"));

    let r = get(&url, &[("range", "bytes=-5")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body.as_ref(), &full[len - 5..]);

    let r = get(&url, &[("range", &format!("bytes={}-", len - 3))]).await;
    assert_eq!(r.body.as_ref(), &full[len - 3..]);

    let r = get(&url, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    assert!(r.body.is_empty());

    // Several ranges: the whole file, 200.
    let r = get(&url, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), len);

    let r = get(&url, &[("range", "bytes=0-1"), ("if-range", &etag)]).await;
    assert_eq!(r.status, 206);
    let r = get(&url, &[("range", "bytes=0-1"), ("if-range", "\"old\"")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), len);
    p.stop().await;
}

#[tokio::test]
async fn a_precompressed_sibling_older_than_its_file_is_never_served() {
    let spa = fixtures::spa();
    let js = spa.path("app.3f9a1c2b.js");
    let now = std::time::SystemTime::now();
    // The build rewrote the file; the .gz and .br are from the build before.
    for stale in ["app.3f9a1c2b.js.gz", "app.3f9a1c2b.js.br"] {
        fs::File::options()
            .write(true)
            .open(spa.path(stale))
            .unwrap()
            .set_modified(now - Duration::from_secs(60))
            .unwrap();
    }
    fs::File::options()
        .write(true)
        .open(&js)
        .unwrap()
        .set_modified(now)
        .unwrap();
    let p = support::start(spa.config("live_reload = false")).await;
    let r = get(
        &p.url("/app.3f9a1c2b.js"),
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_file(&r, "app.3f9a1c2b.js");
    assert_eq!(r.header("content-encoding"), None);
    // Recompressed: served again (the watcher clears the cache).
    fs::File::options()
        .write(true)
        .open(spa.path("app.3f9a1c2b.js.gz"))
        .unwrap()
        .set_modified(now + Duration::from_secs(1))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&p.url("/app.3f9a1c2b.js"), &[("accept-encoding", "gzip")]).await;
        if r.header("content-encoding") == Some("gzip") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fresh .gz is not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stop().await;
}

#[tokio::test]
async fn precompressed_variants_by_accept_encoding() {
    let (_spa, p) = plain().await;
    let url = p.url("/app.3f9a1c2b.js");
    let mut etags = Vec::new();
    for (accept, file, encoding) in [
        ("gzip, deflate, br", "app.3f9a1c2b.js.br", Some("br")),
        ("gzip", "app.3f9a1c2b.js.gz", Some("gzip")),
        ("br;q=0, gzip", "app.3f9a1c2b.js.gz", Some("gzip")),
        ("br;q=0, gzip;q=0", "app.3f9a1c2b.js", None),
        ("identity", "app.3f9a1c2b.js", None),
    ] {
        let r = get(&url, &[("accept-encoding", accept)]).await;
        assert_file(&r, file);
        assert_eq!(r.header("content-encoding"), encoding, "{accept}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{accept}");
        assert_eq!(
            r.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        etags.push(r.header("etag").unwrap().to_string());
    }
    let plain = get(&url, &[]).await;
    assert_file(&plain, "app.3f9a1c2b.js");
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    assert_ne!(etags[0], etags[1]);
    assert_ne!(etags[1], etags[3]);
    assert_ne!(etags[0], etags[3]);

    // Ranges apply to the selected representation.
    let br = Spa::original("app.3f9a1c2b.js.br");
    let r = get(&url, &[("accept-encoding", "br"), ("range", "bytes=0-3")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), Some("br"));
    assert_eq!(r.body.as_ref(), &br[..4]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-3/{}", br.len()).as_str())
    );
    // Each representation validates against its own tag.
    let r = get(
        &url,
        &[("accept-encoding", "br"), ("if-none-match", &etags[0])],
    )
    .await;
    assert_eq!(r.status, 304);
    let r = get(
        &url,
        &[("accept-encoding", "gzip"), ("if-none-match", &etags[0])],
    )
    .await;
    assert_eq!(r.status, 200);
    p.stop().await;
}

#[tokio::test]
async fn history_fallback_for_app_routes_only() {
    let (_spa, p) = plain().await;
    for path in ["/dashboard", "/users/42/", "/a/b/c"] {
        let r = get(&p.url(path), &[HTML]).await;
        assert_file(&r, "index.html");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        let h = request("HEAD", &p.url(path), &[HTML], b"").await;
        assert_eq!(h.status, 200);
    }
    // A missing asset is a 404, even for a browser.
    assert_eq!(get(&p.url("/missing.js"), &[HTML]).await.status, 404);
    assert_eq!(get(&p.url("/assets/gone.css"), &[HTML]).await.status, 404);
    // Not a page load: no fallback.
    assert_eq!(
        get(&p.url("/dashboard"), &[("accept", "application/json")])
            .await
            .status,
        404
    );
    assert_eq!(get(&p.url("/dashboard"), &[]).await.status, 404);
    p.stop().await;

    let spa = fixtures::spa();
    let p = support::start(spa.config("live_reload = false\nhistory_fallback = false")).await;
    assert_eq!(get(&p.url("/dashboard"), &[HTML]).await.status, 404);
    assert_file(&get(&p.url("/"), &[]).await, "index.html");
    p.stop().await;
}

#[tokio::test]
async fn files_beyond_the_memory_cache_stream_from_disk() {
    let spa = fixtures::spa();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(spa.path("big.bin"), &big).unwrap();
    let p = support::start(spa.config("live_reload = false\nmemory_cache = \"1MiB\"")).await;
    for _ in 0..2 {
        let r = get(&p.url("/big.bin"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body.as_ref(), big.as_slice());
        let r = get(&p.url("/big.bin"), &[("range", "bytes=2999990-")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body.as_ref(), &big[2_999_990..]);
        // Small files still come from memory.
        assert_file(&get(&p.url("/"), &[]).await, "index.html");
    }
    p.stop().await;
}

#[tokio::test]
async fn no_memory_cache_and_static_dir_routes_serve_from_disk() {
    let spa = fixtures::spa();
    let routes = format!(
        "[[routes]]\nprefix = \"/plain\"\nstatic_dir = {:?}\n",
        spa.root.to_str().unwrap()
    );
    let config = spa.config_with_routes(&routes, "live_reload = false\nmemory_cache = \"0\"");
    let p = support::start(config).await;
    for prefix in ["", "/plain"] {
        let url = p.url(&format!("{prefix}/app.3f9a1c2b.js"));
        let r = get(&url, &[("accept-encoding", "gzip")]).await;
        assert_file(&r, "app.3f9a1c2b.js.gz");
        let etag = r.header("etag").unwrap().to_string();
        assert_eq!(
            get(
                &url,
                &[("accept-encoding", "gzip"), ("if-none-match", &etag)]
            )
            .await
            .status,
            304
        );
        let r = get(&url, &[("range", "bytes=3-7")]).await;
        assert_eq!(r.status, 206);
        assert_eq!(r.body.as_ref(), &Spa::original("app.3f9a1c2b.js")[3..8]);
        let r = get(&p.url(&format!("{prefix}/.env")), &[]).await;
        assert_eq!(r.status, 404);
        let r = get(&p.url(&format!("{prefix}/escape.txt")), &[]).await;
        assert_eq!(r.status, 404);
    }
    // static_dir routes have no history fallback.
    assert_eq!(get(&p.url("/plain/dashboard"), &[HTML]).await.status, 404);
    assert_file(
        &get(&p.url("/plain/nested/"), &[]).await,
        "nested/index.html",
    );
    p.stop().await;
}

#[tokio::test]
async fn changed_files_are_served_fresh() {
    let (spa, p) = plain().await;
    let url = p.url("/style.css");
    assert_file(&get(&url, &[]).await, "style.css");
    fs::write(spa.path("style.css"), "body { color: red; }\n").unwrap();
    fs::write(spa.path("new.txt"), "new file\n").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let css = get(&url, &[]).await;
        let new = get(&p.url("/new.txt"), &[]).await;
        if css.text().contains("red") && new.status == 200 {
            assert_eq!(new.text(), "new file\n");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stale after 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stop().await;
}
