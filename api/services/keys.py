"""API key secrets and their lookup: keys are stored only as SHA-256 hashes, found by their
visible prefix and compared in constant time. `api.auth` does the HTTP side (headers, scopes)."""

import hashlib
import hmac
import secrets
from datetime import timedelta

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
    candidates = fetch_models(ApiKey, f'"prefix" = {db.param}', (visible_prefix(key),))
    return next((k for k in candidates if hmac.compare_digest(k.key_hash, presented)), None)


def touch(key: ApiKey, interval_seconds: int) -> None:
    """Record that `key` was used now, unless that was recorded less than `interval_seconds` ago."""
    now = utcnow()
    interval = timedelta(seconds=interval_seconds)
    if key.last_used_at is None or key.last_used_at < now - interval:
        stale = ApiKey.last_used_at.is_null() | (ApiKey.last_used_at < now - interval)
        ApiKey.update(last_used_at=now).where((ApiKey.id == key.id) & stale).execute()


def is_revoked(key_id: str) -> bool:
    """True when the key was revoked (or is gone); on a connection of its own, for work
    outside a request (a stream's periodic check)."""
    with db.connection_context():
        key = ApiKey.get_or_none(ApiKey.id == key_id)
        return key is None or key.revoked_at is not None
