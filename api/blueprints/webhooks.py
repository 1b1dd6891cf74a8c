"""`/api/v1/webhooks`: subscriptions, test sends, secret rotation and the delivery log (admin)."""

import re

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import current_account_id, requires
from api.blueprints.events import EventSchema
from api.docs import ErrorSchema, envelope, links, list_of, load_view, request_body
from api.errors import ValidationFailed
from api.http import json_body, no_content, success
from api.idempotency import reveals_secret
from api.query import MAX_LIMIT
from api.services import events, webhooks
from api.services.webhooks import DeliverySchema, WebhookSchema, WebhookWithSecretSchema

blp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks",
                description="Webhook subscriptions and deliveries (admin scope).")


class TestSentSchema(Schema):
    eventId = fields.String()
    event = fields.Nested(EventSchema)


def _input_view(name: str, refused: tuple[str, ...] = ()) -> type[Schema]:
    """`WebhookSchema` as a request body, with what the service checks beyond it documented:
    `url` (`url_guard`: http(s), a host, no credentials) and `events` (known types, no repeats);
    without the `refused` fields."""
    return type(f"{name}Schema", (load_view(WebhookSchema, name, refused),), {
        "url": fields.String(required=True, validate=validate.Length(1, 2048), metadata={
            "format": "uri", "pattern": "^https?://[A-Za-z0-9.-]+(:[1-9][0-9]{0,3})?([/?#][!-~]*)?$",
            "description": "http(s), with a host that resolves; private, loopback and link-local "
                           "hosts are refused unless WEBHOOK_ALLOW_PRIVATE=true."}),
        "events": fields.List(fields.String(validate=validate.OneOf([*events.event_types(), "*"])),
                              required=True, validate=validate.Length(1, 100),
                              metadata={"uniqueItems": True}),
    })


WebhookInputSchema = _input_view("WebhookInput")
# `PATCH` takes any of the fields but the secret, which changes only by rotation (`webhooks.update`).
WebhookPatchSchema = _input_view("WebhookPatch", refused=("secret",))


ITEM = "/api/v1/webhooks/{webhook_id}"
NEW_ID = {"webhook_id": "$response.body#/data/id"}
SAME_ID = {"webhook_id": "$request.path.webhook_id"}


def _deliveries(rows) -> list[dict]:
    schema = DeliverySchema()
    return [schema.dump(r) for r in rows]


@blp.route("")
class Webhooks(MethodView):
    @requires("admin")
    @blp.response(200, list_of(WebhookSchema, "WebhookList"))
    def get(self):
        return success([webhooks.serialize(w) for w in webhooks.list_for(current_account_id())])

    @requires("admin")
    @reveals_secret
    @blp.doc(**request_body(WebhookInputSchema))
    @blp.response(201, envelope(WebhookWithSecretSchema, "CreatedWebhook"))
    @blp.doc(**links(201, ITEM, ("get", "patch", "delete"), **NEW_ID))
    @blp.doc(**links(201, f"{ITEM}/test", ("post",), **NEW_ID))
    @blp.doc(**links(201, f"{ITEM}/rotate-secret", ("post",), **NEW_ID))
    @blp.doc(**links(201, f"{ITEM}/deliveries", ("get",), **NEW_ID))
    @blp.alt_response(400, schema=ErrorSchema)
    def post(self):
        row = webhooks.create(current_account_id(), json_body())
        return success(webhooks.serialize(row, with_secret=True), 201,
                       headers={"Location": f"/api/v1/webhooks/{row.id}"})


@blp.route("/<string:webhook_id>")
class WebhookItem(MethodView):
    @requires("admin")
    @blp.response(200, envelope(WebhookSchema, "Webhook"))
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, webhook_id):
        return success(webhooks.serialize(webhooks.get(current_account_id(), webhook_id)))

    @requires("admin")
    @blp.doc(**request_body(WebhookPatchSchema(partial=True)))
    @blp.response(200, envelope(WebhookSchema, "UpdatedWebhook"))
    @blp.alt_response(400, schema=ErrorSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def patch(self, webhook_id):
        row = webhooks.update(current_account_id(), webhook_id, json_body())
        return success(webhooks.serialize(row))

    @requires("admin")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    def delete(self, webhook_id):
        webhooks.delete(current_account_id(), webhook_id)
        return no_content()


@blp.route("/<string:webhook_id>/test", methods=["POST"])
@requires("admin")
@blp.response(202, envelope(TestSentSchema, "WebhookTestSent"))
@blp.doc(**links(202, f"{ITEM}/deliveries", ("get",), **SAME_ID))
@blp.alt_response(404, schema=ErrorSchema)
def send_test(webhook_id):
    event = webhooks.send_test(current_account_id(), webhook_id)
    return success({"eventId": event["id"], "event": events.as_json(event)}, 202)


@blp.route("/<string:webhook_id>/rotate-secret", methods=["POST"])
@requires("admin")
@reveals_secret
@blp.response(200, envelope(WebhookWithSecretSchema, "RotatedWebhook"))
@blp.alt_response(404, schema=ErrorSchema)
def rotate_secret(webhook_id):
    row = webhooks.rotate_secret(current_account_id(), webhook_id)
    return success(webhooks.serialize(row, with_secret=True))


@blp.route("/<string:webhook_id>/deliveries", methods=["GET"])
@requires("admin")
@blp.doc(parameters=[
    {"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"in": "query", "name": "cursor", "schema": {"type": "string", "pattern": "^whd_[0-9A-Za-z]{1,40}$"},
     "description": "`meta.nextCursor` of the previous page."},
    {"in": "query", "name": "status", "schema": {"type": "string",
                                                 "enum": ["pending", "succeeded", "failed"]}},
])
@blp.response(200, list_of(DeliverySchema, "DeliveryList"))
@blp.doc(**links(200, f"{ITEM}/deliveries/{{delivery_id}}/redeliver", ("post",), **SAME_ID,
                 delivery_id="$response.body#/data/0/id"))
@blp.alt_response(400, schema=ErrorSchema)
@blp.alt_response(404, schema=ErrorSchema)
def list_deliveries(webhook_id):
    errors = {k: ["Unknown query parameter."] for k in request.args
              if k not in ("limit", "cursor", "status")}
    limit = request.args.get("limit", "50")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT):
        errors["limit"] = [f"Must be an integer between 1 and {MAX_LIMIT}."]
    cursor = request.args.get("cursor")
    if cursor is not None and not re.fullmatch(r"whd_[0-9A-Za-z]{1,40}", cursor):
        errors["cursor"] = ["Malformed cursor."]
    status = request.args.get("status")
    if status is not None and status not in ("pending", "succeeded", "failed"):
        errors["status"] = ["Must be one of: pending, succeeded, failed."]
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    rows, more = webhooks.deliveries(current_account_id(), webhook_id, int(limit), cursor, status)
    meta = {"limit": int(limit), "hasNextPage": more, "nextCursor": rows[-1].id if more else None}
    return success(_deliveries(rows), meta=meta)


@blp.route("/<string:webhook_id>/deliveries/<string:delivery_id>/redeliver", methods=["POST"])
@requires("admin")
@blp.response(202, envelope(DeliverySchema, "Redelivery"))
@blp.alt_response(404, schema=ErrorSchema)
def redeliver(webhook_id, delivery_id):
    row = webhooks.redeliver(current_account_id(), webhook_id, delivery_id)
    return success(_deliveries([row])[0], 202)
