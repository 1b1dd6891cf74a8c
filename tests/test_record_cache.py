"""Records cached in each process, kept honest by change counters in Redis (issue 19).

- A record read once is answered again without a database read (its counters come in
  the request's one Redis call), with the same body, ETag and `If-None-Match` 304.
- Every write is seen by the next GET: a PATCH, a cascade that nulls a reference, a
  delete (404); over real gunicorn, whichever of 2 workers (both having cached the
  record) takes the GET.
- A read that raced a write is never served later: the row read before the write
  committed, kept after it, does not answer the next GET.
- A write in flight (begun, not done) keeps its record out of the cache; a write that
  rolled back (an atomic batch that failed) leaves the record cacheable, unchanged.
- A batch's runs of GETs read their records' counters in one Redis call and are answered
  from the cache too; they see the batch's own earlier writes, committed or (atomic) not.
- Entries are the account's own: another account's request for the id is a 404.
- A process that does not cache (the RQ worker, `RECORD_CACHE_SIZE=0`) still bumps the
  counters of the records it writes.
- A full cache lets its oldest entry go.
- Requests with `fields` or `expand`, `RECORD_CACHE_SIZE=0`, entries older than
  `RECORD_CACHE_SECONDS` and an unreachable Redis all read the database.
"""

import redis
import requests

from api import redis_conn
from api.services import record_cache, records
from tests.conftest import ApiClient, plain_sql
from tests.extra_apps import extra_apps


def task_reads(counter) -> list:
    """The statements that read the tasks table (also as the `EXECUTE` of a prepared one)."""
    return [s for s in counter.statements
            if plain_sql(s[0]).lstrip().upper().startswith("SELECT") and '"tasks"' in plain_sql(s[0])]


def test_a_record_read_once_is_answered_without_the_database(api, count_queries):
    task = api.create("tasks", title="cached")
    unseen = api.get(f"/tasks/{task['id']}", headers={"If-None-Match": f'"tsk_x.1", "{task["id"]}.1"'})
    assert unseen.status_code == 304 and unseen.data == b""  # (a 304 is not kept)
    first = api.get(f"/tasks/{task['id']}")
    with count_queries() as counter:
        again = api.get(f"/tasks/{task['id']}")
        not_modified = api.get(f"/tasks/{task['id']}", headers={"If-None-Match": first.headers["ETag"]})
    assert task_reads(counter) == []
    assert again.status_code == 200 and again.data == first.data
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert not_modified.status_code == 304 and not_modified.headers["ETag"] == first.headers["ETag"]


def test_every_write_is_seen_by_the_next_read(api):
    user = api.create("users", name="Ann", email="ann@cache.example")
    task = api.create("tasks", title="before", assigneeId=user["id"])
    path = f"/tasks/{task['id']}"
    assert api.get(path).get_json()["data"]["title"] == "before"
    assert api.get(path).get_json()["data"]["title"] == "before"
    patched = api.patch(path, json={"title": "after"})
    got = api.get(path)
    assert got.get_json()["data"]["title"] == "after"
    assert got.headers["ETag"] == patched.headers["ETag"]
    assert api.delete(f"/users/{user['id']}").status_code == 204  # the cascade nulls the reference
    assert api.get(path).get_json()["data"]["assigneeId"] is None
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404


def test_a_row_read_before_a_write_committed_is_not_served_after_it(api, monkeypatch):
    task = api.create("tasks", title="old")
    path = f"/tasks/{task['id']}"
    service = records.service_for("task")
    real_get = service.get

    def read_then_lose_the_race(account_id, record_id):
        row = real_get(account_id, record_id)  # the old row...
        monkeypatch.setattr(service, "get", real_get)
        service.update(account_id, record_id, {"title": "new"})  # ...then a write commits
        return row

    monkeypatch.setattr(service, "get", read_then_lose_the_race)
    assert api.get(path).get_json()["data"]["title"] == "old"  # (answered as it was read)
    assert api.get(path).get_json()["data"]["title"] == "new"
    assert api.get(path).get_json()["data"]["title"] == "new"


def test_a_write_in_flight_keeps_its_record_out_of_the_cache(api, backend_env, count_queries):
    task = api.create("tasks", title="busy")
    begun, _ = record_cache.counters(task["id"])
    redis.Redis.from_url(backend_env["REDIS_URL"]).incr(begun)  # begun, never done (a dead writer)
    api.get(f"/tasks/{task['id']}")
    with count_queries() as counter:
        assert api.get(f"/tasks/{task['id']}").status_code == 200
    assert task_reads(counter)


def test_a_write_rolled_back_leaves_the_record_cacheable_and_unchanged(api, count_queries):
    task = api.create("tasks", title="kept")
    path = f"/tasks/{task['id']}"
    before = api.get(path)
    failed = api.post("/batch", json={"atomic": True, "requests": [
        {"id": "a", "method": "PATCH", "path": path, "body": {"title": "rolled back"}},
        {"id": "b", "method": "PATCH", "path": "/tasks/tsk_missing", "body": {"title": "x"}}]})
    assert failed.get_json()["responses"][1]["status"] == 404
    reread = api.get(path)
    with count_queries() as counter:
        cached = api.get(path)
    assert task_reads(counter) == []
    assert reread.data == cached.data == before.data


def test_a_batch_reads_from_the_cache_and_sees_its_own_writes(api, count_queries):
    task = api.create("tasks", title="one")
    path = f"/tasks/{task['id']}"
    api.get(path)

    def batch(*requests, atomic=False):
        answer = api.post("/batch", json={"atomic": atomic, "requests": [
            {"id": f"r{i}", **request} for i, request in enumerate(requests)]})
        return [r["body"]["data"]["title"] for r in answer.get_json()["responses"]]

    with count_queries() as counter:
        assert batch({"method": "GET", "path": path}, {"method": "GET", "path": path}) == ["one", "one"]
    assert task_reads(counter) == []
    assert batch({"method": "GET", "path": path},
                 {"method": "PATCH", "path": path, "body": {"title": "two"}},
                 {"method": "GET", "path": path}) == ["one", "two", "two"]
    assert batch({"method": "PATCH", "path": path, "body": {"title": "three"}},
                 {"method": "GET", "path": path}, atomic=True) == ["three", "three"]
    assert api.get(path).get_json()["data"]["title"] == "three"
    assert batch({"method": "GET", "path": path}) == ["three"]


def test_another_accounts_request_for_a_cached_id_is_a_404(account, other_account):
    task = account.api.create("tasks", title="mine")
    assert account.api.get(f"/tasks/{task['id']}").status_code == 200
    assert account.api.get(f"/tasks/{task['id']}").status_code == 200
    assert other_account.api.get(f"/tasks/{task['id']}").status_code == 404


def test_fields_and_expand_are_read_from_the_database(api, count_queries):
    task = api.create("tasks", title="shaped", priority="high")
    path = f"/tasks/{task['id']}"
    api.get(path)
    with count_queries() as counter:
        shaped = api.get(f"{path}?fields=title")
    assert task_reads(counter)
    assert shaped.get_json()["data"] == {"title": "shaped"}


def test_with_no_cache_or_entries_too_old_every_read_reads_the_database(
        account, backend_env, count_queries):
    for overrides in ({"RECORD_CACHE_SIZE": "0"}, {"RECORD_CACHE_SECONDS": "0"}):
        with extra_apps() as build:
            reader = ApiClient(build({**backend_env, **overrides}).test_client(), account.api.key)
            task = reader.create("tasks", title="uncached")
            reader.get(f"/tasks/{task['id']}")
            with count_queries() as counter:
                assert reader.get(f"/tasks/{task['id']}").status_code == 200
            assert task_reads(counter), overrides


def test_a_full_cache_lets_its_oldest_entry_go(account, backend_env, count_queries):
    with extra_apps() as build:
        reader = ApiClient(build({**backend_env, "RECORD_CACHE_SIZE": "1"}).test_client(),
                           account.api.key)
        first, second = (reader.create("tasks", title=title) for title in ("first", "second"))
        reader.get(f"/tasks/{first['id']}")
        with count_queries() as kept:
            assert reader.get(f"/tasks/{first['id']}").get_json()["data"]["title"] == "first"
        reader.get(f"/tasks/{second['id']}")
        with count_queries() as evicted:
            assert reader.get(f"/tasks/{first['id']}").get_json()["data"]["title"] == "first"
        assert task_reads(kept) == [] and task_reads(evicted)


def test_a_process_that_does_not_cache_still_tells_the_others_of_its_writes(
        account, backend_env):
    task = account.api.create("tasks", title="told")
    begun, done = record_cache.counters(task["id"])
    counters = redis.Redis.from_url(backend_env["REDIS_URL"])
    with extra_apps() as build:  # as the RQ worker, or a web process with the cache off
        writer = ApiClient(build({**backend_env, "RECORD_CACHE_SIZE": "0"}).test_client(),
                           account.api.key)
        assert writer.patch(f"/tasks/{task['id']}", json={"title": "heard"}).status_code == 200
    assert counters.get(begun) is not None and counters.get(begun) == counters.get(done)


def test_without_redis_records_are_read_from_the_database(api, monkeypatch, count_queries):
    task = api.create("tasks", title="no redis")
    api.get(f"/tasks/{task['id']}")

    def unreachable():
        raise redis.ConnectionError("Redis is away")

    monkeypatch.setattr(redis_conn, "fast_connection", unreachable)
    with count_queries() as counter:
        assert api.get(f"/tasks/{task['id']}").get_json()["data"]["title"] == "no redis"
    assert task_reads(counter)


def test_every_gunicorn_worker_sees_a_write_at_once(live_server, api):
    task = api.create("tasks", title="v1")
    url = f"{live_server}/api/v1/tasks/{task['id']}"
    headers = {"Authorization": f"Bearer {api.key}"}
    sessions = [requests.Session() for _ in range(4)]
    try:
        for _ in range(10):  # keep-alive connections spread over both workers: all cache v1
            for session in sessions:
                assert session.get(url, headers=headers, timeout=10).json()["data"]["title"] == "v1"
        for version in range(2, 6):
            patched = requests.patch(url, json={"title": f"v{version}"}, headers=headers, timeout=10)
            assert patched.status_code == 200
            for session in sessions:
                got = session.get(url, headers=headers, timeout=10)
                assert got.json()["data"]["title"] == f"v{version}"
                assert got.headers["ETag"] == patched.headers["ETag"]
        assert requests.delete(url, headers=headers, timeout=10).status_code == 204
        for session in sessions:
            assert session.get(url, headers=headers, timeout=10).status_code == 404
    finally:
        for session in sessions:
            session.close()
