"""Jobs at scale: export 100,000 tasks and import a 100,000-row JSONL file, in a worker process.

Each job runs `jobs.data.run` in a fresh child process (as the data worker's
fork would); its rows/s and peak RSS are printed beside the raw executemany
rate of the same rows measured in the same run.
"""

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from uuid import uuid4

from api import store
from api.models import Job
from api.services import jobs as job_service
from tests.procs import ROOT

ROWS = 100_000
COLUMNS = ("id", "account_id", "version", "created_at", "updated_at", "title", "status", "priority")


def _raw_rows(account_id: str, n: int) -> list[tuple]:
    now = datetime.now(UTC).replace(tzinfo=None)
    return [(f"tsk_{uuid4().hex[:26].upper()}", account_id, 1, now, now, f"Row {i}", "todo", "medium")
            for i in range(n)]


def _raw_insert(rows: list[tuple]) -> float:
    sql = (f'INSERT INTO "tasks" ({", ".join(COLUMNS)}) '
           f'VALUES ({", ".join([store.db.param] * len(COLUMNS))})')
    started = time.perf_counter()
    with store.db.atomic():
        for start in range(0, len(rows), 5000):
            store.db.cursor().executemany(sql, rows[start:start + 5000])
    return time.perf_counter() - started


def _run_job(job_id: str, env: dict) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one job run in a child process."""
    started = time.perf_counter()
    code = ("import resource, sys; from jobs.worker import _setup; _setup(); "
            "from jobs.data import run; run(sys.argv[1]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, job_id], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True)
    return time.perf_counter() - started, int(done.stdout.strip().splitlines()[-1])


def run(line, backend: str, app, account_id: str, env: dict) -> None:
    """Print export and import rates and the worker's peak memory for one backend."""
    import os

    proc_env = {**os.environ, **env}
    with app.app_context():
        raw_seconds = _raw_insert(_raw_rows(account_id, ROWS))
        export = job_service.create(account_id, "export", "task", {"format": "jsonl", "filter": {}})
    seconds, peak = _run_job(export.id, proc_env)
    with app.app_context():
        row = Job.get_by_id(export.id)
        exported = json.loads(row.result)["rows"]
        with open(job_service.export_path(export.id, "jsonl"), encoding="utf-8") as source:
            items = [{"title": json.loads(text)["title"]} for text in source][:ROWS]
        imported = job_service.create(account_id, "import", "task", {"format": "jsonl"})
        target = job_service.import_path(imported.id, "jsonl")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(item) + "\n" for item in items)
    line(backend, f"export of {exported:,} tasks: {exported / seconds:,.0f} rows/s, worker peak RSS "
                  f"{peak / 1024:.0f} MB; raw executemany {ROWS / raw_seconds:,.0f} rows/s")
    seconds, peak = _run_job(imported.id, proc_env)
    with app.app_context():
        result = json.loads(Job.get_by_id(imported.id).result)
    line(backend, f"import of a {len(items):,}-row JSONL file: {result['created'] / seconds:,.0f} rows/s "
                  f"({result['created']:,} created, {result['failed']} failed), worker peak RSS "
                  f"{peak / 1024:.0f} MB; ratio to raw executemany "
                  f"{(result['created'] / seconds) / (ROWS / raw_seconds):.2f}")
