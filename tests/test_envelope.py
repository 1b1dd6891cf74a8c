"""The cross-cutting shape of every response (contract sections 1 and 11).

Every error leaves in the envelope `{"success": false, "error", "code", "details"?}`
(unknown routes, 405, 413, 500 and 503 included); every response carries an
`X-Request-ID`; JSON is `application/json; charset=utf-8`; health checks and the
API docs (served without internet access) need no key; CORS follows `CORS_ORIGINS`.
Tests that need another configuration build an extra app and restore the session
app's process-wide settings afterwards (`tests.extra_apps`).
"""

import re
from html.parser import HTMLParser

import peewee
import pytest

from api import config, redis_conn, store
from api.auth import public
from tests.extra_apps import extra_apps

JSON_TYPE = "application/json; charset=utf-8"
SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
ENTITY_PATHS = ["users", "projects", "tasks", "comments"]
ORIGIN = "https://app.example.com"


def assert_envelope(response, status: int, code: str) -> dict:
    """`status` with `code` in the error envelope, as JSON, with a request id."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == JSON_TYPE
    assert response.headers.get("X-Request-ID")
    body = response.get_json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"success", "error", "code", "details"}
    if "details" in body:
        assert isinstance(body["details"], dict)
    return body


@pytest.fixture
def build_app(app):
    """`build_app(overrides)` makes another app; the session app's globals come back after."""
    with extra_apps() as build:
        yield build


# --- errors in the envelope ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v1/tasks/tsk_1/nope", "/api/v2/tasks",
                                  "/api/v1/docs/assets/no-such-file.js"])
def test_unknown_route_is_404_in_the_envelope_without_a_key(client, path):
    assert_envelope(client.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_unknown_route_is_404_in_the_envelope_with_a_key(api, method):
    assert_envelope(api.request(method, "/api/v1/no-such-entity"), 404, "NOT_FOUND")


def test_unknown_record_is_404_in_the_envelope(api):
    body = assert_envelope(api.get("/tasks/tsk_00000000000000000000000000"), 404, "NOT_FOUND")
    assert "tsk_00000000000000000000000000" in body["error"]


@pytest.mark.parametrize("method,path,allowed", [
    ("DELETE", "/api/v1/tasks", {"GET", "POST"}),
    ("PUT", "/api/v1/projects", {"GET", "POST"}),
    ("POST", "/api/v1/tasks/tsk_00000000000000000000000000", {"GET", "PATCH", "PUT", "DELETE"}),
    ("POST", "/healthz", {"GET"}),
    ("PATCH", "/api/v1/api-keys/key_00000000000000000000000000", {"GET", "DELETE"}),
])
def test_wrong_method_is_405_with_allow_header(client, api, method, path, allowed):
    for response in (client.open(path, method=method), api.request(method, path)):
        assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
        allow = {m.strip() for m in response.headers["Allow"].split(",")}
        assert allowed <= allow
        assert method not in allow


def test_body_over_its_routes_cap_is_413_and_bulk_routes_take_more(account, backend_env,
                                                                     build_app):
    small = build_app({**backend_env, "JSON_MAX_BYTES": "1000", "MAX_CONTENT_LENGTH": "100000"})
    client = small.test_client()
    headers = {"Authorization": f"Bearer {account.api.key}"}

    response = client.post("/api/v1/tasks", json={"title": "x", "description": "y" * 2000},
                           headers=headers)
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
    assert client.get("/api/v1/tasks", headers=headers).get_json()["meta"]["total"] == 0

    fits = client.post("/api/v1/tasks", json={"title": "fits"}, headers=headers)
    assert fits.status_code == 201
    bulk = client.post("/api/v1/import/tasks", headers=headers,
                       json={"items": [{"title": "x", "description": "y" * 2000}] * 10})
    assert bulk.status_code == 201, bulk.get_json()
    over = client.post("/api/v1/import/tasks", headers=headers,
                       json={"items": [{"title": "x", "description": "y" * 2000}] * 60})
    assert_envelope(over, 413, "PAYLOAD_TOO_LARGE")
    assert client.get("/api/v1/tasks", headers=headers).get_json()["meta"]["total"] == 11


def test_unexpected_exception_is_500_without_internals(account, backend_env, build_app):
    broken = build_app(backend_env)
    secret_sql = 'syntax error at or near "SELEC"\nLINE 1: SELEC key_hash FROM api_keys'

    @broken.route("/api/v1/boom-sql")
    @public
    def boom_sql():
        raise peewee.ProgrammingError(secret_sql)

    @broken.route("/api/v1/boom")
    def boom():  # undeclared scope: admin only
        raise RuntimeError("internal detail: /srv/quiver/api/secret.py line 42")

    client = broken.test_client()
    admin = {"Authorization": f"Bearer {account.api.key}"}
    for response in (client.get("/api/v1/boom-sql"),
                     client.get("/api/v1/boom", headers=admin),
                     client.get("/api/v1/boom", headers={**admin, "X-Request-ID": "trace-500"})):
        body = assert_envelope(response, 500, "INTERNAL_ERROR")
        text = response.get_data(as_text=True)
        for leak in ("Traceback", "SELEC", "api_keys", "key_hash", "secret.py", "line 42",
                     "ProgrammingError", "RuntimeError", 'File "'):
            assert leak not in text
        assert "details" not in body
    assert response.headers["X-Request-ID"] == "trace-500"


def test_undeclared_route_needs_an_admin_key(account, backend_env, build_app):
    extra = build_app(backend_env)

    @extra.route("/api/v1/undeclared")
    def undeclared():
        return {"success": True, "data": "ok"}

    client = extra.test_client()
    assert_envelope(client.get("/api/v1/undeclared"), 401, "UNAUTHORIZED")
    reader = account.key("read")
    body = assert_envelope(client.get("/api/v1/undeclared", headers=reader.headers()), 403,
                           "INSUFFICIENT_SCOPE")
    assert body["details"]["required"] == "admin"
    assert client.get("/api/v1/undeclared", headers=account.api.headers()).status_code == 200


def test_redis_down_makes_readyz_503_but_health_and_crud_keep_working(account, backend_env, build_app):
    down = build_app({**backend_env, "REDIS_URL": "redis://127.0.0.1:1/0"})

    @down.route("/api/v1/needs-redis")
    @public
    def needs_redis():
        redis_conn.client().ping()
        return {"success": True, "data": "pong"}

    client = down.test_client()

    ready = client.get("/readyz")
    body = assert_envelope(ready, 503, "SERVICE_UNAVAILABLE")
    assert "redis" in body["error"].lower()
    assert body["details"]["redis"] != "ok"
    assert body["details"]["database"] == "ok"

    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.get_json()["success"] is True

    headers = account.api.headers()
    created = client.post("/api/v1/tasks", json={"title": "despite redis"}, headers=headers)
    assert created.status_code == 201
    task_id = created.get_json()["data"]["id"]
    assert client.get(f"/api/v1/tasks/{task_id}", headers=headers).status_code == 200
    assert client.patch(f"/api/v1/tasks/{task_id}", json={"status": "completed"},
                        headers=headers).get_json()["data"]["status"] == "completed"
    assert client.get("/api/v1/tasks", headers=headers).get_json()["meta"]["total"] == 1
    assert client.delete(f"/api/v1/tasks/{task_id}", headers=headers).status_code == 204

    unavailable = assert_envelope(client.get("/api/v1/needs-redis"), 503, "SERVICE_UNAVAILABLE")
    assert unavailable["details"]["service"] == "redis"
    assert "127.0.0.1:1" not in unavailable["error"]


def test_readyz_is_200_when_everything_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["data"] == {"database": "ok", "redis": "ok"}


def test_extra_apps_leave_the_session_app_working(app, api, backend_env, tmp_path):
    before = (store.db.obj, redis_conn._settings, getattr(config, "_active", None))
    with extra_apps() as build:
        build({**backend_env, "REDIS_URL": "redis://127.0.0.1:1/0",
               "DATABASE_URL": f"sqlite:///{tmp_path / 'elsewhere.db'}"})
        assert api.client.get("/readyz").status_code == 503
    assert (store.db.obj, redis_conn._settings, getattr(config, "_active", None)) == before
    assert api.client.get("/readyz").status_code == 200
    assert api.create("tasks", title="still here")["title"] == "still here"
    assert api.get("/tasks").get_json()["meta"]["total"] == 1


# --- X-Request-ID ---------------------------------------------------------------------------


def _sample_responses(client, api, headers):
    task = api.create("tasks", title="for request ids")
    return {
        "200": api.get("/tasks", headers=headers),
        "201": api.post("/tasks", json={"title": "t"}, headers=headers),
        "204": api.delete(f"/tasks/{task['id']}", headers=headers),
        "400": api.post("/tasks", json={"nope": 1}, headers=headers),
        "401": client.get("/api/v1/tasks", headers=headers),
        "404": client.get("/api/v1/nope", headers=headers),
        "405": client.delete("/api/v1/tasks", headers=headers),
        "options": client.options("/api/v1/tasks", headers=headers),
        "healthz": client.get("/healthz", headers=headers),
        "docs": client.get("/api/v1/docs", headers=headers),
    }


def test_request_id_is_echoed_on_every_response(client, api):
    given = "req-2025.01.15:abc/DEF+1=_"
    for name, response in _sample_responses(client, api, {"X-Request-ID": given}).items():
        assert response.headers.get("X-Request-ID") == given, name


def test_request_id_is_generated_when_absent(client, api):
    responses = _sample_responses(client, api, {})
    seen = set()
    for name, response in responses.items():
        request_id = response.headers.get("X-Request-ID")
        assert request_id and SAFE_REQUEST_ID.match(request_id), name
        seen.add(request_id)
    assert len(seen) == len(responses)


@pytest.mark.parametrize("unsafe", [
    "abc\ndef", "abc\r\nSet-Cookie: x=1", "a" * 500, "has space", '"><script>', "", "ünïcode",
], ids=["newline", "header-injection", "too-long", "space", "markup", "empty", "non-ascii"])
def test_unsafe_request_id_is_replaced(client, api, unsafe):
    response = api.get("/tasks", environ_overrides={"HTTP_X_REQUEST_ID": unsafe})
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert request_id != unsafe
    assert SAFE_REQUEST_ID.match(request_id)
    error = client.get("/api/v1/tasks", environ_overrides={"HTTP_X_REQUEST_ID": unsafe})
    assert SAFE_REQUEST_ID.match(error.headers["X-Request-ID"])


# --- content type -------------------------------------------------------------------------


def test_json_responses_are_utf8_json(client, api):
    task = api.create("tasks", title="Grüße ✓")
    responses = [
        api.get("/tasks"),
        api.get(f"/tasks/{task['id']}"),
        api.post("/tasks", json={"title": "x"}),
        api.patch(f"/tasks/{task['id']}", json={"title": "y"}),
        api.post("/tasks", json={}),
        api.post("/tasks", data="{", headers={"Content-Type": "application/json"}),
        api.get("/api/v1/api-keys"),
        client.get("/api/v1/tasks"),
        api.get("/api/v1/nope"),
        client.get("/healthz"),
        client.get("/readyz"),
        client.get("/api/v1/openapi.json"),
    ]
    for response in responses:
        assert response.headers["Content-Type"] == JSON_TYPE, response.request.path
        assert response.get_json() is not None


def test_non_ascii_text_round_trips(api):
    task = api.create("tasks", title="Grüße ✓ 日本")
    response = api.get(f"/tasks/{task['id']}")
    assert response.get_json()["data"]["title"] == "Grüße ✓ 日本"
    assert "Grüße ✓ 日本".encode() in response.get_data()


# --- public routes: health, OpenAPI, docs ----------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/docs"])
def test_public_routes_need_no_key(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert "WWW-Authenticate" not in response.headers


def test_public_routes_ignore_a_bad_key(client):
    headers = {"Authorization": "Bearer sk_not_a_real_key_at_all_aaaaaaaaaaaaaaa"}
    for path in ["/healthz", "/api/v1/openapi.json", "/api/v1/docs"]:
        assert client.get(path, headers=headers).status_code == 200


def test_healthz_reports_ok(client):
    body = client.get("/healthz").get_json()
    assert body == {"success": True, "data": {"status": "ok"}}


def _resolve(spec: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = spec
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def test_openapi_document_is_valid_openapi_3(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert isinstance(spec["paths"], dict) and spec["paths"]
    for ref in set(_refs(spec)):
        _resolve(spec, ref)
    operation_ids = []
    for path, item in spec["paths"].items():
        assert path.startswith("/")
        templated = set(re.findall(r"{([^}]+)}", path))
        path_params = list(item.get("parameters", []))
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert method in HTTP_METHODS, (path, method)
            assert operation["responses"], (path, method)
            for status in operation["responses"]:
                assert status == "default" or re.fullmatch(r"[1-5](\d\d|XX)", status), status
            params = [p if "$ref" not in p else _resolve(spec, p["$ref"])
                      for p in path_params + operation.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == templated, (path, method)
            assert all(p["required"] is True for p in params if p["in"] == "path")
            assert all(p["in"] in {"query", "header", "path", "cookie"} for p in params)
            if "operationId" in operation:
                operation_ids.append(operation["operationId"])
    assert len(operation_ids) == len(set(operation_ids))
    schemes = spec["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())


def test_openapi_lists_crud_for_every_entity_and_api_keys(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for entity in ENTITY_PATHS:
        collection = paths[f"/api/v1/{entity}"]
        assert {"get", "post"} <= set(collection), entity
        items = [p for p in paths if re.fullmatch(rf"/api/v1/{entity}/{{[^}}/]+}}", p)]
        assert len(items) == 1, entity
        assert {"get", "patch", "put", "delete"} <= set(paths[items[0]]), entity
    assert {"get", "post"} <= set(paths["/api/v1/api-keys"])
    key_items = [p for p in paths if re.fullmatch(r"/api/v1/api-keys/{[^}/]+}", p)]
    assert len(key_items) == 1
    assert {"get", "delete"} <= set(paths[key_items[0]])


def test_openapi_marks_health_checks_public(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert paths["/healthz"]["get"].get("security") == []
    assert paths["/readyz"]["get"].get("security") == []


class _AssetCollector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.urls.append(attrs["src"])


def test_docs_page_serves_every_asset_locally(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert not re.search(r"https?://", html)
    assert not re.search(r"""(src|href)\s*=\s*["']//""", html)
    assert "/api/v1/openapi.json" in html

    collector = _AssetCollector()
    collector.feed(html)
    assert any(u.endswith(".js") for u in collector.urls)
    assert any(u.endswith(".css") for u in collector.urls)
    for url in collector.urls:
        assert url.startswith("/api/v1/docs/assets/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.get_data()) > 1000, url
        expected = "javascript" if url.endswith(".js") else "css"
        assert expected in asset.mimetype, (url, asset.mimetype)
        asset.close()


def test_docs_assets_do_not_escape_their_directory(client):
    for path in ["/api/v1/docs/assets/../../../api/auth.py",
                 "/api/v1/docs/assets/%2e%2e/%2e%2e/etc/passwd"]:
        response = client.get(path)
        assert response.status_code == 404
        assert b"import" not in response.get_data()


# --- CORS ---------------------------------------------------------------------------------


@pytest.fixture
def cors_client(backend_env, build_app):
    return build_app({**backend_env, "CORS_ORIGINS": ORIGIN}).test_client()


def test_cors_preflight_from_listed_origin_needs_no_key(cors_client):
    response = cors_client.options("/api/v1/tasks", headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key",
    })
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert {"GET", "POST", "PATCH", "PUT", "DELETE"} <= methods
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers
    assert response.headers.get("X-Request-ID")


def test_cors_preflight_on_an_item_route(cors_client):
    response = cors_client.options("/api/v1/tasks/tsk_00000000000000000000000000", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"})
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_cors_actual_request_exposes_headers(cors_client, account):
    headers = {**account.api.headers(), "Origin": ORIGIN}
    created = cors_client.post("/api/v1/tasks", json={"title": "cors"}, headers=headers)
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == ORIGIN
    exposed = {h.strip().lower() for h in created.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"etag", "location", "x-request-id"} <= exposed
    assert created.headers["Access-Control-Allow-Origin"] != "*"


def test_cors_errors_also_carry_the_allow_origin_header(cors_client):
    response = cors_client.get("/api/v1/tasks", headers={"Origin": ORIGIN})
    assert_envelope(response, 401, "UNAUTHORIZED")
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_cors_unlisted_origin_gets_no_allow_header(cors_client, account):
    evil = "https://evil.example.com"
    preflight = cors_client.options("/api/v1/tasks", headers={
        "Origin": evil, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    actual = cors_client.get("/api/v1/tasks", headers={**account.api.headers(), "Origin": evil})
    assert actual.status_code == 200
    assert "Access-Control-Allow-Origin" not in actual.headers


def test_no_cors_headers_when_cors_origins_is_unset(client, api):
    preflight = client.options("/api/v1/tasks", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    actual = api.get("/tasks", headers={"Origin": ORIGIN})
    assert actual.status_code == 200
    for response in (preflight, actual):
        assert not [h for h, _ in response.headers.items() if h.lower().startswith("access-control-")]
