#!/usr/bin/env bash
# Every benchmark in one command, one report: the load comparison (proxy and
# static files vs nginx, HAProxy, Caddy and http-proxy-middleware), streaming
# and WebSockets, the developer loop, the criterion micro-benchmarks, and
# (with --daphne) WebSocket round trips against the real Django Channels
# backend of tests/e2e.
#
# Usage: benches/all.sh [--quick] [--daphne] [--no-build] [-- run.sh options...]
#   --quick     short runs everywhere (a smoke test of the harness, not figures to quote)
#   --daphne    also run tests/e2e/run.sh --ws-bench (PostgreSQL + Daphne; a few minutes)
#   --no-build  use target/release/portero as it is
# Options after -- go to benches/load/run.sh (default: --wait-quiet 60).
#
# Output: the report on stdout and in benches/results/latest.md; each tool's
# raw output next to it in benches/results/<timestamp>/.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
QUICK=0 DAPHNE=0 BUILD=1
LOAD_ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --daphne) DAPHNE=1 ;;
        --no-build) BUILD=0 ;;
        --) shift; LOAD_ARGS=("$@"); break ;;
        -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "all.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ ${#LOAD_ARGS[@]} -gt 0 ]] || LOAD_ARGS=(--wait-quiet 60)

STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT="$HERE/results/$STAMP"
mkdir -p "$OUT"
REPORT="$OUT/report.md"
log() { echo "all.sh: $*" >&2; }
die() { echo "all.sh: FATAL: $*" >&2; exit 1; }

cd "$REPO"
if [[ $BUILD == 1 ]]; then
    log "building the release binary"
    cargo build --release --locked >&2 || die "cargo build --release failed"
fi
[[ -x target/release/portero ]] || die "target/release/portero is missing (drop --no-build)"

# step NAME LOGFILE CMD...: runs one benchmark, its output kept in LOGFILE; fails loudly.
step() {
    local name=$1 logf=$2
    shift 2
    log "=== $name: $*"
    if ! "$@" >"$logf" 2>"$logf.stderr"; then
        tail -20 "$logf.stderr" >&2
        die "$name failed (output in $logf, $logf.stderr)"
    fi
}

load_args=("${LOAD_ARGS[@]}")
stream_env=()
dev_env=()
micro_args=()
if [[ $QUICK == 1 ]]; then
    load_args+=(--quick)
    stream_env=(STREAM_BYTES=$((64 << 20)) WS_IDLE=500 WS_ROUNDS=2000)
    dev_env=(DEV_ROUNDS=5)
    micro_args=(-- --warm-up-time 1 --measurement-time 2)
fi

step "load (proxy + static)" "$OUT/load.md" "$HERE/load/run.sh" "${load_args[@]}"
step "streaming + WebSocket" "$OUT/stream.md" env "${stream_env[@]}" cargo bench --locked --bench stream
step "developer loop" "$OUT/dev_loop.md" env "${dev_env[@]}" cargo bench --locked --bench dev_loop
step "micro (criterion)" "$OUT/micro.txt" cargo bench --locked --bench micro "${micro_args[@]}"
if [[ $DAPHNE == 1 ]]; then
    step "WebSocket vs Daphne" "$OUT/daphne.md" "$REPO/tests/e2e/run.sh" --ws-bench
fi

{
    echo "# portero benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (with uncommitted changes)'); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(uname -sr)."
    [[ $QUICK == 0 ]] || echo "**--quick run: short measurements, not figures to quote.**"
    echo
    echo "## Load: proxy and static files"
    echo
    # run.sh's own report, without its title line.
    sed '1{/^# /d}' "$OUT/load.md"
    echo
    echo "## Streaming and WebSockets (\`cargo bench --bench stream\`)"
    echo
    grep -E '^\||^portero RSS' "$OUT/stream.md"
    echo
    echo "## Developer loop (\`cargo bench --bench dev_loop\`)"
    echo
    grep -E '^\|' "$OUT/dev_loop.md"
    echo
    echo "## Micro-benchmarks (\`cargo bench --bench micro\`, criterion median per iteration)"
    echo
    echo "| benchmark | time |"
    echo "|---|---|"
    # criterion prints "name\n    time: [low mid high]", or both on one line for short names.
    python3 - "$OUT/micro.txt" <<'PY'
import re, sys
name = None
for line in open(sys.argv[1], encoding="utf-8"):
    m = re.match(r"^(\S.*?)?\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
    if m:
        print(f"| {m.group(1) or name} | {m.group(2)} |")
    elif line.strip() and not line[0].isspace() and not line.startswith("Found "):
        name = line.strip()
PY
    if [[ $DAPHNE == 1 ]]; then
        echo
        echo "## WebSocket round trips against Daphne + Channels (\`tests/e2e/run.sh --ws-bench\`)"
        echo
        cat "$OUT/daphne.md"
    fi
} >"$REPORT"

cp "$REPORT" "$HERE/results/latest.md"
cat "$REPORT"
log "report written to benches/results/latest.md (raw output in benches/results/$STAMP/)"
