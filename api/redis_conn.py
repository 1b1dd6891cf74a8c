"""The Redis connection: `REDIS_URL`, or the embedded server when it is unset.

Nothing connects (or starts the embedded server) until Redis is first used,
so the web process starts and CLI commands run even while Redis is down.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import redis

from api import embedded_redis
from api.config import Settings

_settings: Settings | None = None
MAX_CONNECTIONS = 4096


def resolve_url(settings: Settings) -> str:
    """`REDIS_URL`, or the embedded server's URL (starting it when needed).

    The URL is written back to the environment so that forked workers and
    child processes use the same server.
    """
    if settings.redis_url:
        return settings.redis_url
    url = embedded_redis.ensure_running(settings.var_dir)
    os.environ["REDIS_URL"] = url
    return url


def storage_uri(settings: Settings) -> str:
    """The URL for libraries that take one (rate limits), without starting anything.

    For the embedded server this is its socket, which the web process's first
    use of Redis (or gunicorn's master, at start) brings up.
    """
    url = settings.redis_url or f"unix://{embedded_redis.socket_path(settings.var_dir)}"
    return "redis+" + url if url.startswith("unix://") else url


def configure(settings: Settings) -> None:
    """Remember the settings; the connection is made on first use."""
    global _settings
    _settings = settings
    client.cache_clear()


@cache
def client() -> redis.Redis:
    """The process-wide Redis client (a connection pool, safe across threads). The pool opens
    a connection for each thread using it at once, up to `MAX_CONNECTIONS` (redis-py's
    default cap, 100, is fewer than a web process's threads, `WEB_THREADS`)."""
    return redis.Redis.from_url(resolve_url(_settings), socket_connect_timeout=2,
                                socket_timeout=5, health_check_interval=30,
                                max_connections=MAX_CONNECTIONS)


_spare: tuple = (None, [])  # (the client they belong to, its idle fast connections)


@contextmanager
def fast_connection() -> Iterator[redis.connection.Connection]:
    """A connection for one short exchange, for the call every request makes
    (`api.rate_limit.admit`): taken from and given back to a list of idle ones kept beside
    the client's pool, which costs no lock, liveness poll or bookkeeping. There are as many
    as calls have run at once. A connection that saw an error is closed, not given back;
    one that lost its connection takes the idle ones with it."""
    global _spare
    current = client()
    owner, idle = _spare
    if owner is not current:  # the app was configured anew: the old ones go with their client
        idle = []
        _spare = (current, idle)
    try:
        connection = idle.pop()
    except IndexError:
        pool = current.connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
    try:
        yield connection
    except redis.ConnectionError:
        connection.disconnect()
        while idle:  # closed under it (Redis restarted, say): the idle ones likely are too
            idle.pop().disconnect()
        raise
    except BaseException:
        connection.disconnect()  # a reply may be half read
        raise
    idle.append(connection)
