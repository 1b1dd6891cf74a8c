"""Reading JSON request bodies and writing success envelopes."""

import json

from flask import current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from api.errors import BadRequest, ValidationFailed


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _refuse_truncated(raw: bytes) -> None:
    """413 for a body without a Content-Length (chunked) that goes on past MAX_CONTENT_LENGTH.

    Werkzeug stops reading such a body at the limit and hands back what it read, so
    without this check the first MAX_CONTENT_LENGTH bytes would be parsed as the body.
    """
    limit = request.max_content_length
    if (request.content_length is None and limit is not None and len(raw) >= limit
            and request.environ["wsgi.input"].read(1)):
        raise RequestEntityTooLarge()


def raw_body() -> bytes:
    """The request body as sent, within the route's cap (else 413 `PAYLOAD_TOO_LARGE`)."""
    raw = request.get_data(cache=True)
    _refuse_truncated(raw)
    return raw


def json_body() -> dict:
    """The request body as a JSON object, or a 400 in the envelope.

    Wrong content type or unparseable JSON is `BAD_REQUEST`; valid JSON that is
    not an object is `VALIDATION_FAILED`.
    """
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise BadRequest("Content-Type must be application/json.")
    raw = raw_body()
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BadRequest("The request body is not valid UTF-8.") from exc
    except ValueError as exc:
        raise BadRequest(f"Malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("Malformed JSON: nested too deeply.") from exc
    if not isinstance(data, dict):
        raise ValidationFailed({"_schema": ["The request body must be a JSON object."]})
    return data


def success(data, status: int = 200, meta: dict | None = None, headers: dict | None = None):
    """`{"success": true, "data": ..., "meta": ...}` with the given status and headers."""
    body = {"success": True, "data": data}
    if meta is not None:
        body["meta"] = meta
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def json_response(body: bytes, status: int = 200, headers: dict | None = None):
    """A response whose JSON body is already encoded (as `success` would have encoded it)."""
    return current_app.response_class(body, status, headers, mimetype=current_app.json.mimetype)


def not_modified(etag: str):
    """An empty 304 naming the current `ETag`."""
    return current_app.response_class(status=304, headers={"ETag": etag})


def no_content():
    """An empty 204 response."""
    return "", 204
