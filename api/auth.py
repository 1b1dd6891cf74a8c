"""API keys and scopes.

Routes declare the scope they need with `@requires("read" | "write" | "admin")`
(`@any_scope` when the view checks scopes itself, as GraphQL does per operation)
or opt out with `@public`; one `before_request` hook enforces it for every
route, so an undeclared route is treated as admin-only rather than left open.
Keys travel as `Authorization: Bearer sk_…` (or `?access_token=` on streams),
are looked up by `api.services.keys` (stored only as SHA-256 hashes, compared in
constant time).
"""

import re

from flask import g, request

from api import rate_limit
from api.batch_environ import BATCH_KEY
from api.errors import APIError
from api.request_log import note_key
from api.routing import view_for_request
from api.services import keys, record_cache
from api.services.keys import KEY_PREFIX, SCOPES

ANY_SCOPE = "any"
PUBLIC_BLUEPRINTS = {"api-docs"}
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")  # keys never hold anything else (no NUL reaches SQL)


def has_scope(granted: set[str] | list[str], needed: str) -> bool:
    """`admin` implies every scope; `write` does not imply `read`."""
    return "admin" in granted or needed in granted


def requires(scope: str):
    """Declare the scope a view needs."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(view):
        view.required_scope = scope
        return view

    return decorate


def public(view):
    """Declare a view that needs no key."""
    view.required_scope = None
    return view


def any_scope(view):
    """Declare a view that needs a valid key of any scope and checks finer scopes itself."""
    view.required_scope = ANY_SCOPE
    return view


def unauthorized(message: str) -> APIError:
    """401 `UNAUTHORIZED` with a `WWW-Authenticate` challenge."""
    return APIError(401, "UNAUTHORIZED", message, headers={"WWW-Authenticate": "Bearer"})


def accepts_query_token(view):
    """Also accept the key as `?access_token=` (for browsers' EventSource)."""
    view.accepts_query_token = True
    return view


def _presented_key(view) -> str | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    if getattr(view, "accepts_query_token", False):
        return request.args.get("access_token")
    return None


def _well_formed(key: str | None) -> str:
    if key is None:
        raise unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    if not key.startswith(KEY_PREFIX) or len(key) > 200 or not _URL_SAFE.fullmatch(key):
        raise unauthorized("Invalid API key.")
    return key


def _learned(key: str) -> keys.Known:
    known = keys.learn(key)
    if known is None:
        raise unauthorized("Invalid API key.")
    return known


def authenticate(key: str | None):
    """The live stored key for `key` (as this process remembers it, else read now), or a 401."""
    key = _well_formed(key)
    row = (keys.recall(key) or _learned(key)).row
    if row.revoked_at is not None:
        raise unauthorized("This API key has been revoked.")
    return row


def _grant(row, needed: str) -> None:
    """Make `row` the request's key, or a 401 (revoked) or 403 (scope)."""
    if row.revoked_at is not None:
        raise unauthorized("This API key has been revoked.")
    g.api_key = row
    g.account_id = row.account_id
    note_key(request.environ, row.prefix)
    g.scopes = set(row.scopes.split(","))
    if needed != ANY_SCOPE and not has_scope(g.scopes, needed):
        raise APIError(403, "INSUFFICIENT_SCOPE",
                       f"This API key lacks the '{needed}' scope.", {"required": needed})


def _watched(view) -> str | None:
    """The id of the record a route that reads one (`reads_record`) is asked for, if cached."""
    if not getattr(view, "reads_record", None) or not record_cache.enabled():
        return None
    record_id = request.view_args.get("record_id")
    return record_id if record_id and len(record_id) <= 100 else None


def _admit(secret: str | None, needed: str, settings, watch: str | None) -> None:
    """Authenticate, check the scope and take the rate-limit slots: one Redis call, and no
    database read for a key this process remembers whose marker has not moved. The same
    call reads the change counters of the record `watch` (see `api.services.record_cache`)."""
    secret = _well_formed(secret)
    known = keys.recall(secret)
    remembered = known is not None
    known = known or _learned(secret)
    for _ in range(3):
        _grant(known.row, needed)
        marker = (known.marker, known.epoch, known.generation) if remembered else None
        outcome = rate_limit.admit(known.row, settings, marker, charge_key=True, watch=watch)
        if outcome == "admitted":
            break
        if outcome == "unreachable":  # limits let it through; revocation stays strict
            record_cache.forget_all()
            if remembered:
                keys.forget_all()
                known = _learned(secret)
                _grant(known.row, needed)
            break
        keys.forget(secret)  # the key changed: read it again
        known = _learned(secret)
        remembered = False
    keys.touch(known.row, settings.key_last_used_interval)


def init_app(app) -> None:
    """Enforce each route's declared scope before it runs (flask-smorest's docs are public),
    and its rate limits (`api.rate_limit.admit`).

    A batch's sub-requests carry the batch's already authenticated key in the
    WSGI environ (which clients cannot set), so they skip the lookup and the key's
    limits (the batch paid them) but not the scope check or their route's limits.
    """
    settings = app.config["QUIVER"]

    @app.before_request
    def _enforce_scope():
        if request.method == "OPTIONS":
            return
        view = view_for_request()
        if view is None or request.blueprint in PUBLIC_BLUEPRINTS:
            return
        needed = getattr(view, "required_scope", "admin")
        if needed is None:
            return
        batch_key = request.environ.get(BATCH_KEY)
        if batch_key is None:
            _admit(_presented_key(view), needed, settings, _watched(view))
        else:
            _grant(batch_key, needed)
            rate_limit.admit(batch_key, settings, None, charge_key=False)


def current_account_id() -> str:
    """The account of the authenticated key."""
    return g.account_id


def current_key_id() -> str:
    """The id of the authenticated key."""
    return g.api_key.id
