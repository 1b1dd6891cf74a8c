"""Rate limits (contract section 11, issue 6), through the Flask test client and real gunicorn.

Covers:

- a key's own `rateLimit` ("5/minute"): the sixth request is a 429 `RATE_LIMIT_EXCEEDED`
  in the envelope with `Retry-After`, `details.limit` and `details.resetAt`; every
  limited response carries `X-RateLimit-Limit`/`Remaining`/`Reset` (counting down);
  `Retry-After` never appears on a 2xx; writes count the same as reads;
- a batch's sub-requests each count against the caller's limit: the batch is charged
  one request per sub-request when it arrives, so one that does not fit in what is
  left is refused whole (429, nothing written, nothing used up); route-group limits
  apply to each sub-request (a 429 inside the batch, in the envelope);
- the stricter group limits on batch and bulk routes (`RATELIMIT_BATCH`,
  `RATELIMIT_BULK`, on an extra app), which leave other routes alone;
- the session default (`RATELIMIT_DEFAULT`, 100 per minute) applies to keys without
  their own limit;
- keys are independent: exhausting one key leaves another key of the same account,
  and other accounts, untouched;
- Redis down (an extra app pointing at a dead port): requests still succeed (the
  documented fail-open policy, with a logged warning), never a 500;
- over real HTTP, gunicorn with two workers, a key limited to 100/minute and 8
  concurrent clients firing 500 requests: exactly 100 succeed and 400 get a 429.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import redis
import requests

from api import redis_conn
from api.services import accounts
from tests.conftest import ApiClient
from tests.extra_apps import extra_apps

DEAD_REDIS = "redis://127.0.0.1:1/0"


# --- helpers -------------------------------------------------------------------------------------


def limited_key(account, rate_limit: str | None, scopes=("admin",)) -> ApiClient:
    """A new key of `account` with its own `rateLimit` (None: the default)."""
    with account.app.app_context():
        _, secret = accounts.create_key(account.id, "limited", list(scopes), rate_limit)
    return ApiClient(account.client, secret)


def on(app, api: ApiClient) -> ApiClient:
    """The same key against another app."""
    return ApiClient(app.test_client(), api.key)


def assert_rate_limited(response) -> dict:
    body = response.get_json()
    assert response.status_code == 429, body
    assert body["success"] is False
    assert body["code"] == "RATE_LIMIT_EXCEEDED"
    assert isinstance(body["error"], str) and body["error"]
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 61
    details = body["details"]
    assert isinstance(details["limit"], str) and details["limit"]
    reset_at = datetime.fromisoformat(details["resetAt"].replace("Z", "+00:00"))
    now = datetime.now(UTC)
    assert now - timedelta(seconds=2) <= reset_at <= now + timedelta(seconds=62)
    return body


def rate_headers(response) -> tuple[int, int, int]:
    return (int(response.headers["X-RateLimit-Limit"]), int(response.headers["X-RateLimit-Remaining"]),
            int(response.headers["X-RateLimit-Reset"]))


def post_task(sub_id: str, title: str = "task") -> dict:
    return {"id": sub_id, "method": "POST", "path": "/tasks", "body": {"title": title}}


# --- per-key limits --------------------------------------------------------------------------------


def test_key_limit_answers_429_with_headers_and_details(account):
    api = limited_key(account, "5/minute")
    remaining = []
    for _ in range(5):
        response = api.get("/tasks")
        assert response.status_code == 200, response.get_json()
        assert "Retry-After" not in response.headers
        limit, left, reset = rate_headers(response)
        assert limit == 5
        remaining.append(left)
        now = datetime.now(UTC).timestamp()
        assert now - 1 <= reset <= now + 61
    assert remaining == [4, 3, 2, 1, 0]
    refused = api.get("/tasks")
    body = assert_rate_limited(refused)
    assert "5" in body["details"]["limit"] and "minute" in body["details"]["limit"]
    limit, left, reset = rate_headers(refused)
    assert (limit, left) == (5, 0)
    # The reset the headers announce is the one in `details`.
    reset_at = datetime.fromisoformat(body["details"]["resetAt"].replace("Z", "+00:00"))
    assert abs(reset_at.timestamp() - reset) <= 1
    assert refused.headers["X-Request-ID"]
    # Writes are refused too, and nothing is written.
    assert_rate_limited(api.post("/tasks", json={"title": "refused"}))
    assert account.api.get("/tasks").get_json()["meta"]["total"] == 0


def test_writes_count_against_the_limit_like_reads(account):
    api = limited_key(account, "3/minute")
    assert api.post("/tasks", json={"title": "one"}).status_code == 201
    assert api.patch("/tasks/tsk_00000000000000000000000000", json={"title": "x"}).status_code == 404
    created = api.post("/tasks", json={"title": "two"})
    assert created.status_code == 201
    assert "Retry-After" not in created.headers
    assert rate_headers(created)[:2] == (3, 0)
    assert_rate_limited(api.get("/tasks"))
    assert account.api.get("/tasks").get_json()["meta"]["total"] == 2


def test_several_windows_in_a_key_limit(account):
    api = limited_key(account, "100/minute;2/second")
    assert api.get("/tasks").status_code == 200
    assert api.get("/tasks").status_code == 200
    body = assert_rate_limited(api.get("/tasks"))
    assert "2" in body["details"]["limit"] and "second" in body["details"]["limit"]


def test_the_window_moves_on_expired_hits_free_their_slots(account):
    api = limited_key(account, "2/second")
    assert rate_headers(api.get("/tasks"))[1] == 1
    assert rate_headers(api.get("/tasks"))[1] == 0
    last_hit = time.monotonic()
    assert_rate_limited(api.get("/tasks"))
    # Time passing is the behaviour under test: once both hits are a second old, both slots
    # are free again (the refused request took none).
    time.sleep(max(0.0, last_hit + 1.05 - time.monotonic()))
    response = api.get("/tasks")
    assert response.status_code == 200
    assert rate_headers(response)[:2] == (2, 1)


def test_a_redis_that_lost_its_scripts_still_counts_exactly(account, backend_env):
    """`SCRIPT FLUSH` (as after a Redis restart): the next request loads the script again."""
    api = limited_key(account, "3/minute")
    assert rate_headers(api.get("/tasks"))[:2] == (3, 2)
    redis.Redis.from_url(backend_env["REDIS_URL"]).script_flush()
    assert rate_headers(api.get("/tasks"))[:2] == (3, 1)
    assert rate_headers(api.get("/tasks"))[:2] == (3, 0)
    assert_rate_limited(api.get("/tasks"))


def test_connections_closed_by_redis_are_replaced_and_the_request_still_counts(account,
                                                                               backend_env):
    """Redis closes this process's idle connections (as a restart does): the next request
    takes its slot on a new connection, rather than failing open uncounted."""
    api = limited_key(account, "5/minute")
    assert rate_headers(api.get("/tasks"))[:2] == (5, 4)
    with account.app.app_context(), ExitStack() as held:  # three idle connections, not one
        for _ in range(3):
            connection = held.enter_context(redis_conn.fast_connection())
            connection.send_command("PING")
            assert connection.read_response() == b"PONG"
    idle = redis_conn._spare[1]
    assert len(idle) == 3
    server = redis.Redis.from_url(backend_env["REDIS_URL"])
    for connection in idle:
        connection.send_command("CLIENT", "ID")
        server.client_kill_filter(_id=connection.read_response())
    assert rate_headers(api.get("/tasks"))[:2] == (5, 3)


def test_session_default_limit_applies_to_keys_without_their_own(account):
    api = limited_key(account, None)
    statuses = [api.get("/tasks").status_code for _ in range(100)]
    assert statuses == [200] * 100
    assert_rate_limited(api.get("/tasks"))


def test_key_rate_limit_is_shown_and_validated_on_the_keys_route(account):
    created = account.api.post("/api-keys", json={"name": "ci", "scopes": ["read"], "rateLimit": "5/minute"})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["data"]["rateLimit"] == "5/minute"
    bad = account.api.post("/api-keys", json={"name": "ci", "scopes": ["read"], "rateLimit": "lots"})
    assert bad.status_code == 400 and bad.get_json()["code"] == "VALIDATION_FAILED"
    assert "rateLimit" in bad.get_json()["details"]
    # The key made through the API is limited as declared.
    reader = ApiClient(account.client, created.get_json()["data"]["key"])
    assert [reader.get("/tasks").status_code for _ in range(5)] == [200] * 5
    assert_rate_limited(reader.get("/tasks"))


def test_keys_are_independent(account, other_account):
    exhausted = limited_key(account, "2/minute")
    sibling = limited_key(account, "2/minute")
    stranger = limited_key(other_account, "2/minute")
    assert [exhausted.get("/tasks").status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(exhausted.get("/tasks"))
    assert_rate_limited(exhausted.get("/projects"))
    for api in (sibling, stranger, account.api):
        response = api.get("/tasks")
        assert response.status_code == 200
        assert int(response.headers["X-RateLimit-Remaining"]) >= 1
    assert rate_headers(sibling.get("/tasks"))[:2] == (2, 0)
    assert_rate_limited(sibling.get("/tasks"))
    assert stranger.get("/tasks").status_code == 200


# --- batches ----------------------------------------------------------------------------------------


def test_batch_sub_requests_each_count_against_the_callers_limit(account):
    api = limited_key(account, "5/minute")
    three = {"requests": [post_task(f"r{i}", f"T{i}") for i in range(3)]}
    response = api.post("/batch", json=three)
    assert response.status_code == 200, response.get_json()
    assert [s["status"] for s in response.get_json()["responses"]] == [201, 201, 201]
    assert "Retry-After" not in response.headers
    # Three of five are used: a second batch of three does not fit and is refused whole.
    assert_rate_limited(api.post("/batch", json=three))
    assert account.api.get("/tasks").get_json()["meta"]["total"] == 3
    # What is left is two requests.
    assert [api.get("/tasks").status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(api.get("/tasks"))


def test_batch_larger_than_the_remaining_allowance_is_refused_whole(account):
    api = limited_key(account, "5/minute")
    six = {"atomic": False, "requests": [post_task(f"r{i}") for i in range(6)]}
    body = assert_rate_limited(api.post("/batch", json=six))
    assert "5" in body["details"]["limit"]
    assert account.api.get("/tasks").get_json()["meta"]["total"] == 0
    # The refused batch used up nothing.
    assert [api.get("/tasks").status_code for _ in range(5)] == [200] * 5
    assert_rate_limited(api.get("/tasks"))


def test_batch_sub_requests_count_against_route_group_limits(account, backend_env):
    with extra_apps() as build:
        strict = build({**backend_env, "RATELIMIT_BULK": "2 per minute"})
        api = on(strict, limited_key(account, None))
        imports = [{"id": f"i{i}", "method": "POST", "path": "/import/tasks",
                    "body": {"items": [{"title": f"bulk {i}"}]}} for i in range(3)]
        response = api.post("/batch", json={"atomic": True, "requests": imports})
        assert response.status_code == 200, response.get_json()
        subs = response.get_json()["responses"]
        assert [s["status"] for s in subs] == [424, 424, 429]
        assert subs[2]["body"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert subs[2]["body"]["details"]["limit"]
        assert int(subs[2]["headers"]["Retry-After"]) > 0
        assert api.get("/tasks").get_json()["meta"]["total"] == 0
        # The group limit is spent (the rolled-back imports still ran): a direct import is refused.
        assert_rate_limited(api.post("/import/tasks", json={"items": [{"title": "direct"}]}))


def test_stricter_group_limits_on_batch_and_bulk_routes(account, backend_env):
    with extra_apps() as build:
        strict = build({**backend_env, "RATELIMIT_BATCH": "2 per minute", "RATELIMIT_BULK": "2 per minute"})
        api = on(strict, limited_key(account, None))
        batch = {"requests": [{"id": "a", "method": "GET", "path": "/tasks"}]}
        for _ in range(2):
            response = api.post("/batch", json=batch)
            assert response.status_code == 200, response.get_json()
            assert "Retry-After" not in response.headers
        refused = api.post("/batch", json=batch)
        body = assert_rate_limited(refused)
        assert "2" in body["details"]["limit"]
        assert refused.headers["X-RateLimit-Limit"] == "2"

        items = {"items": [{"title": "bulk"}]}
        assert [api.post("/import/tasks", json=items).status_code for _ in range(2)] == [201, 201]
        assert_rate_limited(api.post("/import/tasks", json=items))
        updates = {"updates": [{"id": "tsk_00000000000000000000000000", "title": "t"}],
                   "options": {"skipInvalid": True}}
        assert [api.patch("/tasks/bulk", json=updates).status_code for _ in range(2)] == [207, 207]
        assert_rate_limited(api.patch("/tasks/bulk", json=updates))

        # Ordinary routes still run under the (much larger) default limit.
        listed = api.get("/tasks")
        assert listed.status_code == 200
        assert listed.get_json()["meta"]["total"] == 2
        assert api.post("/tasks", json={"title": "single"}).status_code == 201


def test_group_limit_is_per_key(account, backend_env):
    with extra_apps() as build:
        strict = build({**backend_env, "RATELIMIT_BATCH": "1 per minute"})
        first, second = on(strict, limited_key(account, None)), on(strict, limited_key(account, None))
        batch = {"requests": [{"id": "a", "method": "GET", "path": "/tasks"}]}
        assert first.post("/batch", json=batch).status_code == 200
        assert_rate_limited(first.post("/batch", json=batch))
        assert second.post("/batch", json=batch).status_code == 200


# --- Redis down ---------------------------------------------------------------------------------------


def test_redis_down_fails_open(account, backend_env, caplog):
    with extra_apps() as build:
        down = build({**backend_env, "REDIS_URL": DEAD_REDIS})
        api = on(down, limited_key(account, "2/minute"))
        with caplog.at_level(logging.WARNING):
            statuses = [api.get("/tasks").status_code for _ in range(5)]
            created = api.post("/tasks", json={"title": "while redis is down"})
            batch = api.post("/batch", json={"requests": [post_task(f"r{i}") for i in range(3)]})
        assert statuses == [200] * 5
        assert created.status_code == 201, created.get_json()
        assert "Retry-After" not in created.headers
        assert batch.status_code == 200
        assert [s["status"] for s in batch.get_json()["responses"]] == [201, 201, 201]
        assert api.get("/tasks").get_json()["meta"]["total"] == 4
        # The outage is logged (the documented policy: fail open with a warning).
        assert any(r.levelno >= logging.WARNING and "limit" in r.getMessage().lower()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
    # The session app, on the live Redis, limits again.
    assert account.api.get("/tasks").status_code == 200


# --- over real HTTP -----------------------------------------------------------------------------------


def test_two_workers_and_eight_clients_let_exactly_the_limit_through(live_server, account):
    api = limited_key(account, "100/minute", scopes=("read",))
    url = f"{live_server}/api/v1/tasks"
    local = threading.local()

    def fire(_):
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {api.key}"
        response = session.get(url, timeout=30)
        body = response.json()
        if response.status_code == 429:
            assert body["code"] == "RATE_LIMIT_EXCEEDED"
            assert int(response.headers["Retry-After"]) > 0
        return response.status_code, response.headers.get("X-RateLimit-Limit")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fire, range(500)))
    statuses = [status for status, _ in results]
    assert sum(200 <= s < 300 for s in statuses) == 100
    assert statuses.count(429) == 400
    assert {limit for _, limit in results} == {"100"}

