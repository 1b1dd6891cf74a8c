"""The service as it runs for real: gunicorn over HTTP, the RQ worker, the embedded Redis, migrations."""

import os
import subprocess
import sys

import psycopg2
import redis
import requests
from rq import Queue

from api import embedded_redis, migrate, store
from jobs import health
from tests.conftest import ApiClient, plain_sql
from tests.extra_apps import extra_apps
from tests.procs import ROOT, free_port, start_gunicorn, stop_process, wait_for


def test_gunicorn_serves_the_crud_tour(live_server, account):
    headers = {"Authorization": f"Bearer {account.api.key}", "X-Request-ID": "smoke-1"}
    created = requests.post(f"{live_server}/api/v1/tasks", json={"title": "Over HTTP"},
                            headers=headers, timeout=5)
    assert created.status_code == 201
    assert created.headers["X-Request-ID"] == "smoke-1"
    assert created.headers["Content-Type"] == "application/json; charset=utf-8"
    task = created.json()["data"]
    assert created.headers["Location"] == f"/api/v1/tasks/{task['id']}"

    fetched = requests.get(f"{live_server}/api/v1/tasks/{task['id']}", headers=headers, timeout=5)
    assert fetched.json()["data"]["title"] == "Over HTTP"
    not_modified = requests.get(f"{live_server}/api/v1/tasks/{task['id']}", timeout=5,
                                headers={**headers, "If-None-Match": fetched.headers["ETag"]})
    assert not_modified.status_code == 304

    patched = requests.patch(f"{live_server}/api/v1/tasks/{task['id']}", json={"status": "completed"},
                             headers={**headers, "If-Match": fetched.headers["ETag"]}, timeout=5)
    assert patched.status_code == 200
    assert patched.json()["data"]["completedAt"] is not None

    assert requests.delete(f"{live_server}/api/v1/tasks/{task['id']}", headers=headers,
                           timeout=5).status_code == 204
    gone = requests.get(f"{live_server}/api/v1/tasks/{task['id']}", headers=headers, timeout=5)
    assert gone.status_code == 404
    assert gone.json()["code"] == "NOT_FOUND"


def test_gunicorn_readiness_and_unknown_route(live_server):
    ready = requests.get(f"{live_server}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["data"] == {"database": "ok", "redis": "ok"}
    missing = requests.get(f"{live_server}/nope", timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "error": "Not found.", "code": "NOT_FOUND"}


def test_worker_runs_the_health_job(app, backend_env):
    connection = redis.Redis.from_url(backend_env["REDIS_URL"])
    job = Queue("default", connection=connection).enqueue(health.ping, "hello")
    env = {**os.environ, **backend_env}
    result = subprocess.run([sys.executable, "-m", "jobs.worker", "--burst"], cwd=ROOT, env=env,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert job.return_value(refresh=True) == {"pong": "hello", "database": "ok"}


def test_embedded_redis_serves_web_and_worker_and_stops_with_its_owner(tmp_path, backend_env):
    """With REDIS_URL unset, gunicorn starts the bundled redis-server; the worker shares it."""
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=backend_env["DATABASE_URL"], VAR_DIR=str(tmp_path),
               WEB_CONCURRENCY="1", LOG_LEVEL="WARNING")
    sock = embedded_redis.socket_path(tmp_path)
    port = free_port()
    web = start_gunicorn(env, port)
    try:
        ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["data"]["redis"] == "ok"
        assert sock.exists()
        connection = redis.Redis(unix_socket_path=str(sock))
        job = Queue("default", connection=connection).enqueue(health.ping, "embedded")
        worker = subprocess.run([sys.executable, "-m", "jobs.worker", "--burst"], cwd=ROOT,
                                env=env, capture_output=True, timeout=120)
        assert worker.returncode == 0, worker.stderr.decode()[-2000:]
        assert job.return_value(refresh=True) == {"pong": "embedded", "database": "ok"}
    finally:
        stop_process(web)
    wait_for(lambda: not _answers(sock), message="embedded redis to stop")


def _answers(sock) -> bool:
    try:
        return redis.Redis(unix_socket_path=str(sock), socket_connect_timeout=0.5).ping()
    except (redis.RedisError, OSError):
        return False


def test_migrations_are_idempotent(app):
    with app.app_context():
        assert migrate.upgrade() == []


def _end_pooled_connections(database_url: str) -> int:
    """End every connection the pool holds idle: on PostgreSQL from the server's side (as a
    restart does), on SQLite by closing it. Returns how many there were."""
    held = [conn for _, _, conn in store.db.obj._connections]
    if store.is_postgres():
        ender = psycopg2.connect(database_url)
        ender.autocommit = True
        for conn in held:
            ender.cursor().execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        ender.close()
    else:
        for conn in held:
            conn.close()
    return len(held)


def test_pooled_connections_that_died_are_replaced(account, backend_env):
    """The pool hands connections out without pinging them. Those it holds that died meanwhile
    are replaced: the next write's transaction, and the next read, succeed."""
    api = account.api
    task = api.post("/tasks", json={"title": "before"}).get_json()["data"]

    assert _end_pooled_connections(backend_env["DATABASE_URL"]) >= 1
    created = api.post("/tasks", json={"title": "after"})
    assert created.status_code == 201, created.get_json()

    assert _end_pooled_connections(backend_env["DATABASE_URL"]) >= 1
    fetched = api.get(f"/tasks/{task['id']}")
    assert fetched.status_code == 200, fetched.get_json()
    assert sorted(t["title"] for t in api.get("/tasks").get_json()["data"]) == ["after", "before"]


def test_record_reads_are_prepared_once_per_connection_on_postgresql(account, backend_env,
                                                                    count_queries):
    """On PostgreSQL a record read by id is `PREPARE`d once on a connection, then only
    `EXECUTE`d; with `DB_PREPARE=false` (for poolers in transaction mode), and on SQLite,
    it is sent as plain SQL every time. Either way the answer is the same. (The record
    cache is off here, so that every GET reads the database.)"""
    task = account.api.post("/tasks", json={"title": "prepared"}).get_json()["data"]
    with extra_apps() as build:
        for prepare in ("true", "false"):
            api = ApiClient(build({**backend_env, "DB_PREPARE": prepare, "RECORD_CACHE_SIZE": "0"})
                            .test_client(), account.api.key)
            with count_queries() as counter:
                for _ in range(3):
                    fetched = api.get(f"/tasks/{task['id']}")
                    assert fetched.get_json()["data"]["title"] == "prepared"
            reads = [sql for sql, _ in counter.statements if '"tasks"' in plain_sql(sql)]
            if store.is_postgres() and prepare == "true":
                assert [sql.split()[0] for sql in reads] == ["PREPARE", "EXECUTE", "EXECUTE", "EXECUTE"]
                assert store.PREPARED[reads[1].split()[1]].startswith('SELECT "id"')
            else:
                assert len(reads) == 3 and all(sql.startswith('SELECT "id"') for sql in reads)
