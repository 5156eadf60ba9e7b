#!/usr/bin/env python3
"""The soak test's backend: a small asyncio HTTP/1.1 + WebSocket server
(standard library only), on 127.0.0.1:PORT.

Paths (under any prefix, matched on the last segment):
  GET  .../bytes?n=N[&ms=M]  N bytes ("x"), Content-Length, in 64 KiB writes;
                              with ms, waits M ms before answering
  GET  .../trickle?n=N&ms=M  N bytes in 16 KiB pieces, M ms apart (a slow response)
  POST .../upload            reads the body (Content-Length or chunked), answers
                              "bytes=N" with the count
  GET  .../health            "ok"
  GET  /ws/echo (Upgrade)    WebSocket echo (text/binary echoed, ping -> pong,
                              close echoed)
Keep-alive: an idle connection is closed after --keepalive seconds (default 5,
uvicorn's default), so the proxy's pooled connections end when unused.
"""

import argparse
import asyncio
import base64
import hashlib
import os
import signal
import struct
import sys
from urllib.parse import parse_qs, urlsplit

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CHUNK = b"x" * 65536
MAX_HEAD = 65536


class Closed(Exception):
    pass


async def read_head(reader, timeout):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        raise Closed()
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return method, target, headers


async def read_body(reader, headers):
    """Reads the request body, returns its length."""
    n = 0
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 60)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                # trailers, then the blank line
                while (await asyncio.wait_for(reader.readuntil(b"\r\n"), 60)) != b"\r\n":
                    pass
                return n
            left = size
            while left:
                b = await asyncio.wait_for(reader.read(min(left, 1 << 20)), 60)
                if not b:
                    raise Closed()
                left -= len(b)
                n += len(b)
            await asyncio.wait_for(reader.readexactly(2), 60)
    left = int(headers.get("content-length", "0") or 0)
    while left:
        b = await asyncio.wait_for(reader.read(min(left, 1 << 20)), 60)
        if not b:
            raise Closed()
        left -= len(b)
        n += len(b)
    return n


def head_bytes(status, reason, length, extra=""):
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-length: {length}\r\n"
            f"content-type: application/octet-stream\r\n{extra}\r\n").encode()


async def send_bytes(writer, n):
    left = n
    while left:
        k = min(left, len(CHUNK))
        writer.write(CHUNK[:k])
        await writer.drain()
        left -= k


async def websocket(reader, writer, headers):
    key = headers.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
    writer.write(("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                  f"connection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n").encode())
    await writer.drain()
    while True:
        try:
            b0, b1 = await asyncio.wait_for(reader.readexactly(2), 120)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return
        opcode = b0 & 0x0F
        masked = b1 & 0x80
        ln = b1 & 0x7F
        if ln == 126:
            ln = struct.unpack("!H", await reader.readexactly(2))[0]
        elif ln == 127:
            ln = struct.unpack("!Q", await reader.readexactly(8))[0]
        mask = await reader.readexactly(4) if masked else b"\0\0\0\0"
        payload = bytearray(await reader.readexactly(ln))
        if masked:
            for i in range(ln):
                payload[i] ^= mask[i & 3]
        if opcode == 0x9:  # ping
            opcode = 0xA
        elif opcode == 0xA:  # pong
            continue
        if ln < 126:
            hdr = struct.pack("!BB", 0x80 | opcode, ln)
        elif ln < 65536:
            hdr = struct.pack("!BBH", 0x80 | opcode, 126, ln)
        else:
            hdr = struct.pack("!BBQ", 0x80 | opcode, 127, ln)
        writer.write(hdr + bytes(payload))
        await writer.drain()
        if opcode == 0x8:
            return


async def handle(reader, writer, keepalive):
    try:
        first = True
        while True:
            method, target, headers = await read_head(reader, 10 if first else keepalive)
            first = False
            url = urlsplit(target)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            last = url.path.rsplit("/", 1)[-1]
            if headers.get("upgrade", "").lower() == "websocket" and last == "echo":
                await websocket(reader, writer, headers)
                return
            got = await read_body(reader, headers)
            if last == "bytes":
                n = int(q.get("n", "0"))
                if "ms" in q:
                    await asyncio.sleep(int(q["ms"]) / 1000)
                writer.write(head_bytes(200, "OK", n))
                await send_bytes(writer, n)
            elif last == "trickle":
                n, ms = int(q.get("n", "0")), int(q.get("ms", "100"))
                writer.write(head_bytes(200, "OK", n))
                left = n
                while left:
                    k = min(left, 16384)
                    writer.write(CHUNK[:k])
                    await writer.drain()
                    left -= k
                    if left:
                        await asyncio.sleep(ms / 1000)
            elif last == "upload" and method == "POST":
                body = f"bytes={got}".encode()
                writer.write(head_bytes(200, "OK", len(body)) + body)
            elif last == "health":
                writer.write(head_bytes(200, "OK", 2) + b"ok")
            else:
                writer.write(head_bytes(404, "Not Found", 9) + b"not found")
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    except (Closed, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--keepalive", type=float, default=5.0)
    a = ap.parse_args()
    server = await asyncio.start_server(lambda r, w: handle(r, w, a.keepalive), "127.0.0.1", a.port,
                                        reuse_address=True, backlog=1024, limit=MAX_HEAD)
    print(f"backend listening on 127.0.0.1:{a.port} pid {os.getpid()}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()
    # Exit at once, dropping connections in flight (a backend crash, as far
    # as the proxy can tell).
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main())
