#!/usr/bin/env bash
# Using every core: portero's default (one process, a single-threaded
# runtime per core, each on its own SO_REUSEPORT listener), its work-stealing
# multi-thread runtime (`runtime = "threads"`), one single-threaded portero
# process per core sharing the port (`reuse_port = true`), and nginx with a
# worker per core for reference. Nothing is pinned: on a 2-core machine the
# upstream, the proxy and wrk share both cores, so the figures compare the
# two ways of using them, not how portero would scale on a bigger machine.
#
# Usage: benches/load/multicore.sh [ROUNDS (3)] [SECONDS (8)]     (~2 min with the defaults)
# Needs nginx and wrk (apt-get install nginx wrk) and target/release/portero.
# Env: PORTERO_BIN; PORTERO_ARGS (words added to every portero's command line,
# e.g. "--access-log off"); PORTERO_BASE_BIN adds a row for that binary in the
# default mode (A/B of a change); PORTERO_PROFILE=staging runs every portero
# in that profile (no inspector, no live reload). The default mode also runs with
# `--http1 hyper` (hyper's HTTP/1 path) for comparison.
# Prints a markdown table; loopback only; every process stopped by PID.

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROUNDS=${1:-3}
SECS=${2:-8}
BIN=${PORTERO_BIN:-$REPO/target/release/portero}
BASE_BIN=${PORTERO_BASE_BIN:-}
# shellcheck disable=SC2206 # a word list
EXTRA=(${PORTERO_ARGS:-})
PROFILE=${PORTERO_PROFILE:-}
[[ -x $BIN ]] || { echo "multicore.sh: $BIN missing (cargo build --release)" >&2; exit 1; }
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "multicore.sh: needs nginx and wrk" >&2; exit 1; }

WORK=$(mktemp -d /tmp/portero-multicore.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
user_line() { if [[ $(id -u) == 0 ]]; then echo "user root root;"; fi; }

# nginx_conf TEMPLATE DIR PORT UPSTREAM_PORT WORKERS
nginx_conf() {
    local dir=$2
    mkdir -p "$dir"
    sed -e "s|@USER_LINE@|$(user_line)|" -e "s|@WORK@|$dir|g" -e "s|@PORT@|$3|" -e "s|@ACCESS_LOG@|off|" \
        -e "s|@UPSTREAM_PORT@|$4|" -e "s|worker_processes 1;|worker_processes $5;|" \
        "$HERE/conf/$1" >"$dir/nginx.conf"
}

wait_port() { # wait_port PORT: until it accepts (bounded: 10 s)
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "multicore.sh: nothing listening on $1 after 10 s" >&2
    exit 1
}

UP=$(free_port)
nginx_conf upstream-nginx.conf.in "$WORK/up" "$UP" 0 1
nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log" -g 'daemon off;' &
PIDS+=($!)
wait_port "$UP"

# Every portero reads a config file holding the profile, if one was asked for.
prof_line() { [[ -z $PROFILE ]] || printf 'profile = "%s"\n' "$PROFILE"; }
prof_line >"$WORK/default.toml"
declare -A PORT
# portero, one process, a runtime per core (the default).
PORT[percore]=$(free_port)
"$BIN" "${EXTRA[@]}" -c "$WORK/default.toml" --listen "127.0.0.1:${PORT[percore]}" --backend "http://127.0.0.1:$UP" --spa /nonexistent --log-level warn 2>"$WORK/percore.log" &
PIDS+=($!)
# The same on hyper's HTTP/1 path.
PORT[hyper]=$(free_port)
"$BIN" "${EXTRA[@]}" -c "$WORK/default.toml" --http1 hyper --listen "127.0.0.1:${PORT[hyper]}" --backend "http://127.0.0.1:$UP" --spa /nonexistent --log-level warn 2>"$WORK/hyper.log" &
PIDS+=($!)
# The base binary, default mode.
if [[ -n $BASE_BIN ]]; then
    PORT[base]=$(free_port)
    "$BASE_BIN" "${EXTRA[@]}" -c "$WORK/default.toml" --listen "127.0.0.1:${PORT[base]}" --backend "http://127.0.0.1:$UP" --spa /nonexistent --log-level warn 2>"$WORK/base.log" &
    PIDS+=($!)
fi
# portero, one process, multi-thread runtime with a worker per core.
PORT[threads]=$(free_port)
{ prof_line; printf '[server]\nruntime = "threads"\n'; } >"$WORK/threads.toml"
"$BIN" "${EXTRA[@]}" -c "$WORK/threads.toml" --listen "127.0.0.1:${PORT[threads]}" --backend "http://127.0.0.1:$UP" --spa /nonexistent --log-level warn 2>"$WORK/threads.log" &
PIDS+=($!)
# portero, one single-threaded process per core on one port (SO_REUSEPORT).
PORT[processes]=$(free_port)
{ prof_line; printf '[server]\nreuse_port = true\n'; } >"$WORK/reuseport.toml"
for _ in $(seq "$(nproc)"); do
    TOKIO_WORKER_THREADS=1 "$BIN" "${EXTRA[@]}" -c "$WORK/reuseport.toml" --listen "127.0.0.1:${PORT[processes]}" \
        --backend "http://127.0.0.1:$UP" --spa /nonexistent --log-level warn 2>>"$WORK/processes.log" &
    PIDS+=($!)
done
# nginx, a worker per core.
PORT[nginx]=$(free_port)
nginx_conf nginx-proxy.conf.in "$WORK/nginx" "${PORT[nginx]}" "$UP" "$(nproc)"
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" -g 'daemon off;' &
PIDS+=($!)

TARGETS=(percore hyper threads processes nginx)
[[ -z $BASE_BIN ]] || TARGETS=(base "${TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    wait_port "${PORT[$t]}"
    curl -fsS -o /dev/null "http://127.0.0.1:${PORT[$t]}/api/x" || { echo "multicore.sh: $t does not proxy" >&2; exit 1; }
    timeout 30 wrk -t1 -c64 -d2s "http://127.0.0.1:${PORT[$t]}/api/x" >/dev/null
done

declare -A RPS P99
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
        t=${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}
        out=$(timeout $((SECS + 30)) wrk -t2 -c64 -d"${SECS}s" --latency "http://127.0.0.1:${PORT[$t]}/api/x")
        RPS[$t]+="$(awk '/^Requests\/sec/{print $2}' <<<"$out") "
        P99[$t]+="$(awk '$1=="99%"{print $2}' <<<"$out") "
        echo "multicore.sh: round $((r + 1)) $t $(awk '/^Requests\/sec/{print $2}' <<<"$out") req/s" >&2
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
ms() { sed -E 's/([0-9.]+)us/\1 0.001/; s/([0-9.]+)ms/\1 1/; s/([0-9.]+)s$/\1 1000/' | awk '{printf "%.2f", $1 * $2}'; }
nginx_rps=$(median <<<"${RPS[nginx]}")
echo "Unpinned, $(nproc) cores shared by the upstream (nginx, 1 worker), the proxy and \`wrk -t2 -c64\`; $ROUNDS rounds × ${SECS} s, medians."
echo
echo "| proxy | req/s | p99 ms (median of rounds) | ×nginx |"
echo "|---|---|---|---|"
for t in "${TARGETS[@]}"; do
    case $t in
        percore) label="portero, 1 process, a runtime per core (default)" ;;
        hyper) label="portero, as above, \`--http1 hyper\`" ;;
        base) label="portero base binary (\`PORTERO_BASE_BIN\`), default mode" ;;
        threads) label="portero, 1 process, multi-thread runtime (\`runtime = \"threads\"\`)" ;;
        processes) label="portero, $(nproc) processes × 1 thread, \`reuse_port = true\`" ;;
        nginx) label="nginx, $(nproc) workers" ;;
    esac
    rps=$(median <<<"${RPS[$t]}")
    p99=$(for v in ${P99[$t]}; do ms <<<"$v"; echo; done | median)
    printf '| %s | %.0f | %s | %.2f |\n' "$label" "$rps" "$p99" "$(echo "$rps / $nginx_rps" | bc -l)"
done
