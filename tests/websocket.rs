//! WebSocket upgrades through portero to a tokio-tungstenite echo backend.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use support::ws::{WsEcho, connect};
use support::{read_head, start, start_default};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

const T: Duration = Duration::from_secs(10);

async fn next(ws: &mut support::ws::Client) -> Message {
    tokio::time::timeout(T, ws.next())
        .await
        .expect("message within 10 s")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test]
async fn text_and_binary_echo_including_16_mb() {
    let backend = WsEcho::start().await;
    let p = start_default(backend.addr).await;
    let (mut ws, resp) = connect(p.addr, "localhost", "/ws/echo/", &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(vec![0u8, 1, 2, 255]));
    let big: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next(&mut ws).await {
        Message::Binary(b) => assert!(b[..] == big[..], "16 MB message altered"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn fragmented_messages_pass() {
    let backend = WsEcho::start().await;
    let p = start_default(backend.addr).await;
    let (mut ws, _) = connect(p.addr, "localhost", "/ws/echo/", &[])
        .await
        .unwrap();
    let frame = |op, fin, data: &str| {
        Message::Frame(Frame::from_payload(
            FrameHeader {
                is_final: fin,
                opcode: op,
                ..Default::default()
            },
            data.as_bytes().to_vec().into(),
        ))
    };
    ws.send(frame(OpCode::Data(Data::Text), false, "frag"))
        .await
        .unwrap();
    ws.send(frame(OpCode::Data(Data::Continue), false, "men"))
        .await
        .unwrap();
    ws.send(frame(OpCode::Data(Data::Continue), true, "ted"))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, Message::text("fragmented"));
}

#[tokio::test]
async fn ping_pong_and_close_codes() {
    let backend = WsEcho::start().await;
    let p = start_default(backend.addr).await;
    let (mut ws, _) = connect(p.addr, "localhost", "/ws/echo/", &[])
        .await
        .unwrap();
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        Message::Pong(b"are you there".to_vec().into())
    );
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Library(4321),
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => {
            assert_eq!(f.code, CloseCode::Library(4321));
            assert_eq!(f.reason.as_str(), "bye");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn subprotocol_is_negotiated_and_host_origin_rewritten() {
    let backend = WsEcho::start().await;
    let mut c = support::config(&format!(
        "[upstreams.backend]\nurl = \"http://{}\"\n[tenants]\nbase_domain = \"chalanpro.net\"",
        backend.addr
    ));
    c.routes.retain(|r| r.prefix.as_str() != "/");
    let p = start(c).await;
    let (mut ws, resp) = connect(
        p.addr,
        "acme.localhost:8080",
        "/ws/calendar-updates/",
        &[
            ("origin", "http://acme.localhost:8080"),
            ("sec-websocket-protocol", "chat, superchat"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    let seen = backend.seen.lock().unwrap().clone();
    assert_eq!(seen.host.as_deref(), Some("acme.chalanpro.net"));
    assert_eq!(seen.origin.as_deref(), Some("http://acme.chalanpro.net"));
    assert_eq!(seen.path, "/ws/calendar-updates/");
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("x"));
}

#[tokio::test]
async fn a_refused_handshake_is_passed_on_and_the_connection_stays_usable() {
    let backend = WsEcho::start().await;
    let p = start_default(backend.addr).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /ws/refuse HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // tungstenite sends its refusal chunked: read to the last chunk.
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let mut body = Vec::new();
    while !body.ends_with(b"0\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(T, s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        body.push(b[0]);
    }
    // The same connection serves a plain request next.
    s.write_all(b"GET /__portero/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[tokio::test]
async fn upgrade_without_connection_upgrade_is_not_tunnelled() {
    let backend = support::backends::Echo::start().await;
    let p = start_default(backend.addr).await;
    let r = support::get(&p.url("/ws/x"), &[("upgrade", "websocket")]).await;
    assert_eq!(r.status, 200);
    let (_, h) = support::backends::parse_report(&r.text());
    assert_eq!(support::backends::header(&h, "upgrade"), None);
}

#[tokio::test]
async fn half_close_reaches_the_other_side() {
    // A raw upgrade backend: answers 101, then echoes until the client's
    // FIN, then sends a last word and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf[..1]).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(b"after-fin:").await.unwrap();
        s.write_all(&got).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let p = start_default(addr).await;
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(
        b"GET /ws/raw HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping").await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, b"after-fin:ping");
}

#[tokio::test]
async fn five_hundred_concurrent_sockets_echo_in_order() {
    let backend = WsEcho::start().await;
    let p = start_default(backend.addr).await;
    let mut tasks = Vec::new();
    for i in 0..500 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = connect(addr, "localhost", "/ws/echo/", &[]).await.unwrap();
            for j in 0..10 {
                ws.send(Message::text(format!("{i}-{j}"))).await.unwrap();
            }
            for j in 0..10 {
                assert_eq!(next(&mut ws).await, Message::text(format!("{i}-{j}")));
            }
            ws.close(None).await.unwrap();
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn backend_killed_mid_stream_ends_the_client_connection() {
    let backend = WsEcho::start().await;
    let p = start_default(backend.addr).await;
    let (mut ws, _) = connect(p.addr, "localhost", "/ws/echo/", &[])
        .await
        .unwrap();
    ws.send(Message::text("a")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("a"));
    backend.kill();
    let end = tokio::time::timeout(T, ws.next())
        .await
        .expect("the client sees the end, no hang");
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}

#[tokio::test]
async fn backend_down_at_handshake_is_502_naming_the_upstream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut c = support::config(&format!(
        "[upstreams.backend]\nurl = \"http://{addr}\"\nwait_for = \"200ms\""
    ));
    c.routes.retain(|r| r.prefix.as_str() != "/");
    let p = start(c).await;
    match connect(p.addr, "localhost", "/ws/echo/", &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 502);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("upstream backend"), "{body}");
        }
        other => panic!("expected a 502, got {:?}", other.map(|(_, r)| r.status())),
    }
}

#[tokio::test]
async fn graceful_shutdown_waits_for_an_open_tunnel_then_closes_it() {
    let backend = WsEcho::start().await;
    let mut c = support::config(&format!(
        "[server]\nshutdown_timeout = \"1s\"\n[upstreams.backend]\nurl = \"http://{}\"",
        backend.addr
    ));
    c.routes.retain(|r| r.prefix.as_str() != "/");
    let mut p = start(c).await;
    let (mut ws, _) = connect(p.addr, "localhost", "/ws/echo/", &[])
        .await
        .unwrap();
    let stopping = p.begin_stop();
    // During the drain the tunnel still works.
    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("still here"));
    // After the deadline it is closed and portero has stopped.
    tokio::time::timeout(T, stopping).await.unwrap().unwrap();
    let end = tokio::time::timeout(T, ws.next())
        .await
        .expect("closed after the deadline");
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}

#[tokio::test]
async fn an_idle_timeout_closes_quiet_tunnels_only() {
    let backend = WsEcho::start().await;
    let mut c = support::config(&format!(
        "[upstreams.backend]\nurl = \"http://{}\"\n[[routes]]\nprefix = \"/ws\"\nupstream = \"backend\"\nidle_timeout = \"400ms\"",
        backend.addr
    ));
    c.routes.retain(|r| r.prefix.as_str() != "/");
    let p = start(c).await;
    let (mut busy, _) = connect(p.addr, "localhost", "/ws/echo/", &[])
        .await
        .unwrap();
    let (mut quiet, _) = connect(p.addr, "localhost", "/ws/echo/", &[])
        .await
        .unwrap();
    // The busy socket talks every 100 ms for a second: it stays open.
    for i in 0..10 {
        busy.send(Message::text(i.to_string())).await.unwrap();
        assert_eq!(next(&mut busy).await, Message::text(i.to_string()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The quiet one was cut after its 400 ms of silence.
    let end = tokio::time::timeout(T, quiet.next())
        .await
        .expect("quiet tunnel closed");
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}

/// Dev-server mode: webpack-dev-server's HMR socket is exactly `/ws`, Vite's
/// is `/` with the `vite-hmr` subprotocol; Channels owns `/ws/...`.
#[tokio::test]
async fn dev_server_hmr_sockets_and_channels_share_the_port() {
    let (dev, channels) = (WsEcho::start().await, WsEcho::start().await);
    let c = support::config(&format!(
        r#"
[upstreams.backend]
url = "http://{channels}"
[upstreams.devserver]
url = "http://{dev}"
[[routes]]
prefix = "/ws"
exact = true
upstream = "devserver"
[[routes]]
prefix = "/ws"
upstream = "backend"
[[routes]]
prefix = "/"
spa = true
[spa]
dev_server = "http://{dev}"
[tenants]
base_domain = "chalanpro.net"
"#,
        channels = channels.addr,
        dev = dev.addr,
    ));
    let p = start(c).await;
    // Vite: `/` with its subprotocol, through the SPA route to the dev server.
    let (mut vite, resp) = connect(
        p.addr,
        "acme.localhost:8080",
        "/",
        &[
            ("sec-websocket-protocol", "vite-hmr"),
            ("origin", "http://acme.localhost:8080"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "vite-hmr");
    let seen = dev.seen.lock().unwrap().clone();
    assert_eq!(
        seen.host,
        Some(dev.addr.to_string()),
        "a dev server gets its own name as Host"
    );
    assert_eq!(seen.origin, Some(format!("http://{}", dev.addr)));
    vite.send(Message::text("hmr")).await.unwrap();
    assert_eq!(next(&mut vite).await, Message::text("hmr"));
    // webpack-dev-server: exactly `/ws`.
    connect(p.addr, "acme.localhost:8080", "/ws", &[])
        .await
        .unwrap();
    assert_eq!(dev.seen.lock().unwrap().path, "/ws");
    // Channels: `/ws/...` to the backend, as the tenant.
    connect(p.addr, "acme.localhost:8080", "/ws/calendar-updates/", &[])
        .await
        .unwrap();
    let seen = channels.seen.lock().unwrap().clone();
    assert_eq!(seen.path, "/ws/calendar-updates/");
    assert_eq!(seen.host.as_deref(), Some("acme.chalanpro.net"));
}

/// `portero --spa <dev server> --backend … --base-domain …` with no config
/// file: the embedded default plus flags, as the command builds it.
fn dev_server_flags(dev: std::net::SocketAddr, backend: std::net::SocketAddr) -> portero::Config {
    let mut c = portero::Config::embedded();
    portero::config::Overrides {
        spa: Some(format!("http://{dev}")),
        backend: Some(format!("http://{backend}")),
        base_domain: Some("chalanpro.net".into()),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap();
    c
}

/// webpack-dev-server 4+'s HMR socket is exactly `/ws`; Channels' sockets
/// are `/ws/...`: with flags alone, each reaches its own server.
#[tokio::test]
async fn dev_server_flags_alone_split_ws_between_dev_server_and_backend() {
    let dev = WsEcho::start().await;
    let backend = WsEcho::start().await;
    let p = start(dev_server_flags(dev.addr, backend.addr)).await;

    let (mut ws, resp) = connect(p.addr, "acme.localhost:8080", "/ws", &[])
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hmr")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hmr"));
    let seen = dev.seen.lock().unwrap().clone();
    assert_eq!(seen.path, "/ws");
    // The dev server checks Host against its own name.
    assert_eq!(seen.host, Some(dev.addr.to_string()));
    assert_eq!(
        backend.seen.lock().unwrap().path,
        "",
        "nothing at the backend"
    );

    let (mut ws, _) = connect(p.addr, "acme.localhost:8080", "/ws/chat/", &[])
        .await
        .unwrap();
    ws.send(Message::text("chat")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("chat"));
    let seen = backend.seen.lock().unwrap().clone();
    assert_eq!(seen.path, "/ws/chat/");
    assert_eq!(seen.host.as_deref(), Some("acme.chalanpro.net"));

    // Vue CLI 4's SockJS socket, below /sockjs-node.
    let (mut ws, _) = connect(p.addr, "localhost", "/sockjs-node/123/abc/websocket", &[])
        .await
        .unwrap();
    ws.send(Message::text("sockjs")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("sockjs"));
    assert_eq!(
        dev.seen.lock().unwrap().path,
        "/sockjs-node/123/abc/websocket"
    );

    // Vite's socket on `/` (subprotocol vite-hmr) goes to the dev server.
    let (mut ws, resp) = connect(
        p.addr,
        "localhost",
        "/",
        &[("sec-websocket-protocol", "vite-hmr")],
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "vite-hmr");
    ws.send(Message::text("vite")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("vite"));
    assert_eq!(dev.seen.lock().unwrap().path, "/");
}

#[tokio::test]
async fn dev_server_flags_alone_send_sockjs_info_to_the_dev_server() {
    let dev = support::backends::Echo::start().await;
    let backend = support::backends::Echo::start().await;
    let p = start(dev_server_flags(dev.addr, backend.addr)).await;
    let r = support::get(&p.url("/sockjs-node/info?t=1"), &[("host", "localhost")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((dev.hits(), backend.hits()), (1, 0));
    let r = support::get(&p.url("/api/x"), &[("host", "localhost")]).await;
    assert_eq!(r.status, 200);
    assert_eq!((dev.hits(), backend.hits()), (1, 1));
}

/// A config file's own routes win: no hot-reload routes are added to them.
#[tokio::test]
async fn a_files_routes_are_not_given_dev_server_routes() {
    let dev = support::backends::Echo::start().await;
    let backend = support::backends::Echo::start().await;
    let mut c = support::config(&format!(
        "[upstreams.backend]\nurl = \"http://{}\"\n\
         [[routes]]\nprefix = \"/ws\"\nupstream = \"backend\"\n\
         [[routes]]\nprefix = \"/\"\nspa = true\n",
        backend.addr
    ));
    portero::config::Overrides {
        spa: Some(format!("http://{}", dev.addr)),
        ..Default::default()
    }
    .apply(&mut c)
    .unwrap();
    assert_eq!(c.routes.len(), 2);
    let p = start(c).await;
    let r = support::get(&p.url("/ws"), &[("host", "localhost")]).await;
    assert_eq!(r.status, 200);
    assert_eq!((dev.hits(), backend.hits()), (0, 1), "the file's /ws route");
}
