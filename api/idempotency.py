"""Idempotency keys on POST and PATCH.

The first request with an `Idempotency-Key` claims the key for its account
(a row with a unique index, so the claim is atomic across processes); its
response is stored and kept 24 hours. The same key with the same request
replays that response with `Idempotent-Replayed: true` and writes nothing; with
a different request it is a 422 `IDEMPOTENCY_KEY_REUSED`; while the first is
still running, a 409 `IDEMPOTENCY_IN_PROGRESS`. Responses with a 5xx status are
not kept, so the request can be retried with the same key. Routes that show a
secret once (new API keys, webhook secrets) refuse the header: keeping their
response would keep the secret in the database.

A request is identified by method, path, query string and body (JSON bodies
compared after parsing, so key order and whitespace do not matter). Bodies that
are not JSON (file uploads) are not read here, so as not to buffer them: they
are identified by content type and length.
"""

import hashlib
import json
import re
from datetime import timedelta

import peewee
from flask import Response, g, request

from api.errors import APIError, ValidationFailed
from api.models import IdempotencyRecord
from api.routing import view_for_request
from api.store import db
from api.timeutil import utcnow

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
METHODS = ("POST", "PATCH")
REPLAYED_HEADERS = ("Location", "ETag", "Content-Type", "Link")
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def reveals_secret(view):
    """Mark a route whose response holds a secret shown once (it refuses Idempotency-Key)."""
    view.reveals_secret = True
    return view


def fingerprint() -> str:
    """A digest of what makes this request this request."""
    digest = hashlib.sha256(f"{request.method}\n{request.path}\n{request.query_string.decode()}\n"
                            .encode())
    if request.mimetype == "application/json":
        raw = request.get_data(cache=True)
        try:
            digest.update(json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode())
        except (ValueError, RecursionError):
            digest.update(raw)
    else:
        digest.update(f"{request.mimetype}\n{request.content_length}".encode())
    return digest.hexdigest()


def _claim(account_id: str, key: str, print_: str) -> IdempotencyRecord | None:
    """Claim the key (None), or return the record that already holds it."""
    now = utcnow()
    for _ in range(3):
        try:
            with db.atomic():
                IdempotencyRecord.create(account_id=account_id, key=key, fingerprint=print_,
                                         state="in_progress", created_at=now, expires_at=now + TTL)
            return None
        except peewee.IntegrityError:
            existing = IdempotencyRecord.get_or_none(
                (IdempotencyRecord.account_id == account_id) & (IdempotencyRecord.key == key))
            if existing is None:
                continue
            if existing.expires_at < now:
                IdempotencyRecord.delete().where((IdempotencyRecord.id == existing.id)
                                                 & (IdempotencyRecord.expires_at < now)).execute()
                continue
            return existing
    raise APIError(409, "IDEMPOTENCY_IN_PROGRESS", "This Idempotency-Key is busy; retry shortly.")


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(bytes(record.response_body or b""), status=record.response_status)
    for name, value in json.loads(record.response_headers or "{}").items():
        response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _release(claim) -> None:
    IdempotencyRecord.delete().where(
        (IdempotencyRecord.account_id == claim[0]) & (IdempotencyRecord.key == claim[1])
        & (IdempotencyRecord.state == "in_progress")).execute()


def init_app(app) -> None:
    """Check keys before the view runs (after auth and rate limits) and store responses after."""

    @app.before_request
    def _check():
        key = request.headers.get(HEADER)
        if key is None or request.method not in METHODS or g.get("api_key") is None:
            return None
        if not _VALID_KEY.match(key):
            raise ValidationFailed({HEADER: ["Must be 1 to 255 visible ASCII characters."]})
        view = view_for_request()
        if getattr(view, "reveals_secret", False):
            raise ValidationFailed({HEADER: [
                "Not accepted here: this route shows a secret once, and a stored response "
                "would keep that secret in the database."]})
        print_ = fingerprint()
        existing = _claim(g.account_id, key, print_)
        if existing is None:
            g.idempotency_claim = (g.account_id, key)
            return None
        if existing.fingerprint != print_:
            raise APIError(422, "IDEMPOTENCY_KEY_REUSED",
                           "This Idempotency-Key was used with a different request.")
        if existing.state != "completed":
            raise APIError(409, "IDEMPOTENCY_IN_PROGRESS",
                           "A request with this Idempotency-Key is still being processed.")
        return _replay(existing)

    @app.after_request
    def _store(response):
        claim = g.pop("idempotency_claim", None)
        if claim is None:
            return response
        if response.status_code >= 500 or response.is_streamed:
            _release(claim)
            return response
        headers = {name: response.headers[name] for name in REPLAYED_HEADERS if name in response.headers}
        IdempotencyRecord.update(
            state="completed", response_status=response.status_code,
            response_headers=json.dumps(headers), response_body=response.get_data(),
        ).where((IdempotencyRecord.account_id == claim[0]) & (IdempotencyRecord.key == claim[1])
                ).execute()
        return response

    @app.teardown_request
    def _release_unfinished(exc):
        claim = g.pop("idempotency_claim", None)
        if claim is not None:
            _release(claim)


def purge_expired() -> int:
    """Delete records past their 24 hours; returns how many."""
    return IdempotencyRecord.delete().where(IdempotencyRecord.expires_at < utcnow()).execute()
