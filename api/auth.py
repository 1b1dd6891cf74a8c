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

from flask import current_app, g, request

from api.batch_environ import BATCH_KEY
from api.errors import APIError
from api.services import keys
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


def authenticate(key: str | None):
    """The live `ApiKey` for `key`, or a 401."""
    if key is None:
        raise unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    if not key.startswith(KEY_PREFIX) or len(key) > 200 or not _URL_SAFE.fullmatch(key):
        raise unauthorized("Invalid API key.")
    match = keys.find(key)
    if match is None:
        raise unauthorized("Invalid API key.")
    if match.revoked_at is not None:
        raise unauthorized("This API key has been revoked.")
    keys.touch(match, current_app.config["QUIVER"].key_last_used_interval)
    return match


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
