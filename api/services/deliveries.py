"""Webhook delivery rows for the delivery job: claim due attempts under a lease, record
their outcomes (scheduling retries, disabling webhooks that keep failing) and list the
attempts the sweeper should queue. The job itself only sends the HTTP requests."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from api import config, metrics
from api.ids import new_id
from api.models import Event, Webhook, WebhookDelivery
from api.store import db, execute_many, transaction
from api.timeutil import utcnow

RECORDED_COLUMNS = ("status", "response_status", "response_body", "duration_ms", "error",
                    "finished_at", "next_attempt_at")
RESCUE_AFTER = timedelta(seconds=3)
LEASE_MARGIN = timedelta(seconds=5)


@dataclass
class Outcome:
    """What one attempt did."""

    delivery: WebhookDelivery
    hook: Webhook | None
    ok: bool
    error: str | None = None
    status: int | None = None
    body: str | None = None
    duration_ms: int | None = None
    retry: bool = True
    disable: str | None = None
    latency: float | None = None  # a success: seconds from the event's commit to the 2xx


def claim(delivery_ids: list[str]) -> list[WebhookDelivery]:
    """Lease the given deliveries that are pending, due and not leased; returns them by id.

    The lease (how long before another worker may take a delivery over, should this one
    die) covers one webhook timeout per delivery.
    """
    settings = config.current()
    now = utcnow()
    token = uuid.uuid4().hex
    lease = now + timedelta(seconds=settings.webhook_timeout) * max(1, len(delivery_ids)) + LEASE_MARGIN
    with transaction():
        WebhookDelivery.update(lease_token=token, locked_until=lease).where(
            WebhookDelivery.id.in_(delivery_ids) & (WebhookDelivery.status == "pending")
            & (WebhookDelivery.next_attempt_at <= now)
            & (WebhookDelivery.locked_until.is_null() | (WebhookDelivery.locked_until < now))
        ).execute()
    return list(WebhookDelivery.select().where(WebhookDelivery.lease_token == token)
                .order_by(WebhookDelivery.id))


def targets(claimed: list[WebhookDelivery]) -> tuple[dict[str, Webhook], dict[str, Event]]:
    """The webhooks (those still there) and the events of `claimed`, by id."""
    hooks = {h.id: h for h in Webhook.select().where(
        Webhook.id.in_(list({d.webhook_id for d in claimed})))}
    event_rows = {e.id: e for e in Event.select().where(
        Event.id.in_(list({d.event_id for d in claimed})))}
    return hooks, event_rows


def record(outcomes: list[Outcome]) -> None:
    """Store a group of attempts in one transaction; schedule retries or disable webhooks.
    Once committed, each attempt is counted by outcome: `succeeded`, `retrying` (another
    attempt is scheduled) or `failed` (no more attempts)."""
    settings = config.current()
    now = utcnow()
    schedule = settings.webhook_retry_schedule
    rows, retries, counted = [], [], []
    for o in outcomes:
        next_at = None
        if not o.ok and o.hook is not None and o.disable is None and o.hook.failing_since and \
                (now - o.hook.failing_since).total_seconds() >= settings.webhook_disable_after:
            o.disable = f"Failing on every delivery since {o.hook.failing_since.isoformat()}Z."
        if not o.ok and o.retry and not o.disable and o.delivery.attempt <= len(schedule):
            next_at = now + timedelta(seconds=schedule[o.delivery.attempt - 1])
            retries.append({"id": new_id("whd"), "account_id": o.delivery.account_id,
                            "webhook_id": o.delivery.webhook_id, "event_id": o.delivery.event_id,
                            "attempt": o.delivery.attempt + 1, "status": "pending",
                            "next_attempt_at": next_at, "created_at": now})
        counted.append("succeeded" if o.ok else "retrying" if next_at else "failed")
        rows.append(("succeeded" if o.ok else "failed", o.status, o.body, o.duration_ms, o.error,
                     now, next_at, o.delivery.id))
    assignments = ", ".join(f'"{column}" = {db.param}' for column in RECORDED_COLUMNS)
    sql = (f'UPDATE "webhook_deliveries" SET {assignments}, "lease_token" = NULL, '
           f'"locked_until" = NULL WHERE "id" = {db.param}')
    with transaction():
        execute_many(sql, rows)
        if retries:
            WebhookDelivery.insert_many(retries).as_rowcount().execute()
        for o in outcomes:
            if o.hook is not None:
                _update_health(o.hook, o.ok, now, o.disable, settings.webhook_disable_after)
    for o, outcome in zip(outcomes, counted):
        metrics.delivery_recorded(outcome, o.latency)


def _update_health(hook: Webhook, ok: bool, now, disable: str | None, disable_after: int) -> None:
    if ok:
        if hook.failing_since is not None:
            Webhook.update(failing_since=None).where(Webhook.id == hook.id).execute()
            hook.failing_since = None
        return
    if hook.failing_since is None:
        hook.failing_since = now
        Webhook.update(failing_since=now).where(
            (Webhook.id == hook.id) & Webhook.failing_since.is_null()).execute()
    if disable is None and (now - hook.failing_since).total_seconds() >= disable_after:
        disable = f"Failing on every delivery since {hook.failing_since.isoformat()}Z."
    if disable:
        hook.active = False
        Webhook.update(active=False, disabled_reason=disable, updated_at=now).where(
            Webhook.id == hook.id).execute()


def due(limit: int) -> list[str]:
    """Ids of up to `limit` pending deliveries that are due and not leased, soonest first.

    Retries count as soon as they are due. First attempts are normally queued at
    commit, so only those still waiting after `RESCUE_AFTER` count (a lost enqueue,
    a Redis outage, a killed worker).
    """
    now = utcnow()
    return [d.id for d in WebhookDelivery.select(WebhookDelivery.id).where(
        (WebhookDelivery.status == "pending") & (WebhookDelivery.next_attempt_at <= now)
        & ((WebhookDelivery.attempt > 1) | (WebhookDelivery.created_at <= now - RESCUE_AFTER))
        & (WebhookDelivery.locked_until.is_null() | (WebhookDelivery.locked_until < now))
    ).order_by(WebhookDelivery.next_attempt_at).limit(limit)]
