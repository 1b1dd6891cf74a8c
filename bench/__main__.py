"""`make bench`: throughput and latency of Quiver against bare baselines, measured in one run.

For SQLite, and PostgreSQL when one answers (see tests/backends.py):
1. raw executemany of 1,000 tasks in-process (a reference: SQLite's limit; on PostgreSQL, where
   executemany costs a round trip per row, Quiver's multi-row INSERTs beat it);
2. `POST /api/v1/import/tasks` with 1,000 tasks vs a bare Flask view that json.loads
   and executemany's the same payload (bench/baseline_app.py), same gunicorn settings;
3. the same 1,000 tasks as 1,000 single `POST /tasks` on one keep-alive connection;
   a batch of 20 `GET /tasks/{id}` against the same 20 requests sent one by one;
4. `GET /api/v1/tasks/{id}` vs a hello-world view under the same load generator (and the same
   with rate limiting off, with `METRICS_ENABLED=false` and with `RECORD_CACHE_SIZE=0`, to show
   their shares); on PostgreSQL also vs Kinto's record GET, Kinto
   running from a virtualenv of its own under the same gunicorn settings (bench/kinto_peer.py);
5. `GET /api/v1/tasks?limit=100&expand=assignee,project`: requests/s and SQL queries per request,
   and the same data through GraphQL (bench/graphql.py);
6. webhook deliveries/s and commit-to-receipt latency with 1 and 2 workers (bench/webhooks.py);
7. 1,000 open SSE streams: memory per stream, commit-to-arrival latency, CRUD latency (bench/streams.py);
8. a 200 MB upload against `cp`, and the web process's memory during it (bench/uploads.py);
9. export of 100,000 tasks and import of a 100,000-row JSONL file in a worker process: rows/s and
   peak RSS, against raw executemany (bench/jobs.py).
The load generator is bench/load.py (threads with keep-alive connections). Servers run as
users run them: rate limiting on (with limits too high to refuse) and the request log on, each
server writing its log to a file (Kinto's too, at its default level). BENCH_ROUNDS and
BENCH_DURATION (seconds per load run) shorten a run while developing.
"""

import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from api import create_app, migrate, store
from api.services import accounts
from bench import graphql as graphql_bench
from bench import jobs as jobs_bench
from bench import kinto_peer, load, streams, uploads, webhooks
from tests import backends
from tests.procs import free_port, start_gunicorn, stop_process

ROWS = 1000
UNLIMITED = {f"RATELIMIT_{name}": "100000000 per minute"
             for name in ("DEFAULT", "BATCH", "BULK", "UPLOAD", "EXPORT")}
DURATION = float(os.environ.get("BENCH_DURATION", "3"))
THREADS = 16  # keep-alive connections: enough that both workers get a fair share
# baseline and Quiver alternate over ROUNDS, so a burst of noise on the machine hits both
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
WEB_CONCURRENCY, WEB_THREADS = 2, 8  # gunicorn workers and threads of every HTTP figure (Kinto's too)


def line(backend: str, text: str) -> None:
    print(f"[{backend}] {text}", flush=True)


def tasks_payload(n: int = ROWS) -> list[dict]:
    return [{"title": f"Task {i}", "status": random.choice(["todo", "in_progress"]),
             "priority": random.choice(["low", "medium", "high"])} for i in range(n)]


def raw_executemany_rate(account_id: str) -> float:
    """Rows/s of a bare executemany of the same rows, in this process."""
    from datetime import UTC, datetime
    from uuid import uuid4

    db = store.db
    columns = ("id", "account_id", "version", "created_at", "updated_at", "title", "status", "priority")
    sql = (f'INSERT INTO "tasks" ({", ".join(columns)}) '
           f'VALUES ({", ".join([db.obj.param] * len(columns))})')
    best = float("inf")
    for _ in range(3):
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = [(f"tsk_{uuid4().hex[:26]}", account_id, 1, now, now, item["title"], item["status"],
                 item["priority"]) for item in tasks_payload()]
        started = time.perf_counter()
        with db.atomic():
            db.cursor().executemany(sql, rows)
        best = min(best, time.perf_counter() - started)
    return ROWS / best


def timed_posts(port: int, path: str, body: dict, headers: dict, repeat: int = 5) -> float:
    """Median seconds of `repeat` sequential POSTs of `body`."""
    times = []
    for _ in range(repeat):
        result = load.run(port, "POST", path, body=body, headers=headers, threads=1, total=1)
        assert result.errors == 0, f"POST {path} failed"
        times.append(result.seconds)
    return statistics.median(times)


def count_list_queries(app, key: str) -> int:
    """SQL statements run by one `GET /tasks?limit=100&expand=assignee,project`, leaving out
    the key's (its read, when this process does not remember it, and its last-use mark,
    once a minute), which depend on the time since the key was last used."""
    counted = []

    def is_list_query(record) -> bool:
        if record.name != "peewee" or not isinstance(record.msg, tuple):
            return False  # (the pool's own messages)
        sql = record.msg[0]
        if sql.startswith("EXECUTE "):
            sql = store.PREPARED[sql.split()[1]]
        return '"api_keys"' not in sql

    handler = logging.Handler()
    handler.emit = lambda record: counted.append(record) if is_list_query(record) else None
    logger = logging.getLogger("peewee")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        response = app.test_client().get("/api/v1/tasks?limit=100&expand=assignee,project",
                                         headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.WARNING)
    return len(counted)


def bench_backend(name: str, database_url: str, var_dir: Path, redis_url: str,
                  core_only: bool = False, kinto_url: str | None = None) -> None:
    """Every figure for one backend; with `core_only`, those of the bulk, read and batch paths.
    With `kinto_url` (a PostgreSQL database URL), `GET /tasks/{id}` is also set against Kinto's."""
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "VAR_DIR": str(var_dir),
           "LOG_LEVEL": "WARNING", "WEBHOOK_ALLOW_PRIVATE": "true", **UNLIMITED}
    app = create_app(env)
    with app.app_context():
        migrate.upgrade()
        account, key = accounts.create_account("bench")
        raw_rate = raw_executemany_rate(account.id)
    line(name, f"raw executemany of the same rows, in-process: {raw_rate:,.0f} rows/s (reference)")

    proc_env = {**os.environ, **env, "BENCH_ACCOUNT_ID": account.id, "LOG_LEVEL": "INFO",
                "WEB_CONCURRENCY": str(WEB_CONCURRENCY), "WEB_THREADS": str(WEB_THREADS)}
    quiver_port, base_port, unlimited_port, unmetered_port, uncached_port = (
        free_port(), free_port(), free_port(), free_port(), free_port())
    quiver = start_gunicorn(proc_env, quiver_port, log=var_dir / f"{name}-quiver.log")
    baseline = start_gunicorn(proc_env, base_port, "bench.baseline_app:app", "/hello",
                              log=var_dir / f"{name}-hello.log")
    unlimited = start_gunicorn({**proc_env, "RATELIMIT_ENABLED": "false"}, unlimited_port,
                               log=var_dir / f"{name}-limits-off.log")
    unmetered = start_gunicorn({**proc_env, "METRICS_ENABLED": "false"}, unmetered_port,
                               log=var_dir / f"{name}-metrics-off.log")
    uncached = start_gunicorn({**proc_env, "RECORD_CACHE_SIZE": "0"}, uncached_port,
                              log=var_dir / f"{name}-cache-off.log")
    auth = {"Authorization": f"Bearer {key}"}
    peers = ExitStack()
    try:
        payload = {"items": tasks_payload()}
        pairs = [(timed_posts(base_port, "/import", payload, {}, repeat=1),
                  timed_posts(quiver_port, "/api/v1/import/tasks", payload, auth, repeat=1))
                 for _ in range(ROUNDS)]
        base_seconds = statistics.median(base for base, _ in pairs)
        bulk_seconds = statistics.median(bulk for _, bulk in pairs)
        ratio = statistics.median(base / bulk for base, bulk in pairs)
        line(name, f"bulk import over HTTP: {ROWS / bulk_seconds:,.0f} rows/s; baseline "
                   f"{ROWS / base_seconds:,.0f} rows/s; ratio {ratio:.2f} (goal >= 0.25)")

        items = iter(tasks_payload())
        singles = load.run(quiver_port, "POST", "/api/v1/tasks", body=next(items), headers=auth,
                           threads=1, total=ROWS)
        line(name, f"1,000 single POSTs: {singles.seconds:.2f} s; bulk import is "
                   f"{singles.seconds / bulk_seconds:.1f}x faster (goal >= 20x)")

        ids = [t["id"] for t in _list(quiver_port, auth, "/api/v1/tasks?limit=100")]

        def get_one(port):
            return load.run(port, "GET", lambda: f"/api/v1/tasks/{random.choice(ids)}",
                            headers=auth, threads=THREADS, duration=DURATION)

        kinto = _start_kinto(peers, name, kinto_url) if kinto_url else None

        def get_kinto():
            if kinto is None:
                return None
            result = load.run(kinto.port, "GET", lambda: random.choice(kinto.record_paths),
                              headers=kinto.headers, threads=THREADS, duration=DURATION)
            assert result.errors == 0, f"{result.errors} Kinto record GETs failed"
            return result

        # metrics off right after on, so both meet the machine as the round's hello world did
        measured = [(load.run(base_port, "GET", "/hello", threads=THREADS, duration=DURATION),
                     get_one(quiver_port), get_one(unmetered_port), get_one(unlimited_port), get_kinto(),
                     get_one(uncached_port))
                    for _ in range(ROUNDS)]
        peers.close()
        rounds = [(hello, on, unlimited_, kinto_) for hello, on, _, unlimited_, kinto_, _ in measured]
        unmetered_rounds = [(hello, off) for hello, _, off, _, _, _ in measured]
        uncached_rounds = [(hello, off) for hello, _, _, _, _, off in measured]
        latencies = load.LoadResult(0, 1, [t for _, q, _, _ in rounds for t in q.latencies], 0)
        line(name, f"GET /tasks/{{id}}: {statistics.median(q.rate for _, q, _, _ in rounds):,.0f} req/s, "
                   f"p50 {latencies.p50:.1f} ms, p99 {latencies.percentile(0.99):.1f} ms; hello world "
                   f"{statistics.median(h.rate for h, _, _, _ in rounds):,.0f} req/s; "
                   f"ratio {statistics.median(q.rate / h.rate for h, q, _, _ in rounds):.2f} "
                   f"(median of {ROUNDS} alternating rounds; goal >= 0.5)")
        line(name, f"GET /tasks/{{id}} with RATELIMIT_ENABLED=false: "
                   f"{statistics.median(u.rate for _, _, u, _ in rounds):,.0f} req/s; ratio "
                   f"{statistics.median(u.rate / h.rate for h, _, u, _ in rounds):.2f} "
                   "(limits off: the key's revocation marker is still read from Redis, in the same call)")
        _metrics_on_off(name, rounds, unmetered_rounds)
        line(name, f"GET /tasks/{{id}} with RECORD_CACHE_SIZE=0 (every GET reads the database): "
                   f"{statistics.median(u.rate for _, u in uncached_rounds):,.0f} req/s; ratio "
                   f"{statistics.median(u.rate / h.rate for h, u in uncached_rounds):.2f} (reported)")
        if kinto is not None:
            line(name, f"GET /tasks/{{id}} vs Kinto record GET: "
                       f"{statistics.median(q.rate for _, q, _, _ in rounds):,.0f} req/s vs "
                       f"{statistics.median(k.rate for _, _, _, k in rounds):,.0f} req/s, ratio "
                       f"{statistics.median(q.rate / k.rate for _, q, _, k in rounds):.2f}× "
                       f"(median of {ROUNDS} alternating rounds; goal >= 5x)")

        _writes_vs_hello(name, quiver_port, base_port, auth, ids)
        batch_seconds, single_seconds = _batch_vs_singles(quiver_port, auth, ids[:20])
        line(name, f"batch of 20 GET /tasks/{{id}}: {batch_seconds * 1000:.1f} ms; 20 keep-alive "
                   f"requests: {single_seconds * 1000:.1f} ms; batch {single_seconds / batch_seconds:.1f}x "
                   "faster (goal >= 3x)")

        _seed_relations(quiver_port, auth, ids)
        if not core_only:
            graphql_bench.run(line, name, quiver_port, auth)
        listing = load.run(quiver_port, "GET", "/api/v1/tasks?limit=100&expand=assignee,project",
                           headers=auth, threads=THREADS, duration=DURATION)
        with app.app_context():
            queries = count_list_queries(app, key)
        line(name, f"GET /tasks?limit=100&expand=assignee,project: {listing.rate:,.0f} req/s, "
                   f"p50 {listing.p50:.1f} ms, p99 {listing.percentile(0.99):.1f} ms, "
                   f"{queries} SQL queries per request")
    finally:
        peers.close()
        stop_process(quiver)
        stop_process(baseline)
        stop_process(unlimited)
        stop_process(unmetered)
        stop_process(uncached)
    if core_only:
        return
    with app.app_context():
        webhooks.run(line, name, app, key, env)
    jobs_bench.run(line, name, app, account.id, env)
    streams.run(line, name, env, key)
    uploads.run(line, name, env, key, var_dir)


def _metrics_on_off(name: str, rounds: list, unmetered_rounds: list) -> None:
    """The `GET /tasks/{id}` vs hello-world ratio with metrics on (the default) and with
    `METRICS_ENABLED=false`, from the same alternating rounds."""
    on = statistics.median(q.rate / h.rate for h, q, _, _ in rounds)
    off = statistics.median(o.rate / h.rate for h, o in unmetered_rounds)
    line(name, f"GET /tasks/{{id}} ratio with metrics on {on:.2f}, with METRICS_ENABLED=false "
               f"{off:.2f}: metrics cost {off - on:+.2f} (median of {ROUNDS} alternating rounds; "
               "goal <= 0.02)")


def _writes_vs_hello(name: str, quiver_port: int, base_port: int, auth: dict, ids: list[str]) -> None:
    """`POST /tasks` and `PATCH /tasks/{id}` (each one a real write) against hello world."""
    counter = iter(range(10**9))

    def titled():
        return {"title": f"Written {next(counter)}"}

    rounds = [(load.run(base_port, "GET", "/hello", threads=THREADS, duration=DURATION),
               load.run(quiver_port, "POST", "/api/v1/tasks", body=titled, headers=auth,
                        threads=THREADS, duration=DURATION),
               load.run(quiver_port, "PATCH", lambda: f"/api/v1/tasks/{random.choice(ids)}",
                        body=titled, headers=auth, threads=THREADS, duration=DURATION))
              for _ in range(ROUNDS)]
    for label, index in (("POST /tasks", 1), ("PATCH /tasks/{id}", 2)):
        results = [r[index] for r in rounds]
        assert all(r.errors == 0 for r in results), f"{label}: {sum(r.errors for r in results)} errors"
        line(name, f"{label} vs hello world: "
                   f"{statistics.median(r.rate for r in results):,.0f} req/s, p99 "
                   f"{statistics.median(r.percentile(0.99) for r in results):.1f} ms; ratio "
                   f"{statistics.median(r[index].rate / r[0].rate for r in rounds):.2f} "
                   f"(median of {ROUNDS} alternating rounds; reported)")


def _start_kinto(peers: ExitStack, name: str, database_url: str) -> kinto_peer.Peer | None:
    """Kinto serving records (stopped when `peers` closes), or None if it could not be installed."""
    try:
        return peers.enter_context(kinto_peer.serve(database_url, WEB_CONCURRENCY, WEB_THREADS))
    except kinto_peer.Unavailable as exc:
        line(name, f"GET /tasks/{{id}} vs Kinto record GET: skipped ({exc})")
        return None


def _batch_vs_singles(port: int, auth: dict, ids: list[str], rounds: int = 30) -> tuple[float, float]:
    """Median seconds for one batch of GETs, and for the same GETs sent one by one (keep-alive)."""
    import http.client

    body = json.dumps({"requests": [{"id": f"r{i}", "method": "GET", "path": f"/tasks/{task_id}"}
                                    for i, task_id in enumerate(ids)]})
    conn = http.client.HTTPConnection("127.0.0.1", port)
    batch_times, single_times = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        conn.request("POST", "/api/v1/batch", body=body,
                     headers={**auth, "Content-Type": "application/json"})
        assert conn.getresponse().read() and True
        batch_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        for task_id in ids:
            conn.request("GET", f"/api/v1/tasks/{task_id}", headers=auth)
            conn.getresponse().read()
        single_times.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(batch_times), statistics.median(single_times)


def _list(port: int, auth: dict, path: str) -> list[dict]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("GET", path, headers=auth)
    data = json.loads(conn.getresponse().read())["data"]
    conn.close()
    return data


def _seed_relations(port: int, auth: dict, task_ids: list[str]) -> None:
    """Give the newest tasks assignees and projects so that `expand` has work to do."""
    import http.client

    def post(path, body):
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("POST" if path.startswith("/api/v1/import") else "PATCH", path,
                     body=json.dumps(body), headers={**auth, "Content-Type": "application/json"})
        result = json.loads(conn.getresponse().read())["data"]
        conn.close()
        return result

    users = post("/api/v1/import/users", {"items": [
        {"name": f"User {i}", "email": f"user{i}@bench.example"} for i in range(20)]})["items"]
    projects = post("/api/v1/import/projects", {"items": [
        {"name": f"Project {i}"} for i in range(10)]})["items"]
    newest = _list(port, auth, "/api/v1/tasks?limit=100&fields=id")
    post("/api/v1/tasks/bulk", {"updates": [
        {"id": t["id"], "assigneeId": random.choice(users)["id"],
         "projectId": random.choice(projects)["id"]} for t in newest]})


def main() -> None:
    """`python -m bench` for every figure; `python -m bench core` for 1 to 5 alone (no GraphQL)."""
    core_only = sys.argv[1:] == ["core"]
    random.seed(7)
    with tempfile.TemporaryDirectory(prefix="quiver-bench-") as tmp:
        var_dir = Path(tmp)
        redis_url = backends.test_redis_url(var_dir)
        bench_backend("sqlite", f"sqlite:///{var_dir / 'bench.db'}", var_dir, redis_url, core_only)
        pg = os.environ.get("TEST_DATABASE_URL") or backends.LOCAL_POSTGRES
        if backends.postgres_answers(pg):
            url, schema = backends.postgres_schema_url(pg)
            try:
                bench_backend("postgresql", url, var_dir, redis_url, core_only, kinto_url=pg)
            finally:
                backends.drop_postgres_schema(pg, schema)
        else:
            print("[postgresql] not reachable: skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
