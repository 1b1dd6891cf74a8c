"""`GET /metrics`: Prometheus text over every process, checked against the traffic that made it.

A real gunicorn (2 workers) and a real `python -m jobs.worker` share a metrics directory
and a database of their own (so the scrape-time counts, which cover every account, see
only this module's traffic); every figure is read with prometheus_client's own parser
and must match the requests, deliveries and jobs sent exactly. The last tests run
in-process: backend errors, and `METRICS_ENABLED=false`.
"""

import io
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import peewee
import pytest
import redis
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker

from api import metrics, redis_conn
from api.services import keys
from tests import media
from tests.extra_apps import extra_apps, fresh_database_url
from tests.procs import (
    ROOT,
    PostServer,
    free_port,
    read_body,
    respond,
    start_gunicorn,
    stop_process,
    wait_for,
)

TOKEN = "metrics-token-for-tests-0123456789"
TASK_ROUTE = "/api/v1/tasks/<record_id>"


@dataclass
class Stack:
    """The module's gunicorn and worker, their metrics directory and an admin key."""

    base: str
    key: str
    metrics_dir: Path
    web: subprocess.Popen

    def call(self, method: str, path: str, key: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {key or self.key}", **kwargs.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kwargs)

    def data(self, method: str, path: str, **kwargs):
        response = self.call(method, path, **kwargs)
        assert response.status_code < 300, response.text
        return response.json()["data"]

    def new_key(self, *scopes: str, **extra) -> str:
        return self.data("POST", "/api/v1/api-keys", json={"name": "metrics", "scopes": list(scopes),
                                                           **extra})["key"]

    def scrape(self) -> dict:
        """{(sample name, sorted labels): value} of one scrape with the metrics token."""
        response = requests.get(self.base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                                timeout=10)
        assert response.status_code == 200, response.text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    """One sample's value (0 when the series is not there yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def web_workers(master_pid: int) -> list[int]:
    """The pids of gunicorn's worker processes."""
    children = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1]
                                       .split()[1]) == master_pid:
                children.append(int(entry))
        except OSError:
            continue  # gone meanwhile
    return children


def served_by(directory: Path, pid: int, route: str) -> float:
    """How many requests for `route` the process `pid` counted, read from its own file."""
    path = directory / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    return sum(s.value for m in MultiProcessCollector.merge([str(path)]) for s in m.samples
               if s.name == "quiver_http_requests_total" and s.labels.get("route") == route)


@pytest.fixture(scope="module")
def stack(app, backend_env, tmp_path_factory):
    """gunicorn (2 workers) and a worker on a database of their own; yields a `Stack`."""
    tmp = tmp_path_factory.mktemp("metrics")
    with fresh_database_url(tmp) as database_url:
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": backend_env["REDIS_URL"],
               "VAR_DIR": str(tmp), "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
               "METRICS_TOKEN": TOKEN, "WEBHOOK_ALLOW_PRIVATE": "true", "LOG_LEVEL": "WARNING",
               "WEBHOOK_RETRY_SCHEDULE": "1h", "RATELIMIT_UPLOAD": "1 per minute",
               "SSE_HEARTBEAT_SECONDS": "0.5", "WEB_CONCURRENCY": "2", "WEB_THREADS": "8"}
        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
        subprocess.run([*flask, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
        created = subprocess.run([*flask, "create-account", "Metrics"], cwd=ROOT, env=env, check=True,
                                 capture_output=True, text=True).stdout
        key = re.search(r"^key: (\S+)$", created, re.M).group(1)
        web = start_gunicorn(env, port := free_port())
        with open(tmp / "worker.log", "ab") as log:
            worker = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT, env=env,
                                      stdout=log, stderr=log)
        try:
            connection = redis.Redis.from_url(backend_env["REDIS_URL"])
            wait_for(lambda: any(w.pid == worker.pid for w in Worker.all(connection=connection)),
                     timeout=30, message="the worker to register with Redis")
            yield Stack(f"http://127.0.0.1:{port}", key, tmp / "metrics", web)
        finally:
            stop_process(worker)
            stop_process(web)


# --- access ----------------------------------------------------------------------------------------


def test_metrics_need_the_token_or_an_admin_key(stack):
    anonymous = requests.get(stack.base + "/metrics", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "UNAUTHORIZED"
    assert stack.call("GET", "/metrics", key="not-the-token").status_code == 401
    reader = stack.call("GET", "/metrics", key=stack.new_key("read", "write"))
    assert reader.status_code == 403
    assert reader.json()["code"] == "INSUFFICIENT_SCOPE" and reader.json()["details"] == {"required": "admin"}
    for key in (TOKEN, stack.key):
        response = stack.call("GET", "/metrics", key=key)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        assert "quiver_http_requests_total" in response.text
    openmetrics = stack.call("GET", "/metrics", key=TOKEN, headers={
        "Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


def test_scrapes_are_neither_counted_nor_rate_limited(stack):
    limited = stack.new_key("admin", rateLimit="2 per minute")
    for _ in range(5):
        assert stack.call("GET", "/metrics", key=limited).status_code == 200
    samples = stack.scrape()
    assert not [key for key in samples if ("route", "/metrics") in key[1]]


# --- requests, rate limits, streams ---------------------------------------------------------------


def test_requests_are_counted_by_route_template_over_both_workers(stack):
    task = stack.data("POST", "/api/v1/tasks", json={"title": "Counted"})
    start = stack.scrape()
    before = value(start, "quiver_http_requests_total", route=TASK_ROUTE, method="GET", status="200")
    timed = value(start, "quiver_http_request_duration_seconds_count", route=TASK_ROUTE, method="GET")
    workers = web_workers(stack.web.pid)
    assert len(workers) == 2
    baseline = {pid: served_by(stack.metrics_dir, pid, TASK_ROUTE) for pid in workers}
    sent = 0

    def get_once(_):
        response = requests.get(f"{stack.base}/api/v1/tasks/{task['id']}", timeout=10,
                                headers={"Authorization": f"Bearer {stack.key}"})
        assert response.status_code == 200

    def both_served():  # new connections, 8 at a time, until each worker has served some
        nonlocal sent
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(get_once, range(16)))
        sent += 16
        return all(served_by(stack.metrics_dir, pid, TASK_ROUTE) > baseline[pid] for pid in workers)

    wait_for(both_served, timeout=60, interval=0, message="both gunicorn workers to serve GETs")
    after = stack.scrape()
    assert value(after, "quiver_http_requests_total", route=TASK_ROUTE, method="GET",
                 status="200") - before == sent
    assert value(after, "quiver_http_request_duration_seconds_count", route=TASK_ROUTE,
                 method="GET") - timed == sent
    missing = stack.call("GET", "/api/v1/tasks/tsk_missing")
    unknown = stack.call("GET", "/no/such/path/" + "x" * 20)
    assert (missing.status_code, unknown.status_code) == (404, 404)
    samples = stack.scrape()
    assert value(samples, "quiver_http_requests_total", route=TASK_ROUTE, method="GET", status="404") == 1
    assert value(samples, "quiver_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert not [key for key in samples if any("tsk_" in v or "/no/such" in v for _, v in key[1])]


def test_rate_limit_rejections_are_counted_by_group(stack):
    before = stack.scrape()
    limited = stack.new_key("read", rateLimit="2 per minute")
    statuses = [stack.call("GET", "/api/v1/tasks", key=limited).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    uploader = stack.new_key("admin")
    uploads = [stack.call("POST", "/api/v1/upload", key=uploader, files={
        "file": ("p.png", io.BytesIO(media.png(media.token())), "image/png")}).status_code
        for _ in range(2)]
    assert uploads == [201, 429]
    after = stack.scrape()

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("quiver_rate_limit_rejections_total", group="key") == 1
    assert grew("quiver_rate_limit_rejections_total", group="upload") == 1
    assert grew("quiver_http_requests_total", route="/api/v1/upload", method="POST", status="429") == 1


def test_open_streams_are_counted_while_open(stack):
    def streams():
        return value(stack.scrape(), "quiver_sse_streams_open")

    assert streams() == 0
    response = stack.call("GET", "/api/v1/stream", stream=True)
    lines = response.iter_lines()
    assert next(line for line in lines if line.startswith(b"data:")) == b'data: {"type":"connected"}'
    assert streams() == 1
    response.close()
    wait_for(lambda: streams() == 0, message="the closed stream to leave the gauge")


# --- deliveries, backlog, jobs ---------------------------------------------------------------------


class Receiver:
    """A local webhook receiver answering `status` to every POST; keeps how many it got."""

    def __init__(self, status: int):
        self.count = 0
        self.lock = threading.Lock()

        def on_post(handler):
            read_body(handler)
            with self.lock:
                self.count += 1
            respond(handler, status)

        self.server = PostServer(on_post)


@pytest.fixture
def receiver():
    made = []

    def start(status: int) -> Receiver:
        made.append(Receiver(status))
        return made[-1]

    yield start
    for server in made:
        server.server.close()


def test_a_delivery_counts_as_succeeded_with_its_latency(stack, receiver):
    ok = receiver(200)
    hook = stack.data("POST", "/api/v1/webhooks", json={"url": ok.server.url, "events": ["task.created"]})
    before = stack.scrape()
    stack.data("POST", "/api/v1/tasks", json={"title": "Delivered"})

    def delivered():
        samples = stack.scrape()
        done = value(samples, "quiver_webhook_deliveries_total", outcome="succeeded") - value(
            before, "quiver_webhook_deliveries_total", outcome="succeeded")
        return samples if done >= 1 else None

    samples = wait_for(delivered, timeout=30, message="the delivery to be counted")
    assert ok.count == 1
    assert value(samples, "quiver_webhook_deliveries_total", outcome="succeeded") - value(
        before, "quiver_webhook_deliveries_total", outcome="succeeded") == 1
    assert value(samples, "quiver_webhook_delivery_latency_seconds_count") - value(
        before, "quiver_webhook_delivery_latency_seconds_count") == 1
    assert value(samples, "quiver_webhook_deliveries_pending", state="due") == 0
    assert value(samples, "quiver_oldest_undelivered_event_age_seconds") == 0
    assert stack.call("DELETE", f"/api/v1/webhooks/{hook['id']}").status_code == 204


def test_a_failed_delivery_waiting_for_its_retry_is_backlog(stack, receiver):
    failing = receiver(500)
    hook = stack.data("POST", "/api/v1/webhooks", json={"url": failing.server.url,
                                                        "events": ["task.created"]})
    before = stack.scrape()
    stack.data("POST", "/api/v1/tasks", json={"title": "Not delivered"})

    def retrying():
        samples = stack.scrape()
        return samples if value(samples, "quiver_webhook_deliveries_total", outcome="retrying") > value(
            before, "quiver_webhook_deliveries_total", outcome="retrying") else None

    samples = wait_for(retrying, timeout=30, message="the failed attempt to be counted")
    assert value(samples, "quiver_webhook_deliveries_total", outcome="retrying") - value(
        before, "quiver_webhook_deliveries_total", outcome="retrying") == 1
    assert value(samples, "quiver_webhook_deliveries_pending", state="scheduled") == value(
        before, "quiver_webhook_deliveries_pending", state="scheduled") + 1
    assert 0 < value(samples, "quiver_oldest_undelivered_event_age_seconds") < 60
    assert stack.call("DELETE", f"/api/v1/webhooks/{hook['id']}").status_code == 204


def test_a_finished_job_shows_in_jobs_by_state_and_durations(stack):
    before = stack.scrape()
    job = stack.data("POST", "/api/v1/export/tasks", json={"format": "csv"})
    wait_for(lambda: stack.data("GET", f"/api/v1/jobs/{job['id']}")["status"] == "succeeded",
             timeout=60, message="the export to finish")

    def timed():
        samples = stack.scrape()
        return samples if value(samples, "quiver_job_duration_seconds_count", type="export",
                                state="succeeded") > 0 else None

    samples = wait_for(timed, timeout=30, message="the job's duration to be observed")
    assert value(samples, "quiver_job_duration_seconds_count", type="export", state="succeeded") == 1
    assert value(samples, "quiver_jobs", type="export", state="succeeded") == value(
        before, "quiver_jobs", type="export", state="succeeded") + 1
    assert value(samples, "quiver_jobs", type="export", state="queued") == 0
    assert {key[1] for key in samples if key[0] == "quiver_queue_depth"} == {
        (("queue", name),) for name in ("webhooks", "default", "deliveries_due")}


def test_the_directory_holds_files_of_web_workers_and_the_worker(stack):
    pids = {int(path.stem.rsplit("_", 1)[1]) for path in stack.metrics_dir.glob("*.db")}
    assert set(web_workers(stack.web.pid)) <= pids
    assert len(pids) >= 4  # two web workers, the worker and its data worker


# --- in-process ------------------------------------------------------------------------------------


def test_backend_errors_are_counted_where_they_are_caught(api, monkeypatch):
    def down(*_):
        raise peewee.OperationalError("could not connect to server")

    def count(kind: str, where: str) -> float:
        counter = metrics._live.database_errors if kind == "database" else metrics._live.redis_errors
        return counter.labels(where)._value.get()

    database_before, redis_before = count("database", "request"), count("redis", "rate_limit")
    keys.forget_all()
    monkeypatch.setattr(keys, "learn", down)
    assert api.get("/tasks").status_code == 503
    monkeypatch.undo()
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    monkeypatch.setattr(redis_conn, "client", lambda: unreachable)
    assert api.get("/tasks").status_code == 200  # limits fail open
    monkeypatch.undo()
    keys.forget_all()
    assert count("database", "request") == database_before + 1
    assert count("redis", "rate_limit") == redis_before + 1


def test_a_metric_that_cannot_be_written_fails_no_request(api, monkeypatch):
    class FullDisk(dict):
        def get(self, key):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(metrics._live, "request_children", FullDisk())
    assert api.get("/tasks").status_code == 200


def test_metrics_enabled_false_serves_no_metrics_route(backend_env):
    with extra_apps() as build:
        off = build({**backend_env, "METRICS_ENABLED": "false"})
        assert off.test_client().get("/metrics").status_code == 404


def test_clearing_the_directory_keeps_only_files_running_processes_write(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                           capture_output=True, text=True)
    pid = os.getpid()
    mine, stale = tmp_path / f"counter_{pid}.db", tmp_path / f"histogram_{pid}.db"
    gone, odd = tmp_path / f"counter_{ended.stdout.strip()}.db", tmp_path / "counter_x.db"
    for path in (mine, stale, gone, odd):
        path.write_bytes(b"")
    os.utime(stale, (0, 0))  # written before this process started: an earlier one with its pid
    metrics.clear_directory(tmp_path)
    assert sorted(tmp_path.iterdir()) == [mine]
