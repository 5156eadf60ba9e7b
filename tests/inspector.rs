//! `/__portero/`: the page, the JSON it starts from (`state.json`) and its
//! live stream (`events`), checked against the traffic the test sent.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::backends::Echo;
use support::{config, get, read_head, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn cfg(backend: std::net::SocketAddr, admin: &str) -> portero::Config {
    config(&format!(
        "[admin]\n{admin}\n[tenants]\nbase_domain = \"example.test\"\n\
         [upstreams.backend]\nurl = \"http://{backend}\"\n\
         [upstreams.gone]\nurl = \"http://127.0.0.1:9\"\nwait_for = \"0s\"\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n\
         [[routes]]\nprefix = \"/down\"\nupstream = \"gone\"\n"
    ))
}

async fn state(p: &support::Portero) -> Value {
    let r = get(&p.url("/__portero/state.json"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("state.json is JSON")
}

fn header<'a>(list: &'a Value, name: &str) -> Option<&'a str> {
    list.as_array()?
        .iter()
        .find(|kv| kv[0] == name)
        .and_then(|kv| kv[1].as_str())
}

#[tokio::test]
async fn traffic_shows_up_with_its_fields_and_secrets_masked() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "")).await;
    let host = format!("acme.localhost:{}", p.addr.port());
    let r = get(
        &p.url("/api/cookie?x=1"),
        &[
            ("host", &host),
            ("cookie", "sessionid=secret1"),
            ("authorization", "Bearer secret2"),
            ("x-csrftoken", "secret3"),
            ("x-trace", "keep me"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(get(&p.url("/down/x"), &[]).await.status, 502);
    // The page's own requests are not kept.
    assert_eq!(get(&p.url("/__portero/status"), &[]).await.status, 200);

    let s = state(&p).await;
    let reqs = s["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let ok = &reqs[0];
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["host"], host.as_str());
    assert_eq!(ok["tenant"], "acme");
    assert_eq!(ok["target"], "/api/cookie?x=1");
    assert_eq!(ok["route"], "/api");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["upstream"], "backend");
    assert_eq!(ok["bytes"], 2);
    assert!(ok["ms"].as_f64().unwrap() >= 0.0);
    let (req_h, resp_h) = (&ok["request_headers"], &ok["response_headers"]);
    assert_eq!(header(req_h, "x-trace"), Some("keep me"));
    for name in ["cookie", "authorization", "x-csrftoken"] {
        assert_eq!(header(req_h, name), Some("[masked]"), "{name}");
    }
    assert_eq!(header(resp_h, "set-cookie"), Some("[masked]"));
    let text = s.to_string();
    for secret in ["secret1", "secret2", "secret3", "sessionid=abc"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let curl = ok["curl"].as_str().unwrap();
    assert!(
        curl.starts_with(&format!("curl 'http://{host}/api/cookie?x=1'")),
        "{curl}"
    );
    assert!(curl.contains("-H 'x-trace: keep me'"), "{curl}");
    assert!(curl.contains("-H 'cookie: [masked]'"), "{curl}");

    let down = &reqs[1];
    assert_eq!(down["status"], 502);
    assert_eq!(down["fault"], "upstream");
    assert!(down["error"].as_str().unwrap().contains("gone"), "{down}");

    // The panels: upstreams, tenants, the header.
    let sum = &s["summary"];
    assert_eq!(sum["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(sum["inspector_size"], 300);
    assert_eq!(sum["config"], "<embedded default>");
    let up = |name: &str| {
        sum["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {sum}"))
            .clone()
    };
    let backend = up("backend");
    assert_eq!(backend["traffic"]["requests"], 1);
    assert!(backend["traffic"]["last_success"].is_string());
    assert!(backend["traffic"]["p50_ms"].is_number());
    assert_eq!(backend["held"], 0);
    let gone = up("gone");
    assert_eq!(gone["traffic"]["errors"], 1);
    assert_eq!(gone["traffic"]["last_failure"]["status"], 502);
    assert!(
        gone["traffic"]["last_failure"]["cause"]
            .as_str()
            .unwrap()
            .contains("gone"),
        "{gone}"
    );
    let tenants = sum["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{tenants:?}");
    assert_eq!(tenants[0]["name"], "acme");
    assert_eq!(tenants[0]["requests"], 1);
    assert!(tenants[0]["last_seen"].is_string());

    // The page itself, offline: its own files only.
    let page = get(&p.url("/__portero/"), &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("/__portero/inspector.js"));
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    for asset in ["/__portero/inspector.js", "/__portero/inspector.css"] {
        assert_eq!(get(&p.url(asset), &[]).await.status, 200, "{asset}");
    }
    p.stop().await;
}

#[tokio::test]
async fn unmask_shows_credentials() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "inspector_unmask = true")).await;
    get(&p.url("/api/x"), &[("authorization", "Bearer visible")]).await;
    let s = state(&p).await;
    let h = &s["requests"][0]["request_headers"];
    assert_eq!(header(h, "authorization"), Some("Bearer visible"));
    p.stop().await;
}

#[tokio::test]
async fn the_ring_keeps_only_the_last_n() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "inspector_size = 3")).await;
    for i in 0..7 {
        assert_eq!(get(&p.url(&format!("/api/{i}")), &[]).await.status, 200);
    }
    let s = state(&p).await;
    let targets: Vec<&str> = s["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["/api/4", "/api/5", "/api/6"]);
    p.stop().await;
}

#[tokio::test]
async fn size_zero_keeps_nothing_but_still_counts() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "inspector_size = 0")).await;
    for _ in 0..3 {
        get(&p.url("/api/x"), &[("cookie", "a=1")]).await;
    }
    let s = state(&p).await;
    assert_eq!(s["requests"], serde_json::json!([]));
    assert_eq!(s["summary"]["inspector_size"], 0);
    let backend = &s["summary"]["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "backend")
        .unwrap()["traffic"];
    assert_eq!(backend["requests"], 3);
    p.stop().await;
}

#[tokio::test]
async fn only_the_admin_networks_see_the_page() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "allow = [\"10.0.0.0/8\"]")).await;
    get(&p.url("/api/x"), &[]).await;
    for path in [
        "/__portero/",
        "/__portero/state.json",
        "/__portero/events",
        "/__portero/inspector.js",
    ] {
        let r = get(&p.url(path), &[]).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
    }
    p.stop().await;
}

/// Reads from `s` until `want` has arrived, within 10 s.
async fn read_until(s: &mut TcpStream, seen: &mut String, want: &str) {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains(want) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended before {want:?}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {want:?} within 10 s: {seen}"));
}

#[tokio::test]
async fn the_live_stream_sends_each_request_and_summaries() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "")).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /__portero/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    let mut seen = String::new();
    read_until(&mut s, &mut seen, "event: summary").await;
    get(&p.url("/api/live?z=1"), &[("x-csrf-token", "tok")]).await;
    read_until(&mut s, &mut seen, "/api/live?z=1").await;
    let line = seen
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("/api/live"))
        .unwrap();
    let rec: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
    assert_eq!(rec["status"], 200);
    assert_eq!(
        header(&rec["request_headers"], "x-csrf-token"),
        Some("[masked]")
    );
    // Shutdown ends the stream rather than wait for it.
    tokio::time::timeout(Duration::from_secs(10), p.stop())
        .await
        .expect("an open page does not hold up shutdown");
}
