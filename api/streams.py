"""Server-Sent Events fan-out: one Redis subscription per web process, many streams.

Committed events are published on `quiver:events:<account>` (see
`services/events.py`). Each web process runs one `Hub` thread subscribed to
all of them, which hands every message to the queues of the streams open in
that process for that account. A stream therefore costs one thread (a gthread
worker thread) and a queue, not a Redis connection.

Messages from Redis may arrive out of commit order (they come from many
processes). The hub puts each account's events back in order once for all its
streams: a message that skips positions makes it read the missing events from
the log (one query per gap, not one per stream) and hand them over first; a
message it has already passed is dropped. Each event is also rendered as SSE
text once. Each stream then follows its account's log by position
(`LogFollower`): what it receives is normally the next position; anything else
(its own resume, a reset, a gap the hub could not fill) makes it read the log
from where it stands. When the subscription is lost (Redis restarts), events
published meanwhile never reach the hub, so once it is back every open stream
reads the log the same way. Every stream therefore sends each event once, in
commit order; what it cannot replay in full it answers with a `reset`.
"""

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import redis

from api import metrics, redis_conn
from api.services import events
from api.services.events import CHANNEL
from api.store import db

log = logging.getLogger("quiver.streams")

SHUTDOWN = object()
RESYNC = object()
RESET = 'data: {"type":"reset"}\n\n'
GAP_FILL_LIMIT = 1000  # a longer gap is left to each stream's own catch-up (or reset)


@dataclass(eq=False)
class Subscription:
    """One open stream: its account and the queue of messages the hub fills."""

    account_id: str
    messages: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=10000))
    overflowed: bool = False


def format_event(event: dict) -> str:
    """One event as an SSE message."""
    return f"id: {event['id']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


class LogFollower:
    """Where one stream stands in its account's event log, and what it sends next.

    `position` is the last position the stream has passed (sent, or filtered
    out). Every method returns the SSE messages to send, in commit order.
    """

    def __init__(self, account_id: str, accepts, replay_limit: int):
        self.account_id = account_id
        self.accepts = accepts
        self.replay_limit = replay_limit
        self.position = 0

    def start(self) -> list[str]:
        """Begin at the end of the log: only events committed from now on."""
        with db.connection_context():
            self.position = events.head(self.account_id)
        return []

    def resume(self, last_event_id: str) -> list[str]:
        """Replay what followed the event `last_event_id`; a reset when it is not in the log."""
        with db.connection_context():
            position = events.position_of(self.account_id, last_event_id)
        if position is None:
            return self._reset()
        self.position = position
        return self.catch_up()

    def catch_up(self) -> list[str]:
        """Send what the log holds after `position` (a reset when it is over the limit)."""
        with db.connection_context():
            rows = events.after(self.account_id, self.position, self.replay_limit + 1)
        if len(rows) > self.replay_limit:
            return self._reset()
        sent = []
        for row in rows:
            event = events.as_json(row)
            if self.accepts(event):
                sent.append(format_event(event))
            self.position = row.position
        return sent

    def live(self, message: list[dict]) -> list[str]:
        """Send a published message's events, reading the log first when one came before them."""
        sent = []
        for item in message:
            position = item["position"]
            if position > self.position + 1:
                sent += self.catch_up()  # it was committed, so the log holds all before it
            if position <= self.position:
                continue
            if self.accepts(item["event"]):
                sent.append(item.get("sse") or format_event(item["event"]))
            self.position = position
        return sent

    def _reset(self) -> list[str]:
        with db.connection_context():
            self.position = events.head(self.account_id)
        return [RESET]


class Hub:
    """The process's single Redis pattern subscription and the streams listening to it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.connected = threading.Event()
        self._dispatched: dict[str, int] = {}  # per account: the last position handed over

    def subscribe(self, account_id: str) -> Subscription:
        subscription = Subscription(account_id)
        with self._lock:
            self._subscriptions.setdefault(account_id, set()).add(subscription)
            metrics.stream_opened()
            if self._thread is None or not self._thread.is_alive():
                self._stopping.clear()
                self._thread = threading.Thread(target=self._run, name="sse-hub", daemon=True)
                self._thread.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            members = self._subscriptions.get(subscription.account_id)
            if members is not None and subscription in members:
                members.discard(subscription)
                metrics.stream_closed()
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
                    try:
                        subscription.messages.put_nowait(marker)
                    except queue.Full:
                        subscription.overflowed = True

    def _run(self) -> None:
        backoff = 0.5
        lost = False
        while not self._stopping.is_set():
            pubsub = None
            try:
                pubsub = redis_conn.client().pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(f"{CHANNEL}:*")
                if lost:
                    self._dispatched.clear()
                    self._broadcast(RESYNC)
                    lost = False
                self.connected.set()
                backoff = 0.5
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
            except (redis.RedisError, OSError) as exc:
                self.connected.clear()
                lost = True
                metrics.redis_error("subscription")
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
            self._dispatched.pop(account_id, None)
            return
        items = self._in_order(account_id, json.loads(message["data"]))
        if not items:
            return
        for subscription in members:
            try:
                subscription.messages.put_nowait(items)
            except queue.Full:
                subscription.overflowed = True

    def _in_order(self, account_id: str, items: list[dict]) -> list[dict]:
        """The message's events after what was handed over already, preceded by the ones it
        skipped (read from the log), each rendered as SSE text."""
        last = self._dispatched.get(account_id)
        if last is not None:
            gap = items[0]["position"] - last - 1
            if 0 < gap <= GAP_FILL_LIMIT:
                with db.connection_context():
                    missing = events.after(account_id, last, gap)
                items = [{"position": r.position, "event": events.as_json(r)} for r in missing] + items
            items = [item for item in items if item["position"] > last]
        for item in items:
            item["sse"] = format_event(item["event"])
        if items:
            self._dispatched[account_id] = items[-1]["position"]
        return items


hub = Hub()
