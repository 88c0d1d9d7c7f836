"""The whole fleet's audit events and usage, into this replica's live streams.

:class:`AuditFeed` is the only source of :class:`~controlplane.fanout.AuditHub` (TailAudit): woken
by an ``audit`` notice (any replica's, this one's included) or every ``poll_s``, it reads the
rows committed since its last id, in id order, and publishes them. Ids are assigned at insert
but rows become visible at commit, so on PostgreSQL a lower id can appear after a higher one:
ids skipped over are remembered for ``hole_ttl_s`` and read again at every wake-up, then given
up (a rolled-back insert leaves a hole forever). So: no gaps (beyond ``hole_ttl_s`` of commit
delay), no duplicates (each id is published once), one indexed range query per wake-up (audit
rows are admin changes: few, so they are read whether or not a follower is connected).

:class:`UsageFeed` brings *other* replicas' ingest (a ``usage`` notice names the stored request
ids; this replica's own events were handed over by ingest itself): it reads those rows by
primary key, in chunks, coalescing the notices that arrive while a read runs, and hands the
events (without logged bodies) to ``on_events`` (TailLogs hub, StreamStats, alerts on the
leader, the spend refresh). At most ``max_pending`` ids wait; beyond that the oldest are dropped
and counted (a replica that cannot keep up skips live events, never the ledger).

It remembers the request ids it handed over, and those of its own ingest (:meth:`remember`),
for ``recent_s`` (at most ``max_recent`` of them). A *resync* with ``since_ms`` (the bus was
down: notices may have been lost) reads the rows received since then, less
``RESYNC_MARGIN_MS`` — but no further back than it remembers, so nothing is sent twice —
bounded by the ``time_ms`` index to events that started at most ``RESYNC_LOOKBACK_MS`` earlier
and by ``max_pending`` rows, and hands over those it has not seen: live streams have no gap for
an interruption shorter than ``recent_s``. It also refreshes spend.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable

from sqlalchemy import func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from controlplane import audit_log
from controlplane.fanout import AuditHub
from controlplane.fleet.bus import Notice
from controlplane.store.db import Database
from controlplane.store.models.admin import AuditRow
from controlplane.store.models.usage import UsageEventRow
from controlplane.usage.events import EVENT_COLUMNS, event_from_tuple
from controlplane.usage.upsert import pg_any_of
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import telemetry_pb2 as tpb
from gwcommon.tasks import cancel_and_wait

log = logging.getLogger(__name__)

POLL_S = 5.0
HOLE_TTL_S = 60.0
MAX_HOLES = 1000
READ_BATCH = 500
MAX_PENDING = 100_000
MAX_RECENT = 100_000
RECENT_S = 60.0
RESYNC_MARGIN_MS = 5_000
RESYNC_LOOKBACK_MS = 600_000


def _newest_audit_id(s: Session) -> int:
    return int(s.exec(select(func.max(AuditRow.id))).one() or 0)


def read_audit(
    s: Session, after: int, holes: list[int], limit: int = READ_BATCH
) -> list[apb.AuditEvent]:
    """Rows with ``id > after`` (at most ``limit``) or whose id is in ``holes``, by id."""
    cond = col(AuditRow.id) > after
    if holes:
        cond = or_(cond, col(AuditRow.id).in_(holes))
    rows = s.exec(select(AuditRow).where(cond).order_by(col(AuditRow.id)).limit(limit)).all()
    return [audit_log.to_event(r) for r in rows]


class Woken:
    """A task that runs ``step`` whenever woken, and every ``poll_s`` (None: only when woken)."""

    def __init__(self, name: str, poll_s: float | None) -> None:
        self._name = name
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.steps = 0

    def wake(self, _notice: Notice | None = None) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):  # not wait_for: see gwcommon.tasks
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.step()
                self.steps += 1
            except Exception:
                log.exception("%s failed; will retry at the next wake-up", self._name)
                await asyncio.sleep(1.0)  # a database outage: do not spin

    async def step(self) -> None:
        raise NotImplementedError


class AuditFeed(Woken):
    def __init__(
        self,
        db: Database,
        hub: AuditHub,
        *,
        poll_s: float = POLL_S,
        hole_ttl_s: float = HOLE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("audit-feed", poll_s)
        self._db = db
        self._hub = hub
        self._hole_ttl_s = hole_ttl_s
        self._clock = clock
        self.last_id = 0
        self.holes: dict[int, float] = {}  # id -> when first skipped
        self.published = 0

    async def start(self) -> None:
        self.last_id = await self._db.read(_newest_audit_id)
        await super().start()

    async def step(self) -> None:
        # Rows are read even with no follower connected: skipping ahead to the newest id could
        # pass over a lower id still being committed, which a follower joining now would miss.
        now = self._clock()
        for hole in [h for h, since in self.holes.items() if now - since > self._hole_ttl_s]:
            del self.holes[hole]
        while True:
            holes = sorted(self.holes)
            after = self.last_id
            events = await self._db.read(functools.partial(read_audit, after=after, holes=holes))
            fresh = [ev for ev in events if ev.id > after or ev.id in self.holes]
            for ev in fresh:
                self.holes.pop(ev.id, None)
                if ev.id > self.last_id:
                    for missing in range(self.last_id + 1, ev.id):
                        if len(self.holes) < MAX_HOLES:
                            self.holes[missing] = now
                    self.last_id = ev.id
            self._hub.publish(fresh)
            self.published += len(fresh)
            if len([ev for ev in events if ev.id > after]) < READ_BATCH:
                return


def read_usage(s: Session, ids: list[str]) -> list[tpb.UsageEvent]:
    """Every other replica's event passes here: the event columns as plain tuples
    (:func:`event_from_tuple`), the ids as one JSON parameter on PostgreSQL (one statement text
    whatever the count, so the driver prepares it once; an ``IN`` list of bound ids was rendered
    and parsed anew for every batch)."""
    table = UsageEventRow.__table__  # type: ignore[attr-defined]
    stmt = sa_select(*(table.c[name] for name in EVENT_COLUMNS))
    if s.get_bind().dialect.name == "postgresql":
        stmt = stmt.where(pg_any_of("request_id", ids))
    else:
        stmt = stmt.where(table.c.request_id.in_(ids))
    return [event_from_tuple(r) for r in s.execute(stmt).all()]


def received_since(s: Session, since_ms: int, limit: int) -> list[str]:
    """Request ids received since ``since_ms`` (events started at most the lookback before)."""
    q = (
        select(UsageEventRow.request_id)
        .where(
            col(UsageEventRow.time_ms) >= since_ms - RESYNC_LOOKBACK_MS,
            col(UsageEventRow.received_at_ms) >= since_ms,
        )
        .order_by(col(UsageEventRow.received_at_ms))
        .limit(limit)
    )
    return list(s.exec(q).all())


class UsageFeed(Woken):
    def __init__(
        self,
        db: Database,
        on_events: Callable[[list[tpb.UsageEvent]], None],
        on_resync: Callable[[], None],
        *,
        max_pending: int = MAX_PENDING,
        max_recent: int = MAX_RECENT,
        recent_s: float = RECENT_S,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        super().__init__("usage-feed", None)
        self._db = db
        self._on_events = on_events
        self._on_resync = on_resync
        self._pending: deque[str] = deque()
        self._max_pending = max_pending
        self._recent: dict[str, int] = {}  # id -> wall ms seen; insertion-ordered, oldest first
        self._max_recent = max_recent
        self._recent_ms = int(recent_s * 1000)
        self._wall_ms = wall_ms
        self.remembers_since_ms = wall_ms()  # a catch-up reaches no further back
        self._catch_up_since = 0
        self.dropped = 0
        self.received = 0
        self.caught_up = 0  # events handed over by resyncs

    def remember(self, events: Iterable[tpb.UsageEvent]) -> None:
        """This replica's own ingest (already handed over by ingest itself)."""
        self._seen(ev.request_id for ev in events)

    def _seen(self, ids: Iterable[str]) -> None:
        recent, now = self._recent, self._wall_ms()
        for rid in ids:
            recent.pop(rid, None)
            recent[rid] = now
        cutoff = now - self._recent_ms
        while recent:
            rid = next(iter(recent))
            seen = recent[rid]
            if seen >= cutoff and len(recent) <= self._max_recent:
                break
            del recent[rid]
            self.remembers_since_ms = max(self.remembers_since_ms, seen + 1)

    def notify(self, notice: Notice) -> None:
        """Another replica's ``usage`` notice, or a resync."""
        if notice.resync:
            self._on_resync()
            if notice.since_ms:
                self._catch_up_since = notice.since_ms - RESYNC_MARGIN_MS
                self.wake()
            return
        self._pending.extend(notice.ids)
        over = len(self._pending) - self._max_pending
        if over > 0:
            for _ in range(over):
                self._pending.popleft()
            self.dropped += over
            log.warning("usage feed is behind: %d live events of other replicas skipped", over)
        self.wake()

    async def step(self) -> None:
        if self._catch_up_since:
            since, self._catch_up_since = self._catch_up_since, 0
            if since < self.remembers_since_ms:
                log.warning(
                    "fleet bus was interrupted for longer than the usage feed remembers: "
                    "live logs and stats lack other replicas' events of %.0f s",
                    (self.remembers_since_ms - since) / 1000,
                )
                since = self.remembers_since_ms
            ids = await self._db.read(
                functools.partial(received_since, since_ms=since, limit=self._max_pending)
            )
            missed = [rid for rid in ids if rid not in self._recent]
            log.info(
                "fleet bus resynchronised: %d usage events of other replicas caught up", len(missed)
            )
            self._pending.extendleft(reversed(missed))
            self.caught_up += len(missed)
        while self._pending:
            n = min(READ_BATCH, len(self._pending))
            ids = [self._pending.popleft() for _ in range(n)]
            events = await self._db.read(functools.partial(read_usage, ids=ids))
            self._seen(ids)
            self.received += len(events)
            if events:
                self._on_events(events)
