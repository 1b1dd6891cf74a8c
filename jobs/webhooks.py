"""Webhook delivery: the `deliver` job and the sweeper that re-enqueues due deliveries.

A delivery row is claimed with a lease (so two workers never send the same
attempt at once), POSTed with its signatures over a kept-alive connection,
and its outcome recorded. A failed attempt schedules the next one on
`WEBHOOK_RETRY_SCHEDULE`; the sweeper enqueues it when it is due. Delivery is
at least once: receivers dedupe by `webhook-id`.
"""

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import urllib3

from api import config, queue, redis_conn, url_guard
from api.ids import new_id
from api.models import Event, Webhook, WebhookDelivery
from api.services.events import as_json_text
from api.store import db, execute_many, transaction
from api.timeutil import utcnow
from api.webhook_signing import signature_headers

log = logging.getLogger("quiver.webhooks")

USER_AGENT = "Quiver-Webhooks/1.0"
BODY_LIMIT = 2048
SWEEP_BATCH = 500
CLAIM_GROUP = 5
RECORDED_COLUMNS = ("status", "response_status", "response_body", "duration_ms", "error",
                    "finished_at", "next_attempt_at")
DRAIN_GROUP = 25
RESCUE_AFTER = timedelta(seconds=3)
LEASE_MARGIN = timedelta(seconds=5)

# Connects only to the addresses it checked (see url_guard): no DNS rebinding between check and send.
_http = url_guard.pinned_pool_manager(lambda: config.current().webhook_allow_private,
                                      num_pools=200, maxsize=4, retries=False)


def drain() -> int:
    """Deliver queued ids, a group at a time, until the due list is empty; returns how many were sent."""
    client = redis_conn.client()
    client.delete(queue.DRAIN_FLAG)
    sent = 0
    while True:
        ids = client.lpop(queue.DUE_LIST, DRAIN_GROUP)
        if not ids:
            return sent
        sent += deliver([i.decode() for i in ids])


def deliver(delivery_ids: list[str]) -> int:
    """Send the given pending deliveries that no one else is sending; returns how many were sent.

    Deliveries are claimed a few at a time, so the lease on each (how long
    before another worker may take it over, should this one die) stays short.
    """
    sent = 0
    with db.connection_context():
        for start in range(0, len(delivery_ids), CLAIM_GROUP):
            claimed = _claim(delivery_ids[start:start + CLAIM_GROUP])
            if not claimed:
                continue
            hooks = {h.id: h for h in Webhook.select().where(
                Webhook.id.in_(list({d.webhook_id for d in claimed})))}
            event_rows = {e.id: e for e in Event.select().where(
                Event.id.in_(list({d.event_id for d in claimed})))}
            _record([_attempt(d, hooks.get(d.webhook_id), event_rows[d.event_id]) for d in claimed])
            sent += len(claimed)
    return sent


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


def _attempt(delivery: WebhookDelivery, hook: Webhook | None, event: Event) -> Outcome:
    settings = config.current()
    if hook is None or not hook.active:
        return Outcome(delivery, hook, ok=False, error="The webhook is disabled.", retry=False)
    problem = url_guard.problem_with(hook.url, settings.webhook_allow_private)
    if problem:
        return Outcome(delivery, hook, ok=False, error=problem)
    body = as_json_text(event).encode()
    secrets_ = [hook.secret]
    if hook.previous_secret and hook.previous_secret_expires_at and \
            hook.previous_secret_expires_at > utcnow():
        secrets_.append(hook.previous_secret)
    headers = signature_headers(secrets_, event.id, body)
    headers.update({"User-Agent": USER_AGENT, "Content-Type": "application/json"})
    started = time.perf_counter()
    try:
        response = _http.request("POST", hook.url, body=body, headers=headers, redirect=False,
                                 timeout=urllib3.Timeout(total=settings.webhook_timeout),
                                 preload_content=False)
    except urllib3.exceptions.HTTPError as exc:
        return Outcome(delivery, hook, ok=False, error=f"{type(exc).__name__}: {exc}"[:500],
                       duration_ms=int((time.perf_counter() - started) * 1000))
    ok = 200 <= response.status < 300
    gone = response.status == 410
    return Outcome(delivery, hook, ok=ok, status=response.status,
                   body=_head_of_body(response, started + settings.webhook_timeout)
                   .decode("utf-8", "replace"),
                   duration_ms=int((time.perf_counter() - started) * 1000),
                   error=None if ok else f"HTTP {response.status}", retry=not gone,
                   disable="Endpoint answered 410 Gone." if gone else None)


def _head_of_body(response, deadline: float) -> bytes:
    """The first `BODY_LIMIT` bytes of a response body, read until `deadline` at most.

    A receiver cannot make the worker read a huge body into memory or hold it with a
    drip-fed one; a body not read to its end closes its connection.
    """
    kept, ended = b"", False
    try:
        while len(kept) < BODY_LIMIT and time.perf_counter() < deadline:
            chunk = response.read1(BODY_LIMIT - len(kept))
            if not chunk:
                ended = True
                break
            kept += chunk
    except (urllib3.exceptions.HTTPError, OSError):
        pass  # the status decides the outcome; the body is only kept for the log
    if not ended:
        response.close()
    response.release_conn()
    return kept


def _record(outcomes: list[Outcome]) -> None:
    """Store a group of attempts in one transaction; schedule retries or disable webhooks."""
    settings = config.current()
    now = utcnow()
    schedule = settings.webhook_retry_schedule
    rows, retries = [], []
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
    """Queue pending deliveries that are due and not leased; returns how many.

    Retries are queued as soon as they are due. First attempts are normally
    queued at commit, so the sweeper only rescues those still waiting after
    `RESCUE_AFTER` (a lost enqueue, a Redis outage, a killed worker).
    """
    now = utcnow()
    with db.connection_context():
        due = [d.id for d in WebhookDelivery.select(WebhookDelivery.id).where(
            (WebhookDelivery.status == "pending") & (WebhookDelivery.next_attempt_at <= now)
            & ((WebhookDelivery.attempt > 1) | (WebhookDelivery.created_at <= now - RESCUE_AFTER))
            & (WebhookDelivery.locked_until.is_null() | (WebhookDelivery.locked_until < now))
        ).order_by(WebhookDelivery.next_attempt_at).limit(SWEEP_BATCH)]
    if due:
        queue.enqueue_deliveries(due)
    return len(due)
