"""gunicorn settings, all from environment variables.

`gthread` workers: each process serves `WEB_THREADS` requests at once (default
640, started as needed, so an idle server stays lean), so slow clients and open
event streams (one thread each, capped at `SSE_MAX_STREAMS` per process: by
default the threads less a tenth, at least 16, so 576 a process and 1,152 on the
default two) never starve ordinary requests.
"""

import gc
import os
import signal

from api import embedded_redis, metrics, redis_conn, server_errors, streams
from api.config import Settings

server_errors.install()  # gunicorn's own 400/414/431 refusals in the JSON error envelope

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "640"))
worker_class = "gthread"
worker_connections = max(1000, threads + 256)  # streams hold a connection each
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in ("1", "true", "yes") else None
access_log_format = (
    '{"ts": "%(t)s", "level": "info", "logger": "gunicorn.access", "method": "%(m)s", '
    '"path": "%(U)s", "status": %(s)s, "duration_ms": %(M)s, '
    '"request_id": "%({x-request-id}o)s", "remote": "%(h)s"}'
)


def on_starting(server):
    """Start the embedded Redis in the master (when `REDIS_URL` is unset) so workers share it,
    and clear the metrics directory of an earlier run's files (`metrics.clear_directory`)."""
    settings = Settings.from_env()
    redis_conn.resolve_url(settings)
    if settings.metrics_enabled:
        metrics.clear_directory(settings.metrics_dir)


def child_exit(server, worker):
    """A worker ended: its open streams leave the live gauges (its counters stay in the sums)."""
    settings = Settings.from_env()
    if settings.metrics_enabled:
        metrics.process_exited(worker.pid, settings.metrics_dir)


def post_worker_init(worker):
    """Freeze the loaded app out of the garbage collector's sight, and end open event
    streams at once when the worker is asked to stop (SIGTERM).

    The app's ~120,000 long-lived objects (schemas, routes, the OpenAPI document)
    would otherwise be walked by every full collection, a pause of tens of
    milliseconds in the middle of some request.
    """
    gc.freeze()
    previous = signal.getsignal(signal.SIGTERM)

    def stop(signum, frame):
        streams.hub.shutdown()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGTERM, stop)


def on_exit(server):
    """Stop the embedded Redis if the master started it."""
    embedded_redis.stop()
