"""`make check-consistency`: concurrent writers on a few shared records, then consistency checks.

Starts PostgreSQL's fresh schema (dropped at the end), Redis (`REDIS_URL`, else db 14 of the
local server, else the embedded one; flushed at start and end), two gunicorn servers on
different ports (2 processes of 8 threads each, `SSE_REPLAY_LIMIT=200`) and one RQ worker.

Loads, for `CONSISTENCY_SECONDS` (default 300), one small shared set of records (2 projects,
3 users, about 25 tasks, topped up as deletes shrink it) from 8 writer threads over both
servers: single PATCH, PUT and DELETE (half of them with `If-Match` from a fresh GET), bulk
update, create and delete, file imports (jobs run by the worker), batches of PATCHes (atomic
or not), GraphQL `updateTask`, and now and then a user deletion (its tasks' `assigneeId` is
set to null by cascade); two readers GET tasks and note each body with its ETag. Every write
sets a title no other write uses, so two writes never leave the same content. Meanwhile four
SSE clients (`/stream` and `/stream/tasks`) drop their connection at random moments and resume
with `Last-Event-ID`, some after a 5-15 s pause, and a poller follows `GET /events?after=`.

When the writers stop, it waits (bounded) for the worker's jobs and for the streams and the
poller to reach the end of the event log, read from the database in commit order (the events
table's `position` column), and checks:

1. one content per ETag: no (id, version) was ever answered with two different contents;
2. If-Match: a successful write conditional on version v answered version v + 1;
3. each created/updated event's data is the content clients saw at that version (a record's
   version counted along its events: created 1, each update, cascades included, + 1);
4. one event per committed write: each written content is carried by exactly one event, at the
   version the write answered; no two events for one answered version; each stored row is its
   last event (version and content); a deleted record has exactly one deleted event, its last;
5. each stream, between resets, and the poller, with none, received exactly the log's events
   (filtered as asked) in commit order from where it resumed: no gap, no duplicate; an error
   answer to the poller is a violation too;
6. fresh reads (each process caches records): a GET sent after a single or batch write of its
   record was answered shows that version or a later one, and one sent after the record's
   delete was answered does not find it.

Progress goes to stderr; the report, a section for bench/RESULTS.md, to stdout. Exit status 1
on any violation.
"""

import contextlib
import http.client
import itertools
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import redis

from api import create_app, embedded_redis, migrate
from api.entities import ENTITIES
from api.models import ApiKey
from api.services import accounts
from api.store import db
from bench.soak import _start_worker
from tests import backends
from tests.procs import free_port, start_gunicorn, stop_process, wait_for

DURATION = int(os.environ.get("CONSISTENCY_SECONDS", "300"))
LOCAL_REDIS = "redis://127.0.0.1:6379/14"
GENEROUS = "100000000 per minute"
TASKS = 25
WRITERS = 8
READERS = 2
STREAMS = (("/api/v1/stream", 0), ("/api/v1/stream/tasks", 1), ("/api/v1/stream", 1),
           ("/api/v1/stream/tasks", 0))
LONG_PAUSE_CHANCE = 0.3
POLL_LIMIT = 100
MAX_ROUNDS = 1_000_000
CALL_TIMEOUT = 30
SETTLE_TIMEOUT = 120
JOB_DONE = ("succeeded", "failed", "canceled")
PRIORITIES = ("low", "medium", "high")
STATUSES = ("todo", "in_progress", "completed")
UPDATE_TASK = ("mutation($id: ID!, $input: UpdateTaskInput!) "
               "{ updateTask(id: $id, input: $input) { id title priority updatedAt } }")


def say(message: str) -> None:
    print(f"consistency: {message}", file=sys.stderr, flush=True)


def rounds(stop: threading.Event, limit: int = MAX_ROUNDS):
    """At most `limit` rounds of a loop, ending early once `stop` is set."""
    for _ in range(limit):
        if stop.is_set():
            return
        yield


def canonical(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def parse_etag(etag: str | None) -> tuple[str, int] | None:
    """`"tsk_….7"` → ("tsk_…", 7)."""
    if not etag:
        return None
    record_id, _, version = etag.strip('"').rpartition(".")
    return (record_id, int(version)) if version.isdigit() else None


@dataclass
class Reply:
    status: int
    etag: str | None
    body: dict | None
    sent: float = 0.0  # time.monotonic() when the request was sent, and when its answer came
    answered: float = 0.0


@dataclass
class Observations:
    """What the clients were answered, from every thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    contents: dict = field(default_factory=lambda: defaultdict(dict))  # (id, v) -> {content: source}
    writes: list = field(default_factory=list)  # (id, version, content, source)
    if_match: list = field(default_factory=list)  # (id, version based on, version answered, source)
    statuses: Counter = field(default_factory=Counter)  # (request kind, status)
    jobs: list = field(default_factory=list)
    reads: list = field(default_factory=list)  # (id, version answered, when the GET was sent)
    answered: list = field(default_factory=list)  # (id, version written, when that was answered)
    deleted: list = field(default_factory=list)  # (id, when its delete was answered)

    def record(self, source: str, etag: str | None, data: dict, write: bool,
               reply: Reply | None = None) -> int | None:
        """Note a record answered with its ETag (by `reply`, when its timing is known: a
        write's answer, a read's sending); returns the version it names."""
        parsed = parse_etag(etag)
        if parsed is None:
            return None
        content = canonical(data)
        with self.lock:
            self.contents[parsed].setdefault(content, source)
            if write:
                self.writes.append((*parsed, content, source))
            if reply is not None:
                (self.answered if write else self.reads).append(
                    (*parsed, reply.answered if write else reply.sent))
        return parsed[1]


class Client:
    """HTTP calls to a random one of the servers, each counted by kind and status."""

    def __init__(self, ports: list[int], key: str, observations: Observations):
        self.ports, self.key, self.seen = ports, key, observations

    def call(self, kind: str, method: str, path: str, body=None, raw: bytes | None = None,
             headers: dict | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", random.choice(self.ports), timeout=CALL_TIMEOUT)
        all_headers = {"Authorization": f"Bearer {self.key}", **(headers or {})}
        if body is not None:
            raw = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        sent = time.monotonic()
        try:
            conn.request(method, path, body=raw, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
            reply = Reply(response.status, response.getheader("ETag"),
                          json.loads(data) if data.startswith(b"{") else None, sent, time.monotonic())
        except OSError:
            reply = Reply(599, None, None)
        finally:
            conn.close()
        with self.seen.lock:
            self.seen.statuses[(kind, reply.status)] += 1
        return reply


class Pool:
    """The shared records every thread picks from."""

    def __init__(self):
        self.lock = threading.Lock()
        self.tasks: list[str] = []
        self.users: list[str] = []
        self.projects: list[str] = []

    def pick(self, low: int, high: int) -> list[str]:
        with self.lock:
            return random.sample(self.tasks, min(len(self.tasks), random.randint(low, high)))

    def one(self) -> str | None:
        with self.lock:
            return random.choice(self.tasks) if self.tasks else None

    def add(self, ids) -> None:
        with self.lock:
            self.tasks.extend(i for i in ids if i not in self.tasks)

    def remove(self, ids: list[str]) -> None:
        with self.lock:
            self.tasks = [i for i in self.tasks if i not in ids]

    def replace(self, ids: list[str]) -> None:
        with self.lock:
            self.tasks = list(ids)

    def references(self) -> dict:
        with self.lock:
            return {"assigneeId": random.choice([None, *self.users]),
                    "projectId": random.choice([None, *self.projects])}


class Load:
    """One operation per method; `run_writer` and `run_reader` loop over them."""

    def __init__(self, client: Client, pool: Pool, observations: Observations):
        self.client, self.pool, self.seen = client, pool, observations
        self.titles = itertools.count()
        self.topping_up = threading.Lock()

    def title(self, kind: str) -> str:
        return f"{kind} {next(self.titles)}"

    def changes(self, kind: str) -> dict:
        return {"title": self.title(kind), "priority": random.choice(PRIORITIES)}

    def read(self, task_id: str) -> int | None:
        """GET a task and note what it answered; returns the version its ETag names."""
        reply = self.client.call("GET /tasks/{id}", "GET", f"/api/v1/tasks/{task_id}")
        if reply.status == 404:
            self.pool.remove([task_id])
        if reply.status != 200:
            return None
        return self.seen.record("GET", reply.etag, reply.body["data"], write=False, reply=reply)

    def single_write(self, method: str, body: dict, conditional: bool) -> None:
        """PATCH or PUT one task, `conditional` ones with If-Match from a GET just before."""
        task_id = self.pool.one()
        base = self.read(task_id) if task_id and conditional else None
        if task_id is None or (conditional and base is None):
            return
        kind = f"{method} /tasks/{{id}}" + (" If-Match" if conditional else "")
        headers = {"If-Match": f'"{task_id}.{base}"'} if conditional else None
        reply = self.client.call(kind, method, f"/api/v1/tasks/{task_id}", body, headers=headers)
        if reply.status == 404:
            self.pool.remove([task_id])
        if reply.status != 200:
            return
        answered = self.seen.record(kind, reply.etag, reply.body["data"], write=True, reply=reply)
        if conditional:
            with self.seen.lock:
                self.seen.if_match.append((task_id, base, answered, kind))

    def patch(self) -> None:
        self.single_write("PATCH", self.changes("patch"), random.random() < 0.5)

    def put(self) -> None:
        body = {**self.changes("put"), "status": random.choice(STATUSES), **self.pool.references()}
        self.single_write("PUT", body, random.random() < 0.5)

    def delete(self) -> None:
        task_id = self.pool.one()
        conditional = random.random() < 0.5
        base = self.read(task_id) if task_id and conditional else None
        if task_id is None or (conditional and base is None):
            return
        kind = "DELETE /tasks/{id}" + (" If-Match" if conditional else "")
        headers = {"If-Match": f'"{task_id}.{base}"'} if conditional else None
        reply = self.client.call(kind, "DELETE", f"/api/v1/tasks/{task_id}", headers=headers)
        if reply.status == 204:
            with self.seen.lock:
                self.seen.deleted.append((task_id, reply.answered))
        if reply.status in (204, 404):
            self.pool.remove([task_id])

    def bulk_patch(self) -> None:
        updates = [{"id": task_id, **self.changes("bulk")} for task_id in self.pool.pick(2, 8)]
        if updates:
            self.client.call("PATCH /tasks/bulk", "PATCH", "/api/v1/tasks/bulk",
                             {"updates": updates, "options": {"skipInvalid": random.random() < 0.7}})

    def bulk_delete(self) -> None:
        ids = self.pool.pick(1, 2)
        if ids and self.client.call("POST /tasks/bulk-delete", "POST", "/api/v1/tasks/bulk-delete",
                                    {"ids": ids}).status == 200:
            self.pool.remove(ids)

    def bulk_create(self, count: int = 3) -> None:
        items = [{"title": self.title("import"), **self.pool.references()} for _ in range(count)]
        reply = self.client.call("POST /import/tasks", "POST", "/api/v1/import/tasks", {"items": items})
        if reply.status == 201:
            self.pool.add(item["id"] for item in reply.body["data"]["items"])

    def file_import(self) -> None:
        lines = "".join(json.dumps({"title": self.title("file"), "priority": random.choice(PRIORITIES)})
                        + "\n" for _ in range(3))
        boundary = "consistencyboundary"
        raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n"
               f"Content-Type: application/x-ndjson\r\n\r\n{lines}\r\n--{boundary}--\r\n").encode()
        reply = self.client.call("POST /import/tasks/file", "POST", "/api/v1/import/tasks/file", raw=raw,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if reply.status == 202:
            with self.seen.lock:
                self.seen.jobs.append(reply.body["data"]["id"])

    def batch(self) -> None:
        atomic = random.random() < 0.5
        kind = "POST /batch" + (" atomic" if atomic else "")
        requests = [{"id": f"r{i}", "method": "PATCH", "path": f"/tasks/{task_id}",
                     "body": self.changes("batch")} for i, task_id in enumerate(self.pool.pick(2, 4))]
        if not requests:
            return
        reply = self.client.call(kind, "POST", "/api/v1/batch", {"atomic": atomic, "requests": requests})
        if reply.status != 200:
            return
        for response in reply.body["responses"]:
            with self.seen.lock:
                self.seen.statuses[(f"{kind}: PATCH", response["status"])] += 1
            if response["status"] == 200:
                self.seen.record(kind, response["headers"].get("ETag"), response["body"]["data"],
                                 write=True, reply=reply)

    def graphql(self) -> None:
        task_id = self.pool.one()
        if task_id is None:
            return
        reply = self.client.call("POST /graphql updateTask", "POST", "/api/v1/graphql",
                                 {"query": UPDATE_TASK,
                                  "variables": {"id": task_id, "input": self.changes("graphql")}})
        errors = (reply.body or {}).get("errors") or []
        if errors:
            code = errors[0].get("extensions", {}).get("code")
            with self.seen.lock:
                self.seen.statuses[("POST /graphql updateTask: error", code)] += 1

    def replace_user(self) -> None:
        """Delete a user (its tasks' `assigneeId` goes null, a cascaded update) and make another."""
        with self.pool.lock:
            if not self.pool.users:
                return
            user_id = random.choice(self.pool.users)
        self.client.call("DELETE /users/{id}", "DELETE", f"/api/v1/users/{user_id}")
        with self.pool.lock:
            if user_id not in self.pool.users:
                return  # another writer deleted and replaced it meanwhile
            self.pool.users.remove(user_id)
        self.add_user()

    def add_user(self) -> None:
        name = self.title("user").replace(" ", "")
        reply = self.client.call("POST /users", "POST", "/api/v1/users",
                                 {"name": name, "email": f"{name}@example.com"})
        if reply.status == 201:
            self.seen.record("POST /users", reply.etag, reply.body["data"], write=True)
            with self.pool.lock:
                self.pool.users.append(reply.body["data"]["id"])

    def top_up(self) -> None:
        """Bring the task set back to TASKS records (one thread at a time), by bulk or single POST."""
        missing = TASKS - len(self.pool.tasks)
        if missing <= 0 or not self.topping_up.acquire(blocking=False):
            return
        try:
            if random.random() < 0.5:
                self.bulk_create(missing)
                return
            reply = self.client.call("POST /tasks", "POST", "/api/v1/tasks",
                                     {"title": self.title("post"), **self.pool.references()})
            if reply.status == 201:
                self.seen.record("POST /tasks", reply.etag, reply.body["data"], write=True)
                self.pool.add([reply.body["data"]["id"]])
        finally:
            self.topping_up.release()

    def refresh(self) -> None:
        """Take the newest TASKS tasks as the set (file imports add tasks no reply named)."""
        reply = self.client.call("GET /tasks", "GET", "/api/v1/tasks?limit=100&sort=-createdAt")
        if reply.status == 200:
            self.pool.replace([task["id"] for task in reply.body["data"]][:TASKS])

    def run_writer(self, stop: threading.Event) -> None:
        actions = ((self.patch, 30), (self.bulk_patch, 25), (self.put, 8), (self.batch, 10),
                   (self.graphql, 8), (self.delete, 4), (self.bulk_delete, 2), (self.bulk_create, 2),
                   (self.file_import, 1), (self.replace_user, 0.3))
        choices, weights = zip(*actions)
        for _ in rounds(stop):
            self.top_up()
            random.choices(choices, weights)[0]()

    def run_reader(self, stop: threading.Event) -> None:
        last_refresh = time.monotonic()
        for _ in rounds(stop):
            task_id = self.pool.one()
            if task_id:
                self.read(task_id)
            if time.monotonic() - last_refresh > 3:
                self.refresh()
                last_refresh = time.monotonic()
            time.sleep(0.01)


class StreamClient(threading.Thread):
    """An SSE client over a raw connection that drops it at random moments and resumes with
    Last-Event-ID (sometimes after a long pause). `items` is what it went through, in order:
    ("connect", the Last-Event-ID it sent), ("event", id) and ("reset", None)."""

    def __init__(self, number: int, port: int, path: str, key: str, stop: threading.Event,
                 settle: threading.Event):
        super().__init__(daemon=True)
        self.name = f"stream {number} ({path.removeprefix('/api/v1')}, port {port})"
        self.port, self.path, self.key, self.stop, self.settle = port, path, key, stop, settle
        self.items: list[tuple[str, str | None]] = []
        self.received: set[str] = set()
        self.last_id: str | None = None
        self.messages = self.reconnects = self.long_pauses = self.resets = 0
        self.refused = Counter()
        self.rng = random.Random(number)

    def run(self):
        for _ in rounds(self.stop):
            if not self.session():
                self.stop.wait(1)
            if self.stop.is_set():
                return
            self.reconnects += 1
            if self.rng.random() < LONG_PAUSE_CHANCE and not self.settle.is_set():
                self.long_pauses += 1
                self.settle.wait(self.rng.uniform(5, 15))
            else:
                self.stop.wait(self.rng.uniform(0, 0.3))

    def session(self) -> bool:
        """One connection, read until a random moment (until the end once settling); False if it
        failed or was refused."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT)
        sent_id = self.last_id
        headers = {"Authorization": f"Bearer {self.key}"}
        if sent_id:
            headers["Last-Event-ID"] = sent_id
        try:
            conn.request("GET", self.path, headers=headers)
            response = conn.getresponse()
            if response.status != 200:
                self.refused[response.status] += 1
                return False
            deadline = time.monotonic() + self.rng.uniform(0.5, 6)
            message = {}
            while not self.stop.is_set() and (self.settle.is_set() or time.monotonic() < deadline):
                line = response.fp.readline()
                if not line:
                    break
                text = line.decode().rstrip("\r\n")
                if not text:
                    self.dispatch(message, sent_id)
                    message = {}
                elif not text.startswith(":"):  # a comment (`: ping`) otherwise
                    name, _, value = text.partition(":")
                    message[name] = value.removeprefix(" ")
            return True
        except OSError:
            self.refused["connection error"] += 1
            return False
        finally:
            conn.close()

    def dispatch(self, message: dict, sent_id: str | None) -> None:
        if "data" not in message:
            return
        self.messages += 1
        payload = json.loads(message["data"])
        kind = payload.get("type")
        if kind == "connected":
            self.items.append(("connect", sent_id))
        elif kind == "reset":
            self.resets += 1
            self.items.append(("reset", None))
        elif "id" in message:
            self.last_id = message["id"]
            self.received.add(message["id"])
            self.items.append(("event", message["id"]))


class Poller(threading.Thread):
    """Follows `GET /events?after=<id>&limit=100` forward from an early event, like a poller."""

    def __init__(self, client: Client, start_id: str, stop: threading.Event):
        super().__init__(daemon=True)
        self.name = "poller"
        self.client, self.stop = client, stop
        self.items: list[tuple[str, str | None]] = [("connect", start_id)]
        self.last_id = start_id
        self.calls = 0
        self.errors: list[str] = []
        self.failing = False

    def run(self):
        for _ in rounds(self.stop):
            self.calls += 1
            reply = self.client.call("GET /events?after=", "GET",
                                     f"/api/v1/events?after={self.last_id}&limit={POLL_LIMIT}")
            events = (reply.body or {}).get("data")
            self.failing = reply.status != 200 or not isinstance(events, list)
            if self.failing:
                code = (reply.body or {}).get("code")
                self.errors.append(f"poller: GET /events?after={self.last_id} answered {reply.status} {code}")
                self.stop.wait(2)
                continue
            self.items.extend(("event", event["id"]) for event in events)
            if events:
                self.last_id = events[-1]["id"]
            if len(events) < POLL_LIMIT:
                self.stop.wait(0.5)


@dataclass
class Step:
    """One event of a record's history, with the version it gives the record."""

    event_id: str
    action: str
    version: int
    content: str


def histories(log: list[dict]) -> dict[str, list[Step]]:
    """Each record's events in commit order, versioned: created 1, each update + 1."""
    result: dict[str, list[Step]] = defaultdict(list)
    for event in log:
        entity, _, action = event["type"].partition(".")
        if entity not in ENTITIES:
            continue
        steps = result[event["data"]["id"]]
        version = steps[-1].version if steps else 0
        if action == "created":
            version = 1
        elif action == "updated":
            version += 1
        steps.append(Step(event["id"], action, version, canonical(event["data"])))
    return result


def summary(content: str) -> str:
    data = json.loads(content)
    return f"{data.get('title') or data.get('name')!r} at {data.get('updatedAt')}"


def check_etags(seen: Observations) -> list[str]:
    return [f"{rid}.{version}: " + "; ".join(f"{summary(c)} (from {source})" for c, source in by.items())
            for (rid, version), by in seen.contents.items() if len(by) > 1]


def check_fresh_reads(seen: Observations) -> list[str]:
    """A GET sent after a write of its record was answered shows that write or a later one,
    and a GET sent after the record's delete was answered does not find it (each process
    caches records: `api.services.record_cache`)."""
    newest: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for record_id, version, when in seen.answered:
        newest[record_id].append((when, version))
    gone = {}
    for record_id, when in seen.deleted:
        gone[record_id] = min(when, gone.get(record_id, when))
    violations = []
    for record_id, version, sent in seen.reads:
        known = max((v for when, v in newest[record_id] if when < sent), default=0)
        if known > version:
            violations.append(f"{record_id}: a GET sent after version {known} was answered got {version}")
        if record_id in gone and gone[record_id] < sent:
            violations.append(f"{record_id}: a GET sent after its delete was answered found "
                              f"version {version}")
    return violations


def check_if_match(seen: Observations) -> list[str]:
    return [f"{rid}: {source} on version {base} answered version {answered}"
            for rid, base, answered, source in seen.if_match if answered != base + 1]


def check_event_data(steps: dict[str, list[Step]], seen: Observations) -> list[str]:
    violations = []
    for rid, history in steps.items():
        for step in history:
            if step.action == "deleted":
                continue
            answered = seen.contents.get((rid, step.version), {})
            wrong = [(c, source) for c, source in answered.items() if c != step.content]
            if wrong:
                violations.append(f"{rid}.{step.version}: event {step.event_id} has {summary(step.content)}, "
                                  f"{wrong[0][1]} answered {summary(wrong[0][0])}")
    return violations


def interleaved(*groups: list[str]) -> list[str]:
    """Several kinds of violations, alternating, so that the first examples show each kind."""
    return [v for row in itertools.zip_longest(*groups) for v in row if v is not None]


def writes_without_their_event(steps: dict[str, list[Step]], seen: Observations) -> list[str]:
    violations = []
    for rid, version, content, source in seen.writes:
        carriers = [s for s in steps.get(rid, []) if s.content == content and s.action != "deleted"]
        if len(carriers) != 1:
            violations.append(f"{rid}.{version} ({source}): {len(carriers)} events carry its content")
        elif carriers[0].version != version:
            violations.append(f"{rid}.{version} ({source}): its event {carriers[0].event_id} is "
                              f"version {carriers[0].version} in the log")
    return violations


def versions_with_two_events(steps: dict[str, list[Step]], seen: Observations) -> list[str]:
    violations = []
    for (rid, version), answered in seen.contents.items():
        carriers = [s.event_id for s in steps.get(rid, []) if s.content in answered and s.action != "deleted"]
        if len(carriers) > 1:
            violations.append(f"{rid}.{version}: {len(carriers)} events ({', '.join(carriers)}) "
                              "carry contents answered as this version")
    return violations


def rows_against_events(steps: dict[str, list[Step]], rows: dict[str, tuple[int, str]]) -> list[str]:
    violations = [f"{rid}: stored, but no event" for rid in rows.keys() - steps.keys()]
    for rid, history in steps.items():
        violations.extend(f"{rid}: {problem}" for problem in history_problems(history, rows.get(rid)))
    return violations


def check_one_event_per_write(steps: dict[str, list[Step]], seen: Observations,
                              rows: dict[str, tuple[int, str]]) -> list[str]:
    return interleaved(writes_without_their_event(steps, seen), versions_with_two_events(steps, seen),
                       rows_against_events(steps, rows))


def history_problems(history: list[Step], row: tuple[int, str] | None) -> list[str]:
    """How one record's events disagree with each other and with its stored row."""
    actions = [step.action for step in history]
    problems = []
    if actions[0] != "created" or actions.count("created") != 1:
        problems.append(f"events {actions[:5]}…: not one created event first")
    if actions.count("deleted") > 1 or ("deleted" in actions and actions[-1] != "deleted"):
        problems.append(f"{actions.count('deleted')} deleted events, the last event is {actions[-1]}")
    last = history[-1]
    if last.action == "deleted":
        if row is not None:
            problems.append("deleted by its last event, but still stored")
    elif row is None:
        problems.append(f"its last event {last.event_id} is an update, but it is not stored")
    elif row != (last.version, last.content):
        problems.append(f"stored as version {row[0]} {summary(row[1])}, its last event "
                        f"{last.event_id} is version {last.version} {summary(last.content)}")
    return problems


def check_sequence(name: str, items: list, log_ids: list[str], resets_allowed: bool) -> list[str]:
    """Between resets, the events received are the log's, in order, contiguous from where the
    client resumed; a fresh connection (or a reset) starts from the first event it gets."""
    index = {event_id: i for i, event_id in enumerate(log_ids)}
    problems, expected, received = [], None, set()
    for kind, value in items:
        if kind == "reset":
            if not resets_allowed:
                problems.append("reset")
            expected, received = None, set()
        elif kind == "connect" and value is not None:
            if value not in index:
                problems.append(f"resumed after {value}, which is not in its part of the log")
            expected = index[value] + 1 if value in index else None
        elif kind == "event":
            position = index.get(value)
            if position is None:
                problems.append(f"{value} is not in its part of the log")
            elif value in received:
                problems.append(f"{value} received twice")
            elif expected is not None and position < expected:
                problems.append(f"{value} out of order ({expected - position} events late)")
            elif expected is not None and position > expected:
                problems.append(f"gap: {position - expected} events skipped before {value}")
            if position is not None:
                received.add(value)
                expected = max(expected or 0, position + 1)
    if expected is not None and expected < len(log_ids):
        problems.append(f"{len(log_ids) - expected} events at the end never arrived")
    return [f"{name}: {problem}" for problem in problems]


def wanted(log: list[dict], path: str) -> list[str]:
    """The ids of the log's events a stream at `path` asked for, in commit order."""
    return [e["id"] for e in log if path.endswith("/stream") or e["type"].startswith("task.")]


def check_streams(log: list[dict], streams: list[StreamClient], poller: Poller) -> list[str]:
    return interleaved(
        poller.errors, check_sequence("poller", poller.items, wanted(log, "/stream"), resets_allowed=False),
        *(check_sequence(s.name, s.items, wanted(log, s.path), resets_allowed=True) for s in streams))


def read_log(app, account_id: str) -> list[dict]:
    """The account's events in commit order (by `position`)."""
    with app.app_context():
        rows = db.execute_sql("SELECT id, type, data FROM events WHERE account_id = %s "
                              "ORDER BY position", (account_id,)).fetchall()
    return [{"id": i, "type": t, "data": json.loads(d)} for i, t, d in rows]


def stored_rows(app, account_id: str) -> dict[str, tuple[int, str]]:
    """Every stored record of the account: id → (version, content)."""
    rows = {}
    with app.app_context():
        for entity in ENTITIES.values():
            for row in entity.model.select().where(entity.model.account_id == account_id):
                rows[row.id] = (row.version, canonical(entity.dump(row)))
    return rows


def redis_url(var_dir: Path) -> str:
    url = os.environ.get("REDIS_URL") or LOCAL_REDIS
    if backends.redis_answers(url):
        return url
    return embedded_redis.ensure_running(var_dir) + "?db=14"


def environment(database_url: str, redis_at: str, var_dir: Path) -> dict:
    return {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_at, "VAR_DIR": str(var_dir),
            "LOG_LEVEL": "ERROR", "WEB_CONCURRENCY": "2", "WEB_THREADS": "8", "SSE_MAX_STREAMS": "4",
            "SSE_HEARTBEAT_SECONDS": "2", "SSE_REPLAY_LIMIT": "200",
            **{f"RATELIMIT_{n}": GENEROUS for n in ("DEFAULT", "BATCH", "BULK", "UPLOAD", "EXPORT")}}


def prepare(env: dict):
    """Migrate, and create the account and its admin key (with a generous rate limit)."""
    app = create_app(env)
    with app.app_context():
        migrate.upgrade()
        account, key = accounts.create_account("consistency")
        ApiKey.update(rate_limit=GENEROUS).where(ApiKey.account_id == account.id).execute()
    return app, account.id, key


def seed(load: Load) -> None:
    """The shared records: 2 projects, 3 users and TASKS tasks."""
    for number in range(2):
        reply = load.client.call("POST /projects", "POST", "/api/v1/projects", {"name": f"project {number}"})
        load.seen.record("POST /projects", reply.etag, reply.body["data"], write=True)
        load.pool.projects.append(reply.body["data"]["id"])
    for _ in range(3):
        load.add_user()
    load.top_up()


def jobs_done(client: Client, jobs: list[str]) -> bool:
    for job_id in list(jobs):
        reply = client.call("GET /jobs/{id}", "GET", f"/api/v1/jobs/{job_id}")
        if reply.status != 200 or reply.body["data"]["status"] not in JOB_DONE:
            return False
        jobs.remove(job_id)
    return True


def wait_quietly(condition, message: str) -> None:
    """Wait (bounded) for `condition`; on timeout say so and go on: the checks will tell."""
    try:
        wait_for(condition, timeout=SETTLE_TIMEOUT, interval=0.5, message=message)
    except AssertionError as exc:
        say(str(exc))


def caught_up(log: list[dict], streams: list[StreamClient], poller: Poller) -> bool:
    """Every stream received the last event it asked for (or was last told to reset: what came
    before a reset is not owed), and the poller reached the end (or fails)."""
    if any(wanted(log, s.path)[-1] not in s.received and s.items[-1:] != [("reset", None)]
           for s in streams):
        return False
    return poller.failing or poller.last_id == log[-1]["id"]


@dataclass
class Run:
    """Everything the report needs."""

    seen: Observations
    log: list[dict]
    streams: list[StreamClient]
    poller: Poller
    checks: dict[str, list[str]]


def run(app, account_id: str, key: str, ports: list[int]) -> Run:
    seen = Observations()
    client = Client(ports, key, seen)
    load = Load(client, Pool(), seen)
    stop, settle, streams_stop = threading.Event(), threading.Event(), threading.Event()
    streams = [StreamClient(n, ports[server], path, key, streams_stop, settle)
               for n, (path, server) in enumerate(STREAMS)]
    try:
        for stream in streams:
            stream.start()
        wait_for(lambda: all(s.items for s in streams), timeout=30, message="streams to connect")
        seed(load)
        first = client.call("GET /events", "GET", "/api/v1/events?limit=1").body["data"][0]["id"]
        poller = Poller(client, first, streams_stop)
        threads = [threading.Thread(target=loop, args=(stop,), daemon=True)
                   for loop in [load.run_writer] * WRITERS + [load.run_reader] * READERS]
        for thread in [*threads, poller]:
            thread.start()
        say(f"{DURATION} s of load on ports {ports}")
        deadline = time.monotonic() + DURATION
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(10, left))
            say(f"{sum(seen.statuses.values())} requests, {sum(s.messages for s in streams)} stream messages")
        stop.set()
        for thread in threads:
            thread.join(timeout=CALL_TIMEOUT * 2)
        say("writers stopped; waiting for the jobs, then for the streams and the poller")
        wait_quietly(lambda: jobs_done(client, seen.jobs), "the import jobs")
        log = read_log(app, account_id)
        settle.set()
        wait_quietly(lambda: caught_up(log, streams, poller), "the streams and the poller")
    finally:
        stop.set()
        streams_stop.set()
    for thread in [*streams, poller]:
        thread.join(timeout=CALL_TIMEOUT)
    steps = histories(log)
    checks = {
        "1. one content per ETag": check_etags(seen),
        "2. If-Match answers version v + 1": check_if_match(seen),
        "3. event data = content at that version": check_event_data(steps, seen),
        "4. one event per committed write": check_one_event_per_write(steps, seen,
                                                                      stored_rows(app, account_id)),
        "5. streams and poller: the log in commit order": check_streams(log, streams, poller),
        "6. a GET shows every write answered before it was sent": check_fresh_reads(seen),
    }
    return Run(seen, log, streams, poller, checks)


def report(result: Run, seconds: float) -> None:
    """The run as a Markdown section for bench/RESULTS.md."""
    streams = result.streams
    refused = sum((s.refused for s in streams), Counter())
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"## `make check-consistency` ({DURATION} s of load, {when}, {seconds:.0f} s in all)\n")
    print(f"{sum(result.seen.statuses.values()):,} requests; {len(result.log):,} events, in commit order by "
          f"`position`; {len(streams)} streams: {sum(s.messages for s in streams):,} messages, "
          f"{sum(s.reconnects for s in streams)} reconnects ({sum(s.long_pauses for s in streams)} after "
          f"a long pause), {sum(s.resets for s in streams)} resets, refused {dict(refused) or 'never'}; "
          f"poller: {result.poller.calls} calls, {len(result.poller.errors)} errors.\n")
    print("| requests | statuses |\n|---|---|")
    kinds = defaultdict(list)
    for (kind, status), count in sorted(result.seen.statuses.items(), key=str):
        kinds[kind].append(f"{status} ×{count:,}")
    for kind, statuses in kinds.items():
        print(f"| {kind} | {', '.join(statuses)} |")
    print("\n| check | violations |\n|---|---|")
    for name, violations in result.checks.items():
        print(f"| {name} | {len(violations):,} |")
    for name, violations in result.checks.items():
        if violations:
            print(f"\n{name}, first examples:\n")
            for violation in violations[:5]:
                print(f"- {violation}")


def drain(process, path: Path) -> None:
    """Copy a server's stderr to a file: `start_gunicorn` pipes it, and a full pipe stalls the server."""
    def copy():
        with open(path, "wb") as log:
            for line in process.stderr:
                log.write(line)

    threading.Thread(target=copy, daemon=True).start()


def main() -> None:
    started = time.monotonic()
    base = os.environ.get("TEST_DATABASE_URL") or backends.LOCAL_POSTGRES
    if not backends.postgres_answers(base):
        sys.exit("make check-consistency needs PostgreSQL (set TEST_DATABASE_URL)")
    var_dir = Path(tempfile.mkdtemp(prefix="quiver-consistency-"))
    url = redis_url(var_dir)
    redis.Redis.from_url(url).flushdb()
    database_url, schema = backends.postgres_schema_url(base)
    processes = []
    try:
        env = environment(database_url, url, var_dir)
        app, account_id, key = prepare(env)
        ports = [free_port(), free_port()]
        processes += [start_gunicorn(env, port) for port in ports]
        for number, process in enumerate(processes):
            drain(process, var_dir / f"web{number}.log")
        processes.append(_start_worker(env))
        result = run(app, account_id, key, ports)
    finally:
        for process in processes:
            stop_process(process)
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(url).flushdb()
        backends.drop_postgres_schema(base, schema)
        say(f"logs and every violation in {var_dir}")
    with open(var_dir / "violations.txt", "w") as out:
        for name, violations in result.checks.items():
            out.writelines(f"{name}: {violation}\n" for violation in violations)
    report(result, time.monotonic() - started)
    failed = sum(1 for violations in result.checks.values() if violations)
    print(f"\nconsistency: {len(result.checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
