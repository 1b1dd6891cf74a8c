"""UTC timestamps: stored naive in UTC at millisecond precision, shown as RFC 3339 with `Z`."""

import functools
import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?(?:[Zz]|[+-]\d{2}:\d{2})?$")


def utcnow() -> datetime:
    """The current time, naive UTC, truncated to milliseconds."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_utc(value: datetime) -> datetime:
    """An aware or naive-UTC datetime as naive UTC, truncated to milliseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@functools.lru_cache(maxsize=4096)
def format_rfc3339(value: datetime | None) -> str | None:
    """`2025-01-15T10:00:00.123Z` for a naive-UTC datetime (None stays None).

    Cached: the rows of a bulk write, and many rows of a page, share their timestamps.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into naive UTC; ValueError if not one.

    A plain date or a timestamp without an offset is taken as UTC.
    """
    if not isinstance(text, str) or not _RFC3339.match(text):
        raise ValueError("Not a valid datetime.")
    value = datetime.fromisoformat(text.replace("z", "Z"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return to_utc(value)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("Not a valid datetime.") from exc
