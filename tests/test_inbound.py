"""Inbound webhooks (contract section 10, issue 18 item 11): `POST /api/v1/inbound/{source}`.

Requests are signed with the `standardwebhooks` library and with a Stripe signer written
here from Stripe's documented scheme (`t=<ts>,v1=<hex HMAC-SHA256 of "{t}.{body}">`).
The example source `tasks` (`api/sources/tasks.py`) is handled by a real burst worker;
the sources this module declares (`stripe-test`, `failing-test`) are unknown to a worker
process, so their jobs run in-process through the same entry point (`jobs.inbound.run`).

Covered:

- a verified event answers 202 with its ids, its `inbound` job runs and changes the record
  (status, version, `completedAt`), and the job's result names the event and the handler's
  return; `GET /jobs?type=inbound` lists it;
- a redelivery (same `webhook-id`, or the same Stripe `id`), before or after it was handled,
  or eight at once, answers 200 `duplicate: true` with the first ids: one job, the record
  written once;
- 401 `UNAUTHORIZED` for a bad signature, missing headers, a stale or future timestamp and
  the wrong secret, in both schemes (and a non-ASCII signature): nothing stored, no job;
- 404 for an unknown source, a source whose secret or account is unset, or whose account
  does not exist; 413 for a body over `JSON_MAX_BYTES`; 400 for a signed body that is not
  a JSON object or has no event id;
- a failing handler: its writes roll back, the job is retried (`attempts`, `error`) and,
  out of attempts, failed, as `GET /jobs` shows, with a `job.failed` event;
- the OpenAPI document: the route is public, the jobs `type` filter knows `inbound`.
"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from api.inbound import InboundEvent, inbound
from api.inbound_signing import standard_webhooks, stripe_signature
from api.models import InboundEventRow
from api.services.records import service_for
from api.store import db
from api.webhook_signing import generate_secret
from jobs import inbound as inbound_jobs
from tests.procs import ROOT

URL = "/api/v1/inbound"
STRIPE_SECRET = "whsec_stripe_test_0123456789abcdef"


@inbound("stripe-test", verifier=stripe_signature, secret_env="QUIVER_TEST_STRIPE_SECRET")
def _paid(event: InboundEvent) -> dict | None:
    """`invoice.paid` completes the task named in the invoice's metadata."""
    if event.type != "invoice.paid":
        return None
    task_id = event.payload["data"]["object"]["metadata"]["taskId"]
    task = service_for("task").update(event.account_id, task_id, {"status": "completed"})
    return {"taskId": task.id}


@inbound("failing-test", verifier=standard_webhooks, secret_env="QUIVER_TEST_FAILING_SECRET")
def _fail(event: InboundEvent) -> dict | None:
    """Writes, then fails: the write must not survive."""
    service_for("task").update(event.account_id, event.payload["taskId"], {"priority": "high"})
    raise RuntimeError("the handler broke")


# --- signing ---------------------------------------------------------------------------------------


def standard_headers(secret: str, msg_id: str, body: bytes, at: datetime | None = None) -> dict:
    at = at or datetime.now(UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
            "Content-Type": "application/json"}


def stripe_v1(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def stripe_headers(secret: str, body: bytes, timestamp: int | None = None, extra_v1: str = "") -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    header = f"t={timestamp},{extra_v1}v1={stripe_v1(secret, timestamp, body)},v0=ignored"
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def completed_event(task_id: str) -> bytes:
    return json.dumps({"type": "task.completed", "data": {"taskId": task_id}}).encode()


def invoice_paid(event_id: str, task_id: str) -> bytes:
    return json.dumps({"id": event_id, "type": "invoice.paid", "data": {"object": {
        "object": "invoice", "metadata": {"taskId": task_id}}}}).encode()


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def tasks_secret(account, monkeypatch) -> str:
    """The example `tasks` source, configured for this test's account."""
    secret = generate_secret()
    monkeypatch.setenv("TASKS_WEBHOOK_SECRET", secret)
    monkeypatch.setenv("TASKS_WEBHOOK_ACCOUNT", account.id)
    return secret


@pytest.fixture
def stripe_source(account, monkeypatch) -> str:
    monkeypatch.setenv("QUIVER_TEST_STRIPE_SECRET", STRIPE_SECRET)
    monkeypatch.setenv("QUIVER_TEST_STRIPE_ACCOUNT", account.id)
    return STRIPE_SECRET


@pytest.fixture
def run_burst(backend_env):
    """`run_burst()` runs `python -m jobs.worker --burst` to completion."""

    def run() -> None:
        env = {**os.environ, **backend_env, "LOG_LEVEL": "WARNING"}
        result = subprocess.run([sys.executable, "-m", "jobs.worker", "--burst"], cwd=ROOT, env=env,
                                capture_output=True, timeout=180)
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]

    return run


def stored(account_id: str) -> int:
    with db.connection_context():
        return InboundEventRow.select().where(InboundEventRow.account_id == account_id).count()


def inbound_jobs_of(api) -> list[dict]:
    response = api.get("/jobs?type=inbound&limit=100")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def job(api, job_id: str) -> dict:
    return api.get(f"/jobs/{job_id}").get_json()["data"]


def run_in_process(job_id: str) -> None:
    inbound_jobs.run(job_id)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert body["success"] is False and body["code"] == code and body["error"]
    return body


# --- accepted events -------------------------------------------------------------------------------


def test_a_signed_event_is_accepted_and_its_job_completes_the_task(client, api, account, tasks_secret,
                                                                   run_burst):
    task = api.create("tasks", title="Ship it")
    body = completed_event(task["id"])
    response = client.post(f"{URL}/tasks", data=body,
                           headers=standard_headers(tasks_secret, "msg_first", body))
    assert response.status_code == 202, response.get_json()
    data = response.get_json()["data"]
    assert response.get_json()["success"] is True
    assert data["id"].startswith("inb_") and data["jobId"].startswith("job_")
    assert data | {"id": None, "jobId": None} == {
        "id": None, "source": "tasks", "eventId": "msg_first", "type": "task.completed",
        "jobId": None, "duplicate": False}
    queued = job(api, data["jobId"])
    assert (queued["type"], queued["status"], queued["entity"]) == ("inbound", "queued", "tasks")

    run_burst()

    done = job(api, data["jobId"])
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1 and done["error"] is None
    assert done["progress"] == {"done": 1, "total": 1}
    assert done["result"] == {"source": "tasks", "eventId": "msg_first", "type": "task.completed",
                              "handled": {"taskId": task["id"], "version": 2}}
    after = api.get(f"/tasks/{task['id']}").get_json()["data"]
    assert after["status"] == "completed" and after["completedAt"] is not None
    assert api.get(f"/tasks/{task['id']}").headers["ETag"] == f'"{task["id"]}.2"'
    assert [j["id"] for j in inbound_jobs_of(api)] == [data["jobId"]]
    types = [e["type"] for e in api.get("/events?limit=100").get_json()["data"]]
    assert "task.updated" in types and "job.completed" in types


def test_a_redelivery_is_acknowledged_and_not_handled_again(client, api, account, tasks_secret,
                                                            run_burst):
    task = api.create("tasks", title="Once")
    body = completed_event(task["id"])
    first = client.post(f"{URL}/tasks", data=body, headers=standard_headers(tasks_secret, "msg_1", body))
    assert first.status_code == 202
    again = client.post(f"{URL}/tasks", data=body, headers=standard_headers(
        tasks_secret, "msg_1", body, datetime.now(UTC) - timedelta(seconds=30)))
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["data"] == {**first.get_json()["data"], "duplicate": True}

    run_burst()
    late = client.post(f"{URL}/tasks", data=body, headers=standard_headers(tasks_secret, "msg_1", body))
    assert late.status_code == 200 and late.get_json()["data"]["duplicate"] is True
    run_burst()

    assert len(inbound_jobs_of(api)) == 1 and stored(account.id) == 1
    assert api.get(f"/tasks/{task['id']}").headers["ETag"] == f'"{task["id"]}.2"'
    # Another event id is another event, handled on its own (the task is already completed).
    other = client.post(f"{URL}/tasks", data=body, headers=standard_headers(tasks_secret, "msg_2", body))
    assert other.status_code == 202 and other.get_json()["data"]["jobId"] != first.get_json()["data"]["jobId"]


def test_simultaneous_deliveries_of_one_event_store_it_once(app, api, account, tasks_secret):
    body = completed_event("tsk_whatever")
    headers = standard_headers(tasks_secret, "msg_race", body)
    barrier = threading.Barrier(8)

    def deliver(_):
        barrier.wait()
        with app.test_client() as own:
            response = own.post(f"{URL}/tasks", data=body, headers=headers)
        return response.status_code, response.get_json()["data"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(deliver, range(8)))
    assert sorted(status for status, _ in answers) == [200] * 7 + [202]
    assert len({data["id"] for _, data in answers}) == 1
    assert len(inbound_jobs_of(api)) == 1 and stored(account.id) == 1


def test_an_event_the_handler_ignores_succeeds_with_nothing_handled(client, api, tasks_secret, run_burst):
    body = json.dumps({"type": "task.commented", "data": {}}).encode()
    response = client.post(f"{URL}/tasks", data=body, headers=standard_headers(tasks_secret, "msg_x", body))
    assert response.status_code == 202
    run_burst()
    done = job(api, response.get_json()["data"]["jobId"])
    assert done["status"] == "succeeded" and done["result"]["handled"] is None


def test_a_stripe_signed_event_is_accepted_once_and_handled(client, api, account, stripe_source):
    task = api.create("tasks", title="Invoice")
    body = invoice_paid("evt_1Q2w3E", task["id"])
    response = client.post(f"{URL}/stripe-test", data=body, headers=stripe_headers(stripe_source, body))
    assert response.status_code == 202, response.get_json()
    data = response.get_json()["data"]
    assert (data["eventId"], data["type"]) == ("evt_1Q2w3E", "invoice.paid")
    # Several v1 signatures (as during a secret roll): one matching is enough.
    wrong = stripe_v1("whsec_other", int(time.time()), body)
    again = client.post(f"{URL}/stripe-test", data=body,
                        headers=stripe_headers(stripe_source, body, extra_v1=f"v1={wrong},"))
    assert again.status_code == 200 and again.get_json()["data"]["id"] == data["id"]

    run_in_process(data["jobId"])

    done = job(api, data["jobId"])
    assert done["status"] == "succeeded" and done["result"]["handled"] == {"taskId": task["id"]}
    assert api.get(f"/tasks/{task['id']}").get_json()["data"]["status"] == "completed"
    assert len(inbound_jobs_of(api)) == 1 and stored(account.id) == 1


# --- refused requests ------------------------------------------------------------------------------


def _standard_cases(secret: str, body: bytes) -> dict:
    good = standard_headers(secret, "msg_bad", body)
    stale = datetime.now(UTC) - timedelta(seconds=301)
    future = datetime.now(UTC) + timedelta(seconds=301)
    return {
        "tampered body": (body + b" ", good),
        "no signature": (body, {k: v for k, v in good.items() if k != "webhook-signature"}),
        "no id": (body, {k: v for k, v in good.items() if k != "webhook-id"}),
        "no timestamp": (body, {k: v for k, v in good.items() if k != "webhook-timestamp"}),
        "no headers": (body, {"Content-Type": "application/json"}),
        "stale": (body, standard_headers(secret, "msg_bad", body, stale)),
        "future": (body, standard_headers(secret, "msg_bad", body, future)),
        "wrong secret": (body, standard_headers(generate_secret(), "msg_bad", body)),
        "other id signed": (body, {**good, "webhook-id": "msg_other"}),
        "non-ASCII signature": (body, {**good, "webhook-signature": "v1,\u00e9t\u00e9"}),
        "malformed timestamp": (body, {**good, "webhook-timestamp": "1e9"}),
    }


def _stripe_cases(secret: str, body: bytes) -> dict:
    now = int(time.time())
    good = stripe_headers(secret, body, now)
    return {
        "tampered body": (body + b" ", good),
        "no header": (body, {"Content-Type": "application/json"}),
        "no v1": (body, {**good, "Stripe-Signature": f"t={now},v0={stripe_v1(secret, now, body)}"}),
        "no t": (body, {**good, "Stripe-Signature": f"v1={stripe_v1(secret, now, body)}"}),
        "stale": (body, stripe_headers(secret, body, now - 301)),
        "future": (body, stripe_headers(secret, body, now + 301)),
        "wrong secret": (body, stripe_headers("whsec_not_the_secret", body)),
        "timestamp not signed": (body, {**good, "Stripe-Signature": good["Stripe-Signature"].replace(
            f"t={now}", f"t={now - 1}", 1)}),
    }


STANDARD_CASES = list(_standard_cases(generate_secret(), b"{}"))
STRIPE_CASES = list(_stripe_cases(STRIPE_SECRET, b"{}"))


@pytest.mark.parametrize("case", STANDARD_CASES)
def test_badly_signed_standard_webhooks_are_401_and_store_nothing(client, api, account, tasks_secret, case):
    task = api.create("tasks", title="Untouched")
    body, headers = _standard_cases(tasks_secret, completed_event(task["id"]))[case]
    body = assert_error(client.post(f"{URL}/tasks", data=body, headers=headers), 401, "UNAUTHORIZED")
    assert "signature" in body["error"]
    assert stored(account.id) == 0 and inbound_jobs_of(api) == []


@pytest.mark.parametrize("case", STRIPE_CASES)
def test_badly_signed_stripe_events_are_401_and_store_nothing(client, api, account, stripe_source, case):
    body, headers = _stripe_cases(stripe_source, invoice_paid("evt_bad", "tsk_x"))[case]
    assert_error(client.post(f"{URL}/stripe-test", data=body, headers=headers), 401, "UNAUTHORIZED")
    assert stored(account.id) == 0 and inbound_jobs_of(api) == []


def test_sources_that_do_not_exist_or_are_not_configured_are_404(client, account, monkeypatch):
    secret = generate_secret()
    body = completed_event("tsk_x")
    headers = standard_headers(secret, "msg_404", body)
    assert_error(client.post(f"{URL}/nope", data=body, headers=headers), 404, "NOT_FOUND")
    monkeypatch.delenv("TASKS_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("TASKS_WEBHOOK_ACCOUNT", account.id)
    assert_error(client.post(f"{URL}/tasks", data=body, headers=headers), 404, "NOT_FOUND")
    monkeypatch.setenv("TASKS_WEBHOOK_SECRET", secret)
    monkeypatch.delenv("TASKS_WEBHOOK_ACCOUNT")
    assert_error(client.post(f"{URL}/tasks", data=body, headers=headers), 404, "NOT_FOUND")
    monkeypatch.setenv("TASKS_WEBHOOK_ACCOUNT", "acc_doesnotexist")
    assert_error(client.post(f"{URL}/tasks", data=body, headers=headers), 404, "NOT_FOUND")
    with db.connection_context():
        assert InboundEventRow.select().where(InboundEventRow.event_id == "msg_404").count() == 0


def test_a_body_over_json_max_bytes_is_413(client, app, api, account, tasks_secret):
    body = json.dumps({"type": "task.completed", "pad": "x" * app.config["QUIVER"].json_max_bytes}).encode()
    response = client.post(f"{URL}/tasks", data=body, headers=standard_headers(tasks_secret, "msg_big", body))
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert stored(account.id) == 0


@pytest.mark.parametrize("body, content_type", [
    (b"not json", "application/json"), (b"[1, 2]", "application/json"), (b"{}", "text/plain")])
def test_a_signed_body_that_is_not_a_json_object_is_400(client, api, account, tasks_secret, body,
                                                        content_type):
    headers = {**standard_headers(tasks_secret, "msg_400", body), "Content-Type": content_type}
    response = client.post(f"{URL}/tasks", data=body, headers=headers)
    assert response.status_code == 400 and response.get_json()["success"] is False
    assert stored(account.id) == 0


def test_a_signed_stripe_event_without_an_id_is_400(client, account, stripe_source):
    body = json.dumps({"type": "invoice.paid"}).encode()
    response = client.post(f"{URL}/stripe-test", data=body, headers=stripe_headers(stripe_source, body))
    assert assert_error(response, 400, "VALIDATION_FAILED")["details"] == {
        "eventId": ["Must be 1 to 255 characters without control characters."]}
    assert stored(account.id) == 0


# --- failures --------------------------------------------------------------------------------------


def test_a_failing_handler_is_retried_then_failed_and_its_writes_roll_back(client, api, account,
                                                                          monkeypatch):
    secret = generate_secret()
    monkeypatch.setenv("QUIVER_TEST_FAILING_SECRET", secret)
    monkeypatch.setenv("QUIVER_TEST_FAILING_ACCOUNT", account.id)
    task = api.create("tasks", title="Stays medium")
    body = json.dumps({"type": "anything", "taskId": task["id"]}).encode()
    response = client.post(f"{URL}/failing-test", data=body, headers=standard_headers(secret, "msg_f", body))
    assert response.status_code == 202
    job_id = response.get_json()["data"]["jobId"]

    run_in_process(job_id)
    retried = job(api, job_id)
    assert (retried["status"], retried["attempts"]) == ("queued", 1)
    assert retried["error"] == "RuntimeError: the handler broke"
    run_in_process(job_id)
    run_in_process(job_id)  # JOB_MAX_ATTEMPTS is 3

    failed = job(api, job_id)
    assert (failed["status"], failed["attempts"]) == ("failed", 3)
    assert failed["error"] == "RuntimeError: the handler broke" and failed["result"] is None
    listed = api.get("/jobs?type=inbound&status=failed").get_json()["data"]
    assert [j["id"] for j in listed] == [job_id]
    stored_task = api.get(f"/tasks/{task['id']}")
    assert stored_task.get_json()["data"]["priority"] == "medium"
    assert stored_task.headers["ETag"] == f'"{task["id"]}.1"'
    failed_events = api.get("/events?type=job.failed").get_json()["data"]
    assert [e["data"]["id"] for e in failed_events] == [job_id]


# --- documents and filters -------------------------------------------------------------------------


def test_the_route_is_public_and_the_jobs_filter_knows_inbound(client, api):
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/inbound/{source}"]["post"]
    assert operation["security"] == [] and {"200", "202", "401", "404", "413"} <= set(operation["responses"])
    type_param = next(p for p in spec["paths"]["/api/v1/jobs"]["get"]["parameters"] if p["name"] == "type")
    assert type_param["schema"]["enum"] == ["export", "import", "inbound"]
    assert api.get("/jobs?type=inbound").status_code == 200
    refused = assert_error(api.get("/jobs?type=bogus"), 400, "VALIDATION_FAILED")
    assert refused["details"] == {"type": ["Must be one of: export, import, inbound."]}
