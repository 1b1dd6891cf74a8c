"""Idempotency keys (contract section 11, issue 6), through the Flask test client and real gunicorn.

Covers `Idempotency-Key` on POST and PATCH:

- the same key and request replays the first response (status, body, `Location`,
  `ETag`) with `Idempotent-Replayed: true` and writes nothing (one row, one event); JSON
  key order and whitespace do not make a different request;
- the same key with a different body, path, query string or method is a 422
  `IDEMPOTENCY_KEY_REUSED`; keys are per account;
- a 4xx response is kept and replayed; a 5xx is not kept, so a retry runs again;
- an invalid key (too long, empty, spaces, control characters) is a 400; GET ignores
  the header; PATCH and bulk import honour it;
- a second request while the first is still running is a 409
  `IDEMPOTENCY_IN_PROGRESS` (a held request in another thread, and a claimed row);
- expired records (past their 24 hours) are reclaimed, and
  `api.idempotency.purge_expired()` deletes them;
- over real HTTP, gunicorn with two workers: 10 concurrent identical POSTs with one
  key make exactly one row and one `task.created` event; every answer is that 201
  (original or replayed) or a 409.
"""

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests

from api import idempotency
from api.models import IdempotencyRecord
from api.services import accounts
from api.services.records import service_for
from api.timeutil import utcnow
from tests.procs import wait_for

HEADER = "Idempotency-Key"


# --- helpers -------------------------------------------------------------------------------------


def new_key(label: str = "key") -> str:
    return f"{label}-{uuid.uuid4().hex}"


def keyed(key: str, **extra) -> dict:
    return {HEADER: key, **extra}


def assert_error(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    return body


def total(api, path: str) -> int:
    response = api.get(f"/{path}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["meta"]["total"]


def events_of(api, event_type: str) -> list[dict]:
    response = api.get("/events", query_string={"type": event_type, "limit": 100})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def records(account_id: str, key: str | None = None) -> list[IdempotencyRecord]:
    query = IdempotencyRecord.select().where(IdempotencyRecord.account_id == account_id)
    if key is not None:
        query = query.where(IdempotencyRecord.key == key)
    return list(query)


def assert_replay_of(replay, first) -> None:
    assert replay.status_code == first.status_code
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == first.get_json()
    for name in ("Location", "ETag"):
        assert replay.headers.get(name) == first.headers.get(name)
    assert replay.headers["Content-Type"] == first.headers["Content-Type"]


# --- replays ---------------------------------------------------------------------------------------


def test_same_key_and_request_replays_the_first_response(api, account):
    key = new_key()
    first = api.post("/tasks", json={"title": "once", "priority": "high"}, headers=keyed(key))
    assert first.status_code == 201, first.get_json()
    assert "Idempotent-Replayed" not in first.headers
    assert first.headers["Location"] and first.headers["ETag"]
    for _ in range(2):
        replay = api.post("/tasks", json={"title": "once", "priority": "high"}, headers=keyed(key))
        assert_replay_of(replay, first)
        assert replay.headers["X-Request-ID"]
    assert total(api, "tasks") == 1
    assert len(events_of(api, "task.created")) == 1
    (record,) = records(account.id, key)
    assert record.state == "completed" and record.response_status == 201


def test_json_key_order_and_whitespace_do_not_matter(api):
    key = new_key()
    first = api.post("/tasks", data='{"title":"ordered","status":"todo","priority":"low"}',
                     content_type="application/json", headers=keyed(key))
    assert first.status_code == 201
    replay = api.post("/tasks", data='{ "priority": "low",\n  "title": "ordered", "status": "todo" }',
                      content_type="application/json", headers=keyed(key))
    assert_replay_of(replay, first)
    assert total(api, "tasks") == 1


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/tasks", {"title": "different"}),
    ("POST", "/tasks", {"title": "same", "priority": "low"}),
    ("POST", "/projects", {"name": "same"}),
    ("POST", "/tasks?fields=id", {"title": "same"}),
    ("PATCH", "/tasks/{id}", {"title": "same"}),
])
def test_same_key_with_a_different_request_is_422(api, method, path, body):
    key = new_key()
    first = api.post("/tasks", json={"title": "same"}, headers=keyed(key))
    assert first.status_code == 201
    task_id = first.get_json()["data"]["id"]
    reused = api.request(method, path.format(id=task_id), json=body, headers=keyed(key))
    assert_error(reused, 422, "IDEMPOTENCY_KEY_REUSED")
    assert "Idempotent-Replayed" not in reused.headers
    # Nothing was written by the refused request, and the key still replays the original.
    assert total(api, "tasks") == 1 and total(api, "projects") == 0
    assert api.get(f"/tasks/{task_id}").get_json()["data"] == first.get_json()["data"]
    assert_replay_of(api.post("/tasks", json={"title": "same"}, headers=keyed(key)), first)


def test_keys_are_per_account(api, other_account):
    key = new_key()
    mine = api.post("/tasks", json={"title": "shared key"}, headers=keyed(key))
    theirs = other_account.api.post("/tasks", json={"title": "shared key"}, headers=keyed(key))
    assert mine.status_code == theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.get_json()["data"]["id"] != theirs.get_json()["data"]["id"]
    assert total(api, "tasks") == 1 and total(other_account.api, "tasks") == 1
    # A different request with the key in the other account is no conflict here.
    other = other_account.api.post("/projects", json={"name": "p"}, headers=keyed(new_key()))
    assert other.status_code == 201
    assert_replay_of(api.post("/tasks", json={"title": "shared key"}, headers=keyed(key)), mine)


def test_keys_are_shared_by_the_keys_of_one_account(account):
    key = new_key()
    writer, other_writer = account.key("write"), account.key("write")
    first = writer.post("/tasks", json={"title": "account-wide"}, headers=keyed(key))
    assert first.status_code == 201
    assert_replay_of(other_writer.post("/tasks", json={"title": "account-wide"}, headers=keyed(key)), first)
    assert total(account.api, "tasks") == 1


def test_client_errors_are_kept_and_replayed(api, account):
    key = new_key()
    first = api.post("/tasks", json={"title": "", "bogus": True}, headers=keyed(key))
    assert_error(first, 400, "VALIDATION_FAILED")
    replay = api.post("/tasks", json={"title": "", "bogus": True}, headers=keyed(key))
    assert_replay_of(replay, first)
    assert records(account.id, key)[0].response_status == 400
    missing = new_key()
    not_found = api.patch("/tasks/tsk_00000000000000000000000000", json={"title": "x"},
                          headers=keyed(missing))
    assert_error(not_found, 404, "NOT_FOUND")
    assert_replay_of(api.patch("/tasks/tsk_00000000000000000000000000", json={"title": "x"},
                               headers=keyed(missing)), not_found)
    assert total(api, "tasks") == 0


def test_server_errors_are_not_kept_so_a_retry_runs_again(api, account, monkeypatch):
    service = service_for("task")
    original = service.create
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "create", fail_once)
    key = new_key()
    crashed = api.post("/tasks", json={"title": "retry"}, headers=keyed(key))
    body = assert_error(crashed, 500, "INTERNAL_ERROR")
    assert "simulated" not in json.dumps(body)
    assert records(account.id, key) == []
    retried = api.post("/tasks", json={"title": "retry"}, headers=keyed(key))
    assert retried.status_code == 201, retried.get_json()
    assert "Idempotent-Replayed" not in retried.headers
    assert len(calls) == 2
    assert_replay_of(api.post("/tasks", json={"title": "retry"}, headers=keyed(key)), retried)
    assert len(calls) == 2
    assert total(api, "tasks") == 1


def test_refused_requests_do_not_use_up_the_key(account):
    """A 403 (scope) or 429 (rate limit) happens before the key is claimed: the key stays free."""
    key = new_key()
    reader = account.key("read")
    assert_error(reader.post("/tasks", json={"title": "t"}, headers=keyed(key)), 403, "INSUFFICIENT_SCOPE")
    with account.app.app_context():
        _, secret = accounts.create_key(account.id, "tight", ["write"], "1/minute")
    tight = type(account.api)(account.client, secret)
    assert tight.post("/projects", json={"name": "uses the allowance"}).status_code == 201
    refused = tight.post("/tasks", json={"title": "t"}, headers=keyed(key))
    assert_error(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert records(account.id, key) == []
    allowed = account.api.post("/tasks", json={"title": "t"}, headers=keyed(key))
    assert allowed.status_code == 201
    assert "Idempotent-Replayed" not in allowed.headers
    assert total(account.api, "tasks") == 1


@pytest.mark.parametrize("bad_key", ["k" * 256, "", "has space", "tab\there", "bell\x07", "del\x7f"],
                         ids=["too long", "empty", "space", "tab", "control", "delete"])
def test_invalid_key_is_a_400(api, account, bad_key):
    response = api.post("/tasks", json={"title": "x"}, headers=keyed(bad_key))
    body = assert_error(response, 400, "VALIDATION_FAILED")
    assert HEADER in body["details"]
    assert total(api, "tasks") == 0
    assert records(account.id) == []


def test_longest_valid_key_works(api):
    key = "k" * 255
    first = api.post("/tasks", json={"title": "long key"}, headers=keyed(key))
    assert first.status_code == 201
    assert_replay_of(api.post("/tasks", json={"title": "long key"}, headers=keyed(key)), first)


def test_get_ignores_the_header(api, account):
    api.create("tasks", title="listed")
    key = new_key()
    for headers in (keyed(key), keyed(key), keyed("not a valid key")):
        response = api.get("/tasks", headers=headers)
        assert response.status_code == 200
        assert "Idempotent-Replayed" not in response.headers
    assert records(account.id) == []
    # The key was not used up by the GETs.
    assert api.post("/tasks", json={"title": "after"}, headers=keyed(key)).status_code == 201


def test_patch_with_a_key_applies_once(api):
    task = api.create("tasks", title="patch me")
    key = new_key()
    first = api.patch(f"/tasks/{task['id']}", json={"status": "completed"}, headers=keyed(key))
    assert first.status_code == 200
    # Someone else changes the task; the replay still shows the first response and changes nothing.
    api.patch(f"/tasks/{task['id']}", json={"status": "todo"})
    replay = api.patch(f"/tasks/{task['id']}", json={"status": "completed"}, headers=keyed(key))
    assert_replay_of(replay, first)
    assert api.get(f"/tasks/{task['id']}").get_json()["data"]["status"] == "todo"
    assert len(events_of(api, "task.updated")) == 2
    assert_error(api.patch(f"/tasks/{task['id']}", json={"status": "in_progress"}, headers=keyed(key)),
                 422, "IDEMPOTENCY_KEY_REUSED")


def test_bulk_import_with_a_key_applies_once(api):
    key = new_key()
    body = {"items": [{"title": f"bulk {i}"} for i in range(5)]}
    first = api.post("/import/tasks", json=body, headers=keyed(key))
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["data"]["created"] == 5
    assert_replay_of(api.post("/import/tasks", json=body, headers=keyed(key)), first)
    assert total(api, "tasks") == 5
    assert len(events_of(api, "task.created")) == 5
    assert_error(api.post("/import/tasks", json={"items": [{"title": "other"}]}, headers=keyed(key)),
                 422, "IDEMPOTENCY_KEY_REUSED")


def test_bulk_update_and_delete_with_keys(api):
    tasks = [api.create("tasks", title=f"t{i}") for i in range(3)]
    update_key, delete_key = new_key("update"), new_key("delete")
    updates = {"updates": [{"id": t["id"], "status": "completed"} for t in tasks]}
    first = api.patch("/tasks/bulk", json=updates, headers=keyed(update_key))
    assert first.status_code == 200
    assert_replay_of(api.patch("/tasks/bulk", json=updates, headers=keyed(update_key)), first)
    assert len(events_of(api, "task.updated")) == 3
    ids = {"ids": [t["id"] for t in tasks]}
    deleted = api.post("/tasks/bulk-delete", json=ids, headers=keyed(delete_key))
    assert deleted.status_code == 200 and deleted.get_json()["data"]["deleted"] == 3
    replay = api.post("/tasks/bulk-delete", json=ids, headers=keyed(delete_key))
    assert_replay_of(replay, deleted)
    assert replay.get_json()["data"]["deleted"] == 3
    assert len(events_of(api, "task.deleted")) == 3


@pytest.mark.parametrize("path", ["/api-keys", "/webhooks", "/webhooks/{id}/rotate-secret"])
def test_routes_that_show_a_secret_refuse_idempotency_keys(api, path):
    """A stored response would keep the secret (a new key, a webhook secret) in the database."""
    inactive = {"url": "http://93.184.216.34/hook", "events": ["*"], "active": False}
    hook = api.post("/webhooks", json=inactive).get_json()["data"]
    body = {"name": "ci", "scopes": ["read"]} if path == "/api-keys" else (
        inactive if path == "/webhooks" else None)
    key = new_key()
    response = api.post(path.replace("{id}", hook["id"]), json=body, headers=keyed(key))
    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["details"]
    with api.client.application.app_context():
        assert not IdempotencyRecord.select().where(IdempotencyRecord.key == key).exists()
    assert "ci" not in [k["name"] for k in api.get("/api-keys").get_json()["data"]]
    assert len(api.get("/webhooks").get_json()["data"]) == 1
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 204


# --- in progress ------------------------------------------------------------------------------------


def test_request_while_the_first_is_still_running_is_409(app, api, account, monkeypatch):
    service = service_for("task")
    original = service.create
    entered, release = threading.Event(), threading.Event()

    def held(*args, **kwargs):
        entered.set()
        assert release.wait(timeout=30)
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "create", held)
    key = new_key()
    first_client = type(api)(app.test_client(), api.key)
    results = {}
    worker = threading.Thread(target=lambda: results.setdefault(
        "first", first_client.post("/tasks", json={"title": "slow"}, headers=keyed(key))))
    worker.start()
    try:
        wait_for(entered.is_set, message="the first request to reach the service")
        (record,) = records(account.id, key)
        assert record.state == "in_progress"
        busy = api.post("/tasks", json={"title": "slow"}, headers=keyed(key))
        assert_error(busy, 409, "IDEMPOTENCY_IN_PROGRESS")
        # A different request with the busy key is still a reuse of the key.
        assert_error(api.post("/tasks", json={"title": "other"}, headers=keyed(key)),
                     422, "IDEMPOTENCY_KEY_REUSED")
    finally:
        release.set()
        worker.join(timeout=30)
    first = results["first"]
    assert first.status_code == 201, first.get_json()
    assert_replay_of(api.post("/tasks", json={"title": "slow"}, headers=keyed(key)), first)
    assert total(api, "tasks") == 1
    assert len(events_of(api, "task.created")) == 1


def test_claimed_row_in_progress_answers_409(app, api, account):
    key = new_key()
    body = {"title": "claimed elsewhere"}
    with app.test_request_context("/api/v1/tasks", method="POST", json=body):
        fingerprint = idempotency.fingerprint()
    now = utcnow()
    IdempotencyRecord.create(account_id=account.id, key=key, fingerprint=fingerprint,
                             state="in_progress", created_at=now, expires_at=now + timedelta(hours=24))
    assert_error(api.post("/tasks", json=body, headers=keyed(key)), 409, "IDEMPOTENCY_IN_PROGRESS")
    assert_error(api.post("/tasks", json={"title": "x"}, headers=keyed(key)), 422, "IDEMPOTENCY_KEY_REUSED")
    assert total(api, "tasks") == 0
    # Once the holder is gone (its claim released), the key can be used.
    IdempotencyRecord.delete().where((IdempotencyRecord.account_id == account.id)
                                     & (IdempotencyRecord.key == key)).execute()
    assert api.post("/tasks", json=body, headers=keyed(key)).status_code == 201


# --- expiry -------------------------------------------------------------------------------------------


def test_records_are_kept_for_24_hours(api, account):
    key = new_key()
    before = utcnow()
    assert api.post("/tasks", json={"title": "kept"}, headers=keyed(key)).status_code == 201
    (record,) = records(account.id, key)
    assert timedelta(hours=23, minutes=59) <= record.expires_at - before <= timedelta(hours=24, minutes=1)


def test_expired_record_is_reclaimed(api, account):
    key = new_key()
    first = api.post("/tasks", json={"title": "first"}, headers=keyed(key))
    assert first.status_code == 201
    IdempotencyRecord.update(expires_at=utcnow() - timedelta(minutes=1)).where(
        (IdempotencyRecord.account_id == account.id) & (IdempotencyRecord.key == key)).execute()
    # A different request with the expired key is no longer a reuse: it runs.
    second = api.post("/tasks", json={"title": "second"}, headers=keyed(key))
    assert second.status_code == 201, second.get_json()
    assert "Idempotent-Replayed" not in second.headers
    assert second.get_json()["data"]["id"] != first.get_json()["data"]["id"]
    (record,) = records(account.id, key)
    assert record.expires_at > utcnow() + timedelta(hours=23)
    assert_replay_of(api.post("/tasks", json={"title": "second"}, headers=keyed(key)), second)
    assert total(api, "tasks") == 2


def test_purge_expired_deletes_only_expired_records(app, api, account):
    old_a, old_b, fresh = new_key("old"), new_key("old"), new_key("fresh")
    for key in (old_a, old_b, fresh):
        assert api.post("/projects", json={"name": key}, headers=keyed(key)).status_code == 201
    IdempotencyRecord.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        (IdempotencyRecord.account_id == account.id) & IdempotencyRecord.key.in_([old_a, old_b])).execute()
    with app.app_context():
        purged = idempotency.purge_expired()
    assert purged >= 2
    assert [r.key for r in records(account.id)] == [fresh]
    # Nothing expired is left, so a second purge deletes nothing.
    with app.app_context():
        assert idempotency.purge_expired() == 0
    assert [r.key for r in records(account.id)] == [fresh]


# --- over real HTTP -----------------------------------------------------------------------------------


def test_concurrent_identical_posts_over_http_make_one_row_and_one_event(live_server, api, account):
    key = new_key("concurrent")
    url = f"{live_server}/api/v1/tasks"
    headers = {"Authorization": f"Bearer {api.key}", HEADER: key}
    barrier = threading.Barrier(10)

    def fire(_):
        with requests.Session() as session:
            barrier.wait(timeout=30)
            response = session.post(url, json={"title": "exactly once"}, headers=headers, timeout=30)
            return response.status_code, response.headers.get("Idempotent-Replayed"), response.json()

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(fire, range(10)))

    created = [(replayed, body) for status, replayed, body in results if status == 201]
    busy = [body for status, _, body in results if status == 409]
    assert len(created) + len(busy) == 10, [(s, b) for s, _, b in results]
    assert created, "no request succeeded"
    assert [replayed for replayed, _ in created].count(None) == 1
    assert all(replayed in (None, "true") for replayed, _ in created)
    assert len({body["data"]["id"] for _, body in created}) == 1
    assert all(body["code"] == "IDEMPOTENCY_IN_PROGRESS" for body in busy)
    assert total(api, "tasks") == 1
    assert len(events_of(api, "task.created")) == 1
    # Afterwards the key replays the one task.
    again = requests.post(url, json={"title": "exactly once"}, headers=headers, timeout=30)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["id"] == created[0][1]["data"]["id"]
