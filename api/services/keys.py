"""API key secrets and their lookup: keys are stored only as SHA-256 hashes, found by their
visible prefix and compared in constant time. `api.auth` does the HTTP side (headers, scopes).

Each process remembers the keys it has read (`recall`, `learn`), so a request does not
read its key from the database. What keeps that safe is a marker per key in Redis: a
counter that every change of the key (revocation, above all) bumps after writing the
database (`announce_change`), plus an epoch that a Redis which lost its data sets
anew. A remembered key carries the epoch and counter it was read under; every request
compares them with Redis's in the same call that takes its rate-limit hits
(`api.rate_limit.admit`), and a key whose marker moved is read again. When Redis cannot
be reached, every request reads its key from the database.
"""

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

import redis

from api import redis_conn
from api.models import ApiKey
from api.store import db, fetch_models
from api.timeutil import utcnow

SCOPES = ("read", "write", "admin")
KEY_PREFIX = "sk_"
VISIBLE_PREFIX_LENGTH = 12


def generate_key() -> str:
    """A new secret key: `sk_` + 43 url-safe random characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def visible_prefix(key: str) -> str:
    """The part of a key that may be shown and logged (`sk_AbCdEfGhI`)."""
    return key[:VISIBLE_PREFIX_LENGTH]


def find(key: str) -> ApiKey | None:
    """The stored key (revoked or not) whose secret is `key`, or None."""
    presented = hash_key(key)
    candidates = fetch_models(ApiKey, f'"prefix" = {db.param}', (visible_prefix(key),), prepared=True)
    return next((k for k in candidates if hmac.compare_digest(k.key_hash, presented)), None)


def touch(key: ApiKey, interval_seconds: int) -> None:
    """Record that `key` was used now, unless that was recorded less than `interval_seconds` ago."""
    now = utcnow()
    interval = timedelta(seconds=interval_seconds)
    if key.last_used_at is None or key.last_used_at < now - interval:
        stale = ApiKey.last_used_at.is_null() | (ApiKey.last_used_at < now - interval)
        ApiKey.update(last_used_at=now).where((ApiKey.id == key.id) & stale).execute()
        key.last_used_at = now


EPOCH = "quiver:keys:epoch"
REMEMBERED_AT_MOST = 10_000
REDIS_DOWN = (redis.RedisError, OSError)


@dataclass(frozen=True)
class Known:
    """A key as this process read it: its row, and the Redis epoch and marker counter it was
    read under (`epoch` is empty when Redis could not be asked: such a key is never kept)."""

    row: ApiKey
    marker: str
    epoch: str
    generation: str


_known: dict[str, Known] = {}


def marker_of(key_hash: str) -> str:
    """The Redis key of a key's change counter."""
    return f"quiver:key:{key_hash[:32]}"


def new_epoch() -> str:
    """A value for the epoch, should Redis have none (it lost its data, or is new)."""
    return uuid.uuid4().hex


def recall(key: str) -> Known | None:
    """The key as this process last read it, if it remembers it."""
    return _known.get(hash_key(key))


def learn(key: str) -> Known | None:
    """Read the key from the database (its marker first), and remember it if Redis answered.

    Reading the marker before the row means a change that lands in between leaves the
    row fresh or the marker stale: either way the next comparison is right.
    """
    digest = hash_key(key)
    marker = marker_of(digest)
    try:
        client = redis_conn.client()
        epoch, generation = client.mget(EPOCH, marker)
        if epoch is None:  # a new or emptied Redis: this process starts its epoch
            client.set(EPOCH, new_epoch(), nx=True)
            epoch = client.get(EPOCH)
    except REDIS_DOWN:
        epoch = generation = None
    row = find(key)
    if row is None:
        return None
    known = Known(row, marker, (epoch or b"").decode(), (generation or b"0").decode())
    if known.epoch:
        if len(_known) >= REMEMBERED_AT_MOST:
            _known.clear()
        _known[digest] = known
    return known


def forget(key: str) -> None:
    """Drop what this process remembers of the key."""
    _known.pop(hash_key(key), None)


def forget_all() -> None:
    """Drop every remembered key (Redis could not be reached: its markers may be missed)."""
    _known.clear()


def announce_change(row: ApiKey) -> None:
    """Tell every process the key changed (after the database has): bump its marker.

    Raises when Redis cannot be reached, so the change is not reported done before every
    process will see it (the database already has it; saying it again bumps again).
    """
    redis_conn.client().incr(marker_of(row.key_hash))


def is_revoked(key_id: str) -> bool:
    """True when the key was revoked (or is gone); on a connection of its own, for work
    outside a request (a stream's periodic check)."""
    with db.connection_context():
        key = ApiKey.get_or_none(ApiKey.id == key_id)
        return key is None or key.revoked_at is not None
