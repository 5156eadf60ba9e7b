"""portero end-to-end scenarios, run by tests/e2e/run.sh against a live portero
in front of Daphne/Django (django-tenants, Channels).

Every request goes to 127.0.0.1:<portero port> with an explicit Host header.
Tests run in file order; the backend restart scenarios come last and the
very last one leaves Daphne stopped until its teardown restarts it.
"""
import json
import os
import re
import subprocess
import threading
import time
import uuid

import pytest
import requests
from websockets.exceptions import InvalidStatus

import e2e_backend
from e2e_lib import admin_login, read_request_log, request, upload_stream, ws_connect

PORT = int(os.environ["E2E_PORTERO_PORT"])
PORTERO_PID = int(os.environ["E2E_PORTERO_PID"])
BACKEND_URL = os.environ["E2E_BACKEND_URL"]
REQUEST_LOG = os.environ["E2E_REQUEST_LOG"]
WAIT_FOR = float(os.environ.get("E2E_PORTERO_WAIT_FOR", "10"))
USER = os.environ.get("E2E_ADMIN_USER", "admin")
PASSWORD = os.environ.get("E2E_ADMIN_PASSWORD", "admin-pass-123")

ACME = f"acme.localhost:{PORT}"
ACME_ORIGIN = f"http://{ACME}"
LIVERELOAD_TAG = '<script src="/__portero/livereload.js"></script>'


def whoami(host, **headers):
    r = request(PORT, "GET", "/api/whoami/", host, headers=headers)
    assert r.status == 200, f"GET /api/whoami/ with Host {host}: {r!r}"
    return r.json()


def wait_logged(probe, timeout=5.0):
    """Wait until the backend request log has a record whose query has probe."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(probe in rec.get("query", "") for rec in read_request_log(REQUEST_LOG)):
            return True
        time.sleep(0.05)
    return False


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.fixture(autouse=True)
def portero_alive():
    assert e2e_backend.pid_alive(PORTERO_PID), "portero is not running"
    yield
    assert e2e_backend.pid_alive(PORTERO_PID), "portero died during this test"


# ------------------------------------------------------------ 1. tenants ---

@pytest.mark.parametrize(
    "host,tenant,forwarded",
    [(f"acme.localhost:{PORT}", "acme", "acme.chalanpro.net"),
     (f"acme.chalanpro.net:{PORT}", "acme", "acme.chalanpro.net"),
     (f"globex.localhost:{PORT}", "globex", "globex.chalanpro.net"),
     (f"localhost:{PORT}", "public", "chalanpro.net")],
)
def test_s1_tenant_routing(host, tenant, forwarded):
    data = whoami(host)
    assert data["tenant"] == tenant and data["schema"] == tenant, data
    assert data["host"] == forwarded, f"Host forwarded to Django: {data}"


@pytest.mark.parametrize("host", ["evil.example.com", f"evil.example.com:{PORT}", f"evilchalanpro.net:{PORT}"])
def test_s1_unknown_host_gets_421_and_never_reaches_django(host):
    probe = uuid.uuid4().hex
    r = request(PORT, "GET", f"/api/whoami/?probe={probe}", host)
    assert r.status == 421, r
    # A positive control sent afterwards must show up in the backend's log...
    control = uuid.uuid4().hex
    assert request(PORT, "GET", f"/api/whoami/?probe={control}", ACME).status == 200
    assert wait_logged(control), "control request not in the backend request log (log broken?)"
    # ...while the 421'd one never did.
    hits = [rec for rec in read_request_log(REQUEST_LOG) if probe in rec.get("query", "")]
    assert hits == [], f"request for Host {host} reached Django: {hits}"


def test_s1_forwarded_headers():
    data = whoami(ACME)
    assert data["host"] == "acme.chalanpro.net", data
    assert data["x_forwarded_for"] == "127.0.0.1", data
    assert data["x_forwarded_proto"] == "http", data
    assert data["x_forwarded_host"] == ACME, data
    assert data["x_forwarded_port"] == str(PORT), data


def test_s1_same_origin_origin_and_referer_rewritten_foreign_kept():
    data = whoami(ACME, Origin=ACME_ORIGIN, Referer=f"{ACME_ORIGIN}/some/page?x=1")
    assert data["origin"] == "http://acme.chalanpro.net", data
    assert data["referer"] == "http://acme.chalanpro.net/some/page?x=1", data
    data = whoami(ACME, Origin="http://evil.example.com", Referer="http://evil.example.com/x")
    assert data["origin"] == "http://evil.example.com", f"foreign Origin must pass unchanged: {data}"
    assert data["referer"] == "http://evil.example.com/x", data


def test_s1_slow_backend_response_passes():
    r = request(PORT, "GET", "/api/slow/?s=2", ACME, timeout=30)
    assert r.status == 200, r
    assert r.elapsed >= 2.0 and r.json()["tenant"] == "acme", r


def test_spa_history_fallback_and_livereload_injection():
    index = request(PORT, "GET", "/", ACME)
    assert index.status == 200, index
    assert "text/html" in (index.header("Content-Type") or ""), index.headers
    assert LIVERELOAD_TAG in index.text, index.text
    assert index.text.index(LIVERELOAD_TAG) < index.text.rindex("</body>"), "script must precede </body>"
    deep = request(PORT, "GET", "/projects/42/settings", ACME, headers={"Accept": "text/html"})
    assert deep.status == 200 and "Portero E2E" in deep.text and LIVERELOAD_TAG in deep.text, deep
    js = request(PORT, "GET", "/app.js", ACME)
    assert js.status == 200 and b"/api/whoami/" in js.body and LIVERELOAD_TAG.encode() not in js.body, js
    lr = request(PORT, "GET", "/__portero/livereload.js", ACME)
    assert lr.status == 200 and b"/__portero/livereload" in lr.body, lr


# -------------------------------------------------------- 2. admin login ---

def test_s2_admin_login_through_portero_with_empty_csrf_trusted_origins():
    _, post, jar = admin_login(PORT, ACME, ACME_ORIGIN, USER, PASSWORD)
    assert post.status == 302, f"login POST was not accepted (CSRF/Origin?): {post!r}"
    assert "sessionid" in jar.cookies, post.headers
    location = post.header("Location")
    assert location in ("/admin/", f"{ACME_ORIGIN}/admin/"), post
    index = request(PORT, "GET", "/admin/", ACME, headers={"Cookie": jar.header()})
    assert index.status == 200, index
    assert "Site administration" in index.text and "Log out" in index.text, index.text[:1000]
    # the admin's CSS comes through /static
    css = request(PORT, "GET", "/static/admin/css/base.css", ACME)
    assert css.status == 200 and b"body" in css.body, css


def test_s2_admin_login_still_csrf_protected():
    _, post, jar = admin_login(PORT, ACME, ACME_ORIGIN, USER, PASSWORD, token_override="x" * 64)
    assert post.status == 403 and "sessionid" not in jar.cookies, post


# ------------------------------------------------------- 3. redirects ---

def test_s3_redirect_location_rewritten_to_client_host():
    r = request(PORT, "GET", "/api/redirect/", ACME)
    assert r.status == 302, r
    assert r.header("Location") == f"http://{ACME}/api/whoami/", r


# ------------------------------------------------------ 4. websockets ---

@pytest.mark.parametrize("tenant", ["acme", "globex"])
def test_s4_websocket_echo_through_portero(tenant):
    host = f"{tenant}.localhost:{PORT}"
    with ws_connect(PORT, host, f"http://{host}") as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["type"] == "hello" and hello["tenant"] == tenant, hello
        assert hello["host"] == f"{tenant}.chalanpro.net", hello
        assert hello["origin"] == f"http://{tenant}.chalanpro.net", hello
        for i in range(3):
            msg = f"ping-{i}-{uuid.uuid4().hex[:6]}"
            ws.send(msg)
            assert json.loads(ws.recv(timeout=10)) == {"type": "echo", "data": msg}
        ws.send(b"\x00\x01binary\xff")
        assert ws.recv(timeout=10) == b"\x00\x01binary\xff"


def test_s4_websocket_foreign_origin_rejected():
    with pytest.raises(InvalidStatus) as exc:
        ws_connect(PORT, ACME, "http://evil.example.com")
    assert exc.value.response.status_code == 403


# --------------------------------------------------------- 5. uploads ---

def test_s5_large_streamed_upload_bounded_memory():
    size = 200 * 1024 * 1024
    hwm_before = vm_kib(PORTERO_PID, "VmHWM")
    gen, digest = upload_stream(size)
    started = time.monotonic()
    r = requests.post(f"http://127.0.0.1:{PORT}/api/upload/", data=gen,
                      headers={"Host": ACME}, timeout=(10, 300))
    elapsed = time.monotonic() - started
    assert r.status_code == 200, r.text[:500]
    data = r.json()
    hwm_after = vm_kib(PORTERO_PID, "VmHWM")
    print(f"upload {size} B in {elapsed:.1f}s; portero VmHWM before {hwm_before} kB, after {hwm_after} kB "
          f"({hwm_after / 1024:.1f} MB); backend saw {data}")
    assert data["bytes"] == size, data
    assert data["sha256"] == digest.hexdigest(), data
    assert hwm_after < 100 * 1024, f"portero peak RSS {hwm_after / 1024:.1f} MB >= 100 MB"


# ------------------------------------------- 6. backend down / restart ---

def test_s6_request_held_while_backend_restarts():
    e2e_backend.stop()
    assert not e2e_backend.answers(timeout=1)
    result = {}

    def fire():
        try:
            result["resp"] = request(PORT, "GET", "/api/whoami/", ACME, timeout=WAIT_FOR + 20)
        except Exception as e:  # noqa: BLE001 - reported below
            result["error"] = repr(e)

    started = time.monotonic()
    t = threading.Thread(target=fire, daemon=True)
    t.start()
    time.sleep(2.0)
    assert t.is_alive(), f"request finished while the backend was down: {result}"
    e2e_backend.start()
    print(f"backend back after {time.monotonic() - started:.2f}s")
    t.join(WAIT_FOR + 25)
    assert not t.is_alive(), "request never completed"
    assert "error" not in result, result
    r = result["resp"]
    print(f"held request completed after {r.elapsed:.2f}s")
    assert r.status == 200 and r.json()["tenant"] == "acme", r
    assert r.elapsed >= 2.0, r


@pytest.fixture
def backend_down_then_restored():
    e2e_backend.stop()
    yield
    e2e_backend.start()


def test_s6_backend_down_gives_502_after_wait_for(backend_down_then_restored):
    assert not e2e_backend.answers(timeout=1)
    r = request(PORT, "GET", "/api/whoami/", ACME, timeout=WAIT_FOR + 30)
    print(f"502 after {r.elapsed:.2f}s (wait_for {WAIT_FOR}s): {r.text[:300]!r}")
    assert r.status == 502, r
    assert r.elapsed >= WAIT_FOR * 0.8, f"gave up after {r.elapsed:.2f}s, wait_for is {WAIT_FOR}s"
    assert r.elapsed <= WAIT_FOR + 10, f"took {r.elapsed:.2f}s, wait_for is {WAIT_FOR}s"
    body = r.text
    upstream = re.sub(r"^https?://", "", BACKEND_URL)
    assert "backend" in body.lower() or upstream in body, f"502 body does not name the upstream: {body!r}"


# ------------------------------------------------------------- 7. doctor ---
# `portero doctor` with the same flags run.sh gives portero: it probes Daphne,
# starts its own portero in-process and sends each tenant's host through it.

def doctor(*extra):
    cmd = [os.environ["E2E_PORTERO_BIN"], "doctor", "--backend", BACKEND_URL,
           "--spa", os.environ["E2E_SPA_DIR"], "--base-domain", "chalanpro.net", *extra]
    # cwd: the same empty folder portero runs in (no stray ./portero.toml).
    p = subprocess.run(cmd, cwd=os.environ["E2E_PORTERO_CWD"], capture_output=True, text=True, timeout=60)
    print(p.stdout, p.stderr)
    return p


def test_s7_doctor_all_well():
    p = doctor("--tenant", "acme", "--tenant", "globex")
    assert p.returncode == 0, p.stdout
    assert "✗" not in p.stdout, p.stdout
    assert re.search(r"✓ upstream backend \(.*\): Daphne", p.stdout), p.stdout
    for t in ("acme", "globex"):
        assert f"✓ tenant {t}: {t}.localhost → {t}.chalanpro.net: GET /admin/ → 302" in p.stdout, p.stdout
    assert 'ALLOWED_HOSTS = [".chalanpro.net", "127.0.0.1", "[::1]"]' in p.stdout, p.stdout


def test_s7_doctor_names_a_tenant_missing_in_the_database():
    p = doctor("--tenant", "acme", "--tenant", "nosuch")
    assert p.returncode == 1, p.stdout
    assert "✗ tenant nosuch: nosuch.localhost → nosuch.chalanpro.net: tenant nosuch is probably missing in the database" in p.stdout, p.stdout
    assert "✓ tenant acme: acme.localhost" in p.stdout, p.stdout
    assert "1 problem(s) found" in p.stdout, p.stdout


def test_s7_doctor_backend_stopped(backend_down_then_restored):
    assert not e2e_backend.answers(timeout=1)
    p = doctor("--tenant", "acme")
    assert p.returncode == 1, p.stdout
    assert "✗ upstream backend" in p.stdout and "start it with `daphne -b 127.0.0.1 -p" in p.stdout, p.stdout
