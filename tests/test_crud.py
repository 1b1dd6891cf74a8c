"""Single-record CRUD for every built-in entity (contract sections 1, 2 and 3).

Covers, through the Flask test client and a fresh account per test:

- create (201, `Location`, `ETag`, envelope, prefixed ids, RFC 3339 `Z` timestamps,
  defaults, offsets stored as UTC), read (ETag, `If-None-Match` → 304), partial
  update (PATCH), full replace (PUT), optimistic concurrency (`If-Match` → 412,
  each write changes the ETag, two racing writers), and delete (204, then 404);
- task `completedAt` bookkeeping, references (missing or another account's
  record → 400 naming the field), user email validity and per-account,
  case-insensitive uniqueness, and what deleting a task, user or project does to
  the records pointing at it;
- account isolation on every single-record route;
- bad input of every kind (malformed JSON, wrong content type, non-object bodies,
  unknown and read-only fields, wrong types, over-long strings, non-UTF-8 bytes,
  NUL characters, invalid enums, nulls) answering 400 in the error envelope and
  writing nothing, and Unicode text round-tripping exactly.
"""

import importlib.util
import json
import re
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from api.entities import BY_PATH
from api.store import db

PATHS = ("users", "projects", "tasks", "comments")
PREFIXES = {"users": "usr", "projects": "prj", "tasks": "tsk", "comments": "cmt"}
ID_PATTERN = {path: re.compile(rf"^{prefix}_[0-9A-HJKMNP-TV-Z]{{26}}$") for path, prefix in PREFIXES.items()}
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
# A field each entity can change with a PATCH, and a value for it.
CHANGES = {
    "users": {"name": "Grace Hopper"},
    "projects": {"name": "Apollo"},
    "tasks": {"title": "Ship it"},
    "comments": {"body": "Edited comment"},
}
# The required fields of each entity.
REQUIRED = {
    "users": ("name", "email"),
    "projects": ("name",),
    "tasks": ("title",),
    "comments": ("taskId", "body"),
}
STATUS_CHOICES = "Must be one of: todo, in_progress, completed."
PRIORITY_CHOICES = "Must be one of: low, medium, high."
OLD = datetime(2020, 1, 1, 0, 0, 0)
OLD_TEXT = "2020-01-01T00:00:00.000Z"


# --- helpers -------------------------------------------------------------------------------------


def unique_email(name: str = "user") -> str:
    return f"{name}.{uuid.uuid4().hex[:12]}@example.com"


def new_body(api, path: str) -> dict:
    """A valid creation body for `path` (a comment gets a fresh parent task)."""
    if path == "users":
        return {"name": "Ada Lovelace", "email": unique_email("ada")}
    if path == "projects":
        return {"name": "Analytical Engine"}
    if path == "tasks":
        return {"title": "Write the notes"}
    task = api.create("tasks", title="Parent task")
    return {"taskId": task["id"], "body": "First comment"}


def create(api, path: str, **overrides) -> dict:
    return api.create(path, **{**new_body(api, path), **overrides})


def replacement(path: str, record: dict) -> dict:
    """A complete PUT body for `record` with only the required fields."""
    if path == "users":
        return {"name": "Replaced", "email": record["email"]}
    if path == "projects":
        return {"name": "Replaced"}
    if path == "tasks":
        return {"title": "Replaced"}
    return {"taskId": record["taskId"], "body": "Replaced"}


def total(api, path: str) -> int:
    response = api.get(f"/{path}?limit=1")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["meta"]["total"]


def fetch(api, path: str, record_id: str):
    """(ETag, data) of a record, asserting it is readable."""
    response = api.get(f"/{path}/{record_id}")
    assert response.status_code == 200, response.get_json()
    return response.headers["ETag"], response.get_json()["data"]


def assert_error(response, status: int, code: str, field: str | None = None) -> dict:
    """The response is `status` in the error envelope with `code` (and `details[field]`)."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert "data" not in body
    if field is not None:
        messages = body["details"][field]
        assert isinstance(messages, list) and messages
        assert all(isinstance(m, str) and m for m in messages)
    return body


def assert_timestamp(value) -> datetime:
    assert isinstance(value, str) and TIMESTAMP.match(value), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@contextmanager
def database():
    """Direct access to the stored rows (connection closed afterwards, as a request would)."""
    try:
        yield
    finally:
        if not db.is_closed():
            db.close()


def stored(path: str, record_id: str):
    with database():
        model = BY_PATH[path].model
        return model.get_or_none(model.id == record_id)


def backdate(path: str, record_id: str, **columns) -> None:
    """Set columns of a stored row directly (to observe what a later write changes)."""
    with database():
        model = BY_PATH[path].model
        assert model.update(**columns).where(model.id == record_id).execute() == 1


# --- create --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_create_answers_201_with_location_etag_and_envelope(api, path):
    body = new_body(api, path)
    response = api.post(f"/{path}", json=body)

    assert response.status_code == 201
    assert response.mimetype == "application/json"
    payload = response.get_json()
    assert payload["success"] is True
    data = payload["data"]
    assert ID_PATTERN[path].match(data["id"])
    for name, value in body.items():
        assert data[name] == value
    created = assert_timestamp(data["createdAt"])
    assert assert_timestamp(data["updatedAt"]) == created
    assert response.headers["Location"].endswith(f"/api/v1/{path}/{data['id']}")
    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2

    follow = api.get(response.headers["Location"])
    assert follow.status_code == 200
    assert follow.get_json()["data"] == data
    assert follow.headers["ETag"] == etag
    assert stored(path, data["id"]) is not None


@pytest.mark.parametrize("path", PATHS)
def test_ids_have_the_entity_prefix_and_sort_by_creation(api, path):
    ids = [create(api, path)["id"] for _ in range(3)]
    assert all(ID_PATTERN[path].match(i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


def test_task_defaults_and_nulls(api):
    task = api.create("tasks", title="Defaults")
    assert task["status"] == "todo"
    assert task["priority"] == "medium"
    for name in ("description", "projectId", "assigneeId", "dueAt", "completedAt"):
        assert task[name] is None
    assert set(task) == {"id", "createdAt", "updatedAt", "title", "description", "status",
                         "priority", "projectId", "assigneeId", "dueAt", "completedAt"}


def test_entity_field_sets(api):
    assert set(api.create("users", name="U", email=unique_email())) == {
        "id", "createdAt", "updatedAt", "name", "email"}
    project = api.create("projects", name="P")
    assert set(project) == {"id", "createdAt", "updatedAt", "name", "description"}
    assert project["description"] is None
    task = api.create("tasks", title="T")
    comment = api.create("comments", taskId=task["id"], body="B")
    assert set(comment) == {"id", "createdAt", "updatedAt", "taskId", "authorId", "body"}
    assert comment["authorId"] is None


def test_create_task_with_every_field(api):
    user = api.create("users", name="Assignee", email=unique_email())
    project = api.create("projects", name="Project")
    task = api.create("tasks", title="Full", description="All of it", status="in_progress",
                      priority="high", projectId=project["id"], assigneeId=user["id"],
                      dueAt="2025-01-15T10:00:00Z")
    assert task["description"] == "All of it"
    assert task["status"] == "in_progress"
    assert task["priority"] == "high"
    assert task["projectId"] == project["id"]
    assert task["assigneeId"] == user["id"]
    assert task["dueAt"] == "2025-01-15T10:00:00.000Z"
    assert task["completedAt"] is None


@pytest.mark.parametrize(("given", "expected", "naive"), [
    ("2025-01-15T12:00:00+02:00", "2025-01-15T10:00:00.000Z", datetime(2025, 1, 15, 10, 0)),
    ("2025-01-15T05:30:00.250-04:30", "2025-01-15T10:00:00.250Z",
     datetime(2025, 1, 15, 10, 0, 0, 250000)),
    ("2025-01-01T01:00:00+05:00", "2024-12-31T20:00:00.000Z", datetime(2024, 12, 31, 20, 0)),
    ("2025-01-15T10:00:00Z", "2025-01-15T10:00:00.000Z", datetime(2025, 1, 15, 10, 0)),
    ("2025-01-15T10:00:00.123z", "2025-01-15T10:00:00.123Z", datetime(2025, 1, 15, 10, 0, 0, 123000)),
])
def test_due_at_with_offset_is_stored_and_returned_as_utc(api, given, expected, naive):
    task = api.create("tasks", title="Due", dueAt=given)
    assert task["dueAt"] == expected
    assert fetch(api, "tasks", task["id"])[1]["dueAt"] == expected
    row = stored("tasks", task["id"])
    due = row.due_at if isinstance(row.due_at, datetime) else datetime.fromisoformat(row.due_at)
    assert due.tzinfo is None
    assert due == naive

    patched = api.patch(f"/tasks/{task['id']}", json={"dueAt": "2030-06-01T00:00:00-07:00"})
    assert patched.status_code == 200
    assert patched.get_json()["data"]["dueAt"] == "2030-06-01T07:00:00.000Z"


def test_due_at_can_be_cleared_with_null(api):
    task = api.create("tasks", title="Due", dueAt="2025-01-15T10:00:00Z")
    response = api.patch(f"/tasks/{task['id']}", json={"dueAt": None})
    assert response.status_code == 200
    assert response.get_json()["data"]["dueAt"] is None


# --- read ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_get_returns_record_with_etag(api, path):
    record = create(api, path)
    response = api.get(f"/{path}/{record['id']}")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "data": record}
    assert response.headers["ETag"]


@pytest.mark.parametrize("path", PATHS)
def test_if_none_match_matching_answers_304(api, path):
    record = create(api, path)
    etag = fetch(api, path, record["id"])[0]

    response = api.get(f"/{path}/{record['id']}", headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.get_data() == b""
    assert response.headers["ETag"] == etag

    listed = api.get(f"/{path}/{record['id']}", headers={"If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304


@pytest.mark.parametrize("path", PATHS)
def test_if_none_match_not_matching_answers_200(api, path):
    record = create(api, path)
    response = api.get(f"/{path}/{record['id']}", headers={"If-None-Match": '"not-the-etag"'})
    assert response.status_code == 200
    assert response.get_json()["data"] == record


@pytest.mark.parametrize("path", PATHS)
def test_stale_if_none_match_after_a_write_answers_200(api, path):
    record = create(api, path)
    old_etag = fetch(api, path, record["id"])[0]
    assert api.patch(f"/{path}/{record['id']}", json=CHANGES[path]).status_code == 200

    response = api.get(f"/{path}/{record['id']}", headers={"If-None-Match": old_etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != old_etag


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ("GET", "PATCH", "PUT", "DELETE"))
def test_unknown_id_answers_404(api, path, method):
    missing = f"{PREFIXES[path]}_01JZZZZZZZZZZZZZZZZZZZZZZZ"
    kwargs = {}
    if method == "PATCH":
        kwargs["json"] = CHANGES[path]
    elif method == "PUT":
        parent = api.create("tasks", title="Parent")
        kwargs["json"] = replacement(path, {"email": unique_email(), "taskId": parent["id"]})
    count = total(api, path)
    response = api.request(method, f"/{path}/{missing}", **kwargs)
    assert_error(response, 404, "NOT_FOUND")
    assert total(api, path) == count


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("raw_id", (
    "%00", "tsk_01J%00", "x" * 5000, "%F0%9F%9A%80", "%FF", "' OR '1'='1", "usr_01jzzzzzzzzzzzzzzzzzzzzzzz",
), ids=("nul", "embedded-nul", "very-long", "emoji", "invalid-utf8", "sql-quote", "lowercase"))
@pytest.mark.parametrize("method", ("GET", "PATCH", "PUT", "DELETE"))
def test_odd_ids_answer_404_in_the_envelope(api, path, raw_id, method):
    record = create(api, path)
    before = fetch(api, path, record["id"])
    kwargs = {"json": CHANGES[path]} if method == "PATCH" else {}
    if method == "PUT":
        kwargs["json"] = replacement(path, record)
        if path == "users":
            kwargs["json"]["email"] = unique_email()
    response = api.request(method, f"/{path}/{raw_id}", **kwargs)
    assert_error(response, 404, "NOT_FOUND")
    assert fetch(api, path, record["id"]) == before
    assert total(api, path) == 1


# --- PATCH / PUT ---------------------------------------------------------------------------------


def test_patch_changes_only_the_given_fields(api):
    user = api.create("users", name="Assignee", email=unique_email())
    project = api.create("projects", name="Project")
    task = api.create("tasks", title="Original", description="Keep me", priority="high",
                      projectId=project["id"], assigneeId=user["id"], dueAt="2025-01-15T10:00:00Z")

    response = api.patch(f"/tasks/{task['id']}", json={"title": "Changed"})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["title"] == "Changed"
    for name in ("id", "description", "priority", "status", "projectId", "assigneeId", "dueAt",
                 "completedAt", "createdAt"):
        assert data[name] == task[name]
    assert fetch(api, "tasks", task["id"])[1] == data


@pytest.mark.parametrize("path", PATHS)
def test_patch_and_put_each_change_the_etag_and_updated_at(api, path):
    record = create(api, path)
    backdate(path, record["id"], created_at=OLD, updated_at=OLD)
    etag0 = fetch(api, path, record["id"])[0]

    patched = api.patch(f"/{path}/{record['id']}", json=CHANGES[path])
    assert patched.status_code == 200
    etag1 = patched.headers["ETag"]
    data = patched.get_json()["data"]
    assert etag1 != etag0
    assert data["createdAt"] == OLD_TEXT
    assert assert_timestamp(data["updatedAt"]) > assert_timestamp(OLD_TEXT)
    for name, value in CHANGES[path].items():
        assert data[name] == value
    assert fetch(api, path, record["id"])[0] == etag1

    backdate(path, record["id"], updated_at=OLD)
    put = api.put(f"/{path}/{record['id']}", json=replacement(path, record))
    assert put.status_code == 200
    etag2 = put.headers["ETag"]
    assert etag2 not in (etag0, etag1)
    assert put.get_json()["data"]["createdAt"] == OLD_TEXT
    assert assert_timestamp(put.get_json()["data"]["updatedAt"]) > assert_timestamp(OLD_TEXT)
    assert fetch(api, path, record["id"])[0] == etag2


def test_put_resets_omitted_task_fields_to_defaults(api):
    user = api.create("users", name="Assignee", email=unique_email())
    project = api.create("projects", name="Project")
    task = api.create("tasks", title="Full", description="Text", status="completed", priority="high",
                      projectId=project["id"], assigneeId=user["id"], dueAt="2025-01-15T10:00:00Z")
    assert task["completedAt"] is not None

    response = api.put(f"/tasks/{task['id']}", json={"title": "Bare"})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["title"] == "Bare"
    assert data["status"] == "todo"
    assert data["priority"] == "medium"
    for name in ("description", "projectId", "assigneeId", "dueAt", "completedAt"):
        assert data[name] is None, name
    assert data["id"] == task["id"]
    assert data["createdAt"] == task["createdAt"]
    assert fetch(api, "tasks", task["id"])[1] == data


def test_put_resets_omitted_project_description_and_comment_author(api):
    project = api.create("projects", name="P", description="Old description")
    response = api.put(f"/projects/{project['id']}", json={"name": "P2"})
    assert response.status_code == 200
    assert response.get_json()["data"]["description"] is None
    assert response.get_json()["data"]["name"] == "P2"

    user = api.create("users", name="Author", email=unique_email())
    task = api.create("tasks", title="T")
    comment = api.create("comments", taskId=task["id"], authorId=user["id"], body="Hi")
    response = api.put(f"/comments/{comment['id']}", json={"taskId": task["id"], "body": "Bye"})
    assert response.status_code == 200
    assert response.get_json()["data"]["authorId"] is None
    assert response.get_json()["data"]["body"] == "Bye"


def test_put_replaces_user(api):
    user = api.create("users", name="Old", email=unique_email("old"))
    email = unique_email("new")
    response = api.put(f"/users/{user['id']}", json={"name": "New", "email": email})
    assert response.status_code == 200
    assert fetch(api, "users", user["id"])[1]["name"] == "New"
    assert fetch(api, "users", user["id"])[1]["email"] == email


@pytest.mark.parametrize(("path", "field"), [(p, f) for p in PATHS for f in REQUIRED[p]])
def test_put_missing_required_field_answers_400_and_changes_nothing(api, path, field):
    record = create(api, path)
    before = fetch(api, path, record["id"])
    body = replacement(path, record)
    del body[field]

    response = api.put(f"/{path}/{record['id']}", json=body)
    assert_error(response, 400, "VALIDATION_FAILED", field)
    assert fetch(api, path, record["id"]) == before


@pytest.mark.parametrize(("path", "field"), [(p, f) for p in PATHS for f in REQUIRED[p]])
def test_post_missing_required_field_answers_400_and_writes_nothing(api, path, field):
    body = new_body(api, path)
    del body[field]
    count = total(api, path)
    response = api.post(f"/{path}", json=body)
    assert_error(response, 400, "VALIDATION_FAILED", field)
    assert total(api, path) == count


def test_post_empty_object_names_every_required_field(api):
    for path in PATHS:
        body = assert_error(api.post(f"/{path}", json={}), 400, "VALIDATION_FAILED")
        assert set(REQUIRED[path]) <= set(body["details"])
        assert total(api, path) == 0


# --- If-Match ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ("PATCH", "PUT", "DELETE"))
def test_if_match_not_matching_answers_412_and_changes_nothing(api, path, method):
    record = create(api, path)
    before = fetch(api, path, record["id"])
    body = {"PATCH": CHANGES[path], "PUT": replacement(path, record), "DELETE": None}[method]
    kwargs = {"json": body} if body is not None else {}

    response = api.request(method, f"/{path}/{record['id']}", headers={"If-Match": '"stale"'}, **kwargs)
    assert_error(response, 412, "PRECONDITION_FAILED")
    assert fetch(api, path, record["id"]) == before


@pytest.mark.parametrize("path", PATHS)
def test_if_match_matching_answers_200(api, path):
    record = create(api, path)
    etag = fetch(api, path, record["id"])[0]

    patched = api.patch(f"/{path}/{record['id']}", json=CHANGES[path], headers={"If-Match": etag})
    assert patched.status_code == 200
    new_etag = patched.headers["ETag"]
    assert new_etag != etag

    put = api.put(f"/{path}/{record['id']}", json=replacement(path, record),
                  headers={"If-Match": new_etag})
    assert put.status_code == 200
    assert put.get_json()["data"] == fetch(api, path, record["id"])[1]

    deleted = api.delete(f"/{path}/{record['id']}", headers={"If-Match": put.headers["ETag"]})
    assert deleted.status_code == 204
    assert_error(api.get(f"/{path}/{record['id']}"), 404, "NOT_FOUND")


def test_if_match_star_and_lists(api):
    task = api.create("tasks", title="T")
    etag = fetch(api, "tasks", task["id"])[0]
    assert api.patch(f"/tasks/{task['id']}", json={"title": "A"},
                     headers={"If-Match": f'"nope", {etag}'}).status_code == 200
    assert api.patch(f"/tasks/{task['id']}", json={"title": "B"},
                     headers={"If-Match": "*"}).status_code == 200
    assert fetch(api, "tasks", task["id"])[1]["title"] == "B"


def test_stale_etag_reused_after_a_write_answers_412(api):
    task = api.create("tasks", title="Original")
    etag = fetch(api, "tasks", task["id"])[0]

    first = api.patch(f"/tasks/{task['id']}", json={"title": "First"}, headers={"If-Match": etag})
    second = api.patch(f"/tasks/{task['id']}", json={"title": "Second"}, headers={"If-Match": etag})
    assert first.status_code == 200
    assert_error(second, 412, "PRECONDITION_FAILED")
    assert fetch(api, "tasks", task["id"]) == (first.headers["ETag"], first.get_json()["data"])


def _race(app, key, requests):
    """Send `requests` ((method, path, kwargs)) at once from one thread each; return responses."""
    barrier = threading.Barrier(len(requests))
    results = [None] * len(requests)
    errors = []

    def run(index, method, path, kwargs):
        client = app.test_client()
        try:
            barrier.wait(timeout=10)
            results[index] = client.open(f"/api/v1{path}", method=method,
                                         headers={"Authorization": f"Bearer {key}",
                                                  **kwargs.pop("headers", {})}, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, *r)) for i, r in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert all(not t.is_alive() for t in threads)
    return results


def test_concurrent_patches_with_same_if_match_one_wins_one_412(app, api):
    task = api.create("tasks", title="Original")
    etag = fetch(api, "tasks", task["id"])[0]

    responses = _race(app, api.key, [
        ("PATCH", f"/tasks/{task['id']}", {"json": {"title": "Alpha"}, "headers": {"If-Match": etag}}),
        ("PATCH", f"/tasks/{task['id']}", {"json": {"title": "Beta"}, "headers": {"If-Match": etag}}),
    ])

    assert sorted(r.status_code for r in responses) == [200, 412]
    winner = next(r for r in responses if r.status_code == 200)
    loser = next(r for r in responses if r.status_code == 412)
    assert_error(loser, 412, "PRECONDITION_FAILED")
    current_etag, data = fetch(api, "tasks", task["id"])
    assert data["title"] == winner.get_json()["data"]["title"]
    assert current_etag == winner.headers["ETag"]
    assert stored("tasks", task["id"]).version == 2


def test_concurrent_patches_without_if_match_both_apply(app, api):
    task = api.create("tasks", title="Original")
    responses = _race(app, api.key, [
        ("PATCH", f"/tasks/{task['id']}", {"json": {"description": "one"}}),
        ("PATCH", f"/tasks/{task['id']}", {"json": {"priority": "high"}}),
    ])
    assert [r.status_code for r in responses] == [200, 200]
    assert responses[0].headers["ETag"] != responses[1].headers["ETag"]
    data = fetch(api, "tasks", task["id"])[1]
    assert data["description"] == "one"
    assert data["priority"] == "high"
    assert stored("tasks", task["id"]).version == 3


# --- task completedAt ----------------------------------------------------------------------------


def test_completed_at_set_when_created_completed(api):
    task = api.create("tasks", title="Done already", status="completed")
    completed = assert_timestamp(task["completedAt"])
    assert completed >= assert_timestamp(task["createdAt"])
    assert api.create("tasks", title="Not done", status="in_progress")["completedAt"] is None


def test_completed_at_follows_status(api):
    task = api.create("tasks", title="Lifecycle")
    assert task["completedAt"] is None

    started = api.patch(f"/tasks/{task['id']}", json={"status": "in_progress"}).get_json()["data"]
    assert started["completedAt"] is None

    done = api.patch(f"/tasks/{task['id']}", json={"status": "completed"})
    assert done.status_code == 200
    assert_timestamp(done.get_json()["data"]["completedAt"])

    # While it stays completed the timestamp is kept (pin it to see that it does not move).
    backdate("tasks", task["id"], completed_at=OLD)
    for body in ({"title": "Renamed"}, {"status": "completed"}, {"priority": "low"}):
        response = api.patch(f"/tasks/{task['id']}", json=body)
        assert response.status_code == 200
        assert response.get_json()["data"]["completedAt"] == OLD_TEXT
    put = api.put(f"/tasks/{task['id']}", json={"title": "Still done", "status": "completed"})
    assert put.status_code == 200
    assert put.get_json()["data"]["completedAt"] == OLD_TEXT

    reopened = api.patch(f"/tasks/{task['id']}", json={"status": "in_progress"})
    assert reopened.status_code == 200
    assert reopened.get_json()["data"]["completedAt"] is None
    assert stored("tasks", task["id"]).completed_at is None

    again = api.patch(f"/tasks/{task['id']}", json={"status": "completed"}).get_json()["data"]
    assert assert_timestamp(again["completedAt"]) > assert_timestamp(OLD_TEXT)

    back_to_todo = api.patch(f"/tasks/{task['id']}", json={"status": "todo"}).get_json()["data"]
    assert back_to_todo["completedAt"] is None


def test_put_without_status_clears_completed_at(api):
    task = api.create("tasks", title="Done", status="completed")
    response = api.put(f"/tasks/{task['id']}", json={"title": "Reset"})
    assert response.status_code == 200
    assert response.get_json()["data"]["status"] == "todo"
    assert response.get_json()["data"]["completedAt"] is None


@pytest.mark.parametrize("method", ("POST", "PATCH", "PUT"))
@pytest.mark.parametrize("value", ("2025-01-15T10:00:00Z", None))
def test_completed_at_is_read_only(api, method, value):
    task = api.create("tasks", title="Existing", status="completed")
    before = fetch(api, "tasks", task["id"])
    count = total(api, "tasks")
    body = {"title": "X", "status": "completed", "completedAt": value}
    path = "/tasks" if method == "POST" else f"/tasks/{task['id']}"

    response = api.request(method, path, json=body)
    assert_error(response, 400, "VALIDATION_FAILED", "completedAt")
    assert total(api, "tasks") == count
    assert fetch(api, "tasks", task["id"]) == before


# --- references ----------------------------------------------------------------------------------

REFERENCES = [
    ("tasks", "projectId", "projects"),
    ("tasks", "assigneeId", "users"),
    ("comments", "taskId", "tasks"),
    ("comments", "authorId", "users"),
]


def _reference_id(kind: str, target: str, other_account) -> str:
    if kind == "missing":
        return f"{PREFIXES[target]}_01JZZZZZZZZZZZZZZZZZZZZZZZ"
    if kind == "empty":
        return ""
    return create(other_account.api, target)["id"]


@pytest.mark.parametrize("kind", ("missing", "other-account", "empty"))
@pytest.mark.parametrize(("path", "field", "target"), REFERENCES)
def test_post_with_bad_reference_answers_400_and_writes_nothing(api, other_account, path, field,
                                                                 target, kind):
    body = {**new_body(api, path), field: _reference_id(kind, target, other_account)}
    count = total(api, path)
    other_count = total(other_account.api, path)

    response = api.post(f"/{path}", json=body)
    error = assert_error(response, 400, "VALIDATION_FAILED", field)
    assert set(error["details"]) == {field}
    assert total(api, path) == count
    assert total(other_account.api, path) == other_count


@pytest.mark.parametrize("kind", ("missing", "other-account", "empty"))
@pytest.mark.parametrize(("path", "field", "target"), REFERENCES)
def test_patch_and_put_with_bad_reference_answer_400_and_change_nothing(api, other_account, path,
                                                                        field, target, kind):
    record = create(api, path)
    before = fetch(api, path, record["id"])
    ref = _reference_id(kind, target, other_account)

    assert_error(api.patch(f"/{path}/{record['id']}", json={field: ref}), 400, "VALIDATION_FAILED", field)
    assert_error(api.put(f"/{path}/{record['id']}", json={**replacement(path, record), field: ref}),
                 400, "VALIDATION_FAILED", field)
    assert fetch(api, path, record["id"]) == before


@pytest.mark.parametrize(("path", "field", "target"), REFERENCES)
def test_valid_reference_is_stored(api, path, field, target):
    ref = create(api, target)["id"]
    record = api.create(path, **{**new_body(api, path), field: ref})
    assert record[field] == ref
    other = create(api, target)["id"]
    response = api.patch(f"/{path}/{record['id']}", json={field: other})
    assert response.status_code == 200
    assert fetch(api, path, record["id"])[1][field] == other


def test_nullable_references_can_be_cleared(api):
    user = api.create("users", name="U", email=unique_email())
    project = api.create("projects", name="P")
    task = api.create("tasks", title="T", projectId=project["id"], assigneeId=user["id"])
    response = api.patch(f"/tasks/{task['id']}", json={"projectId": None, "assigneeId": None})
    assert response.status_code == 200
    assert response.get_json()["data"]["projectId"] is None
    assert response.get_json()["data"]["assigneeId"] is None


# --- users: email --------------------------------------------------------------------------------


@pytest.mark.parametrize("email", (
    "not-an-email", "a@", "@x.com", "a b@x.com", "a@@x.com", "", "a@x..com",
))
def test_invalid_email_answers_400(api, email):
    response = api.post("/users", json={"name": "U", "email": email})
    assert_error(response, 400, "VALIDATION_FAILED", "email")
    assert total(api, "users") == 0


def test_email_longer_than_254_answers_400(api):
    email = "a" * 64 + "@" + ".".join(["b" * 60] * 3) + ".example.com"
    assert len(email) > 254
    assert_error(api.post("/users", json={"name": "U", "email": email}), 400, "VALIDATION_FAILED", "email")
    assert total(api, "users") == 0


def test_email_unique_per_account_case_insensitively(api):
    first = api.create("users", name="A", email="a@x.com")
    response = api.post("/users", json={"name": "B", "email": "A@X.com"})
    error = assert_error(response, 409, "CONFLICT", "email")
    assert "sql" not in error["error"].lower()
    assert total(api, "users") == 1
    assert fetch(api, "users", first["id"])[1]["email"] == "a@x.com"

    exact = api.post("/users", json={"name": "C", "email": "a@x.com"})
    assert_error(exact, 409, "CONFLICT", "email")
    assert total(api, "users") == 1


@pytest.mark.parametrize("stored, other", [
    ("Émile@example.com", "émile@example.com"),
    ("ÅSA@EXAMPLE.COM", "åsa@example.com"),
    ("STRASSE@example.com", "straße@example.com"),
    ("ΣΊΣΥΦΟΣ@example.com", "σίσυφος@example.com"),
])
def test_email_uniqueness_folds_case_across_unicode_on_every_backend(api, stored, other):
    first = api.create("users", name="A", email=stored)
    assert_error(api.post("/users", json={"name": "B", "email": other}), 409, "CONFLICT", "email")
    second = api.create("users", name="B", email="b@example.com")
    assert_error(api.patch(f"/users/{second['id']}", json={"email": other}), 409, "CONFLICT",
                 "email")
    assert api.patch(f"/users/{first['id']}", json={"email": other}).status_code == 200
    assert total(api, "users") == 2


def test_email_keys_of_existing_rows_are_filled_by_the_migration(app, account):
    """Migration 007 gives rows stored before it their keys; two that already collide (as
    SQLite let them) both stay, the later with a key made unique by its id."""
    path = Path(__file__).resolve().parent.parent / "api/migrations/007_unique_keys.py"
    spec = importlib.util.spec_from_file_location("migration_007", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    values = ", ".join([db.param] * 2 + ["1"] + [db.param] * 4)
    sql = ('INSERT INTO "users" ("id", "account_id", "version", "created_at", "updated_at", '
           f'"name", "email") VALUES ({values})')
    with app.app_context():
        for user_id, email, when in [("usr_legacy1", "Émile@x.com", "2025-01-01 00:00:00"),
                                     ("usr_legacy2", "émile@x.com", "2025-01-02 00:00:00")]:
            db.execute_sql(sql, (user_id, account.id, when, when, "legacy", email))
        migration._fill_keys(db.obj)
        keys = dict(db.execute_sql('SELECT "id", "email_key" FROM "users" WHERE "account_id" = '
                                   f'{db.param} ORDER BY "id"', (account.id,)).fetchall())
    assert keys == {"usr_legacy1": "émile@x.com", "usr_legacy2": "émile@x.com#usr_legacy2"}


def test_same_email_in_another_account_is_fine(api, other_account):
    api.create("users", name="A", email="shared@x.com")
    response = other_account.api.post("/users", json={"name": "A", "email": "shared@x.com"})
    assert response.status_code == 201
    assert total(api, "users") == 1
    assert total(other_account.api, "users") == 1


def test_patch_and_put_to_a_taken_email_answer_409_and_change_nothing(api):
    api.create("users", name="A", email="a@x.com")
    second = api.create("users", name="B", email="b@x.com")
    before = fetch(api, "users", second["id"])

    assert_error(api.patch(f"/users/{second['id']}", json={"email": "A@x.COM"}), 409, "CONFLICT", "email")
    assert_error(api.put(f"/users/{second['id']}", json={"name": "B2", "email": "a@X.com"}),
                 409, "CONFLICT", "email")
    assert fetch(api, "users", second["id"]) == before


def test_user_may_change_the_case_of_its_own_email(api):
    user = api.create("users", name="A", email="a@x.com")
    response = api.patch(f"/users/{user['id']}", json={"email": "A@x.com"})
    assert response.status_code == 200
    assert response.get_json()["data"]["email"] == "A@x.com"


def test_deleting_a_user_frees_its_email(api):
    user = api.create("users", name="A", email="a@x.com")
    assert api.delete(f"/users/{user['id']}").status_code == 204
    assert api.post("/users", json={"name": "A again", "email": "A@x.com"}).status_code == 201


# --- delete --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_delete_answers_204_then_404(api, path):
    record = create(api, path)
    count = total(api, path)

    response = api.delete(f"/{path}/{record['id']}")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert_error(api.get(f"/{path}/{record['id']}"), 404, "NOT_FOUND")
    assert_error(api.delete(f"/{path}/{record['id']}"), 404, "NOT_FOUND")
    assert_error(api.patch(f"/{path}/{record['id']}", json=CHANGES[path]), 404, "NOT_FOUND")
    assert total(api, path) == count - 1
    assert stored(path, record["id"]) is None


def test_deleting_a_task_deletes_its_comments(api):
    task = api.create("tasks", title="Doomed")
    other_task = api.create("tasks", title="Survivor")
    doomed = [api.create("comments", taskId=task["id"], body=f"c{i}")["id"] for i in range(2)]
    survivor = api.create("comments", taskId=other_task["id"], body="stays")
    survivor_etag = fetch(api, "comments", survivor["id"])[0]

    assert api.delete(f"/tasks/{task['id']}").status_code == 204

    for comment_id in doomed:
        assert_error(api.get(f"/comments/{comment_id}"), 404, "NOT_FOUND")
        assert stored("comments", comment_id) is None
    assert total(api, "comments") == 1
    assert fetch(api, "comments", survivor["id"])[0] == survivor_etag


def test_deleting_a_user_nulls_assignee_and_author(api):
    user = api.create("users", name="Leaving", email=unique_email())
    staying = api.create("users", name="Staying", email=unique_email())
    task = api.create("tasks", title="Assigned", assigneeId=user["id"])
    untouched_task = api.create("tasks", title="Other", assigneeId=staying["id"])
    comment = api.create("comments", taskId=untouched_task["id"], authorId=user["id"], body="mine")
    untouched_comment = api.create("comments", taskId=task["id"], authorId=staying["id"], body="theirs")
    backdate("tasks", task["id"], updated_at=OLD)
    backdate("comments", comment["id"], updated_at=OLD)
    task_etag = fetch(api, "tasks", task["id"])[0]
    comment_etag = fetch(api, "comments", comment["id"])[0]
    untouched = {
        ("tasks", untouched_task["id"]): fetch(api, "tasks", untouched_task["id"]),
        ("comments", untouched_comment["id"]): fetch(api, "comments", untouched_comment["id"]),
    }

    assert api.delete(f"/users/{user['id']}").status_code == 204

    etag, data = fetch(api, "tasks", task["id"])
    assert data["assigneeId"] is None
    assert etag != task_etag
    assert assert_timestamp(data["updatedAt"]) > assert_timestamp(OLD_TEXT)
    assert data["title"] == "Assigned"

    etag, data = fetch(api, "comments", comment["id"])
    assert data["authorId"] is None
    assert etag != comment_etag
    assert assert_timestamp(data["updatedAt"]) > assert_timestamp(OLD_TEXT)
    assert data["body"] == "mine"

    for (path, record_id), before in untouched.items():
        assert fetch(api, path, record_id) == before
    assert total(api, "tasks") == 2
    assert total(api, "comments") == 2


def test_deleting_a_project_nulls_task_project(api):
    project = api.create("projects", name="Ending")
    other = api.create("projects", name="Continuing")
    task = api.create("tasks", title="In project", projectId=project["id"])
    kept = api.create("tasks", title="Elsewhere", projectId=other["id"])
    backdate("tasks", task["id"], updated_at=OLD)
    task_etag = fetch(api, "tasks", task["id"])[0]
    kept_before = fetch(api, "tasks", kept["id"])

    assert api.delete(f"/projects/{project['id']}").status_code == 204

    etag, data = fetch(api, "tasks", task["id"])
    assert data["projectId"] is None
    assert etag != task_etag
    assert assert_timestamp(data["updatedAt"]) > assert_timestamp(OLD_TEXT)
    assert fetch(api, "tasks", kept["id"]) == kept_before
    assert total(api, "tasks") == 2


# --- account isolation ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ("GET", "PATCH", "PUT", "DELETE"))
def test_another_accounts_record_answers_404_and_is_unchanged(api, other_account, path, method):
    theirs = create(other_account.api, path)
    before = fetch(other_account.api, path, theirs["id"])
    count = total(other_account.api, path)
    kwargs = {}
    if method == "PATCH":
        kwargs["json"] = CHANGES[path]
    elif method == "PUT":
        body = replacement(path, theirs)
        if path == "comments":
            body["taskId"] = api.create("tasks", title="Mine")["id"]
        if path == "users":
            body["email"] = unique_email()
        kwargs["json"] = body

    response = api.request(method, f"/{path}/{theirs['id']}", **kwargs)
    body = assert_error(response, 404, "NOT_FOUND")
    assert theirs["id"] not in json.dumps(body.get("details", {}))
    assert fetch(other_account.api, path, theirs["id"]) == before
    assert total(other_account.api, path) == count


@pytest.mark.parametrize("path", PATHS)
def test_another_accounts_etag_does_not_give_access(api, other_account, path):
    theirs = create(other_account.api, path)
    etag = fetch(other_account.api, path, theirs["id"])[0]
    response = api.get(f"/{path}/{theirs['id']}", headers={"If-None-Match": etag})
    assert_error(response, 404, "NOT_FOUND")
    response = api.patch(f"/{path}/{theirs['id']}", json=CHANGES[path], headers={"If-Match": etag})
    assert_error(response, 404, "NOT_FOUND")
    assert fetch(other_account.api, path, theirs["id"])[0] == etag


# --- bad input -----------------------------------------------------------------------------------

HUGE = "x" * (900 * 1024)  # far over every field length, still under JSON_MAX_BYTES (1 MiB)
INVALID_VALUES = [
    pytest.param("users", "name", 42, id="users-name-number"),
    pytest.param("users", "name", None, id="users-name-null"),
    pytest.param("users", "name", "", id="users-name-empty"),
    pytest.param("users", "name", "x" * 101, id="users-name-101"),
    pytest.param("users", "name", HUGE, id="users-name-900kb"),
    pytest.param("users", "name", ["Ada"], id="users-name-list"),
    pytest.param("users", "name", "Ada\x00", id="users-name-nul"),
    pytest.param("users", "email", None, id="users-email-null"),
    pytest.param("users", "email", 5, id="users-email-number"),
    pytest.param("users", "email", "a\x00b@x.com", id="users-email-nul"),
    pytest.param("projects", "name", None, id="projects-name-null"),
    pytest.param("projects", "name", 12, id="projects-name-number"),
    pytest.param("projects", "name", "x" * 201, id="projects-name-201"),
    pytest.param("projects", "description", "x" * 10001, id="projects-description-10001"),
    pytest.param("projects", "description", HUGE, id="projects-description-900kb"),
    pytest.param("projects", "description", {"text": "x"}, id="projects-description-object"),
    pytest.param("projects", "description", "a\x00b", id="projects-description-nul"),
    pytest.param("tasks", "title", 123, id="tasks-title-number"),
    pytest.param("tasks", "title", True, id="tasks-title-bool"),
    pytest.param("tasks", "title", None, id="tasks-title-null"),
    pytest.param("tasks", "title", "", id="tasks-title-empty"),
    pytest.param("tasks", "title", "x" * 201, id="tasks-title-201"),
    pytest.param("tasks", "title", HUGE, id="tasks-title-900kb"),
    pytest.param("tasks", "title", "nul\x00title", id="tasks-title-nul"),
    pytest.param("tasks", "description", "x" * 10001, id="tasks-description-10001"),
    pytest.param("tasks", "description", 3.5, id="tasks-description-number"),
    pytest.param("tasks", "status", "done", id="tasks-status-invalid"),
    pytest.param("tasks", "status", "COMPLETED", id="tasks-status-wrong-case"),
    pytest.param("tasks", "status", None, id="tasks-status-null"),
    pytest.param("tasks", "status", 1, id="tasks-status-number"),
    pytest.param("tasks", "priority", "urgent", id="tasks-priority-invalid"),
    pytest.param("tasks", "priority", None, id="tasks-priority-null"),
    pytest.param("tasks", "dueAt", "not a date", id="tasks-dueAt-text"),
    pytest.param("tasks", "dueAt", "2025-13-45T00:00:00Z", id="tasks-dueAt-impossible"),
    pytest.param("tasks", "dueAt", 1736935200, id="tasks-dueAt-number"),
    pytest.param("tasks", "dueAt", "", id="tasks-dueAt-empty"),
    pytest.param("tasks", "dueAt", ["2025-01-15T10:00:00Z"], id="tasks-dueAt-list"),
    pytest.param("tasks", "dueAt", "2025-02-30T10:00:00Z", id="tasks-dueAt-feb-30"),
    pytest.param("tasks", "dueAt", "2025-01-15T10:00:00+25:00", id="tasks-dueAt-bad-offset"),
    pytest.param("tasks", "dueAt", "0001-01-01T00:00:00+01:00", id="tasks-dueAt-before-year-1-utc"),
    pytest.param("tasks", "dueAt", "9999-12-31T23:59:59-01:00", id="tasks-dueAt-after-year-9999-utc"),
    pytest.param("tasks", "dueAt", "2025-01-15T10:00:00Z" + " " * 30, id="tasks-dueAt-too-long"),
    pytest.param("tasks", "projectId", 7, id="tasks-projectId-number"),
    pytest.param("tasks", "assigneeId", {"id": "usr_x"}, id="tasks-assigneeId-object"),
    pytest.param("comments", "body", None, id="comments-body-null"),
    pytest.param("comments", "body", "", id="comments-body-empty"),
    pytest.param("comments", "body", "x" * 5001, id="comments-body-5001"),
    pytest.param("comments", "body", HUGE, id="comments-body-900kb"),
    pytest.param("comments", "body", "\x00", id="comments-body-nul"),
    pytest.param("comments", "taskId", None, id="comments-taskId-null"),
    pytest.param("comments", "taskId", 3, id="comments-taskId-number"),
    pytest.param("comments", "authorId", False, id="comments-authorId-bool"),
]


@pytest.mark.parametrize(("path", "field", "value"), INVALID_VALUES)
def test_invalid_value_answers_400_and_writes_nothing(api, path, field, value):
    record = create(api, path)
    before = fetch(api, path, record["id"])
    count = total(api, path)

    created = api.post(f"/{path}", json={**new_body(api, path), field: value})
    assert_error(created, 400, "VALIDATION_FAILED", field)
    patched = api.patch(f"/{path}/{record['id']}", json={field: value})
    assert_error(patched, 400, "VALIDATION_FAILED", field)
    put = api.put(f"/{path}/{record['id']}", json={**replacement(path, record), field: value})
    assert_error(put, 400, "VALIDATION_FAILED", field)

    assert total(api, path) == count
    assert fetch(api, path, record["id"]) == before


@pytest.mark.parametrize(("path", "field", "limit"), [
    ("users", "name", 100), ("projects", "name", 200), ("projects", "description", 10000),
    ("tasks", "title", 200), ("tasks", "description", 10000), ("comments", "body", 5000),
])
def test_strings_at_the_max_length_are_accepted(api, path, field, limit):
    value = "é" * limit
    record = api.create(path, **{**new_body(api, path), field: value})
    assert record[field] == value
    assert fetch(api, path, record["id"])[1][field] == value


def test_invalid_status_message_lists_the_choices(api):
    response = api.post("/tasks", json={"title": "T", "status": "done"})
    body = assert_error(response, 400, "VALIDATION_FAILED", "status")
    assert body["details"]["status"] == [STATUS_CHOICES]

    task = api.create("tasks", title="T")
    response = api.patch(f"/tasks/{task['id']}", json={"status": "archived"})
    assert assert_error(response, 400, "VALIDATION_FAILED")["details"] == {"status": [STATUS_CHOICES]}

    response = api.patch(f"/tasks/{task['id']}", json={"priority": "urgent"})
    assert assert_error(response, 400, "VALIDATION_FAILED")["details"] == {"priority": [PRIORITY_CHOICES]}
    assert total(api, "tasks") == 1


def test_several_errors_are_reported_together(api):
    response = api.post("/tasks", json={"title": "", "status": "nope", "priority": 5, "dueAt": "x",
                                        "extra": 1})
    body = assert_error(response, 400, "VALIDATION_FAILED")
    assert {"title", "status", "priority", "dueAt", "extra"} <= set(body["details"])
    assert total(api, "tasks") == 0


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("field", ("nickname", "created_at", "account_id", "version", "accountId"))
def test_unknown_field_answers_400_and_writes_nothing(api, path, field):
    record = create(api, path)
    before = fetch(api, path, record["id"])
    count = total(api, path)

    assert_error(api.post(f"/{path}", json={**new_body(api, path), field: "x"}),
                 400, "VALIDATION_FAILED", field)
    assert_error(api.patch(f"/{path}/{record['id']}", json={**CHANGES[path], field: "x"}),
                 400, "VALIDATION_FAILED", field)
    assert_error(api.put(f"/{path}/{record['id']}", json={**replacement(path, record), field: "x"}),
                 400, "VALIDATION_FAILED", field)
    assert total(api, path) == count
    assert fetch(api, path, record["id"]) == before


@pytest.mark.parametrize(("path", "field"), [
    *[(p, f) for p in PATHS for f in ("id", "createdAt", "updatedAt")],
    ("tasks", "completedAt"),
])
def test_read_only_field_answers_400_and_writes_nothing(api, path, field):
    record = create(api, path)
    before = fetch(api, path, record["id"])
    count = total(api, path)
    value = record["id"] if field == "id" else "2025-01-15T10:00:00Z"

    assert_error(api.post(f"/{path}", json={**new_body(api, path), field: value}),
                 400, "VALIDATION_FAILED", field)
    assert_error(api.patch(f"/{path}/{record['id']}", json={**CHANGES[path], field: value}),
                 400, "VALIDATION_FAILED", field)
    assert_error(api.put(f"/{path}/{record['id']}", json={**replacement(path, record), field: value}),
                 400, "VALIDATION_FAILED", field)
    # Even echoing back the record exactly as it was read is refused.
    assert_error(api.put(f"/{path}/{record['id']}", json=before[1]), 400, "VALIDATION_FAILED", field)
    assert total(api, path) == count
    assert fetch(api, path, record["id"]) == before


def _write_targets(api, path):
    """(method, url) of every write route of `path`, against a fresh record."""
    record = create(api, path)
    return record, [("POST", f"/{path}"), ("PATCH", f"/{path}/{record['id']}"),
                    ("PUT", f"/{path}/{record['id']}")]


def _assert_nothing_written(api, path, record, before, count):
    assert total(api, path) == count
    assert fetch(api, path, record["id"]) == before


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("raw", (
    b'{"title": ', b"{'name': 'x'}", b'{"name": "x",}', b"", b"   ", b"{", b"nul", b'{"name": NaN}',
    b'{"name": Infinity}', b'{"a": 1}{"b": 2}', b"[" * 100_000 + b"]" * 100_000,
    b'{"name":' * 50_000,
), ids=("truncated", "single-quotes", "trailing-comma", "empty", "blank", "brace", "bare-word",
        "nan", "infinity", "two-objects", "deeply-nested-arrays", "deeply-nested-objects"))
def test_malformed_json_answers_400_bad_request(api, path, raw):
    record, targets = _write_targets(api, path)
    before = fetch(api, path, record["id"])
    count = total(api, path)
    for method, url in targets:
        response = api.request(method, url, data=raw, content_type="application/json")
        assert_error(response, 400, "BAD_REQUEST")
    _assert_nothing_written(api, path, record, before, count)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("content_type", (
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/xml", None,
))
def test_wrong_content_type_answers_400_bad_request(api, path, content_type):
    record, targets = _write_targets(api, path)
    before = fetch(api, path, record["id"])
    body = json.dumps({**new_body(api, path)}).encode()
    count = total(api, path)
    for method, url in targets:
        kwargs = {"data": body}
        if content_type:
            kwargs["content_type"] = content_type
        response = api.request(method, url, **kwargs)
        assert_error(response, 400, "BAD_REQUEST")
    _assert_nothing_written(api, path, record, before, count)


def test_json_content_type_with_charset_is_accepted(api):
    response = api.post("/tasks", data=json.dumps({"title": "charset"}),
                        content_type="application/json; charset=utf-8")
    assert response.status_code == 201
    assert response.get_json()["data"]["title"] == "charset"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("raw", (b"[]", b'[{"name": "x"}]', b'"a string"', b"42", b"null", b"true"),
                         ids=("empty-array", "array", "string", "number", "null", "true"))
def test_body_that_is_not_an_object_answers_400(api, path, raw):
    record, targets = _write_targets(api, path)
    before = fetch(api, path, record["id"])
    count = total(api, path)
    for method, url in targets:
        response = api.request(method, url, data=raw, content_type="application/json")
        assert_error(response, 400, "VALIDATION_FAILED", "_schema")
    _assert_nothing_written(api, path, record, before, count)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("raw", (
    b'{"name": "caf\xe9", "title": "caf\xe9", "body": "caf\xe9"}',
    b'{"name": "\xff\xfe"}',
    b'{"name": "\xc3\x28"}',
    b'{"name": "\xed\xa0\x80"}',
    '{"name": "x"}'.encode("utf-16"),
), ids=("latin-1", "invalid-bytes", "bad-continuation", "encoded-surrogate", "utf-16"))
def test_non_utf8_body_answers_400_bad_request(api, path, raw):
    record, targets = _write_targets(api, path)
    before = fetch(api, path, record["id"])
    count = total(api, path)
    for method, url in targets:
        response = api.request(method, url, data=raw, content_type="application/json")
        assert_error(response, 400, "BAD_REQUEST")
    _assert_nothing_written(api, path, record, before, count)


@pytest.mark.parametrize(("path", "field"), [
    ("users", "name"), ("projects", "name"), ("projects", "description"), ("tasks", "title"),
    ("tasks", "description"), ("comments", "body"),
])
@pytest.mark.parametrize("escaped", ('"\\u0000"', '"before\\u0000after"', '"\\ud800"', '"x\\udfff"'),
                         ids=("nul", "embedded-nul", "lone-high-surrogate", "lone-low-surrogate"))
def test_nul_and_lone_surrogates_answer_400(api, path, field, escaped):
    record = create(api, path)
    before = fetch(api, path, record["id"])
    count = total(api, path)
    body = json.dumps({**new_body(api, path), field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', escaped)
    response = api.post(f"/{path}", data=body, content_type="application/json")
    assert_error(response, 400, "VALIDATION_FAILED", field)
    patch = json.dumps({field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', escaped)
    response = api.patch(f"/{path}/{record['id']}", data=patch, content_type="application/json")
    assert_error(response, 400, "VALIDATION_FAILED", field)
    assert total(api, path) == count
    assert fetch(api, path, record["id"]) == before


@pytest.mark.parametrize("text", (
    "🚀 ship it 👩‍💻🏳️‍🌈",
    "漢字かな交じり文、한국어",
    "مرحبا بالعالم — שלום עולם",
    "e\u0301 \u200f\u202etxet\u202c \ufeff zero\u200bwidth",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010fffd",
), ids=("emoji", "cjk", "rtl", "combining-and-controls", "astral"))
def test_unicode_round_trips_exactly(api, text):
    user = api.create("users", name=text[:100], email=unique_email())
    project = api.create("projects", name=text, description=text * 3)
    task = api.create("tasks", title=text, description=text)
    comment = api.create("comments", taskId=task["id"], body=text)

    assert user["name"] == text[:100]
    for path, record, field, expected in (
        ("users", user, "name", text[:100]),
        ("projects", project, "name", text),
        ("projects", project, "description", text * 3),
        ("tasks", task, "title", text),
        ("comments", comment, "body", text),
    ):
        assert record[field] == expected
        response = api.get(f"/{path}/{record['id']}")
        assert response.get_json()["data"][field] == expected
        assert expected.encode("utf-8") in response.get_data()
        assert getattr(stored(path, record["id"]), BY_PATH[path].fields[field].attribute) == expected

    patched = api.patch(f"/tasks/{task['id']}", json={"title": text[::-1]})
    assert patched.get_json()["data"]["title"] == text[::-1]


def test_unicode_email_local_part_round_trips(api):
    user = api.create("users", name="Ünïcödé", email="jürgen@example.com")
    assert fetch(api, "users", user["id"])[1]["email"] == "jürgen@example.com"
