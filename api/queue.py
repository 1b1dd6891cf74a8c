"""Enqueueing work for the RQ workers (jobs live in the top-level `jobs` package)."""

import logging

from rq import Queue

from api import redis_conn

log = logging.getLogger("quiver.queue")

WEBHOOK_QUEUE = "webhooks"
DEFAULT_QUEUE = "default"
QUEUES = (WEBHOOK_QUEUE, DEFAULT_QUEUE)
DELIVERY_GROUP = 25


def get_queue(name: str = DEFAULT_QUEUE) -> Queue:
    return Queue(name, connection=redis_conn.client())


def enqueue_deliveries(delivery_ids: list[str]) -> None:
    """Enqueue delivery jobs in small groups; if Redis is down, the sweeper enqueues them later."""
    try:
        queue = get_queue(WEBHOOK_QUEUE)
        with queue.connection.pipeline() as pipe:
            for start in range(0, len(delivery_ids), DELIVERY_GROUP):
                queue.enqueue("jobs.webhooks.deliver", delivery_ids[start:start + DELIVERY_GROUP],
                              pipeline=pipe, result_ttl=0, failure_ttl=3600)
            pipe.execute()
    except Exception as exc:  # noqa: BLE001 - the sweeper catches up
        log.warning("could not enqueue %d deliveries: %s", len(delivery_ids), exc)
