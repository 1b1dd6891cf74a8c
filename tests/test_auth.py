"""Authentication, scopes, API key management and the account CLI (contract section 2).

Keys travel only as `Authorization: Bearer sk_…`; a missing, malformed, unknown or
revoked key is a 401 in the error envelope. Scopes: `read` for GET/HEAD, `write`
for data changes (and it does not imply `read`), `admin` for everything, API keys
included. Keys are shown once at creation and stored only as a hash.
"""

import re
import secrets
from datetime import datetime

import pytest

from api.models import Account, ApiKey
from tests.conftest import ApiClient
from tests.extra_apps import extra_apps, fresh_database_url

KEY_PATTERN = re.compile(r"^sk_[A-Za-z0-9_-]{32,}$")
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
KEYS = "/api/v1/api-keys"


def assert_error(response, status: int, code: str) -> dict:
    """The response is `status` with `code` in the error envelope; returns the body."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert set(body) <= {"success", "error", "code", "details"}
    return body


def assert_scope_error(response, required: str) -> None:
    body = assert_error(response, 403, "INSUFFICIENT_SCOPE")
    assert body["details"]["required"] == required


def raw(client, method: str, path: str, headers=None, **kwargs):
    """A request through the bare test client: exactly the headers given."""
    return client.open(path, method=method, headers=headers or {}, **kwargs)


def live_key_rows(app, account_id: str) -> list:
    with app.app_context():
        return list(ApiKey.select().where((ApiKey.account_id == account_id)
                                          & ApiKey.revoked_at.is_null()))


# --- 401: no key, malformed header, unknown key, revoked key -----------------------------


@pytest.mark.parametrize("path", ["/api/v1/tasks", "/api/v1/tasks/tsk_whatever", KEYS,
                                  "/api/v1/users", "/api/v1/projects", "/api/v1/comments"])
def test_request_without_key_is_401_unauthorized(client, path):
    response = raw(client, "GET", path)
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_write_without_key_is_401_and_stores_nothing(client, api):
    response = raw(client, "POST", "/api/v1/tasks", json={"title": "sneaky"})
    assert_error(response, 401, "UNAUTHORIZED")
    assert api.get("/tasks").get_json()["meta"]["total"] == 0


@pytest.mark.parametrize("make_header", [
    lambda key: "",
    lambda key: "Basic dXNlcjpwYXNzd29yZA==",
    lambda key: "Bearer",
    lambda key: "Bearer    ",
    lambda key: key,
    lambda key: f"Token {key}",
    lambda key: f"Basic {key}",
    lambda key: f"Bearer{key}",
    lambda key: f"Bearer {key} extra",
    lambda key: f"Bearer {key[3:]}",
    lambda key: f"Bearer {key}\x00",
    lambda key: "Bearer sk_\x00" + key[3:],
    lambda key: "Bearer " + key + "A" * 300,
    lambda key: "Bearer sk_" + "é" * 40,
], ids=["empty", "basic", "bearer-only", "bearer-blank", "no-scheme", "token-scheme",
        "basic-with-key", "no-space", "trailing-junk", "no-prefix", "trailing-nul", "embedded-nul",
        "overlong", "non-ascii"])
def test_malformed_authorization_header_is_401(client, api, make_header):
    header = make_header(api.key)
    response = raw(client, "GET", "/api/v1/tasks", headers={"Authorization": header})
    assert_error(response, 401, "UNAUTHORIZED")


def test_bearer_scheme_is_case_insensitive(client, api):
    response = raw(client, "GET", "/api/v1/tasks", headers={"Authorization": f"bearer {api.key}"})
    assert response.status_code == 200


def test_unknown_key_is_401(client, api):
    unknown = "sk_" + secrets.token_urlsafe(32)
    assert_error(raw(client, "GET", "/api/v1/tasks",
                     headers={"Authorization": f"Bearer {unknown}"}), 401, "UNAUTHORIZED")


def test_key_sharing_a_real_keys_visible_prefix_but_not_its_secret_is_401(client, api):
    forged = api.key[:12] + secrets.token_urlsafe(32)
    assert forged != api.key
    assert_error(raw(client, "GET", "/api/v1/tasks",
                     headers={"Authorization": f"Bearer {forged}"}), 401, "UNAUTHORIZED")


def test_revoked_key_is_401(app, client, account):
    reader = account.key("read")
    assert reader.get("/tasks").status_code == 200
    with app.app_context():
        row = ApiKey.get(ApiKey.prefix == reader.key[:12])
    assert account.api.delete(f"{KEYS}/{row.id}").status_code == 204
    body = assert_error(reader.get("/tasks"), 401, "UNAUTHORIZED")
    assert "revoked" in body["error"].lower()


def test_access_token_query_parameter_is_not_accepted_on_ordinary_routes(client, api):
    for path in ["/api/v1/tasks", KEYS]:
        response = raw(client, "GET", f"{path}?access_token={api.key}")
        assert_error(response, 401, "UNAUTHORIZED")


def test_access_token_query_parameter_does_not_replace_a_bad_header(client, api):
    response = raw(client, "GET", f"/api/v1/tasks?access_token={api.key}",
                   headers={"Authorization": "Bearer sk_nope"})
    assert_error(response, 401, "UNAUTHORIZED")


def test_keys_are_scoped_to_their_account(api, other_account):
    task = api.create("tasks", title="mine")
    assert_error(other_account.api.get(f"/tasks/{task['id']}"), 404, "NOT_FOUND")
    assert other_account.api.get("/tasks").get_json()["meta"]["total"] == 0


# --- the scope matrix ---------------------------------------------------------------------


def test_read_key_can_get_and_head(account, api):
    task = api.create("tasks", title="readable")
    reader = account.key("read")
    listed = reader.get("/tasks")
    assert listed.status_code == 200
    assert [t["id"] for t in listed.get_json()["data"]] == [task["id"]]
    assert reader.get(f"/tasks/{task['id']}").get_json()["data"]["title"] == "readable"
    assert reader.request("HEAD", f"/tasks/{task['id']}").status_code == 200


@pytest.mark.parametrize("method,item,body", [
    ("POST", False, {"title": "new"}),
    ("PATCH", True, {"title": "changed"}),
    ("PUT", True, {"title": "replaced"}),
    ("DELETE", True, None),
])
def test_read_key_cannot_write(account, api, method, item, body):
    task = api.create("tasks", title="original")
    reader = account.key("read")
    path = f"/tasks/{task['id']}" if item else "/tasks"
    assert_scope_error(reader.request(method, path, json=body), "write")
    tasks = api.get("/tasks").get_json()["data"]
    assert [(t["id"], t["title"]) for t in tasks] == [(task["id"], "original")]


def test_write_key_can_create_update_replace_and_delete(account, api):
    writer = account.key("write")
    created = writer.post("/tasks", json={"title": "by writer"})
    assert created.status_code == 201
    task_id = created.get_json()["data"]["id"]
    patched = writer.patch(f"/tasks/{task_id}", json={"status": "completed"})
    assert patched.status_code == 200
    assert patched.get_json()["data"]["status"] == "completed"
    replaced = writer.put(f"/tasks/{task_id}", json={"title": "replaced"})
    assert replaced.status_code == 200
    assert replaced.get_json()["data"]["title"] == "replaced"
    assert writer.delete(f"/tasks/{task_id}").status_code == 204
    assert_error(api.get(f"/tasks/{task_id}"), 404, "NOT_FOUND")


@pytest.mark.parametrize("method,item", [("GET", False), ("GET", True), ("HEAD", True)])
def test_write_key_does_not_imply_read(account, api, method, item):
    task = api.create("tasks", title="hidden from writers")
    writer = account.key("write")
    response = writer.request(method, f"/tasks/{task['id']}" if item else "/tasks")
    assert response.status_code == 403
    if method != "HEAD":
        assert_scope_error(response, "read")


def test_read_and_write_key_can_do_both(account):
    key = account.key("read", "write")
    task = key.create("projects", name="both")
    assert key.get(f"/projects/{task['id']}").status_code == 200


def test_admin_key_can_do_everything(api):
    for path, fields in [("users", {"name": "Ada", "email": "ada@example.com"}),
                         ("projects", {"name": "P"}), ("tasks", {"title": "T"})]:
        record = api.create(path, **fields)
        assert api.get(f"/{path}").status_code == 200
        assert api.get(f"/{path}/{record['id']}").status_code == 200
        assert api.patch(f"/{path}/{record['id']}", json={}).status_code == 200
        assert api.put(f"/{path}/{record['id']}", json=fields).status_code == 200
        assert api.delete(f"/{path}/{record['id']}").status_code == 204
    assert api.get(KEYS).status_code == 200
    created = api.post(KEYS, json={"name": "made by admin", "scopes": ["read"]})
    assert created.status_code == 201
    assert api.delete(f"{KEYS}/{created.get_json()['data']['id']}").status_code == 204


@pytest.mark.parametrize("scopes", [("read",), ("write",), ("read", "write")])
def test_only_admin_keys_can_manage_api_keys(app, account, api, scopes):
    key = account.key(*scopes)
    victim = api.post(KEYS, json={"name": "victim", "scopes": ["read"]}).get_json()["data"]
    before = len(live_key_rows(app, account.id))
    assert_scope_error(key.get(KEYS), "admin")
    assert_scope_error(key.get(f"{KEYS}/{victim['id']}"), "admin")
    assert_scope_error(key.post(KEYS, json={"name": "escalate", "scopes": ["admin"]}), "admin")
    assert_scope_error(key.delete(f"{KEYS}/{victim['id']}"), "admin")
    assert len(live_key_rows(app, account.id)) == before
    assert ApiClient(account.client, victim["key"]).get("/tasks").status_code == 200


# --- /api/v1/api-keys -----------------------------------------------------------------------


def test_create_key_returns_the_secret_once(app, api):
    response = api.post(KEYS, json={"name": "ci", "scopes": ["read", "write"],
                                    "rateLimit": "100/minute;2000/hour"})
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert KEY_PATTERN.match(data["key"])
    assert data["id"].startswith("key_")
    assert data["name"] == "ci"
    assert data["scopes"] == ["read", "write"]
    assert data["rateLimit"] == "100/minute;2000/hour"
    assert data["key"].startswith(data["prefix"])
    assert RFC3339_Z.match(data["createdAt"])
    assert data["lastUsedAt"] is None
    assert data["revokedAt"] is None
    assert response.headers["Location"] == f"{KEYS}/{data['id']}"
    new_key = ApiClient(api.client, data["key"])
    assert new_key.get("/tasks").status_code == 200
    assert new_key.post("/tasks", json={"title": "by the new key"}).status_code == 201
    assert_scope_error(new_key.get(KEYS), "admin")


def test_create_key_without_rate_limit(api):
    response = api.post(KEYS, json={"name": "plain", "scopes": ["admin"]})
    assert response.status_code == 201
    assert response.get_json()["data"]["rateLimit"] is None


def test_listing_and_getting_keys_never_shows_the_secret(api, other_account):
    created = api.post(KEYS, json={"name": "secretive", "scopes": ["read"]}).get_json()["data"]
    secret = created["key"]
    other_account.key("read")

    listed = api.get(KEYS)
    assert listed.status_code == 200
    keys = listed.get_json()["data"]
    assert created["id"] in [k["id"] for k in keys]
    assert len(keys) == 2  # the account's admin key and the new one: none of other_account's
    for item in keys:
        assert "key" not in item
        assert not {"keyHash", "key_hash", "hash"} & set(item)
    assert secret not in listed.get_data(as_text=True)
    assert secret[12:] not in listed.get_data(as_text=True)

    one = api.get(f"{KEYS}/{created['id']}")
    assert one.status_code == 200
    data = one.get_json()["data"]
    assert "key" not in data
    assert data["id"] == created["id"]
    assert data["name"] == "secretive"
    assert data["scopes"] == ["read"]
    assert secret[12:] not in one.get_data(as_text=True)


def test_database_stores_only_a_hash_of_the_key(app, api):
    created = api.post(KEYS, json={"name": "hashed", "scopes": ["read"]}).get_json()["data"]
    secret = created["key"]
    with app.app_context():
        row = ApiKey.get_by_id(created["id"])
        assert re.fullmatch(r"[0-9a-f]{64}", row.key_hash)
        assert row.prefix == secret[:12]
        for value in row.__data__.values():
            assert secret not in str(value)
            assert secret[12:] not in str(value)
        everything = [str(v) for r in ApiKey.select().dicts() for v in r.values()]
        assert not [v for v in everything if secret[12:] in v]


@pytest.mark.parametrize("body,field", [
    ({"name": "k", "scopes": []}, "scopes"),
    ({"name": "k", "scopes": ["superuser"]}, "scopes.0"),
    ({"name": "k", "scopes": ["read", "read"]}, "scopes"),
    ({"name": "k", "scopes": "read"}, "scopes"),
    ({"name": "k", "scopes": [None]}, "scopes.0"),
    ({"name": "k"}, "scopes"),
    ({"scopes": ["read"]}, "name"),
    ({"name": "", "scopes": ["read"]}, "name"),
    ({"name": 5, "scopes": ["read"]}, "name"),
    ({"name": "x" * 201, "scopes": ["read"]}, "name"),
    ({"name": "k", "scopes": ["read"], "rateLimit": "lots"}, "rateLimit"),
    ({"name": "k", "scopes": ["read"], "rateLimit": "100"}, "rateLimit"),
    ({"name": "k", "scopes": ["read"], "rateLimit": ""}, "rateLimit"),
    ({"name": "k", "scopes": ["read"], "rateLimit": 100}, "rateLimit"),
    ({"name": "k", "scopes": ["read"], "rateLimit": "0/minute"}, "rateLimit"),
    ({"name": "k", "scopes": ["read"], "rateLimit": ";".join(["1/minute"] * 30)}, "rateLimit"),
    ({"name": "k", "scopes": ["read"], "color": "blue"}, "color"),
    ({"name": "k", "scopes": ["read"], "key": "sk_" + "a" * 43}, "key"),
    ({"name": "k", "scopes": ["read"], "id": "key_mine"}, "id"),
], ids=["empty-scopes", "unknown-scope", "duplicate-scopes", "scopes-not-list", "null-scope",
        "missing-scopes", "missing-name", "empty-name", "name-not-string", "name-too-long",
        "rate-limit-word", "rate-limit-bare-number", "rate-limit-empty", "rate-limit-not-string",
        "rate-limit-zero", "rate-limit-too-long", "unknown-field", "client-chosen-secret",
        "read-only-id"])
def test_create_key_rejects_bad_bodies(app, account, api, body, field):
    before = len(live_key_rows(app, account.id))
    response = api.post(KEYS, json=body)
    details = assert_error(response, 400, "VALIDATION_FAILED")["details"]
    assert field in details, details
    assert all(isinstance(m, str) for m in details[field])
    assert len(live_key_rows(app, account.id)) == before


@pytest.mark.parametrize("data,content_type,code", [
    ("{not json", "application/json", "BAD_REQUEST"),
    ('{"name": "k", "scopes": ["read"]}', "text/plain", "BAD_REQUEST"),
    ('["read"]', "application/json", "VALIDATION_FAILED"),
    ("", "application/json", "BAD_REQUEST"),
])
def test_create_key_rejects_unreadable_bodies(api, data, content_type, code):
    response = api.post(KEYS, data=data, headers={"Content-Type": content_type})
    assert_error(response, 400, code)


def test_delete_key_revokes_it_at_once(app, account, api):
    created = api.post(KEYS, json={"name": "short-lived", "scopes": ["read"]}).get_json()["data"]
    doomed = ApiClient(api.client, created["key"])
    assert doomed.get("/tasks").status_code == 200

    response = api.delete(f"{KEYS}/{created['id']}")
    assert response.status_code == 204
    assert response.get_data() == b""

    assert_error(doomed.get("/tasks"), 401, "UNAUTHORIZED")
    shown = api.get(f"{KEYS}/{created['id']}").get_json()["data"]
    assert RFC3339_Z.match(shown["revokedAt"])
    assert api.get("/tasks").status_code == 200
    with app.app_context():
        assert ApiKey.get_by_id(created["id"]).revoked_at is not None


def test_admin_key_can_revoke_itself(app, account):
    admin = account.key("admin")
    with app.app_context():
        own_id = ApiKey.get(ApiKey.prefix == admin.key[:12]).id
    assert admin.delete(f"{KEYS}/{own_id}").status_code == 204
    assert_error(admin.get(KEYS), 401, "UNAUTHORIZED")
    assert account.api.get(KEYS).status_code == 200


def test_another_accounts_key_id_is_404(app, api, other_account):
    with app.app_context():
        foreign = ApiKey.get(ApiKey.account_id == other_account.id)
    assert_error(api.get(f"{KEYS}/{foreign.id}"), 404, "NOT_FOUND")
    assert_error(api.delete(f"{KEYS}/{foreign.id}"), 404, "NOT_FOUND")
    assert other_account.api.get(KEYS).status_code == 200
    with app.app_context():
        assert ApiKey.get_by_id(foreign.id).revoked_at is None


def test_unknown_key_id_is_404(api):
    assert_error(api.get(f"{KEYS}/key_doesnotexist"), 404, "NOT_FOUND")
    assert_error(api.delete(f"{KEYS}/key_doesnotexist"), 404, "NOT_FOUND")


@pytest.mark.parametrize("scopes", [("read",), ("write",), ("read", "write"), ("admin",)])
def test_current_shows_the_calling_key_whatever_its_scopes(account, scopes):
    key = account.key(*scopes)
    response = key.get(f"{KEYS}/current")
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["scopes"] == list(scopes)
    assert key.key.startswith(data["prefix"])
    assert data["id"].startswith("key_") and data["name"] == "test"
    assert {"rateLimit", "createdAt", "lastUsedAt", "revokedAt"} <= set(data)
    assert "key" not in data


def test_current_needs_a_live_key(app, account, client):
    assert_error(raw(client, "GET", f"{KEYS}/current"), 401, "UNAUTHORIZED")
    key = account.key("read")
    me = key.get(f"{KEYS}/current").get_json()["data"]
    assert account.api.delete(f"{KEYS}/{me['id']}").status_code == 204
    assert_error(key.get(f"{KEYS}/current"), 401, "UNAUTHORIZED")


def test_current_is_in_the_openapi_document(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"][f"{KEYS}/current"]["get"]
    assert "403" not in operation["responses"]  # any scope will do
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CurrentApiKeyEnvelope"}


def test_last_used_at_is_set_after_use(api):
    created = api.post(KEYS, json={"name": "tracked", "scopes": ["read"]}).get_json()["data"]
    assert api.get(f"{KEYS}/{created['id']}").get_json()["data"]["lastUsedAt"] is None

    assert ApiClient(api.client, created["key"]).get("/tasks").status_code == 200

    shown = api.get(f"{KEYS}/{created['id']}").get_json()["data"]
    assert RFC3339_Z.match(shown["lastUsedAt"])
    used = datetime.fromisoformat(shown["lastUsedAt"].replace("Z", "+00:00"))
    made = datetime.fromisoformat(shown["createdAt"].replace("Z", "+00:00"))
    assert used >= made


def test_keys_are_listed_newest_first(api):
    first = api.post(KEYS, json={"name": "first", "scopes": ["read"]}).get_json()["data"]
    second = api.post(KEYS, json={"name": "second", "scopes": ["read"]}).get_json()["data"]
    ids = [k["id"] for k in api.get(KEYS).get_json()["data"]]
    assert ids.index(second["id"]) < ids.index(first["id"])


# --- CLI ------------------------------------------------------------------------------------


def parse_cli_output(output: str) -> tuple[str, str]:
    lines = output.splitlines()
    assert len(lines) == 2, output
    account_line, key_line = lines
    assert re.fullmatch(r"account: acc_[0-9A-Za-z]+", account_line), account_line
    assert key_line.startswith("key: ")
    secret = key_line.removeprefix("key: ")
    assert KEY_PATTERN.match(secret), key_line
    return account_line.removeprefix("account: "), secret


def test_cli_create_account_prints_account_and_working_admin_key(app, client):
    result = app.test_cli_runner().invoke(args=["create-account", "Acme Corp"])
    assert result.exit_code == 0, result.output
    account_id, secret = parse_cli_output(result.output)

    with app.app_context():
        assert Account.get_by_id(account_id).name == "Acme Corp"
        rows = list(ApiKey.select().where(ApiKey.account_id == account_id))
        assert [r.scopes for r in rows] == ["admin"]
        assert secret not in rows[0].key_hash

    key = ApiClient(client, secret)
    assert key.get("/tasks").status_code == 200
    assert key.create("tasks", title="from the cli key")["title"] == "from the cli key"
    listed = key.get(KEYS).get_json()["data"]
    assert [k["id"] for k in listed] == [rows[0].id]


def test_cli_create_account_requires_a_name(app):
    result = app.test_cli_runner().invoke(args=["create-account"])
    assert result.exit_code != 0
    assert "account: " not in result.output


@pytest.fixture
def fresh_app(app, backend_env, tmp_path):
    """An app over an empty, migrated database (the session app is restored afterwards)."""
    with fresh_database_url(tmp_path) as url, extra_apps() as build:
        yield build({**backend_env, "DATABASE_URL": url}, migrate_schema=True)


def test_cli_dev_key_revokes_the_previous_dev_key(fresh_app):
    runner = fresh_app.test_cli_runner()
    client = fresh_app.test_client()
    outputs = []
    for _ in range(3):
        result = runner.invoke(args=["dev-key"])
        assert result.exit_code == 0, result.output
        outputs.append(parse_cli_output(result.output))
        account_id = outputs[-1][0]
        assert len(live_key_rows(fresh_app, account_id)) == 1

    assert len({account_id for account_id, _ in outputs}) == 1
    first, second, third = (ApiClient(client, secret) for _, secret in outputs)
    assert_error(first.get("/tasks"), 401, "UNAUTHORIZED")
    assert_error(second.get("/tasks"), 401, "UNAUTHORIZED")
    assert third.get(KEYS).status_code == 200
    with fresh_app.app_context():
        assert Account.select().where(Account.name == "Demo").count() == 1


def test_cli_dev_key_leaves_other_keys_of_the_demo_account_alone(fresh_app):
    runner = fresh_app.test_cli_runner()
    client = fresh_app.test_client()
    _, dev_secret = parse_cli_output(runner.invoke(args=["dev-key"]).output)
    made = ApiClient(client, dev_secret).post(KEYS, json={"name": "app", "scopes": ["read"]})
    app_key = ApiClient(client, made.get_json()["data"]["key"])

    parse_cli_output(runner.invoke(args=["dev-key"]).output)
    assert app_key.get("/tasks").status_code == 200
    assert_error(ApiClient(client, dev_secret).get("/tasks"), 401, "UNAUTHORIZED")
