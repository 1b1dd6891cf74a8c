"""Long-running jobs (contract section 8, issue 8): exports, file imports, cancel, rescue.

Everything goes through the Flask test client, and jobs are executed by real worker
processes over the session's database and Redis:

- `python -m jobs.worker --burst` (runs every queued job, then exits) where only the
  outcome matters;
- a real, long-running `python -m jobs.worker` where the test has to watch a job while it
  runs: progress, cancel while running, a worker killed mid-job (SIGKILL to the worker and
  every process descended from it, the job's work horse included).

Covered:

- `POST /export/{entity}`: 202, `Location`, `data: {id, type, status}`; bad bodies,
  filters, formats and entities answer 400/404 at once and leave no job row;
- finished exports: status, progress, timestamps; `result.url` downloads a CSV (headers
  the JSON field names, nulls empty, exactly the rows and order of the list route with
  the same filter, across several export chunks) or JSONL (each line a list-route
  record); Range requests (206); expiry after `JOB_RESULT_TTL` (410);
- `POST /import/{entity}/file`: 3,000-row CSV and JSONL files with invalid rows; progress
  seen while a worker runs; counts, the first 100 failures (by row index), rows and events
  really created; a file that is not UTF-8 fails the job; bad uploads (no file, unknown
  format, too large) leave no job row and no file behind;
- cancel: a queued job never runs; a running import stops at its next chunk; a finished
  job answers 409;
- a worker SIGKILLed mid-import: the sweeper of the next worker (`JOB_STALE_AFTER=3s`)
  retries the job (it resumes and succeeds with `attempts` 2) or, out of attempts, fails it;
- `job.completed` and `job.failed` reach a webhook receiver and `GET /events`;
- accounts: another account's job is 404 on get, cancel and result and never listed;
  `GET /jobs` filters by status and type; scopes (read cannot start an export, write
  cannot read jobs).
"""

import contextlib
import csv
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta

import pytest

from api import config
from api.models import Job
from api.services import jobs as job_service
from api.store import db
from api.timeutil import utcnow
from tests.procs import ROOT, PostServer, read_body, respond, wait_for

FINISHED = ("succeeded", "failed", "canceled")
JOB_KEYS = {"id", "type", "status", "progress", "result", "error", "createdAt", "startedAt",
            "finishedAt"}


# --- workers ---------------------------------------------------------------------------------------


@pytest.fixture
def worker_env(backend_env) -> dict:
    return {**os.environ, **backend_env, "LOG_LEVEL": "WARNING", "WEBHOOK_ALLOW_PRIVATE": "true"}


@pytest.fixture
def run_burst(worker_env):
    """`run_burst()` runs `python -m jobs.worker --burst` to completion."""

    def run(extra_env: dict | None = None) -> None:
        result = subprocess.run([sys.executable, "-m", "jobs.worker", "--burst"], cwd=ROOT,
                                env={**worker_env, **(extra_env or {})}, capture_output=True,
                                timeout=180)
        assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]

    return run


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) for every live process (from /proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        table[int(entry)] = (int(fields[1]), fields[19])
    return table


def family(pid: int) -> list[tuple[int, str]]:
    """`pid` and every process descended from it, as (pid, start time)."""
    table = _process_table()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in table:
            found.append((current, table[current][1]))
        todo += [child for child, (parent, _) in table.items() if parent == current]
    return found


def kill_all(processes: list[tuple[int, str]]) -> None:
    """SIGKILL each (pid, start time) still alive as that same process (never a reused pid)."""
    table = _process_table()
    for pid, started in processes:
        if pid in table and table[pid][1] == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class WorkerProcess:
    """A real `python -m jobs.worker` (not burst).

    RQ runs each data job in a work horse that is a process group of its own, so "the
    whole worker" is found by walking parent ids from the main process, collected before
    anything dies and is reparented.
    """

    def __init__(self, env: dict, log_path):
        self.env = env
        self.log_path = log_path
        self.process = None

    def start(self) -> "WorkerProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT,
                                            env=self.env, stdout=log, stderr=log)
        return self

    def kill(self) -> None:
        """SIGKILL the main process, its data worker and the job's work horse at once."""
        kill_all(family(self.process.pid))
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a warm shutdown), then SIGKILL whatever of the worker is left."""
        processes = family(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        kill_all(processes)
        self.process.wait(timeout=10)


@pytest.fixture
def start_worker(worker_env, tmp_path):
    """`start_worker(**env)` starts a real worker; every one is stopped when the test ends."""
    started = []

    def start(**extra_env) -> WorkerProcess:
        path = tmp_path / f"worker-{len(started)}.log"
        started.append(WorkerProcess({**worker_env, **extra_env}, path).start())
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


# --- a webhook receiver -----------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that answers 200 and keeps every POSTed JSON body."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

        def on_post(handler):
            body = read_body(handler)
            with self.lock:
                self.bodies.append(json.loads(body))
            respond(handler)

        self.http = PostServer(on_post)
        self.url = self.http.url

    def events(self, event_type: str) -> list[dict]:
        with self.lock:
            return [b for b in self.bodies if b["type"] == event_type]

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def receiver(app):
    """A running receiver, with the app allowing webhooks to private addresses meanwhile."""
    saved = config._active
    config.activate(dataclasses.replace(saved, webhook_allow_private=True))
    server = Receiver()
    yield server
    server.close()
    config._active = saved


# --- helpers ---------------------------------------------------------------------------------------


def assert_error(response, status: int, code: str) -> dict:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["success"] is False and body["code"] == code
    return body


def assert_accepted(response, job_type: str) -> str:
    """A 202 for a new job; returns its id."""
    body = response.get_json()
    assert response.status_code == 202, body
    data = body["data"]
    assert data["id"].startswith("job_")
    assert (data["type"], data["status"]) == (job_type, "queued")
    assert response.headers["Location"] == f"/api/v1/jobs/{data['id']}"
    return data["id"]


def start_export(api, fmt: str, filters: dict | None = None, entity: str = "tasks") -> str:
    body = {"format": fmt, **({"filter": filters} if filters is not None else {})}
    return assert_accepted(api.post(f"/export/{entity}", json=body), "export")


def upload(api, content: bytes, filename: str, entity: str = "tasks", **form):
    return api.post(f"/import/{entity}/file", content_type="multipart/form-data",
                    data={"file": (io.BytesIO(content), filename), **form})


def start_import(api, content: bytes, filename: str, entity: str = "tasks") -> str:
    return assert_accepted(upload(api, content, filename, entity), "import")


def get_job(api, job_id: str) -> dict:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def wait_job(api, job_id: str, condition=lambda j: j["status"] in FINISHED, timeout: float = 60,
             interval: float = 0.05, message: str = "") -> dict:
    def check():
        job = get_job(api, job_id)
        return job if condition(job) else None

    return wait_for(check, timeout, interval, message or f"job {job_id}")


def total(api, path: str, **query) -> int:
    response = api.get(path, query_string={**query, "limit": 1})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["meta"]["total"]


def list_all(api, path: str, query: dict) -> list[dict]:
    """Every record the list route returns for `query`, following `nextCursor`."""
    records, cursor = [], None
    while True:
        params = {**query, "limit": 100, **({"cursor": cursor} if cursor else {})}
        response = api.get(path, query_string=params)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        records += body["data"]
        cursor = body["meta"]["nextCursor"]
        if not cursor:
            return records


def job_ids(api, **query) -> list[str]:
    response = api.get("/jobs", query_string={**query, "limit": 100})
    assert response.status_code == 200, response.get_json()
    return [j["id"] for j in response.get_json()["data"]]


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1])


def bulk_create(api, entity: str, items: list[dict]) -> None:
    for start in range(0, len(items), 1000):
        response = api.post(f"/import/{entity}", json={"items": items[start:start + 1000]})
        assert response.status_code == 201, response.get_json()


def import_dir() -> set[str]:
    directory = config.current().upload_dir / "imports"
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


def jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


# --- starting an export ----------------------------------------------------------------------------


def test_export_answers_202_with_location_and_a_queued_job(api):
    response = api.post("/export/tasks", json={"format": "csv",
                                               "filter": {"status": "todo", "priority[in]": "high,low"}})
    job_id = assert_accepted(response, "export")
    assert set(response.get_json()["data"]) == {"id", "type", "status"}
    job = get_job(api, job_id)
    assert set(job) >= JOB_KEYS
    assert (job["id"], job["type"], job["status"]) == (job_id, "export", "queued")
    assert job["result"] is None and job["error"] is None
    assert job["startedAt"] is None and job["finishedAt"] is None
    assert abs(parse_time(job["createdAt"]) - utcnow()) < timedelta(seconds=30)
    assert job_ids(api) == [job_id]


@pytest.mark.parametrize("body,field", [
    ({"format": "csv", "filter": {"colour": "red"}}, "filter.colour"),
    ({"format": "csv", "filter": {"status[like]": "todo"}}, "filter.status[like]"),
    ({"format": "csv", "filter": {"status": "done"}}, "filter.status"),
    ({"format": "csv", "filter": {"dueAt[gt]": "yesterday"}}, "filter.dueAt[gt]"),
    ({"format": "csv", "filter": {"status": 5}}, "filter.status"),
    ({"format": "csv", "filter": {"priority[in]": ["high", "low"]}}, "filter.priority[in]"),
    ({"format": "csv", "filter": {"page": "2"}}, "filter.page"),
    ({"format": "csv", "filter": {"limit": "10"}}, "filter.limit"),
    ({"format": "csv", "filter": {"cursor": "abc"}}, "filter.cursor"),
    ({"format": "csv", "filter": {"sort": "colour"}}, "filter.sort"),
    ({"format": "csv", "filter": "status=todo"}, "filter"),
    ({"format": "xml"}, "format"),
    ({"filter": {}}, "format"),
    ({"format": "csv", "columns": ["id"]}, "columns"),
], ids=["unknown-field", "unknown-op", "bad-enum", "bad-date", "number", "list", "page", "limit",
        "cursor", "bad-sort", "filter-not-object", "unknown-format", "no-format", "unknown-key"])
def test_bad_export_requests_answer_400_and_create_no_job(api, body, field):
    response = api.post("/export/tasks", json=body)
    details = assert_error(response, 400, "VALIDATION_FAILED")["details"]
    assert any(key == field or key.startswith(field + ".") for key in details), details
    assert job_ids(api) == []


def test_export_of_an_unknown_entity_is_404_and_bad_json_is_400(api):
    assert_error(api.post("/export/widgets", json={"format": "csv"}), 404, "NOT_FOUND")
    assert_error(api.post("/export/tasks", data="{", content_type="application/json"), 400,
                 "BAD_REQUEST")
    assert_error(api.post("/export/tasks", data="format=csv",
                          content_type="application/x-www-form-urlencoded"), 400, "BAD_REQUEST")
    assert job_ids(api) == []


# --- export results --------------------------------------------------------------------------------


def make_tasks(api) -> tuple[list[dict], list[dict]]:
    """3,000 varied tasks (1,500 of them todo with priority high or low); returns users, projects."""
    users = [api.create("users", name=f"User {i}", email=f"u{i}@example.com") for i in range(3)]
    projects = [api.create("projects", name=f"Project {i}") for i in range(2)]
    items = []
    for i in range(3000):
        item = {"title": f"Task {i:04d}", "status": ("todo", "todo", "todo", "in_progress")[i % 4],
                "priority": ("high", "low", "medium")[i % 3]}
        if i % 2 == 0:
            item["description"] = f'Line one, "quoted"\nline two ✓ {i}'
        if i % 5 == 0:
            item["dueAt"] = f"2030-01-{i % 28 + 1:02d}T10:00:00Z"
        if i % 7 == 0:
            item["projectId"] = projects[i % 2]["id"]
        if i % 3 == 0:
            item["assigneeId"] = users[i % 3]["id"]
        items.append(item)
    bulk_create(api, "tasks", items)
    return users, projects


def as_csv_row(record: dict) -> dict:
    return {k: "" if v is None else str(v) for k, v in record.items()}


def test_csv_export_has_exactly_the_list_routes_rows(api, run_burst):
    make_tasks(api)
    filters = {"status": "todo", "priority[in]": "high,low"}
    job_id = start_export(api, "csv", filters)
    run_burst()

    job = get_job(api, job_id)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"done": 1500, "total": 1500}
    assert job["error"] is None and job["attempts"] == 1
    created, started, finished = (parse_time(job[k]) for k in ("createdAt", "startedAt", "finishedAt"))
    assert created <= started <= finished
    result = job["result"]
    assert result["url"] == f"/api/v1/jobs/{job_id}/result"
    assert (result["format"], result["rows"]) == ("csv", 1500)
    assert parse_time(result["expiresAt"]) > utcnow() + timedelta(hours=23)

    download = api.get(result["url"])
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["Accept-Ranges"] == "bytes"
    assert int(download.headers["Content-Length"]) == len(download.data) == result["size"]

    reader = csv.DictReader(io.StringIO(download.data.decode("utf-8"), newline=""))
    rows = list(reader)
    expected = list_all(api, "/tasks", filters)
    assert len(expected) == 1500
    assert sorted(reader.fieldnames) == sorted(expected[0])  # the JSON field names, each once
    assert rows == [as_csv_row(r) for r in expected]  # same rows, same order, nulls empty
    assert {r["status"] for r in rows} == {"todo"}
    assert {r["priority"] for r in rows} == {"high", "low"}
    assert any(r["description"] == "" for r in rows) and any("\n" in r["description"] for r in rows)
    assert any(r["dueAt"] == "" for r in rows) and any(r["dueAt"].endswith("Z") for r in rows)


FORMULAS = ["=HYPERLINK(\"http://evil\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx",
            "plain", "a=b", "'quoted"]


def export_csv(api, run_burst, **options) -> list[dict]:
    response = api.post("/export/tasks", json={"format": "csv", "filter": {"sort": "title"},
                                                **options})
    job_id = assert_accepted(response, "export")
    run_burst()
    job = get_job(api, job_id)
    assert job["status"] == "succeeded", job
    text = api.get(job["result"]["url"]).data.decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_export_neutralises_formulas_and_can_be_told_not_to(api, run_burst):
    """OWASP CSV injection: text cells starting with =, +, -, @, tab or CR get a leading `'`."""
    bulk_create(api, "tasks", [{"title": f"{i} task", "description": text}
                               for i, text in enumerate(FORMULAS)])
    escaped = {row["title"]: row["description"] for row in export_csv(api, run_burst)}
    expected = [("'" + t if t[0] in "=+-@\t\r" else t) for t in FORMULAS]
    assert [escaped[f"{i} task"] for i in range(len(FORMULAS))] == expected
    exact = {row["title"]: row["description"]
             for row in export_csv(api, run_burst, escapeFormulas=False)}
    assert [exact[f"{i} task"] for i in range(len(FORMULAS))] == FORMULAS
    assert_error(api.post("/export/tasks", json={"format": "csv", "escapeFormulas": "no"}), 400,
                 "VALIDATION_FAILED")


def test_csv_import_takes_cells_as_they_are_so_an_exact_export_round_trips(api, run_burst):
    bulk_create(api, "tasks", [{"title": f"{i} task", "description": text}
                               for i, text in enumerate(FORMULAS)])
    rows = export_csv(api, run_burst, escapeFormulas=False)
    for row in rows:
        row["title"] = "again " + row["title"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["title", "description"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    job_id = start_import(api, out.getvalue().encode(), "again.csv")
    run_burst()
    assert get_job(api, job_id)["status"] == "succeeded"
    again = {t["title"]: t["description"] for t in list_all(api, "/tasks", {"q": "again"})}
    assert [again[f"again {i} task"] for i in range(len(FORMULAS))] == FORMULAS


def test_jsonl_export_lines_are_the_records_in_the_requested_sort(api, run_burst):
    users, _ = make_tasks(api)
    # Three export chunks, keyset-walked over an enum and a nullable column.
    sorted_filters = {"status[ne]": "in_progress", "q": "TASK", "sort": "priority,-dueAt"}
    # Exactly one full chunk (1,000 rows), then an empty one.
    boundary_filters = {"assigneeId": users[0]["id"]}
    sorted_id = start_export(api, "jsonl", sorted_filters)
    boundary_id = start_export(api, "jsonl", boundary_filters)
    empty_id = start_export(api, "csv", {"title": "no such task"})
    run_burst()

    exported = {}
    for job_id, filters, rows in ((sorted_id, sorted_filters, 2250),
                                  (boundary_id, boundary_filters, 1000)):
        job = get_job(api, job_id)
        assert job["status"] == "succeeded", job
        assert job["progress"] == {"done": rows, "total": rows}
        assert job["result"]["rows"] == rows
        expected = list_all(api, "/tasks", filters)
        assert len(expected) == rows
        download = api.get(job["result"]["url"])
        assert download.status_code == 200
        assert download.mimetype == "application/x-ndjson"
        exported[job_id] = [json.loads(line) for line in download.data.decode("utf-8").splitlines()]
        assert exported[job_id] == expected
    priorities = [r["priority"] for r in exported[sorted_id]]
    assert priorities == sorted(priorities, key=["low", "medium", "high"].index)
    assert {r["status"] for r in exported[sorted_id]} == {"todo"}
    assert {r["assigneeId"] for r in exported[boundary_id]} == {users[0]["id"]}

    empty = get_job(api, empty_id)
    assert empty["status"] == "succeeded" and empty["progress"] == {"done": 0, "total": 0}
    content = api.get(empty["result"]["url"]).data.decode()
    assert len(content.splitlines()) == 1  # only the header row
    assert set(content.strip().split(",")) == set(expected[0])


def test_export_download_supports_ranges_and_expires(api, run_burst):
    for i in range(30):
        api.create("tasks", title=f"Ranged {i}")
    job_id = start_export(api, "csv")
    run_burst()
    job = get_job(api, job_id)
    url = job["result"]["url"]
    whole = api.get(url).data
    assert len(whole) == job["result"]["size"] > 200

    part = api.get(url, headers={"Range": "bytes=10-109"})
    assert part.status_code == 206
    assert part.data == whole[10:110]
    assert part.headers["Content-Range"] == f"bytes 10-109/{len(whole)}"
    tail = api.get(url, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.data == whole[-50:]

    # Past JOB_RESULT_TTL the sweeper deletes the file and the URL answers 410.
    with db.connection_context():
        Job.update(finished_at=utcnow() - timedelta(seconds=config.current().job_result_ttl + 60)).where(
            Job.id == job_id).execute()
        job_service.sweep()
    assert not job_service.export_path(job_id, "csv").exists()
    assert api.get(url).status_code == 410


def test_result_of_an_unfinished_or_import_job_is_404(api, run_burst):
    export_id = start_export(api, "csv")
    assert_error(api.get(f"/jobs/{export_id}/result"), 404, "NOT_FOUND")  # still queued
    import_id = start_import(api, jsonl([{"title": "one"}]), "one.jsonl")
    run_burst()
    assert get_job(api, import_id)["status"] == "succeeded"
    assert_error(api.get(f"/jobs/{import_id}/result"), 404, "NOT_FOUND")
    assert_error(api.get("/jobs/job_00000000000000000000000000"), 404, "NOT_FOUND")


# --- imports ---------------------------------------------------------------------------------------


def jsonl_import_file() -> tuple[bytes, list[int], int]:
    """3,000 lines: 300 invalid (150 not JSON, 150 failing validation in various ways)."""
    lines, invalid = [], []
    bad_items = [{"status": "done"}, {"colour": "red"}, {"title": ""}, {"projectId": "prj_nope"},
                 {"priority": "urgent"}]
    for i in range(3000):
        if i % 20 == 7:
            lines.append('{"title": "broken')
            invalid.append(i)
        elif i % 20 == 13:
            bad = bad_items[(i // 20) % len(bad_items)]
            lines.append(json.dumps({"title": f"J{i}", **bad}))
            invalid.append(i)
        else:
            lines.append(json.dumps({"title": f"J{i}", "priority": ("low", "high")[i % 2],
                                     "description": "x" * 500}))
    return ("\n".join(lines) + "\n").encode(), invalid, 3000


def csv_import_file() -> tuple[bytes, list[int], int]:
    """3,000 data rows: 60 invalid (bad enum values, a missing title, an extra column, a bad date)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["title", "description", "status", "priority", "dueAt"])
    invalid = []
    for i in range(3000):
        row = [f"C{i}", f'Desc, "{i}"\nsecond line' if i % 3 == 0 else "", "todo", "medium",
               "2031-05-01T12:00:00Z" if i % 4 == 0 else ""]
        if i % 50 == 11:
            kind = (i // 50) % 5
            invalid.append(i)
            if kind == 0:
                row[2] = "done"
            elif kind == 1:
                row[3] = "urgent"
            elif kind == 2:
                row[0] = ""
            elif kind == 3:
                row.append("one too many")
            else:
                row[4] = "soon"
        writer.writerow(row)
    return out.getvalue().encode(), invalid, 3000


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_import_of_3000_rows_reports_progress_counts_and_failures(api, start_worker, fmt):
    content, invalid, rows = jsonl_import_file() if fmt == "jsonl" else csv_import_file()
    job_id = start_import(api, content, f"tasks.{fmt}")
    snapshots = []

    def finished():
        job = get_job(api, job_id)
        snapshots.append((job["status"], job["progress"]["done"], job["progress"]["total"]))
        return job if job["status"] in FINISHED else None

    start_worker()
    job = wait_for(finished, timeout=90, interval=0.005, message="the import to finish")

    assert job["status"] == "succeeded", job
    assert job["progress"] == {"done": rows, "total": rows}
    dones = [done for _, done, _ in snapshots]
    assert dones == sorted(dones), "progress went backwards"
    assert {total_ for status, _, total_ in snapshots if status == "running"} <= {rows, None}
    assert any(status == "running" and 0 < done < rows for status, done, _ in snapshots), snapshots

    result = job["result"]
    assert (result["created"], result["failed"]) == (rows - len(invalid), len(invalid))
    failures = result["failures"]
    assert [f["index"] for f in failures] == invalid[:100]  # the first 100, in row order
    for failure in failures:
        assert failure["code"] == "VALIDATION_FAILED"
        assert isinstance(failure["error"], str) and failure["error"]
    by_index = {f["index"]: f for f in failures}
    if fmt == "jsonl":
        assert by_index[7]["item"] is None and "JSON" in by_index[7]["error"]
        assert by_index[13]["item"] == {"title": "J13", "status": "done"}
        assert "status" in by_index[13]["details"]
        assert "colour" in by_index[33]["details"]
        assert "projectId" in by_index[73]["details"]
    else:
        assert by_index[11]["item"]["status"] == "done" and "status" in by_index[11]["details"]
        assert "priority" in by_index[61]["details"]
        assert "title" in by_index[111]["details"]
        assert by_index[161]["item"] is None  # the row with one value too many
        assert "dueAt" in by_index[211]["details"]

    prefix = "J" if fmt == "jsonl" else "C"
    assert total(api, "/tasks") == rows - len(invalid)
    assert total(api, "/tasks", title=f"{prefix}{invalid[0]}") == 0
    [first] = api.get("/tasks", query_string={"title": f"{prefix}0"}).get_json()["data"]
    if fmt == "jsonl":
        assert (first["priority"], first["status"], first["description"]) == ("low", "todo", "x" * 500)
    else:
        assert first["description"] == 'Desc, "0"\nsecond line'
        assert parse_time(first["dueAt"]) == datetime(2031, 5, 1, 12)
        [second] = api.get("/tasks", query_string={"title": f"{prefix}1"}).get_json()["data"]
        assert second["description"] is None and second["dueAt"] is None
    assert total(api, "/events", type="task.created") == rows - len(invalid)
    assert total(api, "/events", type="job.completed") == 1
    assert f"{job_id}.{fmt}" not in import_dir()  # the uploaded file is removed once done


def test_bad_import_uploads_create_no_job_and_leave_no_file(api):
    before = import_dir()
    assert_error(api.post("/import/tasks/file", content_type="multipart/form-data", data={}),
                 400, "VALIDATION_FAILED")
    assert_error(upload(api, b"", "empty.jsonl"), 400, "VALIDATION_FAILED")
    body = assert_error(upload(api, b"title\nA\n", "tasks.txt"), 400, "VALIDATION_FAILED")
    assert "format" in body["details"]
    assert_error(upload(api, b"title\nA\n", "tasks.txt", format="xml"), 400, "VALIDATION_FAILED")
    assert_error(api.post("/import/tasks/file", json={"items": []}), 400, "VALIDATION_FAILED")
    assert_error(upload(api, b"title\nA\n", "tasks.csv", entity="widgets"), 404, "NOT_FOUND")

    saved = config._active
    config.activate(dataclasses.replace(saved, import_max_bytes=1000))
    try:
        assert_error(upload(api, jsonl({"title": f"T{i}"} for i in range(200)), "big.jsonl"),
                     413, "PAYLOAD_TOO_LARGE")
    finally:
        config._active = saved
    assert job_ids(api) == []
    assert import_dir() == before


def test_format_field_overrides_the_file_name(api, run_burst):
    response = upload(api, b"title,priority\nFrom CSV,high\n", "data.bin", format="csv")
    job_id = assert_accepted(response, "import")
    run_burst()
    job = get_job(api, job_id)
    assert job["status"] == "succeeded" and job["result"]["created"] == 1
    [task] = api.get("/tasks").get_json()["data"]
    assert (task["title"], task["priority"]) == ("From CSV", "high")


def test_an_import_file_that_is_not_utf8_fails_the_job(api, run_burst, receiver):
    hook = api.post("/webhooks", json={"url": receiver.url, "events": ["job.failed"]})
    assert hook.status_code == 201, hook.get_json()
    job_id = start_import(api, b"title\n\xff\xfe caf\xe9\n", "latin1.csv")
    run_burst()
    job = get_job(api, job_id)
    assert job["status"] == "failed", job
    assert "decode" in job["error"].lower() or "utf" in job["error"].lower()
    assert job["finishedAt"] is not None and job["result"] is None
    assert total(api, "/tasks") == 0

    [event] = api.get("/events", query_string={"type": "job.failed"}).get_json()["data"]
    assert event["data"]["id"] == job_id and event["data"]["status"] == "failed"
    assert total(api, "/events", type="job.completed") == 0
    [delivered] = wait_for(lambda: receiver.events("job.failed"), message="job.failed at the receiver")
    assert delivered["id"] == event["id"]
    assert delivered["data"]["id"] == job_id


def test_job_completed_reaches_a_webhook_and_the_event_log(api, run_burst, receiver):
    hook = api.post("/webhooks", json={"url": receiver.url, "events": ["job.completed"]})
    assert hook.status_code == 201, hook.get_json()
    api.create("tasks", title="Exported")
    job_id = start_export(api, "jsonl")
    run_burst()

    job = get_job(api, job_id)
    assert job["status"] == "succeeded"
    [event] = api.get("/events", query_string={"type": "job.completed"}).get_json()["data"]
    assert event["id"].startswith("evt_")
    assert event["data"]["id"] == job_id
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["result"]["url"] == job["result"]["url"]
    [delivered] = wait_for(lambda: receiver.events("job.completed"),
                           message="job.completed at the receiver")
    assert delivered == api.get(f"/events/{event['id']}").get_json()["data"]


# --- cancel ----------------------------------------------------------------------------------------


def test_canceling_a_queued_job_means_it_never_runs(api, run_burst):
    job_id = start_import(api, jsonl({"title": f"Never {i}"} for i in range(10)), "never.jsonl")
    response = api.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.get_json()
    canceled = response.get_json()["data"]
    assert (canceled["id"], canceled["status"]) == (job_id, "canceled")
    assert canceled["finishedAt"] is not None

    run_burst()  # the job is still on the RQ queue: the worker must leave it alone
    job = get_job(api, job_id)
    assert job["status"] == "canceled"
    assert job["startedAt"] is None and job["attempts"] == 0
    assert job["progress"]["done"] == 0
    assert total(api, "/tasks") == 0
    assert total(api, "/events", type="job.completed") == 0
    assert_error(api.post(f"/jobs/{job_id}/cancel"), 409, "CONFLICT")


def test_canceling_a_running_import_stops_it_at_the_next_chunk(api, start_worker):
    rows = 20_000
    job_id = start_import(api, jsonl({"title": f"Long {i}", "description": "y" * 200}
                                     for i in range(rows)), "long.jsonl")
    start_worker()
    wait_job(api, job_id, lambda j: j["status"] == "running" and j["progress"]["done"] > 0,
             message="the import to be under way")
    response = api.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["data"]["id"] == job_id
    assert response.get_json()["data"]["status"] in ("running", "canceled")

    job = wait_job(api, job_id, message="the import to stop")
    assert job["status"] == "canceled", job
    assert job["finishedAt"] is not None
    done = job["progress"]["done"]
    assert 0 < done < rows
    assert total(api, "/tasks") == done  # every chunk written was recorded; nothing after
    assert total(api, "/events", type="job.completed") == 0
    assert_error(api.post(f"/jobs/{job_id}/cancel"), 409, "CONFLICT")


def test_canceling_a_finished_job_is_409(api, run_burst):
    job_id = start_export(api, "csv")
    run_burst()
    assert get_job(api, job_id)["status"] == "succeeded"
    body = assert_error(api.post(f"/jobs/{job_id}/cancel"), 409, "CONFLICT")
    assert "finished" in body["error"]
    assert get_job(api, job_id)["status"] == "succeeded"


# --- a killed worker -------------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts,outcome", [("3", "succeeded"), ("1", "failed")],
                         ids=["retried", "out-of-attempts"])
def test_a_sigkilled_worker_never_leaves_a_job_running(api, start_worker, max_attempts, outcome):
    rows = 30_000
    job_id = start_import(api, jsonl({"title": f"Survivor {i}"} for i in range(rows)),
                          "survivor.jsonl")
    env = {"JOB_STALE_AFTER": "3s", "JOB_MAX_ATTEMPTS": max_attempts}
    first = start_worker(**env)
    wait_job(api, job_id, lambda j: j["status"] == "running" and j["progress"]["done"] >= 1000,
             message="the import to be under way")
    first.kill()
    stuck = get_job(api, job_id)
    assert stuck["status"] == "running" and stuck["progress"]["done"] < rows, stuck
    assert stuck["attempts"] == 1

    start_worker(**env)
    job = wait_job(api, job_id, timeout=120, interval=0.2, message="the job to be rescued")
    assert job["status"] == outcome, job
    assert job["finishedAt"] is not None
    if outcome == "succeeded":
        assert job["attempts"] == 2
        assert job["progress"] == {"done": rows, "total": rows}
        assert job["result"]["created"] + job["result"]["failed"] == rows
        assert job["result"]["failed"] == 0
        # At least once: a chunk written just before the kill may be written twice.
        assert rows <= total(api, "/tasks") <= rows + 500
        assert total(api, "/events", type="job.completed") == 1
    else:
        assert job["attempts"] == 1
        assert "stopped" in job["error"]
        [event] = api.get("/events", query_string={"type": "job.failed"}).get_json()["data"]
        assert event["data"]["id"] == job_id


# --- accounts, listing, scopes ---------------------------------------------------------------------


def test_another_accounts_jobs_are_invisible(account, other_account, run_burst):
    api, other = account.api, other_account.api
    api.create("tasks", title="Mine")
    export_id = start_export(api, "csv")
    run_burst()
    assert get_job(api, export_id)["status"] == "succeeded"
    url = f"/jobs/{export_id}/result"
    assert api.get(url).status_code == 200

    assert_error(other.get(f"/jobs/{export_id}"), 404, "NOT_FOUND")
    assert_error(other.get(url), 404, "NOT_FOUND")
    assert_error(other.post(f"/jobs/{export_id}/cancel"), 404, "NOT_FOUND")
    assert job_ids(other) == []
    assert job_ids(other, status="succeeded", type="export") == []

    queued_id = start_export(api, "jsonl")
    assert_error(other.post(f"/jobs/{queued_id}/cancel"), 404, "NOT_FOUND")
    assert get_job(api, queued_id)["status"] == "queued"
    other_id = start_export(other, "csv")
    assert set(job_ids(api)) == {export_id, queued_id}
    assert job_ids(other) == [other_id]


def test_jobs_list_filters_by_status_and_type(api, run_burst):
    api.create("tasks", title="Listed")
    export_done = start_export(api, "csv")
    import_done = start_import(api, jsonl([{"title": "Imported"}]), "one.jsonl")
    run_burst()
    export_canceled = start_export(api, "jsonl")
    assert api.post(f"/jobs/{export_canceled}/cancel").status_code == 202
    import_queued = start_import(api, jsonl([{"title": "Waiting"}]), "wait.jsonl")

    assert job_ids(api) == [import_queued, export_canceled, import_done, export_done]  # newest first
    assert job_ids(api, status="succeeded") == [import_done, export_done]
    assert job_ids(api, type="export") == [export_canceled, export_done]
    assert job_ids(api, status="canceled", type="export") == [export_canceled]
    assert job_ids(api, status="queued") == [import_queued]
    assert job_ids(api, status="failed") == []
    listed = api.get("/jobs", query_string={"limit": 2}).get_json()
    assert [j["id"] for j in listed["data"]] == [import_queued, export_canceled]
    assert listed["meta"]["total"] == 4 and listed["meta"]["hasNextPage"] is True
    assert listed["data"][0] == get_job(api, import_queued)

    for query, field in (({"status": "done"}, "status"), ({"type": "report"}, "type"),
                         ({"colour": "red"}, "colour"), ({"limit": "0"}, "limit")):
        body = assert_error(api.get("/jobs", query_string=query), 400, "VALIDATION_FAILED")
        assert field in body["details"]


def test_job_routes_need_the_right_scopes(account, run_burst, client):
    api = account.api
    reader, writer = account.key("read"), account.key("write")
    body = assert_error(reader.post("/export/tasks", json={"format": "csv"}), 403, "INSUFFICIENT_SCOPE")
    assert body["details"]["required"] == "write"
    assert_error(upload(reader, b"title\nA\n", "a.csv"), 403, "INSUFFICIENT_SCOPE")
    assert job_ids(api) == []

    job_id = start_export(writer, "csv")
    assert_error(writer.get(f"/jobs/{job_id}"), 403, "INSUFFICIENT_SCOPE")  # write does not imply read
    assert_error(writer.get("/jobs"), 403, "INSUFFICIENT_SCOPE")
    assert reader.get(f"/jobs/{job_id}").status_code == 200
    assert_error(reader.post(f"/jobs/{job_id}/cancel"), 403, "INSUFFICIENT_SCOPE")
    run_burst()
    assert reader.get(f"/jobs/{job_id}/result").status_code == 200
    assert_error(client.get(f"/api/v1/jobs/{job_id}"), 401, "UNAUTHORIZED")
    assert_error(client.get(f"/api/v1/jobs/{job_id}/result"), 401, "UNAUTHORIZED")
