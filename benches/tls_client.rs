//! The load client for `benches/load/run.sh --scenarios tls`'s new-handshake
//! measurement: every request on a new TCP connection with a full TLS 1.3
//! handshake (session resumption disabled, ALPN `http/1.1`), one
//! `GET` with `Connection: close`, the response read whole, then the
//! connection closed by the client. wrk and h2load cannot do this: both resume the TLS
//! session when they reconnect.
//!
//! `--conns` connections run at once on one thread (pin it with taskset),
//! for `--duration` seconds. Neither the server certificate nor, unless
//! `--verify-signature`, the handshake signature is checked: verifying an
//! ECDSA signature costs the client more than making it costs the server,
//! and the client must not be what limits the rate. The output imitates
//! `wrk --latency` (Requests/sec, 50% and 99% latency, `N requests in`,
//! socket errors, non-2xx), so `bench_helper.py parse-wrk` reads it, plus
//! the count of TCP connections and of full handshakes, and the protocol,
//! cipher suite and key exchange group of the first connection.
//!
//! Build: `cargo build --release --bench tls_client` (run.sh does it).
//! Run: `tls_client --addr 127.0.0.1:8443 --path /api/x --conns 16 --duration 10`
//! Without `--addr` (as under `cargo bench`) it prints this usage and exits 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A connection that takes longer than this (connect to last byte) is
/// abandoned and counted as a timeout.
const CONN_TIMEOUT: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: tls_client --addr HOST:PORT [--path /api/x] [--host localhost] \
                     [--conns 16] [--duration 10] [--verify-signature]";

struct Opts {
    addr: SocketAddr,
    path: String,
    host: String,
    conns: usize,
    duration: Duration,
    verify_signature: bool,
}

fn parse_args() -> Result<Option<Opts>, String> {
    let mut addr = None;
    let mut path = "/api/x".to_string();
    let mut host = "localhost".to_string();
    let mut conns = 16usize;
    let mut secs = 10u64;
    let mut verify_signature = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--addr" => addr = Some(value()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--path" => path = value()?,
            "--host" => host = value()?,
            "--conns" => conns = value()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--duration" => secs = value()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--verify-signature" => verify_signature = true,
            // `cargo bench` passes --bench to harness = false targets.
            "--bench" => {}
            _ => return Err(format!("unknown argument {a}")),
        }
    }
    let Some(addr) = addr else { return Ok(None) };
    if conns == 0 || secs == 0 {
        return Err("--conns and --duration must be at least 1".into());
    }
    Ok(Some(Opts {
        addr,
        path,
        host,
        conns,
        duration: Duration::from_secs(secs),
        verify_signature,
    }))
}

/// Accepts any certificate, and any handshake signature unless `verify`.
#[derive(Debug)]
struct AnyCert {
    provider: Arc<CryptoProvider>,
    verify: bool,
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.verify {
            return Ok(HandshakeSignatureValid::assertion());
        }
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.verify {
            return Ok(HandshakeSignatureValid::assertion());
        }
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What one task saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    non2xx: u64,
    connect_err: u64,
    read_err: u64,
    write_err: u64,
    timeouts: u64,
    full_handshakes: u64,
    bytes: u64,
    latencies_us: Vec<u32>,
    first: Option<String>,
}

enum Failure {
    Connect,
    Write,
    Read,
}

/// One connection: connect, handshake, request, response to EOF.
async fn one(
    connector: &TlsConnector,
    opts: &Opts,
    name: &ServerName<'static>,
    request: &[u8],
    tally: &mut Tally,
) -> Result<(), Failure> {
    let tcp = TcpStream::connect(opts.addr)
        .await
        .map_err(|_| Failure::Connect)?;
    tcp.set_nodelay(true).map_err(|_| Failure::Connect)?;
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .map_err(|_| Failure::Connect)?;
    {
        let conn = tls.get_ref().1;
        if conn.handshake_kind() == Some(HandshakeKind::Full) {
            tally.full_handshakes += 1;
        }
        if tally.first.is_none() {
            tally.first = Some(format!(
                "{:?} {:?} {:?}",
                conn.protocol_version(),
                conn.negotiated_cipher_suite().map(|s| s.suite()),
                conn.negotiated_key_exchange_group().map(|g| g.name()),
            ));
        }
    }
    tls.write_all(request).await.map_err(|_| Failure::Write)?;
    tls.flush().await.map_err(|_| Failure::Write)?;
    // Read until the response is complete, then close from this side (as
    // wrk does): the client then holds the TIME_WAIT state, which Linux
    // reuses for loopback connections (tcp_tw_reuse = 2). Waiting for the
    // server to close first leaves TIME_WAIT on the server side, and a new
    // connection from the same client port then waits for a SYN retransmit.
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    while !complete(&buf) {
        match tls.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(Failure::Read),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    tally.bytes += buf.len() as u64;
    if buf.starts_with(b"HTTP/1.1 2") || buf.starts_with(b"HTTP/1.1 3") {
        tally.ok += 1;
    } else {
        tally.non2xx += 1;
    }
    Ok(())
}

/// A whole response: the head, and as many body bytes as Content-Length says.
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => buf.len() >= end + 4 + n,
        None => true,
    }
}

async fn worker(connector: TlsConnector, opts: Arc<Opts>, deadline: Instant) -> Tally {
    let name = ServerName::try_from(opts.host.clone()).expect("valid server name");
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        opts.path, opts.host
    );
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let start = Instant::now();
        let res = tokio::time::timeout(
            CONN_TIMEOUT,
            one(&connector, &opts, &name, request.as_bytes(), &mut tally),
        )
        .await;
        let finished = Instant::now();
        match res {
            Err(_) => tally.timeouts += 1,
            Ok(Err(Failure::Connect)) => tally.connect_err += 1,
            Ok(Err(Failure::Write)) => tally.write_err += 1,
            Ok(Err(Failure::Read)) => tally.read_err += 1,
            Ok(Ok(())) => {
                let us = (finished - start).as_micros().min(u32::MAX as u128) as u32;
                tally.latencies_us.push(us);
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

fn main() {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            eprintln!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("tls_client: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    // The provider rustls is built with (exactly one of ring / aws-lc-rs).
    let mut config = ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let provider = CryptoProvider::get_default()
        .expect("a process-wide crypto provider after ClientConfig::builder")
        .clone();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AnyCert {
            provider,
            verify: opts.verify_signature,
        }));
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let opts = Arc::new(opts);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let deadline = started + opts.duration;
    let tallies = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..opts.conns {
            set.spawn(worker(connector.clone(), opts.clone(), deadline));
        }
        let mut out = Vec::new();
        while let Some(t) = set.join_next().await {
            out.push(t.expect("worker task"));
        }
        out
    });
    let elapsed = started.elapsed().as_secs_f64();

    let mut all = Tally::default();
    for t in tallies {
        all.ok += t.ok;
        all.non2xx += t.non2xx;
        all.connect_err += t.connect_err;
        all.read_err += t.read_err;
        all.write_err += t.write_err;
        all.timeouts += t.timeouts;
        all.full_handshakes += t.full_handshakes;
        all.bytes += t.bytes;
        all.latencies_us.extend(t.latencies_us);
        if all.first.is_none() {
            all.first = t.first;
        }
    }
    all.latencies_us.sort_unstable();
    let requests = all.ok + all.non2xx;
    let connections = requests + all.read_err + all.write_err + all.timeouts;
    println!(
        "tls_client: {} connections to {} ({}), new TCP connection and full TLS 1.3 handshake each, no resumption, handshake signature {}",
        opts.conns,
        opts.addr,
        opts.host,
        if opts.verify_signature {
            "verified"
        } else {
            "not verified"
        }
    );
    println!(
        "  negotiated (first connection): {}",
        all.first.as_deref().unwrap_or("none")
    );
    println!("  Latency Distribution (connect to last byte)");
    for p in [50.0, 75.0, 90.0, 99.0] {
        println!("     {p:.0}%  {:.3}ms", percentile(&all.latencies_us, p));
    }
    println!(
        "  {requests} requests in {elapsed:.2}s, {:.2}KB read",
        all.bytes as f64 / 1024.0
    );
    println!(
        "  TCP connections established: {connections}; full TLS handshakes: {}",
        all.full_handshakes
    );
    let errors = all.connect_err + all.read_err + all.write_err + all.timeouts;
    if errors > 0 {
        println!(
            "  Socket errors: connect {}, read {}, write {}, timeout {}",
            all.connect_err, all.read_err, all.write_err, all.timeouts
        );
    }
    if all.non2xx > 0 {
        println!("  Non-2xx or 3xx responses: {}", all.non2xx);
    }
    println!("Requests/sec: {:.2}", requests as f64 / elapsed);
}
