#!/usr/bin/env bash
# CPU time per proxied request (user and system, from /proc/PID/stat), which
# other load on the machine disturbs much less than requests/s: each proxy
# pinned to CPU 0 with the upstream nginx, wrk -t1 on CPU 1, as run.sh does.
#
# Usage: benches/load/cpu_per_request.sh ROUNDS SECONDS CONNS PEER...
#   PEER: nginx | NAME=BINARY[:ENV=VALUE] (portero; PORTERO_ARGS added to its command line)
# Prints one line per peer and round, then medians: µs on CPU per request (schedstat, ns
# resolution), of which µs user and µs system (utime/stime, 10 ms ticks), and req/s.
set -euo pipefail
ROUNDS=${1:?rounds}; SECS=${2:?seconds}; CONNS=${3:?conns}; shift 3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/portero-cpu.XXXXXX)
TCK=$(getconf CLK_TCK)
user_line() { [[ $(id -u) == 0 ]] && echo 'user root root;' || true; }
UP=$((20000 + RANDOM % 10000))
sed -e "s|@USER_LINE@|$(user_line)|" -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$UP|" "$HERE/conf/upstream-nginx.conf.in" >"$WORK/up.conf"
taskset -c 0 nginx -p "$WORK" -c "$WORK/up.conf" -e "$WORK/up-error.log" -g 'daemon off;' &
PIDS=($!)
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/site/spa" && echo '<!doctype html><title>x</title>' >"$WORK/site/spa/index.html"
declare -A PORT PID
port=$((UP + 1))
for peer in "$@"; do
    name=${peer%%=*}
    PORT[$name]=$port
    if [[ $peer == nginx ]]; then
        mkdir -p "$WORK/np"
        sed -e "s|@USER_LINE@|$(user_line)|" -e "s|@WORK@|$WORK/np|g" -e "s|@PORT@|$port|" -e "s|@UPSTREAM_PORT@|$UP|" -e "s|@ACCESS_LOG@|off|" \
            "$HERE/conf/nginx-proxy.conf.in" >"$WORK/np.conf"
        taskset -c 0 nginx -p "$WORK/np" -c "$WORK/np.conf" -e "$WORK/np/error.log" -g 'daemon off; master_process off;' &
    else
        spec=${peer#*=}; bin=${spec%%:*}; envv=""
        [[ $spec == *:* ]] && envv=${spec#*:}
        # shellcheck disable=SC2086
        env TOKIO_WORKER_THREADS=1 $envv taskset -c 0 "$bin" --listen "127.0.0.1:$port" --backend "http://127.0.0.1:$UP" \
            --spa "$WORK/site/spa" --log-level warn ${PORTERO_ARGS:-} >"$WORK/$name.log" 2>&1 &
    fi
    PID[$name]=$!
    PIDS+=($!)
    port=$((port + 1))
done
for name in "${!PORT[@]}"; do
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:${PORT[$name]}/api/x" && break; sleep 0.1; done
    taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:${PORT[$name]}/api/x" >/dev/null
done
# utime and stime of the process (ticks), time on CPU of all its threads (ns)
cpu() { echo "$(awk '{print $14, $15}' "/proc/$1/stat") $(cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {print s}')"; }
OUT="$WORK/out.tsv"
names=()
for peer in "$@"; do names+=("${peer%%=*}"); done
for ((r = 0; r < ROUNDS; r++)); do
    n=${#names[@]}
    for ((i = 0; i < n; i++)); do
        name=${names[$(((i + r) % n))]}
        read -r u0 s0 c0 < <(cpu "${PID[$name]}")
        res=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:${PORT[$name]}/api/x")
        read -r u1 s1 c1 < <(cpu "${PID[$name]}")
        reqs=$(awk '/requests in/ {print $1}' <<<"$res")
        rps=$(awk '/Requests\/sec/ {print $2}' <<<"$res")
        awk -v n="$name" -v r="$r" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v c=$((c1 - c0)) -v q="$reqs" -v t="$TCK" -v rps="$rps" \
            'BEGIN { printf "%s\t%d\t%.2f\t%.2f\t%.0f\t%.2f\n", n, r, u / t / q * 1e6, s / t / q * 1e6, rps, c / q / 1000 }' | tee -a "$OUT"
    done
done
echo "median per peer: name, µs on CPU/req, µs user/req, µs system/req, req/s"
python3 - "$OUT" "${names[@]}" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]) if l.strip()]
for name in sys.argv[2:]:
    mine = [r for r in rows if r[0] == name and r[4].strip() != "0"]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"{name}\t{med(5):.2f}\t{med(2):.2f}\t{med(3):.2f}\t{med(4):.0f}")
PY
