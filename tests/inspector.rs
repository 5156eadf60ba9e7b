//! `/__portero/`: the page, the JSON it starts from (`state.json`) and its
//! live stream (`events`), checked against the traffic the test sent.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::backends::Echo;
use support::ws::WsEcho;
use support::{config, get, read_head, request, start};
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
    // The address bound, not the configured port 0.
    assert_eq!(
        sum["listeners"],
        serde_json::json!([format!("http://{}", p.addr)])
    );
    // At least the connection asking.
    assert!(sum["connections"].as_i64() >= Some(1), "{sum}");
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

fn record<'a>(s: &'a Value, target: &str) -> &'a Value {
    s["requests"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no {target} in {s}"))
}

async fn replay(p: &support::Portero, id: &Value, headers: &[(&str, &str)]) -> support::Reply {
    request(
        "POST",
        &p.url(&format!("/__portero/replay/{id}")),
        headers,
        b"",
    )
    .await
}

#[tokio::test]
async fn bodies_are_kept_and_a_replay_sends_the_request_again() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "inspector_bodies = \"16B\"")).await;
    let host = format!("acme.localhost:{}", p.addr.port());
    let small = request(
        "POST",
        &p.url("/api/items?x=1"),
        &[
            ("host", &host),
            ("content-type", "application/json"),
            ("cookie", "s=1"),
        ],
        r#"{"name":"é"}"#.as_bytes(),
    )
    .await;
    assert_eq!(small.status, 200);
    let big = request("POST", &p.url("/api/big"), &[], &[b'x'; 100]).await;
    assert_eq!(big.status, 200);
    assert_eq!(get(&p.url("/api/plain"), &[]).await.status, 200);

    let s = state(&p).await;
    let rec = record(&s, "/api/items?x=1");
    assert_eq!(rec["request_body"]["text"], r#"{"name":"é"}"#);
    assert_eq!(rec["request_body"]["cut"], false);
    // The echo's answer starts with the request line; 16 bytes are kept.
    let resp_body = &rec["response_body"];
    assert_eq!(resp_body["text"], "POST /api/items?");
    assert_eq!(resp_body["cut"], true);
    assert_eq!(resp_body["bytes"], small.body.len());
    assert!(rec["replay_blocked"].is_null(), "{rec}");
    let bigrec = record(&s, "/api/big");
    assert_eq!(bigrec["request_body"]["bytes"], 100);
    assert_eq!(bigrec["request_body"]["cut"], true);
    assert!(
        bigrec["replay_blocked"]
            .as_str()
            .unwrap()
            .contains("inspector_bodies"),
        "{bigrec}"
    );

    // Only the page may ask: the header, and an Origin of its own.
    let id = &rec["id"];
    assert_eq!(replay(&p, id, &[]).await.status, 403);
    let foreign = [("x-portero-replay", "1"), ("origin", "http://evil.example")];
    assert_eq!(replay(&p, id, &foreign).await.status, 403);
    let url = p.url(&format!("/__portero/replay/{id}"));
    assert_eq!(get(&url, &[("x-portero-replay", "1")]).await.status, 405);

    let hits = echo.hits();
    let origin = format!("http://{}", p.addr);
    let own = [("x-portero-replay", "1"), ("origin", origin.as_str())];
    let r = replay(&p, id, &own).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(out["status"], 200);
    assert_eq!(echo.hits(), hits + 1);
    // The backend saw the request as first sent: same target, host,
    // headers (the cookie too, though the page shows it masked), body.
    let body = out["body"].as_str().unwrap();
    assert!(body.starts_with("POST /api/items?x=1\n"), "{body}");
    for line in [
        "cookie: s=1",
        "body-bytes: 13",
        "content-type: application/json",
    ] {
        assert!(body.contains(line), "{line} in {body}");
    }
    assert!(body.contains("x-forwarded-host: acme.localhost"), "{body}");
    assert!(out["ms"].as_f64().is_some());

    // The replay went through portero: it is a new request in the ring.
    let s = state(&p).await;
    let items: Vec<&Value> = s["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == "/api/items?x=1")
        .collect();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["tenant"], "acme");

    // Not replayable, unknown: a reason the page shows.
    let r = replay(&p, &bigrec["id"], &own).await;
    assert_eq!(r.status, 409);
    assert!(r.text().contains("inspector_bodies"), "{}", r.text());
    assert_eq!(replay(&p, &Value::from(999_999), &own).await.status, 404);
    p.stop().await;
}

#[tokio::test]
async fn without_body_capture_only_requests_without_a_body_replay() {
    let echo = Echo::start().await;
    let p = start(cfg(echo.addr, "")).await;
    get(&p.url("/api/get"), &[]).await;
    request("PUT", &p.url("/api/put"), &[], b"data").await;
    let s = state(&p).await;
    let getrec = record(&s, "/api/get");
    assert!(getrec["request_body"].is_null());
    assert!(getrec["replay_blocked"].is_null());
    let put = record(&s, "/api/put");
    assert!(
        put["replay_blocked"]
            .as_str()
            .unwrap()
            .contains("body capture is off"),
        "{put}"
    );
    let own = [("x-portero-replay", "1")];
    let r = replay(&p, &getrec["id"], &own).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(out["body"].as_str().unwrap().starts_with("GET /api/get\n"));
    assert_eq!(replay(&p, &put["id"], &own).await.status, 409);
    p.stop().await;
}

/// Polls state.json until `ok` holds for its summary, within 10 s.
async fn summary_until(p: &support::Portero, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = state(p).await;
        if ok(&s["summary"]) {
            return s["summary"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not seen within 10 s: {}",
            s["summary"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn open_tunnels_and_refused_handshakes_are_listed() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let ws = WsEcho::start().await;
    let p = start(config(&format!(
        "[tenants]\nbase_domain = \"example.test\"\n\
         [upstreams.chat]\nurl = \"http://{}\"\n\
         [[routes]]\nprefix = \"/ws\"\nupstream = \"chat\"\n",
        ws.addr
    )))
    .await;
    let host = format!("acme.localhost:{}", p.addr.port());
    let (mut client, _) = support::ws::connect(p.addr, &host, "/ws/room", &[])
        .await
        .expect("the tunnel opens");
    client.send(Message::Text("hello".into())).await.unwrap();
    let echoed = client.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::Text("hello".into()));
    let sum = summary_until(&p, "the tunnel's bytes", |s| {
        s["tunnels"][0]["down"].as_u64() > Some(0)
    })
    .await;
    let t = &sum["tunnels"][0];
    assert_eq!(sum["tunnels"].as_array().unwrap().len(), 1);
    assert_eq!(t["tenant"], "acme");
    assert_eq!(t["host"], host.as_str());
    assert_eq!(t["path"], "/ws/room");
    // A masked client frame of 5 bytes is 11 on the wire; the echo 7.
    assert_eq!(t["up"], 11);
    assert_eq!(t["down"], 7);
    let chat = sum["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "chat")
        .unwrap();
    assert_eq!(chat["open"], 1, "{chat}");
    client.close(None).await.unwrap();
    while client.next().await.is_some() {}
    // The tunnel ends once both sides have closed.
    drop(client);
    summary_until(&p, "the tunnel gone", |s| {
        s["tunnels"] == serde_json::json!([])
    })
    .await;

    let refused = support::ws::connect(
        p.addr,
        &host,
        "/ws/refuse",
        &[("origin", "http://evil.example")],
    )
    .await;
    assert!(refused.is_err());
    let sum = summary_until(&p, "the refusal", |s| {
        s["refused"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    let r = &sum["refused"][0];
    assert_eq!(r["status"], 403);
    assert_eq!(r["origin"], "http://evil.example");
    assert_eq!(r["tenant"], "acme");
    assert_eq!(r["path"], "/ws/refuse");
    assert!(
        r["reason"].as_str().unwrap().contains("origin check"),
        "{r}"
    );
    p.stop().await;
}

#[tokio::test]
async fn a_request_over_tls_and_http2_replays_over_tls() {
    use support::tls::{TestCa, accept_any, connect, start_tls, tls_config};
    let echo = Echo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cert = TestCa::new().issue(dir.path(), "dev", &["localhost", "*.localhost"]);
    let p = start_tls(cfg(echo.addr, ""), tls_config(vec![cert])).await;
    let host = format!("acme.localhost:{}", p.tls_addr.port());
    let s = connect(p.tls_addr, "acme.localhost", accept_any(&[b"h2"]))
        .await
        .unwrap();
    let r = support::tls::get(s, &host, "/api/secure?q=1").await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status, 200);

    let page = &p.portero;
    let s = state(page).await;
    let rec = record(&s, "/api/secure?q=1");
    assert_eq!(rec["scheme"], "https");
    let r = replay(page, &rec["id"], &[("x-portero-replay", "1")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out: Value = serde_json::from_slice(&r.body).unwrap();
    let body = out["body"].as_str().unwrap();
    // HTTP/2 named the host in :authority; the replay sends it as Host.
    assert!(body.starts_with("GET /api/secure?q=1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
    assert!(body.contains("x-forwarded-host: acme.localhost"), "{body}");
    let s = state(page).await;
    let again: Vec<&Value> = s["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == "/api/secure?q=1")
        .collect();
    assert_eq!(again.len(), 2);
    assert_eq!(again[1]["scheme"], "https");
    assert_eq!(again[1]["tenant"], "acme");
    p.stop().await;
}
