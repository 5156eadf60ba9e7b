"""Start / stop the Daphne backend for the e2e run.

Used by run.sh (``python e2e_backend.py start|stop``) and imported by the
pytest scenarios that stop and restart the backend mid-session. Everything
comes from environment variables exported by run.sh:

  E2E_DAPHNE_PORT        port Daphne binds on 127.0.0.1 (fixed for the run)
  E2E_DAPHNE_PIDFILE     where the current Daphne PID is written
  E2E_DAPHNE_LOG         Daphne stdout/stderr (appended)
  E2E_DAPHNE_ACCESS_LOG  Daphne access log (appended)
  E2E_BACKEND_DIR        the Django project directory (cwd for Daphne)
  E2E_PYTHON             the venv's python (default: sys.executable)
"""
import http.client
import os
import signal
import subprocess
import sys
import time

HOST = "127.0.0.1"


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set (run via tests/e2e/run.sh)")
    return value


def port():
    return int(_env("E2E_DAPHNE_PORT"))


def command():
    python = os.environ.get("E2E_PYTHON") or sys.executable
    return [
        python, "-m", "daphne",
        "-b", HOST, "-p", str(port()),
        "--access-log", _env("E2E_DAPHNE_ACCESS_LOG"),
        "project.asgi:application",
    ]


def _read_pid():
    try:
        with open(_env("E2E_DAPHNE_PIDFILE")) as fh:
            return int(fh.read().strip() or 0) or None
    except FileNotFoundError:
        return None


def pid_alive(pid):
    """True if pid exists and is not a zombie (we may not be its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def answers(timeout=2.0):
    """True if Daphne answers an HTTP request for the public tenant."""
    try:
        conn = http.client.HTTPConnection(HOST, port(), timeout=timeout)
        conn.request("GET", "/api/whoami/?probe=backend-health", headers={"Host": "chalanpro.net"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status == 200
    except OSError:
        return False


def start(timeout=45.0):
    """Start Daphne and wait (bounded) until it answers. Returns its PID."""
    pid = _read_pid()
    if pid and pid_alive(pid):
        raise RuntimeError(f"daphne already running as pid {pid}")
    log = open(_env("E2E_DAPHNE_LOG"), "ab")
    proc = subprocess.Popen(
        command(),
        cwd=_env("E2E_BACKEND_DIR"),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    with open(_env("E2E_DAPHNE_PIDFILE"), "w") as fh:
        fh.write(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited early with code {proc.returncode}; see {_env('E2E_DAPHNE_LOG')}")
        if answers():
            return proc.pid
        time.sleep(0.1)
    stop()
    raise RuntimeError(f"daphne did not answer on {HOST}:{port()} within {timeout}s")


def stop(timeout=10.0):
    """Stop Daphne (SIGTERM, then SIGKILL after timeout). No-op if not running."""
    pid = _read_pid()
    if not pid:
        return
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
    _reap(pid)
    if pid_alive(pid):
        raise RuntimeError(f"daphne pid {pid} did not die")
    os.unlink(_env("E2E_DAPHNE_PIDFILE"))


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def main(argv):
    if len(argv) != 2 or argv[1] not in ("start", "stop", "status"):
        print("usage: e2e_backend.py start|stop|status", file=sys.stderr)
        return 2
    if argv[1] == "start":
        print(start())
    elif argv[1] == "stop":
        stop()
    else:
        pid = _read_pid()
        print(f"pid={pid} alive={bool(pid and pid_alive(pid))} answers={answers()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
