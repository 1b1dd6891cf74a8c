"""GraphQL (`/api/v1/graphql`): the generated schema, relations, mutations, scopes, limits.

Everything goes through the same service as REST, so records written here are
seen by REST and emit the same events; errors carry the contract's codes in
`extensions.code`.
"""

import dataclasses
import json
import time

import peewee
import pytest
from marshmallow import validate

from api.entities import ENTITIES
from api.entities.base import Entity, RecordModel, RecordSchema, Relation
from api.fields import Ref, Text
from api.graphql.schema import build_schema

# The seed's query, verbatim.
GET_TASKS = """query GetTasks {
tasks(page: 1, limit: 10, filter: { status: "todo" }) {
edges {
node {
id
title
status
assignee {
id
name
}
}
}
pageInfo {
hasNextPage
hasPreviousPage
}
}
}"""

TASKS_WITH_RELATIONS = """query($limit: Int) {
  tasks(limit: $limit) {
    edges { node { id title assignee { id name } project { id name } comments { id body } } }
    totalCount
  }
}"""


def post_json(client, payload: dict):
    """POST to the endpoint as ASCII JSON (so that lone surrogates travel as `\\ud800`)."""
    return client.post("/graphql", data=json.dumps(payload), headers={"Content-Type": "application/json"})


def gql(client, query: str, variables: dict | None = None, status: int = 200, **body) -> dict:
    """POST a GraphQL request and return its JSON (asserting the HTTP status)."""
    response = post_json(client, {"query": query, "variables": variables, **body})
    assert response.status_code == status, response.get_json()
    return response.get_json()


def data(client, query: str, variables: dict | None = None) -> dict:
    """The `data` of a request that must succeed without errors."""
    body = gql(client, query, variables)
    assert "errors" not in body, body["errors"]
    return body["data"]


def only_error(body: dict) -> dict:
    assert len(body["errors"]) == 1, body["errors"]
    return body["errors"][0]


def import_items(api, path: str, items: list[dict]) -> list[dict]:
    response = api.post(f"/import/{path}", json={"items": items})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["items"]


def settings_override(monkeypatch, app, **changes) -> None:
    monkeypatch.setitem(app.config, "QUIVER", dataclasses.replace(app.config["QUIVER"], **changes))


# --- queries ----------------------------------------------------------------------------------


def test_seed_get_tasks_query(api):
    ann = api.create("users", name="Ann", email="ann@example.com")
    todo = [api.create("tasks", title=f"todo {i}", assigneeId=ann["id"]) for i in range(3)]
    api.create("tasks", title="started", status="in_progress")
    unassigned = api.create("tasks", title="unassigned")
    tasks = data(api, GET_TASKS)["tasks"]
    nodes = [edge["node"] for edge in tasks["edges"]]
    assert {n["id"] for n in nodes} == {t["id"] for t in todo} | {unassigned["id"]}
    assert all(n["status"] == "todo" for n in nodes)
    by_id = {n["id"]: n for n in nodes}
    assert by_id[todo[0]["id"]]["assignee"] == {"id": ann["id"], "name": "Ann"}
    assert by_id[unassigned["id"]]["assignee"] is None
    assert tasks["pageInfo"] == {"hasNextPage": False, "hasPreviousPage": False}


def test_list_matches_rest_order_pages_and_total(api):
    import_items(api, "tasks", [{"title": f"task {i:02}", "priority": ["low", "high"][i % 2]}
                                for i in range(25)])
    rest = api.get("/tasks?limit=10&page=2&sort=-priority,title").get_json()
    query = """{ tasks(page: 2, limit: 10, sort: "-priority,title") {
        edges { node { id } } totalCount pageInfo { hasNextPage hasPreviousPage } } }"""
    tasks = data(api, query)["tasks"]
    assert [e["node"]["id"] for e in tasks["edges"]] == [t["id"] for t in rest["data"]]
    assert tasks["totalCount"] == 25
    assert tasks["pageInfo"] == {"hasNextPage": True, "hasPreviousPage": True}
    as_list = data(api, query.replace('"-priority,title"', '["-priority", "title"]'))["tasks"]
    assert as_list["edges"] == tasks["edges"]


def test_cursor_pagination_walks_every_record_once(api):
    import_items(api, "tasks", [{"title": f"task {i}"} for i in range(7)])
    query = """query($cursor: String) { tasks(limit: 3, cursor: $cursor) {
        edges { node { id } } pageInfo { hasNextPage endCursor } } }"""
    seen, cursor = [], None
    for _ in range(3):
        page = data(api, query, {"cursor": cursor})["tasks"]
        seen += [e["node"]["id"] for e in page["edges"]]
        cursor = page["pageInfo"]["endCursor"]
    assert page["pageInfo"]["hasNextPage"] is False
    assert len(seen) == len(set(seen)) == 7


def test_filters_mirror_the_rest_operators(api):
    ann = api.create("users", name="Ann", email="ann@example.com")
    import_items(api, "tasks", [
        {"title": "Write invoice", "priority": "high", "assigneeId": ann["id"],
         "dueAt": "2025-01-10T00:00:00Z"},
        {"title": "Pay INVOICE", "priority": "low", "dueAt": "2025-03-01T00:00:00Z"},
        {"title": "Call", "priority": "medium", "status": "completed"},
    ])
    cases = [
        ("priorityIn: [\"high\", \"medium\"]", "priority[in]=high,medium"),
        ("priorityNe: \"high\"", "priority[ne]=high"),
        ("priorityGte: \"medium\"", "priority[gte]=medium"),
        ("titleContains: \"invoice\"", "title[contains]=invoice"),
        ("assigneeIdIsnull: false", "assigneeId[isnull]=false"),
        (f"assigneeId: \"{ann['id']}\"", f"assigneeId={ann['id']}"),
        ("dueAtLt: \"2025-02-01T00:00:00Z\"", "dueAt[lt]=2025-02-01T00:00:00Z"),
        ("statusNin: [\"completed\"], dueAtIsnull: false", "status[nin]=completed&dueAt[isnull]=false"),
    ]
    for graphql_filter, rest_query in cases:
        rest = {t["id"] for t in api.get(f"/tasks?{rest_query}").get_json()["data"]}
        found = data(api, f"{{ tasks(filter: {{{graphql_filter}}}) {{ edges {{ node {{ id }} }} }} }}")
        assert {e["node"]["id"] for e in found["tasks"]["edges"]} == rest, graphql_filter
        assert rest


def test_search_argument_is_rest_q(api):
    api.create("tasks", title="Quarterly report")
    api.create("tasks", title="Lunch")
    found = data(api, '{ tasks(q: "REPORT") { edges { node { title } } } }')
    assert [e["node"]["title"] for e in found["tasks"]["edges"]] == ["Quarterly report"]


def test_bad_list_arguments_are_validation_errors_with_paths(api):
    body = gql(api, '{ tasks(limit: 500, sort: "nope", filter: {status: "nope", priorityIn: []}) '
                    "{ totalCount } }")
    error = only_error(body)
    assert body["data"] is None
    assert error["path"] == ["tasks"]
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert set(error["extensions"]["details"]) == {"limit", "sort", "filter.status",
                                                   "filter.priorityIn"}


def test_single_record_by_id(api):
    task = api.create("tasks", title="One", dueAt="2025-01-15T10:00:00+02:00")
    found = data(api, "query($id: ID!) { task(id: $id) { id title status priority dueAt createdAt } }",
                 {"id": task["id"]})["task"]
    assert found == {k: task[k] for k in ("id", "title", "status", "priority", "dueAt", "createdAt")}
    assert found["dueAt"] == "2025-01-15T08:00:00.000Z"


def test_unknown_id_is_null_with_not_found(api):
    body = gql(api, '{ task(id: "tsk_nope") { id } }')
    assert body["data"] == {"task": None}
    error = only_error(body)
    assert error["path"] == ["task"] and error["extensions"]["code"] == "NOT_FOUND"


# --- relations --------------------------------------------------------------------------------


def test_relations_resolve_both_ways(api):
    ann = api.create("users", name="Ann", email="ann@example.com")
    bob = api.create("users", name="Bob", email="bob@example.com")
    project = api.create("projects", name="Launch")
    task = api.create("tasks", title="Ship", assigneeId=ann["id"], projectId=project["id"])
    other = api.create("tasks", title="Test", assigneeId=ann["id"])
    first = api.create("comments", taskId=task["id"], authorId=bob["id"], body="first")
    second = api.create("comments", taskId=task["id"], body="second")

    found = data(api, """query($id: ID!) { task(id: $id) {
        assignee { name } project { name } comments(sort: "createdAt") { body author { name } } } }""",
                 {"id": task["id"]})["task"]
    assert found == {"assignee": {"name": "Ann"}, "project": {"name": "Launch"},
                     "comments": [{"body": "first", "author": {"name": "Bob"}},
                                  {"body": "second", "author": None}]}

    query = """{ projects { edges { node { tasks { id } } } }
                 users(sort: "name") { edges { node { name assignedTasks(sort: "title") { title }
                                                      authoredComments { id } } } }
                 comments(sort: "createdAt") { edges { node { task { id } } } } }"""
    result = data(api, query)
    assert result["projects"]["edges"][0]["node"]["tasks"] == [{"id": task["id"]}]
    users = [e["node"] for e in result["users"]["edges"]]
    assert users == [
        {"name": "Ann", "assignedTasks": [{"title": "Ship"}, {"title": "Test"}], "authoredComments": []},
        {"name": "Bob", "assignedTasks": [], "authoredComments": [{"id": first["id"]}]}]
    assert [e["node"]["task"]["id"] for e in result["comments"]["edges"]] == [task["id"]] * 2
    assert other["id"] and second["id"]


def test_reverse_relations_take_filter_sort_and_a_limit_per_parent(api):
    tasks = import_items(api, "tasks", [{"title": f"task {i}"} for i in range(3)])
    import_items(api, "comments", [{"taskId": t["id"], "body": f"{t['title']} / {n}"}
                                   for t in tasks for n in range(4)])
    query = """{ tasks(sort: "title") { edges { node {
        latest: comments(limit: 2, sort: "-createdAt") { body }
        matching: comments(filter: {bodyContains: "/ 3"}) { body } } } } }"""
    nodes = [e["node"] for e in data(api, query)["tasks"]["edges"]]
    assert [n["latest"] for n in nodes] == [
        [{"body": f"task {i} / 3"}, {"body": f"task {i} / 2"}] for i in range(3)]
    assert [n["matching"] for n in nodes] == [[{"body": f"task {i} / 3"}] for i in range(3)]


def test_relation_query_count_does_not_grow_with_the_page(api, count_queries):
    users = import_items(api, "users", [{"name": f"user {i}", "email": f"u{i}@example.com"}
                                        for i in range(5)])
    projects = import_items(api, "projects", [{"name": f"project {i}"} for i in range(5)])

    def add_tasks(n: int, offset: int) -> None:
        tasks = import_items(api, "tasks", [
            {"title": f"task {offset + i}", "assigneeId": users[i % 5]["id"],
             "projectId": projects[i % 5]["id"]} for i in range(n)])
        import_items(api, "comments", [{"taskId": t["id"], "body": "hi", "authorId": users[0]["id"]}
                                       for t in tasks for _ in range(2)])

    def run(limit: int) -> int:
        with count_queries() as counter:
            tasks = data(api, TASKS_WITH_RELATIONS, {"limit": limit})["tasks"]
        nodes = [e["node"] for e in tasks["edges"]]
        assert len(nodes) == limit
        assert all(n["assignee"] and n["project"] and len(n["comments"]) == 2 for n in nodes)
        return counter.count

    add_tasks(5, 0)
    run(5)  # warm-up: the key's lastUsedAt is written once a minute at most
    small = run(5)
    add_tasks(45, 5)
    large = run(50)
    assert large == small
    assert small <= 8


# --- mutations --------------------------------------------------------------------------------


def events_of(api, event_type: str) -> list[dict]:
    return api.get(f"/events?type={event_type}").get_json()["data"]


def test_create_update_delete_are_seen_by_rest_and_emit_events(api):
    ann = api.create("users", name="Ann", email="ann@example.com")
    created = data(api, """mutation($input: CreateTaskInput!) {
        createTask(input: $input) { id title status priority assignee { name } } }""",
                   {"input": {"title": "Ship", "priority": "high", "assigneeId": ann["id"]}})["createTask"]
    assert created["assignee"] == {"name": "Ann"} and created["status"] == "todo"
    rest = api.get(f"/tasks/{created['id']}").get_json()["data"]
    assert rest["title"] == "Ship" and rest["priority"] == "high"
    assert [e["data"]["id"] for e in events_of(api, "task.created")] == [created["id"]]

    updated = data(api, """mutation($id: ID!) {
        updateTask(id: $id, input: {status: "completed", assigneeId: null}) {
            status completedAt assigneeId } }""", {"id": created["id"]})["updateTask"]
    assert updated["status"] == "completed" and updated["completedAt"] and updated["assigneeId"] is None
    rest = api.get(f"/tasks/{created['id']}").get_json()["data"]
    assert rest["status"] == "completed" and rest["assigneeId"] is None
    [event] = events_of(api, "task.updated")
    assert event["previousAttributes"]["status"] == "todo"
    assert event["previousAttributes"]["assigneeId"] == ann["id"]

    api.create("comments", taskId=created["id"], body="bye")
    assert data(api, "mutation($id: ID!) { deleteTask(id: $id) }", {"id": created["id"]}) == {
        "deleteTask": True}
    assert api.get(f"/tasks/{created['id']}").status_code == 404
    assert [e["data"]["id"] for e in events_of(api, "task.deleted")] == [created["id"]]
    assert len(events_of(api, "comment.deleted")) == 1


def test_update_with_an_empty_input_changes_nothing(api):
    task = api.create("tasks", title="Same")
    found = data(api, 'mutation($id: ID!) { updateTask(id: $id, input: {}) { title updatedAt } }',
                 {"id": task["id"]})["updateTask"]
    assert found == {"title": "Same", "updatedAt": task["updatedAt"]}
    assert events_of(api, "task.updated") == []


def test_validation_errors_have_path_code_and_field_details(api):
    body = gql(api, 'mutation { createTask(input: {title: "", status: "nope"}) { id } }')
    error = only_error(body)
    assert body["data"] is None
    assert error["path"] == ["createTask"]
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert set(error["extensions"]["details"]) == {"title", "status"}
    assert error["extensions"]["details"]["status"] == ["Must be one of: todo, in_progress, completed."]

    error = only_error(gql(api, 'mutation { createTask(input: {title: "x", assigneeId: "usr_nope"}) '
                                "{ id } }"))
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert list(error["extensions"]["details"]) == ["assigneeId"]

    task = api.create("tasks", title="Keep")
    error = only_error(gql(api, 'mutation($id: ID!) { updateTask(id: $id, input: {title: null}) '
                                "{ id } }", {"id": task["id"]}))
    assert error["path"] == ["updateTask"] and list(error["extensions"]["details"]) == ["title"]
    assert api.get(f"/tasks/{task['id']}").get_json()["data"]["title"] == "Keep"
    assert events_of(api, "task.created") and not events_of(api, "task.updated")


def test_unique_collision_is_conflict(api):
    api.create("users", name="Ann", email="ann@example.com")
    error = only_error(gql(api, 'mutation { createUser(input: {name: "A", email: "ANN@example.com"}) '
                                "{ id } }"))
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["details"] == {"email": ["Already in use."]}


def test_an_input_missing_a_required_field_is_refused_before_running(api):
    body = gql(api, 'mutation { createTask(input: {status: "todo"}) { id } }', status=400)
    assert only_error(body)["extensions"]["code"] == "VALIDATION_FAILED"
    assert "data" not in body
    assert api.get("/tasks").get_json()["data"] == []


def test_several_mutations_run_in_order(api):
    result = data(api, """mutation { a: createProject(input: {name: "A"}) { id }
                                      b: createProject(input: {name: "B"}) { id } }""")
    names = [p["name"] for p in api.get("/projects?sort=createdAt").get_json()["data"]]
    assert names == ["A", "B"] and result["a"]["id"] != result["b"]["id"]


# --- scopes and accounts ----------------------------------------------------------------------


def test_read_only_key_cannot_mutate(account):
    reader = account.key("read")
    body = gql(reader, 'mutation { createTask(input: {title: "No"}) { id } }')
    assert body["data"] is None
    error = only_error(body)
    assert error["extensions"] == {"code": "INSUFFICIENT_SCOPE", "details": {"required": "write"}}
    assert account.api.get("/tasks").get_json()["data"] == []
    assert data(reader, "{ tasks { totalCount } }") == {"tasks": {"totalCount": 0}}


def test_write_only_key_can_mutate_but_not_read(account):
    writer = account.key("write")
    error = only_error(gql(writer, "{ tasks { totalCount } }"))
    assert error["extensions"] == {"code": "INSUFFICIENT_SCOPE", "details": {"required": "read"}}
    created = data(writer, 'mutation { createTask(input: {title: "Yes"}) { id title } }')["createTask"]
    assert created["title"] == "Yes"
    project = account.api.create("projects", name="Secret")
    body = gql(writer, """mutation($id: ID!, $project: ID!) {
        updateTask(id: $id, input: {projectId: $project}) { id project { name } } }""",
               {"id": created["id"], "project": project["id"]})
    assert body["data"] == {"updateTask": {"id": created["id"], "project": None}}
    error = only_error(body)
    assert error["path"] == ["updateTask", "project"]
    assert error["extensions"]["code"] == "INSUFFICIENT_SCOPE"


def test_no_key_is_401_in_the_rest_envelope(client):
    response = client.post("/api/v1/graphql", json={"query": "{ tasks { totalCount } }"})
    assert response.status_code == 401
    assert response.get_json()["code"] == "UNAUTHORIZED"


def test_accounts_are_isolated(api, other_account):
    theirs = other_account.api.create("tasks", title="Theirs")
    their_user = other_account.api.create("users", name="Eve", email="eve@example.com")
    mine = api.create("tasks", title="Mine")

    body = gql(api, "query($id: ID!) { task(id: $id) { id title } }", {"id": theirs["id"]})
    assert body["data"] == {"task": None}
    assert only_error(body)["extensions"]["code"] == "NOT_FOUND"
    tasks = data(api, "{ tasks { edges { node { id } } totalCount } }")["tasks"]
    assert tasks == {"edges": [{"node": {"id": mine["id"]}}], "totalCount": 1}

    for mutation in ('updateTask(id: $id, input: {title: "Mine now"}) { id }', "deleteTask(id: $id)"):
        body = gql(api, f"mutation($id: ID!) {{ {mutation} }}", {"id": theirs["id"]})
        assert body["data"] is None
        assert only_error(body)["extensions"]["code"] == "NOT_FOUND"
    assert other_account.api.get(f"/tasks/{theirs['id']}").get_json()["data"]["title"] == "Theirs"

    error = only_error(gql(api, """mutation($user: ID!) {
        createTask(input: {title: "x", assigneeId: $user}) { id } }""", {"user": their_user["id"]}))
    assert list(error["extensions"]["details"]) == ["assigneeId"]


# --- protection -------------------------------------------------------------------------------


def test_depth_limit(api, app, monkeypatch):
    eight = ("{ tasks(limit: 1) { edges { node { project { tasks(limit: 1) { assignee { "
             "assignedTasks(limit: 1) { id } } } } } } } }")
    assert data(api, eight) == {"tasks": {"edges": []}}
    nine = eight.replace("{ id }", "{ project { id } }")
    body = gql(api, nine, status=400)
    error = only_error(body)
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert "9 levels deep" in error["message"]
    with_fragment = ("query { tasks(limit: 1) { edges { node { ...Deep } } } } "
                     "fragment Deep on Task { project { tasks(limit: 1) { assignee { "
                     "assignedTasks(limit: 1) { project { id } } } } } }")
    assert "9 levels deep" in only_error(gql(api, with_fragment, status=400))["message"]
    settings_override(monkeypatch, app, graphql_max_depth=3)
    gql(api, "{ tasks { edges { node { id } } } }", status=400)


def test_cost_limit_counts_list_limits(api, app, monkeypatch):
    wide = "{ tasks(limit: 100) { edges { node { comments(limit: 100) { id } } } } }"
    error = only_error(gql(api, wide, status=400))
    assert error["extensions"]["code"] == "VALIDATION_FAILED"
    assert "costs 10301" in error["message"]
    by_variable = "query($n: Int) { tasks(limit: 100) { edges { node { comments(limit: $n) { id } } } } }"
    gql(api, by_variable, {"n": 100}, status=400)
    assert data(api, by_variable, {"n": 10}) == {"tasks": {"edges": []}}
    settings_override(monkeypatch, app, graphql_max_cost=50)
    gql(api, GET_TASKS, status=400)


def test_repeated_fragments_are_measured_once(api):
    levels = ["fragment F0 on Task { id }"] + [
        f"fragment F{i} on Task {{ {' '.join(f'a{j}: id' for j in range(3))} ...F{i - 1} ...F{i - 1} }}"
        for i in range(1, 30)]
    query = "{ task(id: \"tsk_nope\") { ...F29 } } " + " ".join(levels)
    started = time.perf_counter()
    error = only_error(gql(api, query, status=400))
    assert time.perf_counter() - started < 2
    # F0 costs 1 and Fi 3 + 2 × F(i-1), so F29 costs 2^31 - 3, plus 1 for `task`.
    assert error["message"].startswith(f"The query costs {2 ** 31 - 2};")


def test_introspection_is_on_unless_switched_off(api, app, monkeypatch):
    query = "{ __schema { queryType { name } } }"
    assert data(api, query) == {"__schema": {"queryType": {"name": "Query"}}}
    settings_override(monkeypatch, app, graphql_introspection=False)
    errors = gql(api, query, status=400)["errors"]
    assert "introspection has been disabled" in errors[0]["message"]
    assert {e["extensions"]["code"] for e in errors} == {"VALIDATION_FAILED"}
    assert data(api, "{ __typename }") == {"__typename": "Query"}


def test_query_size_limit(api, app, monkeypatch):
    settings_override(monkeypatch, app, graphql_max_query_bytes=100)
    body = gql(api, "{ tasks { totalCount } }" + " " * 100, status=413)
    assert only_error(body)["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize("query, code", [
    ("{ tasks { edges { node { id ", "BAD_REQUEST"),
    ("{ tasks { nope } }", "VALIDATION_FAILED"),
    ("{ tasks(limit: \"ten\") { totalCount } }", "VALIDATION_FAILED"),
    ("subscription { tasks { totalCount } }", "VALIDATION_FAILED"),
    ("{" + "a{" * 5000 + "}" * 5001, "BAD_REQUEST"),
    ("{ tasks { totalCount } }\x00", "BAD_REQUEST"),
    ("{ tasks { totalCount } } \ud800", "BAD_REQUEST"),
])
def test_malformed_queries_are_graphql_errors_never_500(api, query, code):
    body = gql(api, query, status=400)
    assert only_error(body)["extensions"]["code"] == code


def test_nul_in_a_string_argument_is_just_not_found(api):
    body = gql(api, '{ task(id: "tsk_\\u0000") { id } }')
    assert only_error(body)["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("body", [
    {"query": ""},
    {"query": 5},
    {"variables": {}},
    {"query": "{ __typename }", "variables": []},
    {"query": "{ __typename }", "operationName": 3},
    {"query": "{ __typename }", "surprise": 1},
    {"query": "query($s: String) { __typename }", "variables": {"s": "\ud800"}},
])
def test_bodies_that_are_not_graphql_requests_are_400(api, body):
    response = post_json(api, body)
    assert response.status_code == 400
    assert only_error(response.get_json())["extensions"]["code"] == "BAD_REQUEST"


def test_unreadable_body_answers_in_the_graphql_shape(api):
    response = api.post("/graphql", data="{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert only_error(response.get_json())["extensions"]["code"] == "BAD_REQUEST"


def test_bad_variables_and_operation_names_are_errors_not_500(api):
    body = gql(api, "query($n: Int) { tasks(limit: $n) { totalCount } }", {"n": "many"})
    assert body["data"] is None and body["errors"]
    for name in ("C", None):
        body = gql(api, "query A { __typename } query B { __typename }", operationName=name)
        assert body["data"] is None and body["errors"]


# --- the page and the schema ------------------------------------------------------------------


def test_graphiql_page_and_its_assets_are_served_locally(client):
    page = client.get("/api/v1/graphql")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    for asset in ("graphiql.min.css", "graphiql.min.js", "react.production.min.js",
                  "react-dom.production.min.js"):
        assert f"/api/v1/graphql/assets/{asset}" in html
        assert client.get(f"/api/v1/graphql/assets/{asset}").status_code == 200


def test_every_entity_has_its_type_queries_and_mutations(api):
    schema = data(api, "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }")
    queries = {f["name"] for f in schema["__schema"]["queryType"]["fields"]}
    mutations = {f["name"] for f in schema["__schema"]["mutationType"]["fields"]}
    for entity in ENTITIES.values():
        title = entity.name.capitalize()
        assert {entity.name, entity.path} <= queries
        assert {f"create{title}", f"update{title}", f"delete{title}"} <= mutations


def test_a_new_entity_joins_the_schema_with_no_graphql_code(monkeypatch):
    class Label(RecordModel):
        task_id = peewee.CharField(max_length=40)
        name = peewee.CharField(max_length=50)

        class Meta:
            table_name = "labels"

    class LabelSchema(RecordSchema):
        taskId = Ref("task", attribute="task_id", required=True)
        name = Text(required=True, validate=validate.Length(1, 50))

    label = Entity(name="label", path="labels", prefix="lbl", model=Label, schema=LabelSchema,
                   sortable=("createdAt", "name"), searchable=("name",),
                   relations=(Relation("task", "task_id", "task"),))
    monkeypatch.setitem(ENTITIES, "label", label)
    schema = build_schema()
    assert {"label", "labels"} <= set(schema.query_type.fields)
    assert {"createLabel", "updateLabel", "deleteLabel"} <= set(schema.mutation_type.fields)
    assert "task" in schema.get_type("Label").fields
    assert "labels" in schema.get_type("Task").fields
    assert {"name", "nameContains", "taskIdIn"} <= set(schema.get_type("LabelFilter").fields)
