"""Custom endpoints: one decorator states a route's path, methods, scope and rate limit.

    @endpoint("/analytics/dashboard", scope="read", rate_limit="60/minute")
    def dashboard():
        return success({...})

The route is served under `/api/v1`, documented in OpenAPI, authenticated and
scope-checked like every other route, and rate limited per key (on top of the
key's own limit) when `rate_limit` is given. Endpoint modules live in
`api/endpoints/`; `api.endpoints.blueprint()` imports them all.
"""

from flask_smorest import Blueprint

from api.auth import requires
from api.docs import ErrorSchema
from api.rate_limit import limited

blp = Blueprint("custom", __name__, url_prefix="/api/v1", description="Custom endpoints.")


def endpoint(path: str, *, scope: str, methods=("GET",), rate_limit: str | None = None,
             summary: str | None = None, parameters: list | None = None, response_schema=None):
    """Register the decorated function as a custom endpoint."""

    def register(view):
        decorated = view
        if response_schema is not None:
            decorated = blp.response(200, response_schema)(decorated)
        decorated = blp.alt_response(400, schema=ErrorSchema)(decorated)
        decorated = blp.doc(summary=summary or view.__doc__, parameters=parameters or [])(decorated)
        if rate_limit:
            decorated = limited(rate_limit)(decorated)
        decorated = requires(scope)(decorated)
        blp.route(path, methods=list(methods), endpoint=view.__name__)(decorated)
        return view

    return register
