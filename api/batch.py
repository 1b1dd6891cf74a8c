"""Batch requests: run several API calls in one HTTP request, through the real app.

Each sub-request is dispatched through the WSGI app itself (same routing,
validation, auth with the caller's key, scopes, rate limits, idempotency and
error envelope as a direct call). They run in order; `dependsOn` and
`{{reqId.<json path>}}` references make a sub-request wait for earlier ones
and skip (424) when one of them failed. `atomic: true` wraps them all in one
database transaction that is rolled back, events included, if any fails.

Consecutive GETs of records (`/tasks/{id}`, …) have their rows loaded ahead, one
query per entity, and each sub-request's `RecordService.get` takes its row from
there instead of querying; any write drops what was loaded.
"""

import io
import json
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from flask import current_app, g, request
from marshmallow import Schema, ValidationError, fields, validate
from werkzeug.exceptions import HTTPException

from api.batch_environ import BATCH_KEY, SUBREQUEST
from api.errors import ValidationFailed, flatten_messages
from api.fields import StrictBoolean, Text
from api.request_log import REQUEST_ID
from api.routing import view_for
from api.services import record_cache
from api.services.records import read_ahead
from api.store import transaction

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
BASE = "/api/v1"
BATCH_PATH = f"{BASE}/batch"
FORWARDED_HEADERS = ("If-Match", "If-None-Match", "Idempotency-Key")
REFERENCE = re.compile(r"\{\{\s*([A-Za-z0-9_.:-]+?)\.([^{}]+?)\s*\}\}")
# What a sub-request takes from its batch's environ (server, client, scheme, key, request id).
INHERITED_ENVIRON = ("SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SCRIPT_NAME", "HTTP_HOST",
                     "REMOTE_ADDR", "HTTP_AUTHORIZATION", "wsgi.version", "wsgi.url_scheme",
                     "wsgi.errors", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
                     REQUEST_ID)


class SubRequestSchema(Schema):
    id = Text(required=True, validate=validate.Length(1, 100))
    method = Text(required=True, validate=validate.OneOf(METHODS))
    path = Text(required=True, validate=validate.Length(1, 2000))
    body = fields.Raw(allow_none=True)
    headers = fields.Dict(keys=fields.String(validate=validate.OneOf(FORWARDED_HEADERS)),
                          values=Text(validate=validate.Length(max=1000)))
    dependsOn = fields.List(Text(), attribute="depends_on", load_default=list)


class BatchSchema(Schema):
    atomic = StrictBoolean(load_default=False)
    requests = fields.List(fields.Nested(SubRequestSchema), required=True)


BATCH_SCHEMA = BatchSchema()  # built once: building one per batch was a quarter of its parsing


@dataclass
class SubRequest:
    id: str
    method: str
    path: str
    body: object = None
    headers: dict = field(default_factory=dict)
    depends_on: list = field(default_factory=list)

    @property
    def references(self) -> set[str]:
        """Ids named by `{{id.path}}` in the path or any string of the body."""
        found = {m.group(1) for m in REFERENCE.finditer(self.path)}
        for text in _strings(self.body):
            found.update(m.group(1) for m in REFERENCE.finditer(text))
        return found


class _Rollback(Exception):
    """Raised to undo an atomic batch."""


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def parse(payload: dict, max_requests: int) -> tuple[bool, list[SubRequest]]:
    """Validate the whole batch before anything runs; 400 otherwise."""
    items = payload.get("requests")
    if isinstance(items, list) and not 1 <= len(items) <= max_requests:
        raise ValidationFailed({"requests": [f"Must contain between 1 and {max_requests} requests."]})
    try:
        loaded = BATCH_SCHEMA.load({**payload, "requests": [
            _normalized(r) for r in items]}
            if isinstance(items, list) else payload)
    except ValidationError as exc:
        raise ValidationFailed(flatten_messages(exc.messages)) from exc
    subs = [SubRequest(**r) for r in loaded["requests"]]
    errors, seen = {}, set()
    for index, sub in enumerate(subs):
        if sub.id in seen:
            errors[f"requests.{index}.id"] = ["Ids must be unique."]
        for name in sub.depends_on:
            if name not in seen:
                errors.setdefault(f"requests.{index}.dependsOn", []).append(
                    f"{name!r} is not the id of an earlier request.")
        for name in sub.references - seen:
            errors.setdefault(f"requests.{index}", []).append(
                f"The reference to {name!r} does not name an earlier request.")
        seen.add(sub.id)
    if errors:
        raise ValidationFailed(errors)
    return loaded["atomic"], subs


def _normalized(item):
    """Methods in upper case, forwarded header names in their canonical case."""
    if not isinstance(item, dict):
        return item
    item = dict(item)
    if isinstance(item.get("method"), str):
        item["method"] = item["method"].upper()
    if isinstance(item.get("headers"), dict):
        canonical = {name.lower(): name for name in FORWARDED_HEADERS}
        item["headers"] = {canonical.get(k.lower(), k) if isinstance(k, str) else k: v
                           for k, v in item["headers"].items()}
    return item


class RawJSON:
    """A sub-response's JSON body as it was sent: copied into the batch's response as is,
    and parsed only if a later sub-request refers into it."""

    def __init__(self, text: str):
        self.text = text
        self._value = None

    def value(self):
        if self._value is None:
            self._value = json.loads(self.text)
        return self._value


def to_json(responses: list[dict]) -> str:
    """The batch's response body: `{"success": true, "responses": [...]}`."""
    items = []
    for response in responses:
        body = response["body"]
        body_text = body.text if isinstance(body, RawJSON) else json.dumps(body)
        items.append(f'{{"id":{json.dumps(response["id"])},"status":{response["status"]},'
                     f'"headers":{json.dumps(response["headers"])},"body":{body_text}}}')
    return '{"success":true,"responses":[' + ",".join(items) + "]}"


def _lookup(result: dict, path: str):
    value = result
    for part in path.split("."):
        if isinstance(value, RawJSON):
            value = value.value()
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isascii() and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def _substitute(value, results: dict):
    """Replace `{{id.path}}` with values from earlier responses (a whole-string reference keeps its type)."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value.strip())
        if whole:
            return _lookup(results[whole.group(1)], whole.group(2))
        return REFERENCE.sub(lambda m: str(_lookup(results[m.group(1)], m.group(2))), value)
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    return value


def _error(sub_id: str, status: int, code: str, message: str) -> dict:
    return {"id": sub_id, "status": status, "headers": {"Content-Type": "application/json; charset=utf-8"},
            "body": {"success": False, "error": message, "code": code}}


def _dispatch(sub: SubRequest, results: dict) -> dict:
    try:
        path = _substitute(sub.path, results)
        body = _substitute(sub.body, results)
    except (KeyError, TypeError):
        return _error(sub.id, 400, "VALIDATION_FAILED", "A {{reference}} did not resolve.")
    if not isinstance(path, str):
        return _error(sub.id, 400, "VALIDATION_FAILED", "The path must be a string.")
    path, query = _split(path)
    if path.rstrip("/") == BATCH_PATH:
        return _error(sub.id, 400, "BAD_REQUEST", "Batches cannot be nested.")
    environ = _environ(sub, path, query, body)
    started = {}

    def start_response(status, headers, exc_info=None):
        started.update(status=int(status.split(" ", 1)[0]), headers=headers)

    # A fresh app context, so the sub-request gets its own `g` (Flask would reuse the
    # batch's, and the sub-request's idempotency claim or request id would clobber it).
    with current_app.app_context():
        chunks = current_app.wsgi_app(environ, start_response)
        try:
            raw = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
    headers = {k: v for k, v in started["headers"] if k != "Content-Length"}
    if not raw:
        body = None
    elif headers.get("Content-Type", "").startswith("application/json"):
        body = RawJSON(raw.decode())  # the app's own JSON, from jsonify
    else:
        body = raw.decode("utf-8", "replace")
    return {"id": sub.id, "status": started["status"], "headers": headers, "body": body}


def _split(path: str) -> tuple[str, str]:
    """A sub-request's full path (it may be relative to `/api/v1`) and its query string."""
    path, _, query = path.partition("?")
    return (path if path.startswith(BASE + "/") else BASE + "/" + path.lstrip("/")), query


def _environ(sub: SubRequest, path: str, query: str, body) -> dict:
    """The sub-request's WSGI environ: the batch's server and client, the sub-request's
    method, path, query, forwarded headers and JSON body, and the batch's key."""
    outer = request.environ
    data = b"" if sub.body is None else json.dumps(body).encode()
    environ = {name: outer[name] for name in INHERITED_ENVIRON if name in outer}
    environ.update({
        "REQUEST_METHOD": sub.method,
        "PATH_INFO": _wsgi_path(path),
        "QUERY_STRING": query.encode().decode("latin-1"),
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
        SUBREQUEST: True,
        BATCH_KEY: g.api_key,
    })
    if sub.body is not None:
        environ["CONTENT_TYPE"] = "application/json"
    for name, value in sub.headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _failed_dependency(sub: SubRequest, results: dict) -> str | None:
    for name in list(sub.depends_on) + sorted(sub.references):
        if results[name]["status"] >= 400:
            return name
    return None


def run(atomic: bool, subs: list[SubRequest]) -> list[dict]:
    """Run the sub-requests in order; returns their responses in request order."""
    if not atomic:
        return _run_all(subs)
    responses: list[dict] = []
    try:
        with transaction():
            responses = _run_all(subs, stop_on_failure=True)
            if any(r["status"] >= 400 for r in responses):
                raise _Rollback
    except _Rollback:
        failing = next(r for r in responses if r["status"] >= 400)
        return [failing if sub.id == failing["id"] else _error(
            sub.id, 424, "FAILED_DEPENDENCY",
            f"Not applied: the atomic batch failed at {failing['id']!r}.") for sub in subs]
    return responses


def _run_all(subs: list[SubRequest], stop_on_failure: bool = False) -> list[dict]:
    results: dict[str, dict] = {}
    responses = []
    for run in _runs(subs):
        wanted = _records_read(run)
        tags = record_cache.read_tags([i for ids in wanted.values() for i in ids])
        uncached = {name: [i for i in ids if not record_cache.lookup(name, g.account_id, i, tags.get(i))]
                    for name, ids in wanted.items()}
        with record_cache.tags_ahead(tags), read_ahead(g.account_id, uncached):
            for sub in run:
                failed = _failed_dependency(sub, results)
                if failed is not None:
                    result = _error(sub.id, 424, "FAILED_DEPENDENCY", f"Dependency {failed!r} failed.")
                else:
                    result = _dispatch(sub, results)
                results[sub.id] = result
                responses.append(result)
                if stop_on_failure and result["status"] >= 400:
                    return responses
    return responses


def _runs(subs: list[SubRequest]) -> list[list[SubRequest]]:
    """The sub-requests in order, consecutive GETs grouped (no write of the batch's falls
    between them), every other one alone."""
    runs: list[list[SubRequest]] = []
    for sub in subs:
        if sub.method == "GET" and runs and runs[-1][0].method == "GET":
            runs[-1].append(sub)
        else:
            runs.append([sub])
    return runs


def _records_read(run: list[SubRequest]) -> dict[str, list[str]]:
    """The records that a run of GETs will read by id (those with literal paths to a
    record's route), per entity: loaded ahead with one query per entity."""
    if run[0].method != "GET":
        return {}
    adapter = current_app.url_map.bind_to_environ(request.environ)
    wanted: dict[str, list[str]] = {}
    for sub in run:
        if REFERENCE.search(sub.path):
            continue
        try:
            endpoint, args = adapter.match(unquote(_split(sub.path)[0]), method="GET")
        except HTTPException:  # not found, wrong method, or a redirect
            continue
        entity = getattr(view_for(endpoint, "GET"), "reads_record", None)
        if entity is not None:
            wanted.setdefault(entity, []).append(args["record_id"])
    return wanted


def _wsgi_path(path: str) -> str:
    """A percent-encoded path as WSGI's `PATH_INFO` holds it (UTF-8 bytes as latin-1)."""
    return unquote(path).encode().decode("latin-1")
