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

The strategy is limits' moving window (exact: at most N hits in any window). One
Redis script (`admit`, called by `api.auth` once the key and its scope are known)
evaluates every limit that applies to the request at once: a request over any of
them takes no slot in any; it also compares the key's change marker (see
`api.services.keys`), so authentication and rate limits cost one round trip together,
and it returns each window's state for the response's headers. Hits drop off the
window as they age, so the script's cost does not grow with the limit. flask-limiter
is the configuration surface (limit strings, `RATELIMIT_*`, its 429 and headers); its
own per-request resolution of limits is replaced by `admit`.
"""

import functools
import logging
import time
from dataclasses import dataclass

from flask import current_app, g, has_request_context, request
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse_many
from limits.strategies import STRATEGIES, MovingWindowRateLimiter
from limits.util import WindowStats

from api import metrics, redis_conn
from api.config import Settings
from api.errors import error_response
from api.routing import view_for_request
from api.services import keys
from api.timeutil import format_rfc3339

GROUPS = ("batch", "bulk", "upload", "export")
log = logging.getLogger("quiver.rate_limit")


# limits' moving window (a list of hit timestamps per limit, newest first): hits past the
# window are dropped from the tail as they expire, so reading a window (oldest entry, count)
# and taking slots cost O(1) amortised, whatever the limit. KEYS: the key epoch, the key's
# marker, then one list per limit; ARGV: now, whether to compare the marker, the epoch and
# counter expected, an epoch to set if there is none, then limit, expiry, cost per limit.
# Returns {1 admitted | 0 refused | -1 stale marker, epoch, counter, the first limit over,
# then oldest hit and count of every window}.
ADMIT = """
local now = tonumber(ARGV[1])
local epoch = redis.call('get', KEYS[1])
if not epoch then
    epoch = ARGV[5]
    redis.call('set', KEYS[1], epoch)
end
local counter = redis.call('get', KEYS[2]) or '0'
if ARGV[2] == '1' and (epoch ~= ARGV[3] or counter ~= ARGV[4]) then
    return {-1, epoch, counter, 0}
end
local counts, oldests, over = {}, {}, 0
for i = 3, #KEYS do
    local base = 6 + (i - 3) * 3
    local limit, expiry, cost = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
    local oldest = redis.call('lindex', KEYS[i], -1)
    while oldest and tonumber(oldest) < now - expiry do
        redis.call('rpop', KEYS[i])
        oldest = redis.call('lindex', KEYS[i], -1)
    end
    counts[i] = redis.call('llen', KEYS[i])
    oldests[i] = oldest
    if over == 0 and counts[i] + cost > limit then over = i - 2 end
end
if over == 0 then
    for i = 3, #KEYS do
        local base = 6 + (i - 3) * 3
        local limit, expiry, cost = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
        for j = 1, cost, 5000 do
            local batch = {}
            for k = j, math.min(j + 4999, cost) do batch[#batch + 1] = now end
            redis.call('lpush', KEYS[i], unpack(batch))
        end
        redis.call('ltrim', KEYS[i], 0, limit - 1)
        redis.call('expire', KEYS[i], expiry)
        counts[i] = math.min(counts[i] + cost, limit)
        oldests[i] = redis.call('lindex', KEYS[i], -1)
    end
end
local result = {over == 0 and 1 or 0, epoch, counter, over}
for i = 3, #KEYS do
    result[#result + 1] = oldests[i] or tostring(now)
    result[#result + 1] = counts[i]
end
return result
"""
STRATEGY = "quiver-moving-window"


class MovingWindowWithStats(MovingWindowRateLimiter):
    """The moving window, whose window stats for this request's headers are those `admit` read."""

    def get_window_stats(self, item, *identifiers: str) -> WindowStats:
        windows = g.get("rate_limit_windows", {}) if has_request_context() else {}
        return windows.get(item.key_for(*identifiers)) or super().get_window_stats(item, *identifiers)


STRATEGIES[STRATEGY] = MovingWindowWithStats


@dataclass
class AppliedLimit:
    """One limit on this request: what it is, the key parts of its window, what it costs."""

    limit: RateLimitItem
    args: list[str]
    cost: int
    shared: bool
    error_message = None


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> tuple:
    return tuple(sorted(parse_many(text)))


def _applied(row, settings: Settings, charge_key: bool) -> list[AppliedLimit]:
    """The limits this request answers to: its key's (unless a batch already paid) and its
    route's group or own limit."""
    if not settings.ratelimit_enabled:
        return []
    applied = []
    who = f"key:{row.id}"
    if charge_key:
        cost = _cost()
        applied += [AppliedLimit(item, ["quiver", who, "global"], cost, True)
                    for item in _parsed(row.rate_limit or settings.ratelimit_default)]
    group = _group()
    if group is not None:
        applied += [AppliedLimit(item, ["quiver", who, request.endpoint], 1, False)
                    for item in _parsed(settings.ratelimit_groups.get(group, group))]
    return applied


def admit(row, settings: Settings, marker: tuple[str, str, str] | None, charge_key: bool) -> str:
    """Take this request's rate-limit slots and compare its key's marker, in one Redis call.

    `marker` is (Redis key, epoch, counter) of a key this process remembered, else None.
    Returns "admitted"; "stale" when the marker moved (nothing was taken: read the key
    again and call again); or "unreachable" when Redis did not answer (limits let the
    request through). Raises `RateLimitExceeded` when a limit is full.
    """
    applied = _applied(row, settings, charge_key)
    if not applied and marker is None:
        return "admitted"
    limiter = current_app.extensions["quiver_limiter"]
    windows = [limiter.limiter.storage.prefixed_key(lim.limit.key_for(*lim.args))
               for lim in applied]  # (no storage when limits are off: then none apply)
    name, epoch, counter = marker or ("quiver:key:-", "", "")
    argv = [time.time(), "1" if marker else "0", epoch, counter, keys.new_epoch()]
    for lim in applied:
        argv += [lim.limit.amount, lim.limit.get_expiry(), lim.cost]
    try:
        client = redis_conn.client()
        result = _script(client)(keys=[keys.EPOCH, name, *windows], args=argv, client=client)
    except keys.REDIS_DOWN as exc:
        metrics.redis_error("rate_limit")
        log.warning("rate limits not applied, Redis is unreachable: %s", exc)
        return "unreachable"
    status, over = int(result[0]), int(result[3])
    if status == -1:
        return "stale"
    stats = g.setdefault("rate_limit_windows", {})
    for index, lim in enumerate(applied):
        oldest, count = result[4 + 2 * index], int(result[5 + 2 * index])
        stats[lim.limit.key_for(*lim.args)] = WindowStats(
            float(oldest) + lim.limit.get_expiry(), max(0, lim.limit.amount - count))
    if applied:
        shown = applied[over - 1] if over else next((a for a in applied if not a.shared), applied[0])
        limiter.context.view_rate_limit = RequestLimit(limiter, shown.limit, shown.args,
                                                       bool(over), shown.shared)
    if over:
        raise RateLimitExceeded(applied[over - 1])
    return "admitted"


@functools.cache
def _script(client):
    """The registered script (loaded into Redis on first use, or again after a restart)."""
    return client.register_script(ADMIT)


class QuiverLimiter(Limiter):
    """flask-limiter without its own per-request check: `admit`, called by `api.auth`,
    evaluates the request's limits (flask-limiter still adds the headers and the 429)."""

    def _check_request_limit(self, callable_name=None, in_middleware=True) -> None:
        return None


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

    app.extensions["quiver_limiter"] = QuiverLimiter(
        key_func=_key,
        app=app,
        strategy=STRATEGY,
        storage_uri=redis_conn.storage_uri(settings),
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 2},
        headers_enabled=True,
        swallow_errors=True,
        key_prefix="quiver",
        enabled=settings.ratelimit_enabled,
    )
    return app.extensions["quiver_limiter"]


def _refused(error: RateLimitExceeded):
    """429 `RATE_LIMIT_EXCEEDED` in the error envelope, with `_breach_details`."""
    group = "key" if error.limit.shared else _group()
    metrics.rate_limited(group if group == "key" or group in GROUPS else "custom")
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
