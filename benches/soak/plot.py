#!/usr/bin/env python3
"""Plots a soak run (samples.csv, events.json in RUN_DIR) to RUN_DIR/soak.png: portero's open
fds, RSS and threads over time, backend restarts as vertical lines, errors as ticks.
Needs matplotlib (benches/soak.sh installs it into benches/soak/.venv)."""
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

run = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(run, "samples.csv"))))
ev = json.load(open(os.path.join(run, "events.json")))
t = [float(r["t"]) for r in rows]
fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True, dpi=80)
series = [("fds", "open fds", 1), ("rss_kb", "RSS (MiB)", 1 / 1024), ("threads", "threads", 1)]
for ax, (key, label, k) in zip(axes, series):
    ax.plot(t, [float(r[key]) * k for r in rows], lw=1.2)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    for kill, _up in ev["restarts"]:
        ax.axvline(kill, color="grey", lw=0.6, alpha=0.5)
    idle = [float(r["t"]) for r in rows if r["phase"] in ("idle", "final")]
    if idle:
        ax.axvspan(min(idle), max(idle), color="green", alpha=0.08)
ymin, ymax = axes[0].get_ylim()
for kind, color in (("expected", "orange"), ("unexpected", "red")):
    xs = ev["errors"].get(kind, [])
    if xs:
        axes[0].plot(xs, [ymin] * len(xs), "|", color=color, ms=10, label=f"{kind} errors ({len(xs)})")
if any(ev["errors"].values()):
    axes[0].legend(loc="upper right", fontsize=8)
axes[-1].set_xlabel("seconds (grey: backend restarts; green: idle phase)")
fig.suptitle("portero soak: resources over time")
fig.tight_layout()
fig.savefig(os.path.join(run, "soak.png"))
print(os.path.join(run, "soak.png"))
