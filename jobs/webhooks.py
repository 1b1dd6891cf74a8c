"""Webhook delivery: the `deliver` job and the sweeper that re-enqueues due deliveries.

A delivery row is claimed with a lease (so two workers never send the same
attempt at once), POSTed with its signatures over a kept-alive connection,
and its outcome recorded. A failed attempt schedules the next one on
`WEBHOOK_RETRY_SCHEDULE`; the sweeper enqueues it when it is due. Delivery is
at least once: receivers dedupe by `webhook-id`.
"""

import json
import logging
import time
import uuid
from datetime import timedelta

import requests

from api import config, queue, url_guard
from api.ids import new_id
from api.models import Event, Webhook, WebhookDelivery
from api.services.events import as_json
from api.store import db, transaction
from api.timeutil import utcnow
from api.webhook_signing import signature_headers

log = logging.getLogger("quiver.webhooks")

USER_AGENT = "Quiver-Webhooks/1.0"
BODY_LIMIT = 2048
SWEEP_BATCH = 500
LEASE_MARGIN = timedelta(seconds=30)

_session = requests.Session()
_session.headers.update({"User-Agent": USER_AGENT, "Content-Type": "application/json"})


def deliver(delivery_ids: list[str]) -> int:
    """Send the given pending deliveries that no one else is sending; returns how many were sent."""
    with db.connection_context():
        claimed = _claim(delivery_ids)
        if not claimed:
            return 0
        hooks = {h.id: h for h in Webhook.select().where(
            Webhook.id.in_(list({d.webhook_id for d in claimed})))}
        event_rows = {e.id: e for e in Event.select().where(
            Event.id.in_(list({d.event_id for d in claimed})))}
        for delivery in claimed:
            _attempt(delivery, hooks.get(delivery.webhook_id), event_rows[delivery.event_id])
    return len(claimed)


def _claim(delivery_ids: list[str]) -> list[WebhookDelivery]:
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


def _attempt(delivery: WebhookDelivery, hook: Webhook | None, event: Event) -> None:
    settings = config.current()
    if hook is None or not hook.active:
        _record(delivery, hook, ok=False, error="The webhook is disabled.", retry=False)
        return
    problem = url_guard.problem_with(hook.url, settings.webhook_allow_private)
    if problem:
        _record(delivery, hook, ok=False, error=problem, retry=True)
        return
    body = json.dumps(as_json(event), separators=(",", ":")).encode()
    secrets_ = [hook.secret]
    if hook.previous_secret and hook.previous_secret_expires_at and \
            hook.previous_secret_expires_at > utcnow():
        secrets_.append(hook.previous_secret)
    headers = signature_headers(secrets_, event.id, body)
    started = time.perf_counter()
    try:
        response = _session.post(hook.url, data=body, headers=headers,
                                 timeout=settings.webhook_timeout, allow_redirects=False)
    except requests.RequestException as exc:
        duration = int((time.perf_counter() - started) * 1000)
        _record(delivery, hook, ok=False, error=f"{type(exc).__name__}: {exc}"[:500],
                duration_ms=duration, retry=True)
        return
    duration = int((time.perf_counter() - started) * 1000)
    ok = 200 <= response.status_code < 300
    _record(delivery, hook, ok=ok, status=response.status_code, body=response.text[:BODY_LIMIT],
            duration_ms=duration, retry=response.status_code != 410,
            error=None if ok else f"HTTP {response.status_code}",
            disable="Endpoint answered 410 Gone." if response.status_code == 410 else None)


def _record(delivery, hook, *, ok: bool, error: str | None = None, status: int | None = None,
            body: str | None = None, duration_ms: int | None = None, retry: bool = True,
            disable: str | None = None) -> None:
    """Store an attempt's outcome; schedule the next attempt or disable the webhook."""
    settings = config.current()
    now = utcnow()
    schedule = settings.webhook_retry_schedule
    next_at = None
    if not ok and retry and not disable and delivery.attempt <= len(schedule):
        next_at = now + timedelta(seconds=schedule[delivery.attempt - 1])
    with transaction():
        WebhookDelivery.update(
            status="succeeded" if ok else "failed", response_status=status, response_body=body,
            duration_ms=duration_ms, error=error, finished_at=now, next_attempt_at=next_at,
            lease_token=None, locked_until=None,
        ).where(WebhookDelivery.id == delivery.id).execute()
        if next_at is not None:
            WebhookDelivery.create(
                id=new_id("whd"), account_id=delivery.account_id, webhook_id=delivery.webhook_id,
                event_id=delivery.event_id, attempt=delivery.attempt + 1, status="pending",
                next_attempt_at=next_at, created_at=now)
        if hook is not None:
            _update_health(hook, ok, now, disable, settings.webhook_disable_after)


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


def sweep() -> int:
    """Enqueue every pending delivery that is due and not leased; returns how many."""
    now = utcnow()
    with db.connection_context():
        due = [d.id for d in WebhookDelivery.select(WebhookDelivery.id).where(
            (WebhookDelivery.status == "pending") & (WebhookDelivery.next_attempt_at <= now)
            & (WebhookDelivery.locked_until.is_null() | (WebhookDelivery.locked_until < now))
        ).order_by(WebhookDelivery.next_attempt_at).limit(SWEEP_BATCH)]
    if due:
        queue.enqueue_deliveries(due)
    return len(due)
