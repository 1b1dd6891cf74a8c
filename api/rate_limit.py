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
and it returns the window shown in the response's headers. Hits drop off the window
as they age, so the script's cost does not grow with the limit. flask-limiter is the
configuration surface (limit strings, `RATELIMIT_*`, its header names and
`Retry-After` format); its own per-request hooks are not installed: which windows a
request answers to is worked out once per key and route (`_windows`), and the headers
are written from the script's answer.
"""

import functools
import hashlib
import logging
import time
from dataclasses import dataclass

import redis
from flask import current_app, g, request
from flask_limiter import HeaderNames, Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse_many
from redis.exceptions import NoScriptError
from werkzeug.http import http_date

from api import metrics, redis_conn
from api.config import Settings
from api.errors import error_response
from api.routing import view_for_request
from api.services import keys, record_cache
from api.timeutil import format_rfc3339

GROUPS = ("batch", "bulk", "upload", "export")
log = logging.getLogger("quiver.rate_limit")


# limits' moving window (a list of hit timestamps per limit, newest first): hits past the
# window are dropped from the tail as they expire, so reading a window (oldest entry, count)
# and taking slots cost O(1) amortised, whatever the limit; a list never grows past its limit
# (slots are taken only when all fit, and a list's key names its limit). KEYS: the key
# epoch, the key's marker, the `begun` and `done` counters of the record the request reads
# (`api.services.record_cache`), then one list per limit; ARGV: now, whether to compare the
# marker, the epoch and counter expected, then limit, expiry, cost per limit. Returns {-1}
# when the marker moved (nothing taken), else {1 admitted | 0 refused, the first limit over
# (0: none), the epoch, the two counters ('' when absent), then oldest hit and count of
# every window}.
ADMIT = """
local now = tonumber(ARGV[1])
local state = redis.call('mget', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local epoch, counter = state[1], state[2] or '0'
if not epoch then
    local t = redis.call('time')
    epoch = t[1] .. '.' .. t[2]
    redis.call('set', KEYS[1], epoch)
end
if ARGV[2] == '1' and (epoch ~= ARGV[3] or counter ~= ARGV[4]) then
    return {-1}
end
local counts, oldests, over = {}, {}, 0
for i = 5, #KEYS do
    local base = 5 + (i - 5) * 3
    local limit, expiry, cost = tonumber(ARGV[base]), tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
    local oldest = redis.call('lindex', KEYS[i], -1)
    while oldest and tonumber(oldest) < now - expiry do
        redis.call('rpop', KEYS[i])
        oldest = redis.call('lindex', KEYS[i], -1)
    end
    counts[i] = redis.call('llen', KEYS[i])
    oldests[i] = oldest
    if over == 0 and counts[i] + cost > limit then over = i - 4 end
end
if over == 0 then
    for i = 5, #KEYS do
        local base = 5 + (i - 5) * 3
        local expiry, cost = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
        for j = 1, cost, 5000 do
            local batch = {}
            for k = j, math.min(j + 4999, cost) do batch[#batch + 1] = now end
            redis.call('lpush', KEYS[i], unpack(batch))
        end
        redis.call('expire', KEYS[i], expiry)
        counts[i] = counts[i] + cost
        oldests[i] = oldests[i] or ARGV[1]
    end
end
local result = {over == 0 and 1 or 0, over, epoch, state[3] or '', state[4] or ''}
for i = 5, #KEYS do
    result[#result + 1] = oldests[i] or ARGV[1]
    result[#result + 1] = counts[i]
end
return result
"""
NO_MARKER = "quiver:key:-"


@dataclass(frozen=True)
class Window:
    """One limit a request answers to, ready for the script: the limit, its window's Redis
    key (as flask-limiter would key it), and whether it is one of the key's own limits."""

    limit: RateLimitItem
    redis_key: str
    shared: bool
    error_message = None  # (flask-limiter's 429 reads it)

    @property
    def expiry(self) -> int:
        return self.limit.get_expiry()


@functools.lru_cache(maxsize=256)
def _parsed(text: str | None) -> tuple:
    return tuple(sorted(parse_many(text))) if text else ()


@functools.lru_cache(maxsize=4096)
def _windows(storage, key_id: str, key_limits: str | None, endpoint: str | None,
             route_limits: str | None) -> tuple[Window, ...]:
    """The windows of a request by key `key_id` to `endpoint`: its key's limits (None when a
    batch already paid them) and its route's (None when it has none)."""
    who = f"key:{key_id}"
    applied = [(item, ["quiver", who, "global"], True) for item in _parsed(key_limits)]
    applied += [(item, ["quiver", who, endpoint], False) for item in _parsed(route_limits)]
    return tuple(Window(item, storage.prefixed_key(item.key_for(*args)), shared)
                 for item, args, shared in applied)


def _applied(row, settings: Settings, charge_key: bool) -> tuple[Window, ...]:
    """The windows this request answers to (none when rate limiting is off)."""
    if not settings.ratelimit_enabled:
        return ()
    group = _group()
    storage = current_app.extensions["quiver_limiter"].limiter.storage
    key_limits = (row.rate_limit or settings.ratelimit_default) if charge_key else None
    route_limits = settings.ratelimit_groups.get(group, group) if group is not None else None
    return _windows(storage, row.id, key_limits, request.endpoint if route_limits else None,
                    route_limits)


def admit(row, settings: Settings, marker: tuple[str, str, str] | None, charge_key: bool,
          watch: str | None = None) -> str:
    """Take this request's rate-limit slots and compare its key's marker, in one Redis call.

    `marker` is (Redis key, epoch, counter) of a key this process remembered, else None.
    `watch` is the id of the record the request reads: the same call reads its change
    counters, and `g.record_tag` is then what the record, read now, would be cached under
    (`api.services.record_cache`). Returns "admitted"; "stale" when the marker moved
    (nothing was taken: read the key again and call again); or "unreachable" when Redis did
    not answer (limits let the request through). Raises `RateLimitExceeded` when a limit is full.
    """
    windows = _applied(row, settings, charge_key)
    if not windows and marker is None:
        return "admitted"
    name, epoch, counter = marker or (NO_MARKER, "", "")
    begun, done = record_cache.counters(watch) if watch else (NO_MARKER, NO_MARKER)
    cost = _cost() if charge_key else 1
    argv = [time.time(), "1" if marker else "0", epoch, counter]
    for window in windows:
        argv += (window.limit.amount, window.expiry, cost if window.shared else 1)
    try:
        result = _evaluate([keys.EPOCH, name, begun, done, *(w.redis_key for w in windows)], argv)
    except keys.REDIS_DOWN as exc:
        metrics.redis_error("rate_limit")
        log.warning("rate limits not applied, Redis is unreachable: %s", exc)
        return "unreachable"
    if result[0] == -1:
        return "stale"
    if watch:
        g.record_tag = record_cache.tag(*(value.decode() for value in result[2:5]))
    if windows:
        over = int(result[1])
        shown = over - 1 if over else next((i for i, w in enumerate(windows) if not w.shared), 0)
        window = windows[shown]
        oldest, count = float(result[5 + 2 * shown]), int(result[6 + 2 * shown])
        g.rate_limit = (window.limit.amount, max(0, window.limit.amount - count),
                        int(oldest + window.expiry + 1))
        if over:
            raise RateLimitExceeded(window)
    return "admitted"


ADMIT_SHA = hashlib.sha1(ADMIT.encode()).hexdigest()


def _evaluate(script_keys: list[str], argv: list) -> list:
    """Run `ADMIT` (loading it into a Redis that lacks it) on a fast connection; once more
    on another if the connection was closed under it (an idle one, after a Redis restart)."""
    for attempt in (1, 2):
        try:
            with redis_conn.fast_connection() as connection:
                try:
                    connection.send_command("EVALSHA", ADMIT_SHA, len(script_keys), *script_keys, *argv)
                    return connection.read_response()
                except NoScriptError:
                    connection.send_command("SCRIPT", "LOAD", ADMIT)
                    connection.read_response()
                    connection.send_command("EVALSHA", ADMIT_SHA, len(script_keys), *script_keys, *argv)
                    return connection.read_response()
        except redis.ConnectionError:
            if attempt == 2:
                raise


class QuiverLimiter(Limiter):
    """flask-limiter as the configuration surface, without its per-request hooks: `admit`,
    called by `api.auth`, evaluates the request's limits, and `write_headers` writes the headers."""

    def init_app(self, app) -> None:
        # flask-limiter installs its hooks only for an app it is not yet registered with
        app.extensions.setdefault("limiter", set()).add(self)
        super().init_app(app)

    def write_headers(self, response):
        """`X-RateLimit-*` (flask-limiter's names) of the window `admit` showed, and
        `Retry-After` (in flask-limiter's format) on a 429."""
        shown = g.get("rate_limit")
        if shown is None or not (self.enabled and self._headers_enabled and self._header_mapping):
            return response
        amount, remaining, reset_at = shown
        names = self._header_mapping
        response.headers[names[HeaderNames.LIMIT]] = str(amount)
        response.headers[names[HeaderNames.REMAINING]] = str(remaining)
        response.headers[names[HeaderNames.RESET]] = str(reset_at)
        if response.status_code == 429:
            response.headers[names[HeaderNames.RETRY_AFTER]] = (
                http_date(reset_at) if self._retry_after == "http-date"
                else str(max(0, int(reset_at - time.time()))))
        return response


def limited(group_or_limit: str):
    """Declare that a view also has a stricter limit: a group's (`"batch"`) or its own (`"10/minute"`)."""
    if group_or_limit not in GROUPS:
        parse_many(group_or_limit)

    def decorate(view):
        view.rate_limit_group = group_or_limit
        return view

    return decorate


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
    limiter = QuiverLimiter(
        key_func=lambda: f"key:{g.api_key.id}",
        app=app,
        strategy="moving-window",
        storage_uri=redis_conn.storage_uri(settings),
        storage_options={"socket_connect_timeout": 1, "socket_timeout": 2},
        headers_enabled=True,
        swallow_errors=True,
        key_prefix="quiver",
        enabled=settings.ratelimit_enabled,
    )
    app.after_request(limiter.write_headers)
    app.extensions["quiver_limiter"] = limiter
    return limiter


def _refused(error: RateLimitExceeded):
    """429 `RATE_LIMIT_EXCEEDED` in the error envelope, with `_breach_details`."""
    group = "key" if error.limit.shared else _group()
    metrics.rate_limited(group if group == "key" or group in GROUPS else "custom")
    return error_response(429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded.", _breach_details(error))


def _breach_details(error: RateLimitExceeded) -> dict:
    """`details` for a 429: the limit that was hit and when it resets."""
    reset_at = format_rfc3339(_utc(g.rate_limit[2])) if "rate_limit" in g else None
    return {"limit": str(error.limit.limit), "resetAt": reset_at}


def _utc(timestamp: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)
