"""Webhook delivery: the `deliver` job and the sweeper that re-enqueues due deliveries.

A delivery row is claimed with a lease (so two workers never send the same
attempt at once), POSTed with its signatures over a kept-alive connection,
and its outcome recorded. A failed attempt schedules the next one on
`WEBHOOK_RETRY_SCHEDULE`; the sweeper enqueues it when it is due. Delivery is
at least once: receivers dedupe by `webhook-id`.
"""

import logging
import time

import urllib3

from api import config, queue, redis_conn, url_guard
from api.services import database, deliveries
from api.services.deliveries import Outcome
from api.services.events import as_json_text
from api.timeutil import utcnow
from api.webhook_signing import signature_headers

log = logging.getLogger("quiver.webhooks")

USER_AGENT = "Quiver-Webhooks/1.0"
BODY_LIMIT = 2048
SWEEP_BATCH = 500
CLAIM_GROUP = 5
DRAIN_GROUP = 25

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
    with database.connection():
        for start in range(0, len(delivery_ids), CLAIM_GROUP):
            claimed = deliveries.claim(delivery_ids[start:start + CLAIM_GROUP])
            if not claimed:
                continue
            hooks, event_rows = deliveries.targets(claimed)
            deliveries.record([_attempt(d, hooks.get(d.webhook_id), event_rows[d.event_id])
                               for d in claimed])
            sent += len(claimed)
    return sent


def _attempt(delivery, hook, event) -> Outcome:
    """POST `event` to `hook` for `delivery` (a webhook gone or disabled is not tried)."""
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
    latency = (utcnow() - event.created_at).total_seconds() if ok else None
    return Outcome(delivery, hook, ok=ok, status=response.status,
                   body=_head_of_body(response, started + settings.webhook_timeout)
                   .decode("utf-8", "replace"),
                   duration_ms=int((time.perf_counter() - started) * 1000),
                   error=None if ok else f"HTTP {response.status}", retry=not gone,
                   disable="Endpoint answered 410 Gone." if gone else None, latency=latency)


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


def sweep() -> int:
    """Queue pending deliveries that are due and not leased; returns how many.

    Retries are queued as soon as they are due. First attempts are normally
    queued at commit, so the sweeper only rescues those still waiting after
    `deliveries.RESCUE_AFTER` (a lost enqueue, a Redis outage, a killed worker).
    """
    with database.connection():
        due = deliveries.due(SWEEP_BATCH)
    if due:
        queue.enqueue_deliveries(due)
    return len(due)
