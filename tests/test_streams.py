"""Server-Sent Event streams (contract section 7, issue 5), over real HTTP against real gunicorn.

Every test talks to gunicorn processes started with the project's own `gunicorn.conf.py`
(gthread workers, `SSE_HEARTBEAT_SECONDS=1` so heartbeats and revocation are quick)
over the session's real database and Redis, and reads the streams with a small SSE
client written here over `requests` streaming (a reader thread feeding a queue).

Covered: the `connected` first message, the `retry:` hint and the response headers;
created/updated/deleted events as unnamed messages whose `id:` is the event id; the
entity path and `?types=` filters and their 400/404 errors; resume with `Last-Event-ID`
or `?lastEventId=` (exactly the missed events, then live ones, also while writes keep
coming); fan-out from one server to a stream on another, and a graceful shutdown that
ends open streams; account isolation (live and replayed); `?access_token=`, 401, 403 and
a revoked key's stream closing within a heartbeat; `: ping` heartbeats; closed streams
freeing their slots (no per-stream thread or Redis subscription left behind) while the
per-process cap answers 503 and ordinary requests still answer; a rolled-back
transaction publishing nothing; and the live page at `/`, self-contained, showing tasks
created, updated and deleted through the API within 2 s in headless Chromium (driven over
the DevTools protocol: `tests/browser.py`).
"""

import contextlib
import json
import os
import queue
import re
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests

from api import embedded_redis
from tests.procs import free_port, start_gunicorn, stop_process, wait_for

HEARTBEAT = 1.0
CONNECTED = '{"type":"connected"}'
EVENT_ID = re.compile(r"evt_[0-9A-HJKMNP-TV-Z]{26}")


# --- a minimal SSE client ------------------------------------------------------------------------


class SSEStream:
    """One open event stream; a background thread parses it into a queue of items.

    Items are `("message", {"id", "event", "data", "retry"})`, `("comment", text)` and,
    once the server ends the stream or the connection breaks, `("closed", None)`.
    """

    def __init__(self, response: requests.Response):
        self.response = response
        self.headers = response.headers
        self.raw_lines: list[str] = []
        self.items: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._read, name="sse-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        message: dict = {}
        data: list[str] = []
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                buffer += chunk
                while b"\n" in buffer:
                    raw, buffer = buffer.split(b"\n", 1)
                    line = raw.rstrip(b"\r").decode()
                    self.raw_lines.append(line)
                    if line == "":
                        if data or message:
                            self.items.put(("message", {"id": message.get("id"),
                                                        "event": message.get("event"),
                                                        "retry": message.get("retry"),
                                                        "data": "\n".join(data)}))
                        message, data = {}, []
                    elif line.startswith(":"):
                        self.items.put(("comment", line[1:].strip()))
                    else:
                        name, _, value = line.partition(":")
                        value = value[1:] if value.startswith(" ") else value
                        if name == "data":
                            data.append(value)
                        else:
                            message[name] = value
        except Exception:  # noqa: BLE001 - a broken connection simply ends the stream
            pass
        self.items.put(("closed", None))

    def next_item(self, timeout: float = 5.0):
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no stream item within {timeout}s") from None

    def next_message(self, timeout: float = 5.0) -> dict:
        """The next message, skipping heartbeat comments; fails if the stream closes."""
        deadline = time.monotonic() + timeout
        while True:
            kind, value = self.next_item(max(0.01, deadline - time.monotonic()))
            if kind == "message":
                return value
            assert kind != "closed", "the stream closed while a message was expected"

    def next_event(self, timeout: float = 5.0) -> dict:
        """The next event: an unnamed message whose `id:` is the event's id."""
        message = self.next_message(timeout)
        assert message["event"] is None, message
        event = json.loads(message["data"])
        assert message["id"] == event["id"], message
        return event

    def events(self, count: int, timeout: float = 5.0) -> list[dict]:
        return [self.next_event(timeout) for _ in range(count)]

    def wait_closed(self, timeout: float) -> list:
        """Wait for the end of the stream; returns the items seen before it."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            kind, value = self.next_item(max(0.01, deadline - time.monotonic()))
            if kind == "closed":
                return seen
            seen.append((kind, value))

    def close(self) -> None:
        """Hang up at once (shutting the socket down wakes the reader thread too)."""
        sock = _socket_of(self.response)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.response.close()
        self._thread.join(timeout=5)


def _socket_of(response: requests.Response):
    connection = getattr(response.raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        try:
            sock = response.raw._fp.fp.raw._sock
        except AttributeError:
            return None
    return sock


def get_stream(base: str, path: str = "", key: str | None = None, headers=None, params=None):
    """GET `/api/v1/stream{path}` as a streaming response (not yet read)."""
    headers = dict(headers or {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return requests.get(f"{base}/api/v1/stream{path}", headers=headers, params=params,
                        stream=True, timeout=(5, 30))


@pytest.fixture
def open_stream():
    """`open_stream(base, path, key=…)`: a 200 stream whose `connected` message was read."""
    opened: list[SSEStream] = []

    def opener(base, path="", key=None, headers=None, params=None) -> SSEStream:
        response = get_stream(base, path, key, headers, params)
        assert response.status_code == 200, response.text
        stream = SSEStream(response)
        opened.append(stream)
        stream.connected = stream.next_message()
        assert stream.connected["data"] == CONNECTED
        return stream

    yield opener
    for stream in opened:
        stream.close()


# --- REST over HTTP ------------------------------------------------------------------------------


class Rest:
    """`requests` against one server with one key."""

    def __init__(self, base: str, key: str):
        self.base = base
        self.key = key

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base}/api/v1{path}", headers=headers,
                                timeout=10, **kwargs)

    def create(self, path: str, **fields) -> dict:
        response = self.call("POST", f"/{path}", json=fields)
        assert response.status_code == 201, response.text
        return response.json()["data"]

    def task(self, title: str | None = None, **fields) -> dict:
        return self.create("tasks", title=title or f"task {uuid.uuid4().hex[:8]}", **fields)

    def user(self) -> dict:
        return self.create("users", name="Ada", email=f"ada.{uuid.uuid4().hex[:12]}@example.com")

    def update_task(self, task_id: str, **fields) -> dict:
        response = self.call("PATCH", f"/tasks/{task_id}", json=fields)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def delete_task(self, task_id: str) -> None:
        response = self.call("DELETE", f"/tasks/{task_id}")
        assert response.status_code == 204, response.text

    def event_log(self) -> list[dict]:
        """Every event of the account, oldest first (from `GET /api/v1/events`)."""
        events, cursor = [], None
        while True:
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            response = self.call("GET", "/events", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            events += body["data"]
            cursor = body["meta"]["nextCursor"]
            if cursor is None:
                return list(reversed(events))

    def new_key(self, *scopes: str) -> dict:
        response = self.call("POST", "/api-keys", json={"name": "stream test", "scopes": list(scopes)})
        assert response.status_code == 201, response.text
        return response.json()["data"]


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False and body["code"] == code, body
    assert body["error"]
    return body


# --- servers -------------------------------------------------------------------------------------


def server_env(backend_env, **extra) -> dict:
    return {**os.environ, **backend_env, "WEB_CONCURRENCY": "2", "WEB_THREADS": "32",
            "SSE_HEARTBEAT_SECONDS": str(HEARTBEAT), "LOG_LEVEL": "WARNING", **extra}


@pytest.fixture(scope="module")
def server(app, backend_env):
    """gunicorn with two workers and one-second heartbeats; yields its base URL."""
    port = free_port()
    process = start_gunicorn(server_env(backend_env), port)
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


@pytest.fixture
def rest(server, account) -> Rest:
    return Rest(server, account.api.key)


def worker_pids(master: subprocess.Popen) -> list[int]:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return [int(pid) for pid in children
            if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def redis_clients(connection: redis.Redis) -> tuple[int, int]:
    """(connections, of which pattern subscriptions) on a Redis, not counting our own."""
    clients = [c for c in connection.client_list() if c["id"] != str(connection.client_id())]
    return len(clients), sum(1 for c in clients if int(c.get("psub", 0)) > 0)


# --- the stream itself ---------------------------------------------------------------------------


def test_stream_opens_with_connected_message_retry_hint_and_sse_headers(server, rest, open_stream):
    stream = open_stream(server, key=rest.key)
    assert stream.headers["Content-Type"].split(";")[0] == "text/event-stream"
    assert stream.headers["Cache-Control"] == "no-cache"
    assert stream.headers["X-Accel-Buffering"] == "no"
    assert stream.connected["id"] is None and stream.connected["event"] is None
    assert stream.connected["data"] == CONNECTED
    assert int(stream.connected["retry"]) > 0
    # The very first block on the wire is the `retry:` hint and the exact connected line.
    first_block = stream.raw_lines[:stream.raw_lines.index("")]
    assert 'data: {"type":"connected"}' in first_block
    assert sorted(first_block) == ['data: {"type":"connected"}', f"retry: {stream.connected['retry']}"]


def test_created_updated_and_deleted_tasks_arrive_as_unnamed_messages_with_event_ids(
        server, rest, open_stream):
    stream = open_stream(server, key=rest.key)

    task = rest.task("Watch me", priority="high")
    created = stream.next_event()
    assert EVENT_ID.fullmatch(created["id"])
    assert created["type"] == "task.created"
    assert created["data"]["id"] == task["id"]
    assert created["data"] == task
    stored = rest.call("GET", f"/events/{created['id']}")
    assert stored.status_code == 200
    assert stored.json()["data"] == created

    updated_task = rest.update_task(task["id"], status="completed")
    updated = stream.next_event()
    assert updated["type"] == "task.updated"
    assert updated["data"] == updated_task
    assert updated["previousAttributes"]["status"] == "todo"
    assert updated["id"] > created["id"]

    rest.delete_task(task["id"])
    deleted = stream.next_event()
    assert deleted["type"] == "task.deleted"
    assert deleted["data"]["id"] == task["id"]
    assert deleted["id"] > updated["id"]
    assert [e["id"] for e in rest.event_log()] == [created["id"], updated["id"], deleted["id"]]


def test_entity_stream_carries_only_that_entitys_events(server, rest, open_stream):
    tasks = open_stream(server, "/tasks", key=rest.key)
    users = open_stream(server, "/users", key=rest.key)

    user = rest.user()
    rest.create("projects", name="Apollo")
    task = rest.task()
    second_user = rest.user()

    # Events travel in commit order, so anything leaked would arrive before these.
    first = tasks.next_event()
    assert (first["type"], first["data"]["id"]) == ("task.created", task["id"])
    assert [(e["type"], e["data"]["id"]) for e in users.events(2)] == [
        ("user.created", user["id"]), ("user.created", second_user["id"])]
    rest.update_task(task["id"], title="Renamed")
    assert tasks.next_event()["type"] == "task.updated"


def test_types_filter_passes_only_the_listed_types(server, rest, open_stream):
    stream = open_stream(server, key=rest.key, params={"types": "task.deleted,user.created"})

    task = rest.task()
    rest.update_task(task["id"], status="in_progress")
    user = rest.user()
    rest.delete_task(task["id"])
    sentinel = rest.user()

    received = [(e["type"], e["data"]["id"]) for e in stream.events(3)]
    assert received == [("user.created", user["id"]), ("task.deleted", task["id"]),
                        ("user.created", sentinel["id"])]

    # The filter combines with the entity path.
    only_deleted = open_stream(server, "/tasks", key=rest.key, params={"types": "task.deleted"})
    doomed = rest.task()
    rest.delete_task(doomed["id"])
    event = only_deleted.next_event()
    assert (event["type"], event["data"]["id"]) == ("task.deleted", doomed["id"])


def test_bad_filters_answer_400_or_404_in_the_json_envelope(server, rest):
    unknown_type = assert_error(get_stream(server, key=rest.key, params={"types": "task.exploded"}),
                                400, "VALIDATION_FAILED")
    assert "types" in unknown_type["details"]
    assert_error(get_stream(server, key=rest.key, params={"types": ","}), 400, "VALIDATION_FAILED")
    assert_error(get_stream(server, "/widgets", key=rest.key), 404, "NOT_FOUND")
    unknown_param = assert_error(get_stream(server, key=rest.key, params={"since": "yesterday"}),
                                 400, "VALIDATION_FAILED")
    assert "since" in unknown_param["details"]
    assert_error(get_stream(server, key=rest.key, headers={"Last-Event-ID": "x" * 100}),
                 400, "VALIDATION_FAILED")


# --- resume --------------------------------------------------------------------------------------


def test_resume_with_last_event_id_header_replays_exactly_the_missed_events(
        server, rest, open_stream):
    first = open_stream(server, key=rest.key)
    rest.task("one")
    rest.task("two")
    read = first.events(2)
    first.close()

    missed_task = rest.task("three while away")
    rest.update_task(missed_task["id"], status="completed")
    rest.task("four while away")
    log = rest.event_log()
    assert [e["id"] for e in log[:2]] == [e["id"] for e in read]
    missed = log[2:]
    assert [e["type"] for e in missed] == ["task.created", "task.updated", "task.created"]

    resumed = open_stream(server, key=rest.key, headers={"Last-Event-ID": read[-1]["id"]})
    assert resumed.events(3) == missed

    live_task = rest.task("five, live")
    live = resumed.next_event()
    assert (live["type"], live["data"]["id"]) == ("task.created", live_task["id"])
    sentinel = rest.task("six, live")
    # Nothing duplicated at the seam: the very next event is the newest one.
    assert resumed.next_event()["data"]["id"] == sentinel["id"]


def test_resume_with_last_event_id_query_parameter_and_filters(server, rest, open_stream):
    for index in range(3):
        rest.task(f"before {index}")
    rest.user()
    log = rest.event_log()
    after = log[1]["id"]

    resumed = open_stream(server, key=rest.key, params={"lastEventId": after})
    assert resumed.events(len(log) - 2) == log[2:]
    # The replay honours the entity path too.
    tasks_only = open_stream(server, "/tasks", key=rest.key, params={"lastEventId": after})
    assert tasks_only.next_event() == log[2]
    fresh = rest.task("after")
    assert tasks_only.next_event()["data"]["id"] == fresh["id"]
    assert resumed.next_event()["data"]["id"] == fresh["id"]


def test_reconnecting_while_writes_continue_loses_and_repeats_nothing(server, rest):
    """A writer keeps creating tasks while a reader hangs up and resumes again and again."""
    total = 30
    titles = [f"steady {index}" for index in range(total)]
    writer_done = threading.Event()

    def write():
        try:
            for title in titles:
                rest.task(title)
                time.sleep(0.02)
        finally:
            writer_done.set()

    received: list[dict] = []
    writer = threading.Thread(target=write, daemon=True)
    stream = SSEStream(get_stream(server, key=rest.key))
    assert stream.next_message()["data"] == CONNECTED
    writer.start()
    try:
        while len(received) < total:
            received += stream.events(min(3, total - len(received)), timeout=10)
            stream.close()
            stream = SSEStream(get_stream(server, key=rest.key,
                                          headers={"Last-Event-ID": received[-1]["id"]}))
            assert stream.next_message()["data"] == CONNECTED
    finally:
        stream.close()
        writer.join(timeout=30)
    assert writer_done.is_set()
    assert [e["data"]["title"] for e in received] == titles
    assert [e["id"] for e in received] == [e["id"] for e in rest.event_log()]


# --- fan-out, isolation --------------------------------------------------------------------------


def test_a_write_on_one_server_reaches_a_stream_on_another_and_shutdown_ends_streams(
        app, server, backend_env, account, open_stream):
    """Two separate gunicorn servers share only the database and Redis."""
    port = free_port()
    other = start_gunicorn(server_env(backend_env, WEB_CONCURRENCY="1"), port)
    other_base = f"http://127.0.0.1:{port}"
    try:
        on_this = open_stream(server, key=account.api.key)
        # The first stream of a fresh process, written to at once: the `connected`
        # message must not come before the process listens to Redis.
        on_other = open_stream(other_base, key=account.api.key)
        task = Rest(server, account.api.key).task("written on server A")
        event = on_other.next_event()
        assert (event["type"], event["data"]["id"]) == ("task.created", task["id"])
        assert on_this.next_event() == event

        back = Rest(other_base, account.api.key).task("written on server B")
        assert on_this.next_event()["data"]["id"] == back["id"]
        assert on_other.next_event()["data"]["id"] == back["id"]
    finally:
        started = time.monotonic()
        stop_process(other)
        stopped_in = time.monotonic() - started
    # A graceful shutdown ends the open stream instead of waiting out WEB_GRACEFUL_TIMEOUT.
    on_other.wait_closed(timeout=5)
    assert other.returncode == 0
    assert stopped_in < 10


def test_a_stream_never_carries_another_accounts_events(server, account, other_account,
                                                        open_stream):
    mine = Rest(server, account.api.key)
    theirs = Rest(server, other_account.api.key)
    their_first = theirs.task("account B first")
    their_stream = open_stream(server, key=theirs.key)
    my_stream = open_stream(server, key=mine.key)

    secret = mine.task("account A only")
    mine.user()
    their_task = theirs.task("account B")
    assert their_stream.next_event()["data"]["id"] == their_task["id"]
    assert my_stream.next_event()["data"]["id"] == secret["id"]
    assert my_stream.next_event()["type"] == "user.created"
    mine_again = mine.task("account A again")
    assert my_stream.next_event()["data"]["id"] == mine_again["id"]

    # Replaying from the account's first event gives only its own events; another
    # account's event id is not in its log, so resuming from one is a reset.
    their_log = theirs.event_log()
    assert [e["data"]["id"] for e in their_log] == [their_first["id"], their_task["id"]]
    replay = open_stream(server, key=theirs.key, params={"lastEventId": their_log[0]["id"]})
    assert replay.next_event() == their_log[1]
    my_first = mine.event_log()[0]["id"]
    foreign = open_stream(server, key=theirs.key, params={"lastEventId": my_first})
    assert json.loads(foreign.next_message()["data"]) == {"type": "reset"}
    sentinel = theirs.task("account B again")
    assert replay.next_event()["data"]["id"] == sentinel["id"]


def test_a_rolled_back_transaction_publishes_nothing(app, server, rest, account, open_stream):
    from api.services import events
    from api.store import transaction

    stream = open_stream(server, key=rest.key)
    ghost = {"id": "tsk_ghost", "title": "never committed"}

    class Abort(Exception):
        pass

    with app.app_context(), pytest.raises(Abort), transaction():
        events.emit(account.id, "task.created", [ghost])
        raise Abort
    sentinel = rest.task("committed")
    event = stream.next_event()
    assert event["data"]["id"] == sentinel["id"]
    assert all(e["data"]["id"] != "tsk_ghost" for e in rest.event_log())


# --- auth ----------------------------------------------------------------------------------------


def test_access_token_query_parameter_opens_a_stream(server, rest, account, open_stream):
    reader = account.key("read")
    stream = open_stream(server, params={"access_token": reader.key})
    task = rest.task("seen through access_token")
    assert stream.next_event()["data"]["id"] == task["id"]
    # Only the stream routes take a key from the query string.
    listed = requests.get(f"{server}/api/v1/tasks", params={"access_token": reader.key}, timeout=5)
    assert listed.status_code in (400, 401), listed.text
    assert listed.json()["success"] is False


def test_stream_without_a_key_is_401_and_without_read_scope_is_403(server, account):
    assert_error(get_stream(server), 401, "UNAUTHORIZED")
    assert_error(get_stream(server, params={"access_token": "sk_" + "x" * 40}), 401, "UNAUTHORIZED")
    assert_error(get_stream(server, key="sk_" + "y" * 40), 401, "UNAUTHORIZED")
    writer = account.key("write")
    body = assert_error(get_stream(server, key=writer.key), 403, "INSUFFICIENT_SCOPE")
    assert body["details"]["required"] == "read"
    assert_error(get_stream(server, "/tasks", params={"access_token": writer.key}),
                 403, "INSUFFICIENT_SCOPE")


def test_revoking_a_key_closes_its_open_stream_within_a_heartbeat(server, rest, open_stream):
    created = rest.new_key("read")
    stream = open_stream(server, "/tasks", params={"access_token": created["key"]})
    bystander = open_stream(server, "/tasks", key=rest.key)
    task = rest.task("before revocation")
    assert stream.next_event()["data"]["id"] == task["id"]

    revoked = rest.call("DELETE", f"/api-keys/{created['id']}")
    assert revoked.status_code == 204
    started = time.monotonic()
    seen = stream.wait_closed(timeout=HEARTBEAT * 2 + 1.5)
    assert time.monotonic() - started < HEARTBEAT * 2 + 1.5
    assert all(kind == "comment" for kind, _ in seen), seen

    assert_error(get_stream(server, params={"access_token": created["key"]}), 401, "UNAUTHORIZED")
    # Other keys' streams stay open.
    later = rest.task("after revocation")
    assert [e["data"]["id"] for e in bystander.events(2)] == [task["id"], later["id"]]


def test_heartbeat_ping_arrives_within_two_intervals(server, rest, open_stream):
    stream = open_stream(server, key=rest.key)
    started = time.monotonic()
    kind, value = stream.next_item(timeout=HEARTBEAT * 2 + 0.5)
    assert (kind, value) == ("comment", "ping")
    assert ": ping" in stream.raw_lines
    assert stream.next_item(timeout=HEARTBEAT * 2 + 0.5) == ("comment", "ping")
    assert time.monotonic() - started < HEARTBEAT * 4 + 1


# --- resources -----------------------------------------------------------------------------------


def test_closed_streams_free_their_slots_and_the_cap_never_starves_requests(
        app, backend_env, account, tmp_path):
    """One worker with 4 threads and at most 2 streams: hang up, and the slots come back.

    The server gets a Redis of its own (the embedded one, as with `REDIS_URL` unset), so
    that its connections can be counted.
    """
    cap, threads = 2, 4
    port = free_port()
    env = server_env(backend_env, WEB_CONCURRENCY="1", WEB_THREADS=str(threads),
                     SSE_MAX_STREAMS=str(cap), VAR_DIR=str(tmp_path))
    del env["REDIS_URL"]
    master = start_gunicorn(env, port)
    own_redis = redis.Redis(unix_socket_path=str(embedded_redis.socket_path(tmp_path)))
    base = f"http://127.0.0.1:{port}"
    key = account.api.key
    streams: list[SSEStream] = []

    def fill_up(timeout: float) -> None:
        def one_more():
            response = get_stream(base, key=key)
            if response.status_code == 503:
                response.close()
                return False
            assert response.status_code == 200, response.text
            stream = SSEStream(response)
            assert stream.next_message()["data"] == CONNECTED
            streams.append(stream)
            return True

        while len(streams) < cap:
            wait_for(one_more, timeout=timeout, interval=0.3, message="a free stream slot")

    def hang_up_all() -> None:
        while streams:
            streams.pop().close()

    try:
        [worker] = worker_pids(master)
        for _round in range(4):
            fill_up(timeout=HEARTBEAT * 4 + 2)
            # At the cap: one more stream is refused, ordinary requests still answer fast.
            refused = get_stream(base, key=key)
            body = assert_error(refused, 503, "SERVICE_UNAVAILABLE")
            assert refused.headers["Retry-After"]
            assert body["error"]
            started = time.monotonic()
            listed = requests.get(f"{base}/api/v1/tasks", headers={"Authorization": f"Bearer {key}"},
                                  timeout=5)
            assert listed.status_code == 200
            assert time.monotonic() - started < 1.0
            # Streams share the process's one Redis subscription.
            connections, subscriptions = redis_clients(own_redis)
            assert subscriptions == 1
            assert connections <= threads + 1
            hang_up_all()
        # Four rounds of two streams each left no thread or Redis connection behind: the
        # thread pool holds at most `threads`, the Redis pool one per busy thread, plus the hub.
        assert thread_count(worker) <= threads + 4
        connections, subscriptions = redis_clients(own_redis)
        assert subscriptions == 1
        assert connections <= threads + 1
        fill_up(timeout=HEARTBEAT * 4 + 2)
        task = Rest(base, key).task("still live after reuse")
        for stream in streams:
            assert stream.next_event()["data"]["id"] == task["id"]
    finally:
        hang_up_all()
        stop_process(master)


# --- the live page -------------------------------------------------------------------------------


def test_live_page_is_plain_html_without_external_assets(server):
    for path in ("/", "/live"):
        page = requests.get(f"{server}{path}", timeout=5)
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        html = page.text
        assert "<script" in html and "EventSource" in html
        assert not re.search(r"https?://", html), "the page must not load anything from outside"
        assert not re.search(r"""(src|href)\s*=\s*["']?//""", html)
        assert "/stream/tasks" in html and "/api/v1" in html


def test_live_page_in_headless_chromium_shows_api_changes_within_two_seconds(
        server, rest, browser):
    existing = rest.task(f"Loaded with the page {uuid.uuid4().hex[:6]}")
    browser.call("Page.navigate", url=f"{server}/#key={rest.key}")
    tasks_text = "document.querySelector('#tasks')?.textContent ?? ''"
    wait_for(lambda: browser.evaluate("document.querySelector('#state')?.textContent ?? ''")
             .startswith("Live:"), timeout=10, interval=0.05, message="the page's stream to open")
    assert existing["title"] in browser.evaluate(tasks_text)
    # The key has left the address bar (kept for the tab in sessionStorage).
    assert rest.key not in browser.evaluate("location.href")
    assert browser.evaluate("location.hash") == ""
    state = "document.querySelector('#state').textContent"
    shown_rows = "document.querySelectorAll('#tasks tr').length"

    def counted() -> int:
        return int(re.match(r"Live: (\d+) task", browser.evaluate(state)).group(1))

    assert counted() == browser.evaluate(shown_rows) == total_tasks(rest)

    title = f"Made through the API {uuid.uuid4().hex[:6]}"
    created = rest.task(title)
    wait_for(lambda: title in browser.evaluate(tasks_text), timeout=2.0, interval=0.05,
             message="the new task to appear in the page")
    assert counted() == browser.evaluate(shown_rows) == total_tasks(rest)

    status = f"document.querySelector('tr[data-id=\"{created['id']}\"] td.status').textContent"
    assert browser.evaluate(status) == "todo"
    rest.update_task(created["id"], status="completed")
    wait_for(lambda: browser.evaluate(status) == "completed", timeout=2.0, interval=0.05,
             message="the update to show in the page")

    rest.delete_task(created["id"])
    wait_for(lambda: title not in browser.evaluate(tasks_text), timeout=2.0, interval=0.05,
             message="the deleted task to leave the page")
    assert existing["title"] in browser.evaluate(tasks_text)
    assert counted() == browser.evaluate(shown_rows) == total_tasks(rest)


def total_tasks(rest: Rest) -> int:
    response = rest.call("GET", "/tasks", params={"limit": 1})
    assert response.status_code == 200
    return response.json()["meta"]["total"]
