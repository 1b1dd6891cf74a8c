"""The Redis connection: `REDIS_URL`, or the embedded server when it is unset.

Nothing connects (or starts the embedded server) until Redis is first used,
so the web process starts and CLI commands run even while Redis is down.
"""

import os
import threading
from functools import cache

import redis

from api import embedded_redis
from api.config import Settings

_settings: Settings | None = None


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
    """The process-wide Redis client (a connection pool, safe across threads)."""
    return redis.Redis.from_url(resolve_url(_settings), socket_connect_timeout=2,
                                socket_timeout=5, health_check_interval=30)


_own = threading.local()


def thread_connection() -> redis.connection.Connection:
    """This thread's own connection, kept for the thread's life, for the one call every
    request makes (`api.rate_limit.admit`): it skips the pool's locking, liveness poll and
    bookkeeping. A connection of an earlier client (the app was configured anew) is closed."""
    current = client()
    owner, connection = getattr(_own, "pair", (None, None))
    if owner is not current:
        if connection is not None:
            connection.disconnect()
        connection = current.connection_pool.make_connection()
        _own.pair = (current, connection)
    return connection
