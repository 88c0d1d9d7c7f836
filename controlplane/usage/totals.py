"""Running spend totals per scope and budget period (the ``spend_total`` table).

Contract:

* Every usage event stored adds its ``cost_micros`` (and one request) to the cell
  ``(scope kind, scope id, period, period start)`` of each of its scopes — ``workspace`` (always,
  the event's workspace), ``key`` (when ``key_id`` is set) and ``developer`` (when
  ``developer_id`` is set) — for each period: ``day``, ``week``, ``month`` (the window holding the
  event's ``time_ms`` in the time zone of the event's workspace, read in the inserting
  transaction; an unknown zone counts as UTC, as :mod:`controlplane.usage.spend` does) and
  ``lifetime`` (start 0). Cells exist for every period whether or not a budget uses it, so a
  budget added later, or switched from day to month, finds its spend.
* :func:`add_totals` runs in the transaction that inserted the events (only events actually
  inserted, so a replay adds nothing) and adds atomically in the database
  (:func:`controlplane.usage.upsert.upsert_add`): two replicas ingesting at once stay exact.
  On PostgreSQL the workspace rows are read ``FOR SHARE``, so a time-zone change
  (:func:`recompute_current`) waits for, or is waited on by, every ingest that used the old zone.
* ``updated_at_ms`` is the wall clock of the writing transaction (not indexed: see
  :class:`~controlplane.store.models.derived.SpendTotalRow`).
* :func:`read_totals` answers ``{scope id: spent}`` for one (kind, period, start) and many ids.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from controlplane.domain.budgets import Period
from controlplane.domain.spend import Window, current_window
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.derived import SpendTotalRow as T
from controlplane.store.models.usage import UsageEventRow as U
from controlplane.usage.upsert import pg_any_of, upsert_add

log = logging.getLogger(__name__)

IN_CHUNK = 500
FEW_IDS = 50
MANY_IDS = 2000  # PostgreSQL: up to this many, a lookup each; beyond, the range scan
CALENDAR = (Period.DAY, Period.WEEK, Period.MONTH)
TABLE = T.__table__  # type: ignore[attr-defined]
Cell = tuple[str, str, str, int]  # (scope kind, scope id, period word, period start ms)
_MIN_MS, _MAX_MS = -62_000_000_000_000, 250_000_000_000_000  # ~ year 5 .. ~ year 9900


class Windows:
    """Budget windows by (period, time zone), remembering the last one per pair: events of one
    batch mostly share their windows, so this computes few."""

    def __init__(self) -> None:
        self._last: dict[tuple[Period, str], Window] = {}
        self._bad: set[str] = set()

    def start(self, period: Period, time_ms: int, tz: str) -> int | None:
        """The start of the window holding ``time_ms``; None for a time no calendar holds
        (beyond the years 5..9900: such an event only counts in lifetime totals)."""
        if not _MIN_MS <= time_ms <= _MAX_MS:
            return None
        if tz in self._bad:
            tz = ""
        last = self._last.get((period, tz))
        if last is not None and last.start_ms <= time_ms < last.end_ms:
            return last.start_ms
        try:
            window = current_window(period, time_ms, tz)
        except ValueError:  # a zone this machine's tz database does not know: UTC, as spend does
            log.warning("unknown time zone %r, totals use UTC", tz)
            self._bad.add(tz)
            return self.start(period, time_ms, "")
        self._last[(period, tz)] = window
        return window.start_ms

    def span(self, period: Period, time_ms: int, tz: str) -> tuple[int, int] | None:
        """``(start, end)`` of the window :meth:`start` last found for ``time_ms`` (call it
        first); None when there is none."""
        if self.start(period, time_ms, tz) is None:
            return None
        window = self._last.get((period, "" if tz in self._bad else tz))
        return (window.start_ms, window.end_ms) if window is not None else None


def scopes_of(row: Mapping[str, Any]) -> list[tuple[str, str]]:
    scopes = [("workspace", str(row.get("workspace") or ""))]
    if row.get("key_id"):
        scopes.append(("key", str(row["key_id"])))
    if row.get("developer_id"):
        scopes.append(("developer", str(row["developer_id"])))
    return scopes


def zones(s: Session, workspaces: Iterable[str], lock: bool = True) -> dict[str, str]:
    """``{workspace: time zone}``; on PostgreSQL (``lock``) the rows are read FOR SHARE."""
    names = sorted(set(workspaces))
    columns = (col(WorkspaceRow.name), col(WorkspaceRow.timezone))
    if lock and s.get_bind().dialect.name == "postgresql":
        # Every ingest batch asks: one prepared statement whatever the names.
        stmt = sa_select(*columns).where(pg_any_of("name", names)).with_for_update(read=True)
        return {name: tz or "" for name, tz in s.execute(stmt).all()}
    out: dict[str, str] = {}
    for start in range(0, len(names), IN_CHUNK):
        stmt = sa_select(*columns).where(
            col(WorkspaceRow.name).in_(names[start : start + IN_CHUNK])
        )
        out.update({name: tz or "" for name, tz in s.execute(stmt).all()})
    return out


def cells(
    rows: Iterable[Mapping[str, Any]], tz_of: Mapping[str, str], windows: Windows | None = None
) -> dict[Cell, list[int]]:
    """``{cell: [spent, requests]}`` for the given event rows."""
    windows = windows or Windows()
    # Per time zone, the last event's windows and the span of its day (the shortest period):
    # an event inside that span has the same windows, so most events of a batch compute none.
    last: dict[str, tuple[int, int, tuple[tuple[str, int], ...]]] = {}
    # First per (scope, its windows): a batch's events mostly share their windows, so this is
    # one addition per scope of an event, not one per scope and period.
    by_scope: dict[tuple[str, str, tuple[tuple[str, int], ...]], list[int]] = {}
    for row in rows:
        time_ms, cost = int(row.get("time_ms") or 0), int(row.get("cost_micros") or 0)
        tz = tz_of.get(str(row.get("workspace") or ""), "")
        seen = last.get(tz)
        if seen is not None and seen[0] <= time_ms < seen[1]:
            windows_key = seen[2]
        else:
            windows_key = _windows_key(windows, time_ms, tz)
            day = windows.span(Period.DAY, time_ms, tz)
            if day is not None:
                last[tz] = (day[0], day[1], windows_key)
        for kind, scope_id in scopes_of(row):
            sums = by_scope.get((kind, scope_id, windows_key))
            if sums is None:
                by_scope[(kind, scope_id, windows_key)] = [cost, 1]
            else:
                sums[0] += cost
                sums[1] += 1
    acc: dict[Cell, list[int]] = {}
    for (kind, scope_id, windows_key), (spent, requests) in by_scope.items():
        for period, start in windows_key:
            cell = acc.get((kind, scope_id, period, start))
            if cell is None:
                acc[(kind, scope_id, period, start)] = [spent, requests]
            else:
                cell[0] += spent
                cell[1] += requests
    return acc


def _windows_key(windows: Windows, time_ms: int, tz: str) -> tuple[tuple[str, int], ...]:
    starts: list[tuple[str, int]] = [("lifetime", 0)]
    for p in CALENDAR:
        start = windows.start(p, time_ms, tz)
        if start is not None:
            starts.append((p.word, start))
    return tuple(starts)


def write_cells(s: Session, acc: Mapping[Cell, Sequence[int]], now: int) -> None:
    rows = [
        {
            "scope_kind": kind,
            "scope_id": scope_id,
            "period": period,
            "period_start_ms": start,
            "spent_micros": spent,
            "requests": requests,
            "updated_at_ms": now,
        }
        for (kind, scope_id, period, start), (spent, requests) in acc.items()
    ]
    upsert_add(s, TABLE, rows, added=("spent_micros", "requests"), greatest=("updated_at_ms",))


def add_totals(
    s: Session, rows: Sequence[Mapping[str, Any]], now: int, keep_before: int = 0
) -> None:
    """Add freshly inserted events to their totals, in the caller's transaction
    (``keep_before``: leave calendar cells that start before it alone)."""
    if rows:
        tz_of = zones(s, {str(r.get("workspace") or "") for r in rows})
        acc = cells(rows, tz_of)
        if keep_before:
            acc = {c: v for c, v in acc.items() if c[2] == "lifetime" or c[3] >= keep_before}
        write_cells(s, acc, now)


def read_totals(
    s: Session, kind: str, period: str, start_ms: int, ids: Sequence[str]
) -> dict[str, int]:
    """``{scope id: spent}`` of one window's cells. PostgreSQL, up to ``MANY_IDS``:
    ``scope_id = ANY(array)``. Else, many ids: the window's whole key range (one scan of the primary key, no long IN list
    to render); few: a lookup per id."""
    stmt = select(col(T.scope_id), col(T.spent_micros)).where(
        col(T.scope_kind) == kind, col(T.period) == period, col(T.period_start_ms) == start_ms
    )
    if len(ids) <= MANY_IDS and s.get_bind().dialect.name == "postgresql":
        # One array parameter: a lookup per id, not the window's whole key range (alerts and the
        # dirty-scope spend refresh ask for tens of 20,000 keys; a sweep of all, the scan).
        # The ids as one JSON text parameter: binding an array element by element cost more
        # Python than the lookup itself.
        rows = s.execute(stmt.where(pg_any_of("scope_id", ids))).all()
        return {str(sid): int(spent) for sid, spent in rows}
    if len(ids) > FEW_IDS:
        wanted = set(ids)
        rows = s.execute(stmt).all()
        return {str(sid): int(spent) for sid, spent in rows if sid in wanted}
    out: dict[str, int] = {}
    for i in range(0, len(ids), IN_CHUNK):
        chunk = stmt.where(col(T.scope_id).in_(ids[i : i + IN_CHUNK]))
        out.update({str(sid): int(spent) for sid, spent in s.execute(chunk).all()})
    return out


_SCOPE_COLUMNS = {"key": U.key_id, "workspace": U.workspace, "developer": U.developer_id}


def recompute_current(s: Session, scopes: Iterable[tuple[str, str, str]], now: int) -> int:
    """Set the current day/week/month cells of ``(kind, id, tz)`` scopes to the raw ledger's sums
    in ``tz`` (counted rows only: the reconciler adds the others, under the same workspace
    row lock as ingest): after a workspace's time zone changed (in the same transaction, so ingest either
    used the old zone and committed first, or waits and sees the new one). Returns the cells
    written. Earlier windows keep the zone they were counted in."""
    written = 0
    for kind, scope_id, tz in scopes:
        column = col(_SCOPE_COLUMNS[kind])
        for period in CALENDAR:
            try:
                window = current_window(period, now, tz)
            except ValueError:
                window = current_window(period, now, "")
            spent, requests = s.execute(
                select(text("coalesce(sum(cost_micros), 0)"), text("count(*)"))
                .select_from(U)
                .where(
                    column == scope_id,
                    # Uncounted rows are the reconciler's: it adds them after this commits.
                    col(U.ledger_counted),
                    col(U.time_ms) >= window.start_ms,
                    col(U.time_ms) < window.end_ms,
                )
            ).one()
            s.execute(
                delete(T).where(
                    col(T.scope_kind) == kind,
                    col(T.scope_id) == scope_id,
                    col(T.period) == period.word,
                    col(T.period_start_ms) == window.start_ms,
                )
            )
            if requests:
                s.add(
                    T(
                        scope_kind=kind,
                        scope_id=scope_id,
                        period=period.word,
                        period_start_ms=window.start_ms,
                        spent_micros=int(spent),
                        requests=int(requests),
                        updated_at_ms=now,
                    )
                )
                written += 1
    s.flush()
    return written


def retime_workspace(s: Session, name: str, tz: str, now: int) -> int:
    """After workspace ``name``'s time zone became ``tz``: its own, its keys' and its developers'
    current windows, recomputed in ``tz`` (:func:`recompute_current`)."""
    from controlplane.store.models.config import VirtualKeyRow
    from controlplane.store.models.signin import DeveloperRow

    keys = s.execute(sa_select(col(VirtualKeyRow.id)).where(col(VirtualKeyRow.workspace) == name))
    devs = s.execute(sa_select(col(DeveloperRow.id)).where(col(DeveloperRow.workspace) == name))
    scopes = [("workspace", name, tz)]
    scopes += [("key", str(k), tz) for (k,) in keys.all()]
    scopes += [("developer", str(d), tz) for (d,) in devs.all()]
    return recompute_current(s, scopes, now)
