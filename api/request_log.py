"""Request ids and structured logs.

Every response carries `X-Request-ID` (the caller's, when it is sane, else a new
one); every request is logged as one JSON line with method, path, status,
duration, request id and the API key's visible prefix. `api.http_layer` calls
these once per HTTP request.
"""

import json
import logging
import os
import re
import sys
import time

from flask import request

log = logging.getLogger("quiver.request")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
REQUEST_ID = "quiver.request_id"  # WSGI environ keys
KEY_PREFIX = "quiver.key_prefix"


class JSONFormatter(logging.Formatter):
    """One JSON object per log line, with any `extra` fields merged in."""

    RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self.RESERVED})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


JSONFormatter.converter = time.gmtime


def configure_logging(level: str) -> None:
    """Send the `quiver` loggers to stderr as JSON lines."""
    logger = logging.getLogger("quiver")
    if not any(isinstance(h.formatter, JSONFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def current_request_id() -> str | None:
    """The id of the request being served, if any (a batch's sub-requests share the batch's)."""
    return request.environ.get(REQUEST_ID) if request else None


def assign_request_id(environ: dict) -> str:
    """The request's id (the caller's `X-Request-ID`, when it is sane, else a new one), kept
    in its environ."""
    given = environ.get("HTTP_X_REQUEST_ID", "")
    request_id = environ[REQUEST_ID] = given if _SAFE_REQUEST_ID.match(given) else os.urandom(16).hex()
    return request_id


def note_key(environ: dict, key_prefix: str) -> None:
    """Record the visible prefix of the request's API key, for its log line."""
    environ[KEY_PREFIX] = key_prefix


def log_request(environ: dict, status: int, seconds: float) -> None:
    """The request's log line (at INFO)."""
    if not log.isEnabledFor(logging.INFO):
        return
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    log.info("request", extra={
        "method": environ.get("REQUEST_METHOD"),
        "path": "/" + path.lstrip("/"),
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "request_id": environ.get(REQUEST_ID),
        "key_prefix": environ.get(KEY_PREFIX),
    })
