"""Prometheus metrics, shared by every process through prometheus_client's multiprocess mode.

Each process that calls `configure` (the app factory in every gunicorn worker, the RQ
worker's `_setup`) writes its figures to mmap files of its own in the metrics directory
(`PROMETHEUS_MULTIPROC_DIR`, default `<VAR_DIR>/metrics`); `/metrics` merges them all
(`api.blueprints.metrics`). gunicorn's master clears the directory at start (`clear_directory`:
the files of processes no longer running) and drops a dead worker's live gauges
(`process_exited`). A process that never called `configure`, or runs with
`METRICS_ENABLED=false`, records nothing: every function here is then a no-op.

This module imports neither the database nor the web framework, so the store, the
services and the worker can record from anywhere.
"""

import functools
import logging
import os
from pathlib import Path

import peewee
import redis
from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import mark_process_dead

from api.config import Settings

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DELIVERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
                    6 * 3600, 24 * 3600)
JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
log = logging.getLogger("quiver.metrics")
START_TOLERANCE = 2.0  # seconds: a process's start time from /proc is rounded


class _Metrics:
    """The metric objects of this process (see README, "Metrics", for each one)."""

    def __init__(self):
        self.requests = Counter("quiver_http_requests", "HTTP requests served, by route template.",
                                ["route", "method", "status"], registry=None)
        self.request_seconds = Histogram(
            "quiver_http_request_duration_seconds", "Time to answer an HTTP request (to the "
            "response's headers, for streams).", ["route", "method"], buckets=REQUEST_BUCKETS,
            registry=None)
        self.rejections = Counter("quiver_rate_limit_rejections", "Requests refused with 429, by "
                                  "the limit that was full.", ["group"], registry=None)
        self.streams = Gauge("quiver_sse_streams_open", "Server-Sent Event streams open now.",
                             multiprocess_mode="livesum", registry=None)
        self.deliveries = Counter("quiver_webhook_deliveries", "Webhook delivery attempts, by outcome.",
                                  ["outcome"], registry=None)
        self.delivery_seconds = Histogram(
            "quiver_webhook_delivery_latency_seconds", "From an event's commit to the 2xx answer "
            "of the receiver (retries included).", buckets=DELIVERY_BUCKETS, registry=None)
        self.job_seconds = Histogram("quiver_job_duration_seconds", "Run time of finished jobs.",
                                     ["type", "state"], buckets=JOB_BUCKETS, registry=None)
        self.database_errors = Counter("quiver_database_errors", "Database errors caught, by where.",
                                       ["where"], registry=None)
        self.redis_errors = Counter("quiver_redis_errors", "Redis errors caught, by where.",
                                    ["where"], registry=None)
        self.request_children: dict[tuple, tuple] = {}


_live: _Metrics | None = None


def configure(settings: Settings) -> bool:
    """Start recording into `settings.metrics_dir`, unless `METRICS_ENABLED` is false; whether
    this process records. Once per process: a later call starts nothing and changes nothing."""
    global _live
    if _live is not None or not settings.metrics_enabled:
        return _live is not None and settings.metrics_enabled
    directory = settings.metrics_dir
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(f"*_{os.getpid()}.db"):  # an earlier process with this pid
        stale.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)  # where prometheus_client reads it
    # prometheus_client chose its value class when first imported, from the environment of
    # that moment (before any setting was read): switch it now, before any metric exists.
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()
    _live = _Metrics()
    return True


def clear_directory(directory: Path) -> None:
    """Create `directory` and delete the files no running process writes (those of an earlier
    run, or of processes that ended), keeping those of processes running now (a worker that
    started first)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        started = _started_at(int(pid)) if pid.isdigit() else None
        if started is None or started > path.stat().st_mtime + START_TOLERANCE:
            path.unlink(missing_ok=True)


def _started_at(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch; 0 where /proc cannot tell), or None
    when no such process runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it runs, as another user
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _never_raises(record):
    """Recording must never fail what is being recorded (a full disk, say): log instead."""

    @functools.wraps(record)
    def safely(*args, **kwargs):
        try:
            record(*args, **kwargs)
        except Exception:  # noqa: BLE001 - a metric lost is better than a request failed
            log.exception("could not record a metric (%s)", record.__name__)

    return safely


def process_exited(pid: int, directory: Path) -> None:
    """Drop the live gauges of a process that ended (its counters stay in the sums)."""
    mark_process_dead(pid, str(directory))


@_never_raises
def request_served(route: str, method: str, status: int, seconds: float) -> None:
    """Count one HTTP request and observe its duration (only where `configure` returned True)."""
    if method not in METHODS:
        method = "other"
    children = _live.request_children.get((route, method, status))
    if children is None:
        children = (_live.requests.labels(route, method, status),
                    _live.request_seconds.labels(route, method))
        _live.request_children[(route, method, status)] = children
    children[0].inc()
    children[1].observe(seconds)


@_never_raises
def rate_limited(group: str) -> None:
    """Count a 429: `group` is `key` (the key's own limit), a route group, or `custom`."""
    if _live is not None:
        _live.rejections.labels(group).inc()


@_never_raises
def stream_opened() -> None:
    """One more event stream is open in this process."""
    if _live is not None:
        _live.streams.inc()


@_never_raises
def stream_closed() -> None:
    """One event stream of this process has ended."""
    if _live is not None:
        _live.streams.dec()


@_never_raises
def delivery_recorded(outcome: str, latency: float | None = None) -> None:
    """Count a recorded delivery attempt (`succeeded`, `retrying` or `failed`) and, for a
    success, observe the seconds from its event's commit to the receiver's 2xx."""
    if _live is not None:
        _live.deliveries.labels(outcome).inc()
        if latency is not None:
            _live.delivery_seconds.observe(max(0.0, latency))


@_never_raises
def job_finished(job_type: str, state: str, seconds: float) -> None:
    """Observe the run time of a job that ended `state`."""
    if _live is not None:
        _live.job_seconds.labels(job_type, state).observe(max(0.0, seconds))


@_never_raises
def database_error(where: str) -> None:
    """Count a database error caught at `where` (see README, "Metrics")."""
    if _live is not None:
        _live.database_errors.labels(where).inc()


@_never_raises
def redis_error(where: str) -> None:
    """Count a Redis error caught at `where` (see README, "Metrics")."""
    if _live is not None:
        _live.redis_errors.labels(where).inc()


def backend_error(error: BaseException, where: str) -> None:
    """Count `error` as a database or Redis error when it is one (anything else is not counted)."""
    if isinstance(error, redis.RedisError):
        redis_error(where)
    elif isinstance(error, peewee.PeeweeException):
        database_error(where)
