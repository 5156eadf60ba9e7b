"""Small HTTP / WebSocket helpers shared by the e2e pytest files.

Every request goes to 127.0.0.1:<port> with an explicit Host header, so no
DNS is involved (acme.localhost etc. need not resolve on this machine).
"""
import hashlib
import http.client
import json
import os
import re
import socket
import time
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

from websockets.sync.client import connect as ws_client_connect

LOOPBACK = "127.0.0.1"


@dataclass
class Response:
    status: int
    headers: list
    body: bytes
    elapsed: float = 0.0

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):  # short, for assertion messages
        return f"<Response {self.status} headers={self.headers} body={self.body[:600]!r}>"


def request(port, method, path, host, headers=None, body=None, timeout=30.0):
    """One HTTP/1.1 request to 127.0.0.1:port with the given Host header."""
    hdrs = {"Host": host, "Connection": "close", "User-Agent": "portero-e2e"}
    hdrs.update(headers or {})
    started = time.monotonic()
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.getheaders(), data, time.monotonic() - started)
    finally:
        conn.close()


class CookieJar:
    def __init__(self):
        self.cookies = {}

    def update(self, response):
        for raw in response.header_all("Set-Cookie"):
            jar = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                self.cookies[name] = morsel.value

    def header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')


def admin_login(port, host, origin, username, password, token_override=None):
    """Django admin login as a browser would do it.

    Returns (login_form_response, post_response, cookie_jar).
    """
    jar = CookieJar()
    form = request(port, "GET", "/admin/login/?next=/admin/", host)
    assert form.status == 200, f"GET /admin/login/ via Host {host}: {form!r}"
    jar.update(form)
    match = CSRF_INPUT.search(form.text)
    assert match, f"no csrfmiddlewaretoken in the login form: {form.text[:800]}"
    assert "csrftoken" in jar.cookies, f"no csrftoken cookie set: {form.headers}"
    token = token_override if token_override is not None else match.group(1)
    body = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"}
    )
    post = request(
        port, "POST", "/admin/login/?next=/admin/", host,
        headers={
            "Origin": origin,
            "Referer": f"{origin}/admin/login/?next=/admin/",
            "Cookie": jar.header(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=body,
    )
    jar.update(post)
    return form, post, jar


def ws_connect(port, host, origin, path="/ws/echo/", timeout=10.0):
    """Open a WebSocket over a socket to 127.0.0.1:port; Host comes from `host`."""
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    try:
        return ws_client_connect(
            f"ws://{host}{path}", sock=sock, origin=origin, open_timeout=timeout, close_timeout=5
        )
    except BaseException:
        sock.close()
        raise


def upload_stream(total_bytes, chunk_size=1 << 20):
    """A deterministic chunk generator plus the sha256 it will have produced."""
    digest = hashlib.sha256()
    base = bytes(range(256)) * (chunk_size // 256)

    def gen():
        sent, i = 0, 0
        while sent < total_bytes:
            n = min(chunk_size, total_bytes - sent)
            chunk = i.to_bytes(8, "big") + base[8:n] if n >= 8 else base[:n]
            digest.update(chunk)
            sent += n
            i += 1
            yield chunk

    return gen(), digest


def read_request_log(path):
    records = []
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line:
                    records.append(json.loads(line))
    return records
