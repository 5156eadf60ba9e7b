#!/usr/bin/env python3
"""Helpers for benches/load/run.sh (stdlib only).

Subcommands:
  gen-static DIR            write index.html (2 KiB) and app.3f9a1c2b.js (100 KiB)
                            plus their .gz variants into DIR (deterministic content)
  parse-wrk FILE            print one TSV line from a `wrk --latency` output:
                            rps p50_ms p99_ms requests non2xx sockerr bytes_per_req
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


# ---------------------------------------------------------------- cpu-busy


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
    "portero-fast": "portero, fast HTTP/1 path (`PORTERO_FAST_H1=1`)",
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
        }

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
    w("- versions:")
    for k in ("nginx", "haproxy", "caddy", "wrk", "node", "express", "http-proxy-middleware", "portero"):
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
    if cmd == "gen-static":
        gen_static(arg)
    elif cmd == "parse-wrk":
        parse_wrk(arg)
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
