"""`/api/v1/stream[/{entity}]`: the account's events as Server-Sent Events.

The first message is `data: {"type":"connected"}`; then each event as an
unnamed message with `id:` and `data:`; `: ping` comments every
`SSE_HEARTBEAT_SECONDS`. `Last-Event-ID` (or `?lastEventId=`) replays the
events committed after that one from the event log, in commit order, then
continues live with no gap and no duplicate (`api.streams.LogFollower`); when
the id is not in the log or more than `SSE_REPLAY_LIMIT` events were missed,
`data: {"type":"reset"}` comes instead of the replay. A quiet heartbeat also
reads the log past the stream's position, so an event whose Redis message was
lost still arrives within one heartbeat. A revoked key's stream closes at the next
heartbeat. Auth by Bearer header or `?access_token=` (for EventSource).
"""

import queue
import time

from flask import Response, request
from flask_smorest import Blueprint

from api import config
from api.auth import accepts_query_token, current_account_id, requires
from api.docs import SSE_EVENT_SCHEMA, ErrorSchema, entity_path_parameter
from api.entities import BY_PATH
from api.errors import APIError, NotFound, ValidationFailed
from api.services import events, keys
from api.streams import RESYNC, SHUTDOWN, LogFollower, hub

blp = Blueprint("stream", __name__, url_prefix="/api/v1/stream",
                description="Server-Sent Events of the account's events (read scope).")

RETRY_MS = 3000
CONNECTED = '{"type":"connected"}'
STREAM_PARAMS = ("types", "lastEventId", "access_token")


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
        subscription = hub.subscribe(account_id)
        try:
            # On a fresh process the hub thread may not have subscribed yet: an event
            # published before it does would be lost to a client already told "connected".
            hub.connected.wait(timeout=5)
            yield f"retry: {RETRY_MS}\ndata: {CONNECTED}\n\n"
            follower = LogFollower(account_id, accepts, settings.sse_replay_limit)
            yield from follower.resume(last_id) if last_id else follower.start()
            checked = time.monotonic()
            while True:
                try:
                    message = subscription.messages.get(timeout=settings.sse_heartbeat_seconds)
                except queue.Empty:
                    message = None
                if time.monotonic() - checked >= settings.sse_heartbeat_seconds:
                    if keys.is_revoked(key_id) or subscription.overflowed:
                        return
                    checked = time.monotonic()
                if message is None:  # quiet: also the moment to pick up an event whose publish was lost
                    yield from follower.catch_up()
                    yield ": ping\n\n"
                elif message is SHUTDOWN:
                    return
                elif message is RESYNC:
                    yield from follower.catch_up()
                else:
                    yield from follower.live(message)
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
