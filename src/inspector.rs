//! What the page at `/__portero/` shows besides the config: the last
//! requests (the inspector), and per upstream and per tenant what the recent
//! traffic did. Filled from the access-log entry when a response ends.
//!
//! Memory is bounded whatever the traffic:
//! - the ring keeps `admin.inspector_size` requests (0: none, and no header
//!   is copied per request), each with at most [`MAX_HEADER_BYTES`] of
//!   request headers and as much of response headers, and a target cut at
//!   [`MAX_TARGET`] bytes: about 20 KiB per request at worst, 300 × 20 KiB
//!   = 6 MiB at the default size, typically a few hundred KiB;
//! - per upstream (only configured ones are kept): counters, the last
//!   failure's cause and [`LATENCY_SAMPLES`] durations;
//! - per tenant: counters for [`MAX_TENANTS`] names, the rest in one `other`;
//! - the live stream: a broadcast channel of [`CHANNEL`] records shared by
//!   every page, at most [`MAX_STREAMS`] pages at once;
//! - with body capture on (`admin.inspector_bodies`, at most 64 KiB), each
//!   kept request also holds that much of both bodies, the request body
//!   again in its curl command (when kept whole), and what a replay needs
//!   (its headers, at most [`MAX_REPLAY_HEADERS`], and its body): at the
//!   64 KiB maximum roughly 300 KiB per request at most, 90 MiB for 300;
//! - the last [`MAX_REFUSED`] refused WebSocket handshakes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri, header};
use serde::Serialize;
use tokio::sync::broadcast;

/// Tenants counted by name; the others are added up as `other`.
pub(crate) const MAX_TENANTS: usize = 200;
/// Recent durations kept per upstream for p50/p99 over the last minute
/// (busier upstreams: over their last this many requests).
pub(crate) const LATENCY_SAMPLES: usize = 512;
const LATENCY_WINDOW: Duration = Duration::from_secs(60);
/// Header bytes (names and values) kept per captured request, each way.
pub(crate) const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Bytes of the request target (path and query) kept.
pub(crate) const MAX_TARGET: usize = 2 * 1024;
/// Records queued for live pages; a page that falls further behind skips.
pub(crate) const CHANNEL: usize = 256;
/// Live pages at once.
pub(crate) const MAX_STREAMS: usize = 16;
/// Refused WebSocket handshakes kept for the page.
pub(crate) const MAX_REFUSED: usize = 50;
/// A request whose headers are larger is shown but cannot be replayed:
/// replay needs them whole, not cut at [`MAX_HEADER_BYTES`].
pub(crate) const MAX_REPLAY_HEADERS: usize = 16 * 1024;

/// Header values shown as `[masked]` unless `admin.inspector_unmask`.
const SECRET: [&str; 6] = [
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "x-csrftoken",
    "x-csrf-token",
];
const MASKED: &str = "[masked]";

/// The request and response headers of one request, copied (reference
/// counted) only while the inspector is on, and the first bytes of its
/// bodies while body capture is on too.
pub(crate) struct Headers {
    pub request: HeaderMap,
    pub response: HeaderMap,
    /// Fed by the proxy as the request body goes up.
    pub request_body: Option<Arc<Tap>>,
    /// Fed by the access log's body wrapper as the response goes out.
    pub response_body: Option<Tap>,
}

impl Headers {
    /// The request's headers, and taps of `bodies` bytes each (0: none).
    pub(crate) fn new(request: HeaderMap, bodies: usize) -> Headers {
        Headers {
            request,
            response: HeaderMap::new(),
            request_body: (bodies > 0).then(|| Arc::new(Tap::new(bodies))),
            response_body: (bodies > 0).then(|| Tap::new(bodies)),
        }
    }
}

/// The first `limit` bytes of a body, kept while it streams past, and how
/// long it was.
pub(crate) struct Tap {
    limit: usize,
    state: Mutex<TapState>,
}

#[derive(Default)]
struct TapState {
    kept: Vec<u8>,
    total: u64,
    /// The body's end was seen (all of it passed).
    ended: bool,
}

impl Tap {
    pub(crate) fn new(limit: usize) -> Tap {
        Tap {
            limit,
            state: Mutex::default(),
        }
    }

    pub(crate) fn feed(&self, data: &[u8]) {
        let mut s = self.state.lock().expect("never poisoned");
        s.total += data.len() as u64;
        let room = self.limit.saturating_sub(s.kept.len()).min(data.len());
        s.kept.extend_from_slice(&data[..room]);
    }

    pub(crate) fn end(&self) {
        self.state.lock().expect("never poisoned").ended = true;
    }

    fn take(&self) -> TapState {
        std::mem::take(&mut *self.state.lock().expect("never poisoned"))
    }
}

/// A WebSocket handshake: what the page shows if it is refused.
pub(crate) struct Handshake {
    pub origin: Option<String>,
}

/// What the access-log entry knows when the response ends.
pub(crate) struct Finished<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub tls: bool,
    pub host: &'a str,
    pub tenant: Option<&'a str>,
    pub route: &'a dyn std::fmt::Display,
    /// portero's own endpoints are not kept in the ring (a page polling,
    /// an orchestrator probing would push everything else out).
    pub own: bool,
    pub status: StatusCode,
    pub took: Duration,
    pub upstream: Option<&'a str>,
    pub bytes: u64,
    pub complete: bool,
    /// The error's text and whose fault it was, moved out of the entry.
    pub error: Option<(String, &'static str)>,
    pub headers: Option<Box<Headers>>,
    /// The address the client connected to: a replay goes there.
    pub local: SocketAddr,
    /// Set when the request asked for a WebSocket.
    pub handshake: Option<Handshake>,
}

/// One request as the inspector shows it.
#[derive(Debug, Serialize)]
pub(crate) struct Captured {
    pub id: u64,
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub method: String,
    pub scheme: &'static str,
    pub host: String,
    /// Path and query, as received (cut at [`MAX_TARGET`]).
    pub target: String,
    pub tenant: Option<String>,
    pub route: String,
    pub status: u16,
    pub ms: f64,
    pub upstream: Option<String>,
    pub bytes: u64,
    pub complete: bool,
    pub fault: Option<&'static str>,
    pub error: Option<String>,
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    /// The request as a curl command line (masked values stay masked).
    pub curl: String,
    /// The first bytes of the bodies, when body capture is on.
    pub request_body: Option<Kept>,
    pub response_body: Option<Kept>,
    /// Why the request cannot be replayed; `None` when it can.
    pub replay_blocked: Option<&'static str>,
    /// What a replay sends; never shown.
    #[serde(skip)]
    pub replay: Option<Replay>,
}

/// The first bytes of a body, as the page shows them.
#[derive(Debug, Serialize)]
pub(crate) struct Kept {
    /// The kept bytes as text; empty when they are not UTF-8.
    pub text: String,
    pub binary: bool,
    /// The body's length, of which `text` is the start.
    pub bytes: u64,
    pub cut: bool,
}

impl Kept {
    fn of(kept: &[u8], total: u64) -> Kept {
        // A cut can split a character: text up to it is still text.
        let text = match std::str::from_utf8(kept) {
            Ok(t) => Some(t),
            Err(e) if e.error_len().is_none() => {
                Some(std::str::from_utf8(&kept[..e.valid_up_to()]).expect("valid up to here"))
            }
            Err(_) => None,
        };
        Kept {
            binary: text.is_none(),
            text: text.unwrap_or_default().to_string(),
            bytes: total,
            cut: (kept.len() as u64) < total,
        }
    }
}

/// A request as it was received, to send again.
#[derive(Debug)]
pub(crate) struct Replay {
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub host: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The listener it came in on, and whether over TLS.
    pub local: SocketAddr,
    pub tls: bool,
}

/// A WebSocket handshake that did not end in `101 Switching Protocols`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Refused {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub tenant: Option<String>,
    pub host: String,
    pub path: String,
    pub status: u16,
    pub origin: Option<String>,
    /// Why, in plain words.
    pub reason: String,
}

/// A failure of an upstream, for the page.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Failure {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub status: u16,
    pub cause: String,
}

#[derive(Default)]
struct UpstreamStats {
    requests: u64,
    errors: u64,
    last_success: Option<SystemTime>,
    last_failure: Option<(SystemTime, u16, Cause)>,
    /// A ring of (when, milliseconds), oldest overwritten first.
    latencies: Vec<(Instant, f32)>,
    next: usize,
}

/// Why an upstream failed, formatted only when shown.
enum Cause {
    Error(String),
    Status(u16),
}

/// An upstream's numbers, as the page shows them.
#[derive(Debug, Serialize)]
pub(crate) struct UpstreamView {
    pub requests: u64,
    pub errors: u64,
    #[serde(serialize_with = "opt_rfc3339")]
    pub last_success: Option<SystemTime>,
    pub last_failure: Option<Failure>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TenantView {
    pub requests: u64,
    pub errors: u64,
    #[serde(serialize_with = "opt_rfc3339")]
    pub last_seen: Option<SystemTime>,
}

#[derive(Default)]
struct Tenants {
    named: HashMap<String, TenantView>,
    other: TenantView,
}

/// The result of the last config reload.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Reload {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub applied: bool,
    /// Why the file was refused, when it was.
    pub error: Option<String>,
}

pub(crate) struct Inspector {
    pub started: SystemTime,
    started_at: Instant,
    /// Requests kept; 0 is off.
    size: AtomicUsize,
    unmask: AtomicBool,
    /// Bytes kept of each body; 0 is off.
    bodies: AtomicUsize,
    refused: Mutex<VecDeque<Refused>>,
    next_id: AtomicU64,
    ring: Mutex<VecDeque<Arc<Captured>>>,
    events: broadcast::Sender<Arc<Captured>>,
    upstreams: Mutex<HashMap<String, UpstreamStats>>,
    tenants: Mutex<Tenants>,
    reload: Mutex<Option<Reload>>,
    streams: Arc<AtomicUsize>,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector::new()
    }
}

impl Inspector {
    pub(crate) fn new() -> Inspector {
        Inspector {
            started: SystemTime::now(),
            started_at: Instant::now(),
            size: AtomicUsize::new(0),
            unmask: AtomicBool::new(false),
            bodies: AtomicUsize::new(0),
            refused: Mutex::default(),
            next_id: AtomicU64::new(1),
            ring: Mutex::default(),
            events: broadcast::channel(CHANNEL).0,
            upstreams: Mutex::default(),
            tenants: Mutex::default(),
            reload: Mutex::default(),
            streams: Arc::default(),
        }
    }

    /// Applies a config's `[admin]` inspector keys and forgets upstreams no
    /// longer configured; called whenever a snapshot is built.
    pub(crate) fn configure<'a>(
        &self,
        admin: &crate::config::AdminConfig,
        upstreams: impl Iterator<Item = &'a str>,
    ) {
        let size = admin.inspector_size;
        self.size.store(size, Ordering::Relaxed);
        self.unmask.store(admin.inspector_unmask, Ordering::Relaxed);
        self.bodies.store(admin.inspector_bodies, Ordering::Relaxed);
        {
            let mut ring = self.lock_ring();
            while ring.len() > size {
                ring.pop_front();
            }
            if size == 0 {
                ring.shrink_to_fit();
            }
        }
        let keep: std::collections::HashSet<&str> = upstreams.collect();
        self.upstreams
            .lock()
            .expect("never poisoned")
            .retain(|name, _| keep.contains(name.as_str()));
    }

    /// Whether requests are captured (and their headers copied).
    pub(crate) fn on(&self) -> bool {
        self.size.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// Bytes kept of each body (0: none).
    pub(crate) fn bodies(&self) -> usize {
        self.bodies.load(Ordering::Relaxed)
    }

    pub(crate) fn unmasked(&self) -> bool {
        self.unmask.load(Ordering::Relaxed)
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    fn lock_ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Captured>>> {
        self.ring.lock().expect("never poisoned")
    }

    /// Records one finished request.
    pub(crate) fn record(&self, f: Finished<'_>) {
        let now = SystemTime::now();
        let size = self.size();
        let capture = size > 0 && !f.own && f.headers.is_some();
        let mut error = f.error;
        let failed = f.status.is_server_error()
            || error.as_ref().is_some_and(|(_, fault)| *fault != "client");
        if let Some(name) = f.upstream {
            let mut ups = self.upstreams.lock().expect("never poisoned");
            // One lookup for an upstream seen before (every request but
            // its first).
            let mut fresh = None;
            let s = match ups.get_mut(name) {
                Some(s) => s,
                None => fresh.insert(UpstreamStats::default()),
            };
            s.requests += 1;
            if failed {
                s.errors += 1;
                let cause = match &mut error {
                    // Copied only when the ring keeps the text too.
                    Some((msg, _)) if capture => Cause::Error(msg.clone()),
                    Some((msg, _)) => Cause::Error(std::mem::take(msg)),
                    None => Cause::Status(f.status.as_u16()),
                };
                s.last_failure = Some((now, f.status.as_u16(), cause));
            } else {
                s.last_success = Some(now);
            }
            s.sample(f.took);
            if let Some(s) = fresh {
                ups.insert(name.to_string(), s);
            }
        }
        if let Some(t) = f.tenant {
            let mut tenants = self.tenants.lock().expect("never poisoned");
            let count = |view: &mut TenantView| {
                view.requests += 1;
                view.errors += u64::from(f.status.as_u16() >= 400);
                view.last_seen = Some(now);
            };
            // One lookup for a tenant seen before.
            if let Some(view) = tenants.named.get_mut(t) {
                count(view);
            } else if tenants.named.len() < MAX_TENANTS {
                let mut view = TenantView::default();
                count(&mut view);
                tenants.named.insert(t.to_string(), view);
            } else {
                count(&mut tenants.other);
            }
        }
        let websocket = f.handshake.is_some();
        if let Some(hs) = f.handshake.filter(|_| !f.own) {
            if f.status != StatusCode::SWITCHING_PROTOCOLS {
                self.refused(Refused {
                    time: now,
                    tenant: f.tenant.map(str::to_string),
                    host: cut(f.host, MAX_TARGET).to_string(),
                    path: cut(f.uri.path(), MAX_TARGET).to_string(),
                    status: f.status.as_u16(),
                    origin: hs.origin,
                    reason: refusal(f.status, error.as_ref().map(|(m, _)| m.as_str())),
                });
            }
        }
        let Some(mut headers) = f.headers.filter(|_| capture) else {
            return;
        };
        let unmask = self.unmasked();
        let scheme = if f.tls { "https" } else { "http" };
        let target = cut(
            f.uri
                .path_and_query()
                .map_or_else(|| f.uri.path(), |p| p.as_str()),
            MAX_TARGET,
        );
        let host = cut(f.host, MAX_TARGET).to_string();
        let request_headers = copy(&headers.request, unmask);
        let request_tap = headers.request_body.take().map(|t| t.take());
        // A body kept whole, as text, goes into the command too.
        let whole = request_tap
            .as_ref()
            .filter(|t| t.ended && t.total > 0 && t.kept.len() as u64 == t.total)
            .and_then(|t| std::str::from_utf8(&t.kept).ok());
        let curl = curl(f.method, scheme, &host, target, &request_headers, whole);
        let response_body = headers.response_body.take().map(|t| {
            let t = t.take();
            Kept::of(&t.kept, t.total)
        });
        let request_body = request_tap.as_ref().map(|t| Kept::of(&t.kept, t.total));
        let (replay, replay_blocked) =
            match replayable(f.method, &headers.request, request_tap, websocket) {
                Ok(body) => (
                    Some(Replay {
                        method: f.method.clone(),
                        target: target.to_string(),
                        host: host.clone(),
                        headers: std::mem::take(&mut headers.request),
                        body,
                        local: f.local,
                        tls: f.tls,
                    }),
                    None,
                ),
                Err(why) => (None, Some(why)),
            };
        let captured = Arc::new(Captured {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time: now,
            method: f.method.to_string(),
            scheme,
            host,
            target: target.to_string(),
            tenant: f.tenant.map(str::to_string),
            route: f.route.to_string(),
            status: f.status.as_u16(),
            ms: (f.took.as_secs_f64() * 10_000.0).round() / 10.0,
            upstream: f.upstream.map(str::to_string),
            bytes: f.bytes,
            complete: f.complete,
            fault: error.as_ref().map(|(_, fault)| *fault),
            error: error.map(|(msg, _)| msg),
            request_headers,
            response_headers: copy(&headers.response, unmask),
            curl,
            request_body,
            response_body,
            replay_blocked,
            replay,
        });
        {
            let mut ring = self.lock_ring();
            while ring.len() >= size {
                ring.pop_front();
            }
            ring.push_back(captured.clone());
        }
        // No page listening: an error, and nothing queued.
        let _ = self.events.send(captured);
    }

    fn refused(&self, r: Refused) {
        let mut list = self.refused.lock().expect("never poisoned");
        if list.len() >= MAX_REFUSED {
            list.pop_front();
        }
        list.push_back(r);
    }

    /// The refused WebSocket handshakes kept, newest first.
    pub(crate) fn refusals(&self) -> Vec<Refused> {
        let list = self.refused.lock().expect("never poisoned");
        list.iter().rev().cloned().collect()
    }

    /// One kept request.
    pub(crate) fn request(&self, id: u64) -> Option<Arc<Captured>> {
        self.lock_ring().iter().find(|r| r.id == id).cloned()
    }

    /// The requests kept, oldest first.
    pub(crate) fn requests(&self) -> Vec<Arc<Captured>> {
        self.lock_ring().iter().cloned().collect()
    }

    /// New records as they are kept, for a live page.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Captured>> {
        self.events.subscribe()
    }

    /// A slot for one live page, `None` when [`MAX_STREAMS`] are open.
    pub(crate) fn stream_slot(&self) -> Option<StreamSlot> {
        let open = self.streams.fetch_add(1, Ordering::Relaxed);
        let slot = StreamSlot(self.streams.clone());
        (open < MAX_STREAMS).then_some(slot)
    }

    pub(crate) fn upstream(&self, name: &str) -> Option<UpstreamView> {
        let ups = self.upstreams.lock().expect("never poisoned");
        let s = ups.get(name)?;
        let (p50, p99) = s.percentiles();
        Some(UpstreamView {
            requests: s.requests,
            errors: s.errors,
            last_success: s.last_success,
            last_failure: s
                .last_failure
                .as_ref()
                .map(|(time, status, cause)| Failure {
                    time: *time,
                    status: *status,
                    cause: match cause {
                        Cause::Error(msg) if !msg.is_empty() => msg.clone(),
                        Cause::Error(_) => "failed".into(),
                        Cause::Status(s) => format!("the upstream answered {s}"),
                    },
                }),
            p50_ms: p50,
            p99_ms: p99,
        })
    }

    /// Tenants by name (busiest first), and the rest added up.
    pub(crate) fn tenants(&self) -> (Vec<(String, TenantView)>, TenantView) {
        let t = self.tenants.lock().expect("never poisoned");
        let mut named: Vec<(String, TenantView)> = t
            .named
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(&b.0)));
        (named, t.other.clone())
    }

    pub(crate) fn reloaded(&self, error: Option<String>) {
        *self.reload.lock().expect("never poisoned") = Some(Reload {
            time: SystemTime::now(),
            applied: error.is_none(),
            error,
        });
    }

    pub(crate) fn last_reload(&self) -> Option<Reload> {
        self.reload.lock().expect("never poisoned").clone()
    }
}

/// Counts a live page until dropped.
pub(crate) struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UpstreamStats {
    fn sample(&mut self, took: Duration) {
        let sample = (Instant::now(), (took.as_secs_f64() * 1000.0) as f32);
        if self.latencies.len() < LATENCY_SAMPLES {
            self.latencies.push(sample);
        } else {
            self.latencies[self.next] = sample;
        }
        self.next = (self.next + 1) % LATENCY_SAMPLES;
    }

    fn percentiles(&self) -> (Option<f64>, Option<f64>) {
        let now = Instant::now();
        let mut ms: Vec<f32> = self
            .latencies
            .iter()
            .filter(|(at, _)| now.duration_since(*at) <= LATENCY_WINDOW)
            .map(|(_, ms)| *ms)
            .collect();
        if ms.is_empty() {
            return (None, None);
        }
        ms.sort_by(f32::total_cmp);
        let at = |q: f64| {
            let i = ((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1;
            (f64::from(ms[i]) * 10.0).round() / 10.0
        };
        (Some(at(0.50)), Some(at(0.99)))
    }
}

/// The body a replay sends, or why there is none: a replay sends the
/// request as it was, so its body must have been kept whole (or it had none).
fn replayable(
    method: &Method,
    headers: &HeaderMap,
    tap: Option<TapState>,
    websocket: bool,
) -> Result<Bytes, &'static str> {
    if websocket {
        return Err("a WebSocket handshake is not replayed: open the socket again");
    }
    if method == Method::CONNECT {
        return Err("CONNECT is not replayed");
    }
    let size: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if size > MAX_REPLAY_HEADERS {
        return Err("its headers were too large to keep for a replay");
    }
    // Declared by the head: a body may follow even if nothing read it.
    let declared = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    match tap {
        Some(t) if t.ended && t.kept.len() as u64 == t.total => Ok(Bytes::from(t.kept)),
        Some(t) if t.total > t.kept.len() as u64 => {
            Err("its body was larger than admin.inspector_bodies")
        }
        Some(t) if t.total == 0 && !declared => Ok(Bytes::new()),
        Some(_) => Err("its body was not read in full"),
        None if !declared => Ok(Bytes::new()),
        None => Err("it had a body and body capture is off (admin.inspector_bodies)"),
    }
}

/// Why a WebSocket handshake got `status` instead of 101, in plain words.
/// `error` is portero's own reason, when portero refused or failed it.
fn refusal(status: StatusCode, error: Option<&str>) -> String {
    if let Some(e) = error {
        return format!("portero answered {}: {e}", status.as_u16());
    }
    let code = status.as_u16();
    match code {
        403 => "the backend refused it (403 Forbidden). With Django Channels this is \
                usually the origin check: AllowedHostsOriginValidator accepts the socket \
                only if the Origin's host is in ALLOWED_HOSTS; or ALLOWED_HOSTS does not \
                list the Host portero sent"
            .into(),
        404 => "the backend has no WebSocket route at this path (404). With Channels, \
                check the URLRouter in asgi.py, trailing slash included"
            .into(),
        400 => "the backend found the handshake malformed (400)".into(),
        401 => "the backend wants the client to log in first (401)".into(),
        426 => "the backend wants another WebSocket version (426 Upgrade Required)".into(),
        200..=299 => format!(
            "the backend answered {code} as if to a plain request: an HTTP view serves \
             this path, not a WebSocket consumer (with Channels, check that the \
             ProtocolTypeRouter has a \"websocket\" entry and the server is Daphne or \
             another ASGI server, not runserver without channels)"
        ),
        500..=599 => format!(
            "the backend failed while answering the handshake ({code}); its own log says why"
        ),
        _ => format!("the backend answered {code} instead of 101 Switching Protocols"),
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn is_secret(name: &HeaderName) -> bool {
    SECRET.contains(&name.as_str())
}

/// The headers as text, secrets masked unless `unmask`, at most
/// [`MAX_HEADER_BYTES`] of them. Copies: a kept record never holds on to a
/// connection's read buffer.
pub(crate) fn copy(headers: &HeaderMap, unmask: bool) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(headers.len());
    let mut used = 0;
    for (name, value) in headers {
        let value = if !unmask && is_secret(name) {
            MASKED.to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        used += name.as_str().len() + value.len();
        if used > MAX_HEADER_BYTES {
            out.push((
                "x-portero-inspector".into(),
                format!("headers cut at {MAX_HEADER_BYTES} bytes"),
            ));
            break;
        }
        out.push((name.as_str().to_string(), value));
    }
    out
}

/// `s` as one shell word: single-quoted, a `'` written as `'\''`.
pub(crate) fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The request as a curl command: method, URL, headers (without those curl
/// writes itself), and the body when it was kept whole.
pub(crate) fn curl(
    method: &Method,
    scheme: &str,
    host: &str,
    target: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> String {
    let mut cmd = String::from("curl");
    match *method {
        Method::GET => {}
        // --data-binary makes it a POST.
        Method::POST if body.is_some() => {}
        Method::HEAD => cmd.push_str(" --head"),
        ref m => {
            cmd.push_str(" -X ");
            cmd.push_str(&shell_quote(m.as_str()));
        }
    }
    cmd.push(' ');
    cmd.push_str(&shell_quote(&format!("{scheme}://{host}{target}")));
    for (name, value) in headers {
        let n = name.as_str();
        if n == header::HOST.as_str()
            || n == header::CONTENT_LENGTH.as_str()
            || n == header::TRANSFER_ENCODING.as_str()
            || n == header::CONNECTION.as_str()
        {
            continue;
        }
        cmd.push_str(" -H ");
        cmd.push_str(&shell_quote(&format!("{n}: {value}")));
    }
    if let Some(body) = body {
        cmd.push_str(" --data-binary ");
        cmd.push_str(&shell_quote(body));
    }
    cmd
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

fn opt_rfc3339<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn curl_quotes_headers_with_quotes_and_spaces() {
        let cmd = curl(
            &Method::GET,
            "http",
            "acme.localhost:8080",
            "/api/x?q=a b&n='1'",
            &h(&[
                ("host", "acme.localhost:8080"),
                ("user-agent", "Mozilla/5.0 (X11; \"Linux\")"),
                ("x-note", "it's here"),
                ("cookie", MASKED),
            ]),
            None,
        );
        assert_eq!(
            cmd,
            "curl 'http://acme.localhost:8080/api/x?q=a b&n='\\''1'\\''' \
             -H 'user-agent: Mozilla/5.0 (X11; \"Linux\")' \
             -H 'x-note: it'\\''s here' -H 'cookie: [masked]'"
        );
        assert_eq!(
            curl(&Method::HEAD, "https", "a", "/", &[], None),
            "curl --head 'https://a/'"
        );
        assert_eq!(
            curl(
                &Method::DELETE,
                "http",
                "a",
                "/x",
                &h(&[("content-length", "0")]),
                None,
            ),
            "curl -X 'DELETE' 'http://a/x'"
        );
        assert_eq!(
            curl(
                &Method::POST,
                "http",
                "a",
                "/x",
                &h(&[("content-type", "application/json")]),
                Some("{\"it's\":1}"),
            ),
            "curl 'http://a/x' -H 'content-type: application/json' \
             --data-binary '{\"it'\\''s\":1}'"
        );
        assert_eq!(
            curl(&Method::PUT, "http", "a", "/x", &[], Some("v")),
            "curl -X 'PUT' 'http://a/x' --data-binary 'v'"
        );
    }

    #[test]
    fn secrets_are_masked_unless_unmasked() {
        let mut m = HeaderMap::new();
        m.insert("authorization", "Bearer abc".parse().unwrap());
        m.insert("x-csrftoken", "t".parse().unwrap());
        m.append("set-cookie", "a=1".parse().unwrap());
        m.append("set-cookie", "b=2".parse().unwrap());
        m.insert("accept", "*/*".parse().unwrap());
        let masked = copy(&m, false);
        assert!(
            masked.iter().all(|(n, v)| (n == "accept") == (v != MASKED)),
            "{masked:?}"
        );
        assert_eq!(masked.len(), 5);
        assert!(copy(&m, true).contains(&("authorization".into(), "Bearer abc".into())));
    }

    #[test]
    fn header_copies_are_bounded() {
        let mut m = HeaderMap::new();
        for i in 0..100 {
            let name: HeaderName = format!("x-h{i}").parse().unwrap();
            m.insert(name, "v".repeat(500).parse().unwrap());
        }
        let kept = copy(&m, false);
        let bytes: usize = kept.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(bytes <= MAX_HEADER_BYTES + 100, "{bytes}");
        assert_eq!(kept.last().unwrap().0, "x-portero-inspector");
    }

    #[test]
    fn percentiles_over_recent_samples() {
        let mut s = UpstreamStats::default();
        for ms in 1..=100 {
            s.sample(Duration::from_millis(ms));
        }
        assert_eq!(s.percentiles(), (Some(50.0), Some(99.0)));
        for _ in 0..LATENCY_SAMPLES * 2 {
            s.sample(Duration::from_millis(3));
        }
        assert_eq!(s.latencies.len(), LATENCY_SAMPLES);
        assert_eq!(s.percentiles(), (Some(3.0), Some(3.0)));
    }
}
