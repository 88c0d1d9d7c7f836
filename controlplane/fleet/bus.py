"""The fleet bus contract, and its in-process form.

A bus delivers :class:`Notice` s to callbacks subscribed by topic, always on the event loop the
bus was started on, in the order they were received. A callback must return at once (it may
start a task); its exception is logged and does not stop delivery.

``own``: a subscriber says whether it also wants this replica's own announcements. Those whose
replica already acted on its own change (a mutation rebuilds the snapshot; a revocation forgets
the token; ingest publishes its events) subscribe with ``own=False``.

``resync`` notices (``ids`` empty) are delivered to every subscriber when announcements may have
been missed (the listening connection was re-established): "catch up with the database now";
``since_ms`` says since when (the last moment the previous connection was known to listen).

:class:`LocalBus` is the SQLite form: SQLite serves one control-plane replica by design (one
writer, a local file), so the fleet is this process and announcements are delivered after the
commit, in-process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from controlplane.fleet.topics import TOPICS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    topic: str
    origin: str  # the announcing replica's id
    ids: tuple[str, ...] = ()
    resync: bool = False
    since_ms: int = 0  # resync: notices sent after this wall time may be lost (0: none were)


Callback = Callable[[Notice], None]


class FleetBus:
    """Subscription and delivery shared by every bus; subclasses feed :meth:`deliver`."""

    kind = "abstract"

    def __init__(self) -> None:
        self.origin = secrets.token_hex(6)  # this replica, for the life of the process
        self._subs: dict[str, list[tuple[Callback, bool]]] = {t: [] for t in TOPICS}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.delivered = 0  # notices delivered (metrics, tests)

    def subscribe(self, topic: str, callback: Callback, *, own: bool = True) -> None:
        if topic not in self._subs:
            raise ValueError(f"unknown fleet topic {topic!r}")
        self._subs[topic].append((callback, own))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        self._loop = None

    def deliver(self, notice: Notice) -> None:
        """Hand ``notice`` to its subscribers (event loop thread)."""
        self.delivered += 1
        mine = notice.origin == self.origin and not notice.resync
        for callback, own in list(self._subs.get(notice.topic, ())):
            if mine and not own:
                continue
            try:
                callback(notice)
            except Exception:
                log.exception("fleet bus: %s subscriber failed", notice.topic)

    def resync(self, since_ms: int = 0) -> None:
        """Tell every subscriber to catch up with the database (event loop thread); notices
        sent after ``since_ms`` (wall clock, ms) may have been lost."""
        for topic in TOPICS:
            self.deliver(Notice(topic, self.origin, resync=True, since_ms=since_ms))

    def _deliver_threadsafe(self, notice: Notice) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.deliver, notice)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    # topics.Announcer
    def stage(self, session: Session, topics: dict[str, list[str]]) -> None:
        pass

    def committed(self, topics: dict[str, list[str]]) -> None:
        pass


class LocalBus(FleetBus):
    """In-process delivery after the commit (SQLite: a single replica)."""

    kind = "in-process"

    def committed(self, topics: dict[str, list[str]]) -> None:
        for topic, ids in topics.items():
            self._deliver_threadsafe(Notice(topic, self.origin, tuple(ids)))
