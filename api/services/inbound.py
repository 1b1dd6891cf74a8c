"""Inbound webhook events: stored once per (source, sender's event id), handled by a job.

`receive` stores a verified event and its `inbound` job in one transaction (the job is
enqueued after commit); a redelivery of an event already stored changes nothing and
names the first one. `handle` runs a source's handler on a job's event and finishes
the job in one transaction, so the handler's writes and the job's success commit
together: a handler that raises leaves nothing behind, and the job runner retries it.
"""

import json

from api.ids import new_id
from api.inbound import Handler, InboundEvent
from api.models import Account, InboundEventRow, Job
from api.services import jobs
from api.store import transaction
from api.timeutil import utcnow

JOB_TYPE = "inbound"


def account_exists(account_id: str) -> bool:
    """True when `account_id` names an account (a source's `account_env` may be mistyped)."""
    return "\x00" not in account_id and Account.get_or_none(Account.id == account_id) is not None


def receive(source: str, account_id: str, event_id: str, event_type: str | None,
            body: bytes) -> tuple[InboundEventRow, bool]:
    """Store a verified event and queue its job; (the stored row, False) for a redelivery."""
    new = new_id("inb")
    with transaction():
        InboundEventRow.insert(
            id=new, account_id=account_id, source=source, event_id=event_id, type=event_type,
            payload=body.decode("utf-8"), received_at=utcnow()).on_conflict_ignore().execute()
        row = InboundEventRow.get((InboundEventRow.source == source)
                                  & (InboundEventRow.event_id == event_id))
        if row.id != new:
            return row, False
        job = jobs.create(account_id, JOB_TYPE, source, {"inboundEventId": row.id})
        InboundEventRow.update(job_id=job.id).where(InboundEventRow.id == row.id).execute()
        row.job_id = job.id
    return row, True


def as_json(row: InboundEventRow, duplicate: bool) -> dict:
    """What the inbound route answers about a stored event."""
    return {"id": row.id, "source": row.source, "eventId": row.event_id, "type": row.type,
            "jobId": row.job_id, "duplicate": duplicate}


def _event(row: InboundEventRow) -> InboundEvent:
    return InboundEvent(id=row.id, source=row.source, event_id=row.event_id, type=row.type,
                        account_id=row.account_id, payload=json.loads(row.payload),
                        received_at=row.received_at)


def handle(job: Job, handler: Handler) -> None:
    """Run `handler` on the job's event and mark the job succeeded, in one transaction.

    The job's result is `{source, eventId, type, handled}`, `handled` being what the
    handler returned. Whatever the handler raises rolls its writes back and propagates.
    """
    row = InboundEventRow.get_by_id(json.loads(job.params)["inboundEventId"])
    with transaction():
        handled = handler(_event(row))
        jobs.report(job, 1, 1)
        jobs.finish(job, "succeeded", result={"source": row.source, "eventId": row.event_id,
                                              "type": row.type, "handled": handled})
