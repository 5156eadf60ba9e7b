#!/usr/bin/env bash
# Validates what deploy/ ships, offline once set up:
#
#   1. deploy/portero.toml passes `portero check`, and k8s/configmap.yaml
#      carries exactly that text;
#   2. the Deployment's terminationGracePeriodSeconds is longer than
#      shutdown_delay + shutdown_timeout of that config;
#   3. every manifest in k8s/ against the Kubernetes JSON schemas
#      (kubernetes-validate --strict, schemas bundled in the package, for
#      Kubernetes $K8S_VERSION), in deploy/.venv (created on first run:
#      the only step that needs the network);
#   4. portero.service with `systemd-analyze verify` (skipped, and said so,
#      when systemd-analyze is missing);
#   5. with --image: `podman build` of the Dockerfile (or docker, with
#      CONTAINER=docker), then `run` until the health check passes, and
#      /__portero/health and /__portero/ready answer 200 through the port.
#      With --image-prebuilt: the same, but the build stage is replaced by
#      $PORTERO_BIN (for machines that cannot pull rust:1-bookworm or
#      reach crates.io; the final stage is built exactly as written).
#
#   deploy/check.sh [--image | --image-prebuilt]
#                     PORTERO_BIN: the binary for step 1 (default
#                     target/release/portero, else target/debug/portero)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
IMAGE=0
PREBUILT=0
case "${1:-}" in
  --image) IMAGE=1 ;;
  --image-prebuilt) IMAGE=1; PREBUILT=1 ;;
  "") ;;
  *) echo "usage: deploy/check.sh [--image | --image-prebuilt]" >&2; exit 2 ;;
esac
fail=0
ok()  { printf 'ok    %s\n' "$*"; }
bad() { printf 'FAIL  %s\n' "$*"; fail=1; }
skip() { printf 'skip  %s\n' "$*"; }

# ------------------------------------------------------------ 1. config ---
BIN="${PORTERO_BIN:-}"
if [[ -z "$BIN" ]]; then
  for b in "${CARGO_TARGET_DIR:-$ROOT/target}"/{release,debug}/portero; do
    [[ -x "$b" ]] && { BIN="$b"; break; }
  done
fi
[[ -x "$BIN" ]] || { echo "no portero binary: build it (cargo build --release) or set PORTERO_BIN" >&2; exit 2; }
if out="$("$BIN" check --config "$HERE/portero.toml" 2>&1)"; then ok "portero check deploy/portero.toml: $out"
else bad "portero check deploy/portero.toml:"; echo "$out"; fi

VENV="$HERE/.venv"
if [[ ! -x "$VENV/bin/kubernetes-validate" ]]; then
  echo "creating $VENV (kubernetes-validate, PyYAML) ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check kubernetes-validate PyYAML
fi
PY="$VENV/bin/python"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" - "$HERE" "$TMP/configmap.toml" <<'PY' || fail=1
import sys, yaml
here, out = sys.argv[1], sys.argv[2]
cm = yaml.safe_load(open(f"{here}/k8s/configmap.yaml"))
text = cm["data"]["portero.toml"]
open(out, "w").write(text)
if text != open(f"{here}/portero.toml").read():
    print("FAIL  k8s/configmap.yaml's portero.toml differs from deploy/portero.toml")
    sys.exit(1)
print("ok    k8s/configmap.yaml carries deploy/portero.toml verbatim")
PY
if out="$("$BIN" check --config "$TMP/configmap.toml" 2>&1)"; then ok "portero check of the ConfigMap's portero.toml"
else bad "portero check of the ConfigMap's portero.toml:"; echo "$out"; fi

# ------------------------------------------------------ 2. grace period ---
"$PY" - "$HERE" <<'PY' || fail=1
import re, sys, tomllib, yaml
here = sys.argv[1]
cfg = tomllib.load(open(f"{here}/portero.toml", "rb"))["server"]
def secs(v):
    m = re.fullmatch(r"(\d+)(ms|s|m)?", str(v))
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n
need = secs(cfg["shutdown_delay"]) + secs(cfg["shutdown_timeout"])
dep = yaml.safe_load(open(f"{here}/k8s/deployment.yaml"))
grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
if grace > need:
    print(f"ok    terminationGracePeriodSeconds {grace} > shutdown_delay + shutdown_timeout = {need:g} s")
else:
    print(f"FAIL  terminationGracePeriodSeconds {grace} <= shutdown_delay + shutdown_timeout = {need:g} s")
    sys.exit(1)
PY

# ------------------------------------------------------ 3. k8s schemas ---
if out="$("$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$HERE"/k8s/*.yaml 2>&1)"; then
  ok "kubernetes-validate --strict -k $K8S_VERSION: $(grep -c passed <<<"$out") manifest(s) passed"
else bad "kubernetes-validate:"; echo "$out"; fi

# ---------------------------------------------------------- 4. systemd ---
if command -v systemd-analyze >/dev/null; then
  # verify wants the executables to exist: point the unit at $BIN.
  sed "s#/usr/local/bin/portero#$BIN#g" "$HERE/portero.service" >"$TMP/portero.service"
  if out="$(systemd-analyze verify "$TMP/portero.service" 2>&1)" && [[ -z "$out" ]]; then
    ok "systemd-analyze verify portero.service"
  else bad "systemd-analyze verify portero.service:"; echo "$out"; fi
else
  skip "systemd-analyze not installed: portero.service not verified"
fi

# ------------------------------------------------------------ 5. image ---
if (( IMAGE )); then
  C="${CONTAINER:-podman}"
  tag=portero:check
  file="$HERE/Dockerfile" ctx="$ROOT"
  if (( PREBUILT )); then
    # The build stage becomes the binary at hand; the rest is unchanged.
    ctx="$TMP/context" file="$TMP/context/Dockerfile"
    mkdir -p "$ctx/deploy" && cp "$BIN" "$ctx/portero" && cp "$HERE/portero.toml" "$ctx/deploy/"
    awk 'BEGIN { stage = 0 }
         /^FROM / { stage++; if (stage == 1) { print "FROM scratch AS build"; print "COPY portero /portero"; next } }
         stage != 1 { print }' "$HERE/Dockerfile" >"$file"
  fi
  if "$C" build --format docker -f "$file" -t "$tag" "$ctx"; then
    ok "$C build -f deploy/Dockerfile"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    id="$("$C" run -d --rm -p "127.0.0.1:$port:8080" "$tag")"
    health=""
    for _ in $(seq 30); do
      health="$("$C" inspect --format '{{.State.Health.Status}}' "$id" 2>/dev/null || true)"
      [[ "$health" == healthy ]] && break
      "$C" healthcheck run "$id" >/dev/null 2>&1 || true
      sleep 1
    done
    [[ "$health" == healthy ]] && ok "container health check: healthy" || bad "container health check: ${health:-unknown}"
    for p in health ready; do
      code="$(python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:$port/__portero/$p', timeout=5).status)" 2>&1 || true)"
      [[ "$code" == 200 ]] && ok "GET /__portero/$p through the published port: 200" || bad "GET /__portero/$p: $code"
    done
    "$C" stop -t 40 "$id" >/dev/null || true
  else
    bad "$C build -f deploy/Dockerfile"
  fi
else
  skip "container image (deploy/check.sh --image builds and runs it with podman)"
fi

exit "$fail"
