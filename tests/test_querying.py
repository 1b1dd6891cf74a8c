"""List routes against CONTRACT.md §3: pagination, cursors, sort, filters, `q`, `fields`, `expand`.

Everything goes through the Flask test client with a fresh account per test, so a
list only ever holds the rows the test made. Expected rows are spelled out (by task
title) rather than recomputed, so a test reads as the behaviour it pins down.

Enum fields (`status`, `priority`) order by their declared rank, not alphabetically:
`todo < in_progress < completed`, `low < medium < high`, in `sort` and in `lt/lte/gt/gte`.
"""

import base64
import json
import re
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from api.entities.tasks import Task

PRIORITY_RANK = {"low": 0, "medium": 1, "high": 2}
STATUS_RANK = {"todo": 0, "in_progress": 1, "completed": 2}
INJECTIONS = ["' OR 1=1 --", '"; DROP TABLE tasks; --']
LINK = re.compile(r'<([^>]*)>;\s*rel="([^"]+)"')


# --- helpers -------------------------------------------------------------------------------


def list_ok(api, path: str, **params) -> dict:
    """GET a list route, assert 200 and the success envelope, return the body."""
    response = api.get(path, query_string=params)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True
    assert isinstance(body["data"], list)
    return body


def assert_invalid(response, *params: str) -> dict:
    """A 400 VALIDATION_FAILED in the error envelope whose details name each of `params`."""
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["success"] is False
    assert body["code"] == "VALIDATION_FAILED"
    assert isinstance(body["error"], str) and body["error"]
    for param in params:
        assert param in body["details"], body["details"]
    return body


def titles(body: dict) -> list[str]:
    return [row["title"] for row in body["data"]]


def links(response) -> dict[str, str]:
    """The Link header as {rel: url}."""
    return {rel: url for url, rel in LINK.findall(response.headers.get("Link", ""))}


def local(url: str) -> str:
    """An absolute link as a path and query the test client can fetch."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def walk(api, path: str, cursor: str | None = None, **params) -> list[dict]:
    """Every row of a list (from `cursor` on), fetched page by page through `nextCursor`."""
    rows = []
    for _ in range(200):
        body = list_ok(api, path, **params, **({"cursor": cursor} if cursor else {}))
        rows += body["data"]
        cursor = body["meta"]["nextCursor"]
        assert body["meta"]["hasNextPage"] is (cursor is not None)
        if cursor is None:
            return rows
    raise AssertionError("the cursor walk never ended")


def make_tasks(api, count: int, prefix: str = "task") -> list[dict]:
    return [api.create("tasks", title=f"{prefix} {i:02d}") for i in range(count)]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(cursor: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


@pytest.fixture
def board(api):
    """Two users, a project and six tasks covering every filterable kind of value.

    | title            | status      | priority | user | proj | dueAt                    | description
    | alpha REPORT     | todo        | low      | u1   | p1   | 2025-01-10T09:00:00Z     | Quarterly numbers
    | beta review      | in_progress | high     | u2   |      | 2025-02-01T00:00:00Z     |
    | gamma 100% done! | completed   | medium   |      | p1   |                          | all of it
    | delta_task       | todo        | high     | u1   |      | 2025-03-15T12:30:00.250Z |
    | epsilon          | in_progress | medium   |      | p1   | 2025-02-01T00:00:00Z     | Needs REVIEW
    | data task 100    | todo        | low      | u2   |      |                          | 100 percent
    """
    u1 = api.create("users", name="Ada Lovelace", email="ada@example.com")
    u2 = api.create("users", name="Bob Builder", email="bob@example.org")
    p1 = api.create("projects", name="Apollo", description="Moon landing")
    rows = [
        dict(title="alpha REPORT", status="todo", priority="low", assigneeId=u1["id"],
             projectId=p1["id"], dueAt="2025-01-10T09:00:00Z", description="Quarterly numbers"),
        dict(title="beta review", status="in_progress", priority="high", assigneeId=u2["id"],
             dueAt="2025-02-01T00:00:00Z"),
        dict(title="gamma 100% done!", status="completed", priority="medium", projectId=p1["id"],
             description="all of it"),
        dict(title="delta_task", status="todo", priority="high", assigneeId=u1["id"],
             dueAt="2025-03-15T12:30:00.250Z"),
        dict(title="epsilon", status="in_progress", priority="medium", projectId=p1["id"],
             dueAt="2025-02-01T00:00:00Z", description="Needs REVIEW"),
        dict(title="data task 100", status="todo", priority="low", assigneeId=u2["id"],
             description="100 percent"),
    ]
    tasks = [api.create("tasks", **row) for row in rows]
    refs = {"@u1": u1["id"], "@u2": u2["id"], "@p1": p1["id"]}
    refs.update({f"@{t['title']}": t["id"] for t in tasks})
    return SimpleNamespace(u1=u1, u2=u2, p1=p1, tasks=tasks, refs=refs,
                           by_title={t["title"]: t for t in tasks})


def resolve(board, raw: str) -> str:
    """Replace `@u1`, `@p1`, `@<title>` in a comma list with the ids they name."""
    return ",".join(board.refs.get(part, part) for part in raw.split(","))


# --- meta, Link, page and limit ------------------------------------------------------------


def test_list_meta_has_exactly_the_contract_keys(api):
    make_tasks(api, 3)
    body = list_ok(api, "/tasks")
    assert set(body["meta"]) == {"page", "limit", "total", "hasNextPage", "hasPreviousPage",
                                 "nextCursor"}
    assert body["meta"] == {"page": 1, "limit": 20, "total": 3, "hasNextPage": False,
                            "hasPreviousPage": False, "nextCursor": None}


@pytest.mark.parametrize("path", ["/users", "/projects", "/tasks", "/comments"])
def test_empty_list_of_every_entity(api, path):
    body = list_ok(api, path)
    assert body["data"] == []
    assert body["meta"]["total"] == 0
    assert body["meta"]["hasNextPage"] is False


def test_default_limit_is_20_with_next_link_only_on_first_page(api):
    make_tasks(api, 25)
    response = api.get("/tasks")
    body = response.get_json()
    assert len(body["data"]) == 20
    meta = body["meta"]
    assert (meta["page"], meta["limit"], meta["total"]) == (1, 20, 25)
    assert meta["hasNextPage"] is True and meta["hasPreviousPage"] is False
    assert isinstance(meta["nextCursor"], str) and meta["nextCursor"]
    rels = links(response)
    assert set(rels) == {"next"}
    assert parse_qs(urlsplit(rels["next"]).query)["page"] == ["2"]
    assert urlsplit(rels["next"]).path == "/api/v1/tasks"


def test_last_page_has_prev_link_only_and_no_cursor(api):
    make_tasks(api, 25)
    response = api.get("/tasks", query_string={"page": 2})
    body = response.get_json()
    assert len(body["data"]) == 5
    assert body["meta"] == {"page": 2, "limit": 20, "total": 25, "hasNextPage": False,
                            "hasPreviousPage": True, "nextCursor": None}
    rels = links(response)
    assert set(rels) == {"prev"}
    assert parse_qs(urlsplit(rels["prev"]).query)["page"] == ["1"]


def test_middle_page_links_keep_other_parameters_and_can_be_followed(api):
    created = make_tasks(api, 7)
    response = api.get("/tasks", query_string={"limit": 2, "page": 2, "sort": "title",
                                               "title[contains]": "task"})
    assert [r["title"] for r in response.get_json()["data"]] == ["task 02", "task 03"]
    rels = links(response)
    assert set(rels) == {"next", "prev"}
    for url in rels.values():
        query = parse_qs(urlsplit(url).query)
        assert query["limit"] == ["2"] and query["sort"] == ["title"]
        assert query["title[contains]"] == ["task"]
    nxt = api.get(local(rels["next"])).get_json()
    prev = api.get(local(rels["prev"])).get_json()
    assert [r["title"] for r in nxt["data"]] == ["task 04", "task 05"]
    assert [r["title"] for r in prev["data"]] == ["task 00", "task 01"]
    assert nxt["meta"]["total"] == prev["meta"]["total"] == len(created)


def test_pages_partition_the_rows_in_order(api):
    created = make_tasks(api, 7)
    seen = []
    for page in (1, 2, 3, 4):
        seen += list_ok(api, "/tasks", page=page, limit=2)["data"]
    assert [t["id"] for t in seen] == [t["id"] for t in reversed(created)]


def test_page_past_the_end_is_200_and_empty(api):
    make_tasks(api, 3)
    response = api.get("/tasks", query_string={"page": 50, "limit": 10})
    assert response.status_code == 200
    body = response.get_json()
    assert body["data"] == []
    assert body["meta"]["total"] == 3
    assert body["meta"]["page"] == 50
    assert body["meta"]["hasNextPage"] is False
    assert body["meta"]["hasPreviousPage"] is True
    assert body["meta"]["nextCursor"] is None
    assert "next" not in links(response)


@pytest.mark.parametrize("limit", [1, 100])
def test_limit_bounds_are_inclusive(api, limit):
    make_tasks(api, 3)
    body = list_ok(api, "/tasks", limit=limit)
    assert body["meta"]["limit"] == limit
    assert len(body["data"]) == min(limit, 3)


@pytest.mark.parametrize("value", ["0", "101", "-1", "1000", "99999999999999999999", "abc", "1.5",
                                   "", "1e2", "0x10"])
def test_bad_limit_is_400_naming_limit(api, value):
    assert_invalid(api.get("/tasks", query_string={"limit": value}), "limit")


@pytest.mark.parametrize("value", ["0", "-1", "-999", "99999999999999999999", "abc", "2.0", "",
                                   "1;2", "½"])
def test_bad_page_is_400_naming_page(api, value):
    assert_invalid(api.get("/tasks", query_string={"page": value}), "page")


def test_repeated_page_parameter_is_400(api):
    assert_invalid(api.get("/tasks?page=1&page=2"), "page")


# --- cursor pagination ---------------------------------------------------------------------


def test_cursor_walk_returns_every_row_once_in_order(api):
    created = make_tasks(api, 11)
    rows = walk(api, "/tasks", limit=3)
    assert [t["id"] for t in rows] == [t["id"] for t in reversed(created)]


def test_cursor_page_meta_and_next_link(api):
    make_tasks(api, 5)
    first = list_ok(api, "/tasks", limit=2)
    response = api.get("/tasks", query_string={"limit": 2, "cursor": first["meta"]["nextCursor"]})
    body = response.get_json()
    assert body["meta"]["hasPreviousPage"] is True
    assert body["meta"]["hasNextPage"] is True
    assert body["meta"]["total"] == 5 and body["meta"]["limit"] == 2
    rels = links(response)
    assert parse_qs(urlsplit(rels["next"]).query)["cursor"] == [body["meta"]["nextCursor"]]
    third = api.get(local(rels["next"])).get_json()
    assert len(third["data"]) == 1
    assert third["meta"]["nextCursor"] is None and third["meta"]["hasNextPage"] is False
    walked = first["data"] + body["data"] + third["data"]
    assert len({t["id"] for t in walked}) == 5


def test_cursor_walk_with_a_filter_and_a_sort(api):
    for i in range(9):
        api.create("tasks", title=f"t{i}", priority=["low", "high", "medium"][i % 3])
    rows = walk(api, "/tasks", limit=2, sort="-title", **{"priority[ne]": "medium"})
    assert [t["title"] for t in rows] == ["t7", "t6", "t4", "t3", "t1", "t0"]


def test_cursor_is_stable_while_rows_are_inserted_newest_first(api):
    original = make_tasks(api, 7, "old")
    first = list_ok(api, "/tasks", limit=3)
    make_tasks(api, 3, "new")
    rest = walk(api, "/tasks", first["meta"]["nextCursor"], limit=3)
    seen = [t["id"] for t in first["data"] + rest]
    assert seen == [t["id"] for t in reversed(original)]


def test_cursor_is_stable_while_rows_are_inserted_on_both_sides(api):
    original = [api.create("tasks", title=t) for t in ("b", "d", "f", "h", "j", "l")]
    first = list_ok(api, "/tasks", limit=2, sort="title")
    assert titles(first) == ["b", "d"]
    for title in ("a", "c", "e", "k", "m"):
        api.create("tasks", title=title)
    rest = walk(api, "/tasks", first["meta"]["nextCursor"], limit=2, sort="title")
    old_ids = {t["id"] for t in original}
    seen_old = [t["title"] for t in first["data"] + rest if t["id"] in old_ids]
    assert seen_old == ["b", "d", "f", "h", "j", "l"]
    assert [t["title"] for t in rest] == ["e", "f", "h", "j", "k", "l", "m"]


def test_offset_pages_after_insert_would_repeat_but_cursor_does_not(api):
    make_tasks(api, 4)
    first = list_ok(api, "/tasks", limit=2)
    api.create("tasks", title="newest")
    by_cursor = list_ok(api, "/tasks", limit=2, cursor=first["meta"]["nextCursor"])
    assert not {t["id"] for t in first["data"]} & {t["id"] for t in by_cursor["data"]}


@pytest.mark.parametrize("cursor", [
    "not-a-cursor",
    "!!!!",
    "%%%",
    "Zm9v",                                   # base64 of "foo"
    b64(b"\xff\xfe\x00garbage"),              # not UTF-8
    b64(b"[1, 2, 3]"),                        # JSON, not an object
    b64(b'{"s": "-createdAt"}'),              # keys missing
    b64(b'{"s": "-createdAt", "v": "x", "id": "tsk_1"}'),
    b64(b'{"s": "-createdAt", "v": [1], "id": "tsk_1"}'),
    b64(b'{"s": "-createdAt", "v": ["yesterday"], "id": "tsk_1"}'),
    b64(b'{"s": "-createdAt", "v": ["2025-01-01T00:00:00Z", "x"], "id": "tsk_1"}'),
    b64(b'{"s": "-createdAt", "v": ["2025-01-01T00:00:00Z"], "id": 7}'),
    b64(b'{"s": "-createdAt", "v": ["2025-01-01T00:00:00Z"], "id": "tsk_\\u0000"}'),
    b64(b'{"s": "-createdAt", "v": ["2025-01-01T00:00:00Z"], "id": "tsk_\\ud800"}'),
    b64(b'{"s": "-createdAt", "v": ["0001-01-01T00:00:00+01:00"], "id": "tsk_1"}'),
    b64(b"[" * 5000 + b"]" * 5000),            # deeply nested JSON
    "é",
    "x" * 5000,
])
def test_malformed_cursor_is_400(api, cursor):
    make_tasks(api, 2)
    assert_invalid(api.get("/tasks", query_string={"cursor": cursor}), "cursor")


def test_tampered_cursor_is_400(api):
    make_tasks(api, 3)
    cursor = list_ok(api, "/tasks", limit=1)["meta"]["nextCursor"]
    payload = unb64(cursor)
    assert_invalid(api.get("/tasks", query_string={"cursor": cursor[:-3]}), "cursor")
    assert_invalid(api.get("/tasks", query_string={"cursor": cursor + "}}"}), "cursor")
    for tamper in ({"v": []}, {"v": [42]}, {"v": [{"$gt": ""}]}, {"id": None}, {"s": 5}):
        forged = b64(json.dumps({**payload, **tamper}).encode())
        assert_invalid(api.get("/tasks", query_string={"cursor": forged}), "cursor")


def test_cursor_of_another_sort_is_400(api):
    make_tasks(api, 3)
    cursor = list_ok(api, "/tasks", limit=1, sort="title")["meta"]["nextCursor"]
    assert_invalid(api.get("/tasks", query_string={"cursor": cursor}), "cursor")
    assert_invalid(api.get("/tasks", query_string={"cursor": cursor, "sort": "-title"}), "cursor")
    assert_invalid(api.get("/tasks", query_string={"cursor": cursor, "sort": "title,createdAt"}),
                   "cursor")
    assert len(list_ok(api, "/tasks", cursor=cursor, sort="title")["data"]) == 2


def test_cursor_with_page_is_400(api):
    make_tasks(api, 3)
    cursor = list_ok(api, "/tasks", limit=1)["meta"]["nextCursor"]
    assert_invalid(api.get("/tasks", query_string={"cursor": cursor, "page": 2}), "cursor")


# --- sort ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path,make", [
    ("/users", lambda api, i: api.create("users", name=f"u{i}", email=f"u{i}@example.com")),
    ("/projects", lambda api, i: api.create("projects", name=f"p{i}")),
    ("/tasks", lambda api, i: api.create("tasks", title=f"t{i}")),
    ("/comments", lambda api, i: api.create(
        "comments", taskId=api.create("tasks", title=f"t{i}")["id"], body=f"c{i}")),
])
def test_default_sort_is_newest_first(api, path, make):
    created = [make(api, i) for i in range(4)]
    expected = [r["id"] for r in reversed(created)]
    assert [r["id"] for r in list_ok(api, path)["data"]] == expected
    assert [r["id"] for r in list_ok(api, path, sort="-createdAt")["data"]] == expected
    assert [r["id"] for r in list_ok(api, path, sort="createdAt")["data"]] == expected[::-1]


def test_sort_by_priority_desc_then_title(api):
    for title, priority in [("b", "low"), ("a", "high"), ("d", "medium"), ("c", "high"),
                            ("a", "low"), ("e", "medium")]:
        api.create("tasks", title=title, priority=priority)
    body = list_ok(api, "/tasks", sort="-priority,title")
    assert [(t["priority"], t["title"]) for t in body["data"]] == [
        ("high", "a"), ("high", "c"), ("medium", "d"), ("medium", "e"), ("low", "a"), ("low", "b")]
    walked = walk(api, "/tasks", sort="-priority,title", limit=2)
    assert [t["id"] for t in walked] == [t["id"] for t in body["data"]]


def test_sort_by_status_follows_the_workflow(api):
    for status in ("completed", "todo", "in_progress", "todo"):
        api.create("tasks", title=status, status=status)
    assert titles(list_ok(api, "/tasks", sort="status")) == [
        "todo", "todo", "in_progress", "completed"]
    assert titles(list_ok(api, "/tasks", sort="-status")) == [
        "completed", "in_progress", "todo", "todo"]


TASK_SORT_KEYS = {
    "createdAt": lambda t: t["createdAt"],
    "updatedAt": lambda t: t["updatedAt"],
    "title": lambda t: t["title"],
    "status": lambda t: STATUS_RANK[t["status"]],
    "priority": lambda t: PRIORITY_RANK[t["priority"]],
    "dueAt": lambda t: t["dueAt"],
}


@pytest.mark.parametrize("desc", [False, True], ids=["asc", "desc"])
@pytest.mark.parametrize("name", list(TASK_SORT_KEYS))
def test_every_task_sort_field_orders_and_walks(api, board, name, desc):
    # Make updatedAt differ from creation order.
    for title in ("delta_task", "alpha REPORT"):
        assert api.patch(f"/tasks/{board.by_title[title]['id']}",
                         json={"description": "touched"}).status_code == 200
    sort = ("-" if desc else "") + name
    rows = list_ok(api, "/tasks", sort=sort)["data"]
    assert {t["id"] for t in rows} == {t["id"] for t in board.tasks}
    key = TASK_SORT_KEYS[name]
    present = [t for t in rows if key(t) is not None]
    nulls = [t for t in rows if key(t) is None]
    assert rows == present + nulls, "nulls sort last"
    assert [key(t) for t in present] == sorted((key(t) for t in present), reverse=desc)
    assert [t["id"] for t in walk(api, "/tasks", sort=sort, limit=2)] == [t["id"] for t in rows]


def test_due_at_sorts_nulls_last_both_ways_and_cursor_crosses_them(api):
    due = {"n1": None, "d3": "2025-03-01T00:00:00Z", "n2": None, "d1": "2025-01-01T00:00:00Z",
           "n3": None, "d2": "2025-02-01T00:00:00Z"}
    for title, due_at in due.items():
        api.create("tasks", title=title, dueAt=due_at)
    asc = titles(list_ok(api, "/tasks", sort="dueAt,title"))
    desc = titles(list_ok(api, "/tasks", sort="-dueAt,title"))
    assert asc == ["d1", "d2", "d3", "n1", "n2", "n3"]
    assert desc == ["d3", "d2", "d1", "n1", "n2", "n3"]
    for limit in (1, 2, 4):
        assert [t["title"] for t in walk(api, "/tasks", sort="dueAt,title", limit=limit)] == asc
        assert [t["title"] for t in walk(api, "/tasks", sort="-dueAt,title", limit=limit)] == desc
    walked = walk(api, "/tasks", sort="dueAt", limit=2)
    assert [t["title"] for t in walked[:3]] == ["d1", "d2", "d3"]
    assert sorted(t["title"] for t in walked[3:]) == ["n1", "n2", "n3"]


def test_sort_users_by_name_and_email_and_projects_by_name(api):
    for name, email in [("carol", "a@x.io"), ("alice", "c@x.io"), ("bob", "b@x.io")]:
        api.create("users", name=name, email=email)
        api.create("projects", name=name)
    assert [u["name"] for u in list_ok(api, "/users", sort="name")["data"]] == ["alice", "bob", "carol"]
    assert [u["email"] for u in list_ok(api, "/users", sort="-email")["data"]] == [
        "c@x.io", "b@x.io", "a@x.io"]
    assert [p["name"] for p in list_ok(api, "/projects", sort="-name")["data"]] == [
        "carol", "bob", "alice"]


@pytest.mark.parametrize("path,sort", [
    ("/tasks", "nope"), ("/tasks", "-nope"), ("/tasks", "description"), ("/tasks", "assigneeId"),
    ("/tasks", "title,"), ("/tasks", ""), ("/tasks", "-"), ("/tasks", "title,title"),
    ("/tasks", "--title"), ("/tasks", "ti-tle"), ("/tasks", "title-"), ("/tasks", "TITLE"),
    ("/users", "title"), ("/projects", "description"), ("/comments", "body"),
])
def test_unknown_or_malformed_sort_is_400(api, path, sort):
    assert_invalid(api.get(path, query_string={"sort": sort}), "sort")


# --- filters -------------------------------------------------------------------------------

A, B, G, D, E, K = ("alpha REPORT", "beta review", "gamma 100% done!", "delta_task", "epsilon",
                    "data task 100")
ALL = {A, B, G, D, E, K}

FILTER_CASES = [
    # text
    ("title", "beta review", {B}),
    ("title[eq]", "beta review", {B}),
    ("title[eq]", "BETA REVIEW", set()),
    ("title[ne]", "beta review", ALL - {B}),
    ("title[lt]", "c", {A, B}),
    ("title[lte]", "beta review", {A, B}),
    ("title[gt]", "epsilon", {G}),
    ("title[gte]", "epsilon", {E, G}),
    ("title[in]", "epsilon,data task 100,nope", {E, K}),
    ("title[nin]", "epsilon,data task 100", {A, B, G, D}),
    ("title[contains]", "rEpOrT", {A}),
    ("title[contains]", "100%", {G}),
    ("title[contains]", "%", {G}),
    ("title[contains]", "a_t", {D}),
    ("title[contains]", "_", {D}),
    ("title[contains]", "done!", {G}),
    ("title[contains]", "!", {G}),
    ("title[isnull]", "false", ALL),
    ("title[isnull]", "true", set()),
    ("description[isnull]", "true", {B, D}),
    ("description[isnull]", "false", {A, G, E, K}),
    ("description[contains]", "review", {E}),
    ("description[ne]", "all of it", ALL - {G}),
    # enum
    ("status", "todo", {A, D, K}),
    ("status[eq]", "completed", {G}),
    ("status[ne]", "todo", {B, G, E}),
    ("status[in]", "todo,completed", {A, G, D, K}),
    ("status[nin]", "todo,completed", {B, E}),
    ("status[contains]", "PROGRESS", {B, E}),
    ("status[isnull]", "false", ALL),
    ("status[lt]", "completed", {A, D, K, B, E}),
    ("status[lte]", "todo", {A, D, K}),
    ("status[gt]", "todo", {B, G, E}),
    ("status[gte]", "in_progress", {B, G, E}),
    ("priority", "high", {B, D}),
    ("priority[lt]", "medium", {A, K}),
    ("priority[lte]", "low", {A, K}),
    ("priority[gt]", "medium", {B, D}),
    ("priority[gte]", "medium", {B, G, D, E}),
    # reference ids
    ("assigneeId", "@u1", {A, D}),
    ("assigneeId[eq]", "@u2", {B, K}),
    ("assigneeId[ne]", "@u1", {B, G, E, K}),
    ("assigneeId[in]", "@u1,@u2", {A, B, D, K}),
    ("assigneeId[nin]", "@u1", {B, G, E, K}),
    ("assigneeId[isnull]", "true", {G, E}),
    ("assigneeId[isnull]", "false", {A, B, D, K}),
    ("assigneeId[gt]", "@u1", {B, K}),
    ("assigneeId[lte]", "@u1", {A, D}),
    ("assigneeId[contains]", "USR_", {A, B, D, K}),
    ("assigneeId", "usr_01ARZ3NDEKTSV4RRFFQ69G5FAV", set()),
    ("projectId", "@p1", {A, G, E}),
    ("projectId[isnull]", "true", {B, D, K}),
    ("id", "@epsilon", {E}),
    ("id[in]", "@alpha REPORT,@epsilon", {A, E}),
    ("id[nin]", "@alpha REPORT,@epsilon", ALL - {A, E}),
    # datetime
    ("dueAt", "2025-02-01T00:00:00Z", {B, E}),
    ("dueAt[eq]", "2025-02-01T01:00:00+01:00", {B, E}),
    ("dueAt[eq]", "2025-02-01T00:00:00.000Z", {B, E}),
    ("dueAt[ne]", "2025-02-01T00:00:00Z", {A, G, D, K}),
    ("dueAt[lt]", "2025-02-01T00:00:00Z", {A}),
    ("dueAt[lte]", "2025-02-01T00:00:00Z", {A, B, E}),
    ("dueAt[gt]", "2025-02-01T00:00:00Z", {D}),
    ("dueAt[gte]", "2025-03-15T12:30:00.250Z", {D}),
    ("dueAt[gt]", "2025-03-15T12:30:00.249Z", {D}),
    ("dueAt[gt]", "2025-03-15T12:30:00.250Z", set()),
    ("dueAt[lt]", "2025-01-10T04:00:00-05:00", set()),
    ("dueAt[lte]", "2025-01-10T04:00:00-05:00", {A}),
    ("dueAt[in]", "2025-01-10T09:00:00Z,2025-03-15T12:30:00.250Z", {A, D}),
    ("dueAt[nin]", "2025-01-10T09:00:00Z", ALL - {A}),
    ("dueAt[isnull]", "true", {G, K}),
    ("dueAt[isnull]", "false", {A, B, D, E}),
    ("completedAt[isnull]", "false", {G}),
]


@pytest.mark.parametrize("key,value,expected", FILTER_CASES,
                         ids=[f"{k}={v}" for k, v, _ in FILTER_CASES])
def test_task_filter(api, board, key, value, expected):
    body = list_ok(api, "/tasks", limit=100, **{key: resolve(board, value)})
    assert set(titles(body)) == expected
    assert len(body["data"]) == body["meta"]["total"] == len(expected)


def test_contains_takes_backslash_and_quotes_literally(api):
    wanted = api.create("tasks", title="C:\\temp\\new 'quoted' \"double\"")
    api.create("tasks", title="C:temp new quoted double")
    for needle in (":\\t", "\\", "'quoted'", '"double"'):
        body = list_ok(api, "/tasks", **{"title[contains]": needle})
        assert [t["id"] for t in body["data"]] == [wanted["id"]], needle


def test_filters_combine_with_and(api, board):
    body = list_ok(api, "/tasks", status="todo", **{"priority[ne]": "low", "assigneeId": board.u1["id"]})
    assert titles(body) == [D]


@pytest.mark.parametrize("op", ["lt", "lte", "gt", "gte"])
def test_created_at_range_filters(api, board, op):
    pivot = board.by_title[D]["createdAt"]
    compare = {"lt": str.__lt__, "lte": str.__le__, "gt": str.__gt__, "gte": str.__ge__}[op]
    expected = {t["title"] for t in board.tasks if compare(t["createdAt"], pivot)}
    assert set(titles(list_ok(api, "/tasks", **{f"createdAt[{op}]": pivot}))) == expected
    if op in ("lte", "gte"):
        assert D in expected


def test_filters_on_users_projects_and_comments(api, board):
    comment = api.create("comments", taskId=board.by_title[A]["id"], authorId=board.u1["id"],
                         body="Looks Good")
    api.create("comments", taskId=board.by_title[B]["id"], body="needs work")
    assert [u["name"] for u in list_ok(api, "/users", **{"email[contains]": "EXAMPLE.ORG"})["data"]] \
        == ["Bob Builder"]
    assert [u["name"] for u in list_ok(api, "/users", name="Ada Lovelace")["data"]] == ["Ada Lovelace"]
    assert [p["name"] for p in list_ok(api, "/projects", **{"description[contains]": "moon"})["data"]] \
        == ["Apollo"]
    assert list_ok(api, "/projects", **{"description[isnull]": "true"})["data"] == []
    by_task = list_ok(api, "/comments", taskId=board.by_title[A]["id"])["data"]
    assert [c["id"] for c in by_task] == [comment["id"]]
    no_author = list_ok(api, "/comments", **{"authorId[isnull]": "true"})["data"]
    assert [c["body"] for c in no_author] == ["needs work"]
    assert [c["body"] for c in list_ok(api, "/comments", **{"body[contains]": "good"})["data"]] \
        == ["Looks Good"]


BAD_FILTERS = [
    ("nosuchfield", "1"),
    ("nosuchfield[eq]", "1"),
    ("title[regex]", "x"),
    ("title[EQ]", "x"),
    ("title[]", "x"),
    ("title[eq", "x"),
    ("title[in]", ""),
    ("dueAt", "yesterday"),
    ("dueAt", ""),
    ("dueAt[gt]", "2025-13-01T00:00:00Z"),
    ("dueAt[lt]", "2025-02-30T00:00:00Z"),
    ("dueAt[in]", "2025-01-01T00:00:00Z,soon"),
    ("dueAt[gt]", "0001-01-01T00:00:00+01:00"),
    ("dueAt[lt]", "9999-12-31T23:59:59-01:00"),
    ("dueAt[contains]", "2025"),
    ("createdAt[contains]", "2025"),
    ("status", "done"),
    ("status[in]", "todo,done"),
    ("status[lt]", "urgent"),
    ("priority[gte]", "HIGH"),
    ("dueAt[isnull]", "maybe"),
    ("assigneeId[isnull]", "1"),
    ("title[isnull]", "TRUE"),
    ("title", "nul\x00byte"),
    ("title[contains]", "x" * 1001),
]


@pytest.mark.parametrize("key,value", BAD_FILTERS, ids=[f"{k}={v[:20]!r}" for k, v in BAD_FILTERS])
def test_bad_filter_is_400_naming_the_parameter(api, board, key, value):
    assert_invalid(api.get("/tasks", query_string={key: value}), key)


def test_repeated_filter_parameter_is_400(api, board):
    assert_invalid(api.get("/tasks?status=todo&status=completed"), "status")


# --- q search ------------------------------------------------------------------------------


def test_q_searches_task_title_and_description_case_insensitively(api, board):
    assert set(titles(list_ok(api, "/tasks", q="REVIEW"))) == {B, E}
    assert set(titles(list_ok(api, "/tasks", q="quarterly"))) == {A}
    assert set(titles(list_ok(api, "/tasks", q="100"))) == {G, K}
    assert set(titles(list_ok(api, "/tasks", q="100%"))) == {G}
    assert set(titles(list_ok(api, "/tasks", q="a_t"))) == {D}
    assert titles(list_ok(api, "/tasks", q="zzz")) == []


def test_q_combines_with_filters_and_counts_total(api, board):
    body = list_ok(api, "/tasks", q="review", status="in_progress", limit=1)
    assert body["meta"]["total"] == 2
    assert len(body["data"]) == 1 and body["meta"]["hasNextPage"] is True


def test_q_searches_user_name_and_email(api, board):
    assert [u["name"] for u in list_ok(api, "/users", q="LOVELACE")["data"]] == ["Ada Lovelace"]
    assert [u["name"] for u in list_ok(api, "/users", q="example.org")["data"]] == ["Bob Builder"]
    assert len(list_ok(api, "/users", q="EXAMPLE")["data"]) == 2


def test_q_searches_project_name_and_description(api):
    api.create("projects", name="Apollo", description="Moon landing")
    api.create("projects", name="Gemini", description="Orbital RENDEZVOUS")
    api.create("projects", name="Mercury")
    assert [p["name"] for p in list_ok(api, "/projects", q="apollo")["data"]] == ["Apollo"]
    assert [p["name"] for p in list_ok(api, "/projects", q="rendezvous")["data"]] == ["Gemini"]
    assert {p["name"] for p in list_ok(api, "/projects", q="o")["data"]} == {"Apollo", "Gemini"}


def test_q_searches_comment_body(api, board):
    task = board.by_title[A]["id"]
    api.create("comments", taskId=task, body="Ship it TODAY")
    api.create("comments", taskId=task, body="not yet")
    assert [c["body"] for c in list_ok(api, "/comments", q="today")["data"]] == ["Ship it TODAY"]
    assert list_ok(api, "/comments", q="alpha")["data"] == []


def test_q_too_long_is_400(api):
    assert_invalid(api.get("/tasks", query_string={"q": "x" * 201}), "q")


def test_unicode_round_trips_and_is_searchable(api):
    title = "Überprüfung der Daten 🚀 — naïve café"
    task = api.create("tasks", title=title, description="Grüße aus Köln 🎉")
    user = api.create("users", name="Zoë Ünal", email="zoe@example.com")
    assert task["title"] == title
    assert api.get(f"/tasks/{task['id']}").get_json()["data"]["title"] == title
    api.create("tasks", title="plain ascii")
    for q in ("überprüfung", "ÜBERPRÜFUNG", "🚀", "NAÏVE", "grüße", "🎉", "köln"):
        assert [t["id"] for t in list_ok(api, "/tasks", q=q)["data"]] == [task["id"]], q
    assert [t["id"] for t in list_ok(api, "/tasks", title=title)["data"]] == [task["id"]]
    assert [t["id"] for t in list_ok(api, "/tasks", **{"title[contains]": "üBER"})["data"]] == [
        task["id"]]
    assert [u["id"] for u in list_ok(api, "/users", q="ZOË")["data"]] == [user["id"]]


# --- fields --------------------------------------------------------------------------------


def test_fields_selects_exactly_those_keys_on_list(api, board):
    body = list_ok(api, "/tasks", fields="id,title")
    assert len(body["data"]) == 6
    assert all(set(t) == {"id", "title"} for t in body["data"])
    assert {t["title"] for t in body["data"]} == ALL


def test_fields_selects_exactly_those_keys_on_single_get(api, board):
    task = board.by_title[A]
    response = api.get(f"/tasks/{task['id']}", query_string={"fields": "id,title"})
    assert response.status_code == 200
    assert response.get_json()["data"] == {"id": task["id"], "title": A}
    user = api.get(f"/users/{board.u1['id']}", query_string={"fields": "email"}).get_json()["data"]
    assert user == {"email": "ada@example.com"}


def test_fields_with_expand_keeps_the_expanded_relation(api, board):
    body = list_ok(api, "/tasks", fields="id,assigneeId", expand="assignee", title=A)
    assert body["data"] == [{"id": board.by_title[A]["id"], "assigneeId": board.u1["id"],
                             "assignee": board.u1}]


@pytest.mark.parametrize("value", ["id,nope", "password", "", "id,", "id,id", "accountId", "version"])
def test_unknown_or_malformed_fields_is_400(api, board, value):
    assert_invalid(api.get("/tasks", query_string={"fields": value}), "fields")
    assert_invalid(api.get(f"/tasks/{board.tasks[0]['id']}", query_string={"fields": value}), "fields")


def test_unknown_parameter_on_single_get_is_400(api, board):
    assert_invalid(api.get(f"/tasks/{board.tasks[0]['id']}", query_string={"status": "todo"}),
                   "status")


# --- expand --------------------------------------------------------------------------------


def test_expand_assignee_and_project_on_tasks(api, board):
    rows = {t["title"]: t for t in list_ok(api, "/tasks", expand="assignee,project")["data"]}
    assert rows[A]["assigneeId"] == board.u1["id"]
    assert rows[A]["assignee"] == board.u1
    assert rows[A]["project"] == board.p1
    assert rows[B]["assignee"] == board.u2 and rows[B]["project"] is None
    assert rows[E]["assignee"] is None and rows[E]["assigneeId"] is None
    assert rows[E]["project"] == board.p1
    plain = list_ok(api, "/tasks")["data"][0]
    assert "assignee" not in plain and "project" not in plain


def test_expand_task_and_author_on_comments(api, board):
    task = board.by_title[A]
    with_author = api.create("comments", taskId=task["id"], authorId=board.u2["id"], body="one")
    anonymous = api.create("comments", taskId=task["id"], body="two")
    rows = {c["id"]: c for c in list_ok(api, "/comments", expand="task,author")["data"]}
    assert rows[with_author["id"]]["task"] == task
    assert rows[with_author["id"]]["author"] == board.u2
    assert rows[with_author["id"]]["authorId"] == board.u2["id"]
    assert rows[anonymous["id"]]["task"] == task
    assert rows[anonymous["id"]]["author"] is None


def test_expand_on_single_get(api, board):
    task = board.by_title[A]
    data = api.get(f"/tasks/{task['id']}", query_string={"expand": "project"}).get_json()["data"]
    assert data == {**task, "project": board.p1}


def test_expanded_record_follows_updates_and_deletes(api, board):
    api.patch(f"/users/{board.u1['id']}", json={"name": "Ada King"})
    row = list_ok(api, "/tasks", title=A, expand="assignee")["data"][0]
    assert row["assignee"]["name"] == "Ada King"
    assert api.delete(f"/projects/{board.p1['id']}").status_code == 204
    row = list_ok(api, "/tasks", title=A, expand="project")["data"][0]
    assert row["projectId"] is None and row["project"] is None


@pytest.mark.parametrize("path,value", [
    ("/tasks", "owner"), ("/tasks", "assigneeId"), ("/tasks", "assignee,assignee"),
    ("/tasks", ""), ("/tasks", "task"), ("/comments", "assignee"), ("/users", "project"),
    ("/projects", "tasks"),
])
def test_unknown_expand_is_400(api, path, value):
    assert_invalid(api.get(path, query_string={"expand": value}), "expand")


def _count_list_queries(api, count_queries, path: str, **params) -> tuple[int, dict]:
    with count_queries() as counter:
        body = list_ok(api, path, **params)
    return counter.count, body


def test_expand_query_count_does_not_grow_with_page_size(api, count_queries):
    for i in range(30):
        user = api.create("users", name=f"user {i}", email=f"user{i}@example.com")
        project = api.create("projects", name=f"project {i}")
        api.create("tasks", title=f"task {i}", assigneeId=user["id"], projectId=project["id"])
    small, small_body = _count_list_queries(api, count_queries, "/tasks", limit=2,
                                            expand="assignee,project")
    large, large_body = _count_list_queries(api, count_queries, "/tasks", limit=30,
                                            expand="assignee,project")
    assert len(small_body["data"]) == 2 and len(large_body["data"]) == 30
    assert all(t["assignee"]["id"] == t["assigneeId"] for t in large_body["data"])
    assert all(t["project"]["id"] == t["projectId"] for t in large_body["data"])
    assert small > 0
    assert large == small


def test_comment_expand_query_count_does_not_grow_with_page_size(api, count_queries):
    for i in range(30):
        user = api.create("users", name=f"user {i}", email=f"user{i}@example.com")
        task = api.create("tasks", title=f"task {i}")
        api.create("comments", taskId=task["id"], authorId=user["id"], body=f"comment {i}")
    small, _ = _count_list_queries(api, count_queries, "/comments", limit=2, expand="task,author")
    large, body = _count_list_queries(api, count_queries, "/comments", limit=30, expand="task,author")
    assert all(c["task"]["id"] == c["taskId"] and c["author"]["id"] == c["authorId"]
               for c in body["data"])
    assert large == small


# --- SQL metacharacters --------------------------------------------------------------------

INJECTION_CASES = [
    # (name, query builder, expected status, expected titles when 200)
    ("q", lambda s: {"q": s}, 200, set()),
    ("eq", lambda s: {"title": s}, 200, set()),
    ("contains", lambda s: {"title[contains]": s}, 200, set()),
    ("in", lambda s: {"title[in]": f"epsilon,{s}"}, 200, {E}),
    ("nin", lambda s: {"title[nin]": s}, 200, ALL),
    ("ne", lambda s: {"description[ne]": s}, 200, ALL),
    ("gt", lambda s: {"assigneeId[gt]": s}, 200, {A, B, D, K}),
    ("ref", lambda s: {"assigneeId": s}, 200, set()),
    ("id", lambda s: {"id[in]": s}, 200, set()),
    ("datetime", lambda s: {"dueAt[gt]": s}, 400, None),
    ("enum", lambda s: {"status": s}, 400, None),
    ("isnull", lambda s: {"dueAt[isnull]": s}, 400, None),
    ("field key", lambda s: {s: "x"}, 400, None),
    ("op key", lambda s: {f"title[{s}]": "x"}, 400, None),
    ("sort", lambda s: {"sort": s}, 400, None),
    ("sort suffix", lambda s: {"sort": f"title,{s}"}, 400, None),
    ("fields", lambda s: {"fields": s}, 400, None),
    ("expand", lambda s: {"expand": s}, 400, None),
    ("cursor", lambda s: {"cursor": s}, 400, None),
    ("encoded cursor", lambda s: {"cursor": b64(json.dumps(
        {"s": "-createdAt", "v": [s], "id": s}).encode())}, 400, None),
    ("page", lambda s: {"page": s}, 400, None),
    ("limit", lambda s: {"limit": s}, 400, None),
]


@pytest.mark.parametrize("payload", INJECTIONS, ids=["or-1-1", "drop-table"])
@pytest.mark.parametrize("name,build,status,expected", INJECTION_CASES,
                         ids=[c[0] for c in INJECTION_CASES])
def test_sql_metacharacters_are_inert(api, board, payload, name, build, status, expected):
    response = api.get("/tasks", query_string={"limit": 100, **build(payload)})
    assert response.status_code == status, response.get_json()
    if status == 200:
        assert set(titles(response.get_json())) == expected
    else:
        assert response.get_json()["code"] == "VALIDATION_FAILED"
    after = list_ok(api, "/tasks", limit=100)
    assert set(titles(after)) == ALL
    assert list_ok(api, "/users")["meta"]["total"] == 2


@pytest.mark.parametrize("path", ["/users", "/projects", "/comments"])
@pytest.mark.parametrize("payload", INJECTIONS, ids=["or-1-1", "drop-table"])
def test_sql_metacharacters_in_q_of_other_entities(api, board, path, payload):
    api.create("comments", taskId=board.tasks[0]["id"], body="hello")
    before = list_ok(api, path)["meta"]["total"]
    assert list_ok(api, path, q=payload)["data"] == []
    assert list_ok(api, path)["meta"]["total"] == before > 0


@pytest.mark.parametrize("payload", INJECTIONS, ids=["or-1-1", "drop-table"])
def test_sql_metacharacters_stored_as_text_are_found_literally(api, board, payload):
    task = api.create("tasks", title=payload)
    assert [t["id"] for t in list_ok(api, "/tasks", q=payload)["data"]] == [task["id"]]
    assert [t["id"] for t in list_ok(api, "/tasks", title=payload)["data"]] == [task["id"]]
    assert [t["id"] for t in list_ok(api, "/tasks", **{"title[contains]": payload[:6]})["data"]] \
        == [task["id"]]
    assert list_ok(api, "/tasks")["meta"]["total"] == 7


# --- account isolation ---------------------------------------------------------------------


@pytest.fixture
def foreign(other_account):
    """Another account's user, project, task and comment, all titled to match our searches."""
    other = other_account.api
    user = other.create("users", name="Ada Lovelace", email="ada@example.com")
    project = other.create("projects", name="Apollo")
    task = other.create("tasks", title="alpha REPORT", assigneeId=user["id"], projectId=project["id"],
                        dueAt="2025-01-10T09:00:00Z")
    comment = other.create("comments", taskId=task["id"], authorId=user["id"], body="foreign")
    return SimpleNamespace(user=user, project=project, task=task, comment=comment)


def test_lists_never_show_another_accounts_rows(api, board, foreign):
    for path, own in [("/users", 2), ("/projects", 1), ("/tasks", 6), ("/comments", 0)]:
        body = list_ok(api, path, limit=100)
        assert body["meta"]["total"] == own == len(body["data"])
        foreign_ids = {foreign.user["id"], foreign.project["id"], foreign.task["id"],
                       foreign.comment["id"]}
        assert not foreign_ids & {r["id"] for r in body["data"]}


def test_filters_and_search_never_reach_another_account(api, board, foreign):
    assert list_ok(api, "/tasks", id=foreign.task["id"])["data"] == []
    assert list_ok(api, "/tasks", assigneeId=foreign.user["id"])["data"] == []
    assert list_ok(api, "/tasks", projectId=foreign.project["id"])["data"] == []
    assert list_ok(api, "/comments", taskId=foreign.task["id"])["data"] == []
    assert list_ok(api, "/comments", q="foreign")["data"] == []
    assert [t["id"] for t in list_ok(api, "/tasks", q="alpha report")["data"]] == [
        board.by_title[A]["id"]]
    assert [u["id"] for u in list_ok(api, "/users", email="ada@example.com")["data"]] == [
        board.u1["id"]]
    assert [t["id"] for t in list_ok(api, "/tasks", dueAt="2025-01-10T09:00:00Z")["data"]] == [
        board.by_title[A]["id"]]


def test_another_accounts_cursor_shows_only_own_rows(api, board, foreign, other_account):
    other_account.api.create("tasks", title="second foreign")
    cursor = list_ok(other_account.api, "/tasks", limit=1)["meta"]["nextCursor"]
    rows = list_ok(api, "/tasks", cursor=cursor, limit=100)["data"]
    assert [t["id"] for t in rows] == [t["id"] for t in reversed(board.tasks)]


def test_expand_never_embeds_another_accounts_record(api, account, board, foreign):
    # The API refuses such references, so plant them in the database directly.
    mine = board.by_title[A]
    with account.app.app_context():
        Task.update(assignee_id=foreign.user["id"], project_id=foreign.project["id"]).where(
            Task.id == mine["id"]).execute()
    row = list_ok(api, "/tasks", id=mine["id"], expand="assignee,project")["data"][0]
    assert row["assigneeId"] == foreign.user["id"]
    assert row["assignee"] is None and row["project"] is None
    single = api.get(f"/tasks/{mine['id']}", query_string={"expand": "assignee"}).get_json()["data"]
    assert single["assignee"] is None


def test_foreign_reference_in_a_body_is_rejected(api, foreign):
    response = api.post("/tasks", json={"title": "x", "assigneeId": foreign.user["id"]})
    assert_invalid(response, "assigneeId")
    assert list_ok(api, "/tasks")["meta"]["total"] == 0
