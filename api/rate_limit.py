"""Rate limits (flask-limiter, moving window, stored in Redis and shared by every process).

- Every authenticated request counts against its key's limit: the key's own
  `rateLimit`, else `RATELIMIT_DEFAULT` (e.g. `1000 per hour;100 per minute`).
- Routes marked `@limited("batch" | "bulk" | "upload" | "export")` also have a
  stricter per-route limit from `RATELIMIT_<GROUP>`; `@limited("10/minute")`
  gives a route a fixed one (custom endpoints declare theirs this way).
- Limited responses carry `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
  `X-RateLimit-Reset`; a 429 carries `Retry-After` and `details.limit`/`resetAt`.
- A batch's sub-requests each count: the batch is charged one request per
  sub-request when it arrives (so a batch that does not fit in what is left of
  the key's allowance is refused as a whole, with 429), and its sub-requests are
  not charged again. Route-group limits still apply to each sub-request.
- If Redis is unreachable, requests are let through (fail open) and a warning
  is logged: an outage of the limiter's store should not take the API down.

The strategy is limits' moving window (exact: at most N hits in any window), run
as one Redis script per limit that takes the slot and also returns the window's
state, so the response's headers cost no second round trip; hits drop off the
window as they age, so the script's cost does not grow with the limit.
"""

import time

from flask import g, has_request_context, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import parse_many
from limits.strategies import STRATEGIES, MovingWindowRateLimiter
from limits.util import WindowStats

from api import redis_conn
from api.auth import view_for_request
from api.batch_environ import SUBREQUEST
from api.config import Settings
from api.errors import error_response
from api.timeutil import format_rfc3339

GROUPS = ("batch", "bulk", "upload", "export")


STRATEGY = "quiver-moving-window"

# limits' moving window (a list of hit timestamps, newest first), where hits past the window
# are dropped from the tail as they expire, so taking an entry and reading the window's
# state (oldest entry, count) cost O(1) amortised, whatever the limit.
ACQUIRE_AND_COUNT = """
local now, limit, expiry, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local oldest = redis.call('lindex', KEYS[1], -1)
while oldest and tonumber(oldest) < now - expiry do
    redis.call('rpop', KEYS[1])
    oldest = redis.call('lindex', KEYS[1], -1)
end
local count = redis.call('llen', KEYS[1])
local acquired = 0
if count + cost <= limit then
    for i = 1, cost, 5000 do
        local batch = {}
        for j = i, math.min(i + 4999, cost) do batch[#batch + 1] = now end
        redis.call('lpush', KEYS[1], unpack(batch))
    end
    redis.call('ltrim', KEYS[1], 0, limit - 1)
    redis.call('expire', KEYS[1], expiry)
    count = math.min(count + cost, limit)
    oldest = redis.call('lindex', KEYS[1], -1)
    acquired = 1
end
return {acquired, oldest or tostring(now), count}
"""


class MovingWindowWithStats(MovingWindowRateLimiter):
    """The moving window, where a hit also reads the window (kept for this request's headers)."""

    def __init__(self, storage):
        super().__init__(storage)
        self._script = None

    def hit(self, item, *identifiers: str, cost: int = 1) -> bool:
        key = item.key_for(*identifiers)
        if self._script is None:
            self._script = self.storage.get_connection().register_script(ACQUIRE_AND_COUNT)
        acquired, oldest, count = self._script(
            [self.storage.prefixed_key(key)], [time.time(), item.amount, item.get_expiry(), cost])
        if has_request_context():
            windows = g.setdefault("rate_limit_windows", {})
            windows[key] = WindowStats(float(oldest) + item.get_expiry(),
                                       max(0, item.amount - int(count)))
        return bool(acquired)

    def get_window_stats(self, item, *identifiers: str) -> WindowStats:
        windows = g.get("rate_limit_windows", {}) if has_request_context() else {}
        return windows.get(item.key_for(*identifiers)) or super().get_window_stats(item, *identifiers)


STRATEGIES[STRATEGY] = MovingWindowWithStats


def _no_limit_applies() -> bool:
    """True when no limit can apply to this request: no key yet (a 401 or a public
    route), or a batch sub-request (its batch was charged for it) to a route without a
    stricter limit of its own."""
    return g.get("api_key") is None or (request.environ.get(SUBREQUEST, False)
                                       and _group() is None)


class QuiverLimiter(Limiter):
    """flask-limiter, returning at once from its per-request check when no limit applies.

    (A `request_filter` would only take effect after the limits have been resolved and
    the meta limits and exemptions looked up: about 0.1 ms a request here, which a
    batch's sub-requests would pay twenty times over.)
    """

    def _check_request_limit(self, callable_name=None, in_middleware=True) -> None:
        if not _no_limit_applies():
            super()._check_request_limit(callable_name, in_middleware)


def limited(group_or_limit: str):
    """Declare that a view also has a stricter limit: a group's (`"batch"`) or its own (`"10/minute"`)."""
    if group_or_limit not in GROUPS:
        parse_many(group_or_limit)

    def decorate(view):
        view.rate_limit_group = group_or_limit
        return view

    return decorate


def _key() -> str:
    key = g.get("api_key")
    return f"key:{key.id}" if key is not None else f"ip:{request.remote_addr}"


def _cost() -> int:
    """A batch is charged one request per sub-request, up front (its sub-requests then are not)."""
    if _group() == "batch":
        body = request.get_json(silent=True)
        requests = body.get("requests") if isinstance(body, dict) else None
        if isinstance(requests, list):
            return max(1, len(requests))
    return 1


def _group() -> str | None:
    """The view's `@limited` group or limit (looked up once per request)."""
    if "rate_limit_group" not in g:
        view = view_for_request()
        g.rate_limit_group = getattr(view, "rate_limit_group", None) if view is not None else None
    return g.rate_limit_group


def init_app(app, settings: Settings) -> Limiter:
    """Attach a limiter to `app` (after auth, so limits know the key)."""
    app.register_error_handler(RateLimitExceeded, _refused)

    @app.after_request
    def _retry_after_only_when_refused(response):
        if response.status_code not in (429, 503):
            response.headers.pop("Retry-After", None)
        return response

    limiter = QuiverLimiter(
        key_func=_key,
        app=app,
        application_limits=[
            lambda: (g.api_key.rate_limit if g.get("api_key") and g.api_key.rate_limit
                     else settings.ratelimit_default)],
        application_limits_exempt_when=lambda: (g.get("api_key") is None
                                                or request.environ.get(SUBREQUEST, False)),
        application_limits_cost=_cost,
        default_limits=[lambda: settings.ratelimit_groups.get(_group(), _group())],
        default_limits_exempt_when=lambda: g.get("api_key") is None or _group() is None,
        strategy=STRATEGY,
        storage_uri=redis_conn.storage_uri(settings),
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 2},
        headers_enabled=True,
        swallow_errors=True,
        key_prefix="quiver",
        enabled=settings.ratelimit_enabled,
    )
    return limiter


def _refused(error: RateLimitExceeded):
    """429 `RATE_LIMIT_EXCEEDED` in the error envelope, with `_breach_details`."""
    return error_response(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded.", _breach_details(error))


def _breach_details(error: RateLimitExceeded) -> dict:
    """`details` for a 429: the limit that was hit and when it resets."""
    from flask import current_app

    limiter = current_app.extensions["limiter"]
    current = next(iter(limiter)).current_limit if limiter else None
    reset_at = format_rfc3339(_utc(current.reset_at)) if current else None
    return {"limit": str(error.limit.limit), "resetAt": reset_at}


def _utc(timestamp: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)
