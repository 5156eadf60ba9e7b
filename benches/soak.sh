#!/usr/bin/env bash
# Soak test (issue #14): the release binary in front of a Python asyncio
# HTTP/1.1 + WebSocket backend (benches/soak/backend.py), mixed traffic for a
# while -- keep-alive GETs, uploads and downloads of random sizes, WebSocket
# echoes, clients that abort mid-upload and mid-download, slow readers and
# uploaders, stalled uploads, silent and half-head clients, HTTP/2 (h2c prior
# knowledge: h2load for multiplexed streams, curl) -- while the backend restarts and the config file is
# rewritten every ~5 s (a broken file every fourth time). Loopback only.
#
# Reports errors by kind over time (502/503/504 and cut connections around a
# backend restart are expected; anything else fails the run) and portero's
# open fds, RSS and threads (/proc/PID) as markdown tables (and a PNG plot in
# long mode). Then everything goes idle; after portero's timers and the
# backend's keep-alive (5 s) have expired it asserts fds <= baseline + 8 and
# RSS <= baseline + 32 MiB. Exit status non-zero on any failure.
#
# Usage: benches/soak.sh [--short] [--plot|--no-plot] [-- soak.py options]
#   --short    CI mode: 55 s of traffic, backend restart every ~10 s, no plot
#              (under 2 minutes in all)
#   (default)  long mode: 10 minutes of traffic, restart every ~20 s, PNG plot
#   --plot     also plot in short mode; --no-plot: never (no matplotlib install)
#   --no-install  never apt-get / pip install
# Env: PORTERO_BIN (default target/release/portero; never built here).
# Output: benches/soak/results/run-<timestamp>/ (report.md, samples.csv,
# ops.tsv, portero.log, backend.log, soak.png).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
MODE=long PLOT="" NO_INSTALL=${SOAK_NO_INSTALL:-0}
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --short) MODE=short ;;
        --plot) PLOT=1 ;;
        --no-plot) PLOT=0 ;;
        --no-install) NO_INSTALL=1 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "soak.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ -n $PLOT ]] || { [[ $MODE == long ]] && PLOT=1 || PLOT=0; }
log() { echo "soak.sh: $*" >&2; }
die() { echo "soak.sh: FATAL: $*" >&2; exit 2; }

PORTERO_BIN=${PORTERO_BIN:-$REPO/target/release/portero}
[[ -x $PORTERO_BIN ]] || die "$PORTERO_BIN is missing: cargo build --release (or set PORTERO_BIN)"
[[ -r /proc/self/status ]] || die "needs Linux /proc"
command -v python3 >/dev/null || die "python3 is needed"

need_apt=()
command -v curl >/dev/null || need_apt+=(curl ca-certificates)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
if [[ $PLOT == 1 ]] && ! python3 -c 'import ensurepip' 2>/dev/null; then need_apt+=(python3-venv); fi
if [[ ${#need_apt[@]} -gt 0 ]]; then
    [[ $NO_INSTALL != 1 ]] || die "missing ${need_apt[*]} and --no-install given"
    [[ $(id -u) == 0 ]] || die "missing ${need_apt[*]}: apt-get install ${need_apt[*]} (or run as root)"
    log "installing ${need_apt[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi
curl -V | grep -qw HTTP2 || die "this curl has no HTTP/2 support (needs libnghttp2)"

PLOT_PY=""
if [[ $PLOT == 1 ]]; then
    VENV=$HERE/soak/.venv
    if ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
        if [[ $NO_INSTALL == 1 ]]; then
            log "WARNING: no matplotlib in $VENV and --no-install: no plot"
        else
            log "installing matplotlib into $VENV (pip)"
            { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib; } >&2 \
                || log "WARNING: could not install matplotlib: no plot"
        fi
    fi
    "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null && PLOT_PY=$VENV/bin/python
fi

OUT=$HERE/soak/results/run-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
log "mode $MODE, binary $PORTERO_BIN, output $OUT"
start=$(date +%s)
rc=0
python3 "$HERE/soak/soak.py" --mode "$MODE" --portero-bin "$PORTERO_BIN" --out "$OUT" "${EXTRA[@]}" || rc=$?
if [[ -n $PLOT_PY && -s $OUT/samples.csv ]]; then
    "$PLOT_PY" "$HERE/soak/plot.py" "$OUT" >&2 || log "WARNING: plot failed"
fi
log "took $(($(date +%s) - start)) s; results in $OUT"
case $rc in
    0) log "PASS" ;;
    1) log "FAIL (see the report above and $OUT/portero.log)" ;;
    *) log "harness error (status $rc)" ;;
esac
exit "$rc"
