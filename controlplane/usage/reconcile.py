"""Counting the usage events that ingest did not count: the ledger reconciler (once per fleet).

Why: ``usage_event.ledger_counted`` is true on every row this release inserts (ingest adds it to
``spend_total`` and the rollups in the same transaction). Rows are false when nobody has counted
them yet: rows stored before revision 0004 (an upgraded database: the first fill), and rows the
previous release inserts while replicas roll (it does not know the column; the server default
is false). Without this job budgets would undercount and usage views miss those events.

Contract of :func:`reconcile_batch`: in the caller's transaction, claims at most ``limit``
uncounted rows, newest first (the current day/week/month windows, which budgets enforce, are
complete first), with ``UPDATE … SET ledger_counted = true WHERE … AND NOT ledger_counted
RETURNING *``, and adds exactly the rows it flipped to the totals and rollups
(:func:`controlplane.usage.derived.apply`). Exactly once, whoever races: on PostgreSQL the
candidate rows are picked ``FOR UPDATE SKIP LOCKED`` (two reconcilers take disjoint rows) and
the outer ``NOT ledger_counted`` is re-checked on the newest row version after any wait, so a
row flipped by a committed transaction (another reconciler, a rebuild) is not returned again; on
SQLite the writer lock serialises the whole transaction. A rollback undoes the flip and the sums
together. Candidates come from the partial index ``ix_usage_event_uncounted`` (only uncounted
rows), so a batch costs the same whatever the size of the table.

Contract of :func:`catch_up`: batch after batch, each starting below the previous one's oldest
row (so a batch costs the same at the end of a large backlog as at its start), from the newest
row again whenever a progress line is due and when the region below is drained, until a batch
from the newest row comes back short. While a backlog larger than one batch drains it logs its
progress (counted, remaining, rate, time left, how far back the ledger is complete) every
``progress_s``, and once when done. ``on_counted`` (the snapshot's spend refresh) gets every
batch's rows after its commit. :func:`reconcile_forever` (the leader job) runs it, then again
every ``interval_s``; a failure is logged and retried.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from controlplane.store.db import Database
from controlplane.usage import derived

log = logging.getLogger(__name__)

BATCH = 5000
INTERVAL_S = 1.0
PROGRESS_S = 10.0
Rows = list[dict[str, Any]]
_TOP = 2**63 - 1

# PostgreSQL: the candidates as an array (an InitPlan) so the UPDATE finds them through the
# primary key; with ``IN (subquery)`` the planner, which cannot know how few rows are uncounted,
# may hash-join against a scan of the whole table.
_CLAIM_PG = text(
    """
UPDATE usage_event SET ledger_counted = true
WHERE request_id = ANY(ARRAY(
    SELECT request_id FROM usage_event WHERE NOT ledger_counted AND time_ms <= :below
    ORDER BY time_ms DESC LIMIT :limit FOR UPDATE SKIP LOCKED
)) AND NOT ledger_counted
RETURNING *
"""
)
_CLAIM_SQLITE = text(
    """
UPDATE usage_event SET ledger_counted = true
WHERE request_id IN (
    SELECT request_id FROM usage_event WHERE NOT ledger_counted AND time_ms <= :below
    ORDER BY time_ms DESC LIMIT :limit
) AND NOT ledger_counted
RETURNING *
"""
)


def reconcile_batch(
    s: Session, limit: int = BATCH, below: int | None = None, now: int | None = None
) -> Rows:
    """Claim and count up to ``limit`` uncounted rows with ``time_ms <= below`` (None: any), see
    the module's contract; returns them. ``below`` lets a backlog's next batch start where the
    previous one ended: claimed rows stay in the partial index (dead) until a vacuum, and a scan
    from the top would walk all of them again at every batch."""
    claim = _CLAIM_PG if s.get_bind().dialect.name == "postgresql" else _CLAIM_SQLITE
    params = {"limit": limit, "below": _TOP if below is None else below}
    rows = [dict(r) for r in s.execute(claim, params).mappings()]
    derived.apply(s, rows, now)
    return rows


def uncounted(s: Session) -> int:
    """How many rows wait to be counted (reads only the partial index's rows)."""
    return int(
        s.execute(text("SELECT count(*) FROM usage_event WHERE NOT ledger_counted")).scalar_one()
    )


def _utc(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


class Progress:
    """Log lines for draining a backlog (a clock is injectable for tests)."""

    def __init__(
        self, backlog: int, clock: Callable[[], float] = time.monotonic, every_s: float = PROGRESS_S
    ) -> None:
        self.backlog, self.clock, self.every_s = backlog, clock, every_s
        self.started = self.last = clock()
        self.counted = 0
        self.oldest: int | None = None  # newest first: everything after it is counted

    def add(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Count ``rows``; True when it logged (every ``every_s``)."""
        self.counted += len(rows)
        if rows:
            oldest = min(int(r["time_ms"]) for r in rows)
            self.oldest = oldest if self.oldest is None else min(self.oldest, oldest)
        now = self.clock()
        if now - self.last < self.every_s:
            return False
        self.last = now
        rate = self.counted / max(now - self.started, 1e-9)
        left = max(self.backlog - self.counted, 0)
        log.info(
            "ledger: counted %d of %d usage events not yet in the totals (%.0f/s, about %.0f s "
            "left); totals and rollups are complete for events after %s",
            self.counted,
            self.backlog,
            rate,
            left / rate if rate else 0.0,
            _utc(self.oldest) if self.oldest is not None else "-",
        )
        return True

    def done(self) -> None:
        seconds = self.clock() - self.started
        log.info(
            "ledger: all usage events are in the totals and rollups (counted %d in %.1f s)",
            self.counted,
            seconds,
        )


async def catch_up(
    db: Database,
    *,
    batch: int = BATCH,
    on_counted: Callable[[Sequence[Mapping[str, Any]]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress_s: float = PROGRESS_S,
) -> int:
    """Count every uncounted row, batch by batch (one transaction each, so a cancellation
    loses at most the batch in flight, which rolls back); returns how many were counted."""
    progress: Progress | None = None
    total = 0
    below: int | None = None  # where the next batch starts (None: the newest row)
    while True:
        rows = await db.run(functools.partial(reconcile_batch, limit=batch, below=below))
        total += len(rows)
        if rows and on_counted is not None:
            on_counted(rows)
        if len(rows) < batch:
            if below is None:
                break
            below = None  # drained below the mark: look once more from the top (new rows)
            continue
        below = min(int(r["time_ms"]) for r in rows)
        if progress is None:  # a backlog, not a trickle: say how big, then how it goes
            backlog = len(rows) + await db.read(uncounted)
            log.info(
                "ledger: %d usage events are not yet in the totals and rollups (an upgraded "
                "database, or rows from a previous release's replica); counting them, newest "
                "first, in batches of %d",
                backlog,
                batch,
            )
            progress = Progress(backlog, clock, progress_s)
        if progress.add(rows):
            below = None  # now and then from the top: rows a previous release stored meanwhile
    if progress is not None:
        progress.add(rows)
        progress.done()
    elif total:
        log.debug("ledger: counted %d usage events stored by a previous release", total)
    return total


async def reconcile_forever(
    db: Database,
    *,
    interval_s: float = INTERVAL_S,
    batch: int = BATCH,
    on_counted: Callable[[Sequence[Mapping[str, Any]]], None] | None = None,
) -> None:
    """The leader job: :func:`catch_up`, then again every ``interval_s``."""
    while True:
        try:
            await catch_up(db, batch=batch, on_counted=on_counted)
        except Exception:
            log.exception("counting usage events into the ledger failed; will retry")
        await asyncio.sleep(interval_s)
