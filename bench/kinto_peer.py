"""Kinto as a peer for `GET /tasks/{id}`: its record GET on PostgreSQL, under the same gunicorn settings.

Kinto is installed from PyPI into a virtualenv of its own, `var/bench-kinto-venv` (made once, and again
only when `PINS` change), never into Quiver's requirements. `serve()` gives Kinto a fresh database on
the same PostgreSQL (a schema in the given database when it may not create one), with Kinto's
PostgreSQL storage, permission and cache backends and its `basicauth` policy, runs `kinto migrate`,
starts it under gunicorn (gthread), creates bucket `b`, collection `c` and `RECORDS` records shaped
like Quiver's tasks, and yields their paths and the Authorization header to read them with.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
import requests

from tests import backends
from tests.procs import ROOT, free_port, stop_process, wait_for

KINTO_VERSION = "26.5.0"
PINS = (f"kinto=={KINTO_VERSION}", "psycopg2-binary==2.9.13", "SQLAlchemy==2.1.9", "zope.sqlalchemy==4.1",
        "gunicorn==27.0.1")  # gunicorn: the version Quiver runs (requirements.txt)
VENV = ROOT / "var" / "bench-kinto-venv"
RECORDS = 100  # as many as the task ids Quiver's GET figure picks from
AUTH = {"Authorization": "Basic YmVuY2g6YmVuY2g="}  # bench:bench; basicauth takes any user:password

INI = """\
[app:main]
use = egg:kinto
kinto.storage_backend = kinto.core.storage.postgresql
kinto.storage_url = {url}
kinto.permission_backend = kinto.core.permission.postgresql
kinto.permission_url = {url}
kinto.cache_backend = kinto.core.cache.postgresql
kinto.cache_url = {url}
kinto.userid_hmac_secret = {secret}
multiauth.policies = basicauth

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = plain

[logger_root]
level = INFO
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = plain

[formatter_plain]
format = %%(asctime)s %%(levelname)s %%(name)s %%(message)s
"""


class Unavailable(Exception):
    """Kinto could not be installed (e.g. PyPI unreachable)."""


@dataclass
class Peer:
    port: int
    record_paths: list[str]
    headers: dict


def ensure_venv() -> Path:
    """The Kinto virtualenv's bin directory, made first if missing or made with other pins."""
    marker = VENV / ".pins"
    if marker.exists() and marker.read_text() == "\n".join(PINS):
        return VENV / "bin"
    shutil.rmtree(VENV, ignore_errors=True)
    started = time.monotonic()
    print(f"Installing kinto=={KINTO_VERSION} into {VENV} (once)...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, capture_output=True, text=True)
        subprocess.run([VENV / "bin" / "python", "-m", "pip", "install", "--quiet", "--retries", "1",
                        "--timeout", "15", "--disable-pip-version-check", *PINS],
                       check=True, capture_output=True, text=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(VENV, ignore_errors=True)
        last = (getattr(exc, "stderr", None) or "").strip().splitlines()[-1:] or [type(exc).__name__]
        raise Unavailable(f"could not install kinto=={KINTO_VERSION}: {last[0][:200]}") from exc
    marker.write_text("\n".join(PINS))
    print(f"Installed kinto=={KINTO_VERSION} in {time.monotonic() - started:.0f} s", flush=True)
    return VENV / "bin"


@contextmanager
def _database(base_url: str) -> Iterator[str]:
    """The URL of a fresh database beside `base_url`'s (else of a fresh schema in it), dropped after."""
    name = f"kinto_bench_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(base_url)
    conn.autocommit = True
    try:
        conn.cursor().execute(f'CREATE DATABASE "{name}"')
        url, schema = urlsplit(base_url)._replace(path=f"/{name}").geturl(), None
    except psycopg2.errors.InsufficientPrivilege:
        url, schema = backends.postgres_schema_url(base_url)
    try:
        yield url
    finally:
        if schema:
            backends.drop_postgres_schema(base_url, schema)
        else:
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextmanager
def serve(base_url: str, workers: int, threads: int) -> Iterator[Peer]:
    """Kinto under gunicorn on a fresh database beside `base_url`'s, seeded; raises Unavailable."""
    bin_dir = ensure_venv()
    with _database(base_url) as url, tempfile.TemporaryDirectory(prefix="kinto-bench-") as tmp:
        ini = Path(tmp) / "kinto.ini"
        ini.write_text(INI.format(url=url.replace("%", "%%"), secret=uuid.uuid4().hex))
        subprocess.run([bin_dir / "kinto", "migrate", "--ini", ini], cwd=tmp, check=True,
                       capture_output=True)
        port = free_port()
        log = Path(tmp) / "gunicorn.log"
        # cwd is the temporary directory, so that gunicorn does not read Quiver's gunicorn.conf.py.
        process = subprocess.Popen(
            [bin_dir / "gunicorn", "--paste", ini, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--worker-class", "gthread", "--threads", str(threads), "--keep-alive", "5", "--timeout", "60"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        try:
            wait_for(lambda: _answers(process, port, log), timeout=60, message="Kinto to answer")
            yield Peer(port, _seed(port), AUTH)
        finally:
            stop_process(process)


def _answers(process: subprocess.Popen, port: int, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"Kinto's gunicorn exited: {log.read_text()[-2000:]}")
    try:
        return requests.get(f"http://127.0.0.1:{port}/v1/__lbheartbeat__", timeout=1).ok
    except (requests.ConnectionError, requests.Timeout):
        return False


def _seed(port: int) -> list[str]:
    """Bucket `b`, collection `c` and RECORDS records; checks that one reads back. Their paths."""
    base = f"http://127.0.0.1:{port}/v1/buckets/b"
    with requests.Session() as session:
        session.headers.update(AUTH)
        session.put(base, json={"data": {}}).raise_for_status()
        session.put(f"{base}/collections/c", json={"data": {}}).raise_for_status()
        paths = []
        for i in range(RECORDS):
            data = {"title": f"Task {i}", "status": "todo", "priority": "medium"}
            response = session.post(f"{base}/collections/c/records", json={"data": data})
            response.raise_for_status()
            paths.append(f"/v1/buckets/b/collections/c/records/{response.json()['data']['id']}")
        answer = session.get(f"http://127.0.0.1:{port}{paths[0]}")
        assert answer.status_code == 200 and answer.json()["data"]["title"] == "Task 0", answer.text
    return paths


if __name__ == "__main__":  # python -m bench.kinto_peer: install, start, read one record
    with serve(os.environ.get("TEST_DATABASE_URL") or backends.LOCAL_POSTGRES, 2, 8) as peer:
        reply = requests.get(f"http://127.0.0.1:{peer.port}{peer.record_paths[0]}", headers=peer.headers)
        print(reply.status_code, reply.text)
