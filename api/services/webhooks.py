"""Webhook subscriptions: create, read, change, delete, test, rotate secrets, and the delivery log."""

import json
from datetime import timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates

from api import config, queue, url_guard
from api.errors import Conflict, NotFound, ValidationFailed, flatten_messages
from api.fields import Text, Timestamp
from api.ids import new_id
from api.models import Webhook, WebhookDelivery
from api.services import events
from api.store import transaction
from api.timeutil import utcnow
from api.webhook_signing import generate_secret

SECRET_OVERLAP = timedelta(hours=24)


class WebhookSchema(Schema):
    """A webhook subscription as clients see it (the secret only at creation and rotation)."""

    id = fields.String(dump_only=True)
    url = Text(required=True, validate=validate.Length(1, 2048))
    events = fields.List(Text(), required=True, validate=validate.Length(min=1, max=100))
    description = Text(allow_none=True, load_default=None, validate=validate.Length(max=1000))
    secret = Text(load_only=True, validate=validate.Length(16, 200))
    active = fields.Boolean(truthy={True}, falsy={False})
    disabledReason = fields.String(attribute="disabled_reason", dump_only=True, allow_none=True)
    createdAt = Timestamp(attribute="created_at", dump_only=True)
    updatedAt = Timestamp(attribute="updated_at", dump_only=True)

    @validates("events")
    def _known_types(self, value, **kwargs):
        known = set(events.event_types()) | {"*"}
        unknown = [t for t in value if t not in known]
        if unknown:
            raise ValidationError(f"Unknown event types: {', '.join(unknown[:10])}.")
        if len(set(value)) != len(value):
            raise ValidationError("Event types must not repeat.")


class WebhookWithSecretSchema(WebhookSchema):
    secret = fields.String(dump_only=True, metadata={"description": "Shown only here."})


class DeliverySchema(Schema):
    id = fields.String()
    webhookId = fields.String(attribute="webhook_id")
    eventId = fields.String(attribute="event_id")
    attempt = fields.Integer()
    status = fields.String(metadata={"enum": ["pending", "succeeded", "failed"]})
    responseStatus = fields.Integer(attribute="response_status", allow_none=True)
    responseBody = fields.String(attribute="response_body", allow_none=True)
    durationMs = fields.Integer(attribute="duration_ms", allow_none=True)
    error = fields.String(allow_none=True)
    nextAttemptAt = Timestamp(attribute="next_attempt_at", allow_none=True)
    createdAt = Timestamp(attribute="created_at")
    finishedAt = Timestamp(attribute="finished_at", allow_none=True)


def serialize(row: Webhook, with_secret: bool = False) -> dict:
    data = WebhookSchema().dump(row)
    data["events"] = json.loads(row.events)
    data["active"] = bool(row.active)
    if with_secret:
        data["secret"] = row.secret
    return data


def _load(payload: dict, partial: bool) -> dict:
    if payload.get("events") == "*":
        payload = {**payload, "events": ["*"]}
    try:
        values = WebhookSchema().load(payload, partial=partial)
    except ValidationError as exc:
        raise ValidationFailed(flatten_messages(exc.messages)) from exc
    if "url" in values:
        problem = url_guard.problem_with(values["url"], config.current().webhook_allow_private)
        if problem:
            raise ValidationFailed({"url": [problem]})
    return values


def create(account_id: str, payload: dict) -> Webhook:
    values = _load(payload, partial=False)
    now = utcnow()
    return Webhook.create(
        id=new_id("wh"), account_id=account_id, url=values["url"],
        events=json.dumps(values["events"]), description=values.get("description"),
        secret=values.get("secret") or generate_secret(), active=values.get("active", True),
        created_at=now, updated_at=now,
    )


def get(account_id: str, webhook_id: str) -> Webhook:
    # No id holds a NUL, and PostgreSQL refuses one in a query (a 500 otherwise).
    row = None if "\x00" in webhook_id else Webhook.get_or_none(
        (Webhook.id == webhook_id) & (Webhook.account_id == account_id))
    if row is None:
        raise NotFound(f"Webhook {webhook_id[:64]} not found.")
    return row


def list_for(account_id: str) -> list[Webhook]:
    return list(Webhook.select().where(Webhook.account_id == account_id)
                .order_by(Webhook.id.desc()))


def update(account_id: str, webhook_id: str, payload: dict) -> Webhook:
    values = _load(payload, partial=True)
    if "secret" in values:
        raise ValidationFailed({"secret": ["Use POST /webhooks/{id}/rotate-secret to change it."]})
    with transaction():
        row = get(account_id, webhook_id)
        for name in ("url", "description", "active"):
            if name in values:
                setattr(row, name, values[name])
        if "events" in values:
            row.events = json.dumps(values["events"])
        if values.get("active"):
            row.disabled_reason = None
            row.failing_since = None
        row.updated_at = utcnow()
        row.save()
    return row


def delete(account_id: str, webhook_id: str) -> None:
    with transaction():
        row = get(account_id, webhook_id)
        WebhookDelivery.delete().where(WebhookDelivery.webhook_id == row.id).execute()
        row.delete_instance()


def rotate_secret(account_id: str, webhook_id: str) -> Webhook:
    """A new secret; the old one keeps signing beside it for 24 hours."""
    with transaction():
        row = get(account_id, webhook_id)
        row.previous_secret = row.secret
        row.previous_secret_expires_at = utcnow() + SECRET_OVERLAP
        row.secret = generate_secret()
        row.updated_at = utcnow()
        row.save()
    return row


def send_test(account_id: str, webhook_id: str) -> dict:
    """Emit a `webhook.test` event delivered to this webhook only, whatever its `events`."""
    with transaction():
        row = get(account_id, webhook_id)
        if not row.active:
            raise Conflict("This webhook is disabled; re-enable it with PATCH {\"active\": true}.")
        [event] = events.emit(account_id, "webhook.test",
                              [{"webhookId": row.id, "message": "This is a test delivery."}],
                              webhook_ids=[row.id])
    return event


def deliveries(account_id: str, webhook_id: str, limit: int, before: str | None = None,
               status: str | None = None) -> tuple[list[WebhookDelivery], bool]:
    """A page of the delivery log, newest attempt first, and whether there is more."""
    get(account_id, webhook_id)
    query = WebhookDelivery.select().where(
        (WebhookDelivery.webhook_id == webhook_id) & (WebhookDelivery.account_id == account_id))
    if before:
        query = query.where(WebhookDelivery.id < before)
    if status:
        query = query.where(WebhookDelivery.status == status)
    rows = list(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1))
    return rows[:limit], len(rows) > limit


def redeliver(account_id: str, webhook_id: str, delivery_id: str) -> WebhookDelivery:
    """A new attempt for the delivery's event, due now."""
    with transaction():
        get(account_id, webhook_id)
        original = None if "\x00" in delivery_id else WebhookDelivery.get_or_none(
            (WebhookDelivery.id == delivery_id) & (WebhookDelivery.webhook_id == webhook_id)
            & (WebhookDelivery.account_id == account_id))
        if original is None:
            raise NotFound(f"Delivery {delivery_id[:64]} not found.")
        last = (WebhookDelivery.select(WebhookDelivery.attempt)
                .where((WebhookDelivery.event_id == original.event_id)
                       & (WebhookDelivery.webhook_id == webhook_id))
                .order_by(WebhookDelivery.attempt.desc()).first())
        now = utcnow()
        row = WebhookDelivery.create(
            id=new_id("whd"), account_id=account_id, webhook_id=webhook_id,
            event_id=original.event_id, attempt=last.attempt + 1, status="pending",
            next_attempt_at=now, created_at=now)
    queue.enqueue_deliveries([row.id])
    return row
