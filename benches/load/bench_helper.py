#!/usr/bin/env python3
"""Helpers for benches/load/run.sh (stdlib only).

Subcommands:
  gen-static DIR            write index.html (2 KiB) and app.3f9a1c2b.js (100 KiB)
                            plus their .gz variants into DIR (deterministic content)
  parse-wrk FILE            print one TSV line from a `wrk --latency` output (or tls_client's, which
                            imitates it): rps p50_ms p99_ms requests non2xx sockerr bytes_per_req
  parse-h2load FILE         the same line from an h2load output; h2load gives no percentiles:
                            p50_ms is its mean time for request, p99_ms is nan
  sys-snap SERVER_CPU CLIENT_CPU   print a snapshot token: TCP passive opens (/proc/net/snmp) and
                            busy/total ticks of the two CPUs (/proc/stat)
  sys-diff SNAP0 SNAP1      print `tcp_accepts server_busy_pct client_busy_pct` between two snapshots
  wait-quiet MAX_SECONDS     wait until the machine is idle (<10% busy for 4 s); exit 1 on timeout
  cpu-snap ROOT_PID         print `busy ours steal total` clock ticks (see cpu_snap)
  report RUN_DIR            render the markdown report from RUN_DIR/{meta,data,skipped}.tsv
"""
import gzip
import os
import random
import re
import statistics
import sys
import time

# ---------------------------------------------------------------- gen-static

INDEX_SIZE = 2 * 1024
JS_SIZE = 100 * 1024
JS_NAME = "app.3f9a1c2b.js"


def _words(rng, n):
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(3, 10))) for _ in range(n)]


def _fit(text, size, filler):
    data = text.encode()
    if len(data) > size:
        data = data[:size]
    while len(data) < size:
        data += filler.encode()[: size - len(data)]
    return data


def gen_static(d):
    rng = random.Random(0x3F9A1C2B)  # deterministic: same bytes every run
    os.makedirs(d, exist_ok=True)
    vocab = _words(rng, 400)

    head = (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>portero bench SPA</title>\n"
        f"<script type=\"module\" src=\"/{JS_NAME}\"></script>\n</head>\n<body>\n<div id=\"app\">\n"
    )
    body = []
    while len(head) + sum(map(len, body)) < INDEX_SIZE:
        body.append(f"<p class=\"{rng.choice(vocab)}\">{' '.join(rng.choice(vocab) for _ in range(8))}</p>\n")
    tail = "</div>\n</body>\n</html>\n"
    html = head + "".join(body)
    html = html[: INDEX_SIZE - len(tail)] + tail
    index = _fit(html, INDEX_SIZE, " ")

    parts = ["\"use strict\";\n"]
    total = len(parts[0])
    i = 0
    while total < JS_SIZE:
        a, b, c = rng.choice(vocab), rng.choice(vocab), rng.choice(vocab)
        line = (
            f"function {a}_{i}({b},{c}){{const r={b}*{rng.randint(1, 9999)}+{c};"
            f"if(r>{rng.randint(0, 99999)})return \"{rng.choice(vocab)}\"+r;return {a}_{i}.cache[r]||null}}\n"
        )
        parts.append(line)
        total += len(line)
        i += 1
    js = _fit("".join(parts), JS_SIZE - 1, " ") + b"\n"

    for name, data in (("index.html", index), (JS_NAME, js)):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        with open(os.path.join(d, name + ".gz"), "wb") as f:
            # mtime=0 keeps the .gz byte-identical across runs
            f.write(gzip.compress(data, compresslevel=9, mtime=0))
        # servers that check mtimes want the .gz not older than the original
        st = os.stat(os.path.join(d, name))
        os.utime(os.path.join(d, name + ".gz"), ns=(st.st_atime_ns, st.st_mtime_ns))


# ---------------------------------------------------------------- parse-wrk

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_UNITS_B = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def _ms(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s)
    if not m:
        raise ValueError(f"unparsable latency {s!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk_text(text):
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if not rps:
        raise ValueError("no Requests/sec line in wrk output")
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    if "50" not in lat or "99" not in lat:
        raise ValueError("no latency distribution (was --latency given?)")
    req = re.search(r"^\s+(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB|TB) read", text, re.M)
    requests = int(req.group(1)) if req else 0
    read_bytes = float(req.group(2)) * _UNITS_B[req.group(3)] if req else 0.0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "requests": requests,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "sockerr": sum(int(x) for x in sock.groups()) if sock else 0,
        "bytes_per_req": read_bytes / requests if requests else 0.0,
    }


def parse_wrk(path):
    with open(path) as f:
        r = parse_wrk_text(f.read())
    print(
        f"{r['rps']:.2f}\t{r['p50_ms']:.4f}\t{r['p99_ms']:.4f}\t{r['requests']}\t"
        f"{r['non2xx']}\t{r['sockerr']}\t{r['bytes_per_req']:.0f}"
    )


def parse_h2load_text(text):
    fin = re.search(r"^finished in ([\d.]+)(ms|s), ([\d.]+) req/s", text, re.M)
    if not fin:
        raise ValueError("no 'finished in ... req/s' line in h2load output")
    req = re.search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        text,
        re.M,
    )
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    traffic = re.search(r"^traffic: [\d.]+\w* \((\d+)\) total", text, re.M)
    treq = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if not (req and codes and treq):
        raise ValueError("h2load output without requests/status codes/time for request lines")
    done = int(req.group(3))
    ok = int(codes.group(1)) + int(codes.group(2))
    return {
        "rps": float(fin.group(3)),
        "p50_ms": _ms(treq.group(3)),
        "p99_ms": float("nan"),
        "requests": done,
        "non2xx": int(req.group(4)) - ok if int(req.group(4)) > ok else 0,
        "sockerr": int(req.group(5)) + int(req.group(6)) + int(req.group(7)),
        "bytes_per_req": int(traffic.group(1)) / done if traffic and done else 0.0,
    }


def parse_h2load(path):
    with open(path) as f:
        r = parse_h2load_text(f.read())
    print(
        f"{r['rps']:.2f}\t{r['p50_ms']:.4f}\tnan\t{r['requests']}\t"
        f"{r['non2xx']}\t{r['sockerr']}\t{r['bytes_per_req']:.0f}"
    )


# ---------------------------------------------------------------- cpu-busy


def sys_snap(server_cpu, client_cpu):
    with open("/proc/net/snmp") as f:
        tcp = [l.split() for l in f if l.startswith("Tcp:")]
    opens = int(tcp[1][tcp[0].index("PassiveOpens")])
    cpus = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0].startswith("cpu") and parts[0] != "cpu":
                v = [int(x) for x in parts[1:9]]
                cpus[parts[0][3:]] = (sum(v) - v[3] - v[4], sum(v))
    s, c = cpus[str(server_cpu)], cpus[str(client_cpu)]
    print(f"{opens}:{s[0]}:{s[1]}:{c[0]}:{c[1]}")


def sys_diff(a, b):
    a = [int(x) for x in a.split(":")]
    b = [int(x) for x in b.split(":")]
    d = [y - x for x, y in zip(a, b)]
    print(f"{d[0]}\t{100 * d[1] / max(d[2], 1):.0f}\t{100 * d[3] / max(d[4], 1):.0f}")




def wait_quiet(max_s, thresh=10.0):
    """Wait until the machine's busy CPU stays under THRESH % (of all CPUs) for two
    consecutive 2-s windows, at most MAX_S seconds. Print the last busy %; exit 1 on timeout."""

    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v[:8]), v[3] + v[4]

    deadline = time.monotonic() + max_s
    quiet = 0
    busy = 100.0
    while time.monotonic() < deadline:
        t0, i0 = snap()
        time.sleep(2)
        t1, i1 = snap()
        busy = 100.0 * (1 - (i1 - i0) / max(t1 - t0, 1))
        quiet = quiet + 1 if busy < thresh else 0
        if quiet >= 2:
            print(f"{busy:.0f}")
            return
    print(f"{busy:.0f}")
    sys.exit(1)


def _proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    # fields after "(comm)"; comm may contain spaces
    rest = raw[raw.rindex(")") + 2 :].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return ppid, utime + stime, cutime + cstime


def cpu_snap(root):
    """Print `busy ours steal total` in clock ticks: machine-wide busy time
    (user+nice+system), the CPU time of ROOT's process tree (alive descendants,
    plus ROOT's own time and its reaped children's), steal, and all time."""
    root = int(root)
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2]
    steal = v[7] if len(v) > 7 else 0
    total = sum(v[:8])
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                procs[int(d)] = _proc_stat(d)
            except (OSError, ValueError, IndexError):
                pass
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    ours = 0
    if root in procs:
        ours += procs[root][1] + procs[root][2]
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        if pid == os.getpid() or pid == os.getppid():
            continue  # this snapshot itself
        ours += procs[pid][1]
        stack.extend(children.get(pid, []))
    print(f"{busy} {ours} {steal} {total}")


# ---------------------------------------------------------------- report


def _read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [l.rstrip("\n") for l in f if l.strip()]
    if not lines:
        return []
    cols = lines[0].split("\t")
    return [dict(zip(cols, l.split("\t"))) for l in lines[1:]]


def _fmt_int(x):
    return f"{x:,.0f}"


def _fmt_ms(x):
    if x < 1:
        return f"{x:.3f}".rstrip("0").rstrip(".") if x >= 0.001 else f"{x:.4f}"
    if x < 10:
        return f"{x:.2f}"
    return f"{x:.1f}"


def _ratio(a, b):
    return f"{a / b:.2f}" if a and b else "–"


PEER_LABEL = {
    "direct": "direct (upstream nginx `return 200`)",
    "nginx": "nginx proxy_pass (keepalive 128)",
    "haproxy": "HAProxy (http-reuse always)",
    "caddy": "Caddy reverse_proxy",
    "hpm": "http-proxy-middleware 3 + express 5",
    "portero": "**portero**",
    "portero-base": "portero, base binary (`PORTERO_BASE_BIN`)",
    "nginx-log": "nginx proxy_pass, access log on (combined, to a file)",
    "portero-log": "**portero**, access log on (`--access-log FILE`)",
    "portero-hyper": "portero, hyper's HTTP/1 path (`--http1 hyper`)",
    "express": "express.static",
}
STATIC_LABEL = {
    "nginx": "nginx (sendfile, gzip_static)",
    "nginx-ofc": "nginx (sendfile, gzip_static, open_file_cache)",
    "caddy": "Caddy file_server (precompressed gzip)",
    "portero": "**portero** `--spa` (dev profile: live reload)",
    "portero-staging": "**portero** `--spa` (staging profile)",
    "express": "express.static (no gzip)",
}


def report(run_dir):
    meta = {}
    for row in _read_tsv(os.path.join(run_dir, "meta.tsv")):
        meta[row["key"]] = row["value"]
    data = _read_tsv(os.path.join(run_dir, "data.tsv"))
    skipped = _read_tsv(os.path.join(run_dir, "skipped.tsv"))
    notes = _read_tsv(os.path.join(run_dir, "notes.tsv"))

    groups = {}
    for r in data:
        key = (r["scenario"], r["peer"], r["variant"], r["conns"])
        groups.setdefault(key, []).append(r)

    def agg(key):
        rows = groups.get(key)
        if not rows:
            return None
        rps = [float(r["rps"]) for r in rows]
        return {
            "n": len(rows),
            "rps": statistics.median(rps),
            "min": min(rps),
            "max": max(rps),
            "p50": statistics.median(float(r["p50_ms"]) for r in rows),
            "p99": statistics.median(float(r["p99_ms"]) for r in rows),
            "errors": sum(int(r["non2xx"]) + int(r["sockerr"]) for r in rows),
            "bpr": statistics.median(float(r["bytes_per_req"]) for r in rows),
            "accepts_per_req": statistics.median(
                int(r.get("tcp_accepts") or 0) / max(int(r["requests"]), 1) for r in rows
            ),
            "server_busy": statistics.median(float(r.get("server_cpu_busy_pct") or 0) for r in rows),
            "client_busy": statistics.median(float(r.get("client_cpu_busy_pct") or 0) for r in rows),
        }

    def round_ratios(scen, a, b, variant, conns):
        # per-round ratio a/b (same round, adjacent in time): median, min, max
        ra = {r["round"]: float(r["rps"]) for r in groups.get((scen, a, variant, conns), [])}
        rb = {r["round"]: float(r["rps"]) for r in groups.get((scen, b, variant, conns), [])}
        xs = [ra[k] / rb[k] for k in ra if k in rb and rb[k]]
        return (statistics.median(xs), min(xs), max(xs)) if xs else None

    out = []
    w = out.append
    w(f"# portero load benchmark — {meta.get('date', '?')}")
    w("")
    w(f"- command: `{meta.get('command', '?')}`")
    w(f"- machine: {meta.get('nproc', '?')} CPUs, {meta.get('cpu', '?')}, kernel {meta.get('kernel', '?')}")
    w(
        f"- pinning: servers (upstream too) on CPU {meta.get('server_cpu', '?')}, one worker each; "
        f"`wrk -t1` on CPU {meta.get('client_cpu', '?')}; loopback only"
    )
    w(f"- rounds: {meta.get('rounds_desc', '?')}")
    if "autogroup_nice" in meta:
        w(f"- run.sh's scheduler autogroup (servers and clients included) at nice {meta['autogroup_nice']}")
    w("- versions:")
    for k in ("nginx", "haproxy", "caddy", "wrk", "h2load", "openssl", "node", "express", "http-proxy-middleware",
              "portero", "portero_base"):
        if k in meta:
            w(f"  - {k}: {meta[k]}")
    w("")

    scen_seen = sorted({r["scenario"] for r in data} | {s["scenario"] for s in skipped})

    if "proxy" in scen_seen:
        order = [p for p in meta.get("proxy_peers", "").split(",") if p]
        conns = meta.get("conns", "64")
        w(f"## Proxy, small response (`GET /api/x` → `200 ok`)")
        w("")
        w(
            "Medians across rounds, (min–max) of req/s across rounds. ×direct/×nginx compare c"
            f"{conns} req/s; proxy µs/req = 1/req/s − 1/direct req/s (c{conns})."
        )
        w("")
        w(
            f"| through | req/s c{conns} | (min–max) | p50 / p99 ms c{conns} | req/s c1 | (min–max) | "
            f"p50 / p99 ms c1 | ×direct | ×nginx | proxy µs/req |"
        )
        w("|---|---|---|---|---|---|---|---|---|---|")
        direct = agg(("proxy", "direct", "-", conns))
        ngx = agg(("proxy", "nginx", "-", conns))
        for p in order:
            a = agg(("proxy", p, "-", conns))
            b = agg(("proxy", p, "-", "1"))
            label = PEER_LABEL.get(p, p)
            skip = [s for s in skipped if s["scenario"] == "proxy" and s["peer"] == p]
            if a is None and b is None:
                reason = skip[0]["reason"] if skip else "no data"
                w(f"| {label} | skipped: {reason} | | | | | | | | |")
                continue
            cells = [label]
            for x in (a, b):
                if x is None:
                    cells += ["–", "", "–"]
                    continue
                err = f" ⚠{x['errors']} err" if x["errors"] else ""
                cells += [
                    _fmt_int(x["rps"]) + err,
                    f"{_fmt_int(x['min'])}–{_fmt_int(x['max'])}",
                    f"{_fmt_ms(x['p50'])} / {_fmt_ms(x['p99'])}",
                ]
            cells.append(_ratio(a["rps"], direct["rps"]) if a and direct else "–")
            cells.append(_ratio(a["rps"], ngx["rps"]) if a and ngx else "–")
            if a and direct and p != "direct":
                cells.append(f"{1e6 / a['rps'] - 1e6 / direct['rps']:.1f}")
            else:
                cells.append("–")
            w("| " + " | ".join(cells) + " |")
        w("")
        have = {p for p in order if agg(("proxy", p, "-", conns))}
        if {"nginx", "nginx-log", "portero", "portero-log"} <= have:
            w("### Access-log cost, same run")
            w("")
            w(
                "portero ÷ nginx req/s with both access logs off, then both on; ratio of the medians, and in "
                "brackets the median (min–max) of the per-round ratios. Difference = on/on ÷ off/off − 1."
            )
            w("")
            w("| conns | portero ÷ nginx, logs off | portero ÷ nginx, logs on | difference | nginx on ÷ off | portero on ÷ off |")
            w("|---|---|---|---|---|---|")
            for c in (conns, "1"):
                m = {p: agg(("proxy", p, "-", c)) for p in ("nginx", "nginx-log", "portero", "portero-log")}
                if not all(m.values()):
                    continue
                off = m["portero"]["rps"] / m["nginx"]["rps"]
                on = m["portero-log"]["rps"] / m["nginx-log"]["rps"]

                def rr(a, b):
                    x = round_ratios("proxy", a, b, "-", c)
                    return f" ({x[0]:.3f}, {x[1]:.3f}–{x[2]:.3f})" if x else ""

                w(
                    f"| c{c} | {off:.3f}{rr('portero', 'nginx')} | {on:.3f}{rr('portero-log', 'nginx-log')} | "
                    f"{100 * (on / off - 1):+.1f}% | {m['nginx-log']['rps'] / m['nginx']['rps']:.3f} | "
                    f"{m['portero-log']['rps'] / m['portero']['rps']:.3f} |"
                )
            w("")

    if "tls" in scen_seen:
        order = [p for p in meta.get("tls_peers", "").split(",") if p]
        conns = meta.get("conns", "64")
        peers = [p for p in order if any(k[0] == "tls" and k[1] == p for k in groups)]
        w("## TLS (portero: rustls; nginx: OpenSSL), proxying `GET /api/x` → `200 ok`")
        w("")
        w(f"- rounds: {meta.get('tls_desc', '?')}")
        w(
            "- Medians across rounds, (min–max). HTTPS and HTTP/2 use the ECDSA P-256 certificate. New handshakes: "
            "`tls_client` (benches/tls_client.rs) opens a TCP connection per request, full TLS 1.3 handshake (no "
            "resumption), one `GET` with `Connection: close`. HTTP/2: h2load; its latency is the mean time per "
            "request. accepts/req = TCP connections the kernel accepted (machine-wide, /proc/net/snmp PassiveOpens) "
            "per request answered; busy % = server CPU / client CPU busy during the run."
        )
        w("")
        head = "| measurement | " + " | ".join(PEER_LABEL.get(p, p) + " req/s (min–max)" for p in peers)
        ratios = []
        if "nginx" in peers:
            ratios += [(p, "nginx") for p in peers if p.startswith("portero")]
        if "portero" in peers and "portero-base" in peers:
            ratios.append(("portero", "portero-base"))
        head += "".join(f" | {a} ÷ {b}" for a, b in ratios)
        head += " | latency p50 / p99 ms | accepts/req | busy % server / client |"
        w(head)
        w("|---" * (2 + len(peers) + len(ratios) + 2) + "|")
        rows = [
            ("https", conns, f"HTTPS keep-alive, c{conns} (wrk)"),
            ("https", "1", "HTTPS keep-alive, c1 (wrk)"),
            ("handshake-ecdsa", None, "new TLS 1.3 handshakes/s, ECDSA P-256"),
            ("handshake-rsa", None, "new TLS 1.3 handshakes/s, RSA-2048"),
            ("h2", None, "HTTP/2 (h2load)"),
        ]
        for variant, c, label in rows:
            keys = {p: next((k for k in groups if k[:3] == ("tls", p, variant) and (c is None or k[3] == c)), None) for p in peers}
            a = {p: agg(keys[p]) if keys[p] else None for p in peers}
            if not any(a.values()):
                continue
            if c is None:
                cc = next(k[3] for k in keys.values() if k)
                label += f", {cc} conns" if variant != "h2" else f", {cc} conns × {meta.get('tls_desc', '').split('-m')[-1].split()[0]} streams"
            cells = [label]
            for p in peers:
                x = a[p]
                if x is None:
                    cells.append("–")
                    continue
                err = f" ⚠{x['errors']} err" if x["errors"] else ""
                cells.append(f"{_fmt_int(x['rps'])}{err} ({_fmt_int(x['min'])}–{_fmt_int(x['max'])})")
            for pa, pb in ratios:
                if a.get(pa) and a.get(pb):
                    rr = round_ratios("tls", pa, pb, variant, keys[pa][3])
                    extra = f" (rounds {rr[1]:.2f}–{rr[2]:.2f})" if rr else ""
                    cells.append(f"{a[pa]['rps'] / a[pb]['rps']:.2f}{extra}")
                else:
                    cells.append("–")
            lat, acc, busy = [], [], []
            for p in peers:
                x = a[p]
                if x is None:
                    continue
                if variant == "h2":
                    lat.append(f"{p}: mean {_fmt_ms(x['p50'])}")
                else:
                    lat.append(f"{p}: {_fmt_ms(x['p50'])} / {_fmt_ms(x['p99'])}")
                acc.append(f"{p}: {x['accepts_per_req']:.2f}")
                busy.append(f"{p}: {x['server_busy']:.0f} / {x['client_busy']:.0f}")
            cells += ["; ".join(lat), "; ".join(acc), "; ".join(busy)]
            w("| " + " | ".join(cells) + " |")
        w("")

    if "static" in scen_seen:
        order = [p for p in meta.get("static_peers", "").split(",") if p]
        conns = meta.get("conns", "64")
        w(f"## Static files (c{conns})")
        w("")
        w(
            "Files generated into a temp dir: `/` → `index.html` (2 KiB), `/app.3f9a1c2b.js` (100 KiB), "
            "each with a precompressed `.gz`. KiB/resp is what wrk read per response (headers included): "
            "it shows whether gzip was actually served."
        )
        w("")
        w(f"| file | Accept-Encoding | server | req/s c{conns} | (min–max) | p50 / p99 ms | KiB/resp | ×nginx |")
        w("|---|---|---|---|---|---|---|---|")
        variants = []
        for r in data + skipped:
            if r["scenario"] == "static" and r["variant"] != "*" and r["variant"] not in variants:
                variants.append(r["variant"])
        vorder = ["index-identity", "index-gzip", "js-identity", "js-gzip"]
        if any(s["scenario"] == "static" and s["variant"] == "*" for s in skipped):
            variants = list(dict.fromkeys(variants + vorder))
        variants.sort(key=lambda v: vorder.index(v) if v in vorder else 99)
        for v in variants:
            fname, enc = v.split("-", 1)
            fname = "index.html (2 KiB)" if fname == "index" else "app.js (100 KiB)"
            enc = "gzip" if enc == "gzip" else "—"
            ngx = agg(("static", "nginx", v, conns))
            for p in order:
                a = agg(("static", p, v, conns))
                label = STATIC_LABEL.get(p, p)
                if a is None:
                    skip = [
                        s for s in skipped
                        if s["scenario"] == "static" and s["peer"] == p and s["variant"] in (v, "*")
                    ]
                    if skip:
                        w(f"| {fname} | {enc} | {label} | skipped: {skip[0]['reason']} | | | | |")
                    continue
                err = f" ⚠{a['errors']} err" if a["errors"] else ""
                w(
                    f"| {fname} | {enc} | {label} | {_fmt_int(a['rps'])}{err} | "
                    f"{_fmt_int(a['min'])}–{_fmt_int(a['max'])} | {_fmt_ms(a['p50'])} / {_fmt_ms(a['p99'])} | "
                    f"{a['bpr'] / 1024:.1f} | {_ratio(a['rps'], ngx['rps']) if ngx else '–'} |"
                )
        w("")

    other = skipped
    peers_used = set(meta.get("proxy_peers", "").split(",")) if "proxy" in scen_seen else set()
    w("## Notes")
    w("")
    w(
        "- Same-run ratios are what to compare; on this kind of noisy 2-core VM differences under ~10% are noise. "
        "Both the upstream and the proxy under test share one CPU, so proxy µs/req is CPU the proxy adds."
    )
    if "caddy" in peers_used:
        w(
            "- Caddy runs with its default reverse_proxy transport (PEERS.md config), which keeps fewer idle upstream "
            "connections per host than the 64 client connections: under c64 it keeps re-dialing the upstream "
            "(~45 upstream connections and ~10% of requests on a new one, seen by hand)."
        )
    static_used = set(meta.get("static_peers", "").split(",")) if "static" in scen_seen else set()
    if "nginx" in static_used and "nginx-ofc" not in static_used:
        w(
            "- nginx static runs as in PEERS.md (sendfile, no `open_file_cache`); with `open_file_cache` it served "
            "the 2 KiB file ~1.4× faster by hand: `--static-peers nginx,nginx-ofc,…` adds that row."
        )
    if "hpm" in peers_used:
        w(
            "- http-proxy-middleware runs with the PEERS.md options and no `agent`: http-proxy then sends "
            "`Connection: close` upstream, i.e. one new upstream TCP connection per request."
        )
    for n in notes:
        w(f"- {n['note']}")
    for s in other:
        w(f"- skipped {s['scenario']}/{s['peer']}/{s['variant']}: {s['reason']}")
    noise_pct = float(meta.get("noise_pct", "15"))
    noisy = [
        f"{r['scenario']}/{r['peer']}/{r['variant']} c{r['conns']} r{r['round']} ({r['other_cpu_pct']}%)"
        for r in data
        if float(r.get("other_cpu_pct") or 0) > noise_pct
    ]
    retried = sum(1 for r in data if int(r.get("attempts") or 1) > 1)
    if retried:
        w(f"- {retried} run(s) were repeated because other processes were using the CPUs; the least disturbed attempt is kept.")
    if noisy:
        w(
            f"- ⚠ other processes still used more than {noise_pct:.0f}% of a CPU during: " + ", ".join(noisy)
            + " — treat those rows with suspicion."
        )
    steal = [float(r.get("steal_pct") or 0) for r in data]
    if steal and max(steal) > 5:
        w(f"- hypervisor steal time reached {max(steal):.0f}% of a CPU during some runs.")
    for k in groups:
        a = agg(k)
        if a["errors"]:
            w(f"- ⚠ {k[0]}/{k[1]}/{k[2]} c{k[3]}: {a['errors']} non-2xx/3xx responses or socket errors (see raw/)")
    w("")
    w(f"Raw wrk output and server logs: `{meta.get('run_dir_rel', run_dir)}`")
    print("\n".join(out))


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd, arg = sys.argv[1], sys.argv[2]
    if cmd in ("sys-snap", "sys-diff"):
        if len(sys.argv) != 4:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
        (sys_snap if cmd == "sys-snap" else sys_diff)(arg, sys.argv[3])
    elif cmd == "gen-static":
        gen_static(arg)
    elif cmd == "parse-wrk":
        parse_wrk(arg)
    elif cmd == "parse-h2load":
        parse_h2load(arg)
    elif cmd == "wait-quiet":
        wait_quiet(float(arg))
    elif cmd == "cpu-snap":
        cpu_snap(arg)
    elif cmd == "report":
        report(arg)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
