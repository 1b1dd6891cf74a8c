"""Body caps bound memory (`api.body_limits`): over real gunicorn, many concurrent bodies far
over a single-record route's `JSON_MAX_BYTES` are each answered 413 before they are read, and
the worker's peak RSS (VmHWM) does not grow by even one of them."""

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.procs import free_port, start_gunicorn, stop_process

BODY = 16 * 1024 * 1024
CONCURRENT = 24


@pytest.fixture
def one_worker(backend_env):
    port = free_port()
    env = {**os.environ, **backend_env, "WEB_CONCURRENCY": "1", "WEB_THREADS": str(CONCURRENT + 8),
           "LOG_LEVEL": "WARNING"}
    process = start_gunicorn(env, port)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    yield port, int(children[0])
    stop_process(process)


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


def post_oversized(port: int, key: str) -> str:
    """POST a 16 MiB JSON body to /tasks as fast as the server takes it; the status line."""
    head = (f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n").encode()
    chunk = b'{"title": "' + b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for _ in range(BODY // len(chunk)):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest: the point
        reply = b""
        try:
            while b"\r\n" not in reply:
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
        except ConnectionResetError:
            pass
    return reply.split(b"\r\n", 1)[0].decode()


def test_concurrent_oversized_bodies_are_refused_unread_and_memory_stays_flat(one_worker, account):
    port, worker = one_worker
    assert " 413 " in post_oversized(port, account.api.key)  # warms the worker up, too
    before = peak_rss_kb(worker)
    with ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        statuses = list(pool.map(lambda _: post_oversized(port, account.api.key), range(CONCURRENT)))
    grown_kb = peak_rss_kb(worker) - before
    assert all(" 413 " in status for status in statuses if status), statuses
    assert sum(1 for status in statuses if " 413 " in status) >= CONCURRENT // 2, statuses
    assert grown_kb < BODY // 1024, f"peak RSS grew {grown_kb} KiB"
    assert account.api.get("/tasks").get_json()["meta"]["total"] == 0
