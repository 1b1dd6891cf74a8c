"""API keys and scopes.

Routes declare the scope they need with `@requires("read" | "write" | "admin")`
(`@any_scope` when the view checks scopes itself, as GraphQL does per operation)
or opt out with `@public`; one `before_request` hook enforces it for every
route, so an undeclared route is treated as admin-only rather than left open.
Keys travel as `Authorization: Bearer sk_…` (or `?access_token=` on streams),
are stored only as SHA-256 hashes, and are compared in constant time.
"""

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from flask import current_app, g, request

from api.errors import APIError
from api.models import ApiKey
from api.store import db, fetch_models
from api.timeutil import utcnow

SCOPES = ("read", "write", "admin")
ANY_SCOPE = "any"
KEY_PREFIX = "sk_"
VISIBLE_PREFIX_LENGTH = 12
PUBLIC_BLUEPRINTS = {"api-docs"}
BATCH_KEY = "quiver.batch.key"
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")  # keys never hold anything else (no NUL reaches SQL)


def generate_key() -> str:
    """A new secret key: `sk_` + 43 url-safe random characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def visible_prefix(key: str) -> str:
    """The part of a key that may be shown and logged (`sk_AbCdEfGhI`)."""
    return key[:VISIBLE_PREFIX_LENGTH]


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


def authenticate(key: str | None) -> ApiKey:
    """The live `ApiKey` for `key`, or a 401."""
    if key is None:
        raise unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    if not key.startswith(KEY_PREFIX) or len(key) > 200 or not _URL_SAFE.fullmatch(key):
        raise unauthorized("Invalid API key.")
    presented = hash_key(key)
    candidates = fetch_models(ApiKey, f'"prefix" = {db.param}', (visible_prefix(key),))
    match = next((k for k in candidates if hmac.compare_digest(k.key_hash, presented)), None)
    if match is None:
        raise unauthorized("Invalid API key.")
    if match.revoked_at is not None:
        raise unauthorized("This API key has been revoked.")
    _touch(match)
    return match


def _touch(key: ApiKey) -> None:
    now = utcnow()
    interval = timedelta(seconds=current_app.config["QUIVER"].key_last_used_interval)
    if key.last_used_at is None or key.last_used_at < now - interval:
        stale = ApiKey.last_used_at.is_null() | (ApiKey.last_used_at < now - interval)
        ApiKey.update(last_used_at=now).where((ApiKey.id == key.id) & stale).execute()


def view_for_request():
    """The function that will handle this request (a MethodView's method for class views)."""
    rule = request.url_rule
    return None if rule is None else view_for(rule.endpoint, request.method)


def view_for(endpoint: str, method: str):
    """The function that handles `method` at `endpoint` (a MethodView's method for class views)."""
    view = current_app.view_functions.get(endpoint)
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = method.lower()
        return getattr(view_class, method, None) or (
            getattr(view_class, "get", None) if method == "head" else None)
    return view


def init_app(app) -> None:
    """Enforce each route's declared scope before it runs (flask-smorest's docs are public).

    A batch's sub-requests carry the batch's already authenticated key in the
    WSGI environ (which clients cannot set), so they skip the lookup but not the
    scope check.
    """

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
        key = request.environ.get(BATCH_KEY) or authenticate(_presented_key(view))
        g.api_key = key
        g.account_id = key.account_id
        g.key_prefix = key.prefix
        g.scopes = set(key.scopes.split(","))
        if needed != ANY_SCOPE and not has_scope(g.scopes, needed):
            raise APIError(403, "INSUFFICIENT_SCOPE",
                           f"This API key lacks the '{needed}' scope.", {"required": needed})


def current_account_id() -> str:
    """The account of the authenticated key."""
    return g.account_id
