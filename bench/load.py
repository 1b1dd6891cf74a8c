"""A small keep-alive HTTP load generator: N threads, one persistent connection each."""

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000


def run(port: int, method: str, paths, *, body=None, headers=None, threads: int = 4,
        duration: float | None = None, total: int | None = None) -> LoadResult:
    """Send requests until `duration` seconds pass or `total` requests are done.

    `paths` and `body` may be callables, called for each request (a body that changes
    every time, so that each PATCH writes)."""
    payload = json.dumps(body).encode() if body is not None and not callable(body) else None
    headers = {**(headers or {}), **({"Content-Type": "application/json"} if body is not None else {})}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total)) if total else None
    stop_at = time.perf_counter() + duration if duration else None

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local, local_errors = [], 0
        while True:
            if counter is not None:
                with lock:
                    n = next(counter, None)
                if n is None:
                    break
            elif time.perf_counter() >= stop_at:
                break
            path = paths() if callable(paths) else paths
            started = time.perf_counter()
            data = json.dumps(body()).encode() if callable(body) else payload
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            response.read()
            local.append(time.perf_counter() - started)
            if response.status >= 400:
                local_errors += 1
        conn.close()
        with lock:
            latencies.extend(local)
            errors[0] += local_errors

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return LoadResult(len(latencies), time.perf_counter() - started, latencies, errors[0])
