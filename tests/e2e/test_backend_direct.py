"""Direct-to-Daphne smoke checks (no portero): run by `run.sh --backend-only`.

They prove the Django side works on its own AND that it is strict: the same
requests with the client-facing host (acme.localhost:PORT) in Host/Origin are
refused, so only a proxy that rewrites them can make test_scenarios.py pass.
"""
import os
import time
import uuid

import pytest
import requests
from websockets.exceptions import InvalidStatus

import e2e_backend
from e2e_lib import admin_login, read_request_log, request, upload_stream, ws_connect

PORT = int(os.environ["E2E_DAPHNE_PORT"])
USER = os.environ.get("E2E_ADMIN_USER", "admin")
PASSWORD = os.environ.get("E2E_ADMIN_PASSWORD", "admin-pass-123")


@pytest.mark.parametrize(
    "host,tenant",
    [("acme.chalanpro.net", "acme"), ("globex.chalanpro.net", "globex"), ("chalanpro.net", "public"),
     (f"acme.chalanpro.net:{PORT}", "acme")],
)
def test_whoami_per_tenant(host, tenant):
    r = request(PORT, "GET", "/api/whoami/", host)
    assert r.status == 200, r
    data = r.json()
    assert data["tenant"] == tenant and data["schema"] == tenant, data
    assert data["host"] == host, data


@pytest.mark.parametrize("host", ["acme.localhost", "acme.localhost:8000", "evil.example.com", "localhost"])
def test_hosts_outside_allowed_hosts_are_refused(host):
    # django-tenants' TenantMainMiddleware turns Django's DisallowedHost into
    # a bare 404 before any view runs.
    r = request(PORT, "GET", "/api/whoami/", host)
    assert r.status == 404 and r.body == b"", r


def test_admin_login_same_origin_succeeds():
    _, post, jar = admin_login(PORT, "acme.chalanpro.net", "http://acme.chalanpro.net", USER, PASSWORD)
    assert post.status == 302, post
    assert post.header("Location") == "/admin/", post
    assert "sessionid" in jar.cookies
    index = request(PORT, "GET", "/admin/", "acme.chalanpro.net", headers={"Cookie": jar.header()})
    assert index.status == 200, index
    assert "Site administration" in index.text and "Log out" in index.text


def test_admin_login_with_client_facing_origin_is_csrf_rejected():
    """What Django does if a proxy forwards the browser's Origin unchanged."""
    _, post, _ = admin_login(PORT, "acme.chalanpro.net", "http://acme.localhost:8000", USER, PASSWORD)
    assert post.status == 403, post
    assert "CSRF" in post.text


def test_admin_users_are_per_tenant():
    # wrong password on globex: the login form is re-rendered (200), no session
    _, post, jar = admin_login(PORT, "globex.chalanpro.net", "http://globex.chalanpro.net", USER, "wrong")
    assert post.status == 200 and "sessionid" not in jar.cookies, post
    _, post, jar = admin_login(PORT, "globex.chalanpro.net", "http://globex.chalanpro.net", USER, PASSWORD)
    assert post.status == 302 and "sessionid" in jar.cookies, post


def test_admin_static_served_with_debug_false():
    r = request(PORT, "GET", "/static/admin/css/base.css", "acme.chalanpro.net")
    assert r.status == 200, r
    assert b"body" in r.body


def test_redirect_is_absolute_to_forwarded_host():
    r = request(PORT, "GET", "/api/redirect/", "acme.chalanpro.net")
    assert r.status == 302, r
    assert r.header("Location") == "http://acme.chalanpro.net/api/whoami/", r


def test_slow_view():
    r = request(PORT, "GET", "/api/slow/?s=1", "acme.chalanpro.net")
    assert r.status == 200 and r.elapsed >= 1.0, r
    assert r.json()["tenant"] == "acme"


def test_websocket_same_origin_accepted_and_echoes():
    with ws_connect(PORT, "acme.chalanpro.net", "http://acme.chalanpro.net") as ws:
        import json

        hello = json.loads(ws.recv(timeout=10))
        assert hello == {"type": "hello", "tenant": "acme", "host": "acme.chalanpro.net",
                         "origin": "http://acme.chalanpro.net"}, hello
        ws.send("ping-1")
        assert json.loads(ws.recv(timeout=10)) == {"type": "echo", "data": "ping-1"}


@pytest.mark.parametrize("origin", ["http://evil.example.com", "http://acme.localhost:8000", None])
def test_websocket_foreign_or_missing_origin_rejected(origin):
    with pytest.raises(InvalidStatus) as exc:
        ws_connect(PORT, "acme.chalanpro.net", origin)
    assert exc.value.response.status_code == 403


def test_websocket_unknown_tenant_rejected():
    with pytest.raises(InvalidStatus) as exc:
        ws_connect(PORT, "nosuch.chalanpro.net", "http://nosuch.chalanpro.net")
    assert exc.value.response.status_code == 403


def test_chunked_upload_is_counted():
    size = 20 * 1024 * 1024 + 123
    gen, digest = upload_stream(size)
    r = requests.post(f"http://127.0.0.1:{PORT}/api/upload/", data=gen,
                      headers={"Host": "acme.chalanpro.net"}, timeout=(10, 120))
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["bytes"] == size and data["sha256"] == digest.hexdigest(), data
    assert data["transfer_encoding"] == "chunked", data


def test_request_log_records_backend_requests():
    probe = uuid.uuid4().hex
    assert request(PORT, "GET", f"/api/whoami/?probe={probe}", "acme.chalanpro.net").status == 200
    records = read_request_log(os.environ["E2E_REQUEST_LOG"])
    assert any(probe in r["query"] and r["host"] == "acme.chalanpro.net" for r in records)


def test_backend_stop_and_restart_helper():
    e2e_backend.stop()
    assert not e2e_backend.answers(timeout=1)
    started = time.monotonic()
    e2e_backend.start()
    print(f"daphne restart took {time.monotonic() - started:.2f}s")
    assert request(PORT, "GET", "/api/whoami/", "acme.chalanpro.net").status == 200
