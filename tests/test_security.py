"""The security pass (issue 10; the threat model is SECURITY.md at the project root).

What this module proves, beside what the other modules already do:

- API keys are stored only as SHA-256 hashes, found by their visible prefix and compared
  with `hmac.compare_digest`; neither keys, webhook secrets nor `?access_token=` values
  ever reach a log line (the app's JSON logs, and gunicorn's access log on a real server).
- Every operation of the OpenAPI document, plus the routes the document leaves out
  (GraphQL, the docs, the live page), refuses a key lacking its scope (403) and a request
  without a key (401), and nothing is written when it does. Path parameters are filled
  with real ids of the caller's own records, so a 404 cannot hide a missing check.
- Every operation with an id in its path answers 404 to another account's real ids (and
  leaves that account's data alone); no list, stream replay or GraphQL list shows another
  account's records.
- Webhook URLs that resolve to loopback, private, link-local, CGNAT, IPv6 loopback/ULA or
  IPv4-mapped addresses, in any spelling (decimal, hex, octal, short forms), are refused
  unless `WEBHOOK_ALLOW_PRIVATE`; deliveries never follow redirects; a name that rebinds
  to a private address after registration, or between the check and the connection, is
  never connected to; a receiver answering a huge or drip-fed body cannot hold a worker.
- Response headers: `X-Content-Type-Options: nosniff` everywhere, no version in `Server`,
  `Cache-Control: no-store` on responses that carry secrets.
- Size limits on every kind of body; no traceback, path or SQL in any error response;
  SQL metacharacters in every query parameter of every list operation are inert.
"""

import dataclasses
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import threading
from dataclasses import dataclass, field

import peewee
import pytest
import requests
import urllib3

from api import auth, config
from api.entities import BY_PATH, ENTITIES
from api.models import (
    ApiKey,
    Event,
    File,
    IdempotencyRecord,
    Job,
    TusUpload,
    Webhook,
    WebhookDelivery,
)
from api.request_log import JSONFormatter
from api.services import accounts, keys
from api.services.records import service_for
from api.store import db
from tests import media
from tests.conftest import GENEROUS_LIMIT, ApiClient, plain_sql
from tests.extra_apps import extra_apps
from tests.procs import (
    PostServer,
    free_port,
    read_body,
    respond,
    start_gunicorn,
    stop_process,
    wait_for,
)

BASE = "/api/v1"
PUBLIC_IP = "93.184.215.14"  # a public address; the sandbox has no DNS and no route to it
TUS_VERSION = "1.0.0"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ALL_OPS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "contains", "isnull")
GRAPHQL = "graphql"
ANY_KEY = "any key"  # needs a valid key, whatever its scopes
# Path parameters that name an entity type or an inbound source, not a record: never
# "another account's".
NOT_IDS = {"entity_path", "source"}
# Routes served outside the OpenAPI document: the scope they need, and a path to call.
NOT_IN_OPENAPI = {
    ("/api/v1/openapi.json", "GET"): (None, "/api/v1/openapi.json"),
    ("/api/v1/docs", "GET"): (None, "/api/v1/docs"),
    ("/api/v1/docs/assets/{filename}", "GET"): (None, "/api/v1/docs/assets/swagger-ui.css"),
    # The GraphiQL and live pages hold no data: the key is typed into them.
    ("/api/v1/graphql", "GET"): (None, "/api/v1/graphql"),
    ("/api/v1/graphql/assets/{filename}", "GET"): (None, "/api/v1/graphql/assets/graphiql.min.js"),
    ("/", "GET"): (None, "/"),
    ("/live", "GET"): (None, "/live"),
    # The operator console's static files: every data call it makes carries the key.
    ("/console", "GET"): (None, "/console"),
    ("/console/", "GET"): (None, "/console/"),
    ("/console/{filename}", "GET"): (None, "/console/js/app.js"),
    ("/api/v1/graphql", "POST"): (GRAPHQL, "/api/v1/graphql"),  # test_graphql_checks_the_scope_…
    ("/static/{filename}", "GET"): ("admin", "/static/live.html"),  # Flask's own: undeclared
    ("/metrics", "GET"): ("admin", "/metrics"),  # Prometheus text; or METRICS_TOKEN
}


# --- helpers -------------------------------------------------------------------------------------


def assert_error(response, status: int, code: str) -> dict:
    """`status` with `code` in the error envelope (HEAD responses have no body to check)."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    if response.request.method == "HEAD":
        return {}
    body = response.get_json()
    assert body["success"] is False and body["code"] == code, body
    return body


def scoped(account, *scopes: str) -> ApiClient:
    """A key of `account` with exactly `scopes`, and a rate limit no test here reaches."""
    with account.app.app_context():
        _, secret = accounts.create_key(account.id, "security", list(scopes), GENEROUS_LIMIT)
    return ApiClient(account.client, secret)


def key_row(app, secret: str) -> ApiKey:
    with app.app_context():
        return ApiKey.get(ApiKey.key_hash == hashlib.sha256(secret.encode()).hexdigest())


ACCOUNT_MODELS = [ApiKey, Event, Webhook, WebhookDelivery, IdempotencyRecord, File, TusUpload, Job]
VOLATILE_COLUMNS = {"last_used_at"}  # every authenticated request may touch it


def snapshot(account_id: str) -> dict:
    """Every row the account owns, in every table (what "nothing was written" compares)."""
    models = ACCOUNT_MODELS + [entity.model for entity in ENTITIES.values()]
    state = {}
    with db.connection_context():
        for model in models:
            rows = model.select().where(model.account_id == account_id).dicts()
            state[model._meta.table_name] = sorted(
                tuple(sorted((k, str(v)) for k, v in row.items() if k not in VOLATILE_COLUMNS))
                for row in rows)
    return state


@dataclass(frozen=True)
class Operation:
    """One operation of the OpenAPI document (or a route it leaves out)."""

    method: str
    path: str
    query: tuple = ()  # (concrete query parameter name, filter operator or None)
    public: bool = False

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)

    @property
    def id_params(self) -> list[str]:
        return [p for p in self.path_params if p not in NOT_IDS]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def operations(client) -> list[Operation]:
    """Every operation of `/api/v1/openapi.json`."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    found = []
    for path, item in spec["paths"].items():
        shared = [_resolve(spec, p) for p in item.get("parameters", [])]
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            params = shared + [_resolve(spec, p) for p in operation.get("parameters", [])]
            query = tuple(variant for p in params if p["in"] == "query"
                          for variant in _query_names(spec, p))
            found.append(Operation(method.upper(), path, query, operation.get("security") == []))
    assert len(found) > 50, "the OpenAPI document lost its operations"
    return found


def _query_names(spec: dict, param: dict) -> list[tuple[str, str | None]]:
    """The concrete names a query parameter stands for: a filter documented as a deepObject
    (`title[eq]`, `title[contains]`, …) or as `title[op]` stands for each of its operators."""
    name, schema = param["name"], _resolve(spec, param.get("schema") or {})
    if param.get("style") == "deepObject" and schema.get("properties"):
        return [(name, None)] + [(f"{name}[{op}]", op) for op in schema["properties"]]
    if name.endswith("[op]"):
        documented = re.search(r"one of:?\s*([a-z, ]+)", param.get("description") or "")
        ops = [o.strip() for o in documented.group(1).split(",")] if documented else list(ALL_OPS)
        return [(f"{name[:-4]}[{op}]", op) for op in ops if op]
    return [(name, None)]


def needed_scope(op: Operation) -> str | None:
    """The scope an operation needs, derived from the contract (section 2) alone.

    GET/HEAD read, every other method write; keys and webhooks admin; public operations
    (`security: []`) none. tus uploads need write for every method, HEAD included: a
    HEAD there reports the progress of an upload, which only its writer needs. The one
    route beyond the contract, `GET /api-keys/current` (a key reads itself), takes any key.
    """
    if op.public:
        return None
    if op.path == "/api/v1/api-keys/current":
        return ANY_KEY
    if op.path.startswith(("/api/v1/api-keys", "/api/v1/webhooks")):
        return "admin"
    if op.path == "/api/v1/graphql":
        return GRAPHQL
    if op.path.startswith("/api/v1/uploads/tus"):
        return "write"
    return "read" if op.method in ("GET", "HEAD") else "write"


def methods_of(op: Operation) -> list[str]:
    """The methods to try: HEAD too for every GET (Werkzeug answers HEAD on GET routes)."""
    return [op.method, "HEAD"] if op.method == "GET" else [op.method]


# --- a set of real records of every kind, for one account -----------------------------------------


@dataclass
class World:
    """One account's records of every kind; `ids` fills path parameters by name."""

    account: object
    admin: ApiClient
    marker: str
    ids: dict
    records: dict  # entity path -> record id
    every_id: set = field(default_factory=set)

    def id_for(self, op_path: str, name: str) -> str:
        if name == "record_id":
            return self.records[_entity_path(op_path)]
        assert name in self.ids, f"no value for path parameter {name!r} of {op_path}: extend World"
        return self.ids[name]

    def fill(self, op_path: str, source: "World | None" = None, foreign: set = frozenset()) -> str:
        """The path with own ids, or `source`'s ids for the parameters named in `foreign`."""
        def value(match):
            name = match.group(1)
            owner = source if name in foreign else self
            return owner.id_for(op_path, name)

        return re.sub(r"{([^}]+)}", value, op_path)


def _entity_path(op_path: str) -> str:
    segments = op_path.split("/")
    entity = segments[3]
    assert entity in BY_PATH, op_path
    return entity


def build_world(account, app) -> World:
    api = account.api
    marker = "zq" + secrets.token_hex(6)
    user = api.create("users", name=f"{marker} user", email=f"{marker}@example.com")
    project = api.create("projects", name=f"{marker} project", description=marker)
    task = api.create("tasks", title=f"{marker} task", description=marker, projectId=project["id"],
                      assigneeId=user["id"], status="completed", dueAt="2025-01-10T09:00:00Z")
    comment = api.create("comments", taskId=task["id"], authorId=user["id"], body=f"{marker} comment")
    uploaded = api.post("/upload", data={"file": (io.BytesIO(media.png(marker)), f"{marker}.png"),
                                         "taskId": task["id"]}, content_type="multipart/form-data")
    assert uploaded.status_code == 201, uploaded.get_json()
    hook = api.post("/webhooks", json={"url": f"https://{PUBLIC_IP}/{marker}",
                                       "events": ["webhook.test"], "description": marker})
    assert hook.status_code == 201, hook.get_json()
    hook_id = hook.get_json()["data"]["id"]
    assert api.post(f"/webhooks/{hook_id}/test").status_code == 202
    [delivery] = api.get(f"/webhooks/{hook_id}/deliveries").get_json()["data"]
    key = api.post("/api-keys", json={"name": marker, "scopes": ["read"]})
    assert key.status_code == 201
    export = api.post("/export/tasks", json={"format": "csv"})
    assert export.status_code == 202, export.get_json()
    job_id = export.get_json()["data"]["id"]
    from jobs import data as data_jobs

    data_jobs.run(job_id)  # in this process: the export succeeds, so /result has a file
    assert api.get(f"/jobs/{job_id}").get_json()["data"]["status"] == "succeeded"
    tus = api.post("/uploads/tus", headers={"Tus-Resumable": TUS_VERSION, "Upload-Length": "10"})
    assert tus.status_code == 201, tus.get_data(as_text=True)
    events = api.get("/events", query_string={"limit": 100}).get_json()["data"]
    ids = {
        "key_id": key.get_json()["data"]["id"],
        "event_id": events[0]["id"],
        "webhook_id": hook_id,
        "delivery_id": delivery["id"],
        "file_id": uploaded.get_json()["data"]["id"],
        "upload_id": tus.headers["Location"].rsplit("/", 1)[1],
        "job_id": job_id,
        "entity_path": "tasks",
        "source": "tasks",  # unconfigured here (no TASKS_WEBHOOK_SECRET): 404, not 401
    }
    records = {"users": user["id"], "projects": project["id"], "tasks": task["id"],
               "comments": comment["id"]}
    with app.app_context():
        key_ids = {k.id for k in ApiKey.select().where(ApiKey.account_id == account.id)}
    every_id = ({v for k, v in ids.items() if k not in NOT_IDS} | set(records.values())
                | {e["id"] for e in events} | key_ids)
    return World(account, api, marker, ids, records, every_id)


@pytest.fixture
def world(app, account):
    built = build_world(account, app)
    yield built
    _drop_webhooks(account)


@pytest.fixture
def their_world(app, other_account):
    built = build_world(other_account, app)
    yield built
    _drop_webhooks(other_account)


def _drop_webhooks(account) -> None:
    """No delivery of these tests is left for a later worker to chase (deliveries go too)."""
    for hook in account.api.get("/webhooks").get_json()["data"]:
        account.api.delete(f"/webhooks/{hook['id']}")


def _valid_record(entity_path: str, own: World) -> dict:
    token = secrets.token_hex(4)
    return {
        "users": {"name": "Probe", "email": f"probe-{token}@example.com"},
        "projects": {"name": "Probe"},
        "tasks": {"title": "Probe"},
        "comments": {"taskId": own.records["tasks"], "body": "Probe"},
    }[entity_path]


def _changes(entity_path: str) -> dict:
    return {"users": {"name": "Changed"}, "projects": {"name": "Changed"},
            "tasks": {"title": "Changed"}, "comments": {"body": "Changed"}}[entity_path]


def request_kwargs(method: str, op_path: str, own: World) -> dict:
    """A request body (and headers) that passes validation, so auth and lookups decide."""
    tus = {"Tus-Resumable": TUS_VERSION}
    if op_path == "/api/v1/upload":
        return {"data": {"file": (io.BytesIO(media.png(media.token())), "probe.png")},
                "content_type": "multipart/form-data"}
    if op_path == "/api/v1/import/{entity_path}/file":
        return {"data": {"file": (io.BytesIO(b"title\nProbe\n"), "probe.csv")},
                "content_type": "multipart/form-data"}
    if op_path == "/api/v1/uploads/tus":
        return {"headers": {**tus, "Upload-Length": "10"}}
    if op_path.startswith("/api/v1/uploads/tus/"):
        if method == "PATCH":
            return {"headers": {**tus, "Upload-Offset": "0",
                                "Content-Type": "application/offset+octet-stream"}, "data": b"x"}
        return {"headers": tus}
    if method in ("GET", "HEAD", "DELETE", "OPTIONS"):
        return {}
    if op_path == "/api/v1/inbound/{source}":
        return {"json": {}}
    if op_path == "/api/v1/export/{entity_path}":
        return {"json": {"format": "csv"}}
    if op_path == "/api/v1/batch":
        return {"json": {"requests": [{"id": "a", "method": "GET", "path": "/tasks"}]}}
    if op_path == "/api/v1/api-keys":
        return {"json": {"name": "probe", "scopes": ["read"]}}
    if op_path == "/api/v1/webhooks":
        return {"json": {"url": f"https://{PUBLIC_IP}/probe", "events": ["webhook.test"]}}
    if op_path == "/api/v1/webhooks/{webhook_id}":
        return {"json": {"description": "changed"}}
    if op_path.startswith("/api/v1/webhooks/") or op_path.startswith("/api/v1/jobs/"):
        return {}
    match = re.fullmatch(r"/api/v1/import/([a-z_-]+)", op_path)
    if match:
        return {"json": {"items": [_valid_record(match.group(1), own)]}}
    match = re.fullmatch(r"/api/v1/([a-z_-]+)/bulk", op_path)
    if match:
        entity = match.group(1)
        return {"json": {"updates": [{"id": own.records[entity], **_changes(entity)}]}}
    match = re.fullmatch(r"/api/v1/([a-z_-]+)/bulk-delete", op_path)
    if match:
        return {"json": {"ids": [own.records[match.group(1)]]}}
    match = re.fullmatch(r"/api/v1/([a-z_-]+)(/\{record_id\})?", op_path)
    if match and match.group(1) in BY_PATH:
        entity = match.group(1)
        if method == "PATCH":
            return {"json": _changes(entity)}
        return {"json": _valid_record(entity, own)}
    raise AssertionError(f"no request body known for {method} {op_path}: extend request_kwargs")


def settle(response):
    """Buffer an ordinary response; close a stream without reading it (it never ends)."""
    if response.mimetype == "text/event-stream":
        response.close()
    else:
        response.get_data()
    return response


def send(client: ApiClient, method: str, op: Operation, own: World, path: str | None = None):
    """Call `op` with `client` (own ids in the path unless `path` is given)."""
    return settle(client.request(method, path or own.fill(op.path),
                                 **request_kwargs(method, op.path, own)))


class LogCapture(logging.Handler):
    """Every record of the loggers it is attached to, formatted as the service writes them."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(JSONFormatter())
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def captured_logs():
    """The `quiver` loggers at DEBUG (and peewee's SQL log, and the root logger) for one test."""
    capture = LogCapture()
    loggers = [logging.getLogger(name) for name in ("quiver", "peewee", "werkzeug", "")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    yield capture
    for lg, level in saved:
        lg.removeHandler(capture)
        lg.setLevel(level)


# --- keys: hashed, compared in constant time ------------------------------------------------------


def test_keys_are_stored_as_sha256_hashes_with_no_plaintext_column(app, api):
    created = api.post("/api-keys", json={"name": "hashed", "scopes": ["read"]})
    secret = created.get_json()["data"]["key"]
    with app.app_context():
        columns = {c.name for c in db.get_columns("api_keys")}
        assert columns == {"id", "account_id", "name", "prefix", "key_hash", "scopes", "rate_limit",
                           "created_at", "last_used_at", "revoked_at"}
        row = ApiKey.get_by_id(created.get_json()["data"]["id"])
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert row.prefix == secret[:12] and len(secret) - len(row.prefix) >= 32
    for value in row.__data__.values():
        assert secret[12:] not in str(value)


def test_no_table_holds_a_new_key_in_plaintext(app, account):
    """After a key is created and used (no Idempotency-Key), no row of the account holds it."""
    from api.models import Account

    api = account.api
    secret = api.post("/api-keys", json={"name": "nowhere", "scopes": ["read"]}).get_json()["data"]["key"]
    assert ApiClient(api.client, secret).get("/tasks").status_code == 200
    rows = snapshot(account.id)
    assert len(rows["api_keys"]) == 2
    assert secret[12:] not in json.dumps(rows)
    with app.app_context():
        assert secret[12:] not in str(list(Account.select().where(Account.id == account.id).tuples()))


def test_authenticate_compares_sha256_hashes_with_compare_digest(app, account, monkeypatch):
    secret = account.api.key
    stored = key_row(app, secret).key_hash
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    forged = secret[:12] + secrets.token_urlsafe(32)  # same visible prefix, other secret
    keys.forget_all()  # a key this process remembers is found by its digest, without SQL
    with app.test_request_context():
        assert auth.authenticate(secret).account_id == account.id
        with pytest.raises(auth.APIError) as refused:
            auth.authenticate(forged)
    assert refused.value.status == 401
    assert calls == [(stored, hashlib.sha256(secret.encode()).hexdigest()),
                     (stored, hashlib.sha256(forged.encode()).hexdigest())]
    for a, b in calls:  # only digests are compared, never the secret itself
        assert secret not in (a, b) and forged not in (a, b)


def test_key_lookup_is_by_prefix_never_by_hash_equality_in_sql(app, account, captured_logs):
    """The database finds candidates by the visible prefix; only compare_digest sees hashes."""
    secret = account.api.key
    keys.forget_all()
    with app.test_request_context():
        auth.authenticate(secret)
    logged = [json.loads(line)["msg"] for line in captured_logs.lines if '"logger": "peewee"' in line]
    executed = (re.search(r"EXECUTE quiver_\w+", s) for s in logged)  # (prepared reads)
    statements = [*logged, *(plain_sql(found.group()) for found in executed if found)]
    assert [s for s in statements if 'FROM "api_keys" WHERE "prefix" = ' in s], statements
    for statement in statements:
        assert '"key_hash" =' not in statement
        assert secret[12:] not in statement
        assert hashlib.sha256(secret.encode()).hexdigest() not in statement


# --- nothing secret in the logs -------------------------------------------------------------------


def test_keys_secrets_and_access_tokens_never_reach_the_logs(app, account, captured_logs, monkeypatch):
    api = account.api
    created = api.post("/api-keys", json={"name": "logged?", "scopes": ["read"]})
    assert created.status_code == 201
    secret = created.get_json()["data"]["key"]
    reader = ApiClient(api.client, secret)
    assert reader.get("/tasks", query_string={"q": "visible"}).status_code == 200
    wrong = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert_error(ApiClient(api.client, wrong).get("/tasks"), 401, "UNAUTHORIZED")
    assert_error(api.client.get(f"/api/v1/tasks?access_token={secret}"), 401, "UNAUTHORIZED")
    stream = api.client.get(f"/api/v1/stream?access_token={secret}")
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    stream.close()
    hook = api.post("/webhooks", json={"url": f"https://{PUBLIC_IP}/h", "events": ["webhook.test"]})
    hook_secret = hook.get_json()["data"]["secret"]
    rotated = api.post(f"/webhooks/{hook.get_json()['data']['id']}/rotate-secret").get_json()["data"]
    monkeypatch.setattr(service_for("task"), "list_page", _raiser(RuntimeError("boom")))
    assert_error(reader.get("/tasks"), 500, "INTERNAL_ERROR")
    revoked = api.post("/api-keys", json={"name": "revoked", "scopes": ["read"]}).get_json()["data"]
    assert api.delete(f"/api-keys/{revoked['id']}").status_code == 204
    assert_error(api.client.get(f"/api/v1/stream?access_token={revoked['key']}"), 401, "UNAUTHORIZED")
    _drop_webhooks(account)

    lines = captured_logs.lines
    requests_logged = [json.loads(line) for line in lines if '"logger": "quiver.request"' in line]
    streams = [r for r in requests_logged if r["path"] == "/api/v1/stream"]
    assert len(streams) == 2 and streams[0]["status"] == 200
    assert streams[0]["key_prefix"] == secret[:12]  # the visible prefix is what identifies a key
    assert any("unhandled error" in line and "Traceback" in line for line in lines)
    for leaked in (secret, secret[12:], wrong[12:], revoked["key"][12:], api.key[12:]):
        assert not [line for line in lines if leaked in line], leaked  # not even in SQL
    # Webhook secrets are stored as given (they key the signatures), so peewee's SQL debug
    # log, which nothing switches on, would show their INSERT; the service's logs never do.
    service_lines = [line for line in lines if '"logger": "peewee' not in line]
    for leaked in (hook_secret, rotated["secret"]):
        assert not [line for line in service_lines if leaked in line], leaked
    assert not [line for line in lines if "access_token" in line]


def _raiser(error: Exception):
    def raise_(*args, **kwargs):
        raise error
    return raise_


# --- a real gunicorn with the access log on ------------------------------------------------------


@dataclass
class Server:
    base: str
    process: subprocess.Popen
    out: object  # path of stdout (the access log)
    err: object  # path of stderr (gunicorn's error log and the app's JSON logs)

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


@pytest.fixture(scope="module")
def logging_server(app, backend_env, tmp_path_factory):
    """gunicorn (the real config) with `ACCESS_LOG=true`, its output kept in files."""
    directory = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = {**os.environ, **backend_env, "ACCESS_LOG": "true", "LOG_LEVEL": "info",
           "WEB_CONCURRENCY": "1", "WEB_THREADS": "8", "SSE_HEARTBEAT_SECONDS": "0.5"}
    out, err = directory / "stdout.log", directory / "stderr.log"
    process = start_gunicorn(env, port, log=err, access_log=out)
    base = f"http://127.0.0.1:{port}"
    yield Server(base, process, out, err)
    stop_process(process)


def test_gunicorn_access_log_never_shows_the_access_token(logging_server, account):
    base = logging_server.base
    secret = scoped(account, "read").key
    with requests.get(f"{base}/api/v1/stream", params={"access_token": secret}, stream=True,
                      timeout=10) as stream:
        assert stream.status_code == 200
        first = next(stream.iter_lines(decode_unicode=True, delimiter="\n\n"))
        assert '"connected"' in first
    refused = requests.get(f"{base}/api/v1/tasks", params={"access_token": secret}, timeout=10)
    assert refused.status_code == 401
    ok = requests.get(f"{base}/api/v1/tasks", params={"q": "visible-query"},
                      headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert ok.status_code == 200

    def access_lines():
        lines = [json.loads(line) for line in logging_server.out.read_text().splitlines()
                 if '"gunicorn.access"' in line]
        # A stream's line is written when it ends: at the first heartbeat after the client left.
        return lines if any(r["path"] == "/api/v1/stream" for r in lines) else None

    lines = wait_for(access_lines, timeout=20, message="the stream's access log line")
    assert any(r["path"] == "/api/v1/tasks" and r["status"] == 401 for r in lines)
    assert all("?" not in r["path"] for r in lines)
    output = logging_server.output()
    assert '"logger": "quiver.request"' in output  # the app's own request log is in there too
    assert secret not in output and secret[12:] not in output
    assert "access_token" not in output
    assert "visible-query" not in output  # no query string at all: it may carry anything


def test_server_header_names_no_version(logging_server, account):
    base = logging_server.base
    headers = {"Authorization": f"Bearer {account.api.key}"}
    responses = [requests.get(f"{base}/healthz", timeout=10),
                 requests.get(f"{base}/api/v1/tasks", headers=headers, timeout=10),
                 requests.get(f"{base}/api/v1/tasks", timeout=10),
                 requests.get(f"{base}/api/v1/nope", timeout=10),
                 requests.get(f"{base}/api/v1/docs", timeout=10),
                 requests.post(f"{base}/api/v1/tasks", data="{", headers={
                     **headers, "Content-Type": "application/json"}, timeout=10)]
    for response in responses:
        server = response.headers.get("Server", "")
        assert not re.search(r"\d", server), server
        assert "/" not in server and "python" not in server.lower() and "werkzeug" not in server.lower()
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_chunked_body_over_json_max_bytes_is_413_over_gunicorn(logging_server, account):
    limit = 1024 * 1024  # the default JSON_MAX_BYTES

    def body(size: int):  # a generator: requests sends it chunked, without a Content-Length
        head = b'{"title": "chunked"}'
        yield head
        left = size - len(head)
        while left:
            yield b" " * min(1 << 20, left)
            left -= min(1 << 20, left)

    headers = {"Authorization": f"Bearer {account.api.key}", "Content-Type": "application/json"}
    over = requests.post(f"{logging_server.base}/api/v1/tasks", data=body(limit + 10), headers=headers,
                         timeout=60)
    assert over.status_code == 413 and over.json()["code"] == "PAYLOAD_TOO_LARGE", over.text
    assert account.api.get("/tasks").get_json()["meta"]["total"] == 0


# --- every operation's scope -----------------------------------------------------------------------


def test_every_route_is_covered_by_the_scope_table(app, client):
    """Every URL rule is an OpenAPI operation or one of the routes handled by name here."""
    documented = {(op.path, op.method) for op in operations(client)}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"OPTIONS", "HEAD"}:
            assert (path, method) in documented or (path, method) in NOT_IN_OPENAPI, (
                f"{method} {path} is neither in the OpenAPI document nor in NOT_IN_OPENAPI")


def test_every_operation_refuses_keys_without_its_scope(app, account, world):
    """Under-scoped keys get 403 naming the scope, no key gets 401; nothing is written."""
    lacking = {"read": [scoped(account, "write")],
               "write": [scoped(account, "read")],
               "admin": [scoped(account, "read"), scoped(account, "write"),
                         scoped(account, "read", "write")],
               ANY_KEY: []}
    nobody = ApiClient(account.client, None)
    before = snapshot(account.id)
    failures, checked = [], 0
    for op in operations(account.client):
        needed = needed_scope(op)
        if needed == GRAPHQL:
            continue  # per operation type: test_graphql_checks_the_scope_of_each_operation
        for method in methods_of(op):
            if needed is None:
                response = send(nobody, method, op, world)
                if response.status_code in (401, 403):
                    failures.append(f"{method} {op.path}: public, yet {response.status_code}")
                continue
            response = send(nobody, method, op, world)
            if response.status_code != 401:
                failures.append(f"{method} {op.path} without a key: {response.status_code}")
            for key in lacking[needed]:
                response = send(key, method, op, world)
                checked += 1
                body = {} if method == "HEAD" else response.get_json(silent=True) or {}
                if response.status_code != 403 or (method != "HEAD" and (
                        body.get("code") != "INSUFFICIENT_SCOPE"
                        or body.get("details", {}).get("required") != needed)):
                    failures.append(f"{method} {op.path} with a key lacking {needed!r}: "
                                    f"{response.status_code} {body}")
    assert not failures, "\n".join(failures)
    assert checked > 100
    assert snapshot(account.id) == before


def test_every_operation_accepts_a_key_with_exactly_its_scope(app, account, world):
    """The derived scope is enough: the table above tests the real requirement, not a stricter one."""
    exact = {scope: scoped(account, scope) for scope in ("read", "write", "admin")}
    exact[ANY_KEY] = exact["write"]  # neither read nor admin
    ops = [op for op in operations(account.client) if needed_scope(op) not in (None, GRAPHQL)]
    ops.sort(key=lambda op: op.method == "DELETE")  # deletions last: the others need the records
    failures = []
    for op in ops:
        for method in methods_of(op):
            response = send(exact[needed_scope(op)], method, op, world)
            if response.status_code in (401, 403) or response.status_code >= 500:
                failures.append(f"{method} {op.path} with {needed_scope(op)!r}: {response.status_code}")
    assert not failures, "\n".join(failures)


def test_routes_outside_the_openapi_document(client, account):
    under_scoped = scoped(account, "read", "write")
    for (template, method), (scope, path) in NOT_IN_OPENAPI.items():
        if scope == GRAPHQL:
            continue
        anonymous = client.open(path, method=method, headers={"Accept": "text/html"})
        if scope is None:
            assert anonymous.status_code == 200, template
            continue
        assert_error(anonymous, 401, "UNAUTHORIZED")
        body = assert_error(client.open(path, method=method, headers=under_scoped.headers()), 403,
                            "INSUFFICIENT_SCOPE")
        assert body["details"]["required"] == scope
        assert client.open(path, method=method, headers=account.api.headers()).status_code == 200


def gql(key: ApiClient, query: str):
    return key.post("/api/v1/graphql", json={"query": query})


def test_graphql_checks_the_scope_of_each_operation(app, account, world):
    reader, writer = scoped(account, "read"), scoped(account, "write")
    before = snapshot(account.id)
    assert_error(ApiClient(account.client, None).post("/api/v1/graphql", json={"query": "{ __typename }"}),
                 401, "UNAUTHORIZED")
    mutation = 'mutation { createTask(input: {title: "escalated"}) { id } }'
    for key, query, needed in [(reader, mutation, "write"),
                               (writer, "{ tasks { totalCount } }", "read"),
                               (writer, f'{{ task(id: "{world.records["tasks"]}") {{ title }} }}', "read")]:
        response = gql(key, query)
        assert response.status_code == 200
        body = response.get_json()
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["INSUFFICIENT_SCOPE"]
        assert needed in body["errors"][0]["message"]
        assert "escalated" not in response.get_data(as_text=True)
    assert snapshot(account.id) == before
    assert gql(reader, "{ tasks { totalCount } }").get_json()["data"]["tasks"]["totalCount"] == 1
    created = gql(writer, mutation).get_json()
    assert created["data"]["createTask"]["id"].startswith("tsk_")


def test_streams_need_read_by_header_or_access_token(app, account):
    reader, writer = scoped(account, "read"), scoped(account, "write")
    for path in ["/api/v1/stream", "/api/v1/stream/tasks"]:
        assert_error(account.client.get(path), 401, "UNAUTHORIZED")
        for denied in (writer.get(path), account.client.get(f"{path}?access_token={writer.key}")):
            assert assert_error(denied, 403, "INSUFFICIENT_SCOPE")["details"]["required"] == "read"
        assert_error(account.client.get(f"{path}?access_token=sk_{'x' * 43}"), 401, "UNAUTHORIZED")
        for allowed in (reader.get(path), account.client.get(f"{path}?access_token={reader.key}")):
            assert allowed.status_code == 200 and allowed.mimetype == "text/event-stream"
            allowed.close()


# --- account isolation -----------------------------------------------------------------------------


def test_every_id_operation_answers_404_for_another_accounts_ids(app, world, their_world):
    theirs_before = snapshot(their_world.account.id)
    failures, checked, expected = [], 0, 0
    id_ops = [op for op in operations(world.account.client)
              if op.id_params and needed_scope(op) not in (None, GRAPHQL)]
    for op in id_ops:
        # All ids foreign; and, for nested routes, an own parent with a foreign child.
        variants = [set(op.id_params)] + [{p} for p in op.id_params[1:]]
        expected += len(variants) * len(methods_of(op))
        for foreign in variants:
            path = world.fill(op.path, their_world, foreign)
            for method in methods_of(op):
                response = send(world.admin, method, op, world, path)
                checked += 1
                code = None if method == "HEAD" else (response.get_json(silent=True) or {}).get("code")
                if response.status_code != 404 or code not in (None, "NOT_FOUND"):
                    failures.append(f"{method} {path} (foreign {sorted(foreign)}): "
                                    f"{response.status_code} {code}")
    assert not failures, "\n".join(failures)
    assert checked == expected and len(id_ops) >= 30
    assert snapshot(their_world.account.id) == theirs_before
    # The ids were real: their owner reads every one of them.
    for op in id_ops:
        if op.method == "GET":
            response = send(their_world.admin, "GET", op, their_world)
            assert 200 <= response.status_code < 300, (op, response.status_code)


def test_lists_streams_and_graphql_never_show_another_accounts_records(app, world, their_world):
    # Records made after every record of theirs: a stream replay stops at them.
    last_project = world.admin.create("projects", name="last project of mine")
    last_task = world.admin.create("tasks", title="last task of mine")
    leaks = [their_world.marker, *their_world.every_id]
    failures, checked = [], 0
    for op in operations(world.account.client):
        if op.method != "GET" or needed_scope(op) in (None, GRAPHQL) or "/stream" in op.path:
            continue
        if op.id_params and not op.path.endswith("/deliveries"):
            continue  # single records: the 404 test above
        response = world.admin.get(world.fill(op.path))
        checked += 1
        assert response.status_code == 200, (op, response.status_code)
        text = response.get_data(as_text=True)
        found = [leak for leak in leaks if leak in text]
        if found:
            failures.append(f"GET {op.path} shows {found}")
    assert not failures, "\n".join(failures)
    assert checked >= 10
    dashboard = world.admin.get("/api/v1/analytics/dashboard").get_json()["data"]
    assert sum(dashboard["tasksByStatus"].values()) == 2
    assert [p["userId"] for p in dashboard["topPerformers"]] == [world.records["users"]]

    for path, until in [("/api/v1/stream", last_task["id"]), ("/api/v1/stream/tasks", last_task["id"]),
                        ("/api/v1/stream/projects", last_project["id"])]:
        text = _replay(world.admin, path, until)
        assert f'"id":"{until}"' in text, text[-500:]
        assert world.records["tasks" if "projects" not in path else "projects"] in text
        assert not [leak for leak in leaks if leak in text], path

    query = "{ %s(limit: 100) { totalCount edges { node { id } } } }"
    for plural in ("users", "projects", "tasks", "comments"):
        body = gql(world.admin, query % plural).get_json()
        total = world.admin.get(f"/{plural}").get_json()["meta"]["total"]
        assert body["data"][plural]["totalCount"] == total >= 1, body
        assert not [leak for leak in leaks if leak in json.dumps(body)]
    foreign = gql(world.admin, f'{{ task(id: "{their_world.records["tasks"]}") {{ title }} }}').get_json()
    assert foreign["data"]["task"] is None
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    their_id = their_world.records["tasks"]
    mutation = f'mutation {{ updateTask(id: "{their_id}", input: {{title: "x"}}) {{ id }} }}'
    assert gql(world.admin, mutation).get_json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    their_task = their_world.admin.get(f"/tasks/{their_world.records['tasks']}").get_json()["data"]
    assert their_task["title"] == f"{their_world.marker} task"


def _replay(key: ApiClient, path: str, until: str) -> str:
    """A stream's replay of everything after the account's first event, read up to the event
    carrying record `until` (or the first heartbeat, should it never come)."""
    log = key.get("/events", query_string={"limit": 100}).get_json()
    assert not log["meta"]["hasNextPage"]
    response = key.get(path, query_string={"lastEventId": log["data"][-1]["id"]})
    assert response.status_code == 200, response.get_data(as_text=True)
    text = ""
    try:
        for chunk in response.response:
            text += chunk.decode() if isinstance(chunk, bytes) else chunk
            if ": ping" in text or f'"id":"{until}"' in text:
                break
    finally:
        response.close()
    return text


# --- SSRF on webhook URLs --------------------------------------------------------------------------


@pytest.fixture
def private_refused(monkeypatch):
    monkeypatch.setattr(config, "_active", dataclasses.replace(config.current(),
                                                                webhook_allow_private=False))


@pytest.fixture
def private_allowed(monkeypatch):
    monkeypatch.setattr(config, "_active", dataclasses.replace(config.current(),
                                                                webhook_allow_private=True))


class FakeDNS:
    """`socket.getaddrinfo` answering chosen names; `answers(n)` gives the n-th lookup's addresses."""

    def __init__(self, real):
        self.real = real
        self.names: dict = {}
        self.lookups: dict = {}

    def add(self, name: str, answers) -> None:
        self.names[name] = answers if callable(answers) else (lambda n, a=answers: a)

    def __call__(self, host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self.names:
            return self.real(host, port, *args, **kwargs)
        count = self.lookups.get(name, 0)
        self.lookups[name] = count + 1
        infos = []
        for address in self.names[name](count):
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 80))
            if family == socket.AF_INET6:
                sockaddr += (0, 0)
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return infos


@pytest.fixture
def fake_dns(monkeypatch):
    dns = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    return dns


class Receiver:
    """An HTTP server on 127.0.0.1 that records POSTs and answers `status` with `headers`."""

    def __init__(self, status: int = 200, headers: dict | None = None):
        self.requests: list[dict] = []

        def on_post(handler):
            read_body(handler)
            self.requests.append({k.lower(): v for k, v in handler.headers.items()})
            respond(handler, status, headers)

        self.http = PostServer(on_post)
        self.port, self.url = self.http.port, self.http.url

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def receivers():
    started = []

    def start(status: int = 200, headers: dict | None = None) -> Receiver:
        started.append(Receiver(status, headers))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


def register(api, url: str, events=("task.created",)):
    return api.post("/webhooks", json={"url": url, "events": list(events)})


def attempts(api, hook_id: str) -> list[dict]:
    rows = api.get(f"/webhooks/{hook_id}/deliveries").get_json()["data"]
    return sorted(rows, key=lambda r: r["attempt"])


def deliver_pending(api, hook_id: str) -> dict:
    """Run the delivery job in this process for the hook's first attempt; returns that attempt."""
    from jobs import webhooks as delivery_jobs

    [pending] = attempts(api, hook_id)
    assert pending["status"] == "pending"
    assert delivery_jobs.deliver([pending["id"]]) == 1
    return attempts(api, hook_id)[0]


REFUSED_URLS = [
    "http://127.0.0.1/h", "http://127.8.9.10:8080/h", "https://127.0.0.1:443/h",
    "http://127.0.0.1:6379/", "http://localhost/h", "http://LocalHost/h", "http://localhost:5432/",
    "http://10.0.0.1/h", "http://172.31.255.254/h", "http://192.168.1.1/h",
    "http://169.254.169.254/latest/meta-data/", "http://169.254.170.2/v2/credentials",
    "http://100.100.100.200/latest/meta-data/", "http://100.64.0.1/h", "http://198.18.0.1/h",
    "http://0.0.0.0/h", "http://0/h", "http://[::1]/h", "http://[::]/h", "http://[fc00::1]/h",
    "http://[fd00:ec2::254]/latest/meta-data/", "http://[fe80::1]/h",
    "http://[::ffff:127.0.0.1]/h", "http://[::ffff:a9fe:a9fe]/h", "http://[64:ff9b::a9fe:a9fe]/h",
    "http://2130706433/h", "http://0x7f000001/h", "http://0177.0.0.1/h", "http://017700000001/h",
    "http://127.1/h", "http://0x7f.1/h", "http://0xa9.0xfe.0xa9.0xfe/h", "http://2852039166/h",
    "http://224.0.0.1/h",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_webhook_urls_reaching_internal_addresses_are_refused(api, private_refused, url):
    body = assert_error(register(api, url), 400, "VALIDATION_FAILED")
    assert "non-public" in body["details"]["url"][0]
    assert api.get("/webhooks").get_json()["data"] == []


@pytest.mark.parametrize("url", ["http://2130706433/h", "http://0x7f000001/h", "http://[fd00::1]/h",
                                 "http://100.64.0.1/h", "http://[::ffff:127.0.0.1]/h"])
def test_internal_addresses_are_accepted_when_allowed(api, private_allowed, url):
    response = register(api, url)
    assert response.status_code == 201, response.get_json()
    _drop_webhooks_of(api)


def _drop_webhooks_of(api) -> None:
    for hook in api.get("/webhooks").get_json()["data"]:
        api.delete(f"/webhooks/{hook['id']}")


@pytest.mark.parametrize("answers", [["127.0.0.1"], ["10.1.2.3"], ["169.254.169.254"], ["::1"],
                                     [PUBLIC_IP, "192.168.0.7"], ["fd12:3456::1", PUBLIC_IP]],
                         ids=["loopback", "private", "metadata", "ipv6-loopback", "one-of-two",
                              "ula-first"])
def test_names_resolving_to_internal_addresses_are_refused(api, private_refused, fake_dns, answers):
    fake_dns.add("hooks.customer.example", answers)
    body = assert_error(register(api, "https://hooks.customer.example/h"), 400, "VALIDATION_FAILED")
    assert "non-public" in body["details"]["url"][0]
    hook = register(api, f"https://{PUBLIC_IP}/h").get_json()["data"]
    assert_error(api.patch(f"/webhooks/{hook['id']}", json={"url": "https://hooks.customer.example/h"}),
                 400, "VALIDATION_FAILED")
    assert api.get(f"/webhooks/{hook['id']}").get_json()["data"]["url"] == f"https://{PUBLIC_IP}/h"
    _drop_webhooks_of(api)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_deliveries_never_follow_redirects(api, private_allowed, receivers, status):
    target = receivers()
    redirecting = receivers(status, {"Location": target.url})
    hook = register(api, redirecting.url).get_json()["data"]
    api.create("tasks", title="redirected?")
    attempt = deliver_pending(api, hook["id"])
    assert len(redirecting.requests) == 1
    assert target.requests == []
    assert (attempt["attempt"], attempt["status"], attempt["responseStatus"]) == (1, "failed", status)
    _drop_webhooks_of(api)


def test_a_name_rebound_to_a_private_address_after_registration_is_not_called(
        api, private_refused, fake_dns, receivers):
    receiver = receivers()
    fake_dns.add("rebind.customer.example", lambda n: [PUBLIC_IP] if n == 0 else ["127.0.0.1"])
    hook = register(api, f"http://rebind.customer.example:{receiver.port}/hook")
    assert hook.status_code == 201, hook.get_json()
    api.create("tasks", title="rebound")
    attempt = deliver_pending(api, hook.get_json()["data"]["id"])
    assert attempt["status"] == "failed" and "non-public" in attempt["error"]
    assert attempt["nextAttemptAt"] is not None  # retried later, in case the name comes back
    assert receiver.requests == []
    _drop_webhooks_of(api)


def test_a_name_rebound_between_the_check_and_the_connection_is_not_called(
        api, private_refused, fake_dns, receivers):
    """The delivery connects to the very address it checked: no second lookup to race."""
    receiver = receivers()
    # Public for the registration check and the delivery-time check, private from then on.
    fake_dns.add("race.customer.example", lambda n: [PUBLIC_IP] if n < 2 else ["127.0.0.1"])
    hook = register(api, f"http://race.customer.example:{receiver.port}/hook").get_json()["data"]
    api.create("tasks", title="raced")
    attempt = deliver_pending(api, hook["id"])
    assert receiver.requests == []
    assert attempt["status"] == "failed" and attempt["responseStatus"] is None
    assert "non-public address (127.0.0.1)" in attempt["error"]
    _drop_webhooks_of(api)


def test_deliveries_connect_to_the_checked_address_with_the_name_as_host(
        api, private_refused, fake_dns, receivers, monkeypatch):
    """Pinning keeps ordinary deliveries working: the Host header still names the host."""
    receiver = receivers()
    fake_dns.add("hooks.partner.example", [PUBLIC_IP])
    connected = []
    real_create = urllib3.util.connection.create_connection

    def create_connection(address, *args, **kwargs):
        connected.append(address)
        # Stand in for the public host: the bytes go to the local receiver.
        return real_create(("127.0.0.1", receiver.port), *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    hook = register(api, f"http://hooks.partner.example:{receiver.port}/hook").get_json()["data"]
    api.create("tasks", title="pinned")
    attempt = deliver_pending(api, hook["id"])
    assert connected == [(PUBLIC_IP, receiver.port)]
    assert attempt["status"] == "succeeded", attempt
    [received] = receiver.requests
    assert received["host"] == f"hooks.partner.example:{receiver.port}"
    _drop_webhooks_of(api)


class StreamingReceiver:
    """Answers 200 at once, then sends a body with `send(write)`; counts the bytes it got out."""

    def __init__(self, send):
        self.sent = 0
        self.done = threading.Event()

        def on_post(handler):
            read_body(handler)
            handler.send_response(200)
            handler.send_header("Content-Length", str(1 << 40))
            handler.end_headers()

            def write(data: bytes) -> None:
                handler.wfile.write(data)
                handler.wfile.flush()
                self.sent += len(data)

            try:
                send(write)
            except OSError:
                pass  # the worker stopped reading and closed the connection
            finally:
                self.done.set()

        self.http = PostServer(on_post)
        self.url = self.http.url

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def short_webhook_timeout(monkeypatch):
    monkeypatch.setattr(config, "_active", dataclasses.replace(
        config.current(), webhook_allow_private=True, webhook_timeout=1.0))


def _deliver_in_thread(api, hook_id: str) -> threading.Thread:
    thread = threading.Thread(target=deliver_pending, args=(api, hook_id), daemon=True)
    thread.start()
    return thread


def test_a_huge_response_body_is_not_read_into_the_worker(api, short_webhook_timeout):
    chunk, total = b"x" * (1 << 20), 512 << 20

    def send(write):
        while receiver.sent < total:
            write(chunk)

    receiver = StreamingReceiver(send)
    try:
        hook = register(api, receiver.url).get_json()["data"]
        api.create("tasks", title="flooded")
        _deliver_in_thread(api, hook["id"]).join(timeout=60)
        assert receiver.done.wait(timeout=60)
        [attempt] = attempts(api, hook["id"])[:1]
        assert attempt["status"] == "succeeded"
        assert attempt["responseBody"] == "x" * 2048
        assert receiver.sent < 64 << 20  # it stopped reading long before the 512 MiB were out
    finally:
        receiver.close()
        _drop_webhooks_of(api)


def test_a_drip_fed_response_body_cannot_hold_the_worker(api, short_webhook_timeout):
    """One byte every 50 ms for up to a minute: the attempt still ends within WEBHOOK_TIMEOUT."""
    stop = threading.Event()

    def send(write):
        for _ in range(1200):
            if stop.wait(0.05):
                return
            write(b"y")

    receiver = StreamingReceiver(send)
    try:
        hook = register(api, receiver.url).get_json()["data"]
        api.create("tasks", title="dripped")
        thread = _deliver_in_thread(api, hook["id"])
        thread.join(timeout=15)
        assert not thread.is_alive(), "the delivery is still reading a drip-fed body"
        [attempt] = attempts(api, hook["id"])[:1]
        assert attempt["status"] == "succeeded" and attempt["durationMs"] < 5000
        assert set(attempt["responseBody"]) <= {"y"}
    finally:
        stop.set()
        receiver.close()
        _drop_webhooks_of(api)


# --- response headers ---------------------------------------------------------------------------


def test_nosniff_and_no_framing_on_every_kind_of_response(app, account, world, monkeypatch):
    api, nobody = account.api, ApiClient(account.client, None)
    file_url = f"/api/v1/files/{world.ids['file_id']}/content"
    task = world.records["tasks"]
    etag = api.get(f"/tasks/{task}").headers["ETag"]
    responses = {
        "json list": api.get("/tasks"),
        "json created": api.post("/tasks", json={"title": "t"}),
        "no content": api.delete(f"/comments/{world.records['comments']}"),
        "not modified": api.get(f"/tasks/{task}", headers={"If-None-Match": etag}),
        "validation error": api.post("/tasks", json={"nope": 1}),
        "unauthorized": nobody.get("/tasks"),
        "forbidden": scoped(account, "write").get("/tasks"),
        "unknown route": api.get("/api/v1/nope"),
        "wrong method": api.request("PUT", "/tasks"),
        "file download": api.get(file_url),
        "file range": api.get(file_url, headers={"Range": "bytes=0-3"}),
        "export download": api.get(f"/jobs/{world.ids['job_id']}/result"),
        "openapi": nobody.get("/api/v1/openapi.json"),
        "docs": nobody.get("/api/v1/docs"),
        "docs asset": nobody.get("/api/v1/docs/assets/swagger-ui.css"),
        "graphiql": nobody.get("/api/v1/graphql"),
        "graphql": api.post("/api/v1/graphql", json={"query": "{ __typename }"}),
        "live page": nobody.get("/live"),
        "health": nobody.get("/healthz"),
        "head": api.request("HEAD", "/tasks"),
        "tus": api.request("HEAD", f"/api/v1/uploads/tus/{world.ids['upload_id']}",
                           headers={"Tus-Resumable": TUS_VERSION}),
        "stream": api.get("/api/v1/stream"),
    }
    monkeypatch.setattr(service_for("task"), "list_page", _raiser(RuntimeError("boom")))
    responses["internal error"] = api.get("/tasks")
    assert responses["file range"].status_code == 206
    assert responses["not modified"].status_code == 304
    assert responses["export download"].status_code == 200
    for name, response in responses.items():
        settle(response)
        assert response.status_code < 500 or name == "internal error", (name, response.status_code)
        assert response.headers.get("X-Content-Type-Options") == "nosniff", name
        assert response.headers.get("X-Frame-Options") == "DENY", name
        assert response.headers.get("Referrer-Policy") == "no-referrer", name


def test_polyglot_upload_is_served_as_its_sniffed_type_and_as_an_attachment(api):
    """A PNG that is also HTML, sent as text/html named .html, never comes back as a page."""
    content = media.png("<html><script>alert(document.cookie)</script></html>")
    response = api.post("/upload", data={"file": (io.BytesIO(content), "evil.html", "text/html")},
                        content_type="multipart/form-data")
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["type"] == "image/png"
    download = api.get(data["url"])
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["Content-Disposition"].startswith("attachment;")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.data == content


def test_secrets_are_sent_with_cache_control_no_store(api):
    created = api.post("/api-keys", json={"name": "cached?", "scopes": ["read"]})
    hook = api.post("/webhooks", json={"url": f"https://{PUBLIC_IP}/h", "events": ["webhook.test"]})
    hook_id = hook.get_json()["data"]["id"]
    rotated = api.post(f"/webhooks/{hook_id}/rotate-secret")
    for response, secret_field in [(created, "key"), (hook, "secret"), (rotated, "secret")]:
        assert response.status_code in (200, 201)
        assert response.get_json()["data"][secret_field]
        assert "no-store" in response.headers["Cache-Control"]
    for path in ("/api-keys", "/webhooks", f"/webhooks/{hook_id}"):
        assert "no-store" in api.get(path).headers["Cache-Control"]
    api.delete(f"/webhooks/{hook_id}")


# --- request size limits ---------------------------------------------------------------------------


LIMIT = 4096
BIG = "x" * (LIMIT + 1000)


def _stop_stream_hub() -> None:
    """Building an app repoints Redis, which would cut the SSE hub thread (started by the
    in-process streams above) off mid-read; stop it first (the next stream restarts it)."""
    from api.streams import hub

    thread = hub._thread
    if thread is not None and thread.is_alive():
        hub.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="module", autouse=True)
def no_stream_hub_left_running():
    """Leave no SSE hub thread behind for later modules' extra apps to cut off."""
    yield
    _stop_stream_hub()


@pytest.fixture
def small_limits(app, backend_env):
    """An app with 4 KiB body limits (every route) and 2 KiB upload and import limits (same
    database)."""
    _stop_stream_hub()
    with extra_apps() as build:
        yield build({**backend_env, "MAX_CONTENT_LENGTH": str(LIMIT), "JSON_MAX_BYTES": str(LIMIT),
                     "UPLOAD_MAX_BYTES": "2048",
                     "IMPORT_MAX_BYTES": "2048"}).test_client()


def _payload_too_large(response) -> bool:
    body = response.get_json(silent=True) or {}
    codes = {body.get("code")} | {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
    return response.status_code == 413 and "PAYLOAD_TOO_LARGE" in codes


def test_json_bodies_over_max_content_length_are_413_on_every_json_route(small_limits, account, world):
    client = ApiClient(small_limits, account.api.key)
    task, hook = world.records["tasks"], world.ids["webhook_id"]
    calls = [
        ("POST", "/tasks", {"title": "t", "description": BIG}),
        ("PUT", f"/tasks/{task}", {"title": "t", "description": BIG}),
        ("PATCH", f"/tasks/{task}", {"description": BIG}),
        ("POST", "/import/tasks", {"items": [{"title": BIG}]}),
        ("PATCH", "/tasks/bulk", {"updates": [{"id": task, "description": BIG}]}),
        ("POST", "/tasks/bulk-delete", {"ids": [BIG]}),
        ("POST", "/batch", {"requests": [{"id": "a", "method": "POST", "path": "/tasks",
                                          "body": {"title": BIG}}]}),
        ("POST", "/api/v1/graphql", {"query": "{ tasks { totalCount } }" + " " * len(BIG)}),
        ("POST", "/webhooks", {"url": f"https://{PUBLIC_IP}/h", "events": ["*"], "description": BIG}),
        ("PATCH", f"/webhooks/{hook}", {"description": BIG}),
        ("POST", "/api-keys", {"name": BIG, "scopes": ["admin"]}),
        ("POST", "/export/tasks", {"format": "csv", "filter": {"title": BIG}}),
    ]
    before = snapshot(account.id)
    for method, path, body in calls:
        response = client.request(method, path, json=body)
        assert _payload_too_large(response), (method, path, response.status_code, response.get_json())
    # Without a Content-Length (chunked), the limit holds while reading, even when the
    # first MAX_CONTENT_LENGTH bytes alone would be valid JSON.
    valid_prefix = b'{"title": "padded"}'.ljust(LIMIT + 100)
    for raw in (json.dumps({"title": BIG}).encode(), valid_prefix):
        assert _payload_too_large(chunked_post(client, "/tasks", raw))
    assert snapshot(account.id) == before
    assert client.post("/tasks", json={"title": "fits"}).status_code == 201
    exactly = chunked_post(client, "/tasks", b'{"title": "exactly at the limit"}'.ljust(LIMIT))
    assert exactly.status_code == 201, exactly.get_json()


def chunked_post(client: ApiClient, path: str, raw: bytes):
    """A JSON POST without a Content-Length, as gunicorn hands over a chunked body."""
    return client.post(path, input_stream=io.BytesIO(raw), headers={"Content-Type": "application/json"},
                       environ_overrides={"wsgi.input_terminated": True,
                                          "HTTP_TRANSFER_ENCODING": "chunked"})


def test_uploads_and_imports_over_their_limits_are_413(small_limits, account):
    client = ApiClient(small_limits, account.api.key)
    before = snapshot(account.id)
    too_big = media.png_of_size(2049, media.token())
    responses = [
        client.post("/upload", data={"file": (io.BytesIO(too_big), "big.png")},
                    content_type="multipart/form-data"),
        client.post("/upload", data={"files": [(io.BytesIO(media.png(media.token())), "ok.png"),
                                               (io.BytesIO(too_big), "big.png")]},
                    content_type="multipart/form-data"),
        client.post("/import/tasks/file", data={"file": (io.BytesIO(b"title\n" + b"T\n" * 1100),
                                                         "big.csv")},
                    content_type="multipart/form-data"),
        client.post("/uploads/tus", headers={"Tus-Resumable": TUS_VERSION, "Upload-Length": "2049"}),
    ]
    for response in responses:
        assert _payload_too_large(response), (response.status_code, response.get_json())
    assert snapshot(account.id) == before
    fits = client.post("/upload", data={"file": (io.BytesIO(media.png_of_size(2048, media.token())),
                                                 "fits.png")}, content_type="multipart/form-data")
    assert fits.status_code == 201


# --- no internals in error responses --------------------------------------------------------------


SQL_LEAK = 'syntax error at or near "SELEC" LINE 1: SELEC "key_hash" FROM "api_keys" WHERE 1=1'
PATH_LEAK = "/work/main/api/services/secret_module.py, line 42, in handler"


def _failures():
    return [peewee.ProgrammingError(SQL_LEAK), RuntimeError(PATH_LEAK), KeyError("key_hash"),
            ZeroDivisionError("division by zero in /srv/quiver/api/query.py"),
            peewee.OperationalError('no such table: "api_keys"'),
            peewee.IntegrityError('duplicate key value violates unique constraint "api_keys_pkey"')]


BROKEN_ROUTES = [
    # (what to break, how to call the route that uses it)
    ("api.services.records:list_page", "GET", "/tasks", None),
    ("api.services.records:create", "POST", "/tasks", {"title": "t"}),
    ("api.services.bulk:bulk_create", "POST", "/import/tasks", {"items": [{"title": "t"}]}),
    ("api.services.webhooks:create", "POST", "/webhooks", {"url": f"https://{PUBLIC_IP}/h",
                                                           "events": ["*"]}),
    ("api.services.accounts:create_key_from_payload", "POST", "/api-keys",
     {"name": "n", "scopes": ["read"]}),
    ("api.services.files:get", "GET", "/files/{file_id}", None),
    ("api.services.jobs:get", "GET", "/jobs/{job_id}", None),
    ("api.services.events:as_json", "GET", "/events", None),
    ("api.endpoints.analytics:utcnow", "GET", "/analytics/dashboard", None),
    ("api.services.records:list_page", "POST", "/api/v1/graphql", {"query": "{ tasks { totalCount } }"}),
    ("api.services.keys:touch", "GET", "/users", None),
]


def _break(monkeypatch, target: str, error: Exception) -> None:
    module_name, attribute = target.split(":")
    if module_name == "api.services.records":
        monkeypatch.setattr(service_for("task"), attribute, _raiser(error))
        return
    module = __import__(module_name, fromlist=[attribute])
    monkeypatch.setattr(module, attribute, _raiser(error))


def assert_no_internals(text: str, body: dict) -> None:
    assert set(body) <= {"success", "error", "code", "details"}, body
    for leak in ("Traceback", 'File "', ".py", "SELEC", "api_keys", "key_hash", "line 42",
                 "ProgrammingError", "RuntimeError", "KeyError", "ZeroDivisionError", "IntegrityError",
                 "OperationalError", "/work/", "/srv/", "division by zero", "constraint"):
        assert leak not in text, (leak, text)


@pytest.mark.parametrize("error", _failures(), ids=lambda e: type(e).__name__)
def test_internal_errors_answer_only_the_envelope(api, world, monkeypatch, error):
    for target, method, path, body in BROKEN_ROUTES:
        with monkeypatch.context() as patch:
            _break(patch, target, error)
            response = api.request(method, world.fill(path), json=body)
        text = response.get_data(as_text=True)
        payload = response.get_json()
        assert response.status_code == 500, (target, response.status_code, text)
        assert payload == {"success": False, "error": "Internal server error.",
                           "code": "INTERNAL_ERROR"}, (target, payload)
        assert_no_internals(text, payload)


def test_internal_errors_inside_a_batch_answer_only_the_envelope(api, monkeypatch):
    _break(monkeypatch, "api.services.records:list_page", peewee.ProgrammingError(SQL_LEAK))
    response = api.post("/batch", json={"requests": [{"id": "a", "method": "GET", "path": "/tasks"}]})
    assert response.status_code == 200
    [sub] = response.get_json()["responses"]
    assert sub["status"] == 500
    assert sub["body"] == {"success": False, "error": "Internal server error.", "code": "INTERNAL_ERROR"}
    assert_no_internals(response.get_data(as_text=True), sub["body"])


def test_backend_outage_answers_503_without_the_driver_message(api, monkeypatch):
    message = 'could not connect to server: Connection refused; host "10.0.0.5" password=hunter2'
    _break(monkeypatch, "api.services.records:list_page", peewee.OperationalError(message))
    response = api.get("/tasks")
    body = response.get_json()
    assert response.status_code == 503
    assert body["code"] == "SERVICE_UNAVAILABLE" and body["details"] == {"service": "database"}
    text = response.get_data(as_text=True)
    for leak in ("10.0.0.5", "hunter2", "Connection refused", "OperationalError"):
        assert leak not in text


# --- SQL injection in every query parameter ---------------------------------------------------------


INJECTIONS = ["' OR '1'='1", "1'; DROP TABLE tasks; --", "x') UNION SELECT key_hash FROM api_keys --",
              "a\x00' OR 1=1 --"]
NOT_FILTERS = {"page", "limit", "cursor", "sort", "fields", "expand", "types", "lastEventId",
               "access_token", "from", "to"}
MATCHING_OPS = {None, "eq", "contains", "in"}  # no stored value holds an injection string


@pytest.mark.parametrize("payload", INJECTIONS, ids=["or-true", "drop-table", "union", "nul"])
def test_sql_injection_in_every_query_parameter_is_inert(app, world, their_world, payload):
    own_hash = hashlib.sha256(world.admin.key.encode()).hexdigest()
    leaks = [their_world.marker, *their_world.every_id, own_hash]
    befores = snapshot(world.account.id), snapshot(their_world.account.id)
    failures, checked = [], 0
    for op in operations(world.account.client):
        if op.method != "GET" or needed_scope(op) in (None, GRAPHQL) or not op.query:
            continue
        for param, op_name in op.query:
            response = settle(world.admin.get(world.fill(op.path), query_string={param: payload}))
            checked += 1
            problem = _injection_problem(response, op, param, op_name, leaks)
            if problem:
                failures.append(f"GET {op.path}?{param}=…: {problem}")
    assert not failures, "\n".join(failures)
    assert checked > 200
    assert (snapshot(world.account.id), snapshot(their_world.account.id)) == befores
    with db.connection_context():
        assert ENTITIES["task"].model.select().count() >= 2  # the table is still there


def _injection_problem(response, op: Operation, param: str, op_name: str | None, leaks) -> str | None:
    if response.status_code == 400:
        code = response.get_json()["code"]
        return None if code in ("VALIDATION_FAILED", "BAD_REQUEST") else f"400 with {code}"
    if response.status_code != 200:
        return f"status {response.status_code}"
    if response.mimetype == "text/event-stream":
        return None  # a stream opened with a harmless filter; nothing more to read
    text = response.get_data(as_text=True)
    found = [leak for leak in leaks if leak in text]
    if found:
        return f"shows {found}"
    data = response.get_json()["data"]
    field_name = param.split("[")[0]
    matching = param == "q" or (field_name not in NOT_FILTERS and op_name in MATCHING_OPS)
    if isinstance(data, list) and matching and data:
        return f"matched {len(data)} rows"
    return None


@pytest.mark.parametrize("payload", INJECTIONS[:3], ids=["or-true", "drop-table", "union"])
def test_sql_injection_in_path_ids_is_404(app, world, payload):
    before = snapshot(world.account.id)
    failures = []
    for op in operations(world.account.client):
        if not op.id_params or needed_scope(op) in (None, GRAPHQL):
            continue
        path = op.path
        for name in op.path_params:
            path = path.replace(f"{{{name}}}", payload if name not in NOT_IDS
                                else world.id_for(op.path, name))
        response = send(world.admin, op.method, op, world, path)
        if response.status_code != 404:
            failures.append(f"{op.method} {path}: {response.status_code}")
    assert not failures, "\n".join(failures)
    assert snapshot(world.account.id) == before
