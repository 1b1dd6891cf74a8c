"""Every JSON request body in the OpenAPI document is the schema that validates it (issue 18 #10).

`VALIDATORS` names, for each operation with a JSON body, the marshmallow schema the code
loads that body with. The documented schema must say what it says: the same fields (less
the read-only ones, which are refused like unknown ones, and any the route refuses after
loading, like a webhook's `secret` on `PATCH`), `additionalProperties: false`
(marshmallow's `unknown=RAISE`), the same required fields, enums, lengths, types and
nullability, recursively (and a reference is never empty); it may say more (a limit the
route checks beside the schema, the event types a validator method checks), never less.
Bulk routes check their items one by one with the entity's schema, so their documented
items are compared with that schema. A body documented as any object (no properties) claims
nothing to compare.
"""

import re

import pytest
from marshmallow import RAISE, Schema, fields, validate

from api.batch import FORWARDED_HEADERS, BatchSchema
from api.blueprints import bulk, jobs
from api.entities import ENTITIES
from api.fields import Ref, Text, Timestamp
from api.graphql.execution import REQUEST_KEYS
from api.services.accounts import ApiKeySchema
from api.services.webhooks import WebhookSchema

BASE = "/api/v1"
NUL = "\x00"


def _validators() -> dict:
    """(method, path) → (schema class, partial, fields the route refuses after loading) of every
    operation with a JSON body."""
    found = {
        ("post", f"{BASE}/api-keys"): (ApiKeySchema, False, ()),
        ("post", f"{BASE}/webhooks"): (WebhookSchema, False, ()),
        ("patch", f"{BASE}/webhooks/{{webhook_id}}"): (WebhookSchema, True, ("secret",)),
        ("post", f"{BASE}/batch"): (BatchSchema, False, ()),
        ("post", f"{BASE}/export/{{entity_path}}"): (jobs.ExportBodySchema, False, ()),
    }
    for entity in ENTITIES.values():
        item = f"{BASE}/{entity.path}/{{record_id}}"
        found[("post", f"{BASE}/{entity.path}")] = (entity.schema, False, ())
        found[("put", item)] = (entity.schema, False, ())
        found[("patch", item)] = (entity.schema, True, ())
        found[("post", f"{BASE}/import/{entity.path}")] = (bulk.ImportBodySchema, False, ())
        found[("patch", f"{BASE}/{entity.path}/bulk")] = (bulk.BulkUpdateBodySchema, False, ())
        found[("post", f"{BASE}/{entity.path}/bulk-delete")] = (bulk.BulkDeleteBodySchema, False, ())
    return found


VALIDATORS = _validators()


@pytest.fixture(scope="module")
def spec(app):
    return app.test_client().get(f"{BASE}/openapi.json").get_json()


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _body(spec: dict, method: str, path: str) -> dict:
    content = spec["paths"][path][method]["requestBody"]["content"]["application/json"]
    return _resolve(spec, content["schema"])


def _json_bodies(spec: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec["paths"].items() for method, op in item.items()
            if method != "parameters"
            and "application/json" in op.get("requestBody", {}).get("content", {})}


def _loaded(schema: type[Schema]) -> dict:
    """The fields a schema loads, by JSON name."""
    return {f.data_key or name: f for name, f in schema._declared_fields.items() if not f.dump_only}


def _validator(field, kind):
    return next((v for v in field.validators if isinstance(v, kind)), None)


TYPES = [(fields.Nested, "object"), (fields.Dict, "object"), (fields.List, "array"),
         (fields.Boolean, "boolean"), (fields.Integer, "integer"), (fields.Number, "number"),
         (Timestamp, "string"), (fields.String, "string")]


def _check_field(spec: dict, field, doc: dict, where: str) -> None:
    doc = _resolve(spec, doc) if "allOf" not in doc else _resolve(spec, doc["allOf"][0])
    if isinstance(field, fields.Raw) and type(field) is fields.Raw:
        return  # anything loads: whatever the document narrows it to is still valid
    kind = next(t for cls, t in TYPES if isinstance(field, cls))
    assert doc.get("type") == kind, (where, doc)
    if isinstance(field, Timestamp):
        assert doc.get("format") == "date-time", where
    if isinstance(field, fields.Email):
        assert doc.get("format") == "email", where
    one_of = _validator(field, validate.OneOf)
    if one_of is not None:
        assert doc.get("enum") == list(one_of.choices), where
    length = _validator(field, validate.Length)
    if length is not None:
        low, high = ("minItems", "maxItems") if kind == "array" else ("minLength", "maxLength")
        assert doc.get(low, 0) >= (length.min or 0), (where, doc)
        if length.max is not None:
            assert doc.get(high, float("inf")) <= length.max, (where, doc)
    if isinstance(field, Text) and "enum" not in doc:
        assert not re.search(doc["pattern"], NUL), (where, "a Text field documents no NUL")
    if isinstance(field, Ref):
        assert doc["minLength"] >= 1 and field.target in doc["description"], where
    if isinstance(field, fields.List):
        _check_field(spec, field.inner, doc["items"], f"{where}[]")
    if isinstance(field, fields.Nested):
        _check_schema(spec, field.schema.__class__, doc, False, where)


def _check_schema(spec: dict, schema: type[Schema], doc: dict, partial: bool, where: str,
                  refused: tuple[str, ...] = ()) -> None:
    doc = _resolve(spec, doc)
    loaded = {name: f for name, f in _loaded(schema).items() if name not in refused}
    assert schema().unknown == RAISE and doc.get("additionalProperties") is False, where
    assert set(doc["properties"]) == set(loaded), (where, set(doc["properties"]) ^ set(loaded))
    required = set() if partial else {n for n, f in loaded.items() if f.required}
    assert set(doc.get("required", [])) == required, where
    for name, field in loaded.items():
        prop = doc["properties"][name]
        assert bool(prop.get("nullable")) == field.allow_none, (where, name)
        _check_field(spec, field, prop, f"{where}.{name}")


def test_every_json_body_has_the_schema_that_validates_it(spec):
    described = {(method, path) for method, path in _json_bodies(spec)
                 if _body(spec, method, path).get("properties")}
    assert described - {("post", f"{BASE}/graphql")} == set(VALIDATORS)
    for (method, path), (schema, partial, refused) in VALIDATORS.items():
        _check_schema(spec, schema, _body(spec, method, path), partial, f"{method} {path}",
                      refused)


def test_bulk_items_are_documented_with_the_entitys_schema_and_the_size_limit(spec, app):
    limit = app.config["QUIVER"].bulk_max_items
    for entity in ENTITIES.values():
        imported = _body(spec, "post", f"{BASE}/import/{entity.path}")["properties"]["items"]
        updates = _body(spec, "patch", f"{BASE}/{entity.path}/bulk")["properties"]["updates"]
        deleted = _body(spec, "post", f"{BASE}/{entity.path}/bulk-delete")["properties"]["ids"]
        for documented in (imported, updates, deleted):
            assert (documented["minItems"], documented["maxItems"]) == (1, limit), entity.path
        _check_schema(spec, entity.schema, imported["items"], False, f"{entity.path} import item")
        update = _resolve(spec, updates["items"])
        assert update["required"] == ["id"] and update["properties"]["id"]["minLength"] == 1
        without_id = {**update, "properties": {k: v for k, v in update["properties"].items()
                                               if k != "id"}, "required": []}
        _check_schema(spec, entity.schema, without_id, True, f"{entity.path} bulk update item")


def test_batch_documents_its_size_limit_and_the_headers_it_forwards(spec, app):
    requests = _body(spec, "post", f"{BASE}/batch")["properties"]["requests"]
    assert (requests["minItems"], requests["maxItems"]) == (1, app.config["QUIVER"].batch_max_requests)
    headers = _resolve(spec, _resolve(spec, requests["items"])["properties"]["headers"])
    assert set(headers["properties"]) == set(FORWARDED_HEADERS)
    assert headers["additionalProperties"] is False


def test_graphql_documents_the_request_keys_it_accepts(spec):
    body = _body(spec, "post", f"{BASE}/graphql")
    assert set(body["properties"]) == REQUEST_KEYS and body["additionalProperties"] is False
    assert body["required"] == ["query"]
    assert not re.search(body["properties"]["query"]["pattern"], " \n")


def test_documented_rate_limits_are_accepted_by_the_key_schema(spec):
    rate_limit = _body(spec, "post", f"{BASE}/api-keys")["properties"]["rateLimit"]
    for sample in ("1/second", "999999999/year", "5/minute;7/day", "1/month;1/hour;1/minute"):
        assert re.fullmatch(rate_limit["pattern"], sample)
        assert ApiKeySchema().load({"name": "k", "scopes": ["read"], "rateLimit": sample})
