"""Events (contract section 7, and the last bullet of section 4), through the Flask test client.

Every committed create, update and delete of every entity, whether by a single REST
call, a bulk import/update/delete or a batch, leaves exactly one event per record written:
`{id, type, createdAt, data, previousAttributes}` with `previousAttributes` only on
updates (the changed fields as they were, camelCase) and `data` on deletes being the
record as it was. Cascades emit too: deleting a task emits `comment.deleted` for its
comments, deleting a user or project emits `*.updated` for the records whose reference
was nulled. Writes that fail (validation, conflicts, 404, 412, all-or-nothing bulk
failures, atomic batches that fail) emit nothing, and neither does a PATCH or PUT that
changes nothing (which also leaves the ETag alone).

`GET /api/v1/events` lists them newest first, filters by `type` (a comma list) and
pages with `limit`/`cursor`; bad query parameters answer 400. `GET /api/v1/events/{id}`
shows one. Another account's events never appear: not in the list, 404 by id.
"""

import re
import uuid

import pytest

EVENT_ID = re.compile(r"evt_[0-9A-HJKMNP-TV-Z]{26}")
RFC3339_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
MISSING_EVENT = "evt_00000000000000000000000000"


# --- helpers -------------------------------------------------------------------------------------


def unique_email(name: str = "user") -> str:
    return f"{name}.{uuid.uuid4().hex[:12]}@example.com"


def all_events(api, **params) -> list[dict]:
    """Every event of the key's account (newest first), walking `nextCursor` to the end."""
    events, cursor = [], None
    while True:
        query = {"limit": 100, **params}
        if cursor:
            query["cursor"] = cursor
        response = api.get("/events", query_string=query)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        events += body["data"]
        cursor = body["meta"]["nextCursor"]
        if cursor is None:
            return events


class EventLog:
    """The account's events since a mark; `new()` returns those since the last call, oldest first."""

    def __init__(self, api):
        self.api = api
        self.seen = {e["id"] for e in all_events(api)}

    def new(self) -> list[dict]:
        fresh = [e for e in reversed(all_events(self.api)) if e["id"] not in self.seen]
        self.seen.update(e["id"] for e in fresh)
        return fresh


def assert_event(event: dict, event_type: str, data: dict, previous: dict | None = None) -> None:
    """The contract's shape: exactly these keys, `previousAttributes` only on updates."""
    keys = {"id", "type", "createdAt", "data"}
    if event_type.endswith(".updated"):
        keys.add("previousAttributes")
    assert set(event) == keys, event
    assert EVENT_ID.fullmatch(event["id"]), event["id"]
    assert event["type"] == event_type
    assert RFC3339_Z.fullmatch(event["createdAt"]), event["createdAt"]
    assert event["data"] == data
    if previous is not None:
        assert event["previousAttributes"] == previous


def by_data_id(events: list[dict]) -> dict[str, dict]:
    return {e["data"]["id"]: e for e in events}


def fetch(api, path: str, record_id: str) -> dict:
    response = api.get(f"/{path}/{record_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def assert_error(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["code"] == code
    return body


# Per entity: a creation body (given a parent task id for comments), a PATCH body, and the
# `previousAttributes` that PATCH must report.
CASES = {
    "users": (lambda parent: {"name": "Ann", "email": unique_email("ann")},
              {"name": "Annie"}, {"name": "Ann"}),
    "projects": (lambda parent: {"name": "Apollo", "description": "Moon"},
                 {"description": "Mars"}, {"description": "Moon"}),
    "tasks": (lambda parent: {"title": "Write", "priority": "low"},
              {"status": "in_progress", "priority": "high"},
              {"status": "todo", "priority": "low"}),
    "comments": (lambda parent: {"taskId": parent, "body": "First"},
                 {"body": "Second"}, {"body": "First"}),
}
ENTITY = {"users": "user", "projects": "project", "tasks": "task", "comments": "comment"}


# --- single REST writes --------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(CASES))
def test_single_create_update_delete_each_emit_exactly_one_event(api, path):
    make, patch, previous = CASES[path]
    parent = api.create("tasks", title="Parent")["id"]
    log = EventLog(api)
    name = ENTITY[path]

    created = api.create(path, **make(parent))
    [event] = log.new()
    assert_event(event, f"{name}.created", created)
    single = api.get(f"/events/{event['id']}")
    assert single.status_code == 200
    assert single.get_json() == {"success": True, "data": event}

    response = api.patch(f"/{path}/{created['id']}", json=patch)
    assert response.status_code == 200, response.get_json()
    updated = response.get_json()["data"]
    [event] = log.new()
    assert_event(event, f"{name}.updated", updated, previous)
    assert event["data"] == fetch(api, path, created["id"])

    as_it_was = fetch(api, path, created["id"])
    assert api.delete(f"/{path}/{created['id']}").status_code == 204
    [event] = log.new()
    assert_event(event, f"{name}.deleted", as_it_was)


def test_put_emits_one_update_with_every_reset_field(api):
    task = api.create("tasks", title="Old", description="Notes", priority="high")
    log = EventLog(api)
    response = api.put(f"/tasks/{task['id']}", json={"title": "New"})
    assert response.status_code == 200, response.get_json()
    [event] = log.new()
    assert_event(event, "task.updated", response.get_json()["data"],
                 {"title": "Old", "description": "Notes", "priority": "high"})


def test_completion_reports_status_and_completed_at_as_they_were(api):
    task = api.create("tasks", title="Finish")
    log = EventLog(api)

    done = api.patch(f"/tasks/{task['id']}", json={"status": "completed"}).get_json()["data"]
    assert done["completedAt"] is not None
    [event] = log.new()
    assert_event(event, "task.updated", done, {"status": "todo", "completedAt": None})

    reopened = api.patch(f"/tasks/{task['id']}", json={"status": "todo"}).get_json()["data"]
    [event] = log.new()
    assert_event(event, "task.updated", reopened,
                 {"status": "completed", "completedAt": done["completedAt"]})


def test_reference_changes_report_the_old_reference_in_camel_case(api):
    project = api.create("projects", name="P")
    user = api.create("users", name="U", email=unique_email())
    task = api.create("tasks", title="T")
    log = EventLog(api)
    response = api.patch(f"/tasks/{task['id']}", json={"projectId": project["id"],
                                                         "assigneeId": user["id"],
                                                         "dueAt": "2030-01-01T10:00:00+02:00"})
    assert response.status_code == 200
    [event] = log.new()
    assert_event(event, "task.updated", response.get_json()["data"],
                 {"projectId": None, "assigneeId": None, "dueAt": None})
    assert event["data"]["dueAt"] == "2030-01-01T08:00:00.000Z"


# --- writes that change nothing or fail ----------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"title": "Same", "status": "todo", "priority": "medium"}],
                         ids=["empty", "same-values"])
def test_noop_patch_emits_nothing_and_keeps_the_etag(api, body):
    task = api.create("tasks", title="Same")
    before = api.get(f"/tasks/{task['id']}")
    log = EventLog(api)

    response = api.patch(f"/tasks/{task['id']}", json=body)
    assert response.status_code == 200, response.get_json()
    assert response.headers["ETag"] == before.headers["ETag"]
    assert response.get_json()["data"] == before.get_json()["data"]
    assert log.new() == []
    after = api.get(f"/tasks/{task['id']}")
    assert after.headers["ETag"] == before.headers["ETag"]
    assert after.get_json()["data"]["updatedAt"] == task["updatedAt"]


def test_noop_put_emits_nothing_and_keeps_the_etag(api):
    user = api.create("users", name="Same", email=unique_email())
    before = api.get(f"/users/{user['id']}")
    log = EventLog(api)
    response = api.put(f"/users/{user['id']}", json={"name": "Same", "email": user["email"]})
    assert response.status_code == 200
    assert response.headers["ETag"] == before.headers["ETag"]
    assert log.new() == []


def test_failing_single_writes_emit_nothing(api, other_account):
    user = api.create("users", name="Taken", email=unique_email("taken"))
    task = api.create("tasks", title="Kept")
    foreign = other_account.api.create("tasks", title="Foreign")
    etag = api.get(f"/tasks/{task['id']}").headers["ETag"]
    api.patch(f"/tasks/{task['id']}", json={"title": "Changed"})  # makes `etag` stale
    log = EventLog(api)

    assert_error(api.post("/tasks", json={"status": "todo"}), 400, "VALIDATION_FAILED")
    assert_error(api.post("/tasks", json={"title": "x", "bogus": 1}), 400, "VALIDATION_FAILED")
    assert_error(api.post("/tasks", json={"title": "x", "projectId": "prj_missing"}),
                 400, "VALIDATION_FAILED")
    assert_error(api.post("/comments", json={"taskId": foreign["id"], "body": "x"}),
                 400, "VALIDATION_FAILED")
    assert_error(api.post("/users", json={"name": "Dup", "email": user["email"].upper()}),
                 409, "CONFLICT")
    assert_error(api.patch(f"/tasks/{task['id']}", json={"status": "bogus"}), 400,
                 "VALIDATION_FAILED")
    assert_error(api.patch(f"/tasks/{task['id']}", json={"title": "Late"},
                           headers={"If-Match": etag}), 412, "PRECONDITION_FAILED")
    assert_error(api.delete(f"/tasks/{task['id']}", headers={"If-Match": etag}), 412,
                 "PRECONDITION_FAILED")
    assert_error(api.patch(f"/tasks/{foreign['id']}", json={"title": "Mine"}), 404, "NOT_FOUND")
    assert_error(api.delete(f"/tasks/{foreign['id']}"), 404, "NOT_FOUND")
    assert_error(api.delete("/tasks/tsk_00000000000000000000000000"), 404, "NOT_FOUND")

    assert log.new() == []
    assert fetch(api, "tasks", task["id"])["title"] == "Changed"
    assert [e["type"] for e in all_events(other_account.api)] == ["task.created"]


# --- cascades ------------------------------------------------------------------------------------


def test_deleting_a_task_emits_comment_deleted_for_its_comments(api):
    task = api.create("tasks", title="Parent")
    comments = [api.create("comments", taskId=task["id"], body=f"c{i}") for i in range(2)]
    other = api.create("tasks", title="Other")
    untouched = api.create("comments", taskId=other["id"], body="stays")
    log = EventLog(api)

    assert api.delete(f"/tasks/{task['id']}").status_code == 204
    events = log.new()
    assert sorted(e["type"] for e in events) == ["comment.deleted", "comment.deleted",
                                                   "task.deleted"]
    deleted = by_data_id(events)
    for comment in comments:
        assert_event(deleted[comment["id"]], "comment.deleted", comment)
    assert_event(deleted[task["id"]], "task.deleted", task)
    assert untouched["id"] not in deleted


def test_deleting_a_user_emits_updates_for_records_that_pointed_at_it(api):
    user = api.create("users", name="Leaver", email=unique_email("leaver"))
    tasks = [api.create("tasks", title=f"T{i}", assigneeId=user["id"]) for i in range(2)]
    unassigned = api.create("tasks", title="Nobody's")
    comment = api.create("comments", taskId=unassigned["id"], authorId=user["id"], body="hi")
    log = EventLog(api)

    assert api.delete(f"/users/{user['id']}").status_code == 204
    events = log.new()
    assert sorted(e["type"] for e in events) == ["comment.updated", "task.updated",
                                                   "task.updated", "user.deleted"]
    changed = by_data_id(events)
    assert_event(changed[user["id"]], "user.deleted", user)
    for task in tasks:
        now = fetch(api, "tasks", task["id"])
        assert now["assigneeId"] is None
        assert_event(changed[task["id"]], "task.updated", now, {"assigneeId": user["id"]})
    now = fetch(api, "comments", comment["id"])
    assert_event(changed[comment["id"]], "comment.updated", now, {"authorId": user["id"]})
    assert unassigned["id"] not in changed


def test_deleting_a_project_emits_task_updated_with_the_old_project(api):
    project = api.create("projects", name="Gone")
    task = api.create("tasks", title="Orphan", projectId=project["id"])
    log = EventLog(api)
    assert api.delete(f"/projects/{project['id']}").status_code == 204
    changed = by_data_id(log.new())
    assert set(changed) == {project["id"], task["id"]}
    assert_event(changed[project["id"]], "project.deleted", project)
    assert_event(changed[task["id"]], "task.updated", fetch(api, "tasks", task["id"]),
                 {"projectId": project["id"]})


def test_cascade_etag_changes_with_its_event(api):
    user = api.create("users", name="Leaver", email=unique_email("leaver"))
    task = api.create("tasks", title="T", assigneeId=user["id"])
    before = api.get(f"/tasks/{task['id']}").headers["ETag"]
    api.delete(f"/users/{user['id']}")
    assert api.get(f"/tasks/{task['id']}").headers["ETag"] != before


# --- bulk writes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(CASES))
def test_bulk_import_emits_one_created_event_per_record(api, path):
    make = CASES[path][0]
    parent = api.create("tasks", title="Parent")["id"]
    log = EventLog(api)
    response = api.post(f"/import/{path}", json={"items": [make(parent) for _ in range(3)]})
    assert response.status_code == 201, response.get_json()
    items = response.get_json()["data"]["items"]
    events = log.new()
    assert len(events) == 3
    created = by_data_id(events)
    assert set(created) == {item["id"] for item in items}
    for item in items:
        assert_event(created[item["id"]], f"{ENTITY[path]}.created", item)
        assert created[item["id"]]["data"] == fetch(api, path, item["id"])


def test_partial_bulk_import_emits_only_for_written_records(api):
    log = EventLog(api)
    response = api.post("/import/tasks", json={
        "items": [{"title": "A"}, {"title": "B", "status": "bogus"}, {"title": "C"}],
        "options": {"skipInvalid": True}})
    assert response.status_code == 207
    items = response.get_json()["data"]["items"]
    events = log.new()
    assert [e["data"]["title"] for e in events] == ["A", "C"]
    assert {e["data"]["id"] for e in events} == {i["id"] for i in items}


@pytest.mark.parametrize("items", [
    [{"title": "A"}, {"title": ""}],
    [{"title": "A"}, {"title": "B", "projectId": "prj_00000000000000000000000000"}],
], ids=["invalid-value", "missing-reference"])
def test_all_or_nothing_bulk_import_failure_emits_nothing(api, items):
    log = EventLog(api)
    assert_error(api.post("/import/tasks", json={"items": items}), 400, "VALIDATION_FAILED")
    assert log.new() == []
    assert api.get("/tasks").get_json()["meta"]["total"] == 0


def test_all_or_nothing_bulk_import_unique_collision_emits_nothing(api):
    email = unique_email()
    log = EventLog(api)
    response = api.post("/import/users", json={"items": [
        {"name": "A", "email": email}, {"name": "B", "email": email}]})
    assert_error(response, 400, "VALIDATION_FAILED")
    assert log.new() == []


def test_bulk_update_emits_one_event_per_changed_record(api):
    tasks = [api.create("tasks", title=f"T{i}") for i in range(3)]
    log = EventLog(api)
    response = api.patch("/tasks/bulk", json={"updates": [
        {"id": tasks[0]["id"], "status": "in_progress"},
        {"id": tasks[1]["id"], "title": "T1"},  # the same value: nothing changes
        {"id": tasks[2]["id"], "title": "Renamed", "priority": "high"},
    ]})
    assert response.status_code == 200, response.get_json()
    events = log.new()
    assert len(events) == 2
    changed = by_data_id(events)
    assert_event(changed[tasks[0]["id"]], "task.updated", fetch(api, "tasks", tasks[0]["id"]),
                 {"status": "todo"})
    assert_event(changed[tasks[2]["id"]], "task.updated", fetch(api, "tasks", tasks[2]["id"]),
                 {"title": "T2", "priority": "medium"})
    assert fetch(api, "tasks", tasks[1]["id"])["updatedAt"] == tasks[1]["updatedAt"]


def test_partial_bulk_update_emits_only_for_written_records(api, other_account):
    mine = api.create("tasks", title="Mine")
    foreign = other_account.api.create("tasks", title="Foreign")
    log = EventLog(api)
    response = api.patch("/tasks/bulk", json={
        "updates": [{"id": foreign["id"], "title": "Stolen"}, {"id": mine["id"], "title": "Ok"},
                    {"id": mine["id"] + "x", "title": "Nope"}],
        "options": {"skipInvalid": True}})
    assert response.status_code == 207, response.get_json()
    [event] = log.new()
    assert_event(event, "task.updated", fetch(api, "tasks", mine["id"]), {"title": "Mine"})
    assert [e["type"] for e in all_events(other_account.api)] == ["task.created"]


@pytest.mark.parametrize("second", [
    {"status": "bogus"},
    {"id": "tsk_00000000000000000000000000", "title": "Ghost"},
], ids=["invalid-value", "unknown-id"])
def test_all_or_nothing_bulk_update_failure_emits_nothing(api, second):
    task = api.create("tasks", title="Before")
    other = api.create("tasks", title="Other")
    log = EventLog(api)
    response = api.patch("/tasks/bulk", json={"updates": [
        {"id": task["id"], "title": "After"}, {"id": other["id"], **second}]})
    assert response.status_code == 400, response.get_json()
    assert log.new() == []
    assert fetch(api, "tasks", task["id"])["title"] == "Before"


def test_bulk_delete_emits_deleted_events_with_the_records_and_their_cascades(api):
    tasks = [api.create("tasks", title=f"T{i}") for i in range(3)]
    comment = api.create("comments", taskId=tasks[0]["id"], body="goes too")
    log = EventLog(api)
    missing = "tsk_00000000000000000000000000"
    response = api.post("/tasks/bulk-delete", json={"ids": [tasks[0]["id"], tasks[1]["id"],
                                                            missing]})
    assert response.status_code == 200
    assert response.get_json()["data"] == {"deleted": 2, "notFound": [missing]}
    events = log.new()
    assert sorted(e["type"] for e in events) == ["comment.deleted", "task.deleted",
                                                   "task.deleted"]
    deleted = by_data_id(events)
    assert_event(deleted[tasks[0]["id"]], "task.deleted", tasks[0])
    assert_event(deleted[tasks[1]["id"]], "task.deleted", tasks[1])
    assert_event(deleted[comment["id"]], "comment.deleted", comment)


def test_bulk_delete_of_nothing_found_emits_nothing(api, other_account):
    foreign = other_account.api.create("tasks", title="Foreign")
    log = EventLog(api)
    response = api.post("/tasks/bulk-delete", json={"ids": [foreign["id"]]})
    assert response.status_code == 200
    assert response.get_json()["data"] == {"deleted": 0, "notFound": [foreign["id"]]}
    assert log.new() == []
    assert fetch(other_account.api, "tasks", foreign["id"])["title"] == "Foreign"


def test_bulk_delete_of_users_emits_updates_for_their_tasks(api):
    users = [api.create("users", name=f"U{i}", email=unique_email()) for i in range(2)]
    task = api.create("tasks", title="T", assigneeId=users[1]["id"])
    log = EventLog(api)
    assert api.post("/users/bulk-delete", json={"ids": [u["id"] for u in users]}).status_code == 200
    changed = by_data_id(log.new())
    assert set(changed) == {users[0]["id"], users[1]["id"], task["id"]}
    assert_event(changed[task["id"]], "task.updated", fetch(api, "tasks", task["id"]),
                 {"assigneeId": users[1]["id"]})


# --- batch requests ------------------------------------------------------------------------------


def batch(api, requests: list[dict], atomic: bool):
    response = api.post("/batch", json={"atomic": atomic, "requests": requests})
    assert response.status_code == 200, response.get_json()
    return [r["status"] for r in response.get_json()["responses"]]


def test_atomic_batch_emits_the_events_of_its_writes(api):
    log = EventLog(api)
    statuses = batch(api, [
        {"id": "p", "method": "POST", "path": "/projects", "body": {"name": "P"}},
        {"id": "t", "method": "POST", "path": "/tasks",
         "body": {"title": "T", "projectId": "{{p.body.data.id}}"}},
        {"id": "u", "method": "PATCH", "path": "/tasks/{{t.body.data.id}}",
         "body": {"status": "in_progress"}},
    ], atomic=True)
    assert statuses == [201, 201, 200]
    events = log.new()
    assert [e["type"] for e in events] == ["project.created", "task.created", "task.updated"]
    assert events[2]["previousAttributes"] == {"status": "todo"}


def test_failed_atomic_batch_emits_nothing(api):
    task = api.create("tasks", title="Kept")
    log = EventLog(api)
    statuses = batch(api, [
        {"id": "a", "method": "POST", "path": "/tasks", "body": {"title": "Rolled back"}},
        {"id": "b", "method": "PATCH", "path": f"/tasks/{task['id']}", "body": {"title": "No"}},
        {"id": "c", "method": "POST", "path": "/tasks", "body": {"status": "bogus"}},
    ], atomic=True)
    assert statuses[2] == 400 and statuses[:2] == [424, 424]
    assert log.new() == []
    assert fetch(api, "tasks", task["id"])["title"] == "Kept"
    assert api.get("/tasks").get_json()["meta"]["total"] == 1


def test_non_atomic_batch_emits_only_for_the_sub_requests_that_wrote(api):
    log = EventLog(api)
    statuses = batch(api, [
        {"id": "a", "method": "POST", "path": "/tasks", "body": {"title": "Written"}},
        {"id": "b", "method": "POST", "path": "/tasks", "body": {"status": "bogus"}},
        {"id": "c", "method": "PATCH", "path": "/tasks/{{b.body.data.id}}",
         "body": {"title": "x"}, "dependsOn": ["b"]},
    ], atomic=False)
    assert statuses == [201, 400, 424]
    [event] = log.new()
    assert event["type"] == "task.created" and event["data"]["title"] == "Written"


# --- GET /events ---------------------------------------------------------------------------------


def test_events_list_newest_first_with_meta(api):
    project = api.create("projects", name="P")
    task = api.create("tasks", title="T", projectId=project["id"])
    api.patch(f"/tasks/{task['id']}", json={"status": "completed"})
    api.delete(f"/tasks/{task['id']}")

    response = api.get("/events")
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert [e["type"] for e in body["data"]] == ["task.deleted", "task.updated", "task.created",
                                                 "project.created"]
    ids = [e["id"] for e in body["data"]]
    assert ids == sorted(ids, reverse=True)
    stamps = [e["createdAt"] for e in body["data"]]
    assert stamps == sorted(stamps, reverse=True)
    meta = body["meta"]
    assert meta["total"] == 4
    assert meta["limit"] == 20
    assert meta["hasNextPage"] is False
    assert meta["hasPreviousPage"] is False
    assert meta["nextCursor"] is None


def test_events_type_filter_takes_a_comma_list(api):
    project = api.create("projects", name="P")
    task = api.create("tasks", title="T")
    api.patch(f"/tasks/{task['id']}", json={"title": "T2"})
    api.patch(f"/projects/{project['id']}", json={"name": "P2"})

    one = api.get("/events", query_string={"type": "task.updated"}).get_json()
    assert [(e["type"], e["data"]["id"]) for e in one["data"]] == [("task.updated", task["id"])]
    assert one["meta"]["total"] == 1

    two = api.get("/events", query_string={"type": "project.created, task.created"}).get_json()
    assert [e["type"] for e in two["data"]] == ["task.created", "project.created"]
    assert two["meta"]["total"] == 2

    none = api.get("/events", query_string={"type": "comment.deleted"}).get_json()
    assert none["data"] == [] and none["meta"]["total"] == 0


def test_events_cursor_pagination_walks_every_event_once(api):
    response = api.post("/import/tasks", json={"items": [{"title": f"T{i}"} for i in range(23)]})
    assert response.status_code == 201
    everything = [e["id"] for e in all_events(api)]
    assert len(everything) == 23

    walked, cursor, pages = [], None, 0
    while True:
        query = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        body = api.get("/events", query_string=query).get_json()
        pages += 1
        meta = body["meta"]
        assert meta["total"] == (23 if pages == 1 else 24)  # one event is added after page 1
        assert meta["limit"] == 5
        assert meta["hasPreviousPage"] is (cursor is not None)
        walked += [e["id"] for e in body["data"]]
        if pages == 1:
            api.create("tasks", title="Newer than the walk")  # must not shift later pages
        cursor = meta["nextCursor"]
        assert meta["hasNextPage"] is (cursor is not None)
        if cursor is None:
            assert len(body["data"]) == 3
            break
        assert len(body["data"]) == 5
    assert pages == 5
    assert walked == everything


def test_events_type_filter_pages_too(api):
    api.post("/import/projects", json={"items": [{"name": f"P{i}"} for i in range(4)]})
    api.post("/import/tasks", json={"items": [{"title": f"T{i}"} for i in range(7)]})
    tasks = all_events(api, type="task.created", limit=3)
    assert len(tasks) == 7
    assert {e["type"] for e in tasks} == {"task.created"}


@pytest.mark.parametrize("query,field", [
    ({"limit": "0"}, "limit"),
    ({"limit": "101"}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"limit": "\u00b2"}, "limit"),  # "²" is a digit to str.isdigit, not to int()
    ({"cursor": "not-a-cursor"}, "cursor"),
    ({"cursor": "evt_\x00"}, "cursor"),
    ({"type": "task.exploded"}, "type"),
    ({"type": "task.created,nope"}, "type"),
    ({"page": "2"}, "page"),
    ({"sort": "createdAt"}, "sort"),
])
def test_events_bad_query_parameters_answer_400(api, query, field):
    body = assert_error(api.get("/events", query_string=query), 400, "VALIDATION_FAILED")
    assert field in body["details"]


def test_events_limit_bounds_are_inclusive(api):
    api.post("/import/tasks", json={"items": [{"title": f"T{i}"} for i in range(3)]})
    assert len(api.get("/events?limit=1").get_json()["data"]) == 1
    assert len(api.get("/events?limit=100").get_json()["data"]) == 3


def test_event_by_id(api):
    task = api.create("tasks", title="T")
    [listed] = api.get("/events").get_json()["data"]
    response = api.get(f"/events/{listed['id']}")
    assert response.status_code == 200
    assert response.get_json()["data"] == listed
    assert_event(listed, "task.created", task)


@pytest.mark.parametrize("raw_id", [MISSING_EVENT, "nope", "evt_%00", "tsk_0"])
def test_unknown_event_id_answers_404(api, raw_id):
    assert_error(api.get(f"/events/{raw_id}"), 404, "NOT_FOUND")


def test_another_accounts_events_never_appear(api, other_account):
    mine = api.create("tasks", title="Mine")
    theirs = other_account.api.create("tasks", title="Theirs")
    [their_event] = all_events(other_account.api)
    assert their_event["data"]["id"] == theirs["id"]

    [my_event] = all_events(api)
    assert my_event["data"]["id"] == mine["id"]
    assert_error(api.get(f"/events/{their_event['id']}"), 404, "NOT_FOUND")
    assert api.get("/events", query_string={"type": "task.created"}).get_json()["meta"]["total"] == 1
    assert_error(other_account.api.get(f"/events/{my_event['id']}"), 404, "NOT_FOUND")


def test_events_need_the_read_scope(account):
    account.api.create("tasks", title="T")
    write_only = account.key("write")
    body = assert_error(write_only.get("/events"), 403, "INSUFFICIENT_SCOPE")
    assert body["details"]["required"] == "read"
    read = account.key("read")
    [event] = read.get("/events").get_json()["data"]
    assert read.get(f"/events/{event['id']}").status_code == 200
    assert_error(account.api.__class__(account.client, None).get("/events"), 401, "UNAUTHORIZED")


def test_events_list_is_read_only(api):
    response = api.post("/events", json={"type": "task.created"})
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
