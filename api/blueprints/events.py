"""`/api/v1/events`: the account's event log (read scope): newest first, cursor-paginated, or
forward from an event (`after`) in commit order, for pollers."""

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.auth import current_account_id, requires
from api.docs import ErrorSchema, ListMetaSchema, envelope
from api.errors import ValidationFailed
from api.http import success
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


def _event_id_arg(name: str, errors: dict) -> str | None:
    value = request.args.get(name)
    if value is not None and not (value.startswith("evt_") and value.isascii()
                                  and value[4:].isalnum()):
        errors[name] = ["Not an event id."]
    return value


def _list_args() -> tuple[int, str | None, str | None, list[str] | None]:
    errors = {}
    unknown = [k for k in request.args if k not in ("limit", "cursor", "after", "type")]
    for key in unknown:
        errors[key] = ["Unknown query parameter."]
    raw_limit = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        errors["limit"] = [f"Must be an integer between 1 and {MAX_LIMIT}."]
    cursor, after = _event_id_arg("cursor", errors), _event_id_arg("after", errors)
    if cursor is not None and after is not None:
        errors["after"] = ["Give `after` (forward) or `cursor` (backward), not both."]
    types = request.args.get("type")
    type_list = [t.strip() for t in types.split(",")] if types else None
    if type_list and any(t not in events.event_types() for t in type_list):
        errors["type"] = ["Unknown event type."]
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return int(raw_limit), cursor, after, type_list


def _forward(account_id: str, after: str, limit: int, types: list[str] | None):
    """The page of the log after the event `after`, oldest first (for pollers)."""
    position = events.position_of(account_id, after)
    if position is None:
        raise ValidationFailed({"after": ["No such event in the log (it may have been removed): "
                                          "resynchronise, then follow from a newer event."]})
    rows = events.after(account_id, position, limit + 1, types)
    has_next = len(rows) > limit
    rows = rows[:limit]
    total = events.count_after(account_id, position, types)
    meta = {"page": None, "limit": limit, "total": total, "hasNextPage": has_next,
            "hasPreviousPage": True, "nextCursor": None}
    return success([events.as_json(r) for r in rows], meta=meta)


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
         "description": "`meta.nextCursor` of the previous page (newest first)."},
        {"in": "query", "name": "after", "schema": {"type": "string", "pattern": "^evt_[0-9A-Za-z]+$"},
         "description": "Follow the log forward: the events committed after this one, oldest "
                        "first, in commit order. Poll again with the last id received."},
    ])
    @blp.response(200, EventListSchema)
    @blp.alt_response(400, schema=ErrorSchema)
    def get(self):
        limit, cursor, after, types = _list_args()
        account_id = current_account_id()
        if after is not None:
            return _forward(account_id, after, limit, types)
        rows, total, has_next = events.newest_first(account_id, limit, cursor, types)
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
        return success(events.as_json(events.get(current_account_id(), event_id)))
