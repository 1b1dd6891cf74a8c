"""Events: the outbox every committed write leaves behind.

`emit` stores event rows, and one pending delivery row per matching active
webhook, in the caller's transaction. Only after that transaction commits are
the events published to Redis (for streams) and delivery jobs enqueued; if
Redis is down then, the worker's sweeper finds the pending deliveries later.
"""

import json
import logging

from api import queue, redis_conn
from api.ids import new_id
from api.models import Event, Webhook, WebhookDelivery
from api.store import on_commit
from api.timeutil import format_rfc3339, utcnow

log = logging.getLogger("quiver.events")

CHUNK = 200
CHANNEL = "quiver:events"
EVENT_TYPES_FIXED = ("file.created", "file.deleted", "job.completed", "job.failed", "webhook.test")


def event_types() -> list[str]:
    """Every event type a webhook may subscribe to."""
    from api.entities import ENTITIES

    entity_types = [f"{name}.{action}" for name in ENTITIES
                    for action in ("created", "updated", "deleted")]
    return entity_types + list(EVENT_TYPES_FIXED)


def as_json(row: Event) -> dict:
    """An event in the contract's shape."""
    body = {"id": row.id, "type": row.type, "createdAt": format_rfc3339(row.created_at),
            "data": json.loads(row.data)}
    if row.previous is not None:
        body["previousAttributes"] = json.loads(row.previous)
    return body


def emit(account_id: str, event_type: str, records: list[dict],
         previous: list[dict] | None = None, webhook_ids: list[str] | None = None) -> list[Event]:
    """Store one event per record (and their deliveries) in the current transaction.

    `previous` (updates only) holds each record's changed fields as they were.
    `webhook_ids` restricts delivery to those webhooks (used by `webhook.test`).
    """
    if not records:
        return []
    now = utcnow()
    events = []
    for index, record in enumerate(records):
        prior = previous[index] if previous is not None else None
        events.append(Event(id=new_id("evt"), account_id=account_id, type=event_type,
                            created_at=now, data=json.dumps(record, separators=(",", ":")),
                            previous=None if prior is None else json.dumps(prior, separators=(",", ":"))))
    for start in range(0, len(events), CHUNK):
        Event.insert_many([e.__data__ for e in events[start:start + CHUNK]]).as_rowcount().execute()
    deliveries = _queue_deliveries(account_id, event_type, events, now, webhook_ids)
    on_commit(lambda: _after_commit(account_id, events, deliveries))
    return events


def _queue_deliveries(account_id, event_type, events, now, webhook_ids) -> list[str]:
    hooks = Webhook.select(Webhook.id, Webhook.events).where(
        (Webhook.account_id == account_id) & (Webhook.active == True))  # noqa: E712
    if webhook_ids is not None:
        hooks = hooks.where(Webhook.id.in_(webhook_ids))
    matching = [h.id for h in hooks
                if webhook_ids is not None or _subscribed(json.loads(h.events), event_type)]
    rows = [{"id": new_id("whd"), "account_id": account_id, "webhook_id": hook_id,
             "event_id": event.id, "attempt": 1, "status": "pending", "next_attempt_at": now,
             "created_at": now} for event in events for hook_id in matching]
    for start in range(0, len(rows), CHUNK):
        WebhookDelivery.insert_many(rows[start:start + CHUNK]).as_rowcount().execute()
    return [row["id"] for row in rows]


def _subscribed(types: list[str], event_type: str) -> bool:
    return "*" in types or event_type in types


def _after_commit(account_id: str, events: list[Event], delivery_ids: list[str]) -> None:
    """Publish committed events and enqueue their deliveries; on Redis trouble, the sweeper catches up."""
    try:
        client = redis_conn.client()
        pipe = client.pipeline(transaction=False)
        for event in events:
            pipe.publish(f"{CHANNEL}:{account_id}", json.dumps(as_json(event)))
        pipe.execute()
    except Exception as exc:  # noqa: BLE001 - never fail a committed write over fan-out
        log.warning("could not publish events: %s", exc)
    if delivery_ids:
        queue.enqueue_deliveries(delivery_ids)
