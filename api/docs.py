"""OpenAPI building blocks shared by the blueprints: envelopes, errors, list parameters."""

from functools import cache

from marshmallow import Schema, fields

from api.entities.base import Entity
from api.query import DEFAULT_LIMIT, MAX_LIMIT


class ErrorSchema(Schema):
    success = fields.Boolean(metadata={"example": False})
    error = fields.String(metadata={"description": "A message for humans."})
    code = fields.String(metadata={"example": "VALIDATION_FAILED"})
    details = fields.Dict(metadata={"description": "Field path → list of messages, or more facts."})


class ListMetaSchema(Schema):
    page = fields.Integer(allow_none=True)
    limit = fields.Integer()
    total = fields.Integer()
    hasNextPage = fields.Boolean()
    hasPreviousPage = fields.Boolean()
    nextCursor = fields.String(allow_none=True)


@cache
def envelope(schema: type[Schema], name: str) -> type[Schema]:
    """`{"success": true, "data": <schema>}` as a named schema class."""
    return type(f"{name}EnvelopeSchema", (Schema,), {
        "success": fields.Boolean(metadata={"example": True}),
        "data": fields.Nested(schema),
    })


@cache
def list_envelope(entity: Entity) -> type[Schema]:
    """`{"success": true, "data": [...], "meta": {...}}` for an entity's list route."""
    return type(f"{entity.title}ListEnvelopeSchema", (Schema,), {
        "success": fields.Boolean(metadata={"example": True}),
        "data": fields.List(fields.Nested(entity.schema)),
        "meta": fields.Nested(ListMetaSchema),
    })


def shape_parameters(entity: Entity) -> list[dict]:
    """`fields` and `expand` query parameters."""
    relations = ", ".join(r.name for r in entity.relations) or "none"
    return [
        _query("fields", "Comma-separated fields to return, e.g. `id,createdAt`."),
        _query("expand", f"Comma-separated relations to embed ({relations})."),
    ]


def list_parameters(entity: Entity) -> list[dict]:
    """Every query parameter of an entity's list route, filters included."""
    params = [
        _query("page", "1-based page number.", {"type": "integer", "minimum": 1, "default": 1}),
        _query("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                       "default": DEFAULT_LIMIT}),
        _query("cursor", "Opaque cursor from `meta.nextCursor` (instead of `page`)."),
        _query("sort", "Comma-separated sort fields, `-` for descending. Sortable: "
               + ", ".join(entity.sortable) + ". Default `-createdAt`."),
        _query("q", "Case-insensitive substring search over " + ", ".join(entity.searchable) + "."),
        *shape_parameters(entity),
    ]
    for spec in entity.fields.values():
        params.append(_query(spec.json_name, f"Filter: {spec.json_name} equals the value."))
        params.append(_query(
            f"{spec.json_name}[op]",
            f"Filter with an operator, op one of: {', '.join(spec.operators)}.",
        ))
    return params


def _query(name: str, description: str, schema: dict | None = None) -> dict:
    return {"in": "query", "name": name, "required": False, "description": description,
            "schema": schema or {"type": "string"}}


ERROR_RESPONSES = {
    400: "Validation failed or malformed request.",
    401: "Missing, unknown or revoked API key.",
    403: "The key lacks the required scope.",
}
