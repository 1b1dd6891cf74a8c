"""The analytics dashboard, a custom endpoint (contract section 10, issue 8).

`GET /api/v1/analytics/dashboard` is checked against numbers worked out by hand on a fixed
data set of 40 tasks (below), whose `createdAt`, `completedAt` and `dueAt` are written
straight into the database so that durations are exact:

- `taskCompletionRate` (a percentage), `averageTimeToComplete` (seconds), `tasksByStatus`
  and `tasksByPriority` with every key present (zeros too), `overdue` (not completed and
  due in the past), `topPerformers` (at most 5, most completed first, with names);
- the `from`/`to` (on `createdAt`, offsets accepted) and `projectId` filters, alone and
  together; an empty account (rate 0, average null); another account's tasks never
  counted, not even one pointing at this account's project;
- bad query parameters → 400; the `read` scope (a write-only key gets 403, no key 401);
- the route's own rate limit declared with `api.custom.endpoint` ("120/minute"): its
  `X-RateLimit-*` headers, and the 121st request in a minute refused with 429 while the
  key's other routes still answer;
- the route is in `/api/v1/openapi.json` with its parameters and response schema, and the
  number of SQL statements it runs does not grow with the number of tasks.
"""

from datetime import datetime, timedelta

import pytest

from api.entities import ENTITIES
from api.store import db

DASHBOARD = "/analytics/dashboard"
HOUR = 3600
PAST_DUE = datetime(2020, 6, 1, 12, 0)
FUTURE_DUE = datetime(2099, 6, 1, 12, 0)

# The fixed data set: (count, status, priority, assignee, project, created_at, seconds to
# complete, due_at). Users Ann..Fay, projects P1 and P2, None for no reference.
GROUPS = [
    (6, "completed", "high", "Ann", "P1", datetime(2025, 1, 10, 8), HOUR, None),
    (5, "completed", "medium", "Bob", "P1", datetime(2025, 1, 20, 8), HOUR, None),
    (4, "completed", "low", "Cat", "P2", datetime(2025, 2, 5, 8), HOUR, None),
    (3, "completed", "medium", "Dan", "P2", datetime(2025, 2, 15, 8), HOUR, None),
    (2, "completed", "high", "Eve", None, datetime(2025, 2, 25, 8), HOUR, PAST_DUE),  # done: not overdue
    (1, "completed", "low", "Fay", "P1", datetime(2025, 3, 5, 8), HOUR, None),
    (1, "completed", "medium", None, "P2", datetime(2025, 3, 10, 8), 5800, None),
    (4, "todo", "high", "Fay", "P1", datetime(2025, 1, 15, 8), None, PAST_DUE),
    (3, "todo", "low", None, "P2", datetime(2025, 2, 10, 8), None, FUTURE_DUE),
    (3, "todo", "medium", "Ann", None, datetime(2025, 3, 15, 8), None, None),
    (2, "in_progress", "high", "Bob", "P1", datetime(2025, 2, 20, 8), None, PAST_DUE),
    (6, "in_progress", "medium", None, "P2", datetime(2025, 3, 20, 8), None, None),
]
USERS = ["Ann", "Bob", "Cat", "Dan", "Eve", "Fay"]


def set_times(task_id: str, created_at: datetime, seconds: int | None, due_at: datetime | None):
    """Write a task's timestamps straight into the database."""
    task = ENTITIES["task"].model
    completed_at = created_at + timedelta(seconds=seconds) if seconds is not None else None
    with db.connection_context():
        task.update(created_at=created_at, updated_at=created_at, completed_at=completed_at,
                    due_at=due_at).where(task.id == task_id).execute()


def load(api) -> tuple[dict, dict]:
    """Create the fixed data set; returns user ids and project ids by name."""
    users = {name: api.create("users", name=name, email=f"{name.lower()}@example.com")["id"]
             for name in USERS}
    projects = {name: api.create("projects", name=name)["id"] for name in ("P1", "P2")}
    for count, status, priority, assignee, project, created_at, seconds, due_at in GROUPS:
        items = [{"title": f"{status} {priority} {i}", "status": status, "priority": priority,
                  "assigneeId": users[assignee] if assignee else None,
                  "projectId": projects[project] if project else None} for i in range(count)]
        response = api.post("/import/tasks", json={"items": items})
        assert response.status_code == 201, response.get_json()
        for record in response.get_json()["data"]["items"]:
            set_times(record["id"], created_at, seconds, due_at)
    return users, projects


def dashboard(api, **query) -> dict:
    response = api.get(DASHBOARD, query_string=query)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True
    return body["data"]


def performers(users: dict, *pairs) -> list[dict]:
    return [{"userId": users[name], "name": name, "completed": done} for name, done in pairs]


@pytest.fixture
def loaded(api):
    users, projects = load(api)
    return api, users, projects


# --- the numbers ---------------------------------------------------------------------------------


def test_dashboard_matches_the_hand_computed_numbers(loaded):
    api, users, _ = loaded
    data = dashboard(api)
    assert set(data) == {"taskCompletionRate", "averageTimeToComplete", "tasksByStatus",
                         "tasksByPriority", "overdue", "topPerformers"}
    # 22 of 40 tasks completed.
    assert data["taskCompletionRate"] == pytest.approx(55.0)
    # 21 completed in one hour, one in 5,800 s: (21 * 3600 + 5800) / 22 = 3700.
    assert data["averageTimeToComplete"] == pytest.approx(3700.0, abs=0.001)
    assert data["tasksByStatus"] == {"todo": 10, "in_progress": 8, "completed": 22}
    assert data["tasksByPriority"] == {"low": 8, "medium": 18, "high": 14}
    # Fay's 4 todo and Bob's 2 in progress are past due; Eve's 2 past-due tasks are done.
    assert data["overdue"] == 6
    # Fay (1 completed) is sixth; the unassigned completed task counts for nobody.
    assert data["topPerformers"] == performers(users, ("Ann", 6), ("Bob", 5), ("Cat", 4),
                                               ("Dan", 3), ("Eve", 2))


def test_project_filter(loaded):
    api, users, projects = loaded
    data = dashboard(api, projectId=projects["P1"])
    # P1: Ann 6 + Bob 5 + Fay 1 completed, Fay 4 todo, Bob 2 in progress = 18 tasks.
    assert data["taskCompletionRate"] == pytest.approx(66.67)  # 12 / 18, two decimals
    assert data["averageTimeToComplete"] == pytest.approx(3600.0, abs=0.001)
    assert data["tasksByStatus"] == {"todo": 4, "in_progress": 2, "completed": 12}
    assert data["tasksByPriority"] == {"low": 1, "medium": 5, "high": 12}
    assert data["overdue"] == 6
    assert data["topPerformers"] == performers(users, ("Ann", 6), ("Bob", 5), ("Fay", 1))

    p2 = dashboard(api, projectId=projects["P2"])
    # P2: Cat 4 + Dan 3 + 1 unassigned completed, 3 todo, 6 in progress = 17 tasks.
    assert p2["tasksByStatus"] == {"todo": 3, "in_progress": 6, "completed": 8}
    assert p2["taskCompletionRate"] == pytest.approx(47.06)  # 8 / 17 = 47.0588...
    assert p2["averageTimeToComplete"] == pytest.approx(3875.0, abs=0.001)  # (7 * 3600 + 5800) / 8
    assert p2["overdue"] == 0


def test_date_filters(loaded):
    api, users, projects = loaded
    february = {"from": "2025-02-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"}
    data = dashboard(api, **february)
    # Created in February: Cat 4, Dan 3, Eve 2 completed; 3 todo (P2); Bob's 2 in progress.
    assert data["tasksByStatus"] == {"todo": 3, "in_progress": 2, "completed": 9}
    assert data["taskCompletionRate"] == pytest.approx(64.29)  # 9 / 14 = 64.2857...
    assert data["averageTimeToComplete"] == pytest.approx(3600.0, abs=0.001)
    assert data["tasksByPriority"] == {"low": 7, "medium": 3, "high": 4}
    assert data["overdue"] == 2
    assert data["topPerformers"] == performers(users, ("Cat", 4), ("Dan", 3), ("Eve", 2))

    # The same instants written with offsets.
    assert dashboard(api, **{"from": "2025-02-01T01:00:00+01:00",
                             "to": "2025-02-28T19:00:00-05:00"}) == data

    since_march = dashboard(api, **{"from": "2025-03-01T00:00:00Z"})
    # Fay 1 and the unassigned 5,800 s task completed; Ann's 3 todo; 6 in progress.
    assert since_march["tasksByStatus"] == {"todo": 3, "in_progress": 6, "completed": 2}
    assert since_march["averageTimeToComplete"] == pytest.approx(4700.0, abs=0.001)
    assert since_march["topPerformers"] == performers(users, ("Fay", 1))

    before_february = dashboard(api, to="2025-02-01T00:00:00Z")
    # Ann 6 and Bob 5 completed, Fay's 4 todo (past due).
    assert before_february["tasksByStatus"] == {"todo": 4, "in_progress": 0, "completed": 11}
    assert before_february["overdue"] == 4

    both = dashboard(api, projectId=projects["P2"], **february)
    # Cat 4 and Dan 3 completed, 3 todo.
    assert both["tasksByStatus"] == {"todo": 3, "in_progress": 0, "completed": 7}
    assert both["taskCompletionRate"] == pytest.approx(70.0)


def test_an_empty_account_has_zero_rate_and_no_average(account, other_account):
    load(other_account.api)  # someone else's tasks are not ours
    data = dashboard(account.api)
    assert data == {"taskCompletionRate": 0, "averageTimeToComplete": None,
                    "tasksByStatus": {"todo": 0, "in_progress": 0, "completed": 0},
                    "tasksByPriority": {"low": 0, "medium": 0, "high": 0},
                    "overdue": 0, "topPerformers": []}


def test_no_completed_tasks_gives_a_null_average(api):
    task = api.create("tasks", title="Open", priority="low")
    set_times(task["id"], datetime(2025, 1, 1), None, PAST_DUE)
    data = dashboard(api)
    assert data["taskCompletionRate"] == 0
    assert data["averageTimeToComplete"] is None
    assert data["tasksByStatus"] == {"todo": 1, "in_progress": 0, "completed": 0}
    assert data["tasksByPriority"] == {"low": 1, "medium": 0, "high": 0}
    assert data["overdue"] == 1


def test_another_accounts_tasks_are_never_counted(account, other_account):
    users, projects = load(account.api)
    expected = dashboard(account.api)
    expected_p1 = dashboard(account.api, projectId=projects["P1"])

    other = other_account.api
    stranger = other.create("users", name="Zed", email="zed@example.com")
    for i in range(8):
        task = other.create("tasks", title=f"Theirs {i}", status="completed", priority="high",
                            assigneeId=stranger["id"])
        set_times(task["id"], datetime(2025, 1, 12), 10, None)
    # Even a foreign task pointing at our project (written straight into the table).
    model = ENTITIES["task"].model
    with db.connection_context():
        model.update(project_id=projects["P1"]).where(model.id == task["id"]).execute()

    assert dashboard(account.api) == expected
    assert dashboard(account.api, projectId=projects["P1"]) == expected_p1
    theirs = dashboard(other)
    assert theirs["tasksByStatus"] == {"todo": 0, "in_progress": 0, "completed": 8}
    assert theirs["taskCompletionRate"] == pytest.approx(100.0)
    assert theirs["averageTimeToComplete"] == pytest.approx(10.0, abs=0.001)
    assert theirs["topPerformers"] == [{"userId": stranger["id"], "name": "Zed", "completed": 8}]
    # Our project id means nothing to them beyond the one task pointing at it.
    assert dashboard(other, projectId=projects["P1"])["tasksByStatus"]["completed"] == 1
    assert dashboard(account.api, projectId="prj_00000000000000000000000000")["tasksByStatus"] == {
        "todo": 0, "in_progress": 0, "completed": 0}


# --- requests the route refuses ----------------------------------------------------------------


@pytest.mark.parametrize("query,field", [
    ({"from": "yesterday"}, "from"),
    ({"to": "2025-13-01T00:00:00Z"}, "to"),
    ({"from": "1700000000"}, "from"),
    ({"status": "todo"}, "status"),
    ({"page": "2"}, "page"),
], ids=["from-words", "to-bad-month", "from-epoch", "unknown", "page"])
def test_bad_parameters_answer_400(api, query, field):
    response = api.get(DASHBOARD, query_string=query)
    body = response.get_json()
    assert response.status_code == 400, body
    assert (body["success"], body["code"]) == (False, "VALIDATION_FAILED")
    assert field in body["details"]


def test_the_route_needs_the_read_scope(account, client):
    assert account.key("read").get(DASHBOARD).status_code == 200
    refused = account.key("write").get(DASHBOARD)
    body = refused.get_json()
    assert refused.status_code == 403, body
    assert body["code"] == "INSUFFICIENT_SCOPE"
    assert body["details"]["required"] == "read"
    unauthenticated = client.get("/api/v1" + DASHBOARD)
    assert unauthenticated.status_code == 401
    assert unauthenticated.get_json()["code"] == "UNAUTHORIZED"
    post = account.api.post(DASHBOARD, json={})
    assert post.status_code == 405 and post.get_json()["code"] == "METHOD_NOT_ALLOWED"


# --- the custom endpoint's declaration: rate limit and OpenAPI --------------------------------------


def test_the_routes_own_rate_limit_applies(account):
    api = account.api  # its own key limit is far higher, so the route's 120/minute shows
    first = api.get(DASHBOARD)
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "120"
    assert first.headers["X-RateLimit-Remaining"] == "119"
    assert int(first.headers["X-RateLimit-Reset"]) > 0
    remaining = [int(api.get(DASHBOARD).headers["X-RateLimit-Remaining"]) for _ in range(119)]
    assert remaining == list(range(118, -1, -1))

    refused = api.get(DASHBOARD)
    body = refused.get_json()
    assert refused.status_code == 429, body
    assert body["code"] == "RATE_LIMIT_EXCEEDED"
    assert "120" in body["details"]["limit"]
    assert int(refused.headers["Retry-After"]) > 0
    # Only this route is used up: the key's other routes still answer.
    tasks = api.get("/tasks")
    assert tasks.status_code == 200
    assert tasks.headers["X-RateLimit-Limit"] != "120"
    # Another key of the same account has its own allowance.
    assert account.key("read").get(DASHBOARD).status_code == 200


def test_the_route_is_in_the_openapi_document(client):
    document = client.get("/api/v1/openapi.json").get_json()
    operation = document["paths"]["/api/v1/analytics/dashboard"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"from", "to", "projectId"}
    assert operation["summary"]
    schema_ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    envelope = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    data_ref = envelope["properties"]["data"]["$ref"]
    data = document["components"]["schemas"][data_ref.rsplit("/", 1)[1]]
    assert set(data["properties"]) == {"taskCompletionRate", "averageTimeToComplete",
                                       "tasksByStatus", "tasksByPriority", "overdue",
                                       "topPerformers"}
    assert "400" in operation["responses"]


def test_the_number_of_queries_does_not_grow_with_the_tasks(api, count_queries):
    dashboard(api)  # the key's first use does its own bookkeeping
    with count_queries() as empty:
        dashboard(api)
    load(api)
    dashboard(api)
    with count_queries() as full:
        dashboard(api)
    assert full.count == empty.count <= 10
