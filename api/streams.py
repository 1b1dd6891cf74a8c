"""Server-Sent Events fan-out: one Redis subscription per web process, many streams.

Committed events are published on `quiver:events:<account>` (see
`services/events.py`). Each web process runs one `Hub` thread subscribed to
all of them, which hands every message to the queues of the streams open in
that process for that account. A stream therefore costs one thread (a gthread
worker thread) and a queue, not a Redis connection. When the subscription is
lost (Redis restarts), events published meanwhile never reach the hub, so once
it is back every open stream re-reads the event log from shortly before the
outage and sends what it has not sent yet: open streams stay exactly-once.
"""

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis

from api import redis_conn
from api.services.events import CHANNEL
from api.timeutil import utcnow

log = logging.getLogger("quiver.streams")

SHUTDOWN = object()
RESYNC_MARGIN = timedelta(seconds=5)


@dataclass(frozen=True)
class Resync:
    """Put into open streams after an outage: re-read the event log from `since`."""

    since: datetime


@dataclass(eq=False)
class Subscription:
    """One open stream: its account, its filter and the queue the hub fills."""

    account_id: str
    accepts: callable
    messages: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=10000))
    overflowed: bool = False


class Hub:
    """The process's single Redis pattern subscription and the streams listening to it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.connected = threading.Event()

    def subscribe(self, account_id: str, accepts) -> Subscription:
        subscription = Subscription(account_id, accepts)
        with self._lock:
            self._subscriptions.setdefault(account_id, set()).add(subscription)
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="sse-hub", daemon=True)
                self._thread.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            members = self._subscriptions.get(subscription.account_id)
            if members is not None:
                members.discard(subscription)
                if not members:
                    del self._subscriptions[subscription.account_id]

    @property
    def open_streams(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscriptions.values())

    def shutdown(self) -> None:
        """End every open stream now (graceful server shutdown)."""
        self._stopping.set()
        self._broadcast(SHUTDOWN)

    def _broadcast(self, marker) -> None:
        with self._lock:
            for members in self._subscriptions.values():
                for subscription in members:
                    subscription.messages.put_nowait(marker)

    def _run(self) -> None:
        backoff = 0.5
        lost_at = None
        while not self._stopping.is_set():
            pubsub = None
            try:
                pubsub = redis_conn.client().pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(f"{CHANNEL}:*")
                if lost_at is not None:
                    self._broadcast(Resync(lost_at - RESYNC_MARGIN))
                    lost_at = None
                self.connected.set()
                backoff = 0.5
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
            except (redis.RedisError, OSError) as exc:
                self.connected.clear()
                lost_at = lost_at or utcnow()
                log.warning("event subscription lost (%s); retrying in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)
            finally:
                if pubsub is not None:
                    pubsub.close()

    def _dispatch(self, message: dict) -> None:
        account_id = message["channel"].decode().rsplit(":", 1)[-1]
        with self._lock:
            members = list(self._subscriptions.get(account_id, ()))
        if not members:
            return
        for event in json.loads(message["data"]):
            for subscription in members:
                if subscription.accepts(event):
                    try:
                        subscription.messages.put_nowait(event)
                    except queue.Full:
                        subscription.overflowed = True


hub = Hub()
