"""Inbound webhook jobs: run a source's handler on a stored event (`api.sources`).

`run(job_id)` is what RQ executes. The handler's writes and the job's success commit
together (`api.services.inbound.handle`). When the handler raises, the job goes back
to the queue and the sweeper runs it again a few seconds later, `JOB_MAX_ATTEMPTS` in
all; then it is failed with the error. Either outcome is on the job (`GET /jobs/{id}`)
and emits `job.completed` or `job.failed`.
"""

import logging

from api import sources
from api.services import database, inbound
from api.services import jobs as job_service

log = logging.getLogger("quiver.jobs")


def run(job_id: str) -> None:
    """Execute one inbound job (RQ entry point). Never raises: outcomes are recorded on the job."""
    with database.connection():
        row = job_service.claim(job_id)
        if row is None:
            return
        source = sources.find(row.entity)
        try:
            if source is None:
                raise LookupError(f"No inbound source {row.entity!r} is declared.")
            inbound.handle(row, source.handler)
        except Exception as exc:
            log.exception("inbound job %s failed (attempt %d)", job_id, row.attempts)
            job_service.retry_later(row, f"{type(exc).__name__}: {exc}"[:500])
