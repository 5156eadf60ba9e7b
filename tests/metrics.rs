//! `/__portero/metrics`: Prometheus text exposition, parsed with a real
//! Prometheus parser and checked against the traffic the test sent.

mod support;

use std::collections::HashMap;

use support::backends::Echo;
use support::{config, get, start};

/// The samples of one scrape, by metric name and labels (sorted `k=v`).
fn scrape(text: &str) -> HashMap<(String, String), f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    scrape
        .samples
        .into_iter()
        .filter_map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            Some(((s.metric, labels.join(",")), value))
        })
        .collect()
}

#[tokio::test]
async fn metrics_parse_and_count_the_traffic_sent() {
    let echo = Echo::start().await;
    let c = config(&format!(
        "[tenants]\nbase_domain = \"example.test\"\n\
         [upstreams.backend]\nurl = \"http://{}\"\n\
         [upstreams.gone]\nurl = \"http://127.0.0.1:9\"\nwait_for = \"0s\"\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n\
         [[routes]]\nprefix = \"/down\"\nupstream = \"gone\"\n",
        echo.addr
    ));
    let p = start(c).await;
    let host = |h: &str| format!("{h}:{}", p.addr.port());
    for _ in 0..3 {
        let r = get(&p.url("/api/x"), &[("host", &host("acme.localhost"))]).await;
        assert_eq!(r.status, 200);
    }
    let r = get(&p.url("/api/x"), &[("host", &host("globex.localhost"))]).await;
    assert_eq!(r.status, 200);
    let r = get(
        &p.url("/nothing-here"),
        &[("host", &host("acme.localhost"))],
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get(&p.url("/down/x"), &[]).await;
    assert_eq!(r.status, 502);
    // portero's own endpoints count apart from requests that matched nothing.
    assert_eq!(get(&p.url("/__portero/status"), &[]).await.status, 200);

    let r = get(&p.url("/__portero/metrics"), &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type").unwrap().starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    let m = scrape(&r.text());
    let v = |name: &str, labels: &str| {
        m.get(&(name.to_string(), labels.to_string()))
            .copied()
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in:\n{}", r.text()))
    };
    assert_eq!(v("portero_requests_total", "route=/api,status=2xx"), 4.0);
    assert_eq!(v("portero_requests_total", "route=/api,status=5xx"), 0.0);
    assert_eq!(v("portero_requests_total", "route=/down,status=5xx"), 1.0);
    assert_eq!(v("portero_requests_total", "route=-,status=4xx"), 1.0);
    assert_eq!(
        v("portero_requests_total", "route=/__portero,status=2xx"),
        1.0
    );
    assert_eq!(
        v("portero_tenant_requests_total", "status=2xx,tenant=acme"),
        3.0
    );
    assert_eq!(
        v("portero_tenant_requests_total", "status=2xx,tenant=globex"),
        1.0
    );
    assert_eq!(
        v("portero_tenant_requests_total", "status=4xx,tenant=acme"),
        1.0
    );
    assert_eq!(
        v(
            "portero_upstream_errors_total",
            "kind=unavailable,upstream=gone"
        ),
        1.0
    );
    assert_eq!(
        v("portero_request_duration_seconds_count", "route=/api"),
        4.0
    );
    assert_eq!(v("portero_held_requests", ""), 0.0);
    assert_eq!(v("portero_open_tunnels", ""), 0.0);
    assert!(
        v("portero_open_connections", "") >= 1.0,
        "this scrape's own"
    );
    assert!(v("portero_response_bytes_total", "") > 0.0);
    p.stop().await;
}

#[tokio::test]
async fn metrics_answer_only_the_admin_networks() {
    let echo = Echo::start().await;
    let c = config(&format!(
        "[admin]\nallow = [\"10.0.0.0/8\"]\n[upstreams.backend]\nurl = \"http://{}\"\n",
        echo.addr
    ));
    let p = start(c).await;
    assert_eq!(get(&p.url("/__portero/metrics"), &[]).await.status, 403);
    p.stop().await;
}

#[tokio::test]
async fn request_and_tunnel_bytes_are_counted() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let echo = Echo::start().await;
    let ws = support::ws::WsEcho::start().await;
    let p = start(config(&format!(
        "[upstreams.backend]\nurl = \"http://{}\"\n\
         [upstreams.chat]\nurl = \"http://{}\"\n\
         [[routes]]\nprefix = \"/api\"\nupstream = \"backend\"\n\
         [[routes]]\nprefix = \"/ws\"\nupstream = \"chat\"\n",
        echo.addr, ws.addr
    )))
    .await;
    for body in [&b"12345"[..], &[b'x'; 1000]] {
        let r = support::request("POST", &p.url("/api/up"), &[], body).await;
        assert_eq!(r.status, 200);
    }
    let host = format!("localhost:{}", p.addr.port());
    let (mut client, _) = support::ws::connect(p.addr, &host, "/ws/echo", &[])
        .await
        .expect("the tunnel opens");
    client.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::Text("hello".into())
    );
    // The echo's frame is counted before the client could read it.
    let m = scrape(&get(&p.url("/__portero/metrics"), &[]).await.text());
    assert_eq!(
        m[&("portero_request_bytes_total".into(), String::new())],
        1005.0
    );
    // A masked client frame of 5 bytes is 11 on the wire; the echo 7.
    let tunnel = |d: &str| {
        m[&(
            "portero_tunnel_bytes_total".into(),
            format!("direction={d}"),
        )]
    };
    assert_eq!(tunnel("up"), 11.0);
    assert_eq!(tunnel("down"), 7.0);
    drop(client);
    p.stop().await;
}
