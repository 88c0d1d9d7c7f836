"""In-memory fan-out of committed events to live streams: the usage events ingest just stored
(``TailLogs --follow``, ``StreamStats``) and the admin changes the audit feed read
(``TailAudit --follow``). One :class:`Hub` per kind of event (:data:`UsageHub`,
:data:`AuditHub`), held by :class:`~controlplane.services.state.AppState`.

Each subscriber has a bounded queue. A slow subscriber never slows the publisher: when its queue
is full the oldest event is dropped and counted (:attr:`Subscription.dropped`). Everything runs
on the event loop thread; ``publish`` never awaits. ``None`` in a queue marks the hub's close
(server shutdown).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from types import TracebackType
from typing import Generic, TypeAlias, TypeVar

from gwapi.v1 import admin_pb2, telemetry_pb2

__all__ = ["DEFAULT_QUEUE_SIZE", "AuditHub", "Hub", "Subscription", "Tail", "UsageHub"]

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000
E = TypeVar("E")


class Subscription(Generic[E]):
    """One follower's bounded queue; use as ``with hub.subscribe() as sub``."""

    def __init__(self, hub: Hub[E], maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[E | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, item: E | None) -> None:
        if self._queue.full():  # a stalled follower never blocks the publisher
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def get(self) -> E | None:
        """The next event, or ``None`` once the hub is closed."""
        return await self._queue.get()

    def close(self) -> None:
        self._hub._subscribers.discard(self)

    def __enter__(self) -> Subscription[E]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Hub(Generic[E]):
    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._subscribers: set[Subscription[E]] = set()
        self._queue_size = queue_size
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription[E]:
        sub = Subscription(self, self._queue_size)
        if self._closed:
            sub._offer(None)
        else:
            self._subscribers.add(sub)
        return sub

    def publish(self, events: Iterable[E]) -> None:
        batch = list(events)
        for sub in list(self._subscribers):
            for ev in batch:
                sub._offer(ev)

    def close(self) -> None:
        """End every live stream (server shutdown)."""
        self._closed = True
        for sub in list(self._subscribers):
            sub._offer(None)
        self._subscribers.clear()


# Usage events as ingest stores them (TailLogs followers, StreamStats).
UsageHub: TypeAlias = Hub[telemetry_pb2.UsageEvent]
# Committed admin changes, fed by the fleet's audit feed (TailAudit followers).
AuditHub: TypeAlias = Hub[admin_pb2.AuditEvent]


class Tail(Generic[E]):
    """A tail's events: the history it is given, then (with ``follow``) every event the hub
    publishes that ``wanted`` keeps, until the hub closes. ``TailLogs`` and ``TailAudit`` serve it.

    Use as ``with Tail(...) as tail: tail.seed(await read_history()); async for ev in tail``.
    The subscription starts when the tail is made, *before* the history is read, so an event
    published in between is neither lost nor sent twice (``key`` identifies an event). Leaving
    the ``with`` block ends the subscription and logs a follower that was too slow for its queue
    (``what`` names it).

    Why an iterator object and not an async generator: the handler that uses it is itself the
    gRPC stream's generator, and a generator nested in it is only closed when it is collected
    (or explicitly, with ``aclosing``); this object holds no frame, so ending the handler ends
    the subscription then and there, as the handler's own loop did.
    """

    def __init__(
        self,
        hub: Hub[E],
        follow: bool,
        key: Callable[[E], Hashable],
        wanted: Callable[[E], bool],
        what: str,
    ) -> None:
        self._sub = hub.subscribe() if follow else None
        self._key = key
        self._wanted = wanted
        self._what = what
        self._sent: set[Hashable] = set()
        self._history: deque[E] = deque()

    def seed(self, history: Iterable[E]) -> None:
        """The events to send first, oldest first."""
        for ev in history:
            self._sent.add(self._key(ev))
            self._history.append(ev)

    def __aiter__(self) -> Tail[E]:
        return self

    async def __anext__(self) -> E:
        if self._history:
            return self._history.popleft()
        if self._sub is None:
            raise StopAsyncIteration
        while True:
            live = await self._sub.get()
            if live is None:  # server shutting down
                raise StopAsyncIteration
            if self._key(live) not in self._sent and self._wanted(live):
                return live

    def __enter__(self) -> Tail[E]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sub is not None:
            if self._sub.dropped:
                log.warning("%s was too slow: %d events skipped", self._what, self._sub.dropped)
            self._sub.close()
