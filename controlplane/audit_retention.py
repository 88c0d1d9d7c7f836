"""Audit-log retention: delete ``audit_event`` rows older than ``--audit-retention-days``.

Contract:

* ``retention_days == 0`` (the default) keeps the audit log forever: it is evidence, and how long
  to keep it is a platform team's decision, not ours. :func:`purge_forever` is then not started.
* Otherwise rows with ``time_ms < now - retention_days * DAY_MS`` are deleted in batches of at
  most ``batch_size`` rows, oldest first, **one transaction per batch**: a large backlog (the
  first run after enabling retention) never holds one long transaction and its locks on
  PostgreSQL, and a failure midway keeps what was already purged.
* Purging is not an admin change, so it writes no audit row; the count is logged at INFO.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlmodel import Session, col, delete, select

from controlplane.catalog.common import now_ms
from controlplane.store.db import Database
from controlplane.store.models.admin import AuditRow

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
PURGE_INTERVAL_S = 3600.0
DEFAULT_BATCH_SIZE = 5000


def cutoff_ms(now: int, retention_days: int) -> int:
    """Rows strictly older than this (``time_ms < cutoff``) are past the retention."""
    return now - retention_days * DAY_MS


def purge_batch(s: Session, cutoff: int, batch_size: int) -> int:
    """Delete up to ``batch_size`` of the oldest rows older than ``cutoff``; returns the count."""
    # DELETE … LIMIT is not portable (PostgreSQL has none): select the ids first. The time_ms
    # index serves both the filter and the order.
    oldest = (
        select(AuditRow.id)
        .where(col(AuditRow.time_ms) < cutoff)
        .order_by(col(AuditRow.time_ms), col(AuditRow.id))
        .limit(batch_size)
    )
    ids = [i for i in s.exec(oldest).all() if i is not None]
    if not ids:
        return 0
    result: Any = s.exec(delete(AuditRow).where(col(AuditRow.id).in_(ids)))
    return int(result.rowcount or 0)


async def purge(
    db: Database, now: int, retention_days: int, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Delete every row past the retention, one transaction per batch; returns the count.
    ``retention_days == 0`` deletes nothing."""
    if retention_days < 0 or batch_size < 1:
        raise ValueError("retention_days must be >= 0 and batch_size >= 1")
    if retention_days == 0:
        return 0
    cutoff = cutoff_ms(now, retention_days)
    total = 0
    while True:
        n = await db.run(functools.partial(purge_batch, cutoff=cutoff, batch_size=batch_size))
        total += n
        if n < batch_size:
            return total


async def purge_forever(
    db: Database,
    retention_days: int,
    interval_s: float = PURGE_INTERVAL_S,
    clock: Callable[[], int] = now_ms,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> None:
    """Purge at once (on start), then every ``interval_s``; failures are logged and retried."""
    while True:
        try:
            n = await purge(db, clock(), retention_days, batch_size)
            if n:
                log.info("purged %d audit events older than %d days", n, retention_days)
        except Exception:
            log.exception("purging the audit log failed; will retry")
        await asyncio.sleep(interval_s)
