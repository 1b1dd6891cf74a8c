"""OpenAPI building blocks shared by the blueprints: envelopes, errors, list parameters.

`CommonErrorsPlugin` documents the error responses every operation can give,
derived from the same declarations that enforce them (`@requires`, path
parameters, request bodies), so the document cannot drift from the code.
"""

import re
from functools import cache

from apispec import BasePlugin
from marshmallow import Schema, fields

from api.entities.base import Entity
from api.fields import Ref, Text, Timestamp
from api.query import DEFAULT_LIMIT, MAX_LIMIT, MAX_LIST_VALUES, MAX_PAGE, MAX_VALUE_LENGTH


class ErrorSchema(Schema):
    success = fields.Boolean(required=True, metadata={"enum": [False]})
    error = fields.String(required=True, metadata={"description": "A message for humans."})
    code = fields.String(required=True, metadata={"example": "VALIDATION_FAILED"})
    details = fields.Dict(metadata={"description": "Field path → list of messages, or more facts."})


class ListMetaSchema(Schema):
    page = fields.Integer(allow_none=True)
    limit = fields.Integer()
    total = fields.Integer()
    hasNextPage = fields.Boolean()
    hasPreviousPage = fields.Boolean()
    nextCursor = fields.String(allow_none=True)


def _success() -> fields.Boolean:
    return fields.Boolean(required=True, metadata={"enum": [True]})


@cache
def envelope(schema: type[Schema], name: str) -> type[Schema]:
    """`{"success": true, "data": <schema>}` as a named schema class."""
    return type(f"{name}EnvelopeSchema", (Schema,), {
        "success": _success(),
        "data": fields.Nested(schema, required=True),
    })


@cache
def list_of(schema: type[Schema], name: str, meta: type[Schema] = ListMetaSchema) -> type[Schema]:
    """`{"success": true, "data": [<schema>, ...], "meta": {...}}` as a named schema class."""
    return type(f"{name}EnvelopeSchema", (Schema,), {
        "success": _success(),
        "data": fields.List(fields.Nested(schema), required=True),
        "meta": fields.Nested(meta),
    })


def list_envelope(entity: Entity) -> type[Schema]:
    """`{"success": true, "data": [...], "meta": {...}}` for an entity's list route."""
    return list_of(record_schema(entity), f"{entity.title}List")


def _shown_field(schema_field) -> fields.Field:
    """How a record field looks in a response: `id` is always there, anything else may be null."""
    nullable = bool(schema_field.allow_none) or (
        schema_field.dump_only and isinstance(schema_field, Timestamp)
        and schema_field.attribute not in ("created_at", "updated_at"))
    if isinstance(schema_field, Timestamp):
        return fields.DateTime(allow_none=nullable)
    if isinstance(schema_field, fields.Integer):
        return fields.Integer(allow_none=nullable)
    if isinstance(schema_field, fields.Number):
        return fields.Float(allow_none=nullable)
    if isinstance(schema_field, fields.Boolean):
        return fields.Boolean(allow_none=nullable)
    metadata = {}
    if isinstance(schema_field, Ref):
        metadata["description"] = f"The id of a {schema_field.target}."
    for validator in schema_field.validators:
        if hasattr(validator, "choices"):
            metadata["enum"] = list(validator.choices)
    return fields.String(allow_none=nullable, metadata=metadata)


@cache
def _plain_record_schema(entity: Entity) -> type[Schema]:
    """A record as stored: every field of the entity, without expanded relations."""
    return type(f"{entity.title}RecordSchema", (Schema,), {
        (f.data_key or name): _shown_field(f) for name, f in entity.schema._declared_fields.items()
    })


@cache
def record_schema(entity: Entity) -> type[Schema]:
    """A record in a response: its fields (`fields=` may leave any out) and `expand`ed relations.

    Nothing is `required`, since `fields=` picks; nothing undeclared may appear.
    """
    from api.entities import ENTITIES

    attrs = {(f.data_key or name): _shown_field(f)
             for name, f in entity.schema._declared_fields.items()}
    for relation in entity.relations:
        attrs[relation.name] = fields.Nested(
            _plain_record_schema(ENTITIES[relation.target]), allow_none=True,
            metadata={"description": f"The referenced record, with `expand={relation.name}`."})
    return type(f"{entity.title}Schema", (Schema,), attrs)


@cache
def load_view(schema: type[Schema], name: str, refused: tuple[str, ...] = ()) -> type[Schema]:
    """`schema` as a request body: its fields and checks, without its read-only (`dump_only`) ones.

    It loads exactly what `schema` loads: marshmallow refuses a `dump_only` field in input like
    an unknown one (`unknown=RAISE`, documented as `additionalProperties: false`), so the
    document leaves such fields out instead of listing them as `readOnly`; so are `refused`
    ones, which the route refuses after loading. `name` names the component (`TaskInput` for
    `TaskInputSchema`).
    """
    read_only = tuple(n for n, f in schema._declared_fields.items() if f.dump_only)
    meta = type("Meta", (schema.Meta,), {"exclude": read_only + refused})
    return type(f"{name}Schema", (schema,), {"Meta": meta})


@cache
def input_schema(entity: Entity, partial: bool = False) -> Schema:
    """The request body of a create or replace (`partial=False`) or of a partial update."""
    return load_view(entity.schema, f"{entity.title}{'Patch' if partial else 'Input'}")(partial=partial)


def request_body(schema: type[Schema] | Schema, example: dict | None = None) -> dict:
    """`blp.doc(**request_body(schema))`: a required JSON body, as `schema` (the one that loads it)."""
    content = {"schema": schema, **({"example": example} if example is not None else {})}
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def _name_list(names, description: str) -> dict:
    """A comma-separated list of distinct names (`fields=id,title`)."""
    return {"type": "array", "items": {"type": "string", "enum": list(names)}, "minItems": 1,
            "uniqueItems": True, "description": description}


def shape_parameters(entity: Entity) -> list[dict]:
    """`fields` and `expand` query parameters."""
    relations = [r.name for r in entity.relations]
    params = [_query("fields", "Comma-separated fields to return, e.g. `id,createdAt`.",
                     _name_list([*entity.fields, *relations], "Fields to keep."))]
    if relations:
        params.append(_query("expand", f"Comma-separated relations to embed ({', '.join(relations)}).",
                             _name_list(relations, "Relations to embed.")))
    return [{**p, "style": "form", "explode": False} for p in params]


# One value of an `in`/`nin` list, by field kind (a timestamp: an always valid subset of RFC 3339).
_LISTED = {
    "datetime": "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3])"
                ":[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])",
    "int": "-?[0-9]{1,18}",
    "bool": "(true|false)",
}


def _list_pattern(spec) -> str:
    """`in`/`nin`: 1 to MAX_LIST_VALUES comma-separated values of the field's kind."""
    if spec.kind == "enum":
        one = "(" + "|".join(re.escape(choice) for choice in spec.choices) + ")"
    else:
        one = _LISTED.get(spec.kind, f"[^,\\x00]{{0,{MAX_VALUE_LENGTH}}}")
    return f"^{one}(,{one}){{0,{MAX_LIST_VALUES - 1}}}$"


def _filter_value(spec, op: str) -> dict:
    """The schema of one `field[op]` value."""
    text = {"type": "string", "maxLength": MAX_VALUE_LENGTH, "pattern": NO_NUL}
    if op == "isnull":
        return {"type": "string", "enum": ["true", "false"]}
    if op in ("in", "nin"):
        return {"type": "string", "minLength": 1, "pattern": _list_pattern(spec),
                "description": "Comma-separated values."}
    if op == "contains":
        return text
    if spec.kind == "datetime":
        return {"type": "string", "format": "date-time"}
    if spec.kind == "enum":
        return {"type": "string", "enum": list(spec.choices)}
    if spec.kind == "int":
        return {"type": "integer"}
    if spec.kind == "bool":
        return {"type": "string", "enum": ["true", "false"]}
    return text


def filter_parameter(spec) -> dict:
    """`field=value` and `field[op]=value`, as one `deepObject` parameter named after the field.

    Its example is `{}`, no filter: Swagger UI's "Try it out" pre-fills an object parameter
    with its example, or else with a sample of every operator (`{"eq": "string", "in":
    "string", …}`), which the server rightly refuses.
    """
    name = spec.json_name
    return {
        "in": "query", "name": name, "required": False, "style": "deepObject", "explode": True,
        "description": f"Filter on `{name}`: `{name}[op]=value` with op one of "
                       f"{', '.join(spec.operators)}; `{name}=value` is short for `[eq]`. "
                       f"In Swagger UI, e.g. `{{\"eq\": \"…\"}}` sends `{name}[eq]=…`.",
        "schema": {"type": "object", "additionalProperties": False,
                   "properties": {op: _filter_value(spec, op) for op in spec.operators}},
        "example": {},
    }


def list_parameters(entity: Entity) -> list[dict]:
    """Every query parameter of an entity's list route, filters included."""
    sort_names = [f"{prefix}{name}" for name in entity.sortable for prefix in ("", "-")]
    params = [
        _query("page", "1-based page number.", {"type": "integer", "minimum": 1,
                                                "maximum": MAX_PAGE, "default": 1}),
        _query("limit", "Page size.", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                       "default": DEFAULT_LIMIT}),
        _query("cursor", "Opaque cursor from `meta.nextCursor` (instead of `page`)."),
        {**_query("sort", "Comma-separated sort fields, `-` for descending. Default `-createdAt`.",
                  _name_list(sort_names, "Sort keys.")), "style": "form", "explode": False},
        _query("q", "Case-insensitive substring search over " + ", ".join(entity.searchable) + ".",
               {"type": "string", "maxLength": 200}),
        *shape_parameters(entity),
    ]
    params.extend(filter_parameter(spec) for spec in entity.fields.values())
    return params


def entity_path_parameter() -> dict:
    """The `{entity_path}` of routes that take any entity (`tasks`, `users`, …; others answer 404)."""
    from api.entities import ENTITIES

    return {"in": "path", "name": "entity_path", "required": True,
            "description": "An entity's path segment.",
            "schema": {"type": "string", "enum": [e.path for e in ENTITIES.values()]}}


def _query(name: str, description: str, schema: dict | None = None) -> dict:
    return {"in": "query", "name": name, "required": False, "description": description,
            "schema": schema or {"type": "string"}}


ERROR_DESCRIPTIONS = {
    400: "`VALIDATION_FAILED` (body, query or path invalid; `details` per field) or "
         "`BAD_REQUEST` (malformed JSON, wrong content type).",
    401: "`UNAUTHORIZED`: missing, unknown or revoked API key.",
    403: "`INSUFFICIENT_SCOPE`: the key lacks the scope (`details.required`).",
    404: "`NOT_FOUND`: no such record in the key's account.",
    409: "`CONFLICT` (unique value or state) or `IDEMPOTENCY_IN_PROGRESS`.",
    410: "Gone.",
    412: "`PRECONDITION_FAILED`: `If-Match` does not match the current ETag.",
    413: "`PAYLOAD_TOO_LARGE`: the body or a file is over its limit.",
    415: "`UNSUPPORTED_MEDIA_TYPE`: content of a type that is not accepted.",
    416: "`RANGE_NOT_SATISFIABLE`: the `Range` is outside the content.",
    414: "`URI_TOO_LONG`: the request line is over 4094 bytes (gunicorn's `limit_request_line`).",
    422: "`IDEMPOTENCY_KEY_REUSED`: the `Idempotency-Key` was used with another request.",
    429: "`RATE_LIMIT_EXCEEDED`, with `Retry-After` (`details.limit`, `details.resetAt`).",
    431: "`HEADERS_TOO_LARGE`: a header line is over 8190 bytes, or there are over 100 headers.",
    500: "`INTERNAL_ERROR`.",
    503: "`SERVICE_UNAVAILABLE`: the database or Redis is down (`details.service`).",
}

ERROR_REF = {"$ref": "#/components/schemas/Error"}
NO_NUL = "^[^\\x00]*$"
SSE_EVENT_SCHEMA = {
    "type": "object",
    "description": "One Server-Sent Event: `data` is `{\"type\":\"connected\"}` first, then an "
                   "event's JSON, with the event id as `id`.",
    "required": ["data", "event"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string", "enum": ["message"]},
                   "id": {"type": "string"}, "retry": {"type": "integer"}},
}
IDEMPOTENCY_KEY = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "Replays the first response to the same request for 24 h.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}


def links(status: int, path: str, methods: tuple[str, ...], **parameters: str) -> dict:
    """`blp.doc(**links(...))`: OpenAPI links from a response to the operations of `path`.

    `parameters` maps the target's parameter names to runtime expressions, e.g.
    `record_id="$response.body#/data/id"`. Clients (and the fuzzer's stateful phase) follow them.
    """
    ref = "#/paths/" + path.replace("~", "~0").replace("/", "~1")
    found = {f"{method}{_link_name(path)}": {"operationRef": f"{ref}/{method}", "parameters": parameters}
             for method in methods}
    return {"responses": {status: {"links": found}}}


def _link_name(path: str) -> str:
    words = [w for w in path.replace("{", "").replace("}", "").split("/") if w and w not in ("api", "v1")]
    return "".join(w.replace("-", " ").replace("_", " ").title().replace(" ", "") for w in words)


def strict_nullable_refs(converter, field, ret, **kwargs) -> dict:
    """A nullable nested record as `nullable` + `allOf: [ref]`, not apispec's OpenAPI 3.0 default
    `anyOf: [ref, {type: object, nullable: true}]`, which any object at all would match."""
    any_of = ret.get("anyOf")
    loose = {"type": "object", "nullable": True}
    if isinstance(any_of, list) and len(any_of) == 2 and loose in any_of:
        del ret["anyOf"]
        return {"nullable": True, "allOf": [s for s in any_of if s != loose]}
    return {}


def text_constraints(converter, field, ret, **kwargs) -> dict:
    """A `Text` field refuses NUL characters (no database stores them): a `pattern` says so,
    unless the field documents a pattern or an `enum` of its own. A `Ref` names a record: it
    is not empty, and says what it names."""
    found = {}
    if isinstance(field, Text) and "pattern" not in ret and "enum" not in ret:
        found["pattern"] = NO_NUL
    if isinstance(field, Ref):
        found["minLength"] = max(ret.get("minLength", 0), 1)
        if "description" not in ret:
            found["description"] = f"The id of a {field.target} of the key's account (else 400)."
    return found


def error_response(status: int, description: str | None = None) -> dict:
    """An error response in the envelope, as an OpenAPI response object."""
    return {"description": description or ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": dict(ERROR_REF)}}}


class CommonErrorsPlugin(BasePlugin):
    """Adds to every operation the error responses the service's machinery can give it.

    - every operation: 414 and 431 (gunicorn refuses an over-long request line or headers), 500;
    - authenticated (`@requires`, `@any_scope`): 401, 429 (the key's own limit), 503, and 403
      unless any scope will do;
    - POST and PATCH (authenticated): 400, 409 and 422 from `Idempotency-Key`, which is
      documented as a header parameter (only 400 on `@reveals_secret` routes, which refuse it);
    - a request body: 400 and 413; query or header parameters: 400; path parameters: 404.

    Route-specific errors (412, 415, 416, …) are declared on the route with `alt_response`.
    """

    def __init__(self, app):
        super().__init__()
        self.app = app

    def _view(self, rule, method: str):
        view = self.app.view_functions.get(rule.endpoint)
        view_class = getattr(view, "view_class", None)
        return getattr(view_class, method, None) if view_class is not None else view

    def operation_helper(self, path=None, operations=None, rule=None, **kwargs):
        from api.auth import ANY_SCOPE

        if rule is None or not operations:
            return
        for method, operation in operations.items():
            view = self._view(rule, method)
            scope = getattr(view, "required_scope", "admin")
            statuses = {414, 431, 500}
            parameters = operation.setdefault("parameters", [])
            if scope is not None:
                statuses |= {401, 429, 503}
                if scope != ANY_SCOPE:
                    statuses.add(403)
                if method in ("post", "patch"):
                    statuses.add(400)  # a malformed Idempotency-Key, or one the route refuses
                    if not getattr(view, "reveals_secret", False) and not any(
                            p.get("name") == IDEMPOTENCY_KEY["name"] for p in parameters):
                        statuses |= {409, 422}
                        parameters.append(dict(IDEMPOTENCY_KEY))
            if "requestBody" in operation:
                statuses |= {400, 413}
            if any(p.get("in") in ("query", "header") for p in parameters):
                statuses.add(400)
            if rule.arguments:
                statuses.add(404)
            if not parameters:
                del operation["parameters"]
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                if status not in responses and str(status) not in responses:
                    response = error_response(status)
                    if method == "head":  # the same status, without a body
                        del response["content"]
                    responses[str(status)] = response
