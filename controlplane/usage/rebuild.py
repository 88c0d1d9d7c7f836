"""Rebuilding the ledger's derived tables from raw usage events, and raw-event retention.

Contract of :func:`rebuild`: one transaction recomputes ``spend_total``, ``usage_rollup_hour``
and ``usage_rollup_day`` from ``usage_event`` through the very code ingest uses
(:func:`controlplane.usage.derived.apply`), so the result equals what ingest would have built.
Safe while serving: on PostgreSQL it first takes ``usage_event`` in ``SHARE ROW EXCLUSIVE``
mode, which lets readers (snapshot seeds, ``gwctl usage``) go on reading the previous totals and
makes ingest (and another rebuild) wait for the commit, so no event is counted twice or missed;
on SQLite the writer lock does the same. Idempotent: running it twice gives the same tables.

After a retention purge (``ledger_state.purged_before_ms`` = P) the purged events are gone from
``usage_event`` but not from the derived tables, so the rebuild keeps what only they know:
rollup buckets before P, calendar totals of windows that began before P, and, for lifetime
totals, the spend before P as the daily rollups hold it (P is a UTC midnight); everything from P
on is recomputed from the raw events.

The rebuild marks every raw event counted (``ledger_counted``), so the reconciler
(:mod:`controlplane.usage.reconcile`, which waits for the lock) adds none of them again.

Contract of :func:`purge`: deletes raw events with ``time_ms`` before the UTC midnight
``retention_days`` ago (only events already counted in the totals), in batches (one transaction each), and records that midnight as
``purged_before_ms``. Totals and rollups are never touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlmodel import Session, col

from controlplane.store.db import Database
from controlplane.store.models.derived import (
    LedgerStateRow,
    SpendTotalRow,
    UsageDayRow,
    UsageHourRow,
)
from controlplane.store.models.usage import UsageEventRow as U
from controlplane.usage import derived, reconcile
from controlplane.usage.rollups import DAY_MS
from controlplane.usage.totals import write_cells

log = logging.getLogger(__name__)

CHUNK = 5000
PURGE_INTERVAL_S = 3600.0
_DERIVED = (SpendTotalRow, UsageHourRow, UsageDayRow)
_EVENT = U.__table__  # type: ignore[attr-defined]


@dataclass
class RebuildReport:
    events: int
    purged_before_ms: int
    before: dict[str, int]
    after: dict[str, int]
    seconds: float

    def text(self) -> str:
        rows = ", ".join(
            f"{name} {self.before[name]:,} -> {self.after[name]:,} rows" for name in self.after
        )
        kept = (
            f"; events before {self.purged_before_ms} ms were purged, their totals and rollups kept"
            if self.purged_before_ms
            else ""
        )
        return (
            f"rebuilt the ledger from {self.events:,} usage events in {self.seconds:.1f} s: "
            f"{rows}{kept}"
        )


def state(s: Session) -> LedgerStateRow | None:
    return s.get(LedgerStateRow, 1)


def _counts(s: Session) -> dict[str, int]:
    return {
        str(m.__tablename__): int(s.execute(select(func.count()).select_from(m)).scalar_one())
        for m in _DERIVED
    }


def _lock(s: Session) -> None:
    """Writers wait for the rebuild, readers do not."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("LOCK TABLE usage_event IN SHARE ROW EXCLUSIVE MODE"))
    else:  # SQLite: take the write lock before reading (a write statement does, even a no-op)
        s.execute(text("UPDATE ledger_state SET id = id WHERE 0 = 1"))


def _clear(s: Session, purged: int) -> None:
    if not purged:
        for m in _DERIVED:
            s.execute(delete(m))
        return
    s.execute(delete(UsageHourRow).where(col(UsageHourRow.bucket_ms) >= purged))
    s.execute(delete(UsageDayRow).where(col(UsageDayRow.bucket_ms) >= purged))
    s.execute(
        delete(SpendTotalRow).where(
            (col(SpendTotalRow.period) == "lifetime")
            | (col(SpendTotalRow.period_start_ms) >= purged)
        )
    )


def _lifetime_before(s: Session, purged: int, now: int) -> None:
    """Lifetime totals of what was purged, from the daily rollups before ``purged``."""
    acc: dict[tuple[str, str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    D = UsageDayRow
    stmt = (
        select(
            col(D.workspace),
            col(D.key_id),
            col(D.developer_id),
            func.sum(D.cost_micros),
            func.sum(D.requests),
        )
        .where(col(D.bucket_ms) < purged)
        .group_by(col(D.workspace), col(D.key_id), col(D.developer_id))
    )
    for ws, key_id, dev_id, cost, requests in s.execute(stmt).all():
        scopes = [("workspace", ws)] + ([("key", key_id)] if key_id else [])
        scopes += [("developer", dev_id)] if dev_id else []
        for kind, scope_id in scopes:
            cell = acc[(kind, scope_id, "lifetime", 0)]
            cell[0] += int(cost)
            cell[1] += int(requests)
    write_cells(s, acc, now)


def _apply_raw(s: Session, purged: int, now: int) -> int:
    """Stream the raw events through ingest's code; returns how many."""
    events = 0
    stmt = select(_EVENT).order_by(col(U.time_ms), col(U.request_id))
    result = s.execute(stmt.execution_options(stream_results=True, yield_per=CHUNK))
    for chunk in result.mappings().partitions(CHUNK):
        rows: list[dict[str, Any]] = [dict(r) for r in chunk]
        events += len(rows)
        derived.apply(s, rows, now, keep_before=purged)
    return events


def _count_before(s: Session, purged: int, now: int) -> None:
    """Add the uncounted events before ``purged`` (which the rebuild does not recompute) to the
    derived tables, as the reconciler would have: their days and windows before ``purged`` are
    kept, and lifetime totals are recomputed from those days."""
    claimed = s.execute(
        text(
            "UPDATE usage_event SET ledger_counted = true "
            "WHERE NOT ledger_counted AND time_ms < :p RETURNING *"
        ),
        {"p": purged},
    )
    derived.apply(s, [dict(r) for r in claimed.mappings()], now)


def rebuild_sync(db: Database, *, only_if_missing: bool = False) -> RebuildReport | None:
    """Rebuild (see the module's contract). ``only_if_missing``: only when the ledger has never
    been built (a database from before the totals existed), else None."""
    started = time.monotonic()

    def work(s: Session) -> RebuildReport | None:
        _lock(s)
        st = state(s)
        if only_if_missing and st is not None:
            return None
        now = int(time.time() * 1000)
        purged = st.purged_before_ms if st is not None else 0
        before = _counts(s)
        if purged:  # uncounted events the purge kept, before P: only the rollups keep them
            _count_before(s, purged, now)
        # Every raw event is counted below: the reconciler (which waits for the lock) must not
        # count any of them again.
        s.execute(text("UPDATE usage_event SET ledger_counted = true WHERE NOT ledger_counted"))
        _clear(s, purged)
        if purged:
            _lifetime_before(s, purged, now)
        events = _apply_raw(s, purged, now)
        if st is None:
            st = LedgerStateRow(id=1)
        st.rebuilt_at_ms, st.rebuilt_events = now, events
        s.add(st)
        s.flush()
        return RebuildReport(events, purged, before, _counts(s), time.monotonic() - started)

    return db.run_sync(work)


def ensure_built(db: Database) -> int:
    """At start, never blocking on the size of the ledger: a database without ``ledger_state``
    (new, or upgraded from before the totals) gets its row; the events not yet in the totals
    (``ledger_counted`` false: every event of an upgraded database) are counted in the
    background, newest first, by the leader's reconciler (:mod:`controlplane.usage.reconcile`).
    Returns how many wait (0 when the ledger was already built: nothing is read then)."""
    if db.read_sync(lambda s: state(s) is not None):
        return 0
    db.run_sync(lambda s: s.merge(LedgerStateRow(id=1, rebuilt_at_ms=int(time.time() * 1000))))
    waiting = db.read_sync(reconcile.uncounted)
    if waiting:
        log.warning(
            "%d usage events predate the ledger's running totals: the leader counts them in "
            "the background, newest first (progress in its log); until then budgets and usage "
            "views miss the events not yet counted",
            waiting,
        )
    return waiting


def purge_cutoff(now: int, retention_days: int) -> int:
    """The UTC midnight ``retention_days`` before ``now``: events before it are purged."""
    cutoff = now - retention_days * DAY_MS
    return cutoff - cutoff % DAY_MS


def purge_batch(s: Session, cutoff: int, batch: int) -> int:
    ids = list(
        s.execute(
            select(col(U.request_id))
            # An event not yet counted stays until the reconciler has added it to the totals.
            .where(col(U.time_ms) < cutoff, col(U.ledger_counted))
            .order_by(col(U.time_ms))
            .limit(batch)
        ).scalars()
    )
    if ids:
        s.execute(delete(U).where(col(U.request_id).in_(ids)))
    st = state(s) or LedgerStateRow(id=1)
    if st.purged_before_ms < cutoff:
        st.purged_before_ms = cutoff
        s.add(st)
    return len(ids)


def purge(db: Database, now: int, retention_days: int, batch: int = CHUNK) -> int:
    """Delete raw usage events past the retention; returns how many (0 days = keep forever)."""
    if retention_days <= 0:
        return 0
    cutoff = purge_cutoff(now, retention_days)
    total = 0
    while True:
        n = db.run_sync(lambda s: purge_batch(s, cutoff, batch))
        total += n
        if n < batch:
            return total


async def purge_forever(
    db: Database, retention_days: int, interval_s: float = PURGE_INTERVAL_S
) -> None:
    """Purge at once, then every ``interval_s``; failures are logged and retried."""
    while True:
        try:
            n = await asyncio.to_thread(purge, db, int(time.time() * 1000), retention_days)
            if n:
                log.info("purged %d raw usage events older than %d days", n, retention_days)
        except Exception:
            log.exception("purging raw usage events failed; will retry")
        await asyncio.sleep(interval_s)
