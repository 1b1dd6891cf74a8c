"""The RQ worker: `python -m jobs.worker [--burst]` (the Procfile's `worker:` line).

Configures the database and Redis exactly as the web app does (same
environment variables; the embedded Redis when `REDIS_URL` is unset), then
works the `webhooks` and `default` queues.

It is an RQ `SimpleWorker`: jobs run in the worker process instead of a fork
per job, so a delivery job costs a few milliseconds and HTTP connections to
webhook endpoints stay open between jobs. Job timeouts still apply (RQ's
signal-based death penalty in the main thread). Beside it runs a sweeper
thread that, once a second (one worker at a time, under a Redis lock),
re-enqueues deliveries that are due and not in flight, so a lost enqueue, a
Redis outage or a killed worker only delays a delivery; it also purges expired
idempotency records.
"""

import argparse
import logging
import threading

from rq import SimpleWorker

from api import config, idempotency, queue, redis_conn, store
from api.config import Settings
from api.request_log import configure_logging
from jobs import webhooks

log = logging.getLogger("quiver.worker")

SWEEP_INTERVAL = 1.0
SWEEP_LOCK = "quiver:sweeper"
PURGE_LOCK = "quiver:purge"


def sweep_once() -> None:
    """Run the sweeper unless another worker did within the last interval.

    Once a minute it also purges expired idempotency records.
    """
    client = redis_conn.client()
    if client.set(SWEEP_LOCK, "1", nx=True, px=int(SWEEP_INTERVAL * 900)):
        webhooks.sweep()
    if client.set(PURGE_LOCK, "1", nx=True, ex=60):
        with store.db.connection_context():
            idempotency.purge_expired()


def _sweep_forever(stop: threading.Event) -> None:
    while not stop.wait(SWEEP_INTERVAL):
        try:
            sweep_once()
        except Exception as exc:  # noqa: BLE001 - keep sweeping through outages
            log.warning("sweep failed: %s", exc)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a Quiver RQ worker.")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    config.activate(settings)
    configure_logging(settings.log_level)
    store.configure(settings.database_url, settings.db_pool_size)
    redis_conn.configure(settings)
    connection = redis_conn.client()
    queues = [queue.get_queue(name) for name in queue.QUEUES]
    stop = threading.Event()
    if args.burst:
        sweep_once()
    else:
        threading.Thread(target=_sweep_forever, args=(stop,), name="sweeper", daemon=True).start()
    log.info("worker starting", extra={"queues": list(queue.QUEUES)})
    try:
        SimpleWorker(queues, connection=connection).work(burst=args.burst, with_scheduler=False)
    finally:
        stop.set()


if __name__ == "__main__":
    main()
