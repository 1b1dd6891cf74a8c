"""`/api/v1/events`: the account's event log (read scope), newest first, cursor-paginated."""

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.auth import current_account_id, requires
from api.docs import ErrorSchema, ListMetaSchema, envelope
from api.errors import NotFound, ValidationFailed
from api.http import success
from api.models import Event
from api.query import DEFAULT_LIMIT, MAX_LIMIT
from api.services import events

blp = Blueprint("events", __name__, url_prefix="/api/v1/events",
                description="Events: one per committed write.")


class EventSchema(Schema):
    id = fields.String()
    type = fields.String(metadata={"example": "task.updated"})
    createdAt = fields.String()
    data = fields.Dict()
    previousAttributes = fields.Dict(metadata={"description": "Changed fields as they were (updates)."})


class EventListSchema(Schema):
    success = fields.Boolean()
    data = fields.List(fields.Nested(EventSchema))
    meta = fields.Nested(ListMetaSchema)


def _list_args() -> tuple[int, str | None, list[str] | None]:
    errors = {}
    unknown = [k for k in request.args if k not in ("limit", "cursor", "type")]
    for key in unknown:
        errors[key] = ["Unknown query parameter."]
    raw_limit = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        errors["limit"] = [f"Must be an integer between 1 and {MAX_LIMIT}."]
    cursor = request.args.get("cursor")
    if cursor is not None and not (cursor.startswith("evt_") and cursor.isascii()
                                   and cursor[4:].isalnum()):
        errors["cursor"] = ["Malformed cursor."]
    types = request.args.get("type")
    type_list = [t.strip() for t in types.split(",")] if types else None
    if type_list and any(t not in events.event_types() for t in type_list):
        errors["type"] = ["Unknown event type."]
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return int(raw_limit), cursor, type_list


@blp.route("")
class Events(MethodView):
    @requires("read")
    @blp.doc(parameters=[
        {"in": "query", "name": "type", "style": "form", "explode": False,
         "schema": {"type": "array", "minItems": 1,
                    "items": {"type": "string", "enum": events.event_types()}},
         "description": "Comma-separated event types."},
        {"in": "query", "name": "limit", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
        {"in": "query", "name": "cursor", "schema": {"type": "string", "pattern": "^evt_[0-9A-Za-z]+$"},
         "description": "`meta.nextCursor` of the previous page."},
    ])
    @blp.response(200, EventListSchema)
    @blp.alt_response(400, schema=ErrorSchema)
    def get(self):
        limit, cursor, types = _list_args()
        query = Event.select().where(Event.account_id == current_account_id())
        if types:
            query = query.where(Event.type.in_(types))
        total = query.count()
        if cursor:
            query = query.where(Event.id < cursor)
        rows = list(query.order_by(Event.id.desc()).limit(limit + 1))
        has_next = len(rows) > limit
        rows = rows[:limit]
        meta = {"page": None, "limit": limit, "total": total, "hasNextPage": has_next,
                "hasPreviousPage": cursor is not None,
                "nextCursor": rows[-1].id if has_next else None}
        return success([events.as_json(r) for r in rows], meta=meta)


@blp.route("/<string:event_id>")
class EventItem(MethodView):
    @requires("read")
    @blp.response(200, envelope(EventSchema, "Event"))
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, event_id):
        # No id holds a NUL, and PostgreSQL refuses one in a query (a 500 otherwise).
        row = None if "\x00" in event_id else Event.get_or_none(
            (Event.id == event_id) & (Event.account_id == current_account_id()))
        if row is None:
            raise NotFound(f"Event {event_id[:64]} not found.")
        return success(events.as_json(row))
