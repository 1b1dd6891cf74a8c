"""The error envelope: every error the service produces leaves through here.

`{"success": false, "error": "...", "code": "...", "details": {...}}` for our own
`APIError`s, Werkzeug's HTTP errors (404, 405 with `Allow`, 413, …), validation
errors, and unexpected exceptions (500, logged with the request id, no internals).
"""

import logging

import peewee
import redis
from flask import jsonify
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from api import metrics
from api.request_log import current_request_id
from api.store import is_write_conflict

log = logging.getLogger("quiver.errors")

CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "INSUFFICIENT_SCOPE",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    412: "PRECONDITION_FAILED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    416: "RANGE_NOT_SATISFIABLE",
    422: "VALIDATION_FAILED",
    424: "FAILED_DEPENDENCY",
    429: "RATE_LIMIT_EXCEEDED",
    460: "CHECKSUM_MISMATCH",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}

MESSAGES = {
    404: "Not found.",
    405: "Method not allowed.",
    413: "Payload too large.",
    500: "Internal server error.",
}


class APIError(Exception):
    """An error with a status, a contract code, a message and optional details."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


class ValidationFailed(APIError):
    """400 `VALIDATION_FAILED`; `details` maps field paths to lists of messages."""

    def __init__(self, details: dict, message: str = "Validation failed."):
        super().__init__(400, "VALIDATION_FAILED", message, details)


class BadRequest(APIError):
    """400 `BAD_REQUEST`: the request could not be read at all."""

    def __init__(self, message: str):
        super().__init__(400, "BAD_REQUEST", message)


class NotFound(APIError):
    """404 `NOT_FOUND` (also for records of another account)."""

    def __init__(self, message: str = "Not found."):
        super().__init__(404, "NOT_FOUND", message)


class Conflict(APIError):
    """409 `CONFLICT`: a unique constraint or a state conflict."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(409, "CONFLICT", message, details)


class PreconditionFailed(APIError):
    """412 `PRECONDITION_FAILED`: `If-Match` does not match."""

    def __init__(self, message: str = "If-Match does not match the current ETag."):
        super().__init__(412, "PRECONDITION_FAILED", message)


def flatten_messages(messages, prefix: str = "") -> dict[str, list[str]]:
    """Flatten marshmallow's nested error dict into `{"items.3.status": [...]}`."""
    if isinstance(messages, dict):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_messages(value, path))
        return flat
    if isinstance(messages, str):
        messages = [messages]
    if isinstance(messages, list) and any(isinstance(m, (dict, list)) for m in messages):
        flat = {}
        for item in messages:
            flat.update(flatten_messages(item, prefix))
        return flat
    return {prefix or "_schema": list(messages)}


def error_response(status: int, code: str, message: str, details: dict | None = None,
                   headers: dict | None = None):
    """A Flask response in the error envelope."""
    body = {"success": False, "error": message, "code": code}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _handle_api_error(error: APIError):
    return error_response(error.status, error.code, error.message, error.details, error.headers)


def _handle_validation_error(error: ValidationError):
    return error_response(400, "VALIDATION_FAILED", "Validation failed.",
                          flatten_messages(error.messages))


def _handle_http_exception(error: HTTPException):
    status = error.code or 500
    if status == 422:
        messages = getattr(error, "data", {}).get("messages", {})
        details = flatten_messages(messages.get("json", messages)) if messages else None
        return error_response(400, "VALIDATION_FAILED", "Validation failed.", details)
    headers = {}
    if status in (405, 416):  # `Allow`; `Content-Range: bytes */<length>` (RFC 9110 15.5.17)
        headers = dict(error.get_headers())
        headers.pop("Content-Type", None)
    message = MESSAGES.get(status) or error.description or error.name
    return error_response(status, CODES.get(status, "BAD_REQUEST"), message, headers=headers)


def _handle_unexpected(error: Exception):
    log.exception("unhandled error", extra={"request_id": current_request_id()})
    return error_response(500, "INTERNAL_ERROR", MESSAGES[500])


_PROGRAMMING_ERRORS = ("no such table", "no such column", "syntax error")


def _handle_backend_down(error: Exception):
    if any(marker in str(error) for marker in _PROGRAMMING_ERRORS):
        return _handle_unexpected(error)
    metrics.backend_error(error, "request")
    if is_write_conflict(error):
        return error_response(409, "CONFLICT", "The write collided with a concurrent one and was "
                                               "rolled back; send it again.")
    backend = "redis" if isinstance(error, redis.RedisError) else "database"
    log.error("backing service unavailable: %s: %s", backend, error,
              extra={"request_id": current_request_id()})
    return error_response(503, "SERVICE_UNAVAILABLE", f"The {backend} is unavailable.",
                          {"service": backend})


def init_app(app) -> None:
    """Register the envelope handlers (after flask-smorest, so ours win)."""
    app.register_error_handler(APIError, _handle_api_error)
    app.register_error_handler(ValidationError, _handle_validation_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(peewee.OperationalError, _handle_backend_down)
    app.register_error_handler(peewee.InterfaceError, _handle_backend_down)
    app.register_error_handler(redis.ConnectionError, _handle_backend_down)
    app.register_error_handler(redis.TimeoutError, _handle_backend_down)
    app.register_error_handler(Exception, _handle_unexpected)
