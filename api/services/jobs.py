"""Long-running jobs: the database row is the source of truth; RQ only executes.

Types: `export` and `import` (run by `jobs.data`) and `inbound` (a received webhook
event handled by its source's handler, `jobs.inbound`). A job is created `queued` and
enqueued after commit. A worker claims it (`queued` → `running`, attempts + 1), reports
progress and a heartbeat once per chunk, and finishes it `succeeded`, `failed` or
`canceled`, emitting `job.completed` or `job.failed`. The worker's sweeper re-enqueues
jobs still queued after `REQUEUE_AFTER` (a lost enqueue) and rescues `running` jobs
whose heartbeat stopped (a killed worker): retried while attempts remain, else failed.
It also deletes export files older than `JOB_RESULT_TTL`.
"""

import json
import logging
import os
from datetime import timedelta
from pathlib import Path

from api import config, metrics, queue
from api.errors import APIError, NotFound
from api.ids import new_id
from api.models import Job
from api.services import events
from api.store import on_commit, transaction
from api.timeutil import format_rfc3339, utcnow

log = logging.getLogger("quiver.jobs")

FINISHED = ("succeeded", "failed", "canceled")
RUNNERS = {"export": "jobs.data.run", "import": "jobs.data.run", "inbound": "jobs.inbound.run"}
TYPES = tuple(RUNNERS)
REQUEUE_AFTER = timedelta(seconds=30)


def export_path(job_id: str, fmt: str) -> Path:
    """Where an export's file is written (and served from)."""
    return config.current().upload_dir / "exports" / f"{job_id}.{fmt}"


def import_path(job_id: str, fmt: str) -> Path:
    """Where an uploaded import file waits for its job."""
    return config.current().upload_dir / "imports" / f"{job_id}.{fmt}"


def as_json(row: Job) -> dict:
    """A job in the contract's shape."""
    return {
        "id": row.id, "type": row.type, "entity": row.entity, "status": row.status,
        "progress": {"done": row.progress_done, "total": row.progress_total},
        "result": json.loads(row.result) if row.result else None, "error": row.error,
        "attempts": row.attempts, "createdAt": format_rfc3339(row.created_at),
        "startedAt": format_rfc3339(row.started_at), "finishedAt": format_rfc3339(row.finished_at),
    }


def create(account_id: str, job_type: str, entity: str, params: dict) -> Job:
    """A queued job, enqueued once the current transaction commits."""
    now = utcnow()
    with transaction():
        row = Job.create(id=new_id("job"), account_id=account_id, type=job_type, entity=entity,
                         status="queued", params=json.dumps(params), created_at=now, enqueued_at=now)
        on_commit(lambda: enqueue(row.id, job_type))
    return row


def create_import(account_id: str, entity: str, fmt: str, upload: Path) -> Job:
    """A queued import of the uploaded file at `upload`, which moves to `import_path` in
    the same transaction (no job without its file)."""
    with transaction():
        row = create(account_id, "import", entity, {"format": fmt})
        os.replace(upload, import_path(row.id, fmt))
    return row


def enqueue(job_id: str, job_type: str) -> None:
    """Put a job on the RQ queue; if Redis is down the sweeper enqueues it later."""
    try:
        queue.get_queue(queue.DEFAULT_QUEUE).enqueue(
            RUNNERS[job_type], job_id, job_timeout=config.current().job_timeout + 60,
            result_ttl=0, failure_ttl=24 * 3600)
    except Exception as exc:  # noqa: BLE001 - the sweeper catches up
        metrics.backend_error(exc, "enqueue")
        log.warning("could not enqueue job %s: %s", job_id, exc)


def get(account_id: str, job_id: str) -> Job:
    row = None if "\x00" in job_id else Job.get_or_none(
        (Job.id == job_id) & (Job.account_id == account_id))
    if row is None:
        raise NotFound(f"Job {job_id[:64]} not found.")
    return row


def list_page(account_id: str, page: int, limit: int, status: str | None = None,
              kind: str | None = None) -> tuple[list[Job], int, bool]:
    """A page of the account's jobs, newest first: the rows, how many match, whether more follow."""
    query = Job.select().where(Job.account_id == account_id)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.type == kind)
    total = query.count()
    rows = list(query.order_by(Job.id.desc()).offset((page - 1) * limit).limit(limit + 1))
    return rows[:limit], total, len(rows) > limit


def cancel(account_id: str, job_id: str) -> Job:
    """A queued job never starts; a running one stops at its next chunk. 409 once finished."""
    with transaction():
        row = get(account_id, job_id)
        if row.status in FINISHED:
            raise APIError(409, "CONFLICT", f"The job has already finished ({row.status}).")
        if row.status == "queued":
            finish(row, "canceled", error="Canceled before it started.")
        else:
            Job.update(cancel_requested=True).where(Job.id == row.id).execute()
            row.cancel_requested = True
    return row


def claim(job_id: str) -> Job | None:
    """Move a queued job to running for this worker; None if someone else has it or it is done."""
    now = utcnow()
    with transaction():
        claimed = Job.update(status="running", attempts=Job.attempts + 1, started_at=now,
                             heartbeat_at=now).where(
            (Job.id == job_id) & (Job.status == "queued")).execute()
    return Job.get_by_id(job_id) if claimed else None


def report(row: Job, done: int, total: int | None = None, partial: dict | None = None) -> bool:
    """Record progress (and a partial result) and a heartbeat; False when cancellation was requested."""
    values = {"progress_done": done, "heartbeat_at": utcnow()}
    if total is not None:
        values["progress_total"] = total
    if partial is not None:
        values["result"] = json.dumps(partial)
    Job.update(**values).where(Job.id == row.id).execute()
    row.progress_done = done
    return not Job.select(Job.cancel_requested).where(Job.id == row.id).scalar()


def finish(row: Job, status: str, result: dict | None = None, error: str | None = None) -> None:
    """Finish a job and emit `job.completed` or `job.failed` (cancellations emit nothing)."""
    now = utcnow()
    with transaction():
        Job.update(status=status, result=json.dumps(result) if result is not None else None,
                   error=error, finished_at=now, heartbeat_at=now).where(Job.id == row.id).execute()
        row.status, row.error, row.finished_at = status, error, now
        row.result = json.dumps(result) if result is not None else None
        if status in ("succeeded", "failed"):
            kind = "job.completed" if status == "succeeded" else "job.failed"
            events.emit(row.account_id, kind, [as_json(row)])


def finished_since(job_id: str, since) -> Job | None:
    """The job `job_id` if it ran and finished at `since` or later (else None)."""
    return Job.get_or_none((Job.id == job_id) & (Job.finished_at >= since)
                           & Job.started_at.is_null(False))


def retry_later(row: Job, error: str) -> None:
    """Give a job back to the queue after a transient failure (or fail it, out of attempts)."""
    if row.attempts >= config.current().job_max_attempts:
        finish(row, "failed", error=error)
        return
    Job.update(status="queued", error=error, heartbeat_at=None,
               enqueued_at=utcnow() - REQUEUE_AFTER + timedelta(seconds=5)).where(
        Job.id == row.id).execute()


def sweep() -> int:
    """Re-enqueue forgotten queued jobs; rescue running ones whose worker died. Returns how many."""
    settings = config.current()
    now = utcnow()
    stale = now - timedelta(seconds=settings.job_stale_after)
    touched = 0
    for row in Job.select().where((Job.status == "running") & (Job.heartbeat_at < stale)):
        retry_later(row, "The worker running this job stopped.")
        touched += 1
    expired = now - timedelta(seconds=settings.job_result_ttl)
    for row in Job.select().where((Job.type == "export") & (Job.status == "succeeded")
                                  & (Job.finished_at < expired)):
        path = export_path(row.id, json.loads(row.result or "{}").get("format", "csv"))
        if path.exists():
            path.unlink()
            touched += 1
    for row in Job.select(Job.id, Job.type).where((Job.status == "queued") & (
            Job.enqueued_at.is_null() | (Job.enqueued_at < now - REQUEUE_AFTER))):
        Job.update(enqueued_at=now).where(Job.id == row.id).execute()
        enqueue(row.id, row.type)
        touched += 1
    return touched
