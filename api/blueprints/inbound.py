"""`POST /api/v1/inbound/{source}`: another service's signed webhooks (no API key).

The source's verifier authenticates the request (`api.inbound_signing`): unsigned, badly
signed or stale requests answer 401 and store nothing. A source whose secret or account
is not set in the environment does not exist (404). A verified event is stored once per
sender's event id and answered 202 at once (a redelivery 200, `duplicate: true`); its
handler runs in an `inbound` job (`GET /api/v1/jobs?type=inbound`).
"""

import logging
import re

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api import sources
from api.auth import public
from api.docs import ErrorSchema, envelope
from api.errors import APIError, NotFound, ValidationFailed
from api.http import json_body, raw_body, success
from api.inbound_signing import InvalidSignature
from api.services import inbound

log = logging.getLogger("quiver.inbound")

blp = Blueprint("inbound", __name__, url_prefix="/api/v1",
                description="Inbound webhooks: signed events from other services.")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InboundAcceptedSchema(Schema):
    id = fields.String(required=True, metadata={"description": "The stored event (`inb_…`)."})
    source = fields.String(required=True)
    eventId = fields.String(required=True, metadata={"description": "The sender's event id."})
    type = fields.String(required=True, allow_none=True)
    jobId = fields.String(required=True, metadata={"description": "The `inbound` job handling it."})
    duplicate = fields.Boolean(required=True, metadata={"description": "A redelivery of a stored event."})


ACCEPTED = envelope(InboundAcceptedSchema, "InboundAccepted")
SOURCE_PARAMETER = {"in": "path", "name": "source", "required": True, "description":
                    "A declared source whose secret and account are configured; others answer 404.",
                    "schema": {"type": "string"}}
DESCRIPTION = (
    "Signed with the source's scheme: Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
    "`webhook-signature`) or Stripe (`Stripe-Signature: t=…,v1=…`). No API key.")


def _checked_text(value, field: str, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or _CONTROL.search(value):
        raise ValidationFailed({field: [f"Must be 1 to {limit} characters without control characters."]})
    return value


@blp.route("/inbound/<string:source>", methods=["POST"])
@public
@blp.doc(security=[], summary="Receive a signed webhook from another service", description=DESCRIPTION,
         parameters=[SOURCE_PARAMETER],
         requestBody={"required": True, "content": {"application/json": {"schema": {"type": "object"}}}})
@blp.response(202, ACCEPTED, description="Stored; its job is queued.")
@blp.alt_response(200, schema=ACCEPTED, description="A redelivery: already stored, not handled again.")
@blp.alt_response(401, schema=ErrorSchema, description="`UNAUTHORIZED`: unsigned, badly signed or stale.")
@blp.alt_response(404, schema=ErrorSchema, description="`NOT_FOUND`: no such source, or its secret or "
                  "account is not set.")
@blp.alt_response(503, schema=ErrorSchema, description="`SERVICE_UNAVAILABLE`: the database is down.")
def receive(source):
    found = sources.find(source)
    secret, account_id = (found.secret(), found.account_id()) if found else (None, None)
    if not secret or not account_id:
        raise NotFound(f"No inbound source {source[:64]!r}.")
    body = raw_body()
    try:
        found.verifier.verify(body, request.headers, secret, found.tolerance)
    except InvalidSignature as exc:
        raise APIError(401, "UNAUTHORIZED", f"Invalid webhook signature: {exc}.") from exc
    payload = json_body()
    event_id = _checked_text(found.verifier.event_id(request.headers, payload), "eventId", 255)
    event_type = payload.get("type")
    if not isinstance(event_type, str) or len(event_type) > 200 or _CONTROL.search(event_type):
        event_type = None  # the handler still has the whole payload
    if not inbound.account_exists(account_id):
        log.warning("inbound source %s: %s names no account", source, found.account_env)
        raise NotFound(f"No inbound source {source[:64]!r}.")
    row, created = inbound.receive(source, account_id, event_id, event_type, body)
    return success(inbound.as_json(row, duplicate=not created), 202 if created else 200)
