"""Records' JSON kept in each process, so `GET /{entity}/{id}` need not read the database.

An entry is served only while no write of its record has begun since it was read,
which each request checks against Redis in the call it already makes (the rate-limit
script, `api.rate_limit.admit`). Every record that a write changes or deletes has two
counters in Redis:

- `begun`, bumped by the write engine (`changing`) inside the transaction, before it
  commits;
- `done`, bumped once that transaction has ended (committed or rolled back).

A request reads both (with the Redis epoch) before it reads the row. Only when they
are equal (no write of the record in flight) is what it reads kept, tagged with them
(`tag`); an entry is served only to a request that finds the same epoch and both
counters still at its tag. So a write that began after the entry's counters were read
has moved `begun` past the tag, whether or not the entry's row was read before it
committed; and a write in flight when they were read kept the entry from being made.

Counters expire a day after their record's last write (a `begun` that a dead process
never matched with `done` keeps its record out of the cache until then). A counter
that Redis no longer has starts again from the current time in microseconds, above any
value it held before, so no old tag can match it again; a Redis that lost its data has
a new epoch. When Redis cannot be reached a request reads the database and this process
forgets every entry; a write whose `begun` could not be bumped still commits, so an
entry older than `RECORD_CACHE_SECONDS` is never served (that bounds how stale a record
can be, once Redis is back, in a process that made no Redis call during the outage).
`RECORD_CACHE_SIZE=0` turns the cache off (in that process: its writes still bump the
counters, as the RQ worker's do).
"""

import logging
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from api import metrics, redis_conn
from api.config import Settings
from api.services import keys
from api.store import after_transaction

log = logging.getLogger("quiver.record_cache")
COUNTER_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Entry:
    """A record's response as it was read under `tag`: its ETag and JSON body."""

    tag: tuple[str, str]
    etag: str
    body: bytes
    stored_at: float


_entries: dict[tuple[str, str, str], Entry] = {}
_limits = {"size": 0, "seconds": 0.0}
_storing = threading.Lock()


def configure(settings: Settings) -> None:
    """Size the cache (`RECORD_CACHE_SIZE` entries, `RECORD_CACHE_SECONDS` old at most); empty it."""
    _limits.update(size=settings.record_cache_size, seconds=settings.record_cache_seconds)
    forget_all()


def enabled() -> bool:
    """Whether records are cached at all."""
    return _limits["size"] > 0


def counters(record_id: str) -> tuple[str, str]:
    """The Redis keys of a record's `begun` and `done` counters."""
    return f"quiver:rec:{record_id}:b", f"quiver:rec:{record_id}:d"


def tag(epoch: str, begun: str | None, done: str | None) -> tuple[str, str] | None:
    """What an entry read now would be tagged with; None while a write of it is in flight."""
    begun, done = begun or "0", done or "0"
    return (epoch, done) if epoch and begun == done else None


def lookup(entity: str, account_id: str, record_id: str, current: tuple[str, str] | None
           ) -> Entry | None:
    """The entry of a record, if it was read under the `current` tag and is young enough."""
    entry = _entries.get((entity, account_id, record_id)) if current else None
    if entry is None or entry.tag != current:
        return None
    if time.monotonic() - entry.stored_at > _limits["seconds"]:
        return None
    return entry


def remember(entity: str, account_id: str, record_id: str, read_under: tuple[str, str],
             etag: str, body: bytes) -> None:
    """Keep a record's response, read after its counters showed `read_under`."""
    with _storing:
        if len(_entries) >= _limits["size"]:
            _entries.pop(next(iter(_entries), None), None)  # the oldest
        _entries[(entity, account_id, record_id)] = Entry(read_under, etag, body, time.monotonic())


_ahead: ContextVar[dict | None] = ContextVar("quiver_record_tags_ahead", default=None)


def read_tags(record_ids: list[str]) -> dict[str, tuple[str, str] | None]:
    """The current tags of records, in one Redis call (for a batch's run of GETs, whose
    sub-requests make none); empty when Redis cannot tell."""
    if not enabled() or not record_ids:
        return {}
    names = [name for record_id in record_ids for name in counters(record_id)]
    try:
        epoch, *values = redis_conn.client().mget([keys.EPOCH, *names])
    except keys.REDIS_DOWN:
        metrics.redis_error("record_cache")
        forget_all()
        return {}
    if epoch is None:
        return {}
    return {record_id: tag(epoch.decode(), *(v and v.decode() for v in values[2 * i:2 * i + 2]))
            for i, record_id in enumerate(record_ids)}


@contextmanager
def tags_ahead(tags: dict):
    """Let `tag_ahead` answer with `tags` (from `read_tags`) while the block runs."""
    token = _ahead.set(tags)
    try:
        yield
    finally:
        _ahead.reset(token)


def tag_ahead(record_id: str) -> tuple[str, str] | None:
    """The tag read ahead for a record (see `tags_ahead`), if any."""
    tags = _ahead.get()
    return tags.get(record_id) if tags else None


def forget_all() -> None:
    """Drop every entry (Redis could not be reached: writes in the meantime went unseen)."""
    with _storing:  # (not while `remember` looks for the oldest)
        _entries.clear()


def changing(record_ids: list[str]) -> None:
    """Bump the `begun` counter of records the current transaction is about to change or
    delete, and their `done` counter once it has ended. Every process that writes does
    this, whether it caches or not (an RQ worker, a web process with the cache off):
    the web processes that cache must hear of its writes."""
    if not record_ids:
        return
    try:
        _bump(record_ids, 0)
    except keys.REDIS_DOWN as exc:
        metrics.redis_error("record_cache")
        log.warning("record cache counters not bumped, Redis is unreachable: %s", exc)
        return
    after_transaction(lambda: _finish(record_ids))


def _finish(record_ids: list[str]) -> None:
    try:
        _bump(record_ids, 1)
    except keys.REDIS_DOWN as exc:  # the records stay out of the cache until the counters expire
        metrics.redis_error("record_cache")
        log.warning("record cache counters not settled, Redis is unreachable: %s", exc)


def _bump(record_ids: list[str], which: int) -> None:
    """Increment counter `which` (0 `begun`, 1 `done`) of each record, in one round trip; a
    counter Redis lacks starts from the current time in microseconds."""
    start = time.time_ns() // 1000
    pipe = redis_conn.client().pipeline(transaction=False)
    for record_id in record_ids:
        names = counters(record_id)
        for name in names:
            pipe.set(name, start, nx=True, ex=COUNTER_SECONDS)
        pipe.incr(names[which])
        pipe.expire(names[which], COUNTER_SECONDS)
    pipe.execute()
