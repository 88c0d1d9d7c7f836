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
from collections.abc import Iterable
from types import TracebackType
from typing import Generic, TypeAlias, TypeVar

from gwapi.v1 import admin_pb2, telemetry_pb2

__all__ = ["DEFAULT_QUEUE_SIZE", "AuditHub", "Hub", "Subscription", "UsageHub"]

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
