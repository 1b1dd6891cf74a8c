"""Batch requests (contract section 5), through the Flask test client.

Covers `POST /api/v1/batch`:

- the contract's example verbatim (GET, POST, PATCH with `{{req2.body.data.id}}` and
  `dependsOn`): 200, `responses` in request order with `id`, `status`, `headers`, `body`,
  and the PATCH really applied;
- sub-requests get the routing, validation and error envelope of direct calls (the
  same body for the same invalid request, 404 and 405 with `Allow`); `path` with a
  query string and a full `/api/v1/...` path; references keep a whole value's type
  and interpolate inside strings;
- 424 `FAILED_DEPENDENCY` for dependents of a failure, through `dependsOn` and through
  a reference alone; a reference into a path the earlier response does not have is a
  400 for that sub-request only;
- scopes: the batch needs `write`; a write-only key cannot read through a batch, and a
  sub-request cannot bring its own `Authorization`;
- `atomic: true`: one failure keeps nothing (rows, events, deliveries, published
  messages, idempotency records), shows the failing response and answers 424 for the
  others; success keeps everything and emits the events; non-atomic keeps what worked;
- whole-batch 400s before anything runs (nothing written): too many requests, none,
  missing or duplicate ids, `dependsOn` or references naming unknown or later ids, a
  method outside GET/POST/PUT/PATCH/DELETE, unknown keys, a non-boolean `atomic`;
  `BATCH_MAX_REQUESTS` from the environment; a nested batch is a 400 for that
  sub-request only;
- `Idempotency-Key` and `If-Match` forwarded in a sub-request's `headers`, and an
  `Idempotency-Key` on the batch itself; `X-Request-ID` of the batch is echoed;
- consecutive GETs of records are read ahead with one query per entity, and answer
  exactly as direct calls: a GET after a write of the same batch sees the write, and
  another account's, missing or malformed ids are 404s.
"""

import json
import logging
import uuid

import pytest
import redis

from api.models import IdempotencyRecord, Webhook, WebhookDelivery
from api.services.records import read_ahead, service_for
from api.timeutil import utcnow
from tests.extra_apps import extra_apps
from tests.procs import wait_for

MISSING_TASK = "tsk_00000000000000000000000000"


# --- helpers -------------------------------------------------------------------------------------


def run_batch(api, requests, atomic=None, headers=None, **extra):
    body = {"requests": requests, **extra}
    if atomic is not None:
        body["atomic"] = atomic
    return api.post("/batch", json=body, headers=headers)


def ok_batch(api, requests, atomic=None, headers=None) -> list[dict]:
    """Run a valid batch; assert the 200 envelope and return `responses`."""
    response = run_batch(api, requests, atomic=atomic, headers=headers)
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["success"] is True
    assert set(body) == {"success", "responses"}
    assert [r["id"] for r in body["responses"]] == [r["id"] for r in requests]
    for sub in body["responses"]:
        assert set(sub) == {"id", "status", "headers", "body"}
        assert isinstance(sub["status"], int) and isinstance(sub["headers"], dict)
    return body["responses"]


def assert_error(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    return body


def assert_sub_error(sub: dict, status: int, code: str) -> dict:
    assert sub["status"] == status, sub
    assert sub["body"]["success"] is False, sub
    assert sub["body"]["code"] == code, sub
    assert isinstance(sub["body"]["error"], str) and sub["body"]["error"]
    return sub["body"]


def total(api, path: str) -> int:
    response = api.get(f"/{path}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["meta"]["total"]


def event_types(api) -> list[str]:
    """The account's event types, oldest first."""
    response = api.get("/events", query_string={"limit": 100})
    assert response.status_code == 200, response.get_json()
    return [e["type"] for e in reversed(response.get_json()["data"])]


def post_task(sub_id: str, title: str = "task", **fields) -> dict:
    return {"id": sub_id, "method": "POST", "path": "/tasks", "body": {"title": title, **fields}}


# --- the contract's example ----------------------------------------------------------------------


def test_contract_example_verbatim(api):
    requests = [
        {"id": "req1", "method": "GET", "path": "/tasks/tsk_1"},
        {"id": "req2", "method": "POST", "path": "/tasks", "body": {"title": "New"}},
        {"id": "req3", "method": "PATCH", "path": "/tasks/{{req2.body.data.id}}",
         "body": {"status": "completed"}, "dependsOn": ["req2"]},
    ]
    response = api.post("/batch", json={"atomic": False, "requests": requests})
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    req1, req2, req3 = ok_batch(api, requests, atomic=False)
    # `tsk_1` does not exist: req1 is a 404 in the envelope; req3 depends only on req2.
    assert_sub_error(req1, 404, "NOT_FOUND")
    assert req2["status"] == 201
    assert req2["body"]["success"] is True
    created = req2["body"]["data"]
    assert created["title"] == "New" and created["id"].startswith("tsk_")
    assert req2["headers"]["Location"] == f"/api/v1/tasks/{created['id']}"
    assert req2["headers"]["ETag"]
    assert req2["headers"]["Content-Type"].startswith("application/json")
    assert req3["status"] == 200
    assert req3["body"]["data"]["id"] == created["id"]
    assert req3["body"]["data"]["status"] == "completed"
    assert req3["body"]["data"]["completedAt"] is not None
    # The PATCH really applied (two batches ran, so two tasks exist, both completed).
    stored = api.get(f"/tasks/{created['id']}").get_json()["data"]
    assert stored["status"] == "completed" and stored["completedAt"] is not None
    assert total(api, "tasks") == 2


def test_contract_example_with_an_existing_task(api):
    existing = api.create("tasks", title="Existing")
    requests = [
        {"id": "req1", "method": "GET", "path": f"/tasks/{existing['id']}"},
        {"id": "req2", "method": "POST", "path": "/tasks", "body": {"title": "New"}},
        {"id": "req3", "method": "PATCH", "path": "/tasks/{{req2.body.data.id}}",
         "body": {"status": "completed"}, "dependsOn": ["req2"]},
    ]
    req1, req2, req3 = ok_batch(api, requests, atomic=False)
    assert req1["status"] == 200 and req1["body"]["data"] == existing
    assert req1["headers"]["ETag"]
    assert req2["status"] == 201 and req3["status"] == 200
    assert api.get(f"/tasks/{req2['body']['data']['id']}").get_json()["data"]["status"] == "completed"


def test_responses_come_back_in_request_order(api):
    requests = [post_task(f"r{i}", title=f"T{i}") for i in range(5)]
    requests.insert(2, {"id": "list", "method": "GET", "path": "/tasks"})
    responses = ok_batch(api, requests)
    assert [r["id"] for r in responses] == ["r0", "r1", "list", "r2", "r3", "r4"]
    assert [r["body"]["data"]["title"] for r in responses if r["id"] != "list"] == \
        ["T0", "T1", "T2", "T3", "T4"]
    # Sequential: the list ran after r0 and r1 and sees exactly those.
    assert responses[2]["body"]["meta"]["total"] == 2


# --- sub-requests behave like direct calls --------------------------------------------------------


def test_sub_request_validation_matches_a_direct_call(api):
    bad = {"title": "", "bogus": 1, "status": "nope", "id": "tsk_x"}
    direct = api.post("/tasks", json=bad)
    assert_error(direct, 400, "VALIDATION_FAILED")
    (sub,) = ok_batch(api, [{"id": "a", "method": "POST", "path": "/tasks", "body": bad}])
    assert_sub_error(sub, 400, "VALIDATION_FAILED")
    assert sub["body"] == direct.get_json()
    assert set(sub["body"]["details"]) == {"title", "bogus", "status", "id"}
    assert total(api, "tasks") == 0


def test_sub_request_body_that_is_not_an_object_or_missing(api):
    not_object, missing = ok_batch(api, [
        {"id": "list", "method": "POST", "path": "/tasks", "body": [1, 2]},
        {"id": "none", "method": "POST", "path": "/tasks"},
    ])
    assert not_object["body"] == api.post("/tasks", json=[1, 2]).get_json()
    assert_sub_error(not_object, 400, "VALIDATION_FAILED")
    assert_sub_error(missing, 400, "BAD_REQUEST")
    assert total(api, "tasks") == 0


def test_sub_request_unknown_route_and_wrong_method(api):
    unknown, wrong_method, unknown_record = ok_batch(api, [
        {"id": "a", "method": "GET", "path": "/no-such-entity"},
        {"id": "b", "method": "DELETE", "path": "/tasks"},
        {"id": "c", "method": "DELETE", "path": f"/tasks/{MISSING_TASK}"},
    ])
    assert_sub_error(unknown, 404, "NOT_FOUND")
    assert_sub_error(wrong_method, 405, "METHOD_NOT_ALLOWED")
    assert set(wrong_method["headers"]["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert_sub_error(unknown_record, 404, "NOT_FOUND")


def test_sub_request_path_with_query_string(api):
    for title, status in (("a", "todo"), ("b", "completed"), ("c", "completed")):
        api.create("tasks", title=title, status=status)
    completed, first, bad_filter = ok_batch(api, [
        {"id": "completed", "method": "GET", "path": "/tasks?status=completed&sort=title"},
        {"id": "first", "method": "GET", "path": "/tasks?limit=1&sort=title&fields=id,title"},
        {"id": "bad", "method": "GET", "path": "/tasks?limit=1000"},
    ])
    assert completed["status"] == 200
    assert [t["title"] for t in completed["body"]["data"]] == ["b", "c"]
    assert completed["body"]["meta"]["total"] == 2
    assert first["body"]["data"] == [{"id": first["body"]["data"][0]["id"], "title": "a"}]
    assert first["body"]["meta"]["hasNextPage"] is True
    assert_sub_error(bad_filter, 400, "VALIDATION_FAILED")


def test_sub_request_paths_and_queries_may_be_percent_encoded_or_unicode(api):
    task = api.create("tasks", title="Café crème")
    api.create("tasks", title="Tea")
    encoded_id = task["id"][:4] + "".join(f"%{ord(ch):02X}" for ch in task["id"][4:])
    plain, escaped, by_id, missing = ok_batch(api, [
        {"id": "plain", "method": "GET", "path": "/tasks?q=café&fields=id,title"},
        {"id": "escaped", "method": "GET", "path": "/tasks?q=caf%C3%A9%20cr%C3%A8me&fields=id"},
        {"id": "by_id", "method": "GET", "path": f"/tasks/{encoded_id}"},
        {"id": "missing", "method": "GET", "path": "/tasks/tsk_é"},
    ])
    assert plain["body"]["data"] == [{"id": task["id"], "title": "Café crème"}]
    assert escaped["body"]["data"] == [{"id": task["id"]}]
    assert by_id["status"] == 200 and by_id["body"]["data"]["title"] == "Café crème"
    assert_sub_error(missing, 404, "NOT_FOUND")


def test_full_api_v1_path_is_accepted(api):
    task = api.create("tasks", title="full path")
    got, patched = ok_batch(api, [
        {"id": "get", "method": "GET", "path": f"/api/v1/tasks/{task['id']}"},
        {"id": "patch", "method": "PATCH", "path": f"/api/v1/tasks/{task['id']}",
         "body": {"priority": "high"}},
    ])
    assert got["status"] == 200 and got["body"]["data"]["id"] == task["id"]
    assert patched["status"] == 200 and patched["body"]["data"]["priority"] == "high"
    # A relative path without the leading slash works too.
    (relative,) = ok_batch(api, [{"id": "rel", "method": "GET", "path": f"tasks/{task['id']}"}])
    assert relative["status"] == 200 and relative["body"]["data"]["priority"] == "high"


def test_put_and_delete_sub_requests(api):
    task = api.create("tasks", title="old", description="gone after PUT", priority="high")
    put, delete, gone = ok_batch(api, [
        {"id": "put", "method": "PUT", "path": f"/tasks/{task['id']}", "body": {"title": "new"}},
        {"id": "del", "method": "DELETE", "path": f"/tasks/{task['id']}", "dependsOn": ["put"]},
        {"id": "get", "method": "GET", "path": f"/tasks/{task['id']}", "dependsOn": ["del"]},
    ])
    assert put["status"] == 200
    assert put["body"]["data"]["description"] is None and put["body"]["data"]["priority"] == "medium"
    assert delete["status"] == 204 and delete["body"] is None
    assert_sub_error(gone, 404, "NOT_FOUND")
    assert total(api, "tasks") == 0


# --- references and dependencies -------------------------------------------------------------------


def test_references_keep_types_and_interpolate_in_strings(api):
    project, task, comment = ok_batch(api, [
        {"id": "p", "method": "POST", "path": "/projects", "body": {"name": "Apollo"}},
        {"id": "t", "method": "POST", "path": "/tasks",
         "body": {"title": "Part of {{p.body.data.name}} ({{p.status}})", "projectId": "{{p.body.data.id}}"}},
        {"id": "c", "method": "POST", "path": "/comments",
         "body": {"taskId": "{{t.body.data.id}}", "body": "first of {{ t.body.data.title }}"}},
    ])
    assert project["status"] == 201 and task["status"] == 201 and comment["status"] == 201
    assert task["body"]["data"]["title"] == "Part of Apollo (201)"
    assert task["body"]["data"]["projectId"] == project["body"]["data"]["id"]
    assert comment["body"]["data"]["taskId"] == task["body"]["data"]["id"]
    assert comment["body"]["data"]["body"] == "first of Part of Apollo (201)"


def test_reference_into_a_list_by_index(api):
    api.create("tasks", title="only one")
    listed, got = ok_batch(api, [
        {"id": "list", "method": "GET", "path": "/tasks"},
        {"id": "get", "method": "GET", "path": "/tasks/{{list.body.data.0.id}}"},
    ])
    assert got["status"] == 200
    assert got["body"]["data"]["id"] == listed["body"]["data"][0]["id"]


def test_explicit_dependency_failure_answers_424(api):
    bad, dependent, independent = ok_batch(api, [
        post_task("bad", title=""),
        post_task("dep", title="needs bad") | {"dependsOn": ["bad"]},
        post_task("free", title="independent"),
    ])
    assert_sub_error(bad, 400, "VALIDATION_FAILED")
    body = assert_sub_error(dependent, 424, "FAILED_DEPENDENCY")
    assert "bad" in body["error"]
    assert independent["status"] == 201
    assert [t["title"] for t in api.get("/tasks").get_json()["data"]] == ["independent"]


def test_implicit_dependency_through_a_reference_answers_424(api):
    missing, patch, chained = ok_batch(api, [
        {"id": "get", "method": "GET", "path": f"/tasks/{MISSING_TASK}"},
        {"id": "patch", "method": "PATCH", "path": "/tasks/{{get.body.data.id}}",
         "body": {"status": "completed"}},
        post_task("chained", title="{{patch.body.data.title}}"),
    ])
    assert_sub_error(missing, 404, "NOT_FOUND")
    assert_sub_error(patch, 424, "FAILED_DEPENDENCY")
    # A failure propagates: a dependent of a 424 is a 424 too.
    assert_sub_error(chained, 424, "FAILED_DEPENDENCY")
    assert total(api, "tasks") == 0


def test_reference_into_a_missing_path_is_a_400_for_that_sub_request(api):
    created, bad_path, bad_body, after = ok_batch(api, [
        post_task("t", title="real"),
        {"id": "path", "method": "GET", "path": "/tasks/{{t.body.data.nope}}"},
        post_task("body", title="{{t.body.data.0}}"),
        {"id": "after", "method": "GET", "path": "/tasks/{{t.body.data.id}}"},
    ])
    assert created["status"] == 201
    assert_sub_error(bad_path, 400, "VALIDATION_FAILED")
    assert_sub_error(bad_body, 400, "VALIDATION_FAILED")
    assert after["status"] == 200 and after["body"]["data"]["title"] == "real"
    assert total(api, "tasks") == 1


# --- scopes ----------------------------------------------------------------------------------------


def test_read_only_key_cannot_batch(account):
    reader = account.key("read")
    response = run_batch(reader, [{"id": "a", "method": "GET", "path": "/tasks"}])
    body = assert_error(response, 403, "INSUFFICIENT_SCOPE")
    assert body["details"]["required"] == "write"


def test_write_only_key_cannot_read_through_a_batch(account):
    task = account.api.create("tasks", title="secret")
    writer = account.key("write")
    listed, got, created, patched = ok_batch(writer, [
        {"id": "list", "method": "GET", "path": "/tasks"},
        {"id": "get", "method": "GET", "path": f"/tasks/{task['id']}"},
        post_task("new", title="written"),
        {"id": "patch", "method": "PATCH", "path": f"/tasks/{task['id']}", "body": {"priority": "low"}},
    ])
    for sub in (listed, got):
        body = assert_sub_error(sub, 403, "INSUFFICIENT_SCOPE")
        assert body["details"]["required"] == "read"
        assert "secret" not in json.dumps(body)
    assert created["status"] == 201 and patched["status"] == 200


def test_write_key_cannot_reach_admin_routes_through_a_batch(account):
    writer = account.key("write")
    (sub,) = ok_batch(writer, [{"id": "k", "method": "POST", "path": "/api-keys",
                                "body": {"name": "escalate", "scopes": ["admin"]}}])
    assert assert_sub_error(sub, 403, "INSUFFICIENT_SCOPE")["details"]["required"] == "admin"
    keys = account.api.get("/api-keys").get_json()["data"]
    assert "escalate" not in [k["name"] for k in keys]


def test_sub_request_cannot_bring_its_own_authorization(account):
    writer = account.key("write")
    response = run_batch(writer, [{"id": "a", "method": "GET", "path": "/tasks",
                                   "headers": {"Authorization": f"Bearer {account.api.key}"}}])
    assert_error(response, 400, "VALIDATION_FAILED")


# --- atomic ----------------------------------------------------------------------------------------


def test_atomic_failure_keeps_nothing(api):
    requests = [
        {"id": "p", "method": "POST", "path": "/projects", "body": {"name": "kept?"}},
        post_task("t", title="in project", projectId="{{p.body.data.id}}"),
        {"id": "u", "method": "PATCH", "path": "/tasks/{{t.body.data.id}}", "body": {"status": "completed"}},
        post_task("bad", title=""),
        post_task("after", title="never runs"),
    ]
    p, t, u, bad, after = ok_batch(api, requests, atomic=True)
    body = assert_sub_error(bad, 400, "VALIDATION_FAILED")
    assert set(body["details"]) == {"title"}
    for sub in (p, t, u, after):
        assert_sub_error(sub, 424, "FAILED_DEPENDENCY")
    assert total(api, "projects") == 0
    assert total(api, "tasks") == 0
    assert event_types(api) == []


def test_atomic_failure_on_a_unique_conflict_keeps_nothing(api):
    email = f"dup.{uuid.uuid4().hex[:8]}@example.com"
    first, second, third = ok_batch(api, [
        {"id": "u1", "method": "POST", "path": "/users", "body": {"name": "One", "email": email}},
        {"id": "u2", "method": "POST", "path": "/users", "body": {"name": "Two", "email": email.upper()}},
        {"id": "u3", "method": "POST", "path": "/users", "body": {"name": "Three", "email": "3" + email}},
    ], atomic=True)
    assert_sub_error(second, 409, "CONFLICT")
    assert_sub_error(first, 424, "FAILED_DEPENDENCY")
    assert_sub_error(third, 424, "FAILED_DEPENDENCY")
    assert total(api, "users") == 0
    assert event_types(api) == []
    # The connection is healthy afterwards, and the email is free.
    assert api.create("users", name="One", email=email)["email"] == email


def test_atomic_failure_on_a_missing_record_keeps_nothing(api):
    task = api.create("tasks", title="untouched")
    patch, missing = ok_batch(api, [
        {"id": "patch", "method": "PATCH", "path": f"/tasks/{task['id']}", "body": {"title": "changed"}},
        {"id": "delete", "method": "DELETE", "path": f"/tasks/{MISSING_TASK}"},
    ], atomic=True)
    assert_sub_error(patch, 424, "FAILED_DEPENDENCY")
    assert_sub_error(missing, 404, "NOT_FOUND")
    assert api.get(f"/tasks/{task['id']}").get_json()["data"] == task
    assert event_types(api) == ["task.created"]


def test_atomic_success_keeps_everything_and_emits_events(api):
    p, t, u, c = ok_batch(api, [
        {"id": "p", "method": "POST", "path": "/projects", "body": {"name": "Atomic"}},
        post_task("t", title="inside", projectId="{{p.body.data.id}}"),
        {"id": "u", "method": "PATCH", "path": "/tasks/{{t.body.data.id}}", "body": {"status": "completed"}},
        {"id": "c", "method": "POST", "path": "/comments",
         "body": {"taskId": "{{t.body.data.id}}", "body": "hi"}},
    ], atomic=True)
    assert [p["status"], t["status"], u["status"], c["status"]] == [201, 201, 200, 201]
    stored = api.get(f"/tasks/{t['body']['data']['id']}").get_json()["data"]
    assert stored["status"] == "completed" and stored["projectId"] == p["body"]["data"]["id"]
    assert total(api, "projects") == 1 and total(api, "comments") == 1
    assert event_types(api) == ["project.created", "task.created", "task.updated", "comment.created"]


def test_non_atomic_keeps_the_successful_ones(api):
    first, bad, last = ok_batch(api, [post_task("a", title="one"), post_task("b", title=""),
                                      post_task("c", title="three")], atomic=False)
    assert first["status"] == 201 and last["status"] == 201
    assert_sub_error(bad, 400, "VALIDATION_FAILED")
    assert sorted(t["title"] for t in api.get("/tasks").get_json()["data"]) == ["one", "three"]
    assert event_types(api) == ["task.created", "task.created"]


def test_atomic_failure_publishes_nothing(api, account, backend_env):
    connection = redis.Redis.from_url(backend_env["REDIS_URL"])
    pubsub = connection.pubsub()
    pubsub.subscribe(f"quiver:events:{account.id}")
    received: list[dict] = []

    def received_at_least(count: int):
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            # A message is the events of one commit, each with its position in the log.
            received.extend(item["event"] for item in json.loads(message["data"]))
        return len(received) >= count

    try:
        wait_for(lambda: (m := pubsub.get_message(timeout=0.1)) and m["type"] == "subscribe",
                 message="the subscription")
        ok_batch(api, [post_task("a", title="rolled back"), post_task("b", title="")], atomic=True)
        marker = api.create("tasks", title="marker")
        wait_for(lambda: received_at_least(1), message="the marker's event")
        # The first event published after the rolled-back batch is the marker's.
        assert [(e["type"], e["data"]["id"]) for e in received] == [("task.created", marker["id"])]
        ok_batch(api, [post_task("c", title="committed 1"), post_task("d", title="committed 2")],
                 atomic=True)
        wait_for(lambda: received_at_least(3), message="the atomic batch's events")
        assert [e["data"]["title"] for e in received] == ["marker", "committed 1", "committed 2"]
    finally:
        pubsub.close()
        connection.close()


def test_atomic_failure_stores_no_webhook_deliveries(app, api, account):
    with app.app_context():
        now = utcnow()
        hook = Webhook.create(id=f"wh_{uuid.uuid4().hex[:26].upper()}", account_id=account.id,
                              url="http://127.0.0.1:9/never", events='["*"]', secret="whsec_x",
                              active=True, created_at=now, updated_at=now)
    try:
        ok_batch(api, [post_task("a", title="rolled back"), post_task("b", title="")], atomic=True)
        assert WebhookDelivery.select().where(WebhookDelivery.webhook_id == hook.id).count() == 0
        assert event_types(api) == []
    finally:
        with app.app_context():
            WebhookDelivery.delete().where(WebhookDelivery.webhook_id == hook.id).execute()
            Webhook.delete().where(Webhook.id == hook.id).execute()


def test_atomic_rollback_forgets_sub_request_idempotency_keys(api, account):
    key = f"atomic-{uuid.uuid4().hex}"
    first, bad = ok_batch(api, [
        post_task("a", title="retry me") | {"headers": {"Idempotency-Key": key}},
        post_task("b", title=""),
    ], atomic=True)
    assert_sub_error(first, 424, "FAILED_DEPENDENCY")
    assert IdempotencyRecord.select().where((IdempotencyRecord.account_id == account.id)
                                            & (IdempotencyRecord.key == key)).count() == 0
    # The key is free: the same request runs afresh (not a replay of a rolled-back response).
    retry = api.post("/tasks", json={"title": "retry me"}, headers={"Idempotency-Key": key})
    assert retry.status_code == 201
    assert "Idempotent-Replayed" not in retry.headers
    assert total(api, "tasks") == 1


# --- whole-batch validation -------------------------------------------------------------------------


GOOD = post_task("ok", title="must not be written")

INVALID_BATCHES = {
    "too many requests": {"requests": [post_task(f"r{i}") for i in range(21)]},
    "empty list": {"requests": []},
    "requests missing": {"atomic": False},
    "requests not a list": {"requests": {"id": "a", "method": "GET", "path": "/tasks"}},
    "request not an object": {"requests": [GOOD, "GET /tasks"]},
    "missing id": {"requests": [GOOD, {"method": "GET", "path": "/tasks"}]},
    "empty id": {"requests": [GOOD, {"id": "", "method": "GET", "path": "/tasks"}]},
    "duplicate ids": {"requests": [GOOD, {"id": "ok", "method": "GET", "path": "/tasks"}]},
    "missing method": {"requests": [GOOD, {"id": "b", "path": "/tasks"}]},
    "missing path": {"requests": [GOOD, {"id": "b", "method": "GET"}]},
    "dependsOn unknown id": {"requests": [GOOD, post_task("b") | {"dependsOn": ["nope"]}]},
    "dependsOn later id": {"requests": [post_task("a") | {"dependsOn": ["b"]}, post_task("b")]},
    "dependsOn itself": {"requests": [GOOD, post_task("b") | {"dependsOn": ["b"]}]},
    "dependsOn not a list": {"requests": [GOOD, post_task("b") | {"dependsOn": "ok"}]},
    "reference to later id in path": {"requests": [
        GOOD, {"id": "a", "method": "GET", "path": "/tasks/{{b.body.data.id}}"}, post_task("b")]},
    "reference to later id in body": {"requests": [GOOD, post_task("a", title="{{b.body.data.title}}"),
                                                   post_task("b")]},
    "reference to unknown id": {"requests": [GOOD, post_task("a", projectId="{{zzz.body.data.id}}")]},
    "method HEAD": {"requests": [GOOD, {"id": "b", "method": "HEAD", "path": "/tasks"}]},
    "method OPTIONS": {"requests": [GOOD, {"id": "b", "method": "OPTIONS", "path": "/tasks"}]},
    "method TRACE": {"requests": [GOOD, {"id": "b", "method": "TRACE", "path": "/tasks"}]},
    "method not a string": {"requests": [GOOD, {"id": "b", "method": 1, "path": "/tasks"}]},
    "unknown top-level key": {"requests": [GOOD], "parallel": True},
    "unknown sub-request key": {"requests": [GOOD | {"query": {"a": 1}}]},
    "atomic a string": {"requests": [GOOD], "atomic": "true"},
    "atomic a number": {"requests": [GOOD], "atomic": 1},
    "atomic null": {"requests": [GOOD], "atomic": None},
    "header not forwardable": {"requests": [GOOD | {"headers": {"Cookie": "a=b"}}]},
    "headers not an object": {"requests": [GOOD | {"headers": ["Idempotency-Key"]}]},
}


@pytest.mark.parametrize("body", INVALID_BATCHES.values(), ids=INVALID_BATCHES.keys())
def test_invalid_batch_is_a_400_before_anything_runs(api, body):
    body = assert_error(api.post("/batch", json=body), 400, "VALIDATION_FAILED")
    assert body["details"]
    assert total(api, "tasks") == 0
    assert event_types(api) == []


@pytest.mark.parametrize("payload", ["[]", "not json", '"requests"'])
def test_batch_body_must_be_a_json_object(api, payload):
    response = api.post("/batch", data=payload, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["code"] in ("BAD_REQUEST", "VALIDATION_FAILED")


def test_batch_needs_json_content_type(api):
    assert_error(api.post("/batch", data="requests", content_type="text/plain"), 400, "BAD_REQUEST")


def test_exactly_the_maximum_number_of_requests_is_fine(api):
    responses = ok_batch(api, [post_task(f"r{i}", title=f"T{i}") for i in range(20)])
    assert [r["status"] for r in responses] == [201] * 20
    assert total(api, "tasks") == 20


def test_lowercase_method_is_accepted(api):
    (sub,) = ok_batch(api, [{"id": "a", "method": "post", "path": "/tasks", "body": {"title": "lower"}}])
    assert sub["status"] == 201


def test_batch_max_requests_setting_is_honoured(account, backend_env):
    with extra_apps() as build:
        small = build({**backend_env, "BATCH_MAX_REQUESTS": "3"})
        api = type(account.api)(small.test_client(), account.api.key)
        body = assert_error(run_batch(api, [post_task(f"r{i}") for i in range(4)]), 400,
                            "VALIDATION_FAILED")
        assert "3" in json.dumps(body["details"])
        assert total(api, "tasks") == 0
        assert [r["status"] for r in ok_batch(api, [post_task(f"r{i}") for i in range(3)])] == [201] * 3
    assert total(account.api, "tasks") == 3


@pytest.mark.parametrize("path", ["/batch", "/api/v1/batch", "batch", "/batch/", "/batch?atomic=true"])
def test_nested_batch_is_a_400_for_that_sub_request_only(api, path):
    before, nested, after = ok_batch(api, [
        post_task("before", title="before"),
        {"id": "nested", "method": "POST", "path": path,
         "body": {"requests": [post_task("inner", title="inner")]}},
        post_task("after", title="after"),
    ])
    assert nested["status"] == 400 and nested["body"]["success"] is False
    assert nested["body"]["code"] in ("BAD_REQUEST", "VALIDATION_FAILED")
    assert before["status"] == 201 and after["status"] == 201
    assert sorted(t["title"] for t in api.get("/tasks").get_json()["data"]) == ["after", "before"]


# --- forwarded headers -----------------------------------------------------------------------------


def test_idempotency_key_forwarded_in_a_sub_request(api, account):
    key = f"batch-sub-{uuid.uuid4().hex}"
    request = post_task("a", title="once") | {"headers": {"Idempotency-Key": key}}
    (first,) = ok_batch(api, [request])
    (second,) = ok_batch(api, [request])
    assert first["status"] == 201 and second["status"] == 201
    assert "Idempotent-Replayed" not in first["headers"]
    assert second["headers"]["Idempotent-Replayed"] == "true"
    assert second["body"] == first["body"]
    # A direct call with the same key and request replays it too.
    direct = api.post("/tasks", json={"title": "once"}, headers={"Idempotency-Key": key})
    assert direct.status_code == 201 and direct.headers["Idempotent-Replayed"] == "true"
    assert direct.get_json() == first["body"]
    # The same key with another body is refused inside a batch as it is outside.
    (reused,) = ok_batch(api, [post_task("a", title="other") | {"headers": {"Idempotency-Key": key}}])
    assert_sub_error(reused, 422, "IDEMPOTENCY_KEY_REUSED")
    assert total(api, "tasks") == 1
    assert event_types(api) == ["task.created"]


def test_if_match_forwarded_in_a_sub_request(api):
    task = api.create("tasks", title="versioned")
    etag = api.get(f"/tasks/{task['id']}").headers["ETag"]
    fresh, stale = ok_batch(api, [
        {"id": "fresh", "method": "PATCH", "path": f"/tasks/{task['id']}", "body": {"title": "v2"},
         "headers": {"If-Match": etag}},
        {"id": "stale", "method": "PATCH", "path": f"/tasks/{task['id']}", "body": {"title": "v3"},
         "headers": {"If-Match": etag}},
    ])
    assert fresh["status"] == 200 and fresh["headers"]["ETag"] != etag
    assert_sub_error(stale, 412, "PRECONDITION_FAILED")
    assert api.get(f"/tasks/{task['id']}").get_json()["data"]["title"] == "v2"


def test_if_none_match_forwarded_in_a_sub_request(api):
    task = api.create("tasks", title="cached")
    etag = api.get(f"/tasks/{task['id']}").headers["ETag"]
    (sub,) = ok_batch(api, [{"id": "get", "method": "GET", "path": f"/tasks/{task['id']}",
                             "headers": {"If-None-Match": etag}}])
    assert sub["status"] == 304 and sub["body"] is None


def test_idempotency_key_on_the_batch_itself(api):
    key = f"whole-batch-{uuid.uuid4().hex}"
    body = {"requests": [post_task("a", title="batched once"),
                         {"id": "b", "method": "GET", "path": "/tasks/{{a.body.data.id}}"}]}
    first = api.post("/batch", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["success"] is True
    assert [r["status"] for r in first.get_json()["responses"]] == [201, 200]
    assert "Idempotent-Replayed" not in first.headers
    second = api.post("/batch", json=body, headers={"Idempotency-Key": key})
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.get_json() == first.get_json()
    assert total(api, "tasks") == 1
    changed = api.post("/batch", json={"requests": [post_task("a", title="other")]},
                       headers={"Idempotency-Key": key})
    assert_error(changed, 422, "IDEMPOTENCY_KEY_REUSED")
    assert total(api, "tasks") == 1


def test_batch_and_sub_request_idempotency_keys_are_separate(api):
    outer, inner = f"outer-{uuid.uuid4().hex}", f"inner-{uuid.uuid4().hex}"
    body = {"requests": [post_task("a", title="inner keyed") | {"headers": {"Idempotency-Key": inner}}]}
    first = api.post("/batch", json=body, headers={"Idempotency-Key": outer})
    assert first.status_code == 200 and first.get_json()["responses"][0]["status"] == 201
    replay = api.post("/batch", json=body, headers={"Idempotency-Key": outer})
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == first.get_json()
    direct = api.post("/tasks", json={"title": "inner keyed"}, headers={"Idempotency-Key": inner})
    assert direct.status_code == 201 and direct.headers["Idempotent-Replayed"] == "true"
    assert total(api, "tasks") == 1


def test_batch_echoes_its_request_id(api):
    response = api.post("/batch", json={"requests": [post_task("a"), post_task("b")]},
                        headers={"X-Request-ID": "batch-request-123"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "batch-request-123"


# --- consecutive GETs read ahead ----------------------------------------------------------------


def test_a_batch_is_one_request_with_one_id_and_one_log_line(api, monkeypatch):
    """Its sub-requests log their errors under the batch's request id; the batch, not each
    sub-request, gets the request's log line."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("quiver")
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service_for("task"), "list_page", boom)
    try:
        responses = ok_batch(api, [get_sub("ok", "/users"), get_sub("boom", "/tasks")],
                             headers={"X-Request-ID": "batch-log-1"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
    assert [r["status"] for r in responses] == [200, 500]
    logged = [r for r in records if r.name == "quiver.request"]
    assert [(r.path, r.request_id) for r in logged] == [("/api/v1/batch", "batch-log-1")]
    errors = [r for r in records if r.getMessage() == "unhandled error"]
    assert [r.request_id for r in errors] == ["batch-log-1"]


def get_sub(sub_id: str, path: str) -> dict:
    return {"id": sub_id, "method": "GET", "path": path}


def test_consecutive_gets_of_records_cost_one_query_per_entity(api, count_queries):
    tasks = [api.create("tasks", title=f"read ahead {i}") for i in range(15)]
    user = api.create("users", name="Ada", email=f"ada-{uuid.uuid4().hex}@example.com")
    ok_batch(api, [get_sub("warm", f"/tasks/{tasks[0]['id']}")])  # key bookkeeping and the like

    def reads(count):
        return [get_sub(f"t{i}", f"/tasks/{t['id']}") for i, t in enumerate(tasks[:count])] + [
            get_sub("user", f"/users/{user['id']}")]

    with count_queries() as small:
        ok_batch(api, reads(2))
    with count_queries() as large:
        responses = ok_batch(api, reads(15))
    assert large.count <= small.count, (small.count, large.count)  # (fewer: records now cached)
    assert [r["status"] for r in responses] == [200] * 16
    for response, task in zip(responses, tasks):
        direct = api.get(f"/tasks/{task['id']}")
        assert response["body"] == direct.get_json()
        assert response["headers"]["ETag"] == direct.headers["ETag"]
    assert responses[-1]["body"]["data"]["name"] == "Ada"


def test_gets_after_a_write_are_read_ahead_as_a_run_of_their_own(api, count_queries):
    tasks = [api.create("tasks", title=f"run {i}") for i in range(12)]
    patch = {"id": "patch", "method": "PATCH", "path": f"/tasks/{tasks[0]['id']}",
             "body": {"priority": "high"}}
    ok_batch(api, [patch])  # warm up

    def batch(count):
        return [get_sub("first", f"/tasks/{tasks[0]['id']}"), patch] + [
            get_sub(f"t{i}", f"/tasks/{t['id']}") for i, t in enumerate(tasks[1:count + 1])]

    with count_queries() as small:
        ok_batch(api, batch(2))
    with count_queries() as large:
        responses = ok_batch(api, batch(11))
    assert large.count <= small.count, (small.count, large.count)  # (fewer: records now cached)
    assert [r["body"]["data"]["title"] for r in responses[2:]] == [f"run {i}" for i in range(1, 12)]


def test_read_ahead_answers_shaped_reads_like_direct_ones(api):
    project = api.create("projects", name="Apollo")
    task = api.create("tasks", title="shaped", projectId=project["id"])
    path = f"/tasks/{task['id']}?fields=title&expand=project"
    shaped, plain = ok_batch(api, [get_sub("shaped", path), get_sub("plain", f"/tasks/{task['id']}")])
    assert shaped["body"] == api.get(path).get_json()
    assert shaped["body"]["data"]["project"]["name"] == "Apollo"
    assert plain["body"]["data"]["title"] == "shaped"


@pytest.mark.parametrize("atomic", [False, True])
def test_a_get_after_a_write_in_the_same_batch_sees_the_write(api, atomic):
    task = api.create("tasks", title="before")
    path = f"/tasks/{task['id']}"
    before, patched, after, again = ok_batch(api, [
        get_sub("before", path),
        {"id": "patch", "method": "PATCH", "path": path, "body": {"title": "after"}},
        get_sub("after", path),
        get_sub("again", path),
    ], atomic=atomic)
    assert before["body"]["data"]["title"] == "before"
    assert patched["status"] == 200
    assert after["body"]["data"]["title"] == "after"
    assert after["headers"]["ETag"] == patched["headers"]["ETag"] != before["headers"]["ETag"]
    assert again["body"] == after["body"]


def test_a_get_after_a_delete_in_the_same_batch_is_404(api):
    gone = api.create("tasks", title="to delete")
    path = f"/tasks/{gone['id']}"
    before, deleted, missing = ok_batch(api, [
        get_sub("before", path), {"id": "delete", "method": "DELETE", "path": path},
        get_sub("missing", path)])
    assert before["status"] == 200 and deleted["status"] == 204
    assert_sub_error(missing, 404, "NOT_FOUND")


def test_read_ahead_never_serves_another_accounts_or_a_missing_record(api, other_account):
    mine = api.create("tasks", title="mine")
    theirs = other_account.api.create("tasks", title="their secret")
    responses = ok_batch(api, [
        get_sub("mine", f"/tasks/{mine['id']}"),
        get_sub("theirs", f"/tasks/{theirs['id']}"),
        get_sub("missing", f"/tasks/{MISSING_TASK}"),
        get_sub("nul", f"/tasks/{mine['id']}%00"),
        get_sub("unicode", "/tasks/t%C3%A2che-%F0%9F%8E%AF"),
        get_sub("again", f"/tasks/{mine['id']}"),
        get_sub("wrong entity", f"/projects/{mine['id']}"),
    ])
    assert [r["status"] for r in responses] == [200, 404, 404, 404, 404, 200, 404]
    for response in responses[1:5] + responses[6:]:
        assert_sub_error(response, 404, "NOT_FOUND")
    assert "their secret" not in json.dumps(responses)
    assert responses[0]["body"] == responses[5]["body"] == api.get(f"/tasks/{mine['id']}").get_json()


def test_a_write_drops_the_records_read_ahead(app, account):
    """A GET that writes (a custom endpoint may) must not leave later GETs of its run stale."""
    first, second = (account.api.create("tasks", title=f"v1 {i}") for i in range(2))
    tasks = service_for("task")
    with app.app_context(), read_ahead(account.id, {"task": [first["id"], second["id"]]}):
        assert tasks.get(account.id, first["id"]).title == "v1 0"
        tasks.update(account.id, second["id"], {"title": "v2"})
        assert tasks.get(account.id, second["id"]).title == "v2"
