"""The RQ worker: `python -m jobs.worker [--burst]` (the Procfile's `worker:` line).

Configures the database and Redis exactly as the web app does (same
environment variables; the embedded Redis when `REDIS_URL` is unset), then
runs two RQ workers:

- in this process, an RQ `SimpleWorker` on the `webhooks` queue: delivery jobs
  run in-process (a fork per delivery would cost more than the delivery) and
  HTTP connections to webhook endpoints stay open between jobs;
- in a child process, a forking RQ `Worker` on the `default` queue for exports,
  imports and inbound webhook events, so a long job never holds up deliveries and each job's memory is
  returned when it ends. The child is restarted if it dies, and either worker
  is restarted in place if a Redis outage makes RQ give up.

Beside them runs the sweeper thread: once a second (one worker process at a
time, under a Redis lock) it queues webhook deliveries that are due and not in
flight, re-enqueues jobs that were never picked up and rescues jobs whose
worker died; once a minute it purges expired idempotency records and tus
uploads, and file bytes no file uses any more (left when a process died between
a file's deletion and the removal of its bytes). With `--burst`, one SimpleWorker
works both queues until they are empty.

Every process here records metrics into the shared metrics directory (`api.metrics`):
delivery outcomes and latency, the duration of each job (observed by the worker that ran
or supervised it, never in a forked work horse) and the errors it caught.
"""

import argparse
import ctypes
import logging
import multiprocessing
import signal
import threading
import time

import peewee
import redis
from rq import SimpleWorker, Worker

from api import config, idempotency, metrics, queue, redis_conn
from api.config import Settings
from api.request_log import configure_logging
from api.services import database, files, tus
from api.services import jobs as job_service
from api.timeutil import utcnow
from jobs import webhooks

log = logging.getLogger("quiver.worker")

SWEEP_INTERVAL = 1.0
SWEEP_LOCK = "quiver:sweeper"
PURGE_LOCK = "quiver:purge"
PR_SET_PDEATHSIG = 1
RECONNECT_DELAY = 2.0


def _setup() -> Settings:
    settings = Settings.from_env()
    config.activate(settings)
    configure_logging(settings.log_level)
    database.configure(settings.database_url, settings.db_pool_size, settings.db_prepare)
    redis_conn.configure(settings)
    metrics.configure(settings)
    return settings


class TimedJobs:
    """An RQ worker that observes the run time of each Quiver job it finished
    (`quiver_job_duration_seconds`) in its own long-lived process, not in the forked work
    horse: a horse that recorded would leave a set of metrics files behind per job."""

    def execute_job(self, job, queue):
        began = utcnow()
        try:
            return super().execute_job(job, queue)
        finally:
            _observe(job, began)


def _observe(job, began) -> None:
    if job.func_name not in job_service.RUNNERS.values() or not job.args:
        return
    try:
        with database.connection():
            row = job_service.finished_since(job.args[0], began)
    except peewee.PeeweeException as exc:
        metrics.database_error("worker")
        log.warning("could not time job %s: %s", job.args[0], exc)
        return
    if row is not None:
        metrics.job_finished(row.type, row.status, (row.finished_at - row.started_at).total_seconds())


class DataWorker(TimedJobs, Worker):
    """The forking worker of the `default` queue."""


class InProcessWorker(TimedJobs, SimpleWorker):
    """The in-process worker (webhook deliveries; every queue with `--burst`)."""


def sweep_once() -> None:
    """Run the sweepers unless another worker did within the last interval."""
    client = redis_conn.client()
    if client.set(SWEEP_LOCK, "1", nx=True, px=int(SWEEP_INTERVAL * 900)):
        webhooks.sweep()
        with database.connection():
            job_service.sweep()
    if client.set(PURGE_LOCK, "1", nx=True, ex=60):
        with database.connection():
            idempotency.purge_expired()
            tus.purge_expired()
            files.purge_unused_blobs()


def _sweep_forever(stop: threading.Event, supervise) -> None:
    while not stop.wait(SWEEP_INTERVAL):
        try:
            sweep_once()
            supervise()
        except Exception as exc:  # noqa: BLE001 - keep sweeping through outages
            metrics.backend_error(exc, "sweeper")
            log.warning("sweep failed: %s", exc)


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        log.warning("cannot tie the data worker's life to its parent on this platform")


def _work_through_outages(make_worker) -> None:
    """Run an RQ worker; if Redis drops it mid-way, start a fresh one once Redis is back."""
    while True:
        try:
            make_worker().work()
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            metrics.redis_error("worker")
            log.warning("worker lost Redis (%s); restarting it in %.0fs", exc, RECONNECT_DELAY)
            time.sleep(RECONNECT_DELAY)


def run_data_worker() -> None:
    """The child process: a forking RQ worker on the `default` queue."""
    _die_with_parent()
    _setup()
    _work_through_outages(lambda: DataWorker([queue.get_queue(queue.DEFAULT_QUEUE)],
                                             connection=redis_conn.client()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a Quiver RQ worker.")
    parser.add_argument("--burst", action="store_true", help="work all queues until empty, then exit")
    args = parser.parse_args(argv)
    _setup()
    connection = redis_conn.client()
    if args.burst:
        sweep_once()
        InProcessWorker([queue.get_queue(name) for name in queue.QUEUES],
                        connection=connection).work(burst=True)
        return

    spawn = multiprocessing.get_context("spawn")
    children = [spawn.Process(target=run_data_worker, name="data-worker", daemon=True)]
    children[0].start()

    def supervise():
        if not children[0].is_alive():
            log.warning("data worker exited (code %s); restarting it", children[0].exitcode)
            children[0] = spawn.Process(target=run_data_worker, name="data-worker", daemon=True)
            children[0].start()

    stop = threading.Event()
    threading.Thread(target=_sweep_forever, args=(stop, supervise), name="sweeper",
                     daemon=True).start()
    log.info("worker starting", extra={"queues": list(queue.QUEUES)})
    try:
        _work_through_outages(lambda: InProcessWorker([queue.get_queue(queue.WEBHOOK_QUEUE)],
                                                      connection=connection))
    finally:
        stop.set()
        children[0].terminate()
        children[0].join(timeout=10)


if __name__ == "__main__":
    main()
