"""Webhook delivery throughput and commit-to-receipt latency, against RQ's own empty-job rate.

A local receiver answers 200 at once (HTTP/1.1 keep-alive). With 1 or 2
workers running: throughput is 2,000 tasks imported at once, timed from the
first commit to the last receipt; latency is measured at a steady 300 events/s
(30 tasks imported every 100 ms for 5 s), from each event's `createdAt` to its
arrival. The baseline is the same number of empty jobs drained by the
same worker class (RQ `SimpleWorker`) with the same number of processes.
"""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import redis
from rq import Queue

from tests.procs import ROOT, PostServer, read_body, respond, stop_process, wait_for

EVENTS = 2000
SUSTAINED_RATE = 300
SUSTAINED_SECONDS = 5


class Receiver:
    """A threaded HTTP server recording when each webhook-id first arrived."""

    def __init__(self):
        self.arrivals: dict[str, float] = {}
        self.created: dict[str, float] = {}

        def on_post(handler):
            body = read_body(handler)
            now = time.time()
            msg_id = handler.headers["webhook-id"]
            if msg_id not in self.arrivals:
                self.arrivals[msg_id] = now
                created = json.loads(body)["createdAt"]
                self.created[msg_id] = datetime.fromisoformat(
                    created.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()
            respond(handler)

        self.http = PostServer(on_post)
        self.url = self.http.url

    def close(self):
        self.http.close()


def start_workers(env: dict, count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


def measure_deliveries(client, auth: dict, env: dict, workers: int) -> dict:
    """Burst throughput (EVENTS at once) and latency at a sustained SUSTAINED_RATE events/s."""
    receiver = Receiver()
    hook = client.post("/api/v1/webhooks", json={"url": receiver.url, "events": ["task.created"]},
                       headers=auth).get_json()["data"]
    processes = start_workers(env, workers)
    try:
        wait_for(lambda: _workers_registered(env) >= workers, timeout=30, message="workers")
        started = time.time()
        for batch in range(EVENTS // 1000):
            _import(client, auth, 1000, f"burst {batch}")
        wait_for(lambda: len(receiver.arrivals) >= EVENTS, timeout=120, interval=0.05,
                 message="all burst deliveries")
        rate = EVENTS / (max(receiver.arrivals.values()) - started)

        receiver.arrivals.clear()
        receiver.created.clear()
        per_tick = SUSTAINED_RATE // 10
        ticks = SUSTAINED_SECONDS * 10
        began = time.perf_counter()
        for tick in range(ticks):
            _import(client, auth, per_tick, f"steady {tick}")
            pause = began + (tick + 1) / 10 - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        wait_for(lambda: len(receiver.arrivals) >= per_tick * ticks, timeout=120, interval=0.05,
                 message="all sustained deliveries")
        latencies = sorted((receiver.arrivals[k] - receiver.created[k]) * 1000
                           for k in receiver.arrivals)
        return {"rate": rate, "p50": latencies[len(latencies) // 2],
                "p99": latencies[int(len(latencies) * 0.99)]}
    finally:
        for process in processes:
            stop_process(process)
        client.delete(f"/api/v1/webhooks/{hook['id']}", headers=auth)
        receiver.close()


def _import(client, auth: dict, count: int, label: str) -> None:
    response = client.post("/api/v1/import/tasks", headers=auth, json={"items": [
        {"title": f"Delivery {label} {i}"} for i in range(count)]})
    assert response.status_code == 201, response.get_json()


def _workers_registered(env: dict) -> int:
    from rq import Worker

    return len(Worker.all(connection=redis.Redis.from_url(env["REDIS_URL"])))


def measure_empty_jobs(env: dict, workers: int) -> float:
    """Empty jobs per second drained by `workers` SimpleWorker processes (the queue's limit)."""
    connection = redis.Redis.from_url(env["REDIS_URL"])
    queue = Queue("bench-empty", connection=connection)
    queue.empty()
    with connection.pipeline() as pipe:
        for _ in range(EVENTS):
            queue.enqueue("bench.webhooks.empty_job", pipeline=pipe, result_ttl=0)
        pipe.execute()
    script = ("import redis, os; from rq import SimpleWorker, Queue; "
              "c = redis.Redis.from_url(os.environ['REDIS_URL']); "
              "SimpleWorker([Queue('bench-empty', connection=c)], connection=c).work(burst=True)")
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(workers)]
    for process in processes:
        process.wait(timeout=120)
    return EVENTS / (time.perf_counter() - started)


def empty_job() -> None:
    """The baseline job: does nothing."""


def run(line, backend: str, app, key: str, env: dict) -> None:
    """Print the delivery figures for one backend."""
    client = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}
    proc_env = {**os.environ, **env, "WEBHOOK_ALLOW_PRIVATE": "true", "LOG_LEVEL": "WARNING"}
    for workers in (1, 2):
        empty = measure_empty_jobs(proc_env, workers)
        figures = measure_deliveries(client, auth, proc_env, workers)
        line(backend, f"webhook deliveries, {workers} worker(s): burst {figures['rate']:,.0f}/s "
                      f"(empty RQ jobs {empty:,.0f}/s); at {SUSTAINED_RATE}/s commit-to-receipt "
                      f"p50 {figures['p50']:.0f} ms, p99 {figures['p99']:.0f} ms "
                      "(goal with 2 workers: >= 300/s, p99 < 1000 ms)")
