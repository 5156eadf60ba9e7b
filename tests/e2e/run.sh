#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup helpers are only reached through the trap
# End-to-end test of portero in front of a real Django (django-tenants on
# PostgreSQL, Channels, Daphne) backend plus a headless-Chromium SPA test.
#
#   tests/e2e/run.sh                 full run (needs the portero binary): pytest
#                                    scenarios, the browser test over http://, the
#                                    HTTPS browser test (minted certificates), and
#                                    a real webpack-dev-server 5 (HMR) behind a
#                                    second portero started with flags only
#   tests/e2e/run.sh --backend-only  setup + direct-to-Daphne smoke check
#   tests/e2e/run.sh --ws-bench      setup + WebSocket echo latency, direct vs
#                                    portero (vs nginx if on PATH); prints a
#                                    markdown table on stdout (tests/e2e/ws_bench.py)
#   tests/e2e/run.sh --browser-repeat N
#                                    full run, but the browser tests N times in a
#                                    row against the same stack (SPA copy restored
#                                    before each); logs in out/browser-run<i>/
#   tests/e2e/run.sh --inspector-only [--browser-repeat N]
#                                    setup + portero (http only) + the browser
#                                    test of its /__portero/ page (N times),
#                                    no pytest
#
# See tests/e2e/README.md for the environment variables.
set -euo pipefail

MODE=full
BROWSER_REPEAT=1
while (( $# )); do
  case "$1" in
    --backend-only) MODE=backend ;;
    --ws-bench) MODE=wsbench ;;
    --inspector-only) MODE=inspector ;;
    --browser-repeat)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --browser-repeat needs a count >= 1" >&2; exit 2; }
      BROWSER_REPEAT=$2; shift ;;
    -h|--help) sed -n '3,24p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if (( BROWSER_REPEAT > 1 )) && [[ $MODE != full && $MODE != inspector ]]; then
  echo "run.sh: --browser-repeat only applies to the full run and --inspector-only" >&2; exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
OUT="${E2E_OUT:-$HERE/out}"
PORTERO_BIN="${PORTERO_BIN:-target/release/portero}"
case "$PORTERO_BIN" in /*) ;; *) PORTERO_BIN="$ROOT/$PORTERO_BIN" ;; esac
BASE_DOMAIN=chalanpro.net
export E2E_PORTERO_WAIT_FOR="${E2E_PORTERO_WAIT_FOR:-10}"
export E2E_ADMIN_USER=admin E2E_ADMIN_PASSWORD=admin-pass-123
APT_GET=(apt-get -o DPkg::Lock::Timeout=600)
T0=$SECONDS

log()  { printf '[e2e %s +%ss] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - T0))" "$*" >&2; }
die()  { printf '\n[e2e] FATAL: %s\n\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup ---
WORK=""
PORTERO_PID=""
NGINX_PID=""
WDS_PID=""
DEV_PORTERO_PID=""
PG_BIN=""
PG_DATA=""

# kill_pid PID NAME: SIGTERM, wait up to 10 s, then SIGKILL.
kill_pid() {
  local pid=$1 name=$2
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [[ -n "$STAGE_PID" ]]; then kill_pid "$STAGE_PID" "stage"; wait "$STAGE_PID" 2>/dev/null; fi
  if [[ -n "$PORTERO_PID" ]]; then kill_pid "$PORTERO_PID" portero; wait "$PORTERO_PID" 2>/dev/null; fi
  if [[ -n "$NGINX_PID" ]]; then kill_pid "$NGINX_PID" nginx; wait "$NGINX_PID" 2>/dev/null; fi
  if [[ -n "$DEV_PORTERO_PID" ]]; then kill_pid "$DEV_PORTERO_PID" "portero (dev server)"; wait "$DEV_PORTERO_PID" 2>/dev/null; fi
  if [[ -n "$WDS_PID" ]]; then kill_pid "$WDS_PID" webpack-dev-server; wait "$WDS_PID" 2>/dev/null; fi
  if [[ -n "$WORK" && -f "$WORK/daphne.pid" ]]; then
    "$PY" "$HERE/e2e_backend.py" stop 2>/dev/null
    [[ -f "$WORK/daphne.pid" ]] && kill_pid "$(cat "$WORK/daphne.pid")" daphne
  fi
  if [[ -n "$PG_DATA" && -f "$PG_DATA/postmaster.pid" ]]; then
    local pgpid; pgpid="$(head -1 "$PG_DATA/postmaster.pid")"
    (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 20 stop >/dev/null 2>&1)
    [[ -n "$pgpid" ]] && kill_pid "$pgpid" postgres
  fi
  if [[ -n "$WORK" ]]; then
    [[ -f "$WORK/pg/postgres.log" ]] && cp "$WORK/pg/postgres.log" "$OUT/postgres.log"
    rm -rf "$WORK"
  fi
  if (( rc != 0 )); then log "FAILED (exit $rc) after $((SECONDS - T0)) s; logs in $OUT"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_stage LOGFILE TIMEOUT_S CMD...: run CMD in the background (so that a
# signal to run.sh is handled at once, and cleanup can kill it), tee its output.
STAGE_PID=""
run_stage() {
  local logf=$1 secs=$2 rc=0
  shift 2
  timeout "$secs" "$@" > >(tee "$logf") 2>&1 &
  STAGE_PID=$!
  wait "$STAGE_PID" || rc=$?
  STAGE_PID=""
  (( rc == 124 )) && log "timed out after $secs s: $*"
  return "$rc"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# ---------------------------------------------------------- prerequisites ---
ensure_system_packages() {
  local missing=()
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
  if [[ $MODE == full || $MODE == inspector ]]; then
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    [[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
    command -v certutil >/dev/null || missing+=(libnss3-tools)   # NSS db for the HTTPS browser test
  fi
  command -v runuser >/dev/null || missing+=(util-linux)
  if (( ${#missing[@]} )); then
    log "installing Debian packages: ${missing[*]}"
    [[ $(id -u) == 0 ]] || die "need root to apt-get install ${missing[*]}"
    timeout 900 "${APT_GET[@]}" update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive timeout 1200 "${APT_GET[@]}" install -y -qq --no-install-recommends "${missing[@]}" \
      || die "apt-get install ${missing[*]} failed"
  fi
  PG_BIN="$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  [[ -x "$PG_BIN/initdb" ]] || die "no initdb under /usr/lib/postgresql/*/bin"
  id postgres >/dev/null 2>&1 || die "system user 'postgres' missing (postgresql package broken?)"
}

ensure_venv() {
  local want have=""
  want="$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)"
  [[ -f "$VENV/.requirements.sha256" ]] && have="$(cat "$VENV/.requirements.sha256")"
  if [[ ! -x "$PY" || "$want" != "$have" ]]; then
    log "creating venv $VENV and installing requirements.txt"
    [[ -x "$PY" ]] || python3 -m venv "$VENV" || die "python3 -m venv failed"
    timeout 900 "$PY" -m pip install -q --disable-pip-version-check -r "$HERE/requirements.txt" \
      || die "pip install -r requirements.txt failed"
    echo "$want" >"$VENV/.requirements.sha256"
  fi
}

# npm_ci DIR PROBE WHAT: npm ci in tests/e2e/DIR unless node_modules/PROBE
# is there and the lock file has not changed since the last npm ci.
npm_ci() {
  local dir="$HERE/$1" probe=$2 what=$3 want have=""
  want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  [[ -f "$dir/node_modules/.lock.sha256" ]] && have="$(cat "$dir/node_modules/.lock.sha256")"
  if [[ ! -d "$dir/node_modules/$probe" || "$want" != "$have" ]]; then
    log "npm ci in tests/e2e/$1 ($what)"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 600 npm ci --no-audit --no-fund --loglevel=error) \
      || die "npm ci in tests/e2e/$1 failed"
    echo "$want" >"$dir/node_modules/.lock.sha256"
  fi
}

ensure_node_modules() {
  npm_ci browser playwright-core "playwright-core, no browser download"
  npm_ci devserver webpack-dev-server "webpack 5, webpack-cli, webpack-dev-server 5"
}

# ------------------------------------------------------------- PostgreSQL ---
start_postgres() {
  local pg="$WORK/pg"
  PG_DATA="$pg/data"
  export E2E_PG_HOST=127.0.0.1 E2E_PG_PORT E2E_PG_DB=portero_e2e E2E_PG_USER=postgres
  E2E_PG_PORT="$(free_port)"
  mkdir -p "$pg" && chown postgres:postgres "$pg" && chmod 700 "$pg"
  log "initdb + start PostgreSQL ($PG_BIN) on 127.0.0.1:$E2E_PG_PORT"
  (cd / && timeout 120 runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --no-locale) \
    >"$OUT/initdb.log" 2>&1 || die "initdb failed; see $OUT/initdb.log"
  (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$pg/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $E2E_PG_PORT -k $pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start) \
    >"$OUT/pg_ctl.log" 2>&1 || { cp "$pg/postgres.log" "$OUT/" 2>/dev/null; die "PostgreSQL did not start; see $OUT/postgres.log"; }
  timeout 30 "$PG_BIN/createdb" -h 127.0.0.1 -p "$E2E_PG_PORT" -U postgres "$E2E_PG_DB" || die "createdb failed"
}

# ----------------------------------------------------------------- Django ---
setup_django() {
  export DJANGO_SETTINGS_MODULE=project.settings
  export E2E_STATIC_ROOT="$WORK/static"
  local manage=(timeout 300 "$PY" "$HERE/backend/manage.py")
  log "migrate_schemas --shared"
  (cd "$HERE/backend" && "${manage[@]}" migrate_schemas --shared --noinput) >"$OUT/django-setup.log" 2>&1 \
    || die "migrate_schemas --shared failed; see $OUT/django-setup.log"
  log "creating tenants acme, globex (+ superusers) and collectstatic"
  (cd "$HERE/backend" && "${manage[@]}" e2e_setup --username "$E2E_ADMIN_USER" --password "$E2E_ADMIN_PASSWORD" \
      && "${manage[@]}" collectstatic --noinput) >>"$OUT/django-setup.log" 2>&1 \
    || die "tenant setup / collectstatic failed; see $OUT/django-setup.log"
}

start_daphne() {
  export E2E_DAPHNE_PORT E2E_DAPHNE_PIDFILE="$WORK/daphne.pid" E2E_DAPHNE_LOG="$OUT/daphne.log"
  export E2E_DAPHNE_ACCESS_LOG="$OUT/daphne-access.log" E2E_BACKEND_DIR="$HERE/backend" E2E_PYTHON="$PY"
  export E2E_REQUEST_LOG="$OUT/backend-requests.jsonl"
  E2E_DAPHNE_PORT="$(free_port)"
  export E2E_BACKEND_URL="http://127.0.0.1:$E2E_DAPHNE_PORT"
  log "starting Daphne on $E2E_BACKEND_URL"
  "$PY" "$HERE/e2e_backend.py" start >/dev/null || die "Daphne did not come up; see $OUT/daphne.log"
}

# ---------------------------------------------------------------- portero ---
start_portero() {
  export E2E_SPA_DIR="$WORK/spa"
  export E2E_PORTERO_STDERR="$OUT/portero.stderr.log"
  cp -r "$HERE/spa" "$E2E_SPA_DIR"
  local cmd=("$PORTERO_BIN" --listen 127.0.0.1:0 --backend "$E2E_BACKEND_URL" --spa "$E2E_SPA_DIR"
             --base-domain "$BASE_DOMAIN" --log-level info)
  local cwd="$WORK/portero-cwd" schemes=(http)
  # cwd: an empty dir, so no stray ./portero.toml is picked up.
  mkdir -p "$cwd"
  if [[ $MODE == full || $MODE == inspector ]]; then
    # The embedded default (config/portero.toml) with body capture on, for
    # the /__portero/ page test (request bodies, replay): the same config
    # plus one key, given with --config.
    local conf="$WORK/portero.toml"
    awk '{ print } /^\[admin\][[:space:]]*$/ { print "inspector_bodies = \"4KiB\""; n++ } END { exit n != 1 }' \
      "$ROOT/config/portero.toml" >"$conf" || die "config/portero.toml has no single [admin] table to add inspector_bodies to"
    cmd+=(--config "$conf")
  fi
  if [[ $MODE == full ]]; then
    # HTTPS as the README has a developer set it up: `portero cert` (no tenant
    # named) in the folder portero runs in, then --tls-listen alone, so every
    # tenant's certificate is minted at its first handshake by certs/dev-ca.pem.
    (cd "$cwd" && "$PORTERO_BIN" cert --dir "$cwd/certs") </dev/null >"$OUT/portero-cert.log" 2>&1 \
      || { cat "$OUT/portero-cert.log" >&2; die "portero cert failed; see $OUT/portero-cert.log"; }
    export E2E_DEV_CA="$cwd/certs/dev-ca.pem"
    cmd+=(--tls-listen 127.0.0.1:0)
    schemes+=(https)
  fi
  # shellcheck disable=SC2206
  [[ -n "${PORTERO_EXTRA_ARGS:-}" ]] && cmd+=($PORTERO_EXTRA_ARGS)
  log "starting portero: ${cmd[*]}"
  export E2E_PORTERO_BIN="$PORTERO_BIN" E2E_PORTERO_CWD="$cwd"
  (cd "$cwd" && exec "${cmd[@]}") </dev/null >"$OUT/portero.stdout.log" 2>"$E2E_PORTERO_STDERR" &
  PORTERO_PID=$!
  export E2E_PORTERO_PID=$PORTERO_PID
  local scheme addr
  for scheme in "${schemes[@]}"; do
    addr=""
    for _ in $(seq 200); do   # 20 s
      addr="$(sed 's/\x1b\[[0-9;]*m//g' "$E2E_PORTERO_STDERR" \
              | grep -oE "listening on $scheme://127\\.0\\.0\\.1:[0-9]+" | head -1 | sed "s#.*$scheme://##")" || true
      [[ -n "$addr" ]] && break
      if ! kill -0 "$PORTERO_PID" 2>/dev/null; then
        wait "$PORTERO_PID"; local rc=$?; PORTERO_PID=""
        cat "$E2E_PORTERO_STDERR" >&2
        die "portero exited (code $rc) before logging 'listening on $scheme://127.0.0.1:PORT'"
      fi
      sleep 0.1
    done
    [[ -n "$addr" ]] || { cat "$E2E_PORTERO_STDERR" >&2; die "portero did not log 'listening on $scheme://127.0.0.1:PORT' within 20 s"; }
    if [[ $scheme == http ]]; then export E2E_PORTERO_PORT="${addr##*:}"; else export E2E_PORTERO_TLS_PORT="${addr##*:}"; fi
    log "portero pid $PORTERO_PID listening on $scheme://$addr"
  done
}

# ------------------------------------------------- dev server + portero ---
# A real webpack-dev-server 5 (tests/e2e/devserver) serving a copy of its app
# on a free 127.0.0.1 port, and a second portero in front of it and Daphne,
# started with flags only (no config file, an empty cwd): its default routes
# send exactly /ws to the dev server and /ws/... to the backend. Exports
# E2E_DEVSERVER_PORT, E2E_DEVSERVER_APP, E2E_DEVSERVER_REQUEST_LOG and
# E2E_DEVSERVER_PORTERO_PORT.
start_devserver() {
  local dir="$HERE/devserver" cwd="$WORK/portero-devserver-cwd" addr=""
  export E2E_DEVSERVER_APP="$WORK/devserver-app" E2E_DEVSERVER_PORT
  export E2E_DEVSERVER_REQUEST_LOG="$OUT/devserver-requests.jsonl"
  E2E_DEVSERVER_PORT="$(free_port)"
  cp -r "$dir/app" "$E2E_DEVSERVER_APP"
  log "starting webpack-dev-server on 127.0.0.1:$E2E_DEVSERVER_PORT (app copy $E2E_DEVSERVER_APP)"
  (cd "$dir" && exec node node_modules/webpack-cli/bin/cli.js serve --config webpack.config.cjs) \
    </dev/null >"$OUT/devserver.log" 2>&1 &
  WDS_PID=$!
  # The dev server answers only once its first build is done.
  local t=$SECONDS ready=0
  while (( SECONDS - t < 60 )); do
    kill -0 "$WDS_PID" 2>/dev/null || { wait "$WDS_PID"; local rc=$?; WDS_PID=""; log "webpack-dev-server exited (code $rc) at startup"; return 1; }
    if "$PY" -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1], timeout=2).read()' \
        "http://127.0.0.1:$E2E_DEVSERVER_PORT/main.js" 2>/dev/null; then ready=1; break; fi
    sleep 0.2
  done
  (( ready )) || { log "webpack-dev-server did not serve /main.js within 60 s"; return 1; }
  log "webpack-dev-server pid $WDS_PID serving after $((SECONDS - t)) s"
  mkdir -p "$cwd"
  local cmd=("$PORTERO_BIN" --listen 127.0.0.1:0 --spa "http://127.0.0.1:$E2E_DEVSERVER_PORT"
             --backend "$E2E_BACKEND_URL" --base-domain "$BASE_DOMAIN")
  log "starting portero (flags only): ${cmd[*]}"
  (cd "$cwd" && exec "${cmd[@]}") </dev/null >"$OUT/portero-devserver.stdout.log" 2>"$OUT/portero-devserver.stderr.log" &
  DEV_PORTERO_PID=$!
  for _ in $(seq 200); do   # 20 s
    addr="$(sed 's/\x1b\[[0-9;]*m//g' "$OUT/portero-devserver.stderr.log" \
            | grep -oE 'listening on http://127\.0\.0\.1:[0-9]+' | head -1 | sed 's#.*http://##')" || true
    [[ -n "$addr" ]] && break
    kill -0 "$DEV_PORTERO_PID" 2>/dev/null || { log "portero (dev server) exited at startup"; DEV_PORTERO_PID=""; return 1; }
    sleep 0.1
  done
  [[ -n "$addr" ]] || { log "portero (dev server) did not log 'listening on http://127.0.0.1:PORT' within 20 s"; return 1; }
  export E2E_DEVSERVER_PORTERO_PORT="${addr##*:}"
  log "portero (dev server) pid $DEV_PORTERO_PID listening on http://$addr"
}

# ------------------------------------------------------------------ nginx ---
# Optional peer for --ws-bench: nginx (one worker) as a WebSocket proxy to
# Daphne on a free loopback port. Exports E2E_NGINX_PORT, or E2E_NGINX_NOTE
# when nginx is not on PATH.
start_nginx() {
  local dir="$WORK/nginx" port
  if ! command -v nginx >/dev/null; then
    export E2E_NGINX_NOTE="not on PATH; row skipped"
    log "nginx not on PATH: the nginx row is skipped"
    return 0
  fi
  port="$(free_port)"
  mkdir -p "$dir/tmp"
  # $host is the request's Host without a port; the client sends the tenant's
  # real host (acme.chalanpro.net), as direct connections do.
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://127.0.0.1:$E2E_DAPHNE_PORT;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host \$host;
      proxy_read_timeout 300s;
    }
  }
}
EOF
  log "starting nginx ($(command -v nginx), 1 worker) on 127.0.0.1:$port -> Daphne"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$OUT/nginx-error.log" </dev/null >"$OUT/nginx.stdout.log" 2>&1 &
  NGINX_PID=$!
  for _ in $(seq 100); do   # 10 s
    if ! kill -0 "$NGINX_PID" 2>/dev/null; then
      wait "$NGINX_PID"; local rc=$?; NGINX_PID=""
      cat "$OUT/nginx.stdout.log" >&2
      die "nginx exited (code $rc) at startup; see $OUT/nginx-error.log"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      export E2E_NGINX_PORT=$port
      log "nginx pid $NGINX_PID listening on 127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  die "nginx did not listen on 127.0.0.1:$port within 10 s; see $OUT/nginx-error.log"
}

# Stop portero with SIGTERM; it must exit 0 within 15 s.
stop_portero_checked() {
  local rc
  kill -TERM "$PORTERO_PID"
  for _ in $(seq 150); do kill -0 "$PORTERO_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$PORTERO_PID" 2>/dev/null; then
    log "portero still running 15 s after SIGTERM"
    kill -KILL "$PORTERO_PID"; wait "$PORTERO_PID" 2>/dev/null; PORTERO_PID=""
    return 1
  fi
  wait "$PORTERO_PID" && rc=0 || rc=$?
  PORTERO_PID=""
  log "portero exited with code $rc after SIGTERM"
  [[ $rc == 0 ]]
}

# ------------------------------------------------------------------- main ---
if [[ -z "${E2E_OUT:-}" ]]; then rm -rf "$OUT"; fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
# A caller-chosen E2E_OUT is not emptied: remove only what this script writes.
rm -f "$OUT"/{initdb,pg_ctl,postgres,django-setup,daphne,daphne-access,portero.stdout,portero.stderr}.log \
      "$OUT"/{pytest-backend,pytest-scenarios,browser,browser-console}.log "$OUT"/backend-requests.jsonl \
      "$OUT"/{backend,scenarios}-junit.xml "$OUT"/browser-final.png \
      "$OUT"/{portero-cert,browser-https,browser-https-console}.log "$OUT"/browser-https-*.png \
      "$OUT"/{ws-bench,nginx.stdout,nginx-error}.log "$OUT"/ws-bench.md \
      "$OUT"/{devserver,devserver-browser,devserver-console,portero-devserver.stdout,portero-devserver.stderr}.log \
      "$OUT"/devserver-final.png "$OUT"/devserver-requests.jsonl \
      "$OUT"/{inspector,inspector-console}.log "$OUT"/inspector{,-detail}.png
rm -rf "$OUT"/browser-run[0-9]*
export E2E_OUT="$OUT"

if [[ $MODE != backend && ! -x "$PORTERO_BIN" ]]; then
  die "portero binary not found at $PORTERO_BIN (build it: cargo build --release, or set PORTERO_BIN; use --backend-only to test only the Django side)"
fi

ensure_system_packages
ensure_venv
[[ $MODE == full || $MODE == inspector ]] && ensure_node_modules

WORK="$(mktemp -d /tmp/portero-e2e.XXXXXX)"
chmod 755 "$WORK"
start_postgres
setup_django
start_daphne

declare -A RESULT=()
PYTEST=("$PY" -m pytest -c "$HERE/pytest.ini" --rootdir "$HERE" -v -rA)
cd "$HERE"

if [[ $MODE == backend ]]; then
  log "running direct-to-backend smoke checks (no portero)"
  rc=0
  run_stage "$OUT/pytest-backend.log" 600 "${PYTEST[@]}" --junitxml="$OUT/backend-junit.xml" test_backend_direct.py || rc=$?
  [[ $rc == 0 ]] && RESULT[backend_smoke]=PASS || RESULT[backend_smoke]="FAIL(pytest exit $rc)"
elif [[ $MODE == wsbench ]]; then
  start_portero
  start_nginx
  log "running the WebSocket echo benchmark (tests/e2e/ws_bench.py)"
  rc=0
  # Progress goes to stderr (and ws-bench.log); only the table goes to stdout.
  run_stage "$OUT/ws-bench.log" 180 "$PY" "$HERE/ws_bench.py" --table "$OUT/ws-bench.md" >&2 || rc=$?
  if [[ $rc == 0 && -s "$OUT/ws-bench.md" ]]; then
    RESULT[ws_bench]=PASS
    echo; cat "$OUT/ws-bench.md"
  else
    RESULT[ws_bench]="FAIL(exit $rc)"
  fi
elif [[ $MODE == inspector ]]; then
  start_portero
  ifailed=0 irc=0
  for i in $(seq "$BROWSER_REPEAT"); do
    dir="$OUT" round=""
    if (( BROWSER_REPEAT > 1 )); then dir="$OUT/browser-run$i" round=", run $i of $BROWSER_REPEAT"; mkdir -p "$dir"; fi
    log "running the /__portero/ page test$round (inspector_test.mjs) against portero on 127.0.0.1:$E2E_PORTERO_PORT"
    rc=0
    run_stage "$dir/inspector.log" 150 env E2E_OUT="$dir" node "$HERE/browser/inspector_test.mjs" || rc=$?
    [[ $rc == 0 ]] || { ifailed=$((ifailed + 1)) irc=$rc; log "/__portero/ page test$round failed (exit $rc)"; }
  done
  if (( BROWSER_REPEAT == 1 )); then
    (( ifailed == 0 )) && RESULT[inspector]=PASS || RESULT[inspector]="FAIL(exit $irc)"
  else
    (( ifailed == 0 )) && RESULT[inspector]=PASS || RESULT[inspector]="FAIL($ifailed of $BROWSER_REPEAT runs)"
  fi
  if stop_portero_checked; then RESULT[sigterm_exit0]=PASS; else RESULT[sigterm_exit0]=FAIL; fi
else
  start_portero
  log "running pytest scenarios against portero on 127.0.0.1:$E2E_PORTERO_PORT"
  rc=0
  run_stage "$OUT/pytest-scenarios.log" 900 "${PYTEST[@]}" --junitxml="$OUT/scenarios-junit.xml" test_scenarios.py || rc=$?
  [[ $rc == 0 ]] && RESULT[scenarios]=PASS || RESULT[scenarios]="FAIL(pytest exit $rc)"

  # The last scenario stops the backend for good and restarts it on teardown;
  # make sure it is up for the browser test whatever happened.
  if ! "$PY" "$HERE/e2e_backend.py" status | grep -q 'answers=True'; then
    log "backend not answering after pytest; restarting Daphne"
    "$PY" "$HERE/e2e_backend.py" stop || true
    "$PY" "$HERE/e2e_backend.py" start >/dev/null || die "could not restart Daphne"
  fi

  # Each round: the HTTPS test (it leaves the SPA copy as it is), then the
  # browser test over http:// (it edits the copy: live reload), then the
  # test of portero's /__portero/ page.
  bfailed=0 hfailed=0 brc=0 hrc=0 ifailed=0 irc=0
  for i in $(seq "$BROWSER_REPEAT"); do
    dir="$OUT" round=""
    if (( BROWSER_REPEAT > 1 )); then
      dir="$OUT/browser-run$i" round=", run $i of $BROWSER_REPEAT"
      mkdir -p "$dir"
      if (( i > 1 )); then
        # The test edits the served SPA copy: put the fixture back, then give
        # portero's watcher (50 ms quiet, 500 ms max batch) time to report
        # it, so no stale live-reload message reaches the next run's page.
        cp -r "$HERE/spa/." "$E2E_SPA_DIR/"
        sleep 1.5
      fi
    fi
    log "running HTTPS browser test$round (Chromium trusting only $E2E_DEV_CA, https://127.0.0.1:$E2E_PORTERO_TLS_PORT)"
    rc=0
    run_stage "$dir/browser-https.log" 150 env E2E_OUT="$dir" node "$HERE/browser/https_test.mjs" || rc=$?
    [[ $rc == 0 ]] || { hfailed=$((hfailed + 1)) hrc=$rc; log "HTTPS browser test$round failed (exit $rc)"; }
    log "running browser test$round (playwright-core + /usr/bin/chromium)"
    rc=0
    run_stage "$dir/browser.log" 240 env E2E_OUT="$dir" node "$HERE/browser/browser_test.mjs" || rc=$?
    [[ $rc == 0 ]] || { bfailed=$((bfailed + 1)) brc=$rc; log "browser test$round failed (exit $rc)"; }
    log "running the /__portero/ page test$round (inspector_test.mjs)"
    rc=0
    run_stage "$dir/inspector.log" 150 env E2E_OUT="$dir" node "$HERE/browser/inspector_test.mjs" || rc=$?
    [[ $rc == 0 ]] || { ifailed=$((ifailed + 1)) irc=$rc; log "/__portero/ page test$round failed (exit $rc)"; }
  done
  if (( BROWSER_REPEAT == 1 )); then
    (( bfailed == 0 )) && RESULT[browser]=PASS || RESULT[browser]="FAIL(exit $brc)"
    (( hfailed == 0 )) && RESULT[browser_https]=PASS || RESULT[browser_https]="FAIL(exit $hrc)"
    (( ifailed == 0 )) && RESULT[inspector]=PASS || RESULT[inspector]="FAIL(exit $irc)"
  else
    (( bfailed == 0 )) && RESULT[browser]=PASS || RESULT[browser]="FAIL($bfailed of $BROWSER_REPEAT runs)"
    (( hfailed == 0 )) && RESULT[browser_https]=PASS || RESULT[browser_https]="FAIL($hfailed of $BROWSER_REPEAT runs)"
    (( ifailed == 0 )) && RESULT[inspector]=PASS || RESULT[inspector]="FAIL($ifailed of $BROWSER_REPEAT runs)"
    log "browser test: $((BROWSER_REPEAT - bfailed)) of $BROWSER_REPEAT runs passed;" \
        "HTTPS browser test: $((BROWSER_REPEAT - hfailed)) of $BROWSER_REPEAT;" \
        "/__portero/ page test: $((BROWSER_REPEAT - ifailed)) of $BROWSER_REPEAT"
  fi

  # The dev server test: its own dev server and portero (flags only), once.
  rc=0
  if start_devserver; then
    log "running dev server browser test (webpack-dev-server HMR through portero on 127.0.0.1:$E2E_DEVSERVER_PORTERO_PORT)"
    run_stage "$OUT/devserver-browser.log" 120 node "$HERE/browser/devserver_test.mjs" || rc=$?
  else
    rc=$?; log "dev server setup failed (exit $rc); see $OUT/devserver.log, $OUT/portero-devserver.stderr.log"
  fi
  [[ $rc == 0 ]] && RESULT[devserver]=PASS || RESULT[devserver]="FAIL(exit $rc)"
  if [[ -n "$DEV_PORTERO_PID" ]]; then kill_pid "$DEV_PORTERO_PID" "portero (dev server)"; wait "$DEV_PORTERO_PID" 2>/dev/null; DEV_PORTERO_PID=""; fi
  if [[ -n "$WDS_PID" ]]; then kill_pid "$WDS_PID" webpack-dev-server; wait "$WDS_PID" 2>/dev/null; WDS_PID=""; fi

  if kill -0 "$PORTERO_PID" 2>/dev/null; then
    if stop_portero_checked; then RESULT[sigterm_exit0]=PASS; else RESULT[sigterm_exit0]=FAIL; fi
  else
    PORTERO_PID=""
    RESULT[sigterm_exit0]="FAIL(portero died during the run)"
  fi
fi

echo
log "summary (outputs in $OUT):"
failed=0
for k in "${!RESULT[@]}"; do
  printf '  %-16s %s\n' "$k" "${RESULT[$k]}" >&2
  [[ ${RESULT[$k]} == PASS ]] || failed=1
done
log "total time $((SECONDS - T0)) s"
exit $failed
