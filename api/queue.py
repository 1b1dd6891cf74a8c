"""Enqueueing work for the RQ workers (jobs live in the top-level `jobs` package).

Webhook deliveries are coalesced: committed delivery ids go onto a Redis list
and at most one `drain` job is queued at a time to work through it in small
groups, so a burst of writes costs a handful of jobs rather than one job per
write. If Redis is unreachable the ids stay pending in the database and the
worker's sweeper pushes them later.
"""

import logging

from rq import Queue

from api import metrics, redis_conn

log = logging.getLogger("quiver.queue")

WEBHOOK_QUEUE = "webhooks"
DEFAULT_QUEUE = "default"
QUEUES = (WEBHOOK_QUEUE, DEFAULT_QUEUE)
DUE_LIST = "quiver:deliveries:due"
DRAIN_FLAG = "quiver:deliveries:drain-queued"
DRAIN_FLAG_TTL = 10


def get_queue(name: str = DEFAULT_QUEUE) -> Queue:
    return Queue(name, connection=redis_conn.client())


def enqueue_deliveries(delivery_ids: list[str]) -> None:
    """Queue delivery ids for the workers; never raises (the sweeper catches up)."""
    try:
        client = redis_conn.client()
        if delivery_ids:
            client.rpush(DUE_LIST, *delivery_ids)
        if client.set(DRAIN_FLAG, "1", nx=True, ex=DRAIN_FLAG_TTL):
            get_queue(WEBHOOK_QUEUE).enqueue("jobs.webhooks.drain", result_ttl=0, failure_ttl=3600)
    except Exception as exc:  # noqa: BLE001 - the sweeper catches up
        metrics.backend_error(exc, "enqueue")
        log.warning("could not enqueue %d deliveries: %s", len(delivery_ids), exc)
