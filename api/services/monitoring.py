"""Scrape-time figures for `/metrics`, over all accounts: the delivery backlog, jobs by state
and the RQ queues. Each is one indexed query (or one Redis round trip)."""

import peewee

from api import queue, redis_conn
from api.models import Event, Job, WebhookDelivery
from api.services.jobs import TYPES
from api.timeutil import utcnow

JOB_STATES = ("queued", "running", "succeeded", "failed", "canceled")


def pending_deliveries() -> dict[str, int]:
    """Pending delivery attempts: `due` (their time has come) and `scheduled` (a later retry)."""
    pending = WebhookDelivery.select().where(WebhookDelivery.status == "pending")
    total = pending.count()
    due = pending.where(WebhookDelivery.next_attempt_at <= utcnow()).count()
    return {"due": due, "scheduled": total - due}


def oldest_undelivered_age() -> float:
    """Seconds since the oldest event with a pending delivery was committed (0 when none is)."""
    oldest = (Event.select(Event.created_at)
              .join(WebhookDelivery, on=WebhookDelivery.event_id == Event.id)
              .where(WebhookDelivery.status == "pending")
              .order_by(Event.created_at).limit(1).first())
    return max(0.0, (utcnow() - oldest.created_at).total_seconds()) if oldest else 0.0


def jobs_by_state() -> dict[tuple[str, str], int]:
    """How many jobs there are of each (type, state), every pair present (0 when none)."""
    counts = {(kind, state): 0 for kind in TYPES for state in JOB_STATES}
    rows = Job.select(Job.type, Job.status, peewee.fn.COUNT(Job.id).alias("n")).group_by(Job.type, Job.status)
    for row in rows:
        counts[(row.type, row.status)] = row.n
    return counts


def queue_depths() -> dict[str, int]:
    """Entries waiting in each RQ queue, and delivery ids waiting for a `drain` job."""
    client = redis_conn.client()
    names = [*queue.QUEUES, "deliveries_due"]
    keys = [queue.get_queue(name).key for name in queue.QUEUES] + [queue.DUE_LIST]
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        return dict(zip(names, pipe.execute()))
