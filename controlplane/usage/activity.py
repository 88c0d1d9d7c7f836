"""Developer activity: what signed-in developers' Claude Code reported about itself (OTLP
metrics summed by the data planes), stored per developer and UTC day, and shown next to the
gateway's metered usage.

Ingest (:func:`ingest_activity`, ``Telemetry.ReportActivity``): one transaction records the
batch in ``activity_batch`` (``ON CONFLICT DO NOTHING`` on (node id, batch id)) and, only if the
batch is new, adds every row to ``developer_activity`` (an upsert per developer and UTC day of
``time_ms``; the workspace is the latest reported). A replayed batch changes nothing and answers
``duplicate``. Batches older than :data:`BATCH_RETENTION_MS` are forgotten (a data plane retries
a batch for minutes, not days).

Query (:func:`add_activity`, ``QueryUsage`` with ``group_by=developer``): rows are per UTC day,
so the window is widened to whole days: every day that ``[since_ms, until_ms)`` touches counts.
Activity is matched to the metered rows by developer id (the row's ``group``); a developer with
activity but no metered request in the window gets a row of its own (zero requests). Filters:
the caller's workspace scope and ``workspace`` apply to the workspace the activity was reported
in; ``developer_id`` selects one developer; ``key_id`` selects none (keys have no activity).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from controlplane.catalog.common import in_workspaces, now_ms
from controlplane.domain.errors import InvalidArgument
from controlplane.store.models.signin import DeveloperRow
from controlplane.store.models.usage import ActivityBatchRow, DeveloperActivityRow
from gwapi.v1 import telemetry_pb2 as tpb

DAY_MS = 86_400_000
MAX_ROWS = 10_000
BATCH_RETENTION_MS = 7 * DAY_MS
# DeveloperActivity's counters (the proto is the one list; DeveloperActivityRow has the same
# column names): every field but who and when.
COUNTERS = tuple(
    f.name
    for f in tpb.DeveloperActivity.DESCRIPTOR.fields
    if f.name not in ("developer_id", "workspace", "time_ms")
)
# UsageRow field ← summed DeveloperActivityRow column.
USAGE_FIELDS = {
    "client_cost_micros": "cost_micros",
    "lines_added": "lines_added",
    "lines_removed": "lines_removed",
    "commits": "commits",
    "pull_requests": "pull_requests",
    "edits_accepted": "edits_accepted",
    "edits_rejected": "edits_rejected",
    "client_sessions": "sessions",
}


def _insert(s: Session) -> Any:
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise RuntimeError(f"unsupported dialect {dialect}")  # pragma: no cover


def validate(request: tpb.ReportActivityRequest) -> None:
    if not request.batch_id or len(request.batch_id) > 64:
        raise InvalidArgument("batch_id is required (at most 64 characters): it makes retries safe")
    if len(request.node_id) > 128:
        raise InvalidArgument("node_id is longer than 128 characters")
    if len(request.activity) > MAX_ROWS:
        raise InvalidArgument(f"too many activity rows in one batch (at most {MAX_ROWS})")
    for i, row in enumerate(request.activity):
        if not row.developer_id or len(row.developer_id) > 32:
            raise InvalidArgument(f"activity #{i}: developer_id is required (at most 32 chars)")
        if len(row.workspace) > 63:
            raise InvalidArgument(f"activity #{i}: workspace is longer than 63 characters")
        if row.time_ms <= 0:
            raise InvalidArgument(f"activity #{i}: time_ms is required")
        negative = [name for name in COUNTERS if getattr(row, name) < 0]
        if negative:
            raise InvalidArgument(f"activity #{i}: {negative[0]} is negative")


def _summed(rows: Iterable[tpb.DeveloperActivity]) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows of one batch summed per (developer, UTC day); the latest workspace wins."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        day = row.time_ms - row.time_ms % DAY_MS
        entry = out.get((row.developer_id, day))
        if entry is None:
            entry = out[(row.developer_id, day)] = {
                "developer_id": row.developer_id,
                "day_ms": day,
                "workspace": row.workspace,
                "latest": row.time_ms,
                **dict.fromkeys(COUNTERS, 0),
            }
        if row.time_ms >= entry["latest"]:
            entry["latest"], entry["workspace"] = row.time_ms, row.workspace
        for name in COUNTERS:
            entry[name] += getattr(row, name)
    return out


def ingest_activity(s: Session, request: tpb.ReportActivityRequest) -> tpb.ReportActivityResponse:
    """Store one batch, once (see the module contract); runs inside the caller's transaction."""
    validate(request)
    now = now_ms()
    insert = _insert(s)
    batch = ActivityBatchRow.__table__  # type: ignore[attr-defined]
    new = s.exec(
        insert(batch)
        .values(node_id=request.node_id, batch_id=request.batch_id, received_at_ms=now)
        .on_conflict_do_nothing(index_elements=["node_id", "batch_id"])
        .returning(col(ActivityBatchRow.batch_id))
    ).first()
    if new is None:
        return tpb.ReportActivityResponse(accepted=0, duplicate=True)
    table = DeveloperActivityRow.__table__  # type: ignore[attr-defined]
    for entry in _summed(request.activity).values():
        values = {k: v for k, v in entry.items() if k != "latest"}
        values["updated_at_ms"] = now
        stmt = insert(table).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["developer_id", "day_ms"],
            set_={
                "workspace": stmt.excluded.workspace,
                "updated_at_ms": stmt.excluded.updated_at_ms,
                **{name: table.c[name] + stmt.excluded[name] for name in COUNTERS},
            },
        )
        s.exec(stmt)
    return tpb.ReportActivityResponse(accepted=len(request.activity), duplicate=False)


def purge_batches(s: Session, before_ms: int) -> int:
    """Forget batch ids received before ``before_ms``; returns how many."""
    result: Any = s.exec(
        delete(ActivityBatchRow).where(col(ActivityBatchRow.received_at_ms) < before_ms)
    )
    return int(result.rowcount or 0)


def add_activity(
    s: Session,
    rows: list[tpb.UsageRow],
    req: tpb.QueryUsageRequest,
    scope: frozenset[str] = frozenset(),
) -> list[tpb.UsageRow]:
    """``rows`` (grouped by developer id) with their activity fields filled, plus a row for
    every developer with activity but no metered request; sorted as the ledger sorts them."""
    if req.key_id:
        return rows
    sums = [func.coalesce(func.sum(getattr(DeveloperActivityRow, c)), 0).label(c) for c in COUNTERS]
    stmt = select(
        col(DeveloperActivityRow.developer_id),
        func.max(col(DeveloperActivityRow.workspace)).label("workspace"),
        *sums,
    )
    stmt = in_workspaces(stmt, DeveloperActivityRow.workspace, req.workspace, scope)
    if req.developer_id:
        stmt = stmt.where(col(DeveloperActivityRow.developer_id) == req.developer_id)
    if req.since_ms:
        stmt = stmt.where(col(DeveloperActivityRow.day_ms) >= req.since_ms - req.since_ms % DAY_MS)
    if req.until_ms:
        stmt = stmt.where(col(DeveloperActivityRow.day_ms) < req.until_ms)
    stmt = stmt.group_by(col(DeveloperActivityRow.developer_id))
    result: Any = s.exec(stmt).all()
    found = {r._mapping["developer_id"]: r._mapping for r in result}
    if not found:
        return rows
    by_id = {row.group: row for row in rows}
    for developer_id, m in found.items():
        row = by_id.get(developer_id)
        if row is None:
            row = by_id[developer_id] = tpb.UsageRow(group=developer_id)
            rows.append(row)
        for usage_field, column in USAGE_FIELDS.items():
            setattr(row, usage_field, getattr(row, usage_field) + int(m[column]))
        if not row.workspace:
            row.workspace = str(m["workspace"] or "")
    missing = [r for r in rows if r.group in found and not r.developer_email]
    if missing:
        emails = dict(
            s.exec(
                select(col(DeveloperRow.id), col(DeveloperRow.email)).where(
                    col(DeveloperRow.id).in_(sorted(r.group for r in missing))
                )
            ).all()
        )
        for r in missing:
            r.developer_email = emails.get(r.group, "")
    rows.sort(key=lambda r: (-r.cost_micros, -r.client_cost_micros, r.group))
    return rows
