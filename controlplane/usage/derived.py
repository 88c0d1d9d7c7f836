"""The ledger's derived tables, kept in step with ``usage_event`` inserts.

Contract: :func:`apply` adds freshly inserted event rows (column values, as
:func:`controlplane.usage.events.event_to_values` makes them) to the spend totals
(:mod:`~controlplane.usage.totals`) and the hourly/daily rollups
(:mod:`~controlplane.usage.rollups`), in the caller's transaction. Ingest calls it with the rows
its ``ON CONFLICT DO NOTHING`` insert actually stored. Rows added through the ORM
(``session.add(UsageEventRow(...))``: tests, tools) are applied by a ``after_flush`` hook on every
session, so no insert path can leave the derived tables behind. Deleting raw events (retention)
never changes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from controlplane.catalog.common import now_ms
from controlplane.store.models.usage import UsageEventRow
from controlplane.usage.rollups import add_rollups
from controlplane.usage.totals import add_totals

_FIELDS = tuple(c.name for c in UsageEventRow.__table__.columns)  # type: ignore[attr-defined]


def apply(
    s: Session, rows: Sequence[Mapping[str, Any]], now: int | None = None, keep_before: int = 0
) -> None:
    """``keep_before`` (a rebuild after a retention purge): leave out events before it and
    calendar-period cells starting before it (see :mod:`controlplane.usage.rebuild`)."""
    if keep_before:
        rows = [r for r in rows if int(r.get("time_ms") or 0) >= keep_before]
    if not rows:
        return
    now = now_ms() if now is None else now
    with s.no_autoflush:
        add_rollups(s, rows, now)
        # Last: every batch adds to its workspaces' cells, so concurrent ingest transactions
        # queue on those rows; taking them just before the commit keeps that queue short.
        add_totals(s, rows, now, keep_before)


def _values(row: UsageEventRow) -> dict[str, Any]:
    return {name: getattr(row, name, None) for name in _FIELDS}


def _after_flush(session: OrmSession, _context: Any) -> None:
    new = [_values(o) for o in session.new if isinstance(o, UsageEventRow)]
    if new:
        apply(session, new)  # type: ignore[arg-type]


if not event.contains(OrmSession, "after_flush", _after_flush):
    event.listen(OrmSession, "after_flush", _after_flush)
