"""Server-Sent Events at scale: 1,000 open streams on the default gunicorn configuration.

Measures: streams held, web-process memory per stream, commit-to-arrival
latency of an event on every stream, and CRUD latency while they stay open.
The streams are read by one selector loop over plain sockets (so the client
is not the bottleneck); CRUD load comes from bench/load.py.
"""

import json
import os
import resource
import selectors
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import load
from tests.procs import free_port, start_gunicorn, stop_process, wait_for

STREAMS = int(os.environ.get("BENCH_STREAMS", "1000"))
EVENTS = 40


def _enough_file_descriptors() -> None:
    """Let this process hold every stream's socket (the soft limit is often 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = STREAMS + 256
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(c) for c in children.read().split()]


class StreamReader:
    """Many SSE connections read by one thread; records when each event id arrived on each."""

    def __init__(self, port: int, key: str, count: int):
        self.selector = selectors.DefaultSelector()
        self.connected = 0
        self.arrivals: dict[str, list[float]] = {}
        self.buffers: dict[socket.socket, bytes] = {}
        request = (f"GET /api/v1/stream/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n").encode()
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(request)
            sock.setblocking(False)
            self.buffers[sock] = b""
            self.selector.register(sock, selectors.EVENT_READ)
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self.running:
            for key, _ in self.selector.select(timeout=0.2):
                sock = key.fileobj
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.selector.unregister(sock)
                    continue
                now = time.time()
                data = self.buffers[sock] + chunk
                *lines, self.buffers[sock] = data.split(b"\n")
                for line in lines:
                    if line.startswith(b'data: {"type":"connected"}'):
                        self.connected += 1
                    elif line.startswith(b"id: "):
                        self.arrivals.setdefault(line[4:].decode().strip(), []).append(now)

    def close(self):
        self.running = False
        self.thread.join()
        for sock in self.buffers:
            sock.close()


def run(line, backend: str, env: dict, key: str) -> None:
    """Print the stream figures for one backend."""
    _enough_file_descriptors()
    port = free_port()
    proc_env = {**os.environ, **env, "WEB_CONCURRENCY": "2"}
    proc_env.pop("WEB_THREADS", None)
    proc_env.pop("SSE_MAX_STREAMS", None)
    log = Path(env["VAR_DIR"]) / f"{backend}-streams.log"
    server = start_gunicorn(proc_env, port, log=log)
    auth = {"Authorization": f"Bearer {key}"}
    try:
        workers = _children(server.pid)
        before = sum(_rss_kb(p) for p in workers)
        reader = StreamReader(port, key, STREAMS)
        try:
            wait_for(lambda: reader.connected >= STREAMS, timeout=120, message="streams to connect")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {reader.connected} connected; the server's log ends "
                                 f"{log.read_text()[-3000:]}") from None
        after = sum(_rss_kb(p) for p in workers)
        line(backend, f"SSE: {reader.connected} streams held on 2 workers (default threads); "
                      f"{(after - before) / STREAMS:.0f} KiB RSS per stream, "
                      f"{after / 1024:.0f} MB for both workers")

        for i in range(EVENTS):
            result = load.run(port, "POST", "/api/v1/tasks", body={"title": f"Streamed {i}"},
                              headers=auth, threads=1, total=1)
            assert result.errors == 0
            time.sleep(0.05)
        try:
            wait_for(lambda: len(reader.arrivals) >= EVENTS
                     and all(len(v) >= STREAMS for v in reader.arrivals.values()),
                     timeout=120, message="events on every stream")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {_arrived(reader)}") from None
        created_at = _event_times(port, auth)
        latencies = sorted((arrival - created_at[event_id]) * 1000
                           for event_id, arrivals in reader.arrivals.items()
                           for arrival in arrivals if event_id in created_at)
        line(backend, f"SSE: commit-to-arrival over {STREAMS} streams x {EVENTS} events: "
                      f"p50 {latencies[len(latencies) // 2]:.0f} ms, "
                      f"p99 {latencies[int(len(latencies) * 0.99)]:.0f} ms")

        task_id = json.loads(_get(port, auth, "/api/v1/tasks?limit=1"))["data"][0]["id"]
        crud = load.run(port, "GET", f"/api/v1/tasks/{task_id}", headers=auth, threads=4, duration=4)
        line(backend, f"SSE: GET /tasks/{{id}} with {STREAMS} streams open: {crud.rate:,.0f} req/s, "
                      f"p50 {crud.p50:.1f} ms, p99 {crud.percentile(0.99):.1f} ms (goal p99 < 200 ms)")
        reader.close()
    finally:
        stop_process(server)


def _arrived(reader: StreamReader) -> str:
    counts = sorted(len(v) for v in reader.arrivals.values())
    return f"{len(counts)} events seen, on {counts[0] if counts else 0}–{counts[-1] if counts else 0} streams"


def _get(port: int, auth: dict, path: str) -> bytes:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", path, headers=auth)
    body = conn.getresponse().read()
    conn.close()
    return body


def _event_times(port: int, auth: dict) -> dict[str, float]:
    body = json.loads(_get(port, auth, "/api/v1/events?type=task.created&limit=100"))
    return {e["id"]: datetime.fromisoformat(e["createdAt"].replace("Z", "+00:00"))
            .replace(tzinfo=UTC).timestamp() for e in body["data"]}
