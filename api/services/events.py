"""Events: the log every committed write leaves behind, in commit order.

`emit` adds events to the caller's transaction; as its last statements they
are stored, each with its `position` in the account's log and one pending
delivery row per matching active webhook. Positions count up from 1 per
account without gaps, in commit order (see `_store`), so "everything after
position p" is a complete answer for streams and pollers. Only after the
transaction commits are the events published to Redis (for streams) and
delivery jobs enqueued; if Redis is down then, the worker's sweeper finds the
pending deliveries later. Each commit publishes one message per account.
"""

import json
import logging

from peewee import fn

from api import metrics, queue, redis_conn
from api.errors import NotFound
from api.ids import new_id
from api.models import Event, Webhook, WebhookDelivery
from api.store import db, insert_rows, on_commit, stage
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
    """Add one event per record to the current transaction.

    `previous` (updates only) holds each record's changed fields as they were.
    `webhook_ids` restricts delivery to those webhooks (used by `webhook.test`).
    The events are stored, with their positions and deliveries, as the
    transaction's last statements (`_store`). Returns them as dicts.
    """
    if not records:
        return []
    now = utcnow()
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    events = [{"id": new_id("evt"), "account_id": account_id, "type": event_type, "created_at": now,
               "data": dumps(record),
               "previous": dumps(previous[i]) if previous is not None else None}
              for i, record in enumerate(records)]
    for event in events:
        stage(_store, (event, webhook_ids))
    return events


def _store(staged: list[tuple[dict, list[str] | None]]) -> None:
    """Append a transaction's events to their accounts' logs, just before it commits.

    Taking the positions updates the account's `event_heads` row, whose lock is
    then held until COMMIT: the next transaction of the account waits there, so
    positions are taken, and become visible, in commit order.
    """
    by_account: dict[str, list] = {}
    for event, webhook_ids in staged:
        by_account.setdefault(event["account_id"], []).append((event, webhook_ids))
    for account_id in sorted(by_account):
        items = by_account[account_id]
        hooks = _active_hooks(account_id)
        last = _advance_head(account_id, len(items))
        events = [event for event, _ in items]
        for offset, event in enumerate(events, start=last - len(events) + 1):
            event["position"] = offset
        insert_rows(Event, events)
        deliveries = [{"id": new_id("whd"), "account_id": account_id, "webhook_id": hook_id,
                       "event_id": event["id"], "attempt": 1, "status": "pending",
                       "next_attempt_at": event["created_at"], "created_at": event["created_at"]}
                      for event, webhook_ids in items
                      for hook_id, types in hooks
                      if (hook_id in webhook_ids if webhook_ids is not None
                          else _subscribed(types, event["type"]))]
        insert_rows(WebhookDelivery, deliveries)
        delivery_ids = [row["id"] for row in deliveries]
        on_commit(lambda a=account_id, e=events, d=delivery_ids: _after_commit(a, e, d))


def _active_hooks(account_id: str) -> list[tuple[str, list[str]]]:
    hooks = Webhook.select(Webhook.id, Webhook.events).where(
        (Webhook.account_id == account_id) & (Webhook.active == True))  # noqa: E712
    return [(h.id, json.loads(h.events)) for h in hooks]


def _advance_head(account_id: str, count: int) -> int:
    """Move the account's head `count` positions on (locking its row); the new head."""
    param = db.param
    cursor = db.execute_sql(
        f'INSERT INTO "event_heads" ("account_id", "position") VALUES ({param}, {param}) '
        'ON CONFLICT ("account_id") DO UPDATE '
        'SET "position" = "event_heads"."position" + excluded."position" RETURNING "position"',
        (account_id, count))
    return cursor.fetchone()[0]


def _subscribed(types: list[str], event_type: str) -> bool:
    return "*" in types or event_type in types


def _after_commit(account_id: str, events: list[dict], delivery_ids: list[str]) -> None:
    """Publish committed events and enqueue their deliveries; on Redis trouble, the sweeper catches up.

    The message is a JSON array of `{"position": …, "event": …}`, in position order.
    """
    try:
        payload = "[" + ",".join(f'{{"position":{event["position"]},"event":{as_json_text(event)}}}'
                                 for event in events) + "]"
        redis_conn.client().publish(f"{CHANNEL}:{account_id}", payload)
    except Exception as exc:  # noqa: BLE001 - never fail a committed write over fan-out
        metrics.backend_error(exc, "publish")
        log.warning("could not publish events: %s", exc)
    if delivery_ids:
        queue.enqueue_deliveries(delivery_ids)


def _matching(account_id: str, types: list[str] | None = None, prefix: str | None = None):
    query = Event.select().where(Event.account_id == account_id)
    if types:
        query = query.where(Event.type.in_(list(types)))
    if prefix:
        query = query.where(Event.type.startswith(prefix))
    return query


def get(account_id: str, event_id: str) -> Event:
    """One event of the account, or 404."""
    # No id holds a NUL, and PostgreSQL refuses one in a query (a 500 otherwise).
    row = None if "\x00" in event_id else Event.get_or_none(
        (Event.id == event_id) & (Event.account_id == account_id))
    if row is None:
        raise NotFound(f"Event {event_id[:64]} not found.")
    return row


def position_of(account_id: str, event_id: str) -> int | None:
    """The position of one of the account's events in its log (None: not in the log)."""
    if "\x00" in event_id:
        return None
    row = (Event.select(Event.position)
           .where((Event.id == event_id) & (Event.account_id == account_id)).first())
    return row.position if row is not None else None


def head(account_id: str) -> int:
    """The position of the account's last committed event (0 before the first)."""
    last = Event.select(fn.MAX(Event.position)).where(Event.account_id == account_id).scalar()
    return last or 0


def newest_first(account_id: str, limit: int, before: str | None = None,
                 types: list[str] | None = None) -> tuple[list[Event], int, bool]:
    """A page of the log, newest first (before the event `before`, when given):
    (rows, how many match in all, whether more follow)."""
    query = _matching(account_id, types)
    total = query.count()
    if before is not None:
        query = query.where(Event.position < (position_of(account_id, before) or 0))
    rows = list(query.order_by(Event.position.desc()).limit(limit + 1))
    return rows[:limit], total, len(rows) > limit


def after(account_id: str, position: int, limit: int, types: list[str] | None = None,
          prefix: str | None = None) -> list[Event]:
    """Up to `limit` of the account's events after `position`, in commit order."""
    query = _matching(account_id, types, prefix).where(Event.position > position)
    return list(query.order_by(Event.position).limit(limit))


def count_after(account_id: str, position: int, types: list[str] | None = None) -> int:
    """How many of the account's events follow `position`."""
    return _matching(account_id, types).where(Event.position > position).count()
