"""WebSocket echo round-trip latency: direct to Daphne vs through portero (and nginx).

Run by ``tests/e2e/run.sh --ws-bench``, which starts PostgreSQL, Django
(django-tenants, Channels) on Daphne, portero and, when ``nginx`` is on PATH,
an nginx WebSocket proxy, and exports:

  E2E_DAPHNE_PORT    Daphne on 127.0.0.1 (the "direct" target)
  E2E_PORTERO_PORT   portero on 127.0.0.1
  E2E_NGINX_PORT     nginx on 127.0.0.1 (optional; its row is skipped if unset)
  E2E_NGINX_NOTE     why nginx is missing, printed under the table (optional)

Tunables: WS_BENCH_ROUNDS (round trips per target, default 2000),
WS_BENCH_BLOCKS (default 5), WS_BENCH_WARMUP (round trips per target before
measuring, default 200), WS_BENCH_TIMEOUT (whole run, seconds, default 120).

Each target gets WS_BENCH_BLOCKS blocks of ROUNDS/BLOCKS sequential round trips
(send a short text, await the echo), each block on a fresh connection to
/ws/echo/ of tenant acme, blocks interleaved with the target order rotated per
block. The table gives, per target, the median over blocks of the block's p50
and p99, and those as a multiple of direct.

With ``--table FILE`` the markdown table goes to FILE instead of stdout.
Progress goes to stderr. Exit 1 (with a message naming the target) if a target
does not connect, does not answer, answers for the wrong tenant, or the whole
run exceeds WS_BENCH_TIMEOUT.
"""
import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import sys
import time

from websockets.asyncio.client import connect

LOOPBACK = "127.0.0.1"
TENANT = "acme"
BASE_DOMAIN = "chalanpro.net"
PATH = "/ws/echo/"
STEP_TIMEOUT = 10.0  # connect, hello, and each single echo


class BenchError(Exception):
    pass


CURRENT = {"step": "starting"}  # what the run was doing, for the overall-timeout message


def env_int(name, default, minimum):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"ws_bench: {name}={raw!r} is not an integer")
    if value < minimum:
        raise SystemExit(f"ws_bench: {name}={value} must be >= {minimum}")
    return value


def targets_from_env():
    """(name, port, Host header) per target; the Host is what tenant routing needs."""
    targets = []
    for name, var, host in (
        # Straight to Daphne, as the direct e2e checks connect: the tenant's real host.
        ("direct (Daphne)", "E2E_DAPHNE_PORT", f"{TENANT}.{BASE_DOMAIN}"),
        # Through portero, as a browser does: <tenant>.localhost:<portero port>;
        # portero forwards Host acme.chalanpro.net and rewrites the same-origin Origin.
        ("portero", "E2E_PORTERO_PORT", f"{TENANT}.localhost:{{port}}"),
        # Through nginx: the tenant's real host (nginx's $host drops any port,
        # and passes Origin unchanged, so it must already be acme.chalanpro.net).
        ("nginx", "E2E_NGINX_PORT", f"{TENANT}.{BASE_DOMAIN}"),
    ):
        raw = os.environ.get(var, "").strip()
        if not raw:
            if var == "E2E_NGINX_PORT":
                continue
            raise SystemExit(f"ws_bench: {var} is not set (run via tests/e2e/run.sh --ws-bench)")
        port = int(raw)
        targets.append((name, port, host.format(port=port)))
    return targets


async def open_ws(name, port, host):
    """Connect to 127.0.0.1:port with the given Host/Origin, skip the hello."""
    try:
        sock = socket.create_connection((LOOPBACK, port), timeout=STEP_TIMEOUT)
    except OSError as exc:
        raise BenchError(f"{name}: cannot connect to {LOOPBACK}:{port}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    try:
        ws = await connect(
            f"ws://{host}{PATH}", sock=sock, origin=f"http://{host}", proxy=None,
            compression=None, ping_interval=None, open_timeout=STEP_TIMEOUT, close_timeout=2,
            user_agent_header="portero-e2e-ws-bench",
        )
    except Exception as exc:
        sock.close()
        raise BenchError(f"{name}: WebSocket handshake to ws://{host}{PATH} via {LOOPBACK}:{port} failed: {exc!r}") from exc
    try:
        raw = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
    except Exception as exc:  # TimeoutError or a closed connection
        await ws.close()
        raise BenchError(f"{name}: no hello from the EchoConsumer within {STEP_TIMEOUT:.0f} s: {exc!r}") from exc
    hello = json.loads(raw)
    if hello.get("type") != "hello" or hello.get("tenant") != TENANT:
        await ws.close()
        raise BenchError(f"{name}: expected a hello for tenant {TENANT!r}, got {hello!r}")
    return ws


async def round_trips(name, ws, count, samples):
    """count sequential send/echo round trips; latencies (ns) appended to samples."""
    clock = time.perf_counter_ns
    for i in range(count):
        msg = f"ping-{i:06d}"
        expected = json.dumps({"type": "echo", "data": msg})
        t0 = clock()
        await ws.send(msg)
        try:
            got = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise BenchError(f"{name}: no echo within {STEP_TIMEOUT:.0f} s (round trip {i + 1}/{count})") from None
        except Exception as exc:
            raise BenchError(f"{name}: connection failed at round trip {i + 1}/{count}: {exc!r}") from exc
        t1 = clock()
        if got != expected:
            raise BenchError(f"{name}: unexpected echo {got!r}, expected {expected!r}")
        if samples is not None:
            samples.append(t1 - t0)


def percentile(sorted_ns, p):
    """Nearest-rank percentile of an ascending list, in µs."""
    k = max(0, math.ceil(p / 100 * len(sorted_ns)) - 1)
    return sorted_ns[k] / 1000


async def bench(targets, rounds, blocks, warmup):
    per_block = rounds // blocks
    names = [t[0] for t in targets]
    stats = {name: [] for name in names}  # name -> [(p50, p99) per block]

    print(f"ws_bench: warm-up, {warmup} round trips per target", file=sys.stderr)
    for name, port, host in targets:
        CURRENT["step"] = f"warm-up of {name} (127.0.0.1:{port})"
        ws = await open_ws(name, port, host)
        try:
            await round_trips(name, ws, warmup, None)
        finally:
            await ws.close()

    for b in range(blocks):
        order = targets[b % len(targets):] + targets[:b % len(targets)]
        for name, port, host in order:
            CURRENT["step"] = f"block {b + 1}/{blocks} of {name} (127.0.0.1:{port})"
            ws = await open_ws(name, port, host)
            try:
                await round_trips(name, ws, min(20, per_block), None)  # settle the fresh connection
                samples = []
                await round_trips(name, ws, per_block, samples)
            finally:
                await ws.close()
            samples.sort()
            p50, p99 = percentile(samples, 50), percentile(samples, 99)
            stats[name].append((p50, p99))
            print(f"ws_bench: block {b + 1}/{blocks} {name:16s} p50 {p50:8.1f} µs  p99 {p99:8.1f} µs",
                  file=sys.stderr)
    return per_block, stats


def render(targets, blocks, per_block, warmup, stats, note):
    med = {name: (statistics.median(v[0] for v in s), statistics.median(v[1] for v in s))
           for name, s in stats.items()}
    base50, base99 = med[targets[0][0]]
    lines = [
        f"WebSocket echo round trip (send a short text, await the echo) to `/ws/echo/` of tenant "
        f"`{TENANT}`: {per_block * blocks} sequential round trips per target in {blocks} interleaved blocks of "
        f"{per_block} (fresh connection per block, target order rotated; {warmup} warm-up round trips "
        f"per target); medians over blocks of each block's p50/p99. Daphne runs the Channels "
        f"EchoConsumer with django-tenants on PostgreSQL; client: Python websockets (asyncio) on loopback.",
        "",
        "| target | p50 µs | p99 µs | p50 ×direct | p99 ×direct |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, _, _ in targets:
        p50, p99 = med[name]
        lines.append(f"| {name} | {p50:.0f} | {p99:.0f} | {p50 / base50:.2f} | {p99 / base99:.2f} |")
    if note:
        lines.append("| nginx | – | – | – | – |")
        lines += ["", f"nginx: {note}"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--table", help="write the markdown table to this file instead of stdout")
    args = parser.parse_args()

    rounds = env_int("WS_BENCH_ROUNDS", 2000, 1)
    blocks = env_int("WS_BENCH_BLOCKS", 5, 1)
    warmup = env_int("WS_BENCH_WARMUP", 200, 0)
    limit = env_int("WS_BENCH_TIMEOUT", 120, 1)
    if rounds < blocks:
        raise SystemExit(f"ws_bench: WS_BENCH_ROUNDS={rounds} is less than WS_BENCH_BLOCKS={blocks}")
    targets = targets_from_env()
    note = None
    if not any(t[0] == "nginx" for t in targets):
        note = os.environ.get("E2E_NGINX_NOTE") or "E2E_NGINX_PORT not set; row skipped"
    for name, port, host in targets:
        print(f"ws_bench: {name:16s} 127.0.0.1:{port}  Host: {host}", file=sys.stderr)

    started = time.monotonic()
    try:
        per_block, stats = asyncio.run(asyncio.wait_for(bench(targets, rounds, blocks, warmup), limit))
    except asyncio.TimeoutError:
        print(f"\nws_bench: FAILED: the benchmark did not finish within WS_BENCH_TIMEOUT={limit} s "
              f"(stuck in the {CURRENT['step']})\n", file=sys.stderr)
        return 1
    except BenchError as exc:
        print(f"\nws_bench: FAILED: {exc}\n", file=sys.stderr)
        return 1
    print(f"ws_bench: done in {time.monotonic() - started:.1f} s", file=sys.stderr)

    table = render(targets, blocks, per_block, warmup, stats, note)
    if args.table:
        with open(args.table, "w", encoding="utf-8") as fh:
            fh.write(table)
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
