"""`/api/v1/stream[/{entity}]`: the account's events as Server-Sent Events.

The first message is `data: {"type":"connected"}`; then each event as an
unnamed message with `id:` and `data:`; `: ping` comments every
`SSE_HEARTBEAT_SECONDS`. `Last-Event-ID` (or `?lastEventId=`) replays the
events committed after that id from the event log, then continues live with
no gap and no duplicate at the seam. A revoked key's stream closes at the next
heartbeat. Auth by Bearer header or `?access_token=` (for EventSource).
"""

import json
import queue
import time
from collections import OrderedDict

from flask import Response, request
from flask_smorest import Blueprint

from api import config
from api.auth import accepts_query_token, current_account_id, requires
from api.docs import SSE_EVENT_SCHEMA, ErrorSchema, entity_path_parameter
from api.entities import BY_PATH
from api.errors import APIError, NotFound, ValidationFailed
from api.models import ApiKey, Event
from api.services import events
from api.store import db
from api.streams import SHUTDOWN, Resync, hub

blp = Blueprint("stream", __name__, url_prefix="/api/v1/stream",
                description="Server-Sent Events of the account's events (read scope).")

REPLAY_LIMIT = 10000
RETRY_MS = 3000
CONNECTED = '{"type":"connected"}'
STREAM_PARAMS = ("types", "lastEventId", "access_token")


def _format(event: dict) -> str:
    return f"id: {event['id']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


def _filter(prefix: str | None, types: set[str] | None):
    def accepts(event: dict) -> bool:
        kind = event.get("type", "")
        return (prefix is None or kind.startswith(prefix)) and (types is None or kind in types)
    return accepts


def _parse_types() -> set[str] | None:
    unknown = [k for k in request.args if k not in STREAM_PARAMS]
    if unknown:
        raise ValidationFailed({k: ["Unknown query parameter."] for k in unknown})
    raw = request.args.get("types")
    if raw is None:
        return None
    types = {t.strip() for t in raw.split(",") if t.strip()}
    bad = sorted(t for t in types if t not in events.event_types())
    if not types or bad:
        raise ValidationFailed({"types": [f"Unknown event types: {', '.join(bad) or '(none)'}."]})
    return types


def _replay(account_id: str, accepts, after: str | None = None, since=None) -> list[dict]:
    """Events from the log after an event id, or created since a time, oldest first."""
    condition = Event.account_id == account_id
    if after is not None:
        condition &= Event.id > after
    if since is not None:
        condition &= Event.created_at >= since
    with db.connection_context():
        rows = Event.select().where(condition).order_by(Event.id).limit(REPLAY_LIMIT)
        return [e for e in (events.as_json(r) for r in rows) if accepts(e)]


class SentIds:
    """The ids a stream has sent lately (bounded), so nothing is sent twice."""

    def __init__(self, capacity: int = 50_000):
        self.capacity = capacity
        self.ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event_id: str) -> None:
        self.ids[event_id] = None
        if len(self.ids) > self.capacity:
            self.ids.popitem(last=False)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.ids


def _key_revoked(key_id: str) -> bool:
    with db.connection_context():
        key = ApiKey.get_or_none(ApiKey.id == key_id)
        return key is None or key.revoked_at is not None


def _open(prefix: str | None):
    from flask import g

    settings = config.current()
    if hub.open_streams >= settings.sse_max_streams:
        raise APIError(503, "SERVICE_UNAVAILABLE", "Too many open streams on this server.",
                       {"service": "streams"}, headers={"Retry-After": "5"})
    accepts = _filter(prefix, _parse_types())
    last_id = request.headers.get("Last-Event-ID") or request.args.get("lastEventId")
    if last_id is not None and (len(last_id) > 64 or "\x00" in last_id):
        raise ValidationFailed({"lastEventId": ["Not an event id."]})
    account_id, key_id = current_account_id(), g.api_key.id

    def generate():
        subscription = hub.subscribe(account_id, accepts)
        try:
            # On a fresh process the hub thread may not have subscribed yet: an event
            # published before it does would be lost to a client already told "connected".
            hub.connected.wait(timeout=5)
            yield f"retry: {RETRY_MS}\ndata: {CONNECTED}\n\n"
            sent = SentIds()
            if last_id:
                for event in _replay(account_id, accepts, after=last_id):
                    sent.add(event["id"])
                    yield _format(event)
            checked = time.monotonic()
            while True:
                try:
                    event = subscription.messages.get(timeout=settings.sse_heartbeat_seconds)
                except queue.Empty:
                    event = None
                if time.monotonic() - checked >= settings.sse_heartbeat_seconds:
                    if _key_revoked(key_id) or subscription.overflowed:
                        return
                    checked = time.monotonic()
                if event is None:
                    yield ": ping\n\n"
                    continue
                if event is SHUTDOWN:
                    return
                replayed = (_replay(account_id, accepts, since=event.since)
                            if isinstance(event, Resync) else [event])
                for item in replayed:
                    if item["id"] not in sent:
                        sent.add(item["id"])
                        yield _format(item)
        finally:
            hub.unsubscribe(subscription)

    response = Response(generate(), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


STREAM_DOC = {
    "parameters": [
        {"in": "query", "name": "types", "schema": {"type": "string"},
         "description": "Comma-separated event types to receive."},
        {"in": "query", "name": "lastEventId", "schema": {"type": "string"},
         "description": "Replay events after this id (or send the Last-Event-ID header)."},
        {"in": "query", "name": "access_token", "schema": {"type": "string"},
         "description": "The API key, for EventSource (which cannot send headers)."},
        {"in": "header", "name": "Last-Event-ID", "required": False, "schema": {"type": "string"},
         "description": "Replay events after this id (sent by EventSource on reconnect)."},
    ],
    "responses": {"200": {"description": "An event stream that stays open.",
                          "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}}},
}


@blp.route("", methods=["GET"])
@requires("read")
@accepts_query_token
@blp.doc(summary="Stream all of the account's events", **STREAM_DOC)
@blp.alt_response(400, schema=ErrorSchema)
def stream_all():
    return _open(None)


@blp.route("/<string:entity_path>", methods=["GET"])
@requires("read")
@accepts_query_token
@blp.doc(summary="Stream one entity's events", **STREAM_DOC)
@blp.doc(parameters=[entity_path_parameter()])
@blp.alt_response(400, schema=ErrorSchema)
@blp.alt_response(404, schema=ErrorSchema)
def stream_entity(entity_path):
    entity = BY_PATH.get(entity_path)
    if entity is None:
        raise NotFound(f"No entity {entity_path[:64]!r}.")
    return _open(f"{entity.name}.")
