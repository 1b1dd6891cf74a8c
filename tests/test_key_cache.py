"""Keys remembered in-process, kept honest by one Redis call per request (issue 19).

- A key this process has read is not read from the database again: a request with
  it runs no `api_keys` query at all (and its limits and marker are one script call).
- Revocation stays immediate: revoking bumps the key's marker after the database,
  so the next request in any process reads the key again and answers 401. Over real
  gunicorn (2 workers, both having served the key) the first request after a revoke
  is a 401, whichever worker takes it.
- When Redis cannot be reached, the key is read from the database on every request
  (limits fail open): a revocation whose marker never reached Redis still holds.
- When Redis has lost its data (a new epoch), remembered keys are read again.
- A request over any of its limits takes no slot in the others.
"""

import redis
import requests

from api import redis_conn
from api.models import ApiKey
from api.services import keys
from api.timeutil import utcnow
from tests.conftest import ApiClient, plain_sql
from tests.extra_apps import extra_apps


def key_queries(counter) -> list:
    """The statements that read keys (also as the `EXECUTE` of a prepared one)."""
    return [s for s in counter.statements if '"api_keys"' in plain_sql(s[0])]


def new_key(account, *scopes, rate_limit=None) -> ApiClient:
    client = account.key(*(scopes or ("read",)))
    if rate_limit:
        with account.app.app_context():
            ApiKey.update(rate_limit=rate_limit).where(
                ApiKey.key_hash == keys.hash_key(client.key)).execute()
    return client


def revoke_in_the_database_only(app, client: ApiClient) -> None:
    """What a revocation looks like when its marker never reached Redis."""
    with app.app_context():
        ApiKey.update(revoked_at=utcnow()).where(
            ApiKey.key_hash == keys.hash_key(client.key)).execute()


def test_a_remembered_key_is_not_read_from_the_database(account, count_queries):
    reader = new_key(account)
    assert reader.get("/tasks").status_code == 200
    with count_queries() as counter:
        assert reader.get("/tasks").status_code == 200
    assert key_queries(counter) == []


def test_revoking_answers_401_at_once_even_for_a_remembered_key(account, count_queries):
    reader = new_key(account)
    assert reader.get("/tasks").status_code == 200
    listed = account.api.get("/api-keys").get_json()["data"]
    key_id = next(k["id"] for k in listed if reader.key.startswith(k["prefix"]))
    assert account.api.delete(f"/api-keys/{key_id}").status_code == 204
    with count_queries() as counter:
        refused = reader.get("/tasks")
    assert refused.status_code == 401 and "revoked" in refused.get_json()["error"]
    assert key_queries(counter), "the key was read again"
    assert reader.get("/tasks").status_code == 401


def test_without_redis_every_request_reads_its_key(app, account, monkeypatch):
    reader = new_key(account)
    assert reader.get("/tasks").status_code == 200
    revoke_in_the_database_only(app, reader)

    def unreachable():
        raise redis.ConnectionError("Redis is away")

    monkeypatch.setattr(redis_conn, "client", unreachable)
    refused = reader.get("/tasks")
    assert refused.status_code == 401, refused.get_json()


def test_a_redis_that_lost_its_data_makes_every_process_read_its_keys_again(
        app, account, backend_env):
    reader = new_key(account)
    assert reader.get("/tasks").status_code == 200
    revoke_in_the_database_only(app, reader)
    assert reader.get("/tasks").status_code == 200  # remembered, its marker unmoved: as designed
    redis.Redis.from_url(backend_env["REDIS_URL"]).delete(keys.EPOCH)  # a restarted, empty Redis
    assert reader.get("/tasks").status_code == 401


def test_a_request_over_one_limit_takes_no_slot_in_the_others(app, account, backend_env):
    limited = new_key(account, rate_limit="3/minute;100/hour")
    statuses = [limited.get("/tasks").status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    with app.app_context():
        key_id = ApiKey.get(ApiKey.key_hash == keys.hash_key(limited.key)).id
    hour = f"LIMITS:LIMITER/quiver/key:{key_id}/global/100/1/hour"
    assert redis.Redis.from_url(backend_env["REDIS_URL"]).llen(hour) == 3


def test_revocation_reaches_every_gunicorn_worker_at_once(live_server, account):
    reader = new_key(account)
    url = f"{live_server}/api/v1/tasks"
    headers = {"Authorization": f"Bearer {reader.key}"}
    with requests.Session() as first, requests.Session() as second:
        for _ in range(20):  # two keep-alive connections: both workers remember the key
            assert first.get(url, headers=headers, timeout=10).status_code == 200
            assert second.get(url, headers=headers, timeout=10).status_code == 200
        listed = account.api.get("/api-keys").get_json()["data"]
        key_id = next(k["id"] for k in listed if reader.key.startswith(k["prefix"]))
        assert account.api.delete(f"/api-keys/{key_id}").status_code == 204
        assert first.get(url, headers=headers, timeout=10).status_code == 401
        assert second.get(url, headers=headers, timeout=10).status_code == 401


def test_a_revocation_redis_cannot_hear_of_is_a_503_and_can_be_said_again(
        app, account, monkeypatch):
    reader = new_key(account)
    assert reader.get("/tasks").status_code == 200
    listed = account.api.get("/api-keys").get_json()["data"]
    key_id = next(k["id"] for k in listed if reader.key.startswith(k["prefix"]))
    real = redis_conn.client

    class Deaf:
        """Redis as it is, except that the marker cannot be bumped."""

        def __getattr__(self, name):
            if name == "incr":
                raise redis.ConnectionError("Redis is away")
            return getattr(real(), name)

    monkeypatch.setattr(redis_conn, "client", Deaf)
    answer = account.api.delete(f"/api-keys/{key_id}")
    assert answer.status_code == 503 and answer.get_json()["code"] == "SERVICE_UNAVAILABLE"
    with app.app_context():
        assert ApiKey.get_by_id(key_id).revoked_at is not None  # the database has it already
    monkeypatch.setattr(redis_conn, "client", real)
    assert account.api.delete(f"/api-keys/{key_id}").status_code == 204
    assert reader.get("/tasks").status_code == 401


def test_with_rate_limits_off_keys_are_still_checked_for_revocation(app, account, backend_env):
    with extra_apps() as build:
        unlimited = build({**backend_env, "RATELIMIT_ENABLED": "false"}).test_client()
        reader = ApiClient(unlimited, new_key(account).key)
        answers = [reader.get("/tasks") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert "X-RateLimit-Limit" not in answers[-1].headers
        listed = ApiClient(unlimited, account.api.key).get("/api-keys").get_json()["data"]
        key_id = next(k["id"] for k in listed if reader.key.startswith(k["prefix"]))
        assert ApiClient(unlimited, account.api.key).delete(f"/api-keys/{key_id}").status_code == 204
        assert reader.get("/tasks").status_code == 401
