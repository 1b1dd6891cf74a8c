"""Files: stored uploads, their records and their bytes (through `api.storage`).

A file record belongs to an account and optionally to a task; its bytes are a
blob shared by every record with the same SHA-256. Creating a record takes a
reference on the blob (under its row lock, and stores the bytes when the blob had
none). Deleting one drops its reference; once the deleting transaction has
committed, a blob left without references loses its bytes and its row, under the
row lock again, so that a concurrent upload of the same content cannot lose them.
Bytes are never removed inside the deleting transaction: if that rolled back (an
atomic batch), its file would be back without them. A blob whose purge a crash
skipped is collected by the workers' periodic purge (`purge_unused_blobs`).
"""

from pathlib import Path

from api import config
from api.entities import ENTITIES, on_delete
from api.errors import APIError, NotFound, ValidationFailed
from api.ids import new_id
from api.models import Blob, File
from api.services import events
from api.storage import get_storage
from api.store import is_postgres, on_commit, transaction
from api.timeutil import format_rfc3339, utcnow

CONTENT_URL = "/api/v1/files/{id}/content"


def as_json(row: File) -> dict:
    """A file record in the contract's shape."""
    return {"id": row.id, "url": CONTENT_URL.format(id=row.id), "filename": row.filename,
            "size": row.size, "type": row.content_type, "sha256": row.sha256,
            "taskId": row.task_id, "createdAt": format_rfc3339(row.created_at)}


def check_task(account_id: str, task_id: str | None) -> None:
    """`taskId` must name a task of the account (400 otherwise)."""
    if task_id is None:
        return
    task = ENTITIES["task"].model
    if "\x00" in task_id or not task.select(task.id).where(
            (task.id == task_id) & (task.account_id == account_id)).exists():
        raise ValidationFailed({"taskId": [f"Task {task_id[:64]} does not exist."]})


def check_type(sniffed: str | None) -> str:
    """The sniffed type, if it is allowed (415 otherwise)."""
    allowed = config.current().upload_allowed_types
    if sniffed not in allowed:
        raise APIError(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"File content is {sniffed or 'of an unknown type'}; allowed: {', '.join(allowed)}.",
                       {"allowed": allowed, "detected": sniffed})
    return sniffed


def store(account_id: str, temp_path: Path, sha256: str, size: int, content_type: str,
          filename: str, task_id: str | None) -> File:
    """Record a finished upload whose bytes are in `temp_path`; emits `file.created`."""
    storage = get_storage(config.current())
    now = utcnow()
    with transaction():
        blob = None
        while blob is None:
            # Concurrent first uploads of the same bytes must not collide on the key, and a
            # blob row deleted (with its bytes) while we waited for its lock is made again.
            Blob.insert(sha256=sha256, size=size, refs=0, created_at=now).on_conflict_ignore().execute()
            blob = _locked_blob(sha256)
        if blob.refs == 0 or not storage.exists(sha256):
            storage.put(temp_path, sha256)
        Blob.update(refs=Blob.refs + 1).where(Blob.sha256 == sha256).execute()
        row = File.create(id=new_id("fil"), account_id=account_id, task_id=task_id,
                          filename=filename, size=size, content_type=content_type,
                          sha256=sha256, created_at=now)
        events.emit(account_id, "file.created", [as_json(row)])
    return row


def _locked_blob(sha256: str) -> Blob | None:
    query = Blob.select().where(Blob.sha256 == sha256)
    if is_postgres():
        query = query.for_update()
    return query.first()


def get(account_id: str, file_id: str) -> File:
    row = None if "\x00" in file_id else File.get_or_none(
        (File.id == file_id) & (File.account_id == account_id))
    if row is None:
        raise NotFound(f"File {file_id[:64]} not found.")
    return row


def list_page(account_id: str, page: int, limit: int,
              task_id: str | None = None) -> tuple[list[File], int, bool]:
    """A page of the account's files (of one task, with `task_id`), newest first: the rows,
    how many match, whether more follow."""
    query = File.select().where(File.account_id == account_id)
    if task_id is not None:
        query = query.where(File.task_id == task_id)
    total = query.count()
    rows = list(query.order_by(File.created_at.desc(), File.id.desc())
                .offset((page - 1) * limit).limit(limit + 1))
    return rows[:limit], total, len(rows) > limit


def delete(account_id: str, file_id: str) -> File:
    """Delete a record; the bytes go (after commit) with the last record that uses them.
    Emits `file.deleted`."""
    with transaction():
        row = get(account_id, file_id)
        if row.delete_instance() == 0:  # a concurrent DELETE got there first
            raise NotFound(f"File {file_id[:64]} not found.")
        Blob.update(refs=Blob.refs - 1).where(Blob.sha256 == row.sha256).execute()
        on_commit(lambda: purge_unused_blobs(row.sha256))
        events.emit(account_id, "file.deleted", [as_json(row)])
    return row


def purge_unused_blobs(sha256: str | None = None) -> int:
    """Remove the bytes and row of every blob no file uses (or of this one, if unused);
    returns how many went. Each is checked again under its row lock, as an upload of the
    same bytes may be taking a reference."""
    storage = get_storage(config.current())
    unused = Blob.select(Blob.sha256).where(Blob.refs <= 0)
    if sha256 is not None:
        unused = unused.where(Blob.sha256 == sha256)
    purged = 0
    for (candidate,) in list(unused.tuples()):
        with transaction():
            blob = _locked_blob(candidate)
            if blob is not None and blob.refs <= 0:
                storage.delete(candidate)
                blob.delete_instance()
                purged += 1
    return purged


@on_delete("task")
def detach_from_tasks(account_id: str, task_ids: list[str]) -> None:
    """Deleting a task keeps its files, detached (`taskId` becomes null)."""
    File.update(task_id=None).where((File.account_id == account_id)
                                    & File.task_id.in_(task_ids)).execute()
