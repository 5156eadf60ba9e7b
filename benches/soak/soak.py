#!/usr/bin/env python3
"""Soak test driver (issue #14): the release portero in front of backend.py,
mixed abusive traffic while the backend restarts and the config file is
rewritten (broken now and then), portero's fds / RSS / threads sampled from
/proc; ends idle and asserts fds and RSS came back. Standard library only;
benches/soak.sh runs it (and plot.py for the PNG).

Exit status: 0 pass, 1 a failure (unexpected errors, fd or RSS bound, portero
died), 2 harness error.
"""

import argparse
import asyncio
import base64
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

MODES = {
    # duration: traffic seconds; restart/reload: mean periods (s); sample: /proc sampling period;
    # bucket: seconds per row of the errors-over-time table; table_every: seconds per row of the
    # resource table (every sample is in samples.csv).
    "short": dict(duration=55, restart=10, reload=5, sample=2, bucket=10, table_every=6),
    "long": dict(duration=600, restart=20, reload=5, sample=5, bucket=60, table_every=30),
}
FD_SLACK = 8            # fds allowed above the baseline after idle
RSS_SLACK_MIB = 32      # RSS allowed above the baseline after idle (and at any time)
# portero's timers in the soak config, and the backend's keep-alive: after the traffic stops,
# wait at least this long (the longest of them, plus margin) before asserting.
HEADER_READ_TIMEOUT = 5
HTTP2_IDLE_TIMEOUT = 10
SEND_TIMEOUT = 10
REQUEST_BODY_TIMEOUT = 5
BACKEND_KEEPALIVE = 5
IDLE_SETTLE = max(HEADER_READ_TIMEOUT, HTTP2_IDLE_TIMEOUT + 5, BACKEND_KEEPALIVE) + 2
OP_TIMEOUT = 30         # no single client operation may take longer
# After a backend kill, errors of these kinds are expected until the backend is back + this long.
RESTART_GRACE = 5
WINDOW_KINDS = {"status_5xx", "status_502", "status_503", "status_504", "truncated", "reset", "eof", "ws_closed"}


def now():
    return time.monotonic()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])  # kB
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return fds, rss, threads


class OpError(Exception):
    def __init__(self, kind, detail=""):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class Soak:
    def __init__(self, args):
        self.a = args
        m = MODES[args.mode]
        self.duration = args.duration or m["duration"]
        self.restart_every = args.restart_every or m["restart"]
        self.reload_every = m["reload"]
        self.sample_every = m["sample"]
        self.bucket = m["bucket"]
        self.table_every = m["table_every"]
        self.work = tempfile.mkdtemp(prefix="portero-soak.")
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.port = free_port()
        self.bport = free_port()
        self.ops = []            # (scenario, kind, t0, t1, detail)
        self.windows = []        # [kill, up] per restart
        self.samples = []        # (t, phase, fds, rss_kb, threads)
        self.rewrites = collections.Counter()
        self.portero = None
        self.backend = None
        self.t0 = None
        self.end = None
        self.rng = random.Random(args.seed)

    # ------------------------------------------------------------ processes
    def config_text(self, variant):
        extra = ""
        if variant % 3 == 1:
            extra += '\n[[routes]]\nprefix = "/api2"\nupstream = "backend"\nstrip_prefix = true\n'
        tenants = '\n[tenants]\nheader = "X-Tenant"\n' if variant % 2 else ""
        return f"""# written by benches/soak/soak.py, variant {variant}
profile = "dev"
[server]
listen = ["127.0.0.1:{self.port}"]
header_read_timeout = "{HEADER_READ_TIMEOUT}s"
send_timeout = "{SEND_TIMEOUT}s"
http2_idle_timeout = "{HTTP2_IDLE_TIMEOUT}s"
shutdown_timeout = "2s"

[upstreams.backend]
url = "http://127.0.0.1:{self.bport}"
connect_timeout = "2s"
response_timeout = "{20 + variant % 5}s"
wait_for = "5s"
request_body_timeout = "{REQUEST_BODY_TIMEOUT}s"
body_idle_timeout = "10s"

[[routes]]
prefix = "/api"
upstream = "backend"

[[routes]]
prefix = "/ws"
upstream = "backend"
{extra}
[[routes]]
prefix = "/"
spa = true

[spa]
root = "{self.work}/dist"
{tenants}"""

    def write_config(self, variant, broken=None):
        text = self.config_text(variant)
        if broken == "syntax":
            text += "\n[[routes]\nprefix = \n"
        elif broken == "invalid":
            text += '\n[[routes]]\nprefix = "/nope"\nupstream = "missing"\n'
        elif broken == "truncated":
            text = text[: len(text) // 2]
        path = os.path.join(self.work, "portero.toml")
        if variant % 2 and not broken:
            tmp = path + ".tmp"  # atomic replace, as editors and ConfigMaps do
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        else:
            with open(path, "w") as f:  # in place
                f.write(text)
        self.rewrites["broken-" + broken if broken else "valid"] += 1

    def start_backend(self):
        log = open(os.path.join(self.out, "backend.log"), "a")
        self.backend = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "backend.py"), "--port", str(self.bport),
             "--keepalive", str(self.a.backend_keepalive)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = now() + 10
        while now() < deadline:
            if self.backend.poll() is not None:
                raise SystemExit(f"soak: backend exited at start (see {self.out}/backend.log)")
            try:
                socket.create_connection(("127.0.0.1", self.bport), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("soak: backend did not listen within 10 s")

    def start_portero(self):
        os.makedirs(os.path.join(self.work, "dist"), exist_ok=True)
        with open(os.path.join(self.work, "dist", "index.html"), "w") as f:
            f.write("<!doctype html><html><body>soak</body></html>\n")
        self.write_config(0)
        self.rewrites.clear()
        self.log_path = os.path.join(self.out, "portero.log")
        log = open(self.log_path, "w")
        env = dict(os.environ, RUST_LOG="info,portero::access=warn")
        self.portero = subprocess.Popen(
            [self.a.portero_bin, "--config", os.path.join(self.work, "portero.toml")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.work, env=env)
        deadline = now() + 15
        while now() < deadline:
            if self.portero.poll() is not None:
                raise SystemExit(f"soak: portero exited at start:\n{open(self.log_path).read()[-2000:]}")
            if f"listening on http://127.0.0.1:{self.port}" in open(self.log_path).read():
                return
            time.sleep(0.05)
        raise SystemExit("soak: no 'listening on http://...' banner from portero within 15 s")

    # ------------------------------------------------------------ recording
    def rec(self, scenario, kind, t0, detail=""):
        self.ops.append((scenario, kind, t0 - self.t0, now() - self.t0, detail[:200]))

    async def run_op(self, scenario, coro):
        t0 = now()
        try:
            await asyncio.wait_for(coro, OP_TIMEOUT)
            self.rec(scenario, "ok", t0)
        except OpError as e:
            self.rec(scenario, e.kind, t0, e.detail)
        except asyncio.TimeoutError:
            self.rec(scenario, "timeout", t0, f"over {OP_TIMEOUT}s")
        except asyncio.IncompleteReadError as e:
            self.rec(scenario, "truncated" if e.partial else "eof", t0, str(e))
        except (ConnectionResetError, BrokenPipeError) as e:
            self.rec(scenario, "reset", t0, str(e))
        except OSError as e:
            self.rec(scenario, "oserror", t0, repr(e))

    def expected(self, kind, t0, t1):
        if kind not in WINDOW_KINDS:
            return False
        return any(t0 <= up + RESTART_GRACE and t1 >= kill - 0.5 for kill, up in self.windows)

    # ------------------------------------------------------------ HTTP/1.1 client
    async def connect(self):
        return await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)

    def host(self):
        return f"localhost:{self.port}"

    async def read_response(self, r, method="GET"):
        """Reads one response; returns (status, headers, body length). Raises on EOF/truncation."""
        try:
            head = await r.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            raise OpError("eof" if not e.partial else "truncated", "closed before the response head")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        h = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                h[k.strip().lower()] = v.strip()
        n = 0
        if method == "HEAD" or status in (101, 204, 304):
            return status, h, 0
        if h.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await r.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await r.readuntil(b"\r\n") != b"\r\n":
                        pass
                    break
                await r.readexactly(size + 2)
                n += size
        elif "content-length" in h:
            left = int(h["content-length"])
            while left:
                b = await r.read(min(left, 1 << 20))
                if not b:
                    raise OpError("truncated", f"body ended {left} bytes short")
                left -= len(b)
                n += len(b)
        else:
            while b := await r.read(1 << 20):
                n += len(b)
        return status, h, n

    @staticmethod
    def check_status(status, want=200):
        if status != want:
            raise OpError(f"status_{status}", f"wanted {want}")

    async def get(self, r, w, path, want_len=None):
        w.write(f"GET {path} HTTP/1.1\r\nhost: {self.host()}\r\n\r\n".encode())
        await w.drain()
        status, h, n = await self.read_response(r)
        self.check_status(status)
        if want_len is not None and n != want_len:
            raise OpError("bad_length", f"{path}: got {n}")
        return h

    async def post(self, r, w, path, size, chunked=False, piece=65536, delay=0.0):
        te = "transfer-encoding: chunked" if chunked else f"content-length: {size}"
        w.write(f"POST {path} HTTP/1.1\r\nhost: {self.host()}\r\n{te}\r\n\r\n".encode())
        left = size
        data = b"u" * piece
        while left:
            k = min(left, piece)
            w.write(f"{k:x}\r\n".encode() + data[:k] + b"\r\n" if chunked else data[:k])
            await w.drain()
            left -= k
            if delay:
                await asyncio.sleep(delay)
        if chunked:
            w.write(b"0\r\n\r\n")
        await w.drain()
        return await self.read_response_body(r)

    async def read_response_body(self, r):
        head = await r.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ")[1])
        cl = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                cl = int(line.split(b":")[1])
        body = await r.readexactly(cl)
        return status, body

    # ------------------------------------------------------------ scenarios
    def running(self):
        return now() < self.end

    async def loop(self, name, one, pause=(0.0, 0.05)):
        while self.running():
            await self.run_op(name, one())
            await asyncio.sleep(self.rng.uniform(*pause))

    async def keepalive_gets(self):
        r, w = await self.connect()
        try:
            for _ in range(self.rng.randint(5, 60)):
                if not self.running():
                    break
                n = self.rng.choice([0, 100, 2048, self.rng.randint(0, 65536)])
                await self.get(r, w, f"/api/bytes?n={n}", n)
        finally:
            w.close()

    async def download(self):
        r, w = await self.connect()
        try:
            n = self.rng.randint(1, 8 << 20)
            await self.get(r, w, f"/api/bytes?n={n}", n)
        finally:
            w.close()

    async def upload(self):
        r, w = await self.connect()
        try:
            n = self.rng.randint(0, 4 << 20)
            status, body = await self.post(r, w, "/api/upload", n, chunked=self.rng.random() < 0.3)
            self.check_status(status)
            if body != f"bytes={n}".encode():
                raise OpError("bad_echo", f"sent {n}, backend says {body[:40]!r}")
        finally:
            w.close()

    async def websocket(self):
        r, w = await self.connect()
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            w.write((f"GET /ws/echo HTTP/1.1\r\nhost: {self.host()}\r\nupgrade: websocket\r\n"
                     f"connection: Upgrade\r\nsec-websocket-key: {key}\r\n"
                     "sec-websocket-version: 13\r\n\r\n").encode())
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            if status != 101:
                raise OpError(f"status_{status}", "websocket handshake")
            if self.rng.random() < 0.2:
                return  # opened and dropped without a close frame
            for _ in range(self.rng.randint(1, 30)):
                msg = os.urandom(self.rng.choice([1, 125, 126, 4000, self.rng.randint(1, 70000)]))
                await ws_send(w, 0x2, msg)
                op, got = await ws_recv(r)
                if got != msg:
                    raise OpError("ws_mismatch", f"sent {len(msg)} bytes, got opcode {op} {len(got)}")
            await ws_send(w, 0x8, b"\x03\xe8")
            op, _ = await ws_recv(r)
            if op != 0x8:
                raise OpError("ws_no_close", f"opcode {op}")
        finally:
            w.close()

    async def abort_upload(self):
        r, w = await self.connect()
        try:
            n = 2 << 20
            w.write(f"POST /api/upload HTTP/1.1\r\nhost: {self.host()}\r\ncontent-length: {n}\r\n\r\n".encode())
            w.write(b"a" * self.rng.randint(0, n - 1))
            try:
                await w.drain()
            except OSError:
                pass  # portero may already have answered (e.g. 502 while the backend restarts)
        finally:
            w.transport.abort() if self.rng.random() < 0.5 else w.close()

    async def abort_download(self):
        r, w = await self.connect()
        try:
            w.write(f"GET /api/bytes?n={8 << 20} HTTP/1.1\r\nhost: {self.host()}\r\n\r\n".encode())
            await w.drain()
            await r.readuntil(b"\r\n\r\n")
            await r.read(self.rng.randint(1, 1 << 20))
        finally:
            w.transport.abort() if self.rng.random() < 0.5 else w.close()

    async def slow_reader(self):
        # Reads 2 MiB at ~640 KiB/s: slow, but never silent for send_timeout.
        r, w = await self.connect()
        try:
            n = 2 << 20
            w.write(f"GET /api/bytes?n={n} HTTP/1.1\r\nhost: {self.host()}\r\n\r\n".encode())
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            self.check_status(int(head.split(b" ")[1]))
            got = 0
            while got < n:
                b = await r.read(65536)
                if not b:
                    raise OpError("truncated", f"slow reader got {got} of {n}")
                got += len(b)
                await asyncio.sleep(0.1)
        finally:
            w.close()

    async def slow_upload(self):
        r, w = await self.connect()
        try:
            n = 256 << 10
            status, body = await self.post(r, w, "/api/upload", n, piece=16384, delay=0.2)
            self.check_status(status)
            if body != f"bytes={n}".encode():
                raise OpError("bad_echo", f"slow upload: {body[:40]!r}")
        finally:
            w.close()

    async def stalled_upload(self):
        # Sends 1 KiB of 100 KiB, then nothing: request_body_timeout must answer 408.
        r, w = await self.connect()
        try:
            w.write(f"POST /api/upload HTTP/1.1\r\nhost: {self.host()}\r\ncontent-length: 102400\r\n\r\n".encode())
            w.write(b"s" * 1024)
            await w.drain()
            t = now()
            status, _, _ = await self.read_response(r)
            self.check_status(status, 408)
            if now() - t > REQUEST_BODY_TIMEOUT + 5:
                raise OpError("slow_408", f"408 after {now() - t:.1f}s")
        finally:
            w.close()

    async def slow_backend(self):
        r, w = await self.connect()
        try:
            if self.rng.random() < 0.5:
                await self.get(r, w, f"/api/bytes?n=1000&ms={self.rng.randint(200, 2000)}", 1000)
            else:
                await self.get(r, w, f"/api/trickle?n={256 << 10}&ms=150", 256 << 10)
        finally:
            w.close()

    async def silent_client(self):
        # Connects and says nothing, or sends part of a head: closed by header_read_timeout.
        r, w = await self.connect()
        try:
            what = self.rng.choice([b"", b"P", b"GET /api/bytes?n=1 HTTP/1.1\r\nHo"])
            w.write(what)
            await w.drain()
            t = now()
            rest = await asyncio.wait_for(r.read(), HEADER_READ_TIMEOUT + 8)
            del rest
            if now() - t < HEADER_READ_TIMEOUT - 1:
                raise OpError("closed_early", f"{what!r} closed after {now() - t:.1f}s")
        except asyncio.TimeoutError:
            raise OpError("not_closed", f"silent client still open after {HEADER_READ_TIMEOUT + 8}s")
        finally:
            w.close()

    async def static(self):
        r, w = await self.connect()
        try:
            await self.get(r, w, "/")
        finally:
            w.close()

    async def h2(self):
        """HTTP/2 with prior knowledge (h2c). curl 7.88 (Debian 12) fails every request after the
        first on a reused prior-knowledge connection ("Error in the HTTP2 framing layer", nginx
        too), so multiplexed streams come from h2load (nghttp2-client): 2 connections, 4
        concurrent streams each; curl does single-request connections (GET or upload)."""
        r = self.rng.random()
        if r < 0.5:
            n, size = self.rng.randint(4, 24), self.rng.randint(0, 1 << 20)
            upload = self.rng.random() < 0.3
            url = f"http://127.0.0.1:{self.port}/api/" + ("upload" if upload else f"bytes?n={size}")
            cmd = ["h2load", "-n", str(n), "-c", "2", "-m", "4", "-T", "20", "-N", "20"]
            if upload:
                path = os.path.join(self.work, f"h2up-{size}")
                with open(path, "wb") as f:
                    f.write(b"h" * size)
                cmd += ["-d", path]
            out, err, rc = await self.proc(cmd + [url])
            if upload:
                os.unlink(path)
            m = H2LOAD_RE.search(out)
            if rc != 0 or not m:
                raise OpError("h2load_failed", f"rc={rc} {out[-300:]!r} {err[-200:]!r}")
            done, ok, failed, errored, timeout, c2, c5, data = (int(x) for x in m.groups())
            want = n * (len(f"bytes={size}") if upload else size)
            if c5 or errored or timeout or failed or ok != n or data != want:
                kind = "status_5xx" if c5 else "reset" if errored else "timeout" if timeout else "h2_mismatch"
                raise OpError(kind, f"h2load {n} x {url}: {ok} ok, {failed} failed, {errored} errored, "
                                    f"{timeout} timeout, {c5} 5xx, data {data} of {want}")
            return
        size = self.rng.randint(0, 2 << 20)
        cmd = ["curl", "-sS", "--http2-prior-knowledge", "--max-time", "20",
               "-w", "\\n%{http_code} %{size_download} %{http_version}\\n"]
        if r < 0.75:
            path = os.path.join(self.work, f"up-{size}")
            with open(path, "wb") as f:
                f.write(b"h" * size)
            cmd += ["--data-binary", f"@{path}", f"http://127.0.0.1:{self.port}/api/upload"]
            want_body = f"bytes={size}"
        else:
            cmd += ["-o", "/dev/null", f"http://127.0.0.1:{self.port}/api/bytes?n={size}"]
            want_body = ""
        out, err, rc = await self.proc(cmd)
        if r < 0.75:
            os.unlink(path)
        lines = out.split("\n")
        if rc != 0 or len(lines) < 2:
            raise OpError(CURL_KINDS.get(rc, f"curl_rc_{rc}"), f"curl h2 rc={rc} {err[-200:]!r}")
        code, got, ver = lines[-2].split()
        if code != "200":
            raise OpError(f"status_{code}", f"curl h2 {cmd[-1]}")
        if ver != "2":
            raise OpError("not_h2", f"http_version {ver}")
        if want_body and lines[0] != want_body or not want_body and int(got) != size:
            raise OpError("bad_length", f"curl h2 {cmd[-1]}: {lines[0][:40]!r}, {got} bytes")

    async def proc(self, cmd):
        p = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(p.communicate(), 25)
        except asyncio.TimeoutError:
            p.kill()
            await p.wait()
            raise OpError("timeout", f"{cmd[0]} over 25 s")
        return out.decode(errors="replace"), err.decode(errors="replace"), p.returncode

    # ------------------------------------------------------------ chaos
    async def pause(self, seconds):
        """Sleeps, but not past the end of the traffic."""
        await asyncio.sleep(max(0.0, min(seconds, self.end - now())))

    async def restarter(self):
        n = 0
        while True:
            await self.pause(self.rng.uniform(0.8, 1.2) * self.restart_every)
            if not self.running():
                return
            kill = now() - self.t0
            self.backend.send_signal(signal.SIGKILL if n % 2 else signal.SIGTERM)
            await asyncio.get_running_loop().run_in_executor(None, self.backend.wait)
            await asyncio.sleep(self.rng.uniform(0.3, 1.5))
            await asyncio.get_running_loop().run_in_executor(None, self.start_backend)
            self.windows.append((kill, now() - self.t0))
            n += 1

    async def rewriter(self):
        v = 0
        while True:
            await self.pause(self.rng.uniform(0.8, 1.2) * self.reload_every)
            if not self.running():
                return
            v += 1
            broken = None
            if v % 4 == 3:
                broken = ["syntax", "invalid", "truncated"][(v // 4) % 3]
            self.write_config(v, broken)

    async def sampler(self, phase_of):
        while True:
            fds, rss, thr = proc_stats(self.portero.pid)
            self.samples.append((now() - self.t0, phase_of(), fds, rss, thr))
            if self.portero.poll() is not None:
                return
            await asyncio.sleep(self.sample_every)

    # ------------------------------------------------------------ main
    async def run(self):
        self.start_backend()
        self.start_portero()
        self.t0 = now()
        time.sleep(1)
        base = proc_stats(self.portero.pid)
        self.samples.append((now() - self.t0, "baseline", *base))
        print(f"soak: portero pid {self.portero.pid} on :{self.port}, backend :{self.bport}; baseline "
              f"fds={base[0]} rss={base[1] / 1024:.1f}MiB threads={base[2]}; {self.duration}s of traffic",
              file=sys.stderr, flush=True)
        phase = ["traffic"]
        self.end = now() + self.duration
        sampler = asyncio.create_task(self.sampler(lambda: phase[0]))
        workers = [
            *(self.loop("keepalive-get", self.keepalive_gets) for _ in range(3)),
            self.loop("download", self.download),
            *(self.loop("upload", self.upload) for _ in range(2)),
            *(self.loop("websocket", self.websocket) for _ in range(2)),
            self.loop("abort-upload", self.abort_upload, (0.1, 0.4)),
            self.loop("abort-download", self.abort_download, (0.1, 0.4)),
            self.loop("slow-reader", self.slow_reader),
            self.loop("slow-upload", self.slow_upload),
            self.loop("stalled-upload", self.stalled_upload, (1, 3)),
            self.loop("slow-backend", self.slow_backend),
            *(self.loop("silent-client", self.silent_client, (0.2, 1)) for _ in range(2)),
            self.loop("static", self.static, (0.1, 0.3)),
            *(self.loop("h2c", self.h2, (0.2, 0.6)) for _ in range(2)),
        ]
        chaos = [asyncio.create_task(self.restarter()), asyncio.create_task(self.rewriter())]
        await asyncio.gather(*workers)
        await asyncio.gather(*chaos)
        # Idle: nothing runs; wait for portero's timers and the backend's keep-alive, then for
        # the fds to come back (or the deadline).
        phase[0] = "idle"
        t_idle = now()
        print(f"soak: traffic done at {now() - self.t0:.0f}s; idle (settle {IDLE_SETTLE}s, at most "
              f"{self.a.idle_max}s)", file=sys.stderr, flush=True)
        await asyncio.sleep(IDLE_SETTLE)
        while now() - t_idle < self.a.idle_max:
            fds, rss, _ = proc_stats(self.portero.pid)
            if fds <= base[0] + FD_SLACK and rss <= base[1] + RSS_SLACK_MIB * 1024:
                break
            await asyncio.sleep(1)
        sampler.cancel()
        final = proc_stats(self.portero.pid) if self.portero.poll() is None else None
        if final:
            self.samples.append((now() - self.t0, "final", *final))
        return base, final

    def stop(self):
        for p in (self.portero, self.backend):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    # ------------------------------------------------------------ report
    def report(self, base, final):
        L = []
        failures = []
        counts = collections.defaultdict(collections.Counter)
        kinds = collections.Counter()
        over_time = collections.defaultdict(collections.Counter)
        unexpected = []
        for sc, kind, t0, t1, detail in self.ops:
            if kind == "ok":
                counts[sc]["ok"] += 1
                continue
            exp = self.expected(kind, t0, t1)
            counts[sc]["expected" if exp else "FAILED"] += 1
            label = kind + ("" if exp else " (unexpected)")
            kinds[label] += 1
            over_time[int(t1 // self.bucket)][label] += 1
            if not exp:
                unexpected.append((t1, sc, kind, detail))
        log = open(self.log_path, errors="replace").read()
        reloads_ok = log.count("config reloaded")
        reloads_failed = log.count("config reload failed")
        L.append(f"mode `{self.a.mode}`: {self.duration} s of traffic, backend restarted "
                 f"{len(self.windows)} times (SIGTERM/SIGKILL alternately, down 0.3-1.5 s), config "
                 f"rewritten {sum(self.rewrites.values())} times ({self.rewrites['valid']} valid, "
                 f"{sum(v for k, v in self.rewrites.items() if k != 'valid')} broken); portero logged "
                 f"{reloads_ok} reloads and {reloads_failed} refused files.")
        L.append("")
        L.append("| scenario | ok | expected errors (restart windows) | unexpected |")
        L.append("|---|---:|---:|---:|")
        for sc in sorted(counts):
            c = counts[sc]
            L.append(f"| {sc} | {c['ok']} | {c['expected']} | {c['FAILED']} |")
        tot = sum((c for c in counts.values()), collections.Counter())
        L.append(f"| **all** | {tot['ok']} | {tot['expected']} | {tot['FAILED']} |")
        L.append("")
        L.append(f"Errors by kind over time ({self.bucket} s buckets; expected = 502/503/504, cut or "
                 f"reset connections overlapping a backend restart, from the kill to {RESTART_GRACE} s "
                 "after it listens again):")
        L.append("")
        if kinds:
            L.append("| t (s) | restarts | " + " | ".join(sorted(kinds)) + " |")
            L.append("|---|---:|" + "---:|" * len(kinds))
            nb = int((self.duration + 1) // self.bucket) + 1
            for b in range(nb):
                rs = sum(1 for k, _ in self.windows if b * self.bucket <= k < (b + 1) * self.bucket)
                row = " | ".join(str(over_time[b][k] or "") for k in sorted(kinds))
                L.append(f"| {b * self.bucket}-{(b + 1) * self.bucket} | {rs} | {row} |")
        else:
            L.append("(no errors at all)")
        L.append("")
        L.append("portero's resources (from /proc/PID: fd entries, VmRSS, Threads; tokio tasks are not "
                 "visible from outside the process; tests/leak.rs counts them in-process):")
        L.append("")
        L.append("| t (s) | phase | open fds | RSS (MiB) | threads |")
        L.append("|---:|---|---:|---:|---:|")
        last = -1e9
        for i, (t, ph, fds, rss, thr) in enumerate(self.samples):
            if ph in ("baseline", "final") or t - last >= self.table_every or i == len(self.samples) - 1:
                L.append(f"| {t:.0f} | {ph} | {fds} | {rss / 1024:.1f} | {thr} |")
                last = t
        peak = max(self.samples, key=lambda s: s[2])
        peak_rss = max(s[3] for s in self.samples)
        L.append("")
        L.append(f"peak: {peak[2]} fds at {peak[0]:.0f} s, {peak_rss / 1024:.1f} MiB RSS.")
        if self.portero.poll() is not None or final is None:
            failures.append(f"portero exited during the soak (status {self.portero.returncode})")
        else:
            if final[0] > base[0] + FD_SLACK:
                failures.append(f"fds after idle {final[0]} > baseline {base[0]} + {FD_SLACK}")
            if final[1] > base[1] + RSS_SLACK_MIB * 1024:
                failures.append(f"RSS after idle {final[1] / 1024:.1f} MiB > baseline "
                                f"{base[1] / 1024:.1f} + {RSS_SLACK_MIB} MiB")
        if peak_rss > base[1] + RSS_SLACK_MIB * 1024 * 4:
            failures.append(f"peak RSS {peak_rss / 1024:.1f} MiB > baseline + {RSS_SLACK_MIB * 4} MiB")
        if unexpected:
            failures.append(f"{len(unexpected)} unexpected errors")
        if tot["ok"] == 0:
            failures.append("no operation succeeded")
        L.append("")
        if final:
            L.append(f"After idle: fds {base[0]} -> {final[0]} (bound: baseline + {FD_SLACK}), RSS "
                     f"{base[1] / 1024:.1f} -> {final[1] / 1024:.1f} MiB (bound: baseline + "
                     f"{RSS_SLACK_MIB} MiB), threads {base[2]} -> {final[2]} (reported, not asserted).")
        if unexpected:
            L.append("")
            L.append("Unexpected errors (first 20):")
            L.append("")
            for t, sc, kind, detail in sorted(unexpected)[:20]:
                L.append(f"- {t:.1f} s {sc}: {kind}: {detail}")
        L.append("")
        L.append("**FAIL**: " + "; ".join(failures) if failures else "**PASS**")
        return "\n".join(L), failures

    def save(self):
        with open(os.path.join(self.out, "samples.csv"), "w") as f:
            f.write("t,phase,fds,rss_kb,threads\n")
            for s in self.samples:
                f.write(f"{s[0]:.1f},{s[1]},{s[2]},{s[3]},{s[4]}\n")
        with open(os.path.join(self.out, "events.json"), "w") as f:
            errs = collections.defaultdict(list)
            for sc, kind, t0, t1, detail in self.ops:
                if kind != "ok":
                    errs["expected" if self.expected(kind, t0, t1) else "unexpected"].append(t1)
            json.dump({"restarts": self.windows, "errors": errs}, f)
        with open(os.path.join(self.out, "ops.tsv"), "w") as f:
            for op in self.ops:
                f.write("\t".join(str(x) for x in op) + "\n")


# curl exit codes: 18 partial file, 52 empty reply, 55/56 send/recv failure, 92 HTTP/2 stream error
CURL_KINDS = {18: "truncated", 52: "eof", 55: "reset", 56: "reset", 92: "reset", 28: "timeout"}
H2LOAD_RE = re.compile(
    r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
    r"(\d+) timeout\s+status codes: (\d+) 2xx, \d+ 3xx, \d+ 4xx, (\d+) 5xx\s+traffic: .*? headers .*?, \S+ \((\d+)\) data")


async def ws_send(w, opcode, payload):
    mask = os.urandom(4)
    ln = len(payload)
    if ln < 126:
        hdr = bytes([0x80 | opcode, 0x80 | ln])
    elif ln < 65536:
        hdr = bytes([0x80 | opcode, 0x80 | 126]) + ln.to_bytes(2, "big")
    else:
        hdr = bytes([0x80 | opcode, 0x80 | 127]) + ln.to_bytes(8, "big")
    m = (mask * (ln // 4 + 1))[:ln]
    w.write(hdr + mask + (int.from_bytes(payload, "big") ^ int.from_bytes(m, "big")).to_bytes(ln, "big"))
    await w.drain()


async def ws_recv(r):
    try:
        b0, b1 = await r.readexactly(2)
        ln = b1 & 0x7F
        if ln == 126:
            ln = int.from_bytes(await r.readexactly(2), "big")
        elif ln == 127:
            ln = int.from_bytes(await r.readexactly(8), "big")
        return b0 & 0x0F, await r.readexactly(ln)
    except asyncio.IncompleteReadError:
        raise OpError("ws_closed", "tunnel closed mid-session")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=MODES, default="long")
    ap.add_argument("--portero-bin", required=True)
    ap.add_argument("--out", required=True, help="folder for logs, samples.csv, events.json, report.md")
    ap.add_argument("--duration", type=int, help="seconds of traffic (default: the mode's)")
    ap.add_argument("--restart-every", type=float, help="mean seconds between backend restarts")
    ap.add_argument("--idle-max", type=int, default=45, help="longest idle wait for fds to come back")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--backend-keepalive", type=float, default=BACKEND_KEEPALIVE,
                    help="seconds the backend keeps an idle connection (default 5; a large value shows "
                         "what portero's pool does with a backend that never closes them)")
    a = ap.parse_args()
    s = Soak(a)
    try:
        base, final = asyncio.run(s.run())
        text, failures = s.report(base, final)
    except SystemExit as e:
        print(e, file=sys.stderr)
        s.stop()
        return 2
    finally:
        s.stop()
        s.save()
        shutil.rmtree(s.work, ignore_errors=True)
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
