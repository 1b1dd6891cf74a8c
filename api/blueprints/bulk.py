"""Bulk routes, built per entity: `POST /import/{path}`, `PATCH /{path}/bulk`, `POST /{path}/bulk-delete`."""

from functools import cache

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api import config
from api.auth import current_account_id, requires
from api.body_limits import large_body
from api.docs import ErrorSchema, envelope, input_schema, load_view, record_schema, request_body
from api.entities.base import Entity
from api.errors import ValidationFailed, flatten_messages
from api.fields import StrictBoolean, Text
from api.http import json_body, success
from api.rate_limit import limited
from api.services import bulk
from api.services.records import service_for
from api.services.writes import WriteResult


class BulkOptionsSchema(Schema):
    skipInvalid = StrictBoolean(attribute="skip_invalid", load_default=False)
    returnFailures = StrictBoolean(attribute="return_failures", load_default=True)


class ImportBodySchema(Schema):
    items = fields.List(fields.Raw(allow_none=True), required=True,
                        metadata={"description": "Records to create, as for `POST /{entity}`."})
    options = fields.Nested(BulkOptionsSchema)


class BulkUpdateBodySchema(Schema):
    updates = fields.List(fields.Raw(allow_none=True), required=True,
                          metadata={"description": "Objects with `id` and the fields to change."})
    options = fields.Nested(BulkOptionsSchema)


class BulkDeleteBodySchema(Schema):
    ids = fields.List(Text(), required=True)


class FailureSchema(Schema):
    index = fields.Integer()
    item = fields.Raw()
    error = fields.String()
    code = fields.String()
    details = fields.Dict()


class BulkDeleteResultSchema(Schema):
    deleted = fields.Integer()
    notFound = fields.List(fields.String())


@cache
def _result_schema(entity: Entity, count_name: str) -> type[Schema]:
    return type(f"{entity.title}Bulk{count_name.title()}ResultSchema", (Schema,), {
        count_name: fields.Integer(),
        "failed": fields.Integer(),
        "items": fields.List(fields.Nested(record_schema(entity))),
        "failures": fields.List(fields.Nested(FailureSchema)),
    })


@cache
def _doc_bodies(entity: Entity, limit: int) -> tuple[type[Schema], type[Schema]]:
    """The documented import and bulk-update bodies: the schemas that check them (above), with
    the size `_parse` checks (1 to `limit` entries) and the item schema the service checks each
    item with (the entity's own, an update's fields being optional beside its `id`)."""
    update_item = load_view(type(f"{entity.title}BulkUpdateItemSchema", (entity.schema,), {
        "id": Text(required=True, validate=validate.Length(min=1),
                   metadata={"description": f"The {entity.name} to change."})}),
        f"{entity.title}BulkUpdateItem")
    others = tuple(name for name, f in update_item._declared_fields.items()
                   if name != "id" and not f.dump_only)
    import_body = type(f"{entity.title}ImportBodySchema", (ImportBodySchema,), {
        "items": fields.List(fields.Nested(input_schema(entity)), required=True,
                             validate=validate.Length(1, limit))})
    update_body = type(f"{entity.title}BulkUpdateBodySchema", (BulkUpdateBodySchema,), {
        "updates": fields.List(fields.Nested(update_item(partial=others)), required=True,
                               validate=validate.Length(1, limit))})
    return import_body, update_body


@cache
def _doc_delete_body(limit: int) -> type[Schema]:
    """The documented bulk-delete body: `BulkDeleteBodySchema` with the size `_parse` checks."""
    return type("BulkDeleteBodySchema", (BulkDeleteBodySchema,), {
        "ids": fields.List(Text(), required=True, validate=validate.Length(1, limit))})


def _parse(schema: type[Schema], list_name: str) -> dict:
    """Check the body's shape and the list's size before looking at any item."""
    payload = json_body()
    items = payload.get(list_name)
    limit = current_app.config["QUIVER"].bulk_max_items
    if isinstance(items, list) and not 1 <= len(items) <= limit:
        raise ValidationFailed({list_name: [f"Must contain between 1 and {limit} entries."]})
    try:
        parsed = schema().load(payload)
    except ValidationError as exc:
        raise ValidationFailed(flatten_messages(exc.messages)) from exc
    options = parsed.get("options") or {}
    parsed["skip_invalid"] = options.get("skip_invalid", False)
    parsed["return_failures"] = options.get("return_failures", True)
    return parsed


def _body(entity: Entity, count_name: str, result: WriteResult, return_failures: bool) -> dict:
    service = service_for(entity.name)
    data = {
        count_name: len(result.rows),
        "failed": len(result.failures),
        "items": result.data if result.data is not None else service.serialize(
            current_account_id(), result.rows),
    }
    if return_failures:
        data["failures"] = [f.as_json() for f in result.failures]
    return data


def make_blueprint(entity: Entity) -> Blueprint:
    """The bulk routes of one entity."""
    blp = Blueprint(f"{entity.path}-bulk", __name__, url_prefix="/api/v1",
                    description=f"Bulk writes of {entity.path}.")

    limit = config.current().bulk_max_items
    import_body, update_body = _doc_bodies(entity, limit)

    @blp.route(f"/import/{entity.path}")
    class Import(MethodView):
        @requires("write")
        @limited("bulk")
        @large_body
        @blp.doc(summary=f"Create many {entity.path}", **request_body(import_body))
        @blp.response(201, envelope(_result_schema(entity, "created"), f"{entity.title}Import"))
        @blp.alt_response(207, description="Some items failed (skipInvalid).", success=True,
                          schema=envelope(_result_schema(entity, "created"), f"{entity.title}Import"))
        @blp.alt_response(400, schema=ErrorSchema)
        def post(self):
            body = _parse(ImportBodySchema, "items")
            result = bulk.bulk_create(entity, current_account_id(), body["items"],
                                      body["skip_invalid"])
            status = 207 if result.failures else 201
            return success(_body(entity, "created", result, body["return_failures"]), status)

    @blp.route(f"/{entity.path}/bulk")
    class BulkUpdate(MethodView):
        @requires("write")
        @limited("bulk")
        @large_body
        @blp.doc(summary=f"Update many {entity.path}", **request_body(update_body))
        @blp.response(200, envelope(_result_schema(entity, "updated"), f"{entity.title}BulkUpdate"))
        @blp.alt_response(207, description="Some updates failed (skipInvalid).", success=True,
                          schema=envelope(_result_schema(entity, "updated"), f"{entity.title}BulkUpdate"))
        @blp.alt_response(400, schema=ErrorSchema)
        def patch(self):
            body = _parse(BulkUpdateBodySchema, "updates")
            result = bulk.bulk_update(entity, current_account_id(), body["updates"],
                                      body["skip_invalid"])
            status = 207 if result.failures else 200
            return success(_body(entity, "updated", result, body["return_failures"]), status)

    @blp.route(f"/{entity.path}/bulk-delete")
    class BulkDelete(MethodView):
        @requires("write")
        @limited("bulk")
        @large_body
        @blp.doc(summary=f"Delete many {entity.path}", **request_body(_doc_delete_body(limit)))
        @blp.response(200, envelope(BulkDeleteResultSchema, f"{entity.title}BulkDelete"))
        @blp.alt_response(400, schema=ErrorSchema)
        def post(self):
            body = _parse(BulkDeleteBodySchema, "ids")
            deleted, not_found = bulk.bulk_delete(entity, current_account_id(), body["ids"])
            return success({"deleted": len(deleted), "notFound": not_found})

    Import.__name__ = f"{entity.title}Import"
    BulkUpdate.__name__ = f"{entity.title}BulkUpdate"
    BulkDelete.__name__ = f"{entity.title}BulkDelete"
    return blp
