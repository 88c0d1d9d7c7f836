"""Where ``QueryUsage`` reads a time range from: rollups for whole buckets, raw rows at the edges.

Contract of :func:`usage_source`: a subquery with one row per raw event or rollup cell of the
events with ``since_ms <= time_ms < until_ms`` (0 = unbounded) that match the filters, with the
columns ``workspace, key_id, developer_id, model, provider, client_version, session_id,
metadata_json, t`` (the event time, or the bucket start, for ``day``), and the measures
``requests, errors, <sums>, cache_hits, first_ms, last_ms, key_name, developer_email``.
Aggregating it (``sum``, ``min(first_ms)``, ``max(...)``) gives exactly what aggregating the raw
events would: whole UTC days come from ``usage_rollup_day`` (unless the grouping needs the
session or metadata, which only the hourly table keeps), whole UTC hours from
``usage_rollup_hour``, and only the partial hour at either end of the range from ``usage_event``.
So a 30-day query reads ~30 days of daily cells, up to 46 hours of hourly cells and under an hour
of raw rows, however long the ledger is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, case, literal, select, union_all
from sqlalchemy.sql import Subquery
from sqlmodel import col

from controlplane.store.models.derived import UsageDayRow, UsageHourRow
from controlplane.store.models.usage import UsageEventRow as U
from controlplane.usage.rollups import DAY_MS, HOUR_MS, SUMS

Range = tuple[int | None, int | None]  # [lo, hi); None = unbounded


def _ceil(x: int, b: int) -> int:
    return -((-x) // b) * b


def plan(since_ms: int, until_ms: int, coarse: bool) -> list[tuple[str, Range]]:
    """``[(source, (lo, hi))]`` covering ``[since, until)`` exactly once; ``coarse`` allows the
    daily table. Rollup ranges are bucket-aligned."""
    lo, hi = (since_ms or None), (until_ms or None)
    hourly = _aligned((lo, hi), HOUR_MS, "raw")
    if hourly is None:
        return [("raw", (lo, hi))]
    hours, parts = hourly
    daily = _aligned(hours, DAY_MS, "hour") if coarse else None
    if daily is None:
        return [*parts, ("hour", hours)]
    days, edges = daily
    return [*parts, *edges, ("day", days)]


def _aligned(rng: Range, bucket: int, finer: str) -> tuple[Range, list[tuple[str, Range]]] | None:
    """The whole buckets inside ``rng`` and the unaligned edges (read from ``finer``), in that
    order; None when ``rng`` holds no whole bucket."""
    lo, hi = rng
    a_lo = None if lo is None else _ceil(lo, bucket)
    a_hi = None if hi is None else hi - hi % bucket
    if a_lo is not None and a_hi is not None and a_lo >= a_hi:
        return None
    edges: list[tuple[str, Range]] = []
    if lo is not None and a_lo is not None and lo < a_lo:
        edges.append((finer, (lo, a_lo)))
    if hi is not None and a_hi is not None and a_hi < hi:
        edges.append((finer, (a_hi, hi)))
    return (a_lo, a_hi), edges


def _raw(rng: Range) -> Any:
    model = case((col(U.model_served) != "", col(U.model_served)), else_=col(U.model_requested))
    stmt: Any = select(
        col(U.workspace).label("workspace"),
        col(U.key_id).label("key_id"),
        col(U.developer_id).label("developer_id"),
        model.label("model"),
        col(U.provider).label("provider"),
        col(U.client_version).label("client_version"),
        col(U.session_id).label("session_id"),
        col(U.metadata_json).label("metadata_json"),
        col(U.time_ms).label("t"),
        literal(1).label("requests"),
        case((col(U.status) >= 400, 1), else_=0).label("errors"),
        *(getattr(U, name).label(name) for name in SUMS),
        case((col(U.cache_status) == "hit", 1), else_=0).label("cache_hits"),
        col(U.time_ms).label("first_ms"),
        col(U.time_ms).label("last_ms"),
        col(U.key_name).label("key_name"),
        col(U.developer_email).label("developer_email"),
    )
    return _within(stmt, U.time_ms, rng)


def _rollup(model: Any, rng: Range) -> Any:
    hourly = model is UsageHourRow
    stmt: Any = select(
        col(model.workspace).label("workspace"),
        col(model.key_id).label("key_id"),
        col(model.developer_id).label("developer_id"),
        col(model.model).label("model"),
        col(model.provider).label("provider"),
        col(model.client_version).label("client_version"),
        (col(model.session_id) if hourly else literal("")).label("session_id"),
        (col(model.metadata_json) if hourly else literal("{}")).label("metadata_json"),
        col(model.bucket_ms).label("t"),
        col(model.requests).label("requests"),
        col(model.errors).label("errors"),
        *(getattr(model, name).label(name) for name in SUMS),
        col(model.cache_hits).label("cache_hits"),
        col(model.first_ms).label("first_ms"),
        col(model.last_ms).label("last_ms"),
        col(model.key_name).label("key_name"),
        col(model.developer_email).label("developer_email"),
    )
    return _within(stmt, model.bucket_ms, rng)


def _within(stmt: Any, time_column: Any, rng: Range) -> Any:
    """``stmt`` narrowed to ``lo <= time_column < hi`` (an open end when None)."""
    lo, hi = rng
    if lo is not None:
        stmt = stmt.where(col(time_column) >= lo)
    if hi is not None:
        stmt = stmt.where(col(time_column) < hi)
    return stmt


def _filtered(stmt: Any, model: Any, filters: dict[str, Any]) -> Any:
    conds: list[ColumnElement[bool]] = []
    scope: Sequence[str] = filters.get("scope") or ()
    if scope:
        conds.append(col(model.workspace).in_(sorted(scope)))
    for name in ("workspace", "key_id", "developer_id"):
        if filters.get(name):
            conds.append(col(getattr(model, name)) == filters[name])
    return stmt.where(*conds)


def usage_source(
    since_ms: int,
    until_ms: int,
    *,
    coarse: bool,
    scope: frozenset[str] = frozenset(),
    workspace: str = "",
    key_id: str = "",
    developer_id: str = "",
) -> Subquery:
    filters = {
        "scope": scope,
        "workspace": workspace,
        "key_id": key_id,
        "developer_id": developer_id,
    }
    parts = []
    for source, rng in plan(since_ms, until_ms, coarse):
        if source == "raw":
            parts.append(_filtered(_raw(rng), U, filters))
        else:
            model = UsageHourRow if source == "hour" else UsageDayRow
            parts.append(_filtered(_rollup(model, rng), model, filters))
    query: Any = parts[0] if len(parts) == 1 else union_all(*parts)
    return cast(Subquery, query.subquery("src"))
