"""In-memory fan-out of freshly ingested usage events to live ``TailLogs --follow`` streams.

Each subscriber has a bounded queue. A slow subscriber never slows ingest: when its queue is full
the oldest event is dropped and counted (``Subscription.dropped``). Everything runs on the event
loop thread; ``publish`` never awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType

from gwapi.v1 import telemetry_pb2 as tpb

DEFAULT_QUEUE_SIZE = 1000


class Subscription:
    def __init__(self, hub: UsageHub, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[tpb.UsageEvent | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, item: tpb.UsageEvent | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    async def get(self) -> tpb.UsageEvent | None:
        """The next event, or ``None`` once the hub is closed."""
        return await self._queue.get()

    def close(self) -> None:
        self._hub._subscribers.discard(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class UsageHub:
    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._queue_size)
        if self._closed:
            sub._offer(None)
        else:
            self._subscribers.add(sub)
        return sub

    def publish(self, events: Iterable[tpb.UsageEvent]) -> None:
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
