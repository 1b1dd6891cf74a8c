"""Resumable uploads with the tus 1.0 protocol (core, creation, termination, checksum, expiration).

An upload in progress is a `tus_uploads` row and a part file in the storage's
temp directory; PATCHes append to it (streamed, never buffered) under a file
lock. When the last byte arrives the part file becomes a file record through
the same path as `POST /upload` (type sniffing, dedup, `file.created`).
Part files live on the web machine's disk: with several machines, share
`UPLOAD_DIR` or route an upload's requests to one machine.
"""

import base64
import binascii
import fcntl
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import filetype

from api import config
from api.errors import APIError, NotFound, ValidationFailed
from api.ids import new_id
from api.models import TusUpload
from api.services import files
from api.storage import get_storage
from api.timeutil import utcnow
from api.uploads import SNIFF_BYTES, sanitize_filename

CHUNK = 1 << 20
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


def part_path(upload_id: str) -> Path:
    return get_storage(config.current()).tmp / f"tus-{upload_id}"


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64value` pairs (an empty header is fine)."""
    metadata = {}
    for pair in (header or "").split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, value = pair.partition(" ")
        try:
            metadata[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValidationFailed({"Upload-Metadata": [f"Value of {key!r} is not base64 UTF-8."]}) from exc
    return metadata


def create(account_id: str, length_header: str | None, metadata_header: str | None) -> TusUpload:
    """A new upload of `Upload-Length` bytes."""
    settings = config.current()
    if length_header is None or not (length_header.isascii() and length_header.isdigit()):
        raise ValidationFailed({"Upload-Length": ["Required: the upload's size in bytes."]})
    length = int(length_header)
    if length == 0:
        raise ValidationFailed({"file": ["No file provided."]})
    if length > settings.upload_max_bytes:
        raise APIError(413, "PAYLOAD_TOO_LARGE",
                       f"Files may be at most {settings.upload_max_bytes} bytes.")
    metadata = parse_metadata(metadata_header)
    files.check_task(account_id, metadata.get("taskId") or None)
    purge_expired()
    now = utcnow()
    row = TusUpload.create(id=new_id("tus"), account_id=account_id, length=length, offset=0,
                           metadata=json.dumps(metadata), created_at=now,
                           expires_at=now + timedelta(seconds=settings.tus_expire_seconds))
    part_path(row.id).touch()
    return row


def get(account_id: str, upload_id: str) -> TusUpload:
    row = None if "\x00" in upload_id else TusUpload.get_or_none(
        (TusUpload.id == upload_id) & (TusUpload.account_id == account_id))
    if row is None:
        raise NotFound("Upload not found.")
    if row.expires_at < utcnow():
        raise APIError(410, "NOT_FOUND", "This upload has expired.")
    return row


def append(account_id: str, upload_id: str, offset_header: str | None, stream,
           checksum_header: str | None) -> TusUpload:
    """Append one PATCH body at `Upload-Offset`; completes the upload on its last byte."""
    row = get(account_id, upload_id)
    if (offset_header is None or not (offset_header.isascii() and offset_header.isdigit())
            or int(offset_header) != row.offset):
        raise APIError(409, "CONFLICT", f"Upload-Offset must be {row.offset}.",
                       {"offset": row.offset})
    if row.file_id:  # already complete (and its part file gone): nothing left to write
        if stream.read(1):
            raise APIError(413, "PAYLOAD_TOO_LARGE", "More bytes than Upload-Length.")
        return row
    algorithm, expected = _checksum(checksum_header)
    path = part_path(row.id)
    try:
        part = open(path, "r+b")  # noqa: SIM115 (closed by the `with` below)
    except FileNotFoundError:  # completed or terminated by a concurrent request meanwhile
        row = get(account_id, upload_id)
        raise APIError(409, "CONFLICT", f"Upload-Offset must be {row.offset}.",
                       {"offset": row.offset}) from None
    with part:
        try:
            fcntl.flock(part, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise APIError(409, "CONFLICT", "Another request is writing this upload.") from exc
        row = get(account_id, upload_id)
        if row.offset != int(offset_header):  # another PATCH at this offset finished meanwhile
            raise APIError(409, "CONFLICT", f"Upload-Offset must be {row.offset}.",
                           {"offset": row.offset})
        start = row.offset
        part.seek(start)
        digest = CHECKSUMS[algorithm]() if algorithm else None
        written = 0
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if start + written > row.length:
                part.truncate(start)
                raise APIError(413, "PAYLOAD_TOO_LARGE", "More bytes than Upload-Length.")
            if digest:
                digest.update(chunk)
            part.write(chunk)
        if digest and digest.digest() != expected:
            part.truncate(start)
            raise APIError(460, "CHECKSUM_MISMATCH", "Upload-Checksum does not match the bytes.")
        part.truncate(start + written)
        part.flush()
        row.offset = start + written
        TusUpload.update(offset=row.offset).where(TusUpload.id == row.id).execute()
        if row.offset == row.length:
            _complete(row, path)
    return row


def _checksum(header: str | None) -> tuple[str | None, bytes | None]:
    if not header:
        return None, None
    algorithm, _, value = header.partition(" ")
    if algorithm not in CHECKSUMS:
        raise ValidationFailed({"Upload-Checksum": [f"Supported: {', '.join(CHECKSUMS)}."]})
    try:
        return algorithm, base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise ValidationFailed({"Upload-Checksum": ["The checksum must be base64."]}) from exc


def _complete(row: TusUpload, path: Path) -> None:
    """Turn the finished part file into a file record (or refuse its type, ending the upload)."""
    digest = hashlib.sha256()
    with open(path, "rb") as part:
        head = part.read(SNIFF_BYTES)
        digest.update(head)
        for chunk in iter(lambda: part.read(CHUNK), b""):
            digest.update(chunk)
    kind = filetype.guess(head)
    metadata = json.loads(row.metadata)
    try:
        content_type = files.check_type(kind.mime if kind else None)
    except APIError:
        terminate(row.account_id, row.id)
        raise
    record = files.store(row.account_id, path, digest.hexdigest(), row.length, content_type,
                         sanitize_filename(metadata.get("filename") or metadata.get("name")),
                         metadata.get("taskId") or None)
    path.unlink(missing_ok=True)  # still there when the blob already had these bytes
    row.file_id = record.id
    TusUpload.update(file_id=record.id).where(TusUpload.id == row.id).execute()


def terminate(account_id: str, upload_id: str) -> None:
    """Termination: forget the upload and its bytes."""
    row = TusUpload.get_or_none((TusUpload.id == upload_id) & (TusUpload.account_id == account_id))
    if row is None:
        raise NotFound("Upload not found.")
    part_path(row.id).unlink(missing_ok=True)
    row.delete_instance()


def purge_expired() -> int:
    """Delete expired uploads and their part files; returns how many."""
    expired = list(TusUpload.select(TusUpload.id).where(TusUpload.expires_at < utcnow()))
    for row in expired:
        part_path(row.id).unlink(missing_ok=True)
    if expired:
        TusUpload.delete().where(TusUpload.id.in_([r.id for r in expired])).execute()
    return len(expired)
