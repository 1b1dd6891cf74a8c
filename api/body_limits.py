"""How large a request body each route takes: small by default, large where a route says so.

Every route reads at most `JSON_MAX_BYTES` of body (default 1 MiB: a record is far
smaller). Routes marked `@large_body` (bulk writes, batch) take up to
`MAX_CONTENT_LENGTH` (default 32 MiB); upload routes set their own caps in the view.
The cap is set before any hook reads the body, so a body declared larger is answered
413 `PAYLOAD_TOO_LARGE` before a byte of it is read, and a chunked one is cut off at
the cap (`api.http`). Memory per request thread is bounded by its route's cap.
"""

from flask import request

from api.config import Settings
from api.routing import view_for_request


def large_body(view):
    """Let the route read bodies up to `MAX_CONTENT_LENGTH` instead of `JSON_MAX_BYTES`."""
    view.large_body = True
    return view


def init_app(app, settings: Settings) -> None:
    """Cap every request's body by its route, before anything else reads it."""

    def cap_body():
        large = getattr(view_for_request(), "large_body", False)
        request.max_content_length = settings.max_content_length if large else settings.json_max_bytes

    app.before_request_funcs.setdefault(None, []).insert(0, cap_body)
