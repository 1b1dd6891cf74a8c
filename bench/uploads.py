"""Upload throughput and memory: a 200 MB file over loopback, against a plain `cp` of it.

The file is sent as a streamed multipart body (never built in memory on either
side); the web process's RSS is sampled every 10 ms during the upload and
compared with its idle RSS.
"""

import http.client
import os
import shutil
import subprocess
import threading
import time
import uuid

from bench.streams import _children, _rss_kb
from tests.procs import free_port, start_gunicorn, stop_process

SIZE = 200 * 1024 * 1024
CHUNK = 1024 * 1024


def _make_file(path) -> None:
    with open(path, "wb") as out:
        out.write(b"%PDF-1.4\n")
        written = 9
        block = os.urandom(CHUNK)
        while written < SIZE:
            piece = block[:min(CHUNK, SIZE - written)]
            out.write(piece)
            written += len(piece)


def _upload(port: int, key: str, path) -> float:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\n"
            "Content-Type: application/pdf\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = len(head) + os.path.getsize(path) + len(tail)

    def body():
        yield head
        with open(path, "rb") as source:
            while chunk := source.read(CHUNK):
                yield chunk
        yield tail

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.request("POST", "/api/v1/upload", body=body(), headers={
        "Authorization": f"Bearer {key}", "Content-Length": str(length),
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    assert response.status == 201, response.status
    return elapsed


def run(line, backend: str, env: dict, key: str, tmp_dir) -> None:
    """Print upload throughput against `cp`, and the web process's memory growth."""
    source, copy = tmp_dir / "big.pdf", tmp_dir / "big-copy.pdf"
    _make_file(source)
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(copy)], check=True)
    cp_seconds = time.perf_counter() - started
    copy.unlink()
    port = free_port()
    proc_env = {**os.environ, **env, "WEB_CONCURRENCY": "1", "UPLOAD_MAX_BYTES": str(SIZE * 2)}
    server = start_gunicorn(proc_env, port, log=tmp_dir / f"{backend}-uploads.log")
    try:
        worker = _children(server.pid)[0]
        idle = _rss_kb(worker)
        peak = [idle]
        done = threading.Event()

        def sample():
            while not done.wait(0.01):
                peak[0] = max(peak[0], _rss_kb(worker))

        sampler = threading.Thread(target=sample)
        sampler.start()
        seconds = _upload(port, key, source)
        done.set()
        sampler.join()
        megabytes = SIZE / 1024 / 1024
        line(backend, f"upload of {megabytes:.0f} MB: {megabytes / seconds:,.0f} MB/s; cp "
                      f"{megabytes / cp_seconds:,.0f} MB/s; ratio {cp_seconds / seconds:.2f}; web RSS "
                      f"idle {idle / 1024:.0f} MB, peak {peak[0] / 1024:.0f} MB "
                      f"(+{(peak[0] - idle) / 1024:.1f} MB, goal <= 16 MB)")
    finally:
        stop_process(server)
        source.unlink(missing_ok=True)
        shutil.rmtree(tmp_dir / "uploads", ignore_errors=True)
