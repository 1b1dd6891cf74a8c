"""Helpers to run real processes (gunicorn) and local HTTP receivers in tests and benchmarks."""

import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float = 15.0, interval: float = 0.05, message: str = ""):
    """Poll `condition()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message or condition}")
        time.sleep(interval)


def start_gunicorn(env: dict, port: int, app: str = "wsgi:app", health_path: str = "/healthz",
                   log: Path | None = None, access_log: Path | None = None) -> subprocess.Popen:
    """Start gunicorn (the real config) on 127.0.0.1:`port` and wait until it answers.

    Its stderr (the JSON logs) goes to the file `log`, else to a pipe, which suits only a
    server that logs little: nobody reads the pipe, and once full it stalls the server.
    Its stdout (the access log, with `ACCESS_LOG=true`) goes to the file `access_log`.
    """
    with (open(log if log is not None else os.devnull, "wb") as errors,
          open(access_log if access_log is not None else os.devnull, "wb") as output):
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", app],
            cwd=ROOT, env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
            stdout=output, stderr=errors if log is not None else subprocess.PIPE,
        )

    def healthy():
        if process.poll() is not None:
            output = log.read_bytes() if log is not None else process.stderr.read()
            raise AssertionError(f"gunicorn exited: {output.decode()[-2000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{port}{health_path}", timeout=1).ok
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
            return False

    wait_for(healthy, message=f"gunicorn ({app}) to answer {health_path}")
    return process


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class PostServer:
    """A keep-alive HTTP server on 127.0.0.1, in a daemon thread, that hands each POST to
    `on_post(handler)` (a `BaseHTTPRequestHandler`: read `rfile`, then answer, e.g. with
    `respond`). `url` is its `/hook` address."""

    def __init__(self, on_post):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's naming
                on_post(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request's body (by its Content-Length)."""
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def respond(handler: BaseHTTPRequestHandler, status: int = 200, headers: dict | None = None,
            body: bytes = b"") -> None:
    """Answer with `status`, `headers` and `body` (Content-Length set)."""
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
