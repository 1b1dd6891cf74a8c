"""Bulk create, update and delete (contract section 4).

Covers, through the Flask test client and a fresh account per test:

- `POST /api/v1/import/{entity}`: the contract's seed example verbatim (207, one
  failure at index 2), all-or-nothing by default (400 keyed `items.<i>.<field>`,
  zero rows written), 201 when everything is valid, `returnFailures: false`,
  non-object items, unknown and read-only fields, duplicate emails inside one
  request and against stored rows (`CONFLICT`, case-insensitive, per account),
  references to missing or foreign records, `completedAt` bookkeeping, and a
  1000-item import;
- `PATCH /api/v1/{entity}/bulk`: partial and all-or-nothing modes, unknown and
  foreign ids (`NOT_FOUND`, the foreign record untouched), duplicate ids, ETags and
  versions, `completedAt`, unique emails;
- `POST /api/v1/{entity}/bulk-delete`: `deleted`/`notFound`, account isolation and
  the cascades of single deletes;
- the `BULK_MAX_ITEMS` cap (checked before any item is looked at), malformed bodies
  and options, scopes, and that the number of SQL queries does not grow with the
  number of items.
"""

import re
import uuid

import pytest

from api import store
from tests.extra_apps import extra_apps

PATHS = ("users", "projects", "tasks", "comments")
PREFIXES = {"users": "usr", "projects": "prj", "tasks": "tsk", "comments": "cmt"}
STATUS_CHOICES = "Must be one of: todo, in_progress, completed."
READ_ONLY = {"id": "tsk_01J00000000000000000000000", "createdAt": "2025-01-15T10:00:00Z",
             "updatedAt": "2025-01-15T10:00:00Z", "completedAt": "2025-01-15T10:00:00Z"}
MISSING_TASK = "tsk_00000000000000000000000000"


# --- helpers -------------------------------------------------------------------------------------


def unique_email(name: str = "user") -> str:
    return f"{name}.{uuid.uuid4().hex[:12]}@example.com"


def assert_error(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    return body


def bulk_import(api, path: str, items, **options):
    body = {"items": items}
    if options:
        body["options"] = options
    return api.post(f"/import/{path}", json=body)


def bulk_update(api, path: str, updates, **options):
    body = {"updates": updates}
    if options:
        body["options"] = options
    return api.patch(f"/{path}/bulk", json=body)


def bulk_delete(api, path: str, ids):
    return api.post(f"/{path}/bulk-delete", json={"ids": ids})


def total(api, path: str) -> int:
    response = api.get(f"/{path}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["meta"]["total"]


def fetch(api, path: str, record_id: str) -> dict:
    response = api.get(f"/{path}/{record_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def etag_of(api, path: str, record_id: str) -> str:
    response = api.get(f"/{path}/{record_id}")
    assert response.status_code == 200
    return response.headers["ETag"]


def valid_items(api, path: str, count: int) -> list[dict]:
    """`count` valid creation bodies for `path` (comments share one fresh parent task)."""
    if path == "users":
        return [{"name": f"User {i}", "email": unique_email(f"u{i}")} for i in range(count)]
    if path == "projects":
        return [{"name": f"Project {i}"} for i in range(count)]
    if path == "tasks":
        return [{"title": f"Task {i}"} for i in range(count)]
    task = api.create("tasks", title="Parent")
    return [{"taskId": task["id"], "body": f"Comment {i}"} for i in range(count)]


def import_ok(api, path: str, items) -> list[dict]:
    """Import `items` (asserting 201) and return the created records."""
    response = bulk_import(api, path, items)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["items"]


# --- import: the contract's seed example -------------------------------------------------------


def test_seed_example_partial_import_answers_207_with_the_failure_at_index_2(api):
    items = [
        {"title": "Task 1", "status": "todo"},
        {"title": "Task 2", "status": "in_progress"},
        {"title": "Task 3", "status": "bogus"},
    ]
    response = api.post("/import/tasks", json={
        "items": items, "options": {"skipInvalid": True, "returnFailures": True}})

    assert response.status_code == 207
    body = response.get_json()
    assert body["success"] is True
    data = body["data"]
    assert data["created"] == 2
    assert data["failed"] == 1
    assert [(t["title"], t["status"]) for t in data["items"]] == [("Task 1", "todo"),
                                                                   ("Task 2", "in_progress")]
    for record in data["items"]:
        assert re.fullmatch(r"tsk_[0-9A-HJKMNP-TV-Z]{26}", record["id"])
        assert record["createdAt"].endswith("Z")
        assert fetch(api, "tasks", record["id"])["title"] == record["title"]
    assert len(data["failures"]) == 1
    failure = data["failures"][0]
    assert failure["index"] == 2
    assert failure["item"] == {"title": "Task 3", "status": "bogus"}
    assert failure["code"] == "VALIDATION_FAILED"
    assert isinstance(failure["error"], str) and "status" in failure["error"]
    assert failure["details"] == {"status": [STATUS_CHOICES]}
    assert total(api, "tasks") == 2


# --- import: modes and statuses ----------------------------------------------------------------


def test_import_is_all_or_nothing_by_default_and_writes_nothing(api):
    items = [{"title": "Task 1"}, {"title": "Task 2"}, {"title": "Task 3", "status": "bogus"}]
    body = assert_error(bulk_import(api, "tasks", items), 400, "VALIDATION_FAILED")
    assert body["details"] == {"items.2.status": [STATUS_CHOICES]}
    assert total(api, "tasks") == 0


def test_explicit_skip_invalid_false_is_all_or_nothing(api):
    items = [{"title": "ok"}, {"title": "bad", "priority": "urgent"}]
    body = assert_error(bulk_import(api, "tasks", items, skipInvalid=False), 400, "VALIDATION_FAILED")
    assert body["details"] == {"items.1.priority": ["Must be one of: low, medium, high."]}
    assert total(api, "tasks") == 0


def test_all_or_nothing_lists_every_failing_item_and_field(api):
    items = [{"title": ""}, {"title": "fine"}, {"status": "bogus"}, {"title": "x" * 201}]
    body = assert_error(bulk_import(api, "tasks", items), 400, "VALIDATION_FAILED")
    details = body["details"]
    assert set(details) == {"items.0.title", "items.2.title", "items.2.status", "items.3.title"}
    assert details["items.2.status"] == [STATUS_CHOICES]
    assert details["items.2.title"] == ["Missing data for required field."]
    assert total(api, "tasks") == 0


@pytest.mark.parametrize("path", PATHS)
def test_import_of_valid_items_answers_201_and_stores_them(api, path):
    items = valid_items(api, path, 3)
    before = total(api, path)
    response = bulk_import(api, path, items)
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    assert data["created"] == 3
    assert data["failed"] == 0
    assert data["failures"] == []
    assert len(data["items"]) == 3
    ids = [record["id"] for record in data["items"]]
    assert len(set(ids)) == 3
    assert all(record_id.startswith(PREFIXES[path] + "_") for record_id in ids)
    for item, record in zip(items, data["items"]):
        assert {k: record[k] for k in item} == item
        assert fetch(api, path, record["id"]) == record
    assert total(api, path) == before + 3


def test_import_items_come_back_in_request_order_with_defaults(api):
    items = [{"title": "first", "priority": "high"}, {"title": "second"}, {"title": "third"}]
    records = import_ok(api, "tasks", items)
    assert [r["title"] for r in records] == ["first", "second", "third"]
    assert [r["priority"] for r in records] == ["high", "medium", "medium"]
    assert all(r["status"] == "todo" and r["completedAt"] is None for r in records)
    assert records[0]["id"] < records[1]["id"] < records[2]["id"]


def test_skip_invalid_with_every_item_valid_answers_201(api):
    response = bulk_import(api, "tasks", [{"title": "a"}, {"title": "b"}], skipInvalid=True)
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert (data["created"], data["failed"], data["failures"]) == (2, 0, [])


def test_skip_invalid_with_every_item_invalid_answers_207_and_writes_nothing(api):
    response = bulk_import(api, "tasks", [{"status": "bogus"}, {}], skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert (data["created"], data["failed"], data["items"]) == (0, 2, [])
    assert [f["index"] for f in data["failures"]] == [0, 1]
    assert total(api, "tasks") == 0


def test_return_failures_false_leaves_failures_out(api):
    items = [{"title": "ok"}, {"title": "bad", "status": "bogus"}]
    response = bulk_import(api, "tasks", items, skipInvalid=True, returnFailures=False)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert "failures" not in data
    assert data["created"] == 1
    assert data["failed"] == 1
    assert [t["title"] for t in data["items"]] == ["ok"]
    assert total(api, "tasks") == 1


def test_return_failures_false_on_full_success_leaves_failures_out(api):
    response = bulk_import(api, "tasks", [{"title": "ok"}], returnFailures=False)
    assert response.status_code == 201
    assert set(response.get_json()["data"]) == {"created", "failed", "items"}


def test_failures_are_reported_in_index_order_whatever_their_kind(api, other_account):
    foreign_user = other_account.api.create("users", name="Foreign", email=unique_email())
    items = [
        {"title": "ok 0"},
        {"title": "foreign", "assigneeId": foreign_user["id"]},
        {"title": "bad", "status": "bogus"},
        {"title": "ok 3"},
        {"title": "missing", "projectId": "prj_00000000000000000000000000"},
    ]
    response = bulk_import(api, "tasks", items, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert [f["index"] for f in data["failures"]] == [1, 2, 4]
    assert [f["item"] for f in data["failures"]] == [items[1], items[2], items[4]]
    assert [t["title"] for t in data["items"]] == ["ok 0", "ok 3"]


# --- import: item shapes -----------------------------------------------------------------------


def test_non_object_items_are_failures(api):
    items = [1, "task", None, [], {"title": "real"}, True]
    response = bulk_import(api, "tasks", items, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert data["created"] == 1
    assert [t["title"] for t in data["items"]] == ["real"]
    assert [f["index"] for f in data["failures"]] == [0, 1, 2, 3, 5]
    for failure in data["failures"]:
        assert failure["code"] == "VALIDATION_FAILED"
        assert failure["item"] == items[failure["index"]]
        assert failure["error"]
        assert failure["details"]
    assert total(api, "tasks") == 1


def test_non_object_item_fails_the_whole_import_by_default(api):
    body = assert_error(bulk_import(api, "tasks", [{"title": "ok"}, "nope"]), 400, "VALIDATION_FAILED")
    assert body["details"]
    assert all(key.startswith("items.1") for key in body["details"])
    assert total(api, "tasks") == 0


def test_unknown_fields_in_items_are_failures(api):
    items = [{"title": "ok"}, {"title": "colourful", "colour": "red"}]
    body = assert_error(bulk_import(api, "tasks", items), 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["items.1.colour"]
    assert total(api, "tasks") == 0

    response = bulk_import(api, "tasks", items, skipInvalid=True)
    assert response.status_code == 207
    failure = response.get_json()["data"]["failures"][0]
    assert failure["index"] == 1
    assert list(failure["details"]) == ["colour"]
    assert total(api, "tasks") == 1


@pytest.mark.parametrize("field", sorted(READ_ONLY))
def test_read_only_fields_in_items_are_failures(api, field):
    items = [{"title": "ok"}, {"title": "sneaky", field: READ_ONLY[field]}]
    body = assert_error(bulk_import(api, "tasks", items), 400, "VALIDATION_FAILED")
    assert body["details"] == {f"items.1.{field}": ["This field is read-only."]}
    assert total(api, "tasks") == 0

    response = bulk_import(api, "tasks", items, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert data["failures"][0]["details"] == {field: ["This field is read-only."]}
    assert data["items"][0]["id"] != READ_ONLY["id"]
    assert total(api, "tasks") == 1


def test_import_sets_completed_at_for_completed_tasks(api):
    records = import_ok(api, "tasks", [{"title": "done", "status": "completed"}, {"title": "open"}])
    assert records[0]["completedAt"] is not None and records[0]["completedAt"].endswith("Z")
    assert records[1]["completedAt"] is None
    assert fetch(api, "tasks", records[0]["id"])["completedAt"] == records[0]["completedAt"]


def test_import_stores_timestamps_with_offsets_as_utc(api):
    records = import_ok(api, "tasks", [{"title": "due", "dueAt": "2025-01-15T12:00:00+02:00"}])
    assert records[0]["dueAt"].startswith("2025-01-15T10:00:00")
    assert records[0]["dueAt"].endswith("Z")


# --- import: unique emails ---------------------------------------------------------------------


def test_duplicate_email_inside_one_request_fails_the_later_item(api):
    email = unique_email("dup")
    items = [
        {"name": "First", "email": email},
        {"name": "Other", "email": unique_email("other")},
        {"name": "Second", "email": email.upper()},
    ]
    response = bulk_import(api, "users", items, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert data["created"] == 2
    assert [u["name"] for u in data["items"]] == ["First", "Other"]
    assert len(data["failures"]) == 1
    failure = data["failures"][0]
    assert failure["index"] == 2
    assert failure["code"] == "CONFLICT"
    assert failure["item"] == items[2]
    assert "email" in failure["details"]
    assert failure["error"]
    assert total(api, "users") == 2


def test_duplicate_email_inside_one_request_fails_everything_by_default(api):
    email = unique_email("dup")
    items = [{"name": "First", "email": email}, {"name": "Second", "email": email}]
    body = assert_error(bulk_import(api, "users", items), 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["items.1.email"]
    assert total(api, "users") == 0


def test_email_already_stored_is_a_conflict_case_insensitively(api):
    taken = api.create("users", name="Taken", email="Taken." + unique_email())
    items = [{"name": "Fresh", "email": unique_email()},
             {"name": "Clash", "email": taken["email"].lower()}]
    response = bulk_import(api, "users", items, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert [u["name"] for u in data["items"]] == ["Fresh"]
    assert [(f["index"], f["code"]) for f in data["failures"]] == [(1, "CONFLICT")]
    assert "email" in data["failures"][0]["details"]

    body = assert_error(bulk_import(api, "users", [{"name": "Again", "email": taken["email"].upper()}]),
                        400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["items.0.email"]
    assert total(api, "users") == 2


def test_emails_are_unique_per_account_only(api, other_account):
    email = unique_email("shared")
    other_account.api.create("users", name="Elsewhere", email=email)
    records = import_ok(api, "users", [{"name": "Here", "email": email}])
    assert records[0]["email"] == email
    assert total(other_account.api, "users") == 1


def test_invalid_email_is_a_validation_failure(api):
    response = bulk_import(api, "users", [{"name": "No at", "email": "not-an-email"}], skipInvalid=True)
    assert response.status_code == 207
    failure = response.get_json()["data"]["failures"][0]
    assert (failure["index"], failure["code"]) == (0, "VALIDATION_FAILED")
    assert list(failure["details"]) == ["email"]


# --- import: references ------------------------------------------------------------------------


def test_references_to_missing_or_foreign_records_are_failures_naming_the_field(api, other_account):
    project = api.create("projects", name="Mine")
    user = api.create("users", name="Mine", email=unique_email())
    foreign_project = other_account.api.create("projects", name="Theirs")
    foreign_user = other_account.api.create("users", name="Theirs", email=unique_email())
    items = [
        {"title": "good", "projectId": project["id"], "assigneeId": user["id"]},
        {"title": "missing project", "projectId": "prj_00000000000000000000000000"},
        {"title": "foreign project", "projectId": foreign_project["id"]},
        {"title": "missing user", "assigneeId": "usr_00000000000000000000000000"},
        {"title": "foreign user", "assigneeId": foreign_user["id"]},
        {"title": "no refs", "projectId": None, "assigneeId": None},
    ]
    response = bulk_import(api, "tasks", items, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert [t["title"] for t in data["items"]] == ["good", "no refs"]
    assert data["items"][0]["projectId"] == project["id"]
    assert data["items"][0]["assigneeId"] == user["id"]
    failures = {f["index"]: f for f in data["failures"]}
    assert sorted(failures) == [1, 2, 3, 4]
    assert list(failures[1]["details"]) == ["projectId"]
    assert list(failures[2]["details"]) == ["projectId"]
    assert list(failures[3]["details"]) == ["assigneeId"]
    assert list(failures[4]["details"]) == ["assigneeId"]
    assert foreign_project["id"] in failures[2]["error"]
    assert all(f["code"] == "VALIDATION_FAILED" for f in failures.values())
    assert total(api, "tasks") == 2
    assert total(other_account.api, "tasks") == 0


def test_foreign_reference_fails_the_whole_import_by_default(api, other_account):
    foreign_task = other_account.api.create("tasks", title="Theirs")
    mine = api.create("tasks", title="Mine")
    items = [{"taskId": mine["id"], "body": "ok"}, {"taskId": foreign_task["id"], "body": "sneaky"}]
    body = assert_error(bulk_import(api, "comments", items), 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["items.1.taskId"]
    assert total(api, "comments") == 0
    assert total(other_account.api, "comments") == 0


def test_import_validates_references_with_a_fixed_number_of_queries(api, count_queries):
    users = import_ok(api, "users", [{"name": f"U{i}", "email": unique_email()} for i in range(200)])
    projects = import_ok(api, "projects", [{"name": f"P{i}"} for i in range(200)])

    def items(count):
        return [{"title": f"T{i}", "assigneeId": users[i]["id"], "projectId": projects[i]["id"]}
                for i in range(count)]

    import_ok(api, "tasks", items(1))  # warm up (key last-used bookkeeping and the like)
    with count_queries() as small:
        import_ok(api, "tasks", items(5))
    with count_queries() as large:
        import_ok(api, "tasks", items(200))
    assert large.count - small.count <= 2, (small.count, large.count)
    assert small.count <= 10
    assert total(api, "tasks") == 206


def test_import_checks_unique_emails_with_a_fixed_number_of_queries(api, count_queries):
    import_ok(api, "users", [{"name": "warm", "email": unique_email()}])
    with count_queries() as small:
        import_ok(api, "users", [{"name": f"U{i}", "email": unique_email()} for i in range(5)])
    with count_queries() as large:
        import_ok(api, "users", [{"name": f"U{i}", "email": unique_email()} for i in range(200)])
    assert large.count - small.count <= 2, (small.count, large.count)


def test_one_thousand_tasks_import_in_one_request(api):
    items = [{"title": f"Task {i}", "priority": ("low", "medium", "high")[i % 3]} for i in range(1000)]
    response = bulk_import(api, "tasks", items)
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["created"] == 1000
    assert len({t["id"] for t in data["items"]}) == 1000
    assert [t["title"] for t in data["items"]] == [i["title"] for i in items]
    assert total(api, "tasks") == 1000
    high = api.get("/tasks", query_string={"priority": "high", "limit": 1}).get_json()["meta"]["total"]
    assert high == 333


# --- the cap and malformed bodies --------------------------------------------------------------


def test_empty_items_is_a_400(api):
    body = assert_error(bulk_import(api, "tasks", []), 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["items"]


def test_more_than_bulk_max_items_is_a_400_before_looking_at_items(api):
    body = assert_error(bulk_import(api, "tasks", [{"title": f"T{i}"} for i in range(1001)]),
                        400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["items"]
    assert "1000" in body["details"]["items"][0]
    # Even when every item is invalid, the size is the only complaint: no item was examined.
    body = assert_error(bulk_import(api, "tasks", [{"status": "bogus"}] * 1001, skipInvalid=True),
                        400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["items"]
    assert total(api, "tasks") == 0


def test_update_and_delete_are_capped_too(api):
    ids = [f"tsk_{i:026d}" for i in range(1001)]
    body = assert_error(bulk_update(api, "tasks", [{"id": i, "title": "x"} for i in ids]),
                        400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["updates"]
    body = assert_error(bulk_delete(api, "tasks", ids), 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["ids"]
    assert list(assert_error(bulk_update(api, "tasks", []), 400, "VALIDATION_FAILED")["details"]) \
        == ["updates"]


def test_bulk_max_items_setting_is_honoured(app, account, backend_env):
    task = account.api.create("tasks", title="existing")
    with extra_apps() as build:
        small = build({**backend_env, "BULK_MAX_ITEMS": "5"})
        api = type(account.api)(small.test_client(), account.api.key)
        body = assert_error(bulk_import(api, "tasks", [{"title": f"T{i}"} for i in range(6)]),
                            400, "VALIDATION_FAILED")
        assert "5" in body["details"]["items"][0]
        assert total(api, "tasks") == 1
        assert bulk_import(api, "tasks", [{"title": f"T{i}"} for i in range(5)]).status_code == 201
        updates = [{"id": task["id"], "title": f"v{i}"} for i in range(6)]
        assert_error(bulk_update(api, "tasks", updates), 400, "VALIDATION_FAILED")
        assert_error(bulk_delete(api, "tasks", [task["id"]] * 6), 400, "VALIDATION_FAILED")
        assert total(api, "tasks") == 6
    # The session app is back to its own settings: 1000 is the cap again.
    assert bulk_import(account.api, "tasks", [{"title": f"T{i}"} for i in range(6)]).status_code == 201
    assert total(account.api, "tasks") == 12


@pytest.mark.parametrize("body", [
    {},
    {"items": None},
    {"items": {"title": "not a list"}},
    {"items": "tasks"},
    {"items": 3},
    {"items": [{"title": "ok"}], "options": None},
    {"items": [{"title": "ok"}], "options": []},
    {"items": [{"title": "ok"}], "options": {"skipInvalid": "true"}},
    {"items": [{"title": "ok"}], "options": {"skipInvalid": 1}},
    {"items": [{"title": "ok"}], "options": {"skipInvalid": 0}},
    {"items": [{"title": "ok"}], "options": {"skipInvalid": None}},
    {"items": [{"title": "ok"}], "options": {"returnFailures": "false"}},
    {"items": [{"title": "ok"}], "options": {"returnFailures": 0}},
    {"items": [{"title": "ok"}], "options": {"skipInvalid": True, "dryRun": True}},
    {"items": [{"title": "ok"}], "mode": "upsert"},
    {"items": [{"title": "ok"}], "skipInvalid": True},
], ids=lambda body: repr(body)[:60])
def test_malformed_import_bodies_are_400_and_write_nothing(api, body):
    assert_error(api.post("/import/tasks", json=body), 400, "VALIDATION_FAILED")
    assert total(api, "tasks") == 0


def test_import_body_that_is_not_an_object_is_a_400(api):
    assert_error(api.post("/import/tasks", json=[{"title": "ok"}]), 400, "VALIDATION_FAILED")
    assert total(api, "tasks") == 0


def test_malformed_json_and_wrong_content_type_are_bad_requests(api):
    assert_error(api.post("/import/tasks", data='{"items": [', content_type="application/json"),
                 400, "BAD_REQUEST")
    assert_error(api.post("/import/tasks", data='{"items": [{"title": "x"}]}', content_type="text/plain"),
                 400, "BAD_REQUEST")
    assert_error(api.patch("/tasks/bulk", data="{", content_type="application/json"), 400, "BAD_REQUEST")
    form = "application/x-www-form-urlencoded"
    assert_error(api.post("/tasks/bulk-delete", data="ids=1", content_type=form), 400, "BAD_REQUEST")
    assert total(api, "tasks") == 0


def test_unknown_entity_is_404(api):
    assert_error(bulk_import(api, "widgets", [{"name": "x"}]), 404, "NOT_FOUND")
    assert_error(bulk_delete(api, "widgets", ["x"]), 404, "NOT_FOUND")


def test_wrong_method_on_the_import_route_is_405(api):
    response = api.get("/import/tasks")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["Allow"]
    assert_error(api.put("/import/tasks", json={"items": [{"title": "x"}]}), 405, "METHOD_NOT_ALLOWED")
    assert total(api, "tasks") == 0


# --- bulk update -------------------------------------------------------------------------------


def test_bulk_update_of_valid_updates_answers_200(api):
    tasks = import_ok(api, "tasks", [{"title": "a"}, {"title": "b"}, {"title": "c"}])
    updates = [{"id": tasks[2]["id"], "title": "C", "priority": "high"},
               {"id": tasks[0]["id"], "status": "in_progress"}]
    response = bulk_update(api, "tasks", updates)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert (data["updated"], data["failed"], data["failures"]) == (2, 0, [])
    assert [t["id"] for t in data["items"]] == [tasks[2]["id"], tasks[0]["id"]]
    assert (data["items"][0]["title"], data["items"][0]["priority"]) == ("C", "high")
    assert data["items"][1]["status"] == "in_progress"
    assert data["items"][1]["title"] == "a"
    for record in data["items"]:
        assert fetch(api, "tasks", record["id"]) == record
    assert fetch(api, "tasks", tasks[1]["id"]) == tasks[1]


def test_bulk_update_partial_mode_answers_207_with_failures(api):
    tasks = import_ok(api, "tasks", [{"title": "a"}, {"title": "b"}, {"title": "c"}])
    updates = [
        {"id": tasks[0]["id"], "title": "A"},
        {"id": tasks[1]["id"], "status": "bogus"},
        {"id": MISSING_TASK, "title": "ghost"},
        {"id": tasks[2]["id"], "priority": "low"},
    ]
    response = bulk_update(api, "tasks", updates, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert (data["updated"], data["failed"]) == (2, 2)
    assert [t["id"] for t in data["items"]] == [tasks[0]["id"], tasks[2]["id"]]
    failures = data["failures"]
    assert [(f["index"], f["code"]) for f in failures] == [(1, "VALIDATION_FAILED"), (2, "NOT_FOUND")]
    assert failures[0]["details"] == {"status": [STATUS_CHOICES]}
    assert failures[0]["item"] == updates[1]
    assert failures[1]["item"] == updates[2]
    assert MISSING_TASK in failures[1]["error"]
    assert fetch(api, "tasks", tasks[0]["id"])["title"] == "A"
    assert fetch(api, "tasks", tasks[1]["id"]) == tasks[1]
    assert fetch(api, "tasks", tasks[2]["id"])["priority"] == "low"


def test_bulk_update_return_failures_false(api):
    task = api.create("tasks", title="a")
    response = bulk_update(api, "tasks", [{"id": task["id"], "title": "A"}, {"id": MISSING_TASK}],
                           skipInvalid=True, returnFailures=False)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert "failures" not in data
    assert (data["updated"], data["failed"]) == (1, 1)


def test_bulk_update_is_all_or_nothing_by_default(api):
    tasks = import_ok(api, "tasks", [{"title": "a"}, {"title": "b"}])
    etags = [etag_of(api, "tasks", t["id"]) for t in tasks]
    updates = [{"id": tasks[0]["id"], "title": "A"}, {"id": tasks[1]["id"], "status": "bogus"}]
    body = assert_error(bulk_update(api, "tasks", updates), 400, "VALIDATION_FAILED")
    assert body["details"] == {"updates.1.status": [STATUS_CHOICES]}
    assert [fetch(api, "tasks", t["id"]) for t in tasks] == tasks
    assert [etag_of(api, "tasks", t["id"]) for t in tasks] == etags


def test_bulk_update_unknown_id_fails_everything_by_default(api):
    task = api.create("tasks", title="a")
    updates = [{"id": task["id"], "title": "A"}, {"id": MISSING_TASK, "title": "ghost"}]
    body = assert_error(bulk_update(api, "tasks", updates), 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["updates.1.id"]
    assert fetch(api, "tasks", task["id"]) == task


def test_bulk_update_of_another_accounts_record_is_not_found_and_leaves_it_untouched(api, other_account):
    mine = api.create("tasks", title="mine")
    theirs = other_account.api.create("tasks", title="theirs")
    their_etag = etag_of(other_account.api, "tasks", theirs["id"])
    updates = [{"id": mine["id"], "title": "changed"}, {"id": theirs["id"], "title": "hijacked"}]
    response = bulk_update(api, "tasks", updates, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert data["updated"] == 1
    assert [(f["index"], f["code"]) for f in data["failures"]] == [(1, "NOT_FOUND")]
    assert fetch(other_account.api, "tasks", theirs["id"]) == theirs
    assert etag_of(other_account.api, "tasks", theirs["id"]) == their_etag
    assert fetch(api, "tasks", mine["id"])["title"] == "changed"


def test_bulk_update_entity_mismatch_id_is_not_found(api):
    project = api.create("projects", name="a project")
    response = bulk_update(api, "tasks", [{"id": project["id"], "title": "x"}], skipInvalid=True)
    assert response.status_code == 207
    assert response.get_json()["data"]["failures"][0]["code"] == "NOT_FOUND"
    assert fetch(api, "projects", project["id"]) == project


def test_bulk_update_duplicate_id_fails_the_later_update(api):
    task = api.create("tasks", title="a")
    updates = [{"id": task["id"], "title": "first"}, {"id": task["id"], "title": "second"}]
    response = bulk_update(api, "tasks", updates, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert data["updated"] == 1
    assert [f["index"] for f in data["failures"]] == [1]
    assert "id" in data["failures"][0]["details"]
    assert fetch(api, "tasks", task["id"])["title"] == "first"

    body = assert_error(bulk_update(api, "tasks", updates), 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["updates.1.id"]
    assert fetch(api, "tasks", task["id"])["title"] == "first"


@pytest.mark.parametrize("update", [
    {"title": "no id"},
    {"id": None, "title": "null id"},
    {"id": 42, "title": "numeric id"},
    {"id": "", "title": "empty id"},
    "tsk_notanobject",
    None,
])
def test_bulk_update_items_without_a_usable_id_are_failures(api, update):
    task = api.create("tasks", title="a")
    response = bulk_update(api, "tasks", [{"id": task["id"], "title": "A"}, update], skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert data["updated"] == 1
    assert [(f["index"], f["code"]) for f in data["failures"]] == [(1, "VALIDATION_FAILED")]
    assert data["failures"][0]["item"] == update
    assert fetch(api, "tasks", task["id"])["title"] == "A"


def test_bulk_update_id_with_nul_is_a_failure_not_a_crash(api):
    task = api.create("tasks", title="a")
    response = bulk_update(api, "tasks", [{"id": task["id"], "title": "A"}, {"id": "tsk_\x00", "title": "x"}],
                           skipInvalid=True)
    assert response.status_code == 207
    failures = response.get_json()["data"]["failures"]
    assert [(f["index"], f["code"]) for f in failures] == [(1, "NOT_FOUND")]
    assert fetch(api, "tasks", task["id"])["title"] == "A"


@pytest.mark.parametrize("field", ["createdAt", "updatedAt", "completedAt"])
def test_bulk_update_read_only_fields_are_failures(api, field):
    task = api.create("tasks", title="a")
    update = {"id": task["id"], "title": "x", field: READ_ONLY[field]}
    body = assert_error(bulk_update(api, "tasks", [update]), 400, "VALIDATION_FAILED")
    assert body["details"] == {f"updates.0.{field}": ["This field is read-only."]}
    assert fetch(api, "tasks", task["id"]) == task


def test_bulk_update_unknown_fields_and_nulls_on_required_fields_are_failures(api):
    task = api.create("tasks", title="a")
    other = api.create("tasks", title="b")
    updates = [{"id": task["id"], "colour": "red"}, {"id": other["id"], "title": None}]
    body = assert_error(bulk_update(api, "tasks", updates), 400, "VALIDATION_FAILED")
    assert set(body["details"]) == {"updates.0.colour", "updates.1.title"}
    assert fetch(api, "tasks", task["id"]) == task


def test_bulk_update_references_to_foreign_records_are_failures(api, other_account):
    task = api.create("tasks", title="a")
    mine = api.create("users", name="Mine", email=unique_email())
    theirs = other_account.api.create("users", name="Theirs", email=unique_email())
    other = api.create("tasks", title="b")
    updates = [{"id": task["id"], "assigneeId": mine["id"]}, {"id": other["id"], "assigneeId": theirs["id"]}]
    response = bulk_update(api, "tasks", updates, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert data["items"][0]["assigneeId"] == mine["id"]
    assert [(f["index"], list(f["details"])) for f in data["failures"]] == [(1, ["assigneeId"])]
    assert fetch(api, "tasks", other["id"])["assigneeId"] is None


def test_bulk_update_can_clear_references(api):
    user = api.create("users", name="U", email=unique_email())
    task = api.create("tasks", title="a", assigneeId=user["id"])
    response = bulk_update(api, "tasks", [{"id": task["id"], "assigneeId": None}])
    assert response.status_code == 200
    assert fetch(api, "tasks", task["id"])["assigneeId"] is None


def test_bulk_update_sets_and_clears_completed_at(api):
    tasks = import_ok(api, "tasks", [{"title": "a"}, {"title": "b", "status": "completed"}])
    assert tasks[1]["completedAt"] is not None
    response = bulk_update(api, "tasks", [{"id": tasks[0]["id"], "status": "completed"},
                                          {"id": tasks[1]["id"], "status": "todo"}])
    assert response.status_code == 200
    items = response.get_json()["data"]["items"]
    assert items[0]["completedAt"] is not None and items[0]["completedAt"].endswith("Z")
    assert items[1]["completedAt"] is None
    assert fetch(api, "tasks", tasks[0]["id"])["completedAt"] == items[0]["completedAt"]
    assert fetch(api, "tasks", tasks[1]["id"])["completedAt"] is None


def test_bulk_update_keeps_completed_at_when_a_completed_task_stays_completed(api):
    task = api.create("tasks", title="a", status="completed")
    response = bulk_update(api, "tasks", [{"id": task["id"], "status": "completed", "title": "A"}])
    assert response.status_code == 200
    assert fetch(api, "tasks", task["id"])["completedAt"] == task["completedAt"]


def test_bulk_update_changes_etag_and_updated_at_of_updated_rows_only(api):
    tasks = import_ok(api, "tasks", [{"title": "a"}, {"title": "b"}])
    old = [etag_of(api, "tasks", t["id"]) for t in tasks]
    assert bulk_update(api, "tasks", [{"id": tasks[0]["id"], "title": "A"}]).status_code == 200
    assert etag_of(api, "tasks", tasks[0]["id"]) != old[0]
    assert etag_of(api, "tasks", tasks[1]["id"]) == old[1]
    assert fetch(api, "tasks", tasks[0]["id"])["updatedAt"] >= tasks[0]["updatedAt"]
    # The old ETag is stale now: a conditional single update with it is refused.
    stale = api.patch(f"/tasks/{tasks[0]['id']}", json={"title": "late"}, headers={"If-Match": old[0]})
    assert_error(stale, 412, "PRECONDITION_FAILED")
    fresh = etag_of(api, "tasks", tasks[0]["id"])
    ok = api.patch(f"/tasks/{tasks[0]['id']}", json={"title": "on time"}, headers={"If-Match": fresh})
    assert ok.status_code == 200


def test_bulk_update_of_email_to_one_in_use_is_a_conflict(api):
    a = api.create("users", name="A", email=unique_email("a"))
    b = api.create("users", name="B", email=unique_email("b"))
    response = bulk_update(api, "users", [{"id": b["id"], "email": a["email"].upper()}], skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert [(f["index"], f["code"]) for f in data["failures"]] == [(0, "CONFLICT")]
    assert "email" in data["failures"][0]["details"]
    assert fetch(api, "users", b["id"]) == b


def test_bulk_update_two_updates_to_the_same_email_fail_the_later(api):
    a = api.create("users", name="A", email=unique_email("a"))
    b = api.create("users", name="B", email=unique_email("b"))
    email = unique_email("new")
    updates = [{"id": a["id"], "email": email}, {"id": b["id"], "email": email.upper()}]
    response = bulk_update(api, "users", updates, skipInvalid=True)
    assert response.status_code == 207
    data = response.get_json()["data"]
    assert [(f["index"], f["code"]) for f in data["failures"]] == [(1, "CONFLICT")]
    assert fetch(api, "users", a["id"])["email"] == email
    assert fetch(api, "users", b["id"]) == b
    response = bulk_update(api, "users", [{"id": b["id"], "email": email}])
    body = assert_error(response, 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["updates.0.email"]


def test_bulk_update_changing_only_the_case_of_ones_own_email_is_allowed(api):
    a = api.create("users", name="A", email=unique_email("a"))
    response = bulk_update(api, "users", [{"id": a["id"], "email": a["email"].upper()}])
    assert response.status_code == 200, response.get_json()
    assert fetch(api, "users", a["id"])["email"] == a["email"].upper()


def test_bulk_update_email_held_by_a_record_updated_in_the_same_request_is_a_conflict(api):
    """Another update in the request touching the holder (but not its email) does not free the email."""
    a = api.create("users", name="A", email=unique_email("a"))
    b = api.create("users", name="B", email=unique_email("b"))
    updates = [{"id": a["id"], "name": "A renamed"}, {"id": b["id"], "email": a["email"]}]
    response = bulk_update(api, "users", updates, skipInvalid=True)
    assert response.status_code == 207, response.get_json()
    data = response.get_json()["data"]
    assert data["updated"] == 1
    assert [(f["index"], f["code"]) for f in data["failures"]] == [(1, "CONFLICT")]
    assert fetch(api, "users", a["id"])["name"] == "A renamed"
    assert fetch(api, "users", b["id"]) == b
    body = assert_error(bulk_update(api, "users", updates), 400, "VALIDATION_FAILED")
    assert list(body["details"]) == ["updates.1.email"]


def test_bulk_update_swapping_emails_never_answers_500(api):
    a = api.create("users", name="A", email=unique_email("a"))
    b = api.create("users", name="B", email=unique_email("b"))
    updates = [{"id": a["id"], "email": b["email"]}, {"id": b["id"], "email": a["email"]}]
    response = bulk_update(api, "users", updates, skipInvalid=True)
    assert response.status_code in (200, 207), response.get_json()
    emails = {fetch(api, "users", a["id"])["email"], fetch(api, "users", b["id"])["email"]}
    assert len(emails) == 2
    data = response.get_json()["data"]
    if response.status_code == 207:
        assert all(f["code"] == "CONFLICT" for f in data["failures"])


def test_bulk_update_uses_a_fixed_number_of_queries(api, count_queries):
    users = import_ok(api, "users", [{"name": f"U{i}", "email": unique_email()} for i in range(200)])
    tasks = import_ok(api, "tasks", [{"title": f"T{i}"} for i in range(201)])

    def updates(count, offset):
        return [{"id": tasks[offset + i]["id"], "assigneeId": users[i]["id"], "status": "completed"}
                for i in range(count)]

    assert bulk_update(api, "tasks", [{"id": tasks[200]["id"], "title": "warm"}]).status_code == 200
    with count_queries() as small:
        assert bulk_update(api, "tasks", updates(5, 0)).status_code == 200
    with count_queries() as large:
        assert bulk_update(api, "tasks", updates(200, 0)).status_code == 200
    assert large.count - small.count <= 2, (small.count, large.count)
    assert small.count <= 10
    listed = api.get("/tasks", query_string={"status": "completed", "assigneeId[isnull]": "false"})
    assert listed.get_json()["meta"]["total"] == 200


@pytest.mark.parametrize("body", [
    {},
    {"updates": None},
    {"updates": {"id": "tsk_1"}},
    {"updates": [{"id": "tsk_1"}], "options": {"skipInvalid": "yes"}},
    {"updates": [{"id": "tsk_1"}], "options": {"skipInvalid": 1}},
    {"updates": [{"id": "tsk_1"}], "options": {"unknown": True}},
    {"updates": [{"id": "tsk_1"}], "extra": 1},
])
def test_malformed_bulk_update_bodies_are_400(api, body):
    task = api.create("tasks", title="a")
    for update in body.get("updates") or []:
        if isinstance(update, dict):
            update["id"] = task["id"]
    assert_error(api.patch("/tasks/bulk", json=body), 400, "VALIDATION_FAILED")
    assert fetch(api, "tasks", task["id"]) == task


# --- bulk delete -------------------------------------------------------------------------------


def test_bulk_delete_reports_deleted_and_not_found(api):
    tasks = import_ok(api, "tasks", [{"title": "a"}, {"title": "b"}, {"title": "c"}])
    ghost = MISSING_TASK
    response = bulk_delete(api, "tasks", [tasks[0]["id"], ghost, tasks[2]["id"], "nonsense"])
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["data"] == {"deleted": 2, "notFound": [ghost, "nonsense"]}
    assert_error(api.get(f"/tasks/{tasks[0]['id']}"), 404, "NOT_FOUND")
    assert_error(api.get(f"/tasks/{tasks[2]['id']}"), 404, "NOT_FOUND")
    assert fetch(api, "tasks", tasks[1]["id"]) == tasks[1]
    assert total(api, "tasks") == 1


def test_bulk_delete_twice_reports_not_found_the_second_time(api):
    task = api.create("tasks", title="a")
    assert bulk_delete(api, "tasks", [task["id"]]).get_json()["data"] == {"deleted": 1, "notFound": []}
    assert bulk_delete(api, "tasks", [task["id"]]).get_json()["data"] == {"deleted": 0,
                                                                           "notFound": [task["id"]]}


def test_bulk_delete_with_repeated_ids_counts_each_record_once(api):
    task = api.create("tasks", title="a")
    response = bulk_delete(api, "tasks", [task["id"], task["id"], MISSING_TASK, MISSING_TASK])
    assert response.status_code == 200
    assert response.get_json()["data"] == {"deleted": 1, "notFound": [MISSING_TASK]}


@pytest.mark.parametrize("path", PATHS)
def test_bulk_delete_works_for_every_entity(api, path):
    records = import_ok(api, path, valid_items(api, path, 3))
    response = bulk_delete(api, path, [r["id"] for r in records[:2]])
    assert response.status_code == 200
    assert response.get_json()["data"] == {"deleted": 2, "notFound": []}
    assert [r["id"] for r in api.get(f"/{path}").get_json()["data"] if r["id"] in
            {x["id"] for x in records}] == [records[2]["id"]]


def test_bulk_delete_of_another_accounts_ids_is_not_found_and_deletes_nothing(api, other_account):
    mine = api.create("tasks", title="mine")
    theirs = other_account.api.create("tasks", title="theirs")
    their_comment = other_account.api.create("comments", taskId=theirs["id"], body="keep me")
    response = bulk_delete(api, "tasks", [theirs["id"], mine["id"]])
    assert response.status_code == 200
    assert response.get_json()["data"] == {"deleted": 1, "notFound": [theirs["id"]]}
    assert fetch(other_account.api, "tasks", theirs["id"]) == theirs
    assert fetch(other_account.api, "comments", their_comment["id"]) == their_comment


def test_bulk_delete_of_tasks_deletes_their_comments(api, other_account):
    tasks = import_ok(api, "tasks", [{"title": "a"}, {"title": "b"}, {"title": "keep"}])
    comments = import_ok(api, "comments", [{"taskId": tasks[i % 3]["id"], "body": f"c{i}"} for i in range(6)])
    response = bulk_delete(api, "tasks", [tasks[0]["id"], tasks[1]["id"]])
    assert response.get_json()["data"] == {"deleted": 2, "notFound": []}
    left = api.get("/comments").get_json()["data"]
    assert sorted(c["id"] for c in left) == sorted(c["id"] for c in comments if c["taskId"] == tasks[2]["id"])
    assert total(api, "comments") == 2


def test_bulk_delete_of_users_nulls_references_to_them(api):
    users = import_ok(api, "users", [{"name": f"U{i}", "email": unique_email()} for i in range(3)])
    task = api.create("tasks", title="a", assigneeId=users[0]["id"])
    kept = api.create("tasks", title="b", assigneeId=users[2]["id"])
    comment = api.create("comments", taskId=task["id"], authorId=users[1]["id"], body="hi")
    task_etag = etag_of(api, "tasks", task["id"])
    response = bulk_delete(api, "users", [users[0]["id"], users[1]["id"]])
    assert response.get_json()["data"] == {"deleted": 2, "notFound": []}
    assert fetch(api, "tasks", task["id"])["assigneeId"] is None
    assert etag_of(api, "tasks", task["id"]) != task_etag
    assert fetch(api, "comments", comment["id"])["authorId"] is None
    assert fetch(api, "tasks", kept["id"])["assigneeId"] == users[2]["id"]


def test_bulk_delete_of_projects_nulls_task_project_ids(api):
    project = api.create("projects", name="P")
    task = api.create("tasks", title="a", projectId=project["id"])
    assert bulk_delete(api, "projects", [project["id"]]).get_json()["data"]["deleted"] == 1
    assert fetch(api, "tasks", task["id"])["projectId"] is None


def test_bulk_delete_uses_a_fixed_number_of_queries(api, count_queries):
    tasks = import_ok(api, "tasks", [{"title": f"T{i}"} for i in range(206)])
    import_ok(api, "comments", [{"taskId": t["id"], "body": "c"} for t in tasks])
    assert bulk_delete(api, "tasks", [tasks[205]["id"]]).status_code == 200
    with count_queries() as small:
        assert bulk_delete(api, "tasks", [t["id"] for t in tasks[:5]]).status_code == 200
    with count_queries() as large:
        assert bulk_delete(api, "tasks", [t["id"] for t in tasks[5:205]]).status_code == 200
    assert large.count - small.count <= 2, (small.count, large.count)
    assert total(api, "tasks") == 0
    assert total(api, "comments") == 0


@pytest.mark.parametrize("body", [
    {},
    {"ids": []},
    {"ids": None},
    {"ids": "tsk_1"},
    {"ids": [1, 2]},
    {"ids": ["tsk_1", None]},
    {"ids": [{"id": "tsk_1"}]},
    {"ids": ["tsk_\x00"]},
    {"ids": ["tsk_1"], "cascade": False},
])
def test_malformed_bulk_delete_bodies_are_400_and_delete_nothing(api, body):
    task = api.create("tasks", title="a")
    body = {k: ([task["id"] if v == "tsk_1" else v for v in value] if isinstance(value, list) else value)
            for k, value in body.items()}
    assert_error(api.post("/tasks/bulk-delete", json=body), 400, "VALIDATION_FAILED")
    assert fetch(api, "tasks", task["id"]) == task


# --- scopes ------------------------------------------------------------------------------------


def test_read_only_key_gets_403_on_every_bulk_route(account, api):
    task = api.create("tasks", title="original")
    reader = account.key("read")
    for response in (
        bulk_import(reader, "tasks", [{"title": "new"}]),
        bulk_update(reader, "tasks", [{"id": task["id"], "title": "changed"}]),
        bulk_delete(reader, "tasks", [task["id"]]),
    ):
        body = assert_error(response, 403, "INSUFFICIENT_SCOPE")
        assert body["details"] == {"required": "write"}
    assert [(t["id"], t["title"]) for t in api.get("/tasks").get_json()["data"]] == [(task["id"], "original")]


def test_write_key_can_use_every_bulk_route(account, api):
    writer = account.key("write")
    response = bulk_import(writer, "tasks", [{"title": "new"}])
    assert response.status_code == 201
    task_id = response.get_json()["data"]["items"][0]["id"]
    assert bulk_update(writer, "tasks", [{"id": task_id, "title": "changed"}]).status_code == 200
    assert fetch(api, "tasks", task_id)["title"] == "changed"
    assert bulk_delete(writer, "tasks", [task_id]).get_json()["data"] == {"deleted": 1, "notFound": []}
    assert total(api, "tasks") == 0


def test_bulk_routes_need_a_key(client):
    assert_error(client.post("/api/v1/import/tasks", json={"items": [{"title": "x"}]}), 401, "UNAUTHORIZED")
    assert_error(client.patch("/api/v1/tasks/bulk", json={"updates": [{"id": "x"}]}), 401, "UNAUTHORIZED")
    assert_error(client.post("/api/v1/tasks/bulk-delete", json={"ids": ["x"]}), 401, "UNAUTHORIZED")


def test_lookups_of_many_ids_go_through_the_primary_key(app, account, count_queries):
    """Bulk checks, expansions and batch reads look ids up by primary key, not by walking
    an `(account_id, …)` index over every row of the account (SQLite's planner, without
    statistics, would; PostgreSQL's, with them, must not either)."""
    api = account.api
    users = import_ok(api, "users", [{"name": f"U{i}", "email": unique_email()} for i in range(50)])
    user = users[0]
    tasks = import_ok(api, "tasks", [{"title": f"T{i}", "assigneeId": user["id"]} for i in range(50)])
    with count_queries() as counter:
        batch = api.post("/batch", json={"requests": [
            {"id": f"r{i}", "method": "GET", "path": f"/tasks/{t['id']}"} for i, t in enumerate(tasks[:5])]})
        assert [r["status"] for r in batch.get_json()["responses"]] == [200] * 5
        assert api.get("/tasks", query_string={"expand": "assignee"}).status_code == 200
        import_ok(api, "tasks", [{"title": "more", "assigneeId": user["id"]}])
        updated = api.patch("/tasks/bulk", json={"updates": [{"id": t["id"], "priority": "high"}
                                                             for t in tasks[:3]]})
        assert updated.status_code == 200, updated.get_json()
    lookups = [(sql, params) for sql, params in counter.statements
               if re.search(r'"id" IN \(', sql) and "account_id" in sql]
    assert {re.search(r'FROM "(\w+)"', sql).group(1) for sql, _ in lookups} == {"tasks", "users"}
    with app.app_context():
        for sql, params in lookups:
            table = re.search(r'FROM "(\w+)"', sql).group(1)
            if store.is_postgres():
                store.db.execute_sql(f'ANALYZE "{table}"')
                with store.db.atomic():  # a few rows are read fastest in a row: which index would it take?
                    store.db.execute_sql("SET LOCAL enable_seqscan = off")
                    plan = " ".join(r[0] for r in store.db.execute_sql("EXPLAIN " + sql, params))
                assert f"{table}_pkey" in plan, (sql, plan)
            else:
                plan = " ".join(r[-1] for r in store.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
                assert f"sqlite_autoindex_{table}_1 (id=?)" in plan, (sql, plan)
