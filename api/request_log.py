"""Request ids and structured logs.

Every response carries `X-Request-ID` (the caller's, when it is sane, else a new
one); every request is logged as one JSON line with method, path, status,
duration, request id and the API key's visible prefix.
"""

import json
import logging
import re
import sys
import time
import uuid

from flask import g, request

log = logging.getLogger("quiver.request")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


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
    """The id of the request being served, if any."""
    return g.get("request_id")


def init_app(app) -> None:
    """Assign request ids, echo them, and log one line per request."""

    @app.before_request
    def _start():
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _SAFE_REQUEST_ID.match(given) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        started = g.get("started")
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
                "request_id": request_id,
                "key_prefix": g.get("key_prefix"),
            },
        )
        return response
