#!/usr/bin/env bash
# Load benchmark: portero against nginx, HAProxy, Caddy and http-proxy-middleware; TLS against nginx.
#
# Methodology (shared/PEERS.md): every server -- the upstream too -- pinned to one
# CPU with one worker; wrk -t1 pinned to the other CPU; loopback only; interleaved
# rounds (peer order rotated every round); medians and min-max across rounds.
#
# Usage: benches/load/run.sh [options]
#   --quick                 2-s runs, 1 round, 1-s warm-up          (env BENCH_QUICK=1)
#   --scenarios LIST        comma list of: proxy,static,tls          (env BENCH_SCENARIOS, default proxy,static)
#   --peers LIST            proxy peers: direct,nginx,haproxy,caddy,hpm,portero   (env BENCH_PEERS);
#                           opt-in: portero-base (the binary in PORTERO_BASE_BIN, for A/B runs of a change),
#                           portero-hyper (PORTERO_BIN with --http1 hyper: hyper's HTTP/1 path, for A/B runs),
#                           nginx-log and portero-log (as nginx and portero, with their access log on, to a
#                           file in the run's temp dir; nginx and portero run with it off)
#   --tls-peers LIST        tls peers: nginx,portero; opt-in: portero-base, portero-hyper   (env BENCH_TLS_PEERS)
#   --static-peers LIST     static peers: nginx,caddy,portero,portero-staging; opt-in: nginx-ofc (with
#                           open_file_cache), express (express.static)   (env BENCH_STATIC_PEERS)
#   --rounds N              proxy and tls rounds                     (env BENCH_ROUNDS, default 3)
#   --static-rounds N       static rounds                            (env BENCH_STATIC_ROUNDS, default 2)
#   --duration S            seconds per c64 proxy run                (env BENCH_DURATION, default 10)
#   --c1-duration S         seconds per c1 proxy run                 (env BENCH_C1_DURATION, default 5)
#   --static-duration S     seconds per static run                   (env BENCH_STATIC_DURATION, default 5)
#   --tls-duration S        seconds per tls handshake and HTTP/2 run (env BENCH_TLS_DURATION, default 10);
#                           HTTPS keep-alive runs use --duration and --c1-duration
#   --no-install            never apt-get / npm install              (env BENCH_NO_INSTALL=1)
#   --wait-quiet S          first wait up to S s for the machine to be idle (env BENCH_WAIT_QUIET, default 0)
#   --autogroup-nice N      set the nice value of run.sh's scheduler autogroup (its session: servers and clients
#                           included) to N, -20..19, for the run; restored at exit (env BENCH_AUTOGROUP_NICE).
#                           With kernel.sched_autogroup_enabled = 1 the CPU is shared between sessions first, so
#                           `nice -n 19` work in another session still takes half a core; -19 here makes it yield.
#                           Negative values need root.
#   -h, --help
# Other env: PORTERO_BIN (default target/release/portero), PORTERO_BASE_BIN, PORTERO_ARGS (added to
#   every portero peer's command line in the proxy scenario, e.g. "--access-log off"), BENCH_CONNS (64),
#   BENCH_WARMUP (s, default 2), BENCH_SERVER_CPU (0), BENCH_CLIENT_CPU (1),
#   BENCH_REQUIRE_PORTERO=1 (exit non-zero if portero rows are skipped),
#   BENCH_KEEP_WORK=1 (keep the temp dir with generated configs and files),
#   tls: BENCH_HS_CONNS (16, connections at once in the new-handshake runs), BENCH_H2_CONNS (8) and
#   BENCH_H2_STREAMS (16) for h2load, TLS_CLIENT_BIN (default: built with cargo build --release --bench tls_client),
#   BENCH_NOISE_PCT (15): a run during which processes other than the benchmark's used more than
#   this % of a CPU is repeated, up to BENCH_RETRIES (2) times, within BENCH_RETRY_BUDGET seconds
#   of extra load in all (60; 10 with --quick); the least disturbed attempt is kept and reported.
#
# Output: markdown table on stdout and in benches/load/results/latest.md; raw wrk
# output, server logs and TSV data in benches/load/results/run-<timestamp>/.
#
# Adding a scenario: write scenario_<name>() (start servers with start_server,
# measure with measure, stop with stop_pid), add <name> to KNOWN_SCENARIOS and a
# table to bench_helper.py's report().

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
HELPER="$HERE/bench_helper.py"
COMMAND_LINE="benches/load/run.sh${*:+ $*}"
ENV_DESC="" # the BENCH_* / PORTERO_BIN settings given in the environment, for the report
for v in BENCH_QUICK BENCH_SCENARIOS BENCH_PEERS BENCH_STATIC_PEERS BENCH_ROUNDS BENCH_STATIC_ROUNDS BENCH_DURATION \
    BENCH_C1_DURATION BENCH_STATIC_DURATION BENCH_WARMUP BENCH_CONNS BENCH_SERVER_CPU BENCH_CLIENT_CPU \
    BENCH_NOISE_PCT BENCH_RETRIES BENCH_RETRY_BUDGET BENCH_WAIT_QUIET PORTERO_BIN PORTERO_BASE_BIN \
    BENCH_TLS_PEERS BENCH_TLS_DURATION BENCH_HS_CONNS BENCH_H2_CONNS BENCH_H2_STREAMS TLS_CLIENT_BIN BENCH_AUTOGROUP_NICE PORTERO_ARGS; do
    [[ -z ${!v:-} ]] || ENV_DESC+="$v=${!v} "
done

die() { echo "run.sh: FATAL: $*" >&2; exit 1; }
log() { echo "run.sh: $*" >&2; }

# ------------------------------------------------------------------ options
QUICK=${BENCH_QUICK:-0}
SCENARIOS=${BENCH_SCENARIOS:-proxy,static}
PROXY_PEERS=${BENCH_PEERS:-direct,nginx,haproxy,caddy,hpm,portero}
STATIC_PEERS=${BENCH_STATIC_PEERS:-nginx,caddy,portero,portero-staging}
TLS_PEERS=${BENCH_TLS_PEERS:-nginx,portero}
TLS_DURATION=${BENCH_TLS_DURATION:-}
HS_CONNS=${BENCH_HS_CONNS:-16}
H2_CONNS=${BENCH_H2_CONNS:-8}
H2_STREAMS=${BENCH_H2_STREAMS:-16}
TLS_CLIENT_BIN=${TLS_CLIENT_BIN:-}
ROUNDS=${BENCH_ROUNDS:-}
STATIC_ROUNDS=${BENCH_STATIC_ROUNDS:-}
DURATION=${BENCH_DURATION:-}
C1_DURATION=${BENCH_C1_DURATION:-}
STATIC_DURATION=${BENCH_STATIC_DURATION:-}
WARMUP=${BENCH_WARMUP:-}
NO_INSTALL=${BENCH_NO_INSTALL:-0}
WAIT_QUIET=${BENCH_WAIT_QUIET:-0}
AUTOGROUP_NICE=${BENCH_AUTOGROUP_NICE:-}
CONNS=${BENCH_CONNS:-64}
NOISE_PCT=${BENCH_NOISE_PCT:-15}
RETRIES=${BENCH_RETRIES:-2}
RETRY_BUDGET=${BENCH_RETRY_BUDGET:-}
RETRY_SPENT=0
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
PORTERO_BIN=${PORTERO_BIN:-$REPO/target/release/portero}
PORTERO_BASE_BIN=${PORTERO_BASE_BIN:-}
KNOWN_SCENARIOS="proxy static tls"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --scenarios) SCENARIOS=${2:?}; shift ;;
        --peers) PROXY_PEERS=${2:?}; shift ;;
        --static-peers) STATIC_PEERS=${2:?}; shift ;;
        --tls-peers) TLS_PEERS=${2:?}; shift ;;
        --tls-duration) TLS_DURATION=${2:?}; shift ;;
        --rounds) ROUNDS=${2:?}; shift ;;
        --static-rounds) STATIC_ROUNDS=${2:?}; shift ;;
        --duration) DURATION=${2:?}; shift ;;
        --c1-duration) C1_DURATION=${2:?}; shift ;;
        --static-duration) STATIC_DURATION=${2:?}; shift ;;
        --no-install) NO_INSTALL=1 ;;
        --wait-quiet) WAIT_QUIET=${2:?}; shift ;;
        --autogroup-nice) AUTOGROUP_NICE=${2:?}; shift ;;
        -h|--help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

if [[ $QUICK == 1 ]]; then
    : "${ROUNDS:=1}" "${STATIC_ROUNDS:=1}" "${DURATION:=2}" "${C1_DURATION:=2}" "${STATIC_DURATION:=2}" "${WARMUP:=1}" "${RETRY_BUDGET:=10}" "${TLS_DURATION:=2}"
else
    : "${ROUNDS:=3}" "${STATIC_ROUNDS:=2}" "${DURATION:=10}" "${C1_DURATION:=5}" "${STATIC_DURATION:=5}" "${WARMUP:=2}" "${RETRY_BUDGET:=60}" "${TLS_DURATION:=10}"
fi
for v in ROUNDS STATIC_ROUNDS DURATION C1_DURATION STATIC_DURATION WARMUP CONNS SERVER_CPU CLIENT_CPU NOISE_PCT RETRIES RETRY_BUDGET WAIT_QUIET \
    TLS_DURATION HS_CONNS H2_CONNS H2_STREAMS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, got '${!v}'"
done
[[ -z $AUTOGROUP_NICE || ( $AUTOGROUP_NICE =~ ^-?[0-9]+$ && $AUTOGROUP_NICE -ge -20 && $AUTOGROUP_NICE -le 19 ) ]] \
    || die "--autogroup-nice must be an integer from -20 to 19, got '$AUTOGROUP_NICE'"
[[ $ROUNDS -ge 1 && $STATIC_ROUNDS -ge 1 && $DURATION -ge 1 && $C1_DURATION -ge 1 && $STATIC_DURATION -ge 1 && $TLS_DURATION -ge 1 \
    && $HS_CONNS -ge 1 && $H2_CONNS -ge 1 && $H2_STREAMS -ge 1 ]] \
    || die "rounds and durations must be >= 1"
IFS=, read -r -a SCENARIO_LIST <<<"$SCENARIOS"
IFS=, read -r -a PROXY_PEER_LIST <<<"$PROXY_PEERS"
IFS=, read -r -a STATIC_PEER_LIST <<<"$STATIC_PEERS"
IFS=, read -r -a TLS_PEER_LIST <<<"$TLS_PEERS"
for s in "${SCENARIO_LIST[@]}"; do [[ " $KNOWN_SCENARIOS " == *" $s "* ]] || die "unknown scenario '$s' (known: $KNOWN_SCENARIOS)"; done
for p in "${PROXY_PEER_LIST[@]}"; do [[ " direct nginx nginx-log haproxy caddy hpm portero portero-log portero-base portero-hyper " == *" $p "* ]] || die "unknown proxy peer '$p'"; done
for p in "${TLS_PEER_LIST[@]}"; do [[ " nginx portero portero-base portero-hyper " == *" $p "* ]] || die "unknown tls peer '$p'"; done
for p in "${STATIC_PEER_LIST[@]}"; do [[ " nginx nginx-ofc caddy portero portero-staging express " == *" $p "* ]] || die "unknown static peer '$p'"; done
wants() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
uses_peer() { [[ ",$PROXY_PEERS," == *",$1,"* ]] && wants proxy || { [[ ",$STATIC_PEERS," == *",$1,"* ]] && wants static; }; }

NPROC=$(nproc)
[[ $SERVER_CPU -lt $NPROC && $CLIENT_CPU -lt $NPROC ]] \
    || die "need CPUs $SERVER_CPU (servers) and $CLIENT_CPU (wrk); this machine has $NPROC (set BENCH_SERVER_CPU/BENCH_CLIENT_CPU)"
[[ $SERVER_CPU -ne $CLIENT_CPU ]] || log "WARNING: servers and wrk share CPU $SERVER_CPU: results are not comparable with PEERS.md"

# ------------------------------------------------------------------ tools
need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx)
if uses_peer haproxy; then command -v haproxy >/dev/null || need_apt+=(haproxy); fi
if uses_peer caddy; then command -v caddy >/dev/null || need_apt+=(caddy); fi
command -v wrk >/dev/null || need_apt+=(wrk)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v curl >/dev/null || need_apt+=(curl)
command -v ss >/dev/null || need_apt+=(iproute2)
if wants tls; then
    command -v openssl >/dev/null || need_apt+=(openssl)
    command -v h2load >/dev/null || need_apt+=(nghttp2-client)
fi
if [[ ${#need_apt[@]} -gt 0 ]]; then
    [[ $NO_INSTALL != 1 ]] || die "missing ${need_apt[*]} and --no-install given"
    [[ $(id -u) == 0 ]] || die "missing ${need_apt[*]}: install them (apt-get install ${need_apt[*]}) or run as root"
    log "installing ${need_apt[*]} (apt)"
    apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need_apt[@]}" >&2
fi
command -v python3 >/dev/null || die "python3 is needed for bench_helper.py"
if uses_peer hpm || uses_peer express; then
    command -v node >/dev/null || die "node is needed for the hpm/express peers (Node 20 here)"
    if [[ ! -d $HERE/node/node_modules/http-proxy-middleware || ! -d $HERE/node/node_modules/express ]]; then
        [[ $NO_INSTALL != 1 ]] || die "benches/load/node/node_modules missing and --no-install given"
        log "installing node peer deps (npm ci in benches/load/node)"
        (cd "$HERE/node" && npm ci --no-audit --no-fund >&2)
    fi
fi

# ------------------------------------------------------------------ run state
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS="$HERE/results"
RUN_DIR="$RESULTS/run-$STAMP"
mkdir -p "$RUN_DIR/raw" "$RUN_DIR/logs"
WORK=$(mktemp -d /tmp/portero-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers run as an unprivileged user unless told otherwise
DATA="$RUN_DIR/data.tsv"
SKIPPED="$RUN_DIR/skipped.tsv"
NOTES="$RUN_DIR/notes.tsv"
printf 'scenario\tpeer\tvariant\tround\tconns\trps\tp50_ms\tp99_ms\trequests\tnon2xx\tsockerr\tbytes_per_req\tother_cpu_pct\tsteal_pct\tattempts\ttcp_accepts\tserver_cpu_busy_pct\tclient_cpu_busy_pct\n' >"$DATA"
printf 'scenario\tpeer\tvariant\treason\n' >"$SKIPPED"
printf 'note\n' >"$NOTES"
PORTERO_SKIPPED=0

PIDS=()
declare -A PID_NAME=()
declare -A USED_PORTS=()

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL (children collected first)
    local pid=$1 kids i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "${PID_NAME[$pid]:-pid $pid} ignored SIGTERM, killing"; kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true
    for k in $kids; do # e.g. nginx workers, should be gone with their master
        for ((i = 0; i < 20; i++)); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$k" 2>/dev/null || true
    done
    return 0
}

AUTOGROUP_BEFORE=""
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    [[ -z ${CLIENT_PID:-} ]] || stop_pid "$CLIENT_PID"
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n $AUTOGROUP_BEFORE ]]; then
        echo "$AUTOGROUP_BEFORE" >/proc/self/autogroup 2>/dev/null || log "WARNING: could not restore the autogroup nice to $AUTOGROUP_BEFORE"
    fi
    if [[ ${BENCH_KEEP_WORK:-0} == 1 ]]; then log "kept work dir $WORK"; else rm -rf "$WORK"; fi
    [[ $rc == 0 ]] || log "exiting with status $rc (logs: $RUN_DIR/logs)"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

pick_port() { # sets PORT to a free loopback TCP port below the ephemeral range
    local lo p
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
    [[ $lo -gt 12000 ]] || lo=32768
    for _ in $(seq 200); do
        p=$((10000 + RANDOM % (lo - 10000)))
        [[ -z ${USED_PORTS[$p]:-} ]] || continue
        if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then
            USED_PORTS[$p]=1
            PORT=$p
            return 0
        fi
    done
    die "no free port found"
}

render() { # render TEMPLATE OUT key=value...
    local tpl=$1 out=$2 kv
    shift 2
    cp "$HERE/conf/$tpl" "$out"
    for kv in "$@"; do
        local k=${kv%%=*} v=${kv#*=}
        sed -i "s|@$k@|${v//|/\\|}|g" "$out"
    done
    ! grep -q '@[A-Z_]*@' "$out" || die "unfilled placeholder in $out: $(grep -o '@[A-Z_]*@' "$out" | head -1)"
}

# start_server NAME LOGFILE CMD...: runs CMD in the background pinned to SERVER_CPU; sets LAST_PID
start_server() {
    local name=$1 logf=$2
    shift 2
    taskset -c "$SERVER_CPU" "$@" >"$logf" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    PID_NAME[$LAST_PID]=$name
    log "started $name (pid $LAST_PID)"
}

# wait_ready NAME PID URL LOGFILE [REGEX]: 0 when URL answers and REGEX appeared in the log; 1 on
# death/timeout. If the server answers but REGEX has not appeared after 3 s, it is taken as ready and
# READY_NOTE says so (a broken readiness contract is reported, not fatal).
wait_ready() {
    local name=$1 pid=$2 url=$3 logf=$4 regex=${5:-} i
    READY_NOTE=""
    for ((i = 0; i < 150; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "run.sh: $name (pid $pid) exited during startup; last log lines:" >&2
            tail -n 20 "$logf" >&2 || true
            READY_ERR="exited during startup ($(tail -n 1 "$logf" | cut -c1-160))"
            return 1
        fi
        if [[ -z $regex ]] || grep -Eq "$regex" "$logf"; then
            if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
        elif [[ $i -ge 30 ]] && curl -s -o /dev/null --max-time 1 "$url"; then
            READY_NOTE="$name answered on $url but its stderr had no line matching '$regex' after 3 s (readiness contract)"
            log "WARNING: $READY_NOTE"
            return 0
        fi
        sleep 0.1
    done
    echo "run.sh: $name (pid $pid) not ready after 15 s; last log lines:" >&2
    tail -n 20 "$logf" >&2 || true
    if [[ -n $regex ]] && ! grep -Eq "$regex" "$logf"; then
        READY_ERR="no line matching '$regex' on stderr within 15 s"
    else
        READY_ERR="not answering on $url within 15 s"
    fi
    return 1
}

user_line() { if [[ $(id -u) == 0 ]]; then echo "user root root;"; else echo ""; fi; }

# start_peer KIND NAME [extra]: starts one server; sets PEER_PID and PEER_PORT; returns 1 if it did not come up
#   kinds: upstream, nginx-proxy, nginx-proxy-log, haproxy, caddy-proxy, hpm, portero, portero-log,
#   portero-staging, portero-base, nginx-static, nginx-ofc-static, caddy-static, express-static;
#   nginx-tls, portero-tls, portero-base-tls, portero-hyper-tls: also a TLS listener on PEER_TLS_PORT with TLS_CERT/TLS_KEY
start_peer() {
    local kind=$1 name=$2 dir logf url regex=""
    pick_port
    PEER_PORT=$PORT
    PEER_TLS_PORT=""
    if [[ $kind == *-tls ]]; then
        pick_port
        PEER_TLS_PORT=$PORT
    fi
    dir="$WORK/$name"
    mkdir -p "$dir"
    logf="$RUN_DIR/logs/$name.log"
    # Each server gets its own copy of the static files: portero watches its SPA dir, and reads by
    # another server in a shared dir wake its watcher on every request (it cost nginx ~40%).
    local root="/nonexistent"
    if [[ -n ${STATIC_DIR:-} ]]; then
        root="$dir/spa"
        cp -a "$STATIC_DIR" "$root"
    fi
    url="http://127.0.0.1:$PEER_PORT/"
    case "$kind" in
        upstream | nginx-proxy | nginx-proxy-log | nginx-static | nginx-ofc-static | nginx-tls)
            local tpl=upstream-nginx.conf.in extra="" access_log=off
            [[ $kind == nginx-proxy* ]] && tpl=nginx-proxy.conf.in
            [[ $kind == nginx-proxy-log ]] && access_log="$dir/nginx-access.log"
            [[ $kind == nginx-*static ]] && tpl=nginx-static.conf.in
            [[ $kind == nginx-ofc-static ]] && extra="open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;"
            [[ $kind == nginx-tls ]] && tpl=nginx-tls.conf.in
            render "$tpl" "$dir/nginx.conf" "USER_LINE=$(user_line)" "WORK=$dir" "PORT=$PEER_PORT" \
                "UPSTREAM_PORT=${UPSTREAM_PORT:-0}" "ROOT=$root" "EXTRA=$extra" "ACCESS_LOG=$access_log" \
                "TLS_PORT=${PEER_TLS_PORT:-0}" "CERT=${TLS_CERT:-}" "KEY=${TLS_KEY:-}"
            start_server "$name" "$logf" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;'
            ;;
        haproxy)
            render haproxy.cfg.in "$dir/haproxy.cfg" "PORT=$PEER_PORT" "UPSTREAM_PORT=$UPSTREAM_PORT"
            start_server "$name" "$logf" haproxy -db -f "$dir/haproxy.cfg"
            ;;
        caddy-proxy | caddy-static)
            local tpl=Caddyfile-proxy.in
            [[ $kind == caddy-static ]] && tpl=Caddyfile-static.in
            render "$tpl" "$dir/Caddyfile" "PORT=$PEER_PORT" "UPSTREAM_PORT=${UPSTREAM_PORT:-0}" "ROOT=$root"
            start_server "$name" "$logf" env GOMAXPROCS=1 HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config" \
                caddy run --config "$dir/Caddyfile" --adapter caddyfile
            ;;
        hpm | express-static)
            local static_args=()
            [[ -n ${STATIC_DIR:-} ]] && static_args=(--static "$root")
            start_server "$name" "$logf" env NODE_ENV=production node "$HERE/node/hpm.js" --port "$PEER_PORT" \
                --target "http://127.0.0.1:${UPSTREAM_PORT:-1}" "${static_args[@]}"
            ;;
        portero | portero-log | portero-staging | portero-base | portero-hyper | portero-tls | portero-base-tls | portero-hyper-tls)
            # The access log is off except for portero-log (it goes to a file in the run's temp dir).
            # A base binary older than --access-log gets no such flag (it logged access at info,
            # which --log-level warn silences).
            local args=() bin=$PORTERO_BIN
            [[ $kind == portero-staging ]] && args=(-c "$HERE/conf/portero-staging.toml")
            [[ $kind == portero-base* ]] && bin=$PORTERO_BASE_BIN
            [[ $kind == portero-hyper* ]] && args+=(--http1 hyper)
            if [[ $kind == portero-log ]]; then
                args+=(--access-log "$dir/portero-access.log")
            elif "$bin" --help 2>/dev/null | grep -q -- '--access-log'; then
                args+=(--access-log off)
            fi
            # shellcheck disable=SC2206 # PORTERO_ARGS is a word list
            [[ $kind != portero-staging && -n ${PORTERO_ARGS:-} ]] && args+=(${PORTERO_ARGS})
            [[ $kind != *-tls ]] || args+=(--tls-listen "127.0.0.1:$PEER_TLS_PORT" --tls-cert "$TLS_CERT" --tls-key "$TLS_KEY")
            start_server "$name" "$logf" env TOKIO_WORKER_THREADS=1 "$bin" "${args[@]}" --listen "127.0.0.1:$PEER_PORT" \
                --backend "http://127.0.0.1:$UPSTREAM_PORT" --spa "$root" --log-level warn
            regex='listening on http://127\.0\.0\.1:[0-9]+'
            [[ $kind != *-tls ]] || regex='listening on https://127\.0\.0\.1:[0-9]+'
            ;;
        *) die "start_peer: unknown kind $kind" ;;
    esac
    PEER_PID=$LAST_PID
    wait_ready "$name" "$PEER_PID" "$url" "$logf" "$regex"
}

# portero's dev profile (the default) injects this into HTML, before </body>
PORTERO_LR_TAG='<script src="/__portero/livereload.js"></script>'

# check_body NAME URL EXPECTED_FILE [gzip|""] [INJECTED]: curl URL and compare the (decoded) body with
# EXPECTED_FILE; with INJECTED, the body may also be EXPECTED_FILE with that string added (CHECK_NOTE says so)
check_body() {
    local name=$1 url=$2 expected=$3 enc=${4:-} injected=${5:-} hdrs="$WORK/check.hdrs" body="$WORK/check.body" code ce
    CHECK_NOTE=""
    local curl_args=(-sS --max-time 5 -D "$hdrs" -o "$body" -w '%{http_code}')
    [[ $enc == gzip ]] && curl_args+=(-H 'Accept-Encoding: gzip')
    code=$(curl "${curl_args[@]}" "$url") || { CHECK_ERR="curl failed for $url"; return 1; }
    [[ $code == 200 ]] || { CHECK_ERR="HTTP $code for $url"; return 1; }
    ce=$(grep -i '^content-encoding:' "$hdrs" | tr -d '\r' | awk '{print tolower($2)}' || true)
    if [[ $enc == gzip ]]; then
        [[ $ce == gzip ]] || { CHECK_ERR="no 'Content-Encoding: gzip' for $url with Accept-Encoding: gzip (got '${ce:-none}')"; return 1; }
        gzip -dc <"$body" >"$body.d" 2>/dev/null || { CHECK_ERR="invalid gzip body for $url"; return 1; }
        mv "$body.d" "$body"
    else
        [[ -z $ce || $ce == identity ]] || { CHECK_ERR="Content-Encoding '$ce' for $url without Accept-Encoding"; return 1; }
    fi
    if ! cmp -s "$body" "$expected"; then
        if [[ -n $injected ]] && python3 -c 'import sys; b=open(sys.argv[1],"rb").read(); e=open(sys.argv[2],"rb").read(); t=sys.argv[3].encode(); sys.exit(0 if b.count(t)==1 and b.replace(t,b"")==e else 1)' \
            "$body" "$expected" "$injected"; then
            CHECK_NOTE="body is $(basename "$expected") plus the live-reload script tag ($(wc -c <"$body") bytes)"
            return 0
        fi
        CHECK_ERR="body of $url differs from $(basename "$expected") ($(wc -c <"$body") vs $(wc -c <"$expected") bytes)"
        return 1
    fi
    return 0
}

skip_row() { # skip_row SCENARIO PEER VARIANT REASON [expected]: "expected" skips are by design, not failures
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$SKIPPED"
    log "SKIPPED $1/$2/$3: $4"
    [[ $2 != portero* || ${5:-} == expected ]] || PORTERO_SKIPPED=1
}
note() { printf '%s\n' "$*" >>"$NOTES"; log "note: $*"; }

# peer_failed PEER MESSAGE: a peer (not portero) failing is a harness bug -> fatal; portero is skipped
peer_failed() {
    local peer=$1 scen=$2 msg=$3
    if [[ $peer == portero* ]]; then
        skip_row "$scen" "$peer" "*" "$msg"
        return 0
    fi
    die "$peer: $msg"
}

# measure SCENARIO PEER VARIANT ROUND CONNS DURATION URL [client args...]: one bounded load run, appended to
# DATA. The client is MEASURE_CLIENT: wrk (default; URL is a URL), h2load (CONNS connections with H2_STREAMS
# streams each; URL is an https URL) or tls_client (a new connection and TLS handshake per request; URL is
# HOST:PORT). A run during which other processes (not ours) used more than NOISE_PCT % of a CPU is repeated,
# up to RETRIES times and within RETRY_BUDGET seconds in all; the least disturbed attempt is kept.
MEASURE_CLIENT=wrk
measure() {
    local scen=$1 peer=$2 variant=$3 round=$4 conns=$5 dur=$6 url=$7
    shift 7
    local tag=$scen-$peer
    [[ $variant == - ]] || tag+=-$variant
    local base="$RUN_DIR/raw/$tag-r$round-c$conns" attempt best_other=999 best_line="" best_raw=""
    for ((attempt = 0; attempt <= RETRIES; attempt++)); do
        local raw="$base.txt"
        [[ $attempt == 0 ]] || raw="$base.retry$attempt.txt"
        local what="  $scen $peer $variant round $round c$conns ${dur}s"
        [[ $attempt == 0 ]] || what+=" (retry $attempt)"
        log "$what"
        measure_once "$dur" "$raw" "$url" "$conns" "$@"
        if [[ $M_OTHER -lt $best_other ]]; then
            best_other=$M_OTHER
            best_line=$(printf '%s\t%s\t%s\t%s\t%s' "$M_PARSED" "$M_OTHER" "$M_STEAL" $((attempt + 1)) "$M_SYS")
            best_raw=$raw
        fi
        [[ $M_OTHER -gt $NOISE_PCT ]] || break
        if [[ $attempt -lt $RETRIES && $RETRY_SPENT -lt $RETRY_BUDGET ]]; then
            log "  noisy: other processes used ${M_OTHER}% of a CPU during that run; repeating it"
            RETRY_SPENT=$((RETRY_SPENT + dur))
            sleep 1
        else
            break
        fi
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$peer" "$variant" "$round" "$conns" "$best_line" >>"$DATA"
    local non2xx sockerr
    non2xx=$(cut -f5 <<<"$best_line")
    sockerr=$(cut -f6 <<<"$best_line")
    if [[ $non2xx != 0 || $sockerr != 0 ]]; then
        log "WARNING: $peer $variant c$conns: $non2xx non-2xx/3xx, $sockerr socket errors (see $best_raw)"
    fi
}

# measure_once SECONDS RAWFILE URL CONNS CLIENT_ARGS...: sets M_PARSED (parse-wrk line), M_OTHER and M_STEAL
# (CPU used by processes that are not ours, and steal time, in % of one CPU, during the run), and M_SYS
# (TCP connections the kernel accepted meanwhile, machine-wide; busy % of the server and the client CPU)
measure_once() {
    local dur=$1 raw=$2 url=$3 conns=$4 snap0 snap1 b0 o0 s0 t0 b1 o1 s1 t1 per_cpu sys0 sys1 cmd parser=parse-wrk
    shift 4
    case "$MEASURE_CLIENT" in
        wrk) cmd=(wrk -t1 -c"$conns" -d"${dur}s" --latency "$@" "$url") ;;
        h2load) cmd=(h2load -t1 -c"$conns" -m"$H2_STREAMS" -D"$dur" --warm-up-time=1 "$@" "$url"); parser=parse-h2load ;;
        tls_client) cmd=("$TLS_CLIENT_BIN" --addr "$url" --path /api/x --conns "$conns" --duration "$dur" "$@") ;;
        *) die "measure: unknown MEASURE_CLIENT '$MEASURE_CLIENT'" ;;
    esac
    sys0=$(python3 "$HELPER" sys-snap "$SERVER_CPU" "$CLIENT_CPU")
    snap0=$(python3 "$HELPER" cpu-snap $$)
    run_client "$dur" "${cmd[@]}" >"$raw" || die "$MEASURE_CLIENT failed or timed out for $url; output in $raw"
    snap1=$(python3 "$HELPER" cpu-snap $$)
    sys1=$(python3 "$HELPER" sys-snap "$SERVER_CPU" "$CLIENT_CPU")
    M_PARSED=$(python3 "$HELPER" "$parser" "$raw") || die "could not parse $MEASURE_CLIENT output $raw"
    M_SYS=$(python3 "$HELPER" sys-diff "$sys0" "$sys1")
    read -r b0 o0 s0 t0 <<<"$snap0"
    read -r b1 o1 s1 t1 <<<"$snap1"
    per_cpu=$(((t1 - t0) / NPROC))
    [[ $per_cpu -gt 0 ]] || per_cpu=1
    M_OTHER=$((100 * ((b1 - b0) - (o1 - o0)) / per_cpu))
    [[ $M_OTHER -ge 0 ]] || M_OTHER=0
    M_STEAL=$((100 * (s1 - s0) / per_cpu))
}

# run_client SECONDS CMD...: the load generator, pinned to CLIENT_CPU and bounded in time. Run in the
# background and waited for, so that a signal to run.sh interrupts it at once (cleanup stops it).
CLIENT_PID=""
run_client() {
    local dur=$1 rc=0
    shift
    timeout --kill-after=5 $((dur + 30)) taskset -c "$CLIENT_CPU" "$@" </dev/null 2>&1 &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || rc=$?
    CLIENT_PID=""
    return "$rc"
}

warmup() { # warmup URL [RAWFILE [wrk args...]]: RAWFILE keeps wrk's output (default: discarded)
    local url=$1 raw=${2:-/dev/null}
    shift $(($# < 2 ? $# : 2))
    [[ $WARMUP -gt 0 ]] || { : >"$raw"; return 0; }
    run_client "$WARMUP" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$@" "$url" >"$raw" || die "warm-up wrk failed for $url"
}

rotate() { # rotate OFFSET ITEMS...: print ITEMS rotated left by OFFSET
    local off=$1
    shift
    local n=$# i items=("$@")
    for ((i = 0; i < n; i++)); do echo "${items[$(((i + off) % n))]}"; done
}

portero_available() { # sets PORTERO_MISSING reason if unusable
    PORTERO_MISSING=""
    if [[ ! -e $PORTERO_BIN ]]; then
        PORTERO_MISSING="binary not found at $PORTERO_BIN (cargo build --release, or set PORTERO_BIN)"
    elif [[ ! -x $PORTERO_BIN ]]; then
        PORTERO_MISSING="$PORTERO_BIN is not executable"
    fi
    [[ -z $PORTERO_MISSING ]]
}

make_static_dir() {
    STATIC_DIR="$WORK/spa-master"
    python3 "$HELPER" gen-static "$STATIC_DIR"
    chmod -R a+rX "$STATIC_DIR"
}

# ------------------------------------------------------------------ scenario: proxy
scenario_proxy() {
    log "=== scenario proxy: peers ${PROXY_PEERS}; $ROUNDS round(s), c$CONNS ${DURATION}s + c1 ${C1_DURATION}s"
    local upstream_pid peer active=() port
    declare -A port_of=()
    [[ -n ${STATIC_DIR:-} ]] || make_static_dir
    start_peer upstream upstream || die "upstream nginx did not start"
    upstream_pid=$PEER_PID
    UPSTREAM_PORT=$PEER_PORT
    local expected="$WORK/ok.txt"
    printf 'ok' >"$expected"
    check_body upstream "http://127.0.0.1:$UPSTREAM_PORT/api/x" "$expected" || die "upstream: $CHECK_ERR"
    local started=()
    for peer in "${PROXY_PEER_LIST[@]}"; do
        case "$peer" in
            direct) port_of[direct]=$UPSTREAM_PORT; active+=(direct); continue ;;
            nginx) start_peer nginx-proxy nginx-proxy || { peer_failed nginx proxy "did not start"; continue; } ;;
            nginx-log) start_peer nginx-proxy-log nginx-log || { peer_failed nginx-log proxy "did not start"; continue; } ;;
            haproxy) start_peer haproxy haproxy || { peer_failed haproxy proxy "did not start"; continue; } ;;
            caddy) start_peer caddy-proxy caddy-proxy || { peer_failed caddy proxy "did not start"; continue; } ;;
            hpm) start_peer hpm hpm || { peer_failed hpm proxy "did not start"; continue; } ;;
            portero | portero-log)
                if ! portero_available; then skip_row proxy "$peer" "-" "$PORTERO_MISSING"; continue; fi
                local pname=portero-proxy
                [[ $peer == portero ]] || pname=$peer
                if ! start_peer "$peer" "$pname"; then
                    skip_row proxy "$peer" "-" "$READY_ERR (log: results/run-$STAMP/logs/$pname.log)"
                    stop_pid "$PEER_PID"
                    continue
                fi
                [[ -z $READY_NOTE ]] || note "⚠ $READY_NOTE"
                ;;
            portero-base)
                [[ -x $PORTERO_BASE_BIN ]] || die "peer portero-base needs PORTERO_BASE_BIN (an executable portero binary)"
                start_peer portero-base portero-base-proxy || { peer_failed portero-base proxy "did not start"; continue; }
                ;;
            portero-hyper)
                start_peer portero-hyper portero-hyper-proxy || { peer_failed portero-hyper proxy "did not start"; continue; }
                ;;
        esac
        started+=("$PEER_PID")
        if ! check_body "$peer" "http://127.0.0.1:$PEER_PORT/api/x" "$expected"; then
            if [[ $peer == portero || $peer == portero-log ]]; then skip_row proxy "$peer" "-" "sanity check failed: $CHECK_ERR"; stop_pid "$PEER_PID"; continue; fi
            die "$peer: sanity check failed: $CHECK_ERR"
        fi
        port_of[$peer]=$PEER_PORT
        active+=("$peer")
    done
    [[ ${#active[@]} -gt 0 ]] || die "no proxy peer to measure"
    for peer in "${active[@]}"; do warmup "http://127.0.0.1:${port_of[$peer]}/api/x" "$RUN_DIR/raw/warmup-proxy-$peer.txt"; done
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        log "--- proxy round $r/$ROUNDS"
        while read -r peer; do
            port=${port_of[$peer]}
            measure proxy "$peer" - "$r" "$CONNS" "$DURATION" "http://127.0.0.1:$port/api/x"
            measure proxy "$peer" - "$r" 1 "$C1_DURATION" "http://127.0.0.1:$port/api/x"
        done < <(rotate $((r - 1)) "${active[@]}")
    done
    for pid in "${started[@]}"; do stop_pid "$pid"; done
    stop_pid "$upstream_pid"
    unset UPSTREAM_PORT
    # Access logs: lines written (after the server stopped and flushed) against the responses wrk
    # counted (warm-up and retried runs included). Every request also in flight when a wrk run ended
    # (up to CONNS per run) and the sanity check add a line that wrk did not count.
    local logfile counted lines
    for peer in "${active[@]}"; do
        case "$peer" in
            nginx-log) logfile="$WORK/nginx-log/nginx-access.log" ;;
            portero-log) logfile="$WORK/portero-log/portero-access.log" ;;
            *) continue ;;
        esac
        counted=$(cat "$RUN_DIR/raw/warmup-proxy-$peer.txt" "$RUN_DIR/raw/proxy-$peer-r"*.txt |
            awk '/ requests in /{n += $1} END {print n + 0}')
        lines=$(wc -l <"$logfile" 2>/dev/null || echo 0)
        note "access log of $peer: $lines lines ($(du -h "$logfile" 2>/dev/null | cut -f1)) for $counted responses counted by wrk (difference $((lines - counted)): requests in flight when runs ended, the sanity check, or lines lost)"
    done
}

# ------------------------------------------------------------------ scenario: static
scenario_static() {
    log "=== scenario static: peers ${STATIC_PEERS}; $STATIC_ROUNDS round(s), c$CONNS ${STATIC_DURATION}s"
    local peer active=() started=() upstream_pid v r
    declare -A port_of=()
    [[ -n ${STATIC_DIR:-} ]] || make_static_dir
    # portero needs a --backend; give it a live one (not exercised by static paths)
    start_peer upstream upstream-static || die "upstream nginx did not start"
    upstream_pid=$PEER_PID
    UPSTREAM_PORT=$PEER_PORT
    for peer in "${STATIC_PEER_LIST[@]}"; do
        case "$peer" in
            nginx) start_peer nginx-static nginx-static || { peer_failed nginx static "did not start"; continue; } ;;
            nginx-ofc) start_peer nginx-ofc-static nginx-ofc-static || { peer_failed nginx-ofc static "did not start"; continue; } ;;
            caddy) start_peer caddy-static caddy-static || { peer_failed caddy static "did not start"; continue; } ;;
            express) start_peer express-static express-static || { peer_failed express static "did not start"; continue; } ;;
            portero | portero-staging)
                if ! portero_available; then skip_row static "$peer" "*" "$PORTERO_MISSING"; continue; fi
                if ! start_peer "$peer" "$peer-static"; then
                    skip_row static "$peer" "*" "$READY_ERR (log: results/run-$STAMP/logs/$peer-static.log)"
                    stop_pid "$PEER_PID"
                    continue
                fi
                [[ -z $READY_NOTE ]] || note "⚠ $READY_NOTE"
                ;;
        esac
        started+=("$PEER_PID")
        port_of[$peer]=$PEER_PORT
        active+=("$peer")
    done
    # variant -> path, expected file, encoding
    local variants=(index-identity index-gzip js-identity js-gzip)
    declare -A vpath=([index-identity]=/ [index-gzip]=/ [js-identity]=/app.3f9a1c2b.js [js-gzip]=/app.3f9a1c2b.js)
    declare -A vfile=([index-identity]=index.html [index-gzip]=index.html [js-identity]=app.3f9a1c2b.js [js-gzip]=app.3f9a1c2b.js)
    # sanity-check every (peer, variant); a failing portero variant is skipped, a failing peer is fatal
    declare -A ok=()
    for peer in "${active[@]}"; do
        for v in "${variants[@]}"; do
            local enc=""
            [[ $v == *-gzip ]] && enc=gzip
            if [[ $peer == express && $enc == gzip ]]; then
                skip_row static express "$v" "express.static has no precompressed-gzip support" expected
                continue
            fi
            local inject=""
            [[ $peer == portero && $v == index-* ]] && inject=$PORTERO_LR_TAG
            if check_body "$peer" "http://127.0.0.1:${port_of[$peer]}${vpath[$v]}" "$STATIC_DIR/${vfile[$v]}" "$enc" "$inject"; then
                ok[$peer/$v]=1
                [[ -z $CHECK_NOTE ]] || note "$peer $v: $CHECK_NOTE"
            elif [[ $peer == portero && $v == index-gzip && $CHECK_ERR == *"got 'none'"* ]]; then
                skip_row static portero "$v" "serves HTML as identity only: the dev profile injects the live-reload script (see the staging-profile row)" expected
            elif [[ $peer == portero* ]]; then
                skip_row static "$peer" "$v" "sanity check failed: $CHECK_ERR"
            else
                die "$peer: sanity check failed: $CHECK_ERR"
            fi
        done
    done
    for peer in "${active[@]}"; do warmup "http://127.0.0.1:${port_of[$peer]}/app.3f9a1c2b.js"; done
    for ((r = 1; r <= STATIC_ROUNDS; r++)); do
        log "--- static round $r/$STATIC_ROUNDS"
        for v in "${variants[@]}"; do
            local hdr=()
            [[ $v == *-gzip ]] && hdr=(-H 'Accept-Encoding: gzip')
            while read -r peer; do
                [[ -n ${ok[$peer/$v]:-} ]] || continue
                measure static "$peer" "$v" "$r" "$CONNS" "$STATIC_DURATION" \
                    "http://127.0.0.1:${port_of[$peer]}${vpath[$v]}" "${hdr[@]}"
            done < <(rotate $((r - 1)) "${active[@]}")
        done
    done
    for pid in "${started[@]}"; do stop_pid "$pid"; done
    stop_pid "$upstream_pid"
    unset UPSTREAM_PORT
}

# ------------------------------------------------------------------ scenario: tls
make_tls_certs() { # an ECDSA P-256 and an RSA-2048 self-signed certificate for localhost and 127.0.0.1, in WORK
    TLS_DIR="$WORK/certs"
    mkdir -p "$TLS_DIR"
    local alg
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TLS_DIR/ecdsa-key.pem" 2>/dev/null
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$TLS_DIR/rsa-key.pem" 2>/dev/null
    for alg in ecdsa rsa; do
        openssl req -x509 -new -key "$TLS_DIR/$alg-key.pem" -out "$TLS_DIR/$alg.pem" -days 2 -subj /CN=localhost \
            -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' 2>/dev/null || die "openssl could not make the $alg certificate"
    done
    chmod 644 "$TLS_DIR"/*.pem
}

build_tls_client() { # sets TLS_CLIENT_BIN, building benches/tls_client.rs unless given
    if [[ -n $TLS_CLIENT_BIN ]]; then
        [[ -x $TLS_CLIENT_BIN ]] || die "TLS_CLIENT_BIN=$TLS_CLIENT_BIN is not an executable"
        return 0
    fi
    command -v cargo >/dev/null || die "the tls scenario needs cargo to build benches/tls_client.rs (or set TLS_CLIENT_BIN)"
    log "building the TLS client: cargo build --release --bench tls_client (niced; log in logs/tls_client-build.log)"
    TLS_CLIENT_BIN=$(cd "$REPO" && nice -n 19 cargo build --release --bench tls_client --message-format=json \
        2>"$RUN_DIR/logs/tls_client-build.log" | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "tls_client" and m.get("executable"):
        print(m["executable"])') || die "cargo build --bench tls_client failed (see $RUN_DIR/logs/tls_client-build.log)"
    [[ -x $TLS_CLIENT_BIN ]] || die "no tls_client executable after the build (see $RUN_DIR/logs/tls_client-build.log)"
}

# check_tls NAME PORT: HTTPS and HTTP/2 answer `ok`, and a 1-s tls_client run makes only full TLS 1.3 handshakes
check_tls() {
    local name=$1 port=$2 body ver out
    body=$(curl -sS -k --max-time 5 "https://127.0.0.1:$port/api/x") || { CHECK_ERR="curl https failed on $port"; return 1; }
    [[ $body == ok ]] || { CHECK_ERR="HTTPS body '$body' instead of 'ok'"; return 1; }
    ver=$(curl -sS -k --http2 --max-time 5 -o /dev/null -w '%{http_version}' "https://127.0.0.1:$port/api/x") \
        || { CHECK_ERR="curl --http2 failed on $port"; return 1; }
    [[ $ver == 2 ]] || { CHECK_ERR="ALPN gave HTTP/$ver instead of HTTP/2"; return 1; }
    out=$(run_client 1 "$TLS_CLIENT_BIN" --addr "127.0.0.1:$port" --conns 2 --duration 1) || { CHECK_ERR="tls_client failed: $out"; return 1; }
    if ! grep -q 'Some(TLSv1_3)' <<<"$out" || grep -q 'Socket errors\|Non-2xx' <<<"$out" \
        || ! python3 -c 'import re,sys; m=re.search(r"established: (\d+); full TLS handshakes: (\d+)", sys.stdin.read()); sys.exit(0 if m and m[1]==m[2] and int(m[1])>0 else 1)' <<<"$out"; then
        CHECK_ERR="tls_client check failed: $(tr '\n' ' ' <<<"$out")"
        return 1
    fi
    CHECK_NOTE="$name: $(sed -n 's/^ *negotiated (first connection): //p' <<<"$out")"
    return 0
}

scenario_tls() {
    log "=== scenario tls: peers ${TLS_PEERS}; $ROUNDS round(s): HTTPS c$CONNS ${DURATION}s + c1 ${C1_DURATION}s, new handshakes ECDSA and RSA (${HS_CONNS} at once) ${TLS_DURATION}s each, HTTP/2 ${H2_CONNS}×${H2_STREAMS} streams ${TLS_DURATION}s"
    local upstream_pid peer alg active=() started=() r kind
    declare -A tport=()
    [[ -n ${STATIC_DIR:-} ]] || make_static_dir
    make_tls_certs
    start_peer upstream upstream-tls || die "upstream nginx did not start"
    upstream_pid=$PEER_PID
    UPSTREAM_PORT=$PEER_PORT
    for peer in "${TLS_PEER_LIST[@]}"; do
        local ok=1
        if [[ $peer == portero || $peer == portero-hyper ]] && ! portero_available; then skip_row tls "$peer" "*" "$PORTERO_MISSING"; continue; fi
        [[ $peer != portero-base || -x $PORTERO_BASE_BIN ]] || die "tls peer portero-base needs PORTERO_BASE_BIN (an executable portero binary)"
        for alg in ecdsa rsa; do
            kind=$peer-tls
            TLS_CERT="$TLS_DIR/$alg.pem" TLS_KEY="$TLS_DIR/$alg-key.pem"
            if ! start_peer "$kind" "$peer-tls-$alg"; then
                stop_pid "$PEER_PID"
                peer_failed "$peer" tls "$alg: ${READY_ERR:-did not start} (log: results/run-$STAMP/logs/$peer-tls-$alg.log)"
                ok=0
                break
            fi
            started+=("$PEER_PID")
            if ! check_tls "$peer-$alg" "$PEER_TLS_PORT"; then
                peer_failed "$peer" tls "$alg: sanity check failed: $CHECK_ERR"
                ok=0
                break
            fi
            note "tls $CHECK_NOTE"
            tport[$peer/$alg]=$PEER_TLS_PORT
        done
        [[ $ok == 1 ]] && active+=("$peer")
    done
    unset TLS_CERT TLS_KEY
    [[ ${#active[@]} -gt 0 ]] || die "no tls peer to measure"
    for peer in "${active[@]}"; do warmup "https://127.0.0.1:${tport[$peer/ecdsa]}/api/x"; done
    for ((r = 1; r <= ROUNDS; r++)); do
        log "--- tls round $r/$ROUNDS"
        while read -r peer; do
            local url="https://127.0.0.1:${tport[$peer/ecdsa]}/api/x"
            measure tls "$peer" https "$r" "$CONNS" "$DURATION" "$url"
            measure tls "$peer" https "$r" 1 "$C1_DURATION" "$url"
            MEASURE_CLIENT=tls_client measure tls "$peer" handshake-ecdsa "$r" "$HS_CONNS" "$TLS_DURATION" "127.0.0.1:${tport[$peer/ecdsa]}"
            MEASURE_CLIENT=tls_client measure tls "$peer" handshake-rsa "$r" "$HS_CONNS" "$TLS_DURATION" "127.0.0.1:${tport[$peer/rsa]}"
            MEASURE_CLIENT=h2load measure tls "$peer" h2 "$r" "$H2_CONNS" "$TLS_DURATION" "$url"
        done < <(rotate $((r - 1)) "${active[@]}")
    done
    for pid in "${started[@]}"; do stop_pid "$pid"; done
    stop_pid "$upstream_pid"
    unset UPSTREAM_PORT
}

# ------------------------------------------------------------------ metadata
meta() { printf '%s\t%s\n' "$1" "$(tr '\t\n' '  ' <<<"$2" | sed 's/ *$//')" >>"$RUN_DIR/meta.tsv"; }
printf 'key\tvalue\n' >"$RUN_DIR/meta.tsv"
meta command "${ENV_DESC}${COMMAND_LINE}"
meta date "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
meta nproc "$NPROC"
meta cpu "$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
meta kernel "$(uname -r)"
meta server_cpu "$SERVER_CPU"
meta client_cpu "$CLIENT_CPU"
meta conns "$CONNS"
meta noise_pct "$NOISE_PCT"
meta rounds_desc "proxy $ROUNDS × (c$CONNS ${DURATION}s + c1 ${C1_DURATION}s), static $STATIC_ROUNDS × ${STATIC_DURATION}s, warm-up ${WARMUP}s per server, peer order rotated each round"
meta proxy_peers "$PROXY_PEERS"
meta static_peers "$STATIC_PEERS"
meta tls_peers "$TLS_PEERS"
meta tls_desc "$ROUNDS × (HTTPS wrk c$CONNS ${DURATION}s + c1 ${C1_DURATION}s, new TLS 1.3 handshakes ECDSA P-256 and RSA-2048 with tls_client ${HS_CONNS} connections at once ${TLS_DURATION}s each, HTTP/2 h2load -c$H2_CONNS -m$H2_STREAMS ${TLS_DURATION}s), peer order rotated each round"
meta run_dir_rel "benches/load/results/run-$STAMP/"
meta nginx "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
if command -v haproxy >/dev/null; then meta haproxy "$(haproxy -v 2>&1 | head -1 | sed 's/ - https.*//')"; fi
if command -v caddy >/dev/null; then meta caddy "$(caddy version 2>&1 | head -1)"; fi
meta wrk "$({ wrk -v 2>&1 || true; } | head -1 | sed 's/ Copyright.*//')"
if wants tls; then
    meta h2load "$(h2load --version 2>&1 | head -1)"
    meta openssl "$(openssl version)"
fi
if command -v node >/dev/null; then
    meta node "$(node --version)"
    for m in express http-proxy-middleware; do
        f="$HERE/node/node_modules/$m/package.json"
        [[ -f $f ]] && meta "$m" "$(node -p "require('$f').version")"
    done
fi
if [[ -x $PORTERO_BIN ]]; then
    pv=$(timeout 5 "$PORTERO_BIN" --version 2>/dev/null | head -1 || true)
    rev=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    dirty=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
    [[ $dirty != 0 ]] || dirty=""
    meta portero "${pv:-portero} (binary $(realpath --relative-to="$REPO" "$PORTERO_BIN" 2>/dev/null || echo "$PORTERO_BIN"), built $(date -u -r "$PORTERO_BIN" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$PORTERO_BIN" | cut -c1-12), repo $rev${dirty:+, $dirty modified tracked files})"
else
    meta portero "not available ($PORTERO_BIN)"
fi
if [[ -n $PORTERO_BASE_BIN && -x $PORTERO_BASE_BIN ]]; then
    pv=$(timeout 5 "$PORTERO_BASE_BIN" --version 2>/dev/null | head -1 || true)
    meta portero_base "${pv:-portero} (binary $PORTERO_BASE_BIN, built $(date -u -r "$PORTERO_BASE_BIN" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$PORTERO_BASE_BIN" | cut -c1-12))"
fi
nofile=$(ulimit -n)
[[ $nofile == unlimited || $nofile -ge 4096 ]] || note "⚠ open-file limit is $nofile: HAProxy maxconn and wrk connections may be refused"

# ------------------------------------------------------------------ run
log "results: $RUN_DIR"
if wants tls; then build_tls_client; fi # before any autogroup change: the build stays niced
if [[ -n $AUTOGROUP_NICE ]]; then
    [[ -r /proc/self/autogroup ]] || die "--autogroup-nice: no /proc/self/autogroup (kernel without CONFIG_SCHED_AUTOGROUP)"
    AUTOGROUP_BEFORE=$(sed -n 's/.* nice \(-\{0,1\}[0-9]*\)$/\1/p' /proc/self/autogroup)
    [[ -n $AUTOGROUP_BEFORE ]] || die "--autogroup-nice: cannot read /proc/self/autogroup"
    echo "$AUTOGROUP_NICE" >/proc/self/autogroup || { AUTOGROUP_BEFORE=""; die "could not set the autogroup nice to $AUTOGROUP_NICE (negative values need root)"; }
    log "scheduler autogroup nice $AUTOGROUP_BEFORE -> $AUTOGROUP_NICE for this run (sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo '?'))"
    meta autogroup_nice "$AUTOGROUP_NICE (sched_autogroup_enabled=$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo '?'))"
fi
if [[ $WAIT_QUIET -gt 0 ]]; then
    log "waiting up to ${WAIT_QUIET}s for the machine to be idle"
    if busy=$(python3 "$HELPER" wait-quiet "$WAIT_QUIET"); then
        log "machine idle (${busy}% busy)"
    else
        note "⚠ the machine never became idle within ${WAIT_QUIET}s (last ${busy}% busy); started anyway"
    fi
fi
for s in "${SCENARIO_LIST[@]}"; do
    "scenario_$s"
done

python3 "$HELPER" report "$RUN_DIR" >"$RUN_DIR/report.md" || die "report rendering failed"
cp "$RUN_DIR/report.md" "$RESULTS/latest.md"
cat "$RUN_DIR/report.md"
log "report written to benches/load/results/latest.md"
if [[ $PORTERO_SKIPPED == 1 ]]; then
    log "NOTE: portero rows were skipped (see the Notes section)"
    [[ ${BENCH_REQUIRE_PORTERO:-0} != 1 ]] || die "BENCH_REQUIRE_PORTERO=1 and portero rows were skipped"
fi
