"""The RQ worker: `python -m jobs.worker [--burst]` (the Procfile's `worker:` line).

Configures the database and Redis exactly as the web app does (same
environment variables; the embedded Redis when `REDIS_URL` is unset), then
works the queues.
"""

import argparse
import logging

from rq import Queue, Worker

from api import redis_conn, store
from api.config import Settings
from api.request_log import configure_logging

QUEUES = ("default",)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a Quiver RQ worker.")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    store.configure(settings.database_url, settings.db_pool_size)
    redis_conn.configure(settings)
    connection = redis_conn.client()
    queues = [Queue(name, connection=connection) for name in QUEUES]
    logging.getLogger("quiver.worker").info("worker starting", extra={"queues": list(QUEUES)})
    Worker(queues, connection=connection).work(burst=args.burst, with_scheduler=True)


if __name__ == "__main__":
    main()
