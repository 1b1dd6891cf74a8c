"""Webhooks (contract section 7): subscriptions, and deliveries over real HTTP by real workers.

Subscriptions, through the Flask test client: admin scope only (read and write keys
get 403); `POST /webhooks` answers 201 with a `whsec_` secret (base64 of 24 bytes)
that no later GET or list shows; `events` is a list of known types or `"*"` (empty
or unknown → 400); the URL must be http(s), and hosts resolving to loopback, private or
link-local addresses are refused unless `WEBHOOK_ALLOW_PRIVATE` is on (checked at
registration and again at delivery time); PATCH, DELETE, and 404 for another
account's webhook on every route.

Delivery, end to end: one real `python -m jobs.worker` subprocess for the module (the
session's database and Redis, `WEBHOOK_ALLOW_PRIVATE=true`, a 1 s timeout and a
`1s,1s,1s` retry schedule) and, per test, a fresh account and a real HTTP receiver on
127.0.0.1. The tests check the Standard Webhooks headers (verified with the
`standardwebhooks` package and with `api.webhook_signing.verify_webhook`) and the hex
`X-Webhook-Signature`; retries with the same `webhook-id` and the delivery log; a
receiver that hangs past the timeout; 410 disabling the webhook; `test` and
`redeliver`; both signatures during a secret rotation; account isolation; a worker
killed with SIGKILL mid-flight (nothing lost); and writes made while Redis is
unreachable, delivered by the sweeper once a worker runs again.

The app under test has `WEBHOOK_ALLOW_PRIVATE` switched on for this module (the
receivers live on 127.0.0.1); tests that check the refusal switch it off for their
own duration and restore it.
"""

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import redis
import standardwebhooks
from rq import Worker

from api import config
from api.models import Webhook, WebhookDelivery
from api.store import db
from api.timeutil import utcnow
from api.webhook_signing import WebhookVerificationError, verify_webhook
from tests.conftest import Account, ApiClient
from tests.extra_apps import extra_apps
from tests.procs import ROOT, PostServer, read_body, respond, wait_for

SECRET = re.compile(r"whsec_[A-Za-z0-9+/]{32}")
DEAD_REDIS = "redis://127.0.0.1:1/0"
PUBLIC = "https://93.184.215.14"  # a public address: the sandbox has no DNS
WEBHOOK_FIELDS = {"id", "url", "events", "active", "createdAt"}


# --- a real HTTP receiver -------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict  # lower-cased names
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def event(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 recording every POST; `plan(n)` gives the n-th answer.

    `plan(n) -> (status, delay_seconds)`, n counting requests from 0.
    """

    plan: object = None
    requests: list = field(default_factory=list)

    def __post_init__(self):
        self.plan = self.plan or (lambda n: (200, 0))
        self.lock = threading.Lock()

        def on_post(handler):  # keep-alive, as the worker's session expects
            body = read_body(handler)
            with self.lock:
                index = len(self.requests)
                self.requests.append(Received(
                    {k.lower(): v for k, v in handler.headers.items()}, body, time.monotonic()))
            status, delay = self.plan(index)
            if delay:
                time.sleep(delay)
            # The worker may have given up waiting (timeout) or been killed.
            with suppress(BrokenPipeError, ConnectionResetError):
                respond(handler, status, {"Content-Type": "application/json"}, b'{"ok": true}')

        self.http = PostServer(on_post)
        self.url = self.http.url

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def webhook_ids(self) -> set[str]:
        return {r.webhook_id for r in self.received()}

    def wait_count(self, count: int, timeout: float = 20) -> list[Received]:
        return wait_for(lambda: len(self.received()) >= count and self.received(), timeout,
                        message=f"{count} requests at the receiver")

    def close(self):
        self.http.close()


@pytest.fixture
def receiver():
    """`receiver(plan=None)` starts a receiver; all are stopped at the end of the test."""
    started = []

    def start(plan=None) -> Receiver:
        started.append(Receiver(plan))
        return started[-1]

    yield start
    for server in started:
        server.close()


def answers(*statuses, delay: float = 0):
    """A plan answering `statuses` in turn, then 200."""
    return lambda n: (statuses[n] if n < len(statuses) else 200, delay)


# --- the worker process ----------------------------------------------------------------------------


class WorkerProcess:
    """`python -m jobs.worker` (not burst) with the session's database and Redis."""

    def __init__(self, env: dict, redis_url: str, log_path):
        self.env = env
        self.redis = redis.Redis.from_url(redis_url)
        self.log_path = log_path
        self.process = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT,
                                        env=self.env, stdout=log, stderr=log)
        log.close()

        started = time.monotonic()

        def registered():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log_tail()}")
            if any(w.pid == self.process.pid for w in Worker.all(connection=self.redis)):
                return True
            # Another test session sharing this Redis may have flushed the registration away.
            return time.monotonic() - started > 10

        wait_for(registered, timeout=30, message="the worker to register with Redis")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module", autouse=True)
def webhook_settings(app):
    """This module's app settings: private receivers allowed, short timeout and retries."""
    saved = config._active
    config.activate(dataclasses.replace(saved, webhook_allow_private=True, webhook_timeout=1.0,
                                        webhook_retry_schedule=[1, 1, 1]))
    yield
    config._active = saved


@contextmanager
def private_urls_refused():
    """Temporarily run the app with `WEBHOOK_ALLOW_PRIVATE=false`."""
    saved = config._active
    config.activate(dataclasses.replace(saved, webhook_allow_private=False))
    try:
        yield
    finally:
        config._active = saved


@pytest.fixture(scope="module")
def worker_process(app, backend_env, tmp_path_factory):
    env = {**os.environ, **backend_env, "WEBHOOK_ALLOW_PRIVATE": "true",
           "WEBHOOK_RETRY_SCHEDULE": "1s,1s,1s", "WEBHOOK_TIMEOUT": "1", "LOG_LEVEL": "WARNING"}
    worker = WorkerProcess(env, backend_env["REDIS_URL"],
                           tmp_path_factory.mktemp("worker") / "worker.log")
    worker.start()
    yield worker
    if worker.process.poll() is None:
        worker.stop()


@pytest.fixture
def worker(worker_process) -> WorkerProcess:
    """The module's worker, (re)started if a test left it stopped."""
    worker_process.ensure_running()
    return worker_process


# --- helpers -------------------------------------------------------------------------------------


def assert_error(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["code"] == code
    return body


def create_hook(api, url: str, events=("*",), **extra) -> dict:
    response = api.post("/webhooks", json={"url": url, "events": list(events), **extra})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def deliveries(api, hook_id: str) -> list[dict]:
    """The hook's delivery log, oldest attempt first."""
    response = api.get(f"/webhooks/{hook_id}/deliveries")
    assert response.status_code == 200, response.get_json()
    return sorted(response.get_json()["data"], key=lambda d: (d["eventId"], d["attempt"]))


def wait_deliveries(api, hook_id: str, condition, timeout: float = 20, message: str = ""):
    """Poll the delivery log until `condition(rows)` holds; returns the rows."""
    def check():
        rows = deliveries(api, hook_id)
        return rows if condition(rows) else None

    return wait_for(check, timeout, interval=0.1, message=message or "the delivery log")


def settled(rows: list[dict]) -> bool:
    """No attempt is pending any more."""
    return bool(rows) and all(r["status"] != "pending" for r in rows)


def event(api, event_id: str) -> dict:
    response = api.get(f"/events/{event_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def event_ids(api, event_type: str) -> set[str]:
    ids, cursor = set(), None
    while True:
        query = {"type": event_type, "limit": 100, **({"cursor": cursor} if cursor else {})}
        body = api.get("/events", query_string=query).get_json()
        ids |= {e["id"] for e in body["data"]}
        cursor = body["meta"]["nextCursor"]
        if cursor is None:
            return ids


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- CRUD ----------------------------------------------------------------------------------------


def test_create_returns_the_secret_once(api):
    response = api.post("/webhooks", json={"url": "https://93.184.215.14/hooks",
                                           "events": ["task.created", "task.updated"],
                                           "description": "CI"})
    assert response.status_code == 201, response.get_json()
    data = response.get_json()["data"]
    assert WEBHOOK_FIELDS | {"secret"} <= set(data)
    assert re.fullmatch(r"wh_[0-9A-HJKMNP-TV-Z]{26}", data["id"])
    assert data["url"] == "https://93.184.215.14/hooks"
    assert data["events"] == ["task.created", "task.updated"]
    assert data["description"] == "CI"
    assert data["active"] is True
    assert data["createdAt"].endswith("Z")
    assert response.headers["Location"] == f"/api/v1/webhooks/{data['id']}"
    assert SECRET.fullmatch(data["secret"])
    assert len(base64.b64decode(data["secret"][len("whsec_"):])) == 24

    fetched = api.get(f"/webhooks/{data['id']}")
    assert fetched.status_code == 200
    shown = fetched.get_json()["data"]
    assert "secret" not in shown
    assert {k: shown[k] for k in WEBHOOK_FIELDS} == {k: data[k] for k in WEBHOOK_FIELDS}
    listed = api.get("/webhooks").get_json()["data"]
    assert [h["id"] for h in listed] == [data["id"]]
    assert "secret" not in listed[0]
    assert data["secret"] not in json.dumps(listed)


def test_generated_secrets_differ(api):
    first = create_hook(api, "https://93.184.215.14/a")["secret"]
    second = create_hook(api, "https://93.184.215.14/b")["secret"]
    assert first != second


def test_star_subscribes_to_everything_and_a_given_secret_is_kept(api):
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    hook = create_hook(api, "https://93.184.215.14/all", events=["*"], secret=secret)
    assert hook["events"] == ["*"]
    assert hook["secret"] == secret


@pytest.mark.parametrize("events", [[], ["task.exploded"], ["task.created", "nope"], "task.created",
                                    None, ["task.created", "task.created"]],
                         ids=["empty", "unknown", "one-unknown", "not-a-list", "null", "repeated"])
def test_bad_events_answer_400(api, events):
    body = assert_error(api.post("/webhooks", json={"url": "https://93.184.215.14/h",
                                                    "events": events}), 400, "VALIDATION_FAILED")
    assert any(key.startswith("events") for key in body["details"])
    assert api.get("/webhooks").get_json()["data"] == []


@pytest.mark.parametrize("payload,field", [
    ({"events": ["*"]}, "url"),
    ({"url": "https://93.184.215.14/h"}, "events"),
    ({"url": "https://93.184.215.14/h", "events": ["*"], "bogus": 1}, "bogus"),
    ({"url": "https://93.184.215.14/h", "events": ["*"], "secret": "short"}, "secret"),
    ({"url": "https://93.184.215.14/h", "events": ["*"], "id": "wh_1"}, "id"),
])
def test_bad_bodies_answer_400(api, payload, field):
    body = assert_error(api.post("/webhooks", json=payload), 400, "VALIDATION_FAILED")
    assert field in body["details"]


@pytest.mark.parametrize("url", ["ftp://example.com/h", "example.com/h", "javascript:alert(1)",
                                 "http://", "https://user:pw@example.com/h", "file:///etc/passwd",
                                 "http://93.184.215.14:99999/h", "https://no-such-host.invalid/h"])
def test_unusable_urls_answer_400(api, url):
    body = assert_error(api.post("/webhooks", json={"url": url, "events": ["*"]}), 400,
                        "VALIDATION_FAILED")
    assert "url" in body["details"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/h", "http://localhost/h",
                                 "http://10.1.2.3/h", "http://192.168.0.10/h", "http://172.16.0.1/h",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/h",
                                 "http://0.0.0.0/h", "http://224.0.0.1/h"])
def test_private_addresses_are_refused_unless_allowed(api, url):
    with private_urls_refused():
        body = assert_error(api.post("/webhooks", json={"url": url, "events": ["*"]}), 400,
                            "VALIDATION_FAILED")
        assert "non-public" in body["details"]["url"][0]
        assert api.get("/webhooks").get_json()["data"] == []
    hook = create_hook(api, url)  # this module's app allows them
    assert hook["url"] == url


def test_patch_to_a_private_url_is_refused_unless_allowed(api):
    hook = create_hook(api, "https://93.184.215.14/h")
    with private_urls_refused():
        assert_error(api.patch(f"/webhooks/{hook['id']}", json={"url": "http://127.0.0.1/h"}),
                     400, "VALIDATION_FAILED")
        assert api.get(f"/webhooks/{hook['id']}").get_json()["data"]["url"] == "https://93.184.215.14/h"
    response = api.patch(f"/webhooks/{hook['id']}", json={"url": "http://127.0.0.1/h"})
    assert response.status_code == 200
    assert response.get_json()["data"]["url"] == "http://127.0.0.1/h"


def test_public_url_accepted_when_private_ones_are_refused(api):
    with private_urls_refused():
        hook = create_hook(api, "https://93.184.215.14/hooks")
    assert hook["url"] == "https://93.184.215.14/hooks"


def test_patch_changes_the_given_fields_only(api):
    hook = create_hook(api, "https://93.184.215.14/h", events=["task.created"], description="old")
    response = api.patch(f"/webhooks/{hook['id']}",
                         json={"events": ["project.created", "webhook.test"], "active": False})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert "secret" not in data
    assert data["events"] == ["project.created", "webhook.test"]
    assert data["active"] is False
    assert data["url"] == "https://93.184.215.14/h"
    assert data["description"] == "old"
    assert api.get(f"/webhooks/{hook['id']}").get_json()["data"] == data


@pytest.mark.parametrize("payload,field", [
    ({"events": []}, "events"), ({"events": ["nope"]}, "events"), ({"url": "ftp://x/h"}, "url"),
    ({"secret": "whsec_" + "A" * 32}, "secret"), ({"bogus": True}, "bogus"),
    ({"active": "yes"}, "active"),
])
def test_bad_patch_answers_400_and_changes_nothing(api, payload, field):
    hook = create_hook(api, "https://93.184.215.14/h", events=["task.created"])
    body = assert_error(api.patch(f"/webhooks/{hook['id']}", json=payload), 400,
                        "VALIDATION_FAILED")
    assert field in body["details"]
    shown = api.get(f"/webhooks/{hook['id']}").get_json()["data"]
    assert (shown["url"], shown["events"], shown["active"]) == (
        "https://93.184.215.14/h", ["task.created"], True)


def test_delete_answers_204_then_404(api):
    hook = create_hook(api, "https://93.184.215.14/h")
    response = api.delete(f"/webhooks/{hook['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert_error(api.get(f"/webhooks/{hook['id']}"), 404, "NOT_FOUND")
    assert_error(api.get(f"/webhooks/{hook['id']}/deliveries"), 404, "NOT_FOUND")
    assert_error(api.delete(f"/webhooks/{hook['id']}"), 404, "NOT_FOUND")
    assert api.get("/webhooks").get_json()["data"] == []


@pytest.mark.parametrize("scope", ["read", "write"])
def test_webhook_routes_need_the_admin_scope(account, scope):
    hook = create_hook(account.api, "https://93.184.215.14/h")
    key = account.key(scope)
    calls = [("GET", "/webhooks", None), ("POST", "/webhooks", {"url": PUBLIC + "/h",
                                                                "events": ["*"]}),
             ("GET", f"/webhooks/{hook['id']}", None),
             ("PATCH", f"/webhooks/{hook['id']}", {"active": False}),
             ("DELETE", f"/webhooks/{hook['id']}", None),
             ("POST", f"/webhooks/{hook['id']}/test", None),
             ("POST", f"/webhooks/{hook['id']}/rotate-secret", None),
             ("GET", f"/webhooks/{hook['id']}/deliveries", None)]
    for method, path, body in calls:
        response = key.request(method, path, json=body)
        error = assert_error(response, 403, "INSUFFICIENT_SCOPE")
        assert error["details"]["required"] == "admin"
    shown = account.api.get(f"/webhooks/{hook['id']}").get_json()["data"]
    assert shown["active"] is True
    assert len(account.api.get("/webhooks").get_json()["data"]) == 1


def test_another_accounts_webhook_answers_404_everywhere(api, other_account):
    theirs = create_hook(other_account.api, "https://93.184.215.14/theirs")
    test_sent = other_account.api.post(f"/webhooks/{theirs['id']}/test")
    assert test_sent.status_code == 202
    [delivery] = deliveries(other_account.api, theirs["id"])
    base = f"/webhooks/{theirs['id']}"
    for method, path, body in [("GET", base, None), ("PATCH", base, {"active": False}),
                               ("DELETE", base, None), ("POST", f"{base}/test", None),
                               ("POST", f"{base}/rotate-secret", None),
                               ("GET", f"{base}/deliveries", None),
                               ("POST", f"{base}/deliveries/{delivery['id']}/redeliver", None)]:
        assert_error(api.request(method, path, json=body), 404, "NOT_FOUND")
    assert api.get("/webhooks").get_json()["data"] == []
    shown = other_account.api.get(base).get_json()["data"]
    assert shown["active"] is True
    assert len(deliveries(other_account.api, theirs["id"])) == 1
    other_account.api.delete(base)


@pytest.mark.parametrize("path", ["/webhooks/wh_%00", "/webhooks/nope/deliveries",
                                  "/webhooks/wh_00000000000000000000000000/test"])
def test_unknown_webhook_ids_answer_404(api, path):
    method = "POST" if path.endswith("/test") else "GET"
    assert_error(api.request(method, path), 404, "NOT_FOUND")


def test_redeliver_of_an_unknown_delivery_answers_404(api):
    hook = create_hook(api, "https://93.184.215.14/h", events=["task.created"])
    for delivery_id in ["whd_00000000000000000000000000", "whd_%00"]:
        assert_error(api.post(f"/webhooks/{hook['id']}/deliveries/{delivery_id}/redeliver"),
                     404, "NOT_FOUND")


def test_deliveries_are_stored_with_the_change_for_matching_active_hooks(api):
    """The outbox rows exist as soon as the write answers, one per matching active hook."""
    tasks_only = create_hook(api, "https://93.184.215.14/tasks", events=["task.created"])
    everything = create_hook(api, "https://93.184.215.14/all", events=["*"])
    paused = create_hook(api, "https://93.184.215.14/paused", events=["*"], active=False)
    task = api.create("tasks", title="T")
    api.create("projects", name="P")
    [task_event] = event_ids(api, "task.created")
    [project_event] = event_ids(api, "project.created")

    [row] = deliveries(api, tasks_only["id"])
    assert (row["eventId"], row["attempt"]) == (task_event, 1)
    assert {r["eventId"] for r in deliveries(api, everything["id"])} == {task_event, project_event}
    assert deliveries(api, paused["id"]) == []
    assert event(api, task_event)["data"]["id"] == task["id"]
    for hook in (tasks_only, everything, paused):  # nothing for the worker to chase later
        api.delete(f"/webhooks/{hook['id']}")


def test_url_is_checked_again_at_delivery_time(api, receiver):
    """DNS rebinding: a URL allowed at registration but private at delivery is not called.

    Runs the delivery job in this process, before the module's worker starts (it is
    the first test here to create a delivery for a live receiver).
    """
    from jobs import webhooks as delivery_jobs

    server = receiver()
    hook = create_hook(api, server.url, events=["task.created"])
    api.create("tasks", title="T")
    [pending] = deliveries(api, hook["id"])
    with private_urls_refused():
        assert delivery_jobs.deliver([pending["id"]]) == 1
    rows = deliveries(api, hook["id"])
    first = next(r for r in rows if r["attempt"] == 1)
    assert first["status"] == "failed"
    assert "non-public" in first["error"]
    assert first["nextAttemptAt"] is not None
    assert server.received() == []
    assert api.delete(f"/webhooks/{hook['id']}").status_code == 204


# --- delivery over real HTTP --------------------------------------------------------------------


def test_delivery_is_signed_with_both_schemes(api, worker, receiver):
    server = receiver()
    hook = create_hook(api, server.url, events=["task.created"])
    secret = hook["secret"]
    project = api.create("projects", name="Not subscribed")
    task = api.create("tasks", title="Deliver me", projectId=project["id"])
    [event_id] = event_ids(api, "task.created")

    [request] = server.wait_count(1)
    headers, body = request.headers, request.body
    assert headers["webhook-id"] == event_id
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["content-type"].split(";")[0].strip() == "application/json"
    assert "quiver" in headers["user-agent"].lower()
    payload = standardwebhooks.Webhook(secret).verify(body, headers)
    assert payload == event(api, event_id)
    assert payload["type"] == "task.created"
    assert payload["data"]["id"] == task["id"]
    assert headers["x-webhook-signature"] == hex_hmac(secret, body)
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]+=*", headers["webhook-signature"])

    verify_webhook(body, headers, secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body.replace(b"Deliver me", b"Deliver us"), headers, secret)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, "whsec_" + base64.b64encode(b"x" * 24).decode())
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(body + b" ", headers)

    [row] = wait_deliveries(api, hook["id"], settled)
    assert (row["eventId"], row["attempt"], row["status"], row["responseStatus"]) == (
        event_id, 1, "succeeded", 200)
    assert row["error"] is None
    assert row["nextAttemptAt"] is None
    assert isinstance(row["durationMs"], int) and row["durationMs"] >= 0
    assert [r.webhook_id for r in server.received()] == [event_id]  # the project was not sent


def test_500_twice_then_200_is_three_attempts_with_one_webhook_id(api, worker, receiver):
    server = receiver(answers(500, 500))
    hook = create_hook(api, server.url, events=["task.created"])
    api.create("tasks", title="Flaky receiver")
    [event_id] = event_ids(api, "task.created")

    rows = wait_deliveries(api, hook["id"], lambda rows: len(rows) == 3 and settled(rows),
                           message="three settled attempts")
    assert [(r["attempt"], r["status"], r["responseStatus"]) for r in rows] == [
        (1, "failed", 500), (2, "failed", 500), (3, "succeeded", 200)]
    assert {r["eventId"] for r in rows} == {event_id}
    for row in rows:
        assert isinstance(row["durationMs"], int) and row["durationMs"] >= 0
        assert row["id"].startswith("whd_")
    assert rows[0]["nextAttemptAt"] is not None and rows[1]["nextAttemptAt"] is not None
    assert rows[2]["nextAttemptAt"] is None
    assert rows[0]["error"] and rows[2]["error"] is None
    assert rows[0]["responseBody"] == '{"ok": true}'

    received = server.received()
    assert len(received) == 3
    assert {r.webhook_id for r in received} == {event_id}
    assert received[1].at - received[0].at >= 0.9  # the 1 s retry schedule
    assert received[2].at - received[1].at >= 0.9
    for request in received:
        standardwebhooks.Webhook(hook["secret"]).verify(request.body, request.headers)


def test_delivery_fails_after_the_last_scheduled_attempt(api, worker, receiver):
    server = receiver(lambda n: (503, 0))
    hook = create_hook(api, server.url, events=["task.created"])
    api.create("tasks", title="Never accepted")

    rows = wait_deliveries(api, hook["id"], lambda rows: len(rows) == 4 and settled(rows),
                           message="1 + len(WEBHOOK_RETRY_SCHEDULE) attempts")
    assert [(r["attempt"], r["status"], r["responseStatus"]) for r in rows] == [
        (1, "failed", 503), (2, "failed", 503), (3, "failed", 503), (4, "failed", 503)]
    assert [r["nextAttemptAt"] is not None for r in rows] == [True, True, True, False]
    assert len(server.received()) == 4
    assert len(server.webhook_ids()) == 1
    shown = api.get(f"/webhooks/{hook['id']}").get_json()["data"]
    assert shown["active"] is True  # failing for seconds is far from WEBHOOK_DISABLE_AFTER


def test_receiver_hanging_past_the_timeout_fails_the_attempt_and_is_retried(api, worker, receiver):
    server = receiver(lambda n: (200, 2.5 if n == 0 else 0))
    hook = create_hook(api, server.url, events=["task.created"])
    api.create("tasks", title="Slow receiver")
    [event_id] = event_ids(api, "task.created")

    rows = wait_deliveries(api, hook["id"], lambda rows: len(rows) == 2 and settled(rows),
                           message="a timed-out attempt and its retry")
    first, second = rows
    assert (first["attempt"], first["status"], first["responseStatus"]) == (1, "failed", None)
    assert "timeout" in first["error"].lower() or "timed out" in first["error"].lower()
    assert 900 <= first["durationMs"] < 2500
    assert first["nextAttemptAt"] is not None
    assert (second["attempt"], second["status"], second["responseStatus"]) == (2, "succeeded", 200)
    assert [r.webhook_id for r in server.received()] == [event_id, event_id]


def test_410_disables_the_webhook_without_retrying(api, worker, receiver):
    server = receiver(answers(410))
    hook = create_hook(api, server.url, events=["task.created"])
    api.create("tasks", title="Gone")

    [row] = wait_deliveries(api, hook["id"], settled)
    assert (row["attempt"], row["status"], row["responseStatus"]) == (1, "failed", 410)
    assert row["nextAttemptAt"] is None
    shown = api.get(f"/webhooks/{hook['id']}").get_json()["data"]
    assert shown["active"] is False
    assert "410" in shown["disabledReason"]
    assert len(server.received()) == 1

    api.create("tasks", title="Not sent to a disabled hook")
    assert len(deliveries(api, hook["id"])) == 1

    enabled = api.patch(f"/webhooks/{hook['id']}", json={"active": True}).get_json()["data"]
    assert enabled["active"] is True and enabled["disabledReason"] is None
    api.create("tasks", title="Sent again")
    rows = wait_deliveries(api, hook["id"], lambda rows: len(rows) == 2 and settled(rows))
    assert sorted((r["attempt"], r["status"]) for r in rows) == [(1, "failed"), (1, "succeeded")]
    assert len(server.received()) == 2


def set_failing_since(hook_id: str, days_ago: float) -> None:
    """Pretend the hook has been failing for `days_ago` days (the real streak would take days)."""
    with db.connection_context():
        Webhook.update(failing_since=utcnow() - timedelta(days=days_ago)).where(
            Webhook.id == hook_id).execute()


def stored_hook(hook_id: str) -> Webhook:
    with db.connection_context():
        return Webhook.get_by_id(hook_id)


def test_failing_for_webhook_disable_after_disables_the_webhook(api, worker, receiver):
    server = receiver(lambda n: (500, 0))
    hook = create_hook(api, server.url, events=["task.created"])
    set_failing_since(hook["id"], 6)  # past the default WEBHOOK_DISABLE_AFTER of 5 days
    api.create("tasks", title="The last straw")

    rows = wait_deliveries(api, hook["id"], settled)
    assert (rows[0]["attempt"], rows[0]["status"], rows[0]["responseStatus"]) == (1, "failed", 500)
    # Nothing more is sent: any later row is a failure recorded without a request.
    assert all(r["status"] == "failed" and r["responseStatus"] is None for r in rows[1:])
    shown = api.get(f"/webhooks/{hook['id']}").get_json()["data"]
    assert shown["active"] is False
    assert shown["disabledReason"].startswith("Failing on every delivery since")
    assert len(server.received()) == 1


def test_a_success_ends_the_failing_streak(api, worker, receiver):
    server = receiver()
    hook = create_hook(api, server.url, events=["task.created"])
    set_failing_since(hook["id"], 4)
    api.create("tasks", title="Back to health")
    [row] = wait_deliveries(api, hook["id"], settled)
    assert row["status"] == "succeeded"
    assert stored_hook(hook["id"]).failing_since is None
    assert api.get(f"/webhooks/{hook['id']}").get_json()["data"]["active"] is True


def test_a_given_unpadded_secret_signs_as_the_reference_verifier_expects(api, worker, receiver):
    server = receiver()
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    assert not secret.endswith("=")
    hook = create_hook(api, server.url, events=["task.created"], secret=secret)
    assert hook["secret"] == secret
    api.create("tasks", title="Custom secret")
    [request] = server.wait_count(1)
    standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    verify_webhook(request.body, request.headers, secret)
    assert request.headers["x-webhook-signature"] == hex_hmac(secret, request.body)


def test_test_sends_webhook_test_whatever_the_events_and_redeliver_sends_again(api, worker,
                                                                               receiver):
    server = receiver()
    hook = create_hook(api, server.url, events=["project.created"])
    response = api.post(f"/webhooks/{hook['id']}/test")
    assert response.status_code == 202, response.get_json()
    event_id = response.get_json()["data"]["eventId"]

    [request] = server.wait_count(1)
    assert request.webhook_id == event_id
    payload = standardwebhooks.Webhook(hook["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "webhook.test"
    assert payload["data"]["webhookId"] == hook["id"]
    assert payload == event(api, event_id)

    [delivered] = wait_deliveries(api, hook["id"], settled)
    assert delivered["status"] == "succeeded"
    again = api.post(f"/webhooks/{hook['id']}/deliveries/{delivered['id']}/redeliver")
    assert again.status_code == 202, again.get_json()
    new = again.get_json()["data"]
    assert (new["eventId"], new["attempt"], new["status"]) == (event_id, 2, "pending")
    assert new["id"] != delivered["id"]

    second = server.wait_count(2)[1]
    assert second.webhook_id == event_id
    standardwebhooks.Webhook(hook["secret"]).verify(second.body, second.headers)
    rows = wait_deliveries(api, hook["id"], lambda rows: len(rows) == 2 and settled(rows))
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "succeeded"), (2, "succeeded")]


def test_rotated_secret_signs_beside_the_old_one(api, worker, receiver):
    server = receiver()
    hook = create_hook(api, server.url, events=["task.created"])
    old = hook["secret"]
    response = api.post(f"/webhooks/{hook['id']}/rotate-secret")
    assert response.status_code == 200, response.get_json()
    new = response.get_json()["data"]["secret"]
    assert SECRET.fullmatch(new) and new != old
    assert response.get_json()["data"]["id"] == hook["id"]
    assert "secret" not in api.get(f"/webhooks/{hook['id']}").get_json()["data"]

    api.create("tasks", title="Signed twice")
    [request] = server.wait_count(1)
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    standardwebhooks.Webhook(new).verify(request.body, request.headers)
    standardwebhooks.Webhook(old).verify(request.body, request.headers)
    verifying = {}
    for signature in signatures:
        single = {**request.headers, "webhook-signature": signature}
        for name, secret in (("new", new), ("old", old)):
            try:
                standardwebhooks.Webhook(secret).verify(request.body, single)
                verifying[signature] = name
            except standardwebhooks.WebhookVerificationError:
                pass
    assert sorted(verifying.values()) == ["new", "old"]
    stranger = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(stranger).verify(request.body, request.headers)
    assert request.headers["x-webhook-signature"] == hex_hmac(new, request.body)
    verify_webhook(request.body, request.headers, new)
    verify_webhook(request.body, request.headers, old)


def test_another_accounts_webhook_never_receives_the_events(app, client, worker, receiver):
    alice, bob = Account(app, client), Account(app, client)
    alice_server, bob_server = receiver(), receiver()
    alice_hook = create_hook(alice.api, alice_server.url)
    bob_hook = create_hook(bob.api, bob_server.url)
    alice.api.create("tasks", title="Alice's")
    alice.api.post("/import/projects", json={"items": [{"name": "A1"}, {"name": "A2"}]})
    bob.api.create("tasks", title="Bob's")
    alice_events = {e["id"] for e in alice.api.get("/events").get_json()["data"]}
    bob_events = {e["id"] for e in bob.api.get("/events").get_json()["data"]}
    assert len(alice_events) == 3 and len(bob_events) == 1

    wait_for(lambda: alice_server.webhook_ids() == alice_events, message="Alice's deliveries")
    wait_for(lambda: bob_server.webhook_ids() == bob_events, message="Bob's delivery")
    wait_deliveries(alice.api, alice_hook["id"], lambda rows: len(rows) == 3 and settled(rows))
    wait_deliveries(bob.api, bob_hook["id"], lambda rows: len(rows) == 1 and settled(rows))
    assert {r["eventId"] for r in deliveries(bob.api, bob_hook["id"])} == bob_events
    assert bob_server.webhook_ids().isdisjoint(alice_events)
    assert [r.event["data"]["title"] for r in bob_server.received()] == ["Bob's"]


def test_sigkilled_worker_loses_no_delivery(api, worker, receiver):
    server = receiver(lambda n: (200, 0.05))
    hook = create_hook(api, server.url, events=["task.created"])
    response = api.post("/import/tasks", json={"items": [{"title": f"T{i}"} for i in range(100)]})
    assert response.status_code == 201
    expected = event_ids(api, "task.created")
    assert len(expected) == 100

    server.wait_count(5)
    worker.kill()
    in_flight = len(server.webhook_ids())
    assert in_flight < 100, "every delivery arrived before the kill: nothing was in flight"
    worker.start()

    wait_for(lambda: server.webhook_ids() == expected, timeout=45, interval=0.2,
             message="every event delivered after the worker was killed")

    def stored_rows():  # straight from the table: the log route shows only the latest 100
        with db.connection_context():
            rows = list(WebhookDelivery.select().where(WebhookDelivery.webhook_id == hook["id"]))
        return rows if all(r.status != "pending" for r in rows) else None

    rows = wait_for(stored_rows, timeout=20, message="every delivery settled")
    assert {r.event_id for r in rows if r.status == "succeeded"} == expected


def test_writes_while_redis_is_down_are_kept_and_delivered_once_it_is_back(backend_env, client,
                                                                           worker, receiver):
    server = receiver()
    worker.stop()  # with Redis down, no worker could run either
    with extra_apps() as build:
        down = build({**backend_env, "REDIS_URL": DEAD_REDIS, "WEBHOOK_ALLOW_PRIVATE": "true"})
        down_client = down.test_client()
        ready = down_client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["details"]["redis"].startswith("down")
        api = Account(down, down_client).api
        hook = create_hook(api, server.url, events=["task.created", "task.updated"])

        started = time.monotonic()
        tasks = [api.create("tasks", title=f"During the outage {i}") for i in range(3)]
        imported = api.post("/import/tasks", json={"items": [{"title": "Bulk 1"},
                                                             {"title": "Bulk 2"}]})
        assert imported.status_code == 201
        patched = api.patch(f"/tasks/{tasks[0]['id']}", json={"status": "completed"})
        assert patched.status_code == 200
        assert time.monotonic() - started < 10

        expected = event_ids(api, "task.created") | event_ids(api, "task.updated")
        assert len(expected) == 6
        pending = deliveries(api, hook["id"])
        assert {r["eventId"] for r in pending} == expected
        assert {(r["status"], r["attempt"]) for r in pending} == {("pending", 1)}
    assert server.received() == []

    worker.start()  # Redis is back: the worker's sweeper finds the pending deliveries
    wait_for(lambda: server.webhook_ids() == expected, timeout=30, interval=0.2,
             message="the outage's events delivered")
    rows = wait_deliveries(ApiClient(client, api.key), hook["id"], settled)
    assert {r["eventId"] for r in rows if r["status"] == "succeeded"} == expected
