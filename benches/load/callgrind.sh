#!/usr/bin/env bash
# Instructions per proxied request (valgrind --tool=callgrind), portero in
# front of an nginx upstream answering `200 "ok"`, as in BENCHMARKS.md.
#
# Usage: benches/load/callgrind.sh BINARY|nginx [SECONDS] [CONNS]
#   nginx: nginx proxy_pass (the run.sh peer's config, one process, no master;
#   NGINX_ACCESS_LOG=1: with an access log, nginx's default combined format)
#   env: PORTERO_ARGS are added to portero's command line (e.g. "-c
#   benches/load/conf/portero-staging.toml --access-log off" for the lean
#   figure: no access log, no inspector; "--http1 hyper" for hyper's path).
#   H2_STREAMS=N: HTTP/2 without TLS (prior knowledge) instead of HTTP/1.1,
#   h2load with CONNS connections of N streams each (portero gets a config
#   file with the staging profile and `http2_prior_knowledge`; nginx `listen
#   ... http2`), so the HTTP/2 code is measured without the TLS under it.
# Prints: total instructions while collecting, requests served, and their ratio.
# Collection is switched on only while wrk runs (callgrind_control -i), so
# start-up and shutdown are not counted.
set -euo pipefail
BIN=${1:?binary}
SECS=${2:-5}
CONNS=${3:-16}
WORK=$(mktemp -d /tmp/portero-cg.XXXXXX)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UP=$((20000 + RANDOM % 10000)); PP=$((UP + 1))
sed -e "s|@USER_LINE@|$( [[ $(id -u) == 0 ]] && echo 'user root root;')|" -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$UP|" -e "s|@ACCESS_LOG@|off|" \
    "$HERE/conf/upstream-nginx.conf.in" >"$WORK/nginx.conf"
taskset -c 1 nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" -g 'daemon off;' &
NGX=$!
# The SPA folder alone in its parent: portero watches the parent, and a log
# written beside it would wake the watcher on every line.
mkdir -p "$WORK/site/spa" && echo '<!doctype html><title>x</title>' >"$WORK/site/spa/index.html"
if [[ $BIN == nginx ]]; then
    mkdir -p "$WORK/proxy-peer"
    sed -e "s|@USER_LINE@|$( [[ $(id -u) == 0 ]] && echo 'user root root;')|" -e "s|@WORK@|$WORK/proxy-peer|g" -e "s|@PORT@|$PP|" -e "s|@ACCESS_LOG@|off|" \
        -e "s|@UPSTREAM_PORT@|$UP|" "$HERE/conf/nginx-proxy.conf.in" >"$WORK/proxy.conf"
    [[ -z ${H2_STREAMS:-} ]] || sed -i "s|listen 127.0.0.1:$PP |listen 127.0.0.1:$PP http2 |" "$WORK/proxy.conf"
    [[ -z ${NGINX_ACCESS_LOG:-} ]] || sed -i "s|access_log off;|access_log $WORK/proxy-peer/access.log;|" "$WORK/proxy.conf"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.out" \
        nginx -p "$WORK/proxy-peer" -c "$WORK/proxy.conf" -e "$WORK/proxy-peer/error.log" \
        -g 'daemon off; master_process off;' >"$WORK/portero.log" 2>&1 &
else
H2_ARGS=()
if [[ -n ${H2_STREAMS:-} ]]; then
    printf 'profile = "staging"\n[server]\nhttp2_prior_knowledge = true\n' >"$WORK/h2c.toml"
    H2_ARGS=(-c "$WORK/h2c.toml")
fi
TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/cg.out" "$BIN" --listen "127.0.0.1:$PP" \
    --backend "http://127.0.0.1:$UP" --spa "$WORK/site/spa" --log-level warn "${H2_ARGS[@]}" ${PORTERO_ARGS:-} >"$WORK/portero.log" 2>&1 &
fi
PID=$!
trap 'kill $PID $NGX 2>/dev/null || true; wait 2>/dev/null; [[ -n ${KEEP:-} ]] || rm -rf "$WORK"' EXIT
# nginx's plain `listen ... http2` speaks HTTP/2 only
CURL_H2=$([[ -n ${H2_STREAMS:-} ]] && echo --http2-prior-knowledge || true)
for _ in $(seq 100); do curl -s $CURL_H2 -o /dev/null "http://127.0.0.1:$PP/api/x" && break; sleep 0.2; done
load() { # SECONDS OUT
    if [[ -n ${H2_STREAMS:-} ]]; then
        h2load -t1 -c"$CONNS" -m"$H2_STREAMS" -D"$1" "http://127.0.0.1:$PP/api/x" >"$2"
    else
        wrk -t1 -c"$CONNS" -d"$1s" "http://127.0.0.1:$PP/api/x" >"$2"
    fi
}
# warm-up (pool filled, caches warm), not counted
load 2 /dev/null
callgrind_control -i on "$PID" >/dev/null
load "$SECS" "$WORK/wrk.txt"
callgrind_control -i off "$PID" >/dev/null
if [[ -n ${H2_STREAMS:-} ]]; then
    # h2load: "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, ..."
    REQS=$(awk '/^requests:/ {print $8}' "$WORK/wrk.txt")
    NON2XX=$(awk '/^status codes:/ {print $5 + $7 + $9}' "$WORK/wrk.txt")
else
    REQS=$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")
    NON2XX=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.txt")
fi
callgrind_control -d "$PID" >/dev/null
sleep 1
F=$(ls "$WORK"/cg.out* | tail -1)
IR=$(awk '/^totals:/ {print $2}' "$F")
echo "binary=$BIN args='${PORTERO_ARGS:-}' conns=$CONNS h2_streams=${H2_STREAMS:-none} requests=$REQS non2xx=${NON2XX:-0} instructions=$IR per_request=$((IR / REQS))"
