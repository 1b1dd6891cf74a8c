"""Events: the outbox every committed write leaves behind.

`emit` stores event rows, and one pending delivery row per matching active
webhook, in the caller's transaction. Only after that transaction commits are
the events published to Redis (for streams) and delivery jobs enqueued; if
Redis is down then, the worker's sweeper finds the pending deliveries later.
Each commit publishes one message: a JSON array of its events.
"""

import json
import logging

from api import queue, redis_conn
from api.ids import new_id
from api.models import Event, Webhook, WebhookDelivery
from api.store import insert_rows, on_commit
from api.timeutil import format_rfc3339, utcnow

log = logging.getLogger("quiver.events")

CHANNEL = "quiver:events"
EVENT_TYPES_FIXED = ("file.created", "file.deleted", "job.completed", "job.failed", "webhook.test")


def event_types() -> list[str]:
    """Every event type a webhook may subscribe to."""
    from api.entities import ENTITIES

    entity_types = [f"{name}.{action}" for name in ENTITIES
                    for action in ("created", "updated", "deleted")]
    return entity_types + list(EVENT_TYPES_FIXED)


def _fields(row) -> dict:
    return row.__data__ if isinstance(row, Event) else row


def as_json(row: Event | dict) -> dict:
    """An event (a stored row, or the dict `emit` returns) in the contract's shape."""
    data = _fields(row)
    body = {"id": data["id"], "type": data["type"], "createdAt": format_rfc3339(data["created_at"]),
            "data": json.loads(data["data"])}
    if data.get("previous") is not None:
        body["previousAttributes"] = json.loads(data["previous"])
    return body


def as_json_text(row: Event | dict) -> str:
    """`as_json(row)` serialized, built from the stored JSON without re-parsing it."""
    data = _fields(row)
    previous = data.get("previous")
    tail = f',"previousAttributes":{previous}' if previous is not None else ""
    return (f'{{"id":"{data["id"]}","type":"{data["type"]}",'
            f'"createdAt":"{format_rfc3339(data["created_at"])}","data":{data["data"]}{tail}}}')


def emit(account_id: str, event_type: str, records: list[dict],
         previous: list[dict] | None = None, webhook_ids: list[str] | None = None) -> list[dict]:
    """Store one event per record (and their deliveries) in the current transaction.

    `previous` (updates only) holds each record's changed fields as they were.
    `webhook_ids` restricts delivery to those webhooks (used by `webhook.test`).
    Returns the stored rows as dicts.
    """
    if not records:
        return []
    now = utcnow()
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    events = [{"id": new_id("evt"), "account_id": account_id, "type": event_type, "created_at": now,
               "data": dumps(record),
               "previous": dumps(previous[i]) if previous is not None else None}
              for i, record in enumerate(records)]
    insert_rows(Event, events)
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
             "event_id": event["id"], "attempt": 1, "status": "pending", "next_attempt_at": now,
             "created_at": now} for event in events for hook_id in matching]
    insert_rows(WebhookDelivery, rows)
    return [row["id"] for row in rows]


def _subscribed(types: list[str], event_type: str) -> bool:
    return "*" in types or event_type in types


def _after_commit(account_id: str, events: list[dict], delivery_ids: list[str]) -> None:
    """Publish committed events and enqueue their deliveries; on Redis trouble, the sweeper catches up."""
    try:
        payload = "[" + ",".join(as_json_text(event) for event in events) + "]"
        redis_conn.client().publish(f"{CHANNEL}:{account_id}", payload)
    except Exception as exc:  # noqa: BLE001 - never fail a committed write over fan-out
        log.warning("could not publish events: %s", exc)
    if delivery_ids:
        queue.enqueue_deliveries(delivery_ids)
