"""Export and file-import jobs: rows stream through in chunks, never all in memory.

`run(job_id)` is what RQ executes. Exports read the rows through the list route's
own query (`RecordService.list_page`), by keyset in chunks, and write CSV (headers
are the JSON field names; text cells a spreadsheet would run as formulas get a
leading `'` unless the export opted out, see `csv_cell`) or JSONL. Imports take
values as they are: a leading `'` is kept, so an exact round trip exports with
`escapeFormulas: false`. Imports read CSV or JSONL line by line and hand
chunks to the bulk service with `skipInvalid` semantics, keeping the first 100
failures. Progress and a heartbeat are recorded after every chunk, which is also
where a cancellation takes effect. A retried import resumes after the last chunk it
recorded (a chunk written just before a crash may be written twice: at least once).
"""

import csv
import json
import logging
from datetime import timedelta
from pathlib import Path

import peewee
from werkzeug.datastructures import MultiDict

from api import config
from api.entities import ENTITIES
from api.query import parse_list_args
from api.services import bulk, database
from api.services import jobs as job_service
from api.services.records import service_for
from api.timeutil import format_rfc3339, utcnow

log = logging.getLogger("quiver.jobs")

EXPORT_CHUNK = 1000
IMPORT_CHUNK = 500
KEPT_FAILURES = 100
TRANSIENT = (peewee.OperationalError, peewee.InterfaceError)


class Canceled(Exception):
    """The job was canceled while it ran."""


def run(job_id: str) -> None:
    """Execute one job (RQ entry point). Never raises: outcomes are recorded on the job."""
    with database.connection():
        row = job_service.claim(job_id)
        if row is None:
            return
        try:
            result = (_export if row.type == "export" else _import)(row, json.loads(row.params))
        except Canceled:
            job_service.finish(row, "canceled", error="Canceled while running.")
        except TRANSIENT as exc:
            log.warning("job %s hit a transient error: %s", job_id, exc)
            job_service.retry_later(row, f"{type(exc).__name__}: {exc}"[:500])
        except Exception as exc:
            log.exception("job %s failed", job_id)
            job_service.finish(row, "failed", error=f"{type(exc).__name__}: {exc}"[:500])
        else:
            job_service.finish(row, "succeeded", result=result)


def _progress(row, done: int, total: int | None = None, partial: dict | None = None) -> None:
    if not job_service.report(row, done, total, partial):
        raise Canceled()


def _export(row, params: dict) -> dict:
    entity = ENTITIES[row.entity]
    service = service_for(row.entity)
    lq = parse_list_args(entity, MultiDict(params["filter"]))
    lq.limit = EXPORT_CHUNK
    page = service.list_page(row.account_id, lq)
    _progress(row, 0, page.total)
    fmt = params["format"]
    path = job_service.export_path(row.id, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = None
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=list(entity.fields))
            writer.writeheader()
        escape = params.get("escape_formulas", True)
        while True:
            for record in page.rows:
                data = entity.dump(record)
                if writer:
                    writer.writerow({k: csv_cell(v, escape) for k, v in data.items()})
                else:
                    out.write(json.dumps(data, ensure_ascii=False) + "\n")
            done += len(page.rows)
            _progress(row, done)
            if not page.has_next:
                break
            last = page.rows[-1]
            lq.cursor = {"values": [getattr(last, entity.fields[n].attribute) for n, _ in lq.sort],
                         "id": last.id}
            page = service.list_page(row.account_id, lq, count=False)
    expires = utcnow() + timedelta(seconds=config.current().job_result_ttl)
    return {"url": f"/api/v1/jobs/{row.id}/result", "format": fmt, "rows": done,
            "size": path.stat().st_size, "expiresAt": format_rfc3339(expires)}


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value, escape_formulas: bool = True):
    """A value as a CSV cell: null is empty; text a spreadsheet would run as a formula
    (it starts with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`, unless not asked to."""
    if value is None:
        return ""
    if escape_formulas and isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _records(path: Path, fmt: str):
    """(index, item or None, error) for each data line of an import file."""
    with open(path, encoding="utf-8-sig", newline="") as source:
        if fmt == "csv":
            for index, record in enumerate(csv.DictReader(source)):
                if None in record:
                    yield index, None, "The row has more values than the header has columns."
                else:
                    yield index, {k: v for k, v in record.items() if v != ""}, None
            return
        index = 0
        for line in source:
            if not line.strip():
                continue
            try:
                yield index, json.loads(line), None
            except ValueError:
                yield index, None, "The line is not valid JSON."
            index += 1


def _count(path: Path, fmt: str) -> int:
    return sum(1 for _ in _records(path, fmt))


def _import(row, params: dict) -> dict:
    entity = ENTITIES[row.entity]
    fmt = params["format"]
    path = job_service.import_path(row.id, fmt)
    total = _count(path, fmt)
    previous = json.loads(row.result) if row.result and row.attempts > 1 else {}
    resume_at = row.progress_done if previous else 0
    created, failed = previous.get("created", 0), previous.get("failed", 0)
    failures = previous.get("failures", [])
    done = flushed_at = resume_at
    _progress(row, done, total)
    chunk: list[tuple[int, dict]] = []
    unreadable: list[dict] = []  # this chunk's unparseable lines, kept in row order with the rest

    def flush():
        nonlocal created, failed
        found = list(unreadable)
        if chunk:
            result = bulk.bulk_create(entity, row.account_id, [item for _, item in chunk], True)
            created += len(result.rows)
            failed += len(result.failures)
            found += [{**f.as_json(), "index": chunk[f.index][0]} for f in result.failures]
        failures.extend(sorted(found, key=lambda f: f["index"])[:max(0, KEPT_FAILURES - len(failures))])
        chunk.clear()
        unreadable.clear()

    for index, item, error in _records(path, fmt):
        if index < resume_at:
            continue
        if error is not None:
            failed += 1
            if len(failures) + len(unreadable) < KEPT_FAILURES:
                unreadable.append({"index": index, "item": None, "error": error,
                                   "code": "VALIDATION_FAILED", "details": {}})
        else:
            chunk.append((index, item))
        done += 1
        if done - flushed_at >= IMPORT_CHUNK:  # every IMPORT_CHUNK lines, valid or not
            flush()
            flushed_at = done
            _progress(row, done, partial={"created": created, "failed": failed, "failures": failures})
    if chunk or unreadable:
        flush()
    _progress(row, done)
    path.unlink(missing_ok=True)
    return {"created": created, "failed": failed, "failures": failures}
