"""`make run` as a newcomer meets it (`api.devserver`), and `make account`.

A fresh var directory and SQLite database, no `REDIS_URL` (so the embedded Redis), a
free port. The server starts and prints a working admin key; a second start on the
same port refuses at once and leaves the first one's key working; Ctrl-C (SIGINT to the
whole process group, as a terminal sends it) stops web and worker first and Redis last,
quickly, without the worker ever losing Redis, and leaves no process behind.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.procs import ROOT, free_port, wait_for


@pytest.fixture
def fresh_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(VAR_DIR=str(tmp_path / "var"), WEB_CONCURRENCY="1", WEB_THREADS="8",
               LOG_LEVEL="INFO")
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    return env


def _processes_mentioning(text: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "pgrep" not in line]


def test_make_run_starts_refuses_a_second_start_and_stops_cleanly_in_order(fresh_env):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "api.devserver", "--port", str(port)],
                              cwd=ROOT, env=fresh_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        lines: list[str] = []
        key = wait_for(lambda: (lines.append(server.stdout.readline()) or
                                re.search(r"Admin key \(shown once\): (sk_\S+)", lines[-1])),
                       timeout=60, message="the banner")[1]
        wait_for(lambda: _ok(f"{base}/healthz"), timeout=60, message="the server")
        auth = {"Authorization": f"Bearer {key}"}
        assert requests.get(f"{base}/api/v1/tasks", headers=auth, timeout=5).status_code == 200

        second = subprocess.run([sys.executable, "-m", "api.devserver", "--port", str(port)],
                                cwd=ROOT, env=fresh_env, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert f"Port {port} is already in use" in second.stderr and "Nothing was changed" in second.stderr
        assert requests.get(f"{base}/api/v1/tasks", headers=auth, timeout=5).status_code == 200

        # The embedded Redis runs in a session of its own: a Ctrl-C never reaches it, and
        # make run stops it after web and worker have gone.
        [redis_pid] = [int(line.split()[0]) for line in _processes_mentioning(fresh_env["VAR_DIR"])
                       if "redis-server" in line]
        assert os.getsid(redis_pid) != os.getsid(server.pid)

        started = time.monotonic()
        os.killpg(server.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        output = server.communicate(timeout=30)[0]
        assert time.monotonic() - started < 15
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        _kill_everything_of(fresh_env["VAR_DIR"])
    assert server.returncode == 0
    assert "SIGKILL" not in output and "lost Redis" not in output and "Traceback" not in output
    assert not _processes_mentioning(fresh_env["VAR_DIR"]), "the embedded Redis outlived make run"


def _kill_everything_of(var_dir: str) -> None:
    """SIGKILL any process left with this VAR_DIR (honcho's children run in sessions of
    their own, so a failed test must not leave them serving)."""
    marker = f"VAR_DIR={var_dir}".encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


def test_make_account_creates_an_account_with_a_working_key(fresh_env):
    made = subprocess.run(["make", "--no-print-directory", "account", "NAME=Acme Inc"], cwd=ROOT,
                          env=fresh_env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert re.search(r"^account: acc_\w+$", made.stdout, re.M)
    assert re.search(r"^key: sk_\S+$", made.stdout, re.M)
    unnamed = subprocess.run(["make", "--no-print-directory", "account"], cwd=ROOT, env=fresh_env,
                             capture_output=True, text=True, timeout=120)
    assert unnamed.returncode != 0 and 'make account NAME="Acme"' in unnamed.stderr
