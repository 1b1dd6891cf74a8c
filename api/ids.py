"""Prefixed, time-sortable identifiers (`tsk_01J…`): a prefix and a monotonic ULID."""

import os
import threading
import time

from ulid import ULID

_lock = threading.Lock()
_last = (0, 0)


def _monotonic_ulid() -> ULID:
    """A ULID that sorts after every earlier one made by this process."""
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, randomness = last_millis, last_random + 1
        else:
            randomness = int.from_bytes(os.urandom(10), "big") >> 1
        _last = (millis, randomness)
    return ULID.from_bytes(millis.to_bytes(6, "big") + randomness.to_bytes(10, "big"))


def new_id(prefix: str) -> str:
    """A new id with `prefix`, e.g. `new_id("tsk")` → `tsk_01J…`."""
    return f"{prefix}_{_monotonic_ulid()}"
