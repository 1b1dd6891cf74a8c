"""Streaming uploads: each file part goes straight to a temp file while it is hashed and counted.

`Spool` is what Werkzeug's multipart parser writes a file part into (see
`QuiverRequest`): it keeps only the first bytes (for type sniffing) in memory,
computes SHA-256 and size as the bytes pass, and raises 413 the moment a file
goes over `UPLOAD_MAX_BYTES`. Temp files that are not moved into storage are
removed when the request ends.
"""

import hashlib
import os
import tempfile
import unicodedata
from pathlib import Path

import filetype
from flask import Request, g
from werkzeug.exceptions import RequestEntityTooLarge

SNIFF_BYTES = 8192
SPOOL_FACTORY = "quiver.upload_spool_factory"


class FileTooLarge(RequestEntityTooLarge):
    description = "A file is over the upload limit."


class Spool:
    """A temp file that hashes, counts and bounds what is written to it."""

    def __init__(self, directory: Path, max_bytes: int):
        fd, name = tempfile.mkstemp(dir=directory, prefix="up-")
        self.path = Path(name)
        self.file = os.fdopen(fd, "w+b")
        self.max_bytes = max_bytes
        self.size = 0
        self.head = b""
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise FileTooLarge()
        if len(self.head) < SNIFF_BYTES:
            self.head += data[:SNIFF_BYTES - len(self.head)]
        self.digest.update(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()

    def sniffed_type(self) -> str | None:
        """The MIME type the content's first bytes show (the client's claim is ignored)."""
        kind = filetype.guess(self.head)
        return kind.mime if kind else None

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class QuiverRequest(Request):
    """Flask's request, with file parts streamed into `Spool`s on the upload routes."""

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        factory = self.environ.get(SPOOL_FACTORY)
        if factory is None:
            return super()._get_file_stream(total_content_length, content_type, filename,
                                            content_length)
        return factory()


def stream_files_into(directory: Path, max_bytes: int) -> None:
    """Make this request's file parts stream into Spools (call before touching `request.files`)."""
    from flask import request

    spools = g.setdefault("upload_spools", [])

    def factory():
        spool = Spool(directory, max_bytes)
        spools.append(spool)
        return spool

    request.environ[SPOOL_FACTORY] = factory


def discard_leftovers(exc=None) -> None:
    """Teardown: remove temp files this request did not move into storage."""
    for spool in g.pop("upload_spools", []):
        spool.discard()


def sanitize_filename(name: str | None) -> str:
    """A display name without path parts or control characters (stored names never use it)."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = name.strip().strip(".").strip()
    while len(name.encode("utf-8")) > 255:
        name = name[:-1]
    return name or "file"
