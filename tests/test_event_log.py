"""The event log in commit order, and the write engine under concurrent writers.

Positions: every event has a position in its account's log, counting up from 1
without gaps in commit order. `GET /events?after=<id>` follows the log forward
(oldest first, paged, filtered by `type`); an id that is not in the account's log,
or `after` with `cursor`, is a 400. A stream's follower (`api.streams.LogFollower`)
sends each event once in position order even when Redis hands it messages out of
commit order, and answers a resume it cannot serve with `{"type":"reset"}`: an id not
in the log, or more missed events than `SSE_REPLAY_LIMIT` (over real HTTP).

Concurrency, over real gunicorn (2 workers × 4 threads) on the session's database:
single PATCHes, bulk PATCHes, If-Match PATCHes and batches on one record at once.
Afterwards no ETag names two contents, each If-Match success answered the version
after the one it named, every version has exactly one event, and each event's
`previousAttributes` are the fields of the event before it (so the log's order is the
order the writes committed in).
"""

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from api import redis_conn
from api.models import Event
from api.services import events
from api.streams import RESET, LogFollower
from tests.conftest import BASE
from tests.procs import free_port, start_gunicorn, stop_process

# --- positions and the forward listing ------------------------------------------------------------


def positions(app, account_id: str) -> list[int]:
    with app.app_context():
        return [e.position for e in Event.select(Event.position)
                .where(Event.account_id == account_id).order_by(Event.position)]


def forward(api, after: str, **params) -> dict:
    response = api.get("/events", query_string={"after": after, **params})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_positions_count_up_from_one_without_gaps_per_account(app, api, account, other_account):
    for index in range(3):
        api.create("tasks", title=f"mine {index}")
    other_account.api.create("tasks", title="theirs")
    api.post("/import/tasks", json={"items": [{"title": "a"}, {"title": "b"}]})
    assert positions(app, account.id) == [1, 2, 3, 4, 5]
    assert positions(app, other_account.id) == [1]


def test_events_after_an_id_follow_the_log_forward_in_pages(api):
    first = api.create("tasks", title="first")
    for index in range(4):
        api.create("tasks", title=f"next {index}")
    user = api.create("users", name="Ada", email="ada.forward@example.com")
    newest_first = api.get("/events").get_json()["data"]
    oldest = newest_first[-1]
    assert oldest["data"]["id"] == first["id"]

    page = forward(api, oldest["id"], limit=2)
    assert [e["data"]["title"] for e in page["data"]] == ["next 0", "next 1"]
    assert page["meta"]["hasNextPage"] is True and page["meta"]["total"] == 5
    page = forward(api, page["data"][-1]["id"], limit=100)
    assert [e["type"] for e in page["data"]] == ["task.created", "task.created", "user.created"]
    assert page["data"][-1]["data"]["id"] == user["id"]
    assert page["meta"]["hasNextPage"] is False
    assert forward(api, page["data"][-1]["id"])["data"] == []
    only_users = forward(api, oldest["id"], type="user.created")["data"]
    assert [e["data"]["id"] for e in only_users] == [user["id"]]


@pytest.mark.parametrize("query", [
    {"after": "evt_00000000000000000000000000"},
    {"after": "not-an-event"},
    {"after": "evt_01", "cursor": "evt_02"},
])
def test_events_after_an_unknown_or_malformed_id_is_a_400(api, query):
    api.create("tasks", title="something")
    response = api.get("/events", query_string=query)
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["code"] == "VALIDATION_FAILED" and "after" in body["details"]


def test_events_after_another_accounts_event_is_a_400(api, other_account):
    other_account.api.create("tasks", title="theirs")
    theirs = other_account.api.get("/events").get_json()["data"][0]["id"]
    response = api.get("/events", query_string={"after": theirs})
    assert response.status_code == 400
    assert "after" in response.get_json()["details"]


# --- the stream's follower --------------------------------------------------------------------------


def _published(app, account_id: str) -> list[dict]:
    """The account's events as Redis messages carry them: position and event JSON."""
    with app.app_context():
        rows = Event.select().where(Event.account_id == account_id).order_by(Event.position)
        return [{"position": r.position, "event": events.as_json(r)} for r in rows]


def _ids(messages: list[str]) -> list[str]:
    return [line[4:] for message in messages for line in message.splitlines()
            if line.startswith("id: ")]


def test_follower_reads_the_log_when_a_message_overtakes_an_earlier_commit(app, api, account):
    for index in range(4):
        api.create("tasks", title=f"t{index}")
    log = _published(app, account.id)
    with app.app_context():
        follower = LogFollower(account.id, lambda event: True, replay_limit=100)
        follower.position = 1
        # Position 4 arrives first (published by a faster process): 2 and 3 come from the log.
        sent = follower.live([log[3]])
        assert _ids(sent) == [log[1]["event"]["id"], log[2]["event"]["id"], log[3]["event"]["id"]]
        # The slower messages arrive later and are not sent again.
        assert follower.live([log[1]]) == [] and follower.live([log[2]]) == []
        assert follower.position == 4


def test_follower_passes_filtered_events_without_reading_the_log(app, api, account):
    api.create("tasks", title="task")
    api.create("users", name="Ada", email="ada.filter@example.com")
    api.create("tasks", title="task again")
    log = _published(app, account.id)
    with app.app_context():
        only_tasks = LogFollower(account.id, lambda e: e["type"].startswith("task."), 100)
        assert _ids(only_tasks.live(log)) == [log[0]["event"]["id"], log[2]["event"]["id"]]
        assert only_tasks.position == 3


def test_follower_resets_on_an_unknown_id_or_too_long_a_gap(app, api, account):
    for index in range(5):
        api.create("tasks", title=f"t{index}")
    log = _published(app, account.id)
    with app.app_context():
        unknown = LogFollower(account.id, lambda e: True, replay_limit=100)
        assert unknown.resume("evt_00000000000000000000000000") == [RESET]
        assert unknown.position == 5
        short = LogFollower(account.id, lambda e: True, replay_limit=3)
        assert short.resume(log[0]["event"]["id"]) == [RESET]
        assert short.position == 5
        enough = LogFollower(account.id, lambda e: True, replay_limit=4)
        assert len(enough.resume(log[0]["event"]["id"])) == 4


# --- over HTTP: resets on a real stream --------------------------------------------------------------


@pytest.fixture(scope="module")
def short_replay_server(app, backend_env):
    """gunicorn whose streams replay at most 3 events (heartbeat every second)."""
    port = free_port()
    env = {**os.environ, **backend_env, "WEB_CONCURRENCY": "1", "WEB_THREADS": "32",
           "SSE_HEARTBEAT_SECONDS": "1", "SSE_REPLAY_LIMIT": "3", "LOG_LEVEL": "WARNING"}
    process = start_gunicorn(env, port)
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


def _first_messages(base: str, key: str, last_event_id: str, count: int) -> list[str]:
    """The `data:` lines of a resumed stream's first `count` messages after `connected`."""
    response = requests.get(f"{base}{BASE}/stream", headers={
        "Authorization": f"Bearer {key}", "Last-Event-ID": last_event_id}, stream=True,
        timeout=(5, 10))
    assert response.status_code == 200
    data = []
    try:
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                data.append(line[6:])
                if len(data) == count + 1:
                    break
    finally:
        response.close()
    assert data[0] == '{"type":"connected"}'
    return data[1:]


def test_a_stream_resumed_beyond_the_replay_limit_says_reset_then_goes_on_live(
        short_replay_server, api, account):
    key = account.api.key
    for index in range(6):
        api.create("tasks", title=f"missed {index}")
    log = list(reversed(api.get("/events").get_json()["data"]))
    within = _first_messages(short_replay_server, key, log[2]["id"], 3)
    assert [json.loads(d)["id"] for d in within] == [e["id"] for e in log[3:]]

    holder: list[str] = []
    reader = threading.Thread(target=lambda: holder.extend(
        _first_messages(short_replay_server, key, log[0]["id"], 2)))
    reader.start()
    live = None
    for _ in range(50):  # write until the reader, past its reset, has the live event
        if not reader.is_alive():
            break
        live = api.create("tasks", title="live")
        reader.join(timeout=0.2)
    reader.join(timeout=10)
    assert holder[0] == '{"type":"reset"}'
    assert json.loads(holder[1])["type"] == "task.created" and live is not None


# --- concurrent writers -------------------------------------------------------------------------------


def _etag_version(response) -> int:
    return int(response.headers["ETag"].strip('"').rsplit(".", 1)[1])


def test_concurrent_single_bulk_batch_and_if_match_writes_keep_every_promise(
        live_server, api, account):
    """Many writers on one record at once: each version has one content and one event."""
    task = api.create("tasks", title="shared")
    url = f"{live_server}{BASE}"
    session_headers = {"Authorization": f"Bearer {account.api.key}"}
    seen: dict[int, dict] = {}
    conflicts: list[str] = []
    lock = threading.Lock()

    def observe(response) -> None:
        if response.status_code != 200 or "ETag" not in response.headers:
            return
        version, data = _etag_version(response), response.json()["data"]
        with lock:
            if seen.setdefault(version, data) != data:
                conflicts.append(f"version {version}: {seen[version]} vs {data}")

    def write(index: int) -> None:
        with requests.Session() as http:
            http.headers.update(session_headers)
            kind = index % 4
            if kind == 0:
                observe(http.patch(f"{url}/tasks/{task['id']}", json={"title": f"single {index}"},
                                   timeout=30))
            elif kind == 1:
                response = http.patch(f"{url}/tasks/bulk", timeout=30, json={
                    "updates": [{"id": task["id"], "description": f"bulk {index}"}]})
                assert response.status_code == 200, response.text
            elif kind == 2:
                current = http.get(f"{url}/tasks/{task['id']}", timeout=30)
                observe(current)
                response = http.patch(f"{url}/tasks/{task['id']}", json={"priority": "high" if
                                      index % 8 == 2 else "low", "title": f"if-match {index}"},
                                      headers={"If-Match": current.headers["ETag"]}, timeout=30)
                if response.status_code == 200:
                    assert _etag_version(response) == _etag_version(current) + 1, (
                        "an If-Match write overwrote a change it had not seen")
                    observe(response)
                else:
                    assert response.status_code == 412, response.text
            else:
                response = http.post(f"{url}/batch", timeout=30, json={"requests": [
                    {"id": "p", "method": "PATCH", "path": f"/tasks/{task['id']}",
                     "body": {"status": "completed" if index % 8 == 3 else "todo"}}]})
                assert response.status_code == 200, response.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(80)))
    final = requests.get(f"{url}/tasks/{task['id']}", headers=session_headers, timeout=30)
    observe(final)
    assert not conflicts, conflicts[:3]

    log = [e for e in reversed(api.get("/events", query_string={"limit": 100}).get_json()["data"])
           if e["data"]["id"] == task["id"]]
    assert len(log) == _etag_version(final), "every version has exactly one event"
    for version, event in enumerate(log, start=1):
        if version in seen:
            assert event["data"] == seen[version], f"event of version {version} is not its content"
    for before, after in zip(log, log[1:]):
        for name, value in after.get("previousAttributes", {}).items():
            assert before["data"][name] == value, "the log's order is not the commit order"
    assert log[-1]["data"] == final.json()["data"]


def test_an_event_whose_publish_was_lost_arrives_within_a_heartbeat(
        short_replay_server, api, account, monkeypatch):
    """The in-process app commits a task but cannot publish it; the server's stream, idle
    (past its first heartbeat), still sends it at its next heartbeat (one second here)."""
    response = requests.get(f"{short_replay_server}{BASE}/stream", stream=True, timeout=(5, 10),
                            headers={"Authorization": f"Bearer {account.api.key}"})
    idle, data = threading.Event(), []

    def read():
        for line in response.iter_lines(decode_unicode=True):
            if line == ": ping":
                idle.set()
            elif line.startswith("data: ") and line != 'data: {"type":"connected"}':
                data.append(line[6:])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert idle.wait(timeout=10)

        real = redis_conn.client

        class Unpublished:
            """Redis as it is, except that a publish is lost."""

            def __getattr__(self, name):
                if name == "publish":
                    raise ConnectionError("Redis is away")
                return getattr(real(), name)

        monkeypatch.setattr(redis_conn, "client", Unpublished)
        lost = api.create("tasks", title="published nowhere")
        reader.join(timeout=10)
    finally:
        response.close()
    assert data and json.loads(data[0])["data"]["id"] == lost["id"]


def test_the_hub_puts_each_accounts_events_in_order_once_for_all_its_streams(
        app, api, account, count_queries):
    from api.streams import Hub

    for index in range(5):
        api.create("tasks", title=f"t{index}")
    log = _published(app, account.id)
    hub = Hub()
    with app.app_context():
        assert [i["position"] for i in hub._in_order(account.id, [log[0]])] == [1]
        with count_queries() as counter:
            # Position 4 overtakes 2 and 3: one read of the log brings them first.
            arrived = hub._in_order(account.id, [log[3]])
        assert [i["position"] for i in arrived] == [2, 3, 4]
        assert len([s for s in counter.statements if '"events"' in s[0]]) == 1
        assert all(i["sse"].startswith(f"id: {i['event']['id']}\n") for i in arrived)
        assert hub._in_order(account.id, [log[1]]) == []  # passed already: dropped
        assert [i["position"] for i in hub._in_order(account.id, [log[4]])] == [5]
