"""Helpers for the ledger tests: events, ingest through the real path, and the raw truth."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, select

from controlplane.domain.budgets import Period
from controlplane.domain.spend import current_window
from controlplane.fanout import UsageHub
from controlplane.store.db import Database
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.derived import SpendTotalRow
from controlplane.store.models.usage import UsageEventRow
from controlplane.usage.ingest import ingest
from gwapi.v1 import telemetry_pb2 as tpb


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1000


# The rebuild and reconcile tests' clock: their traffic lies in the days before NOW.
NOW = ms(2026, 11, 28, 12)
DAY = 86_400_000
# The tables derived from usage_event, which a rebuild writes again.
TABLES = ("spend_total", "usage_rollup_hour", "usage_rollup_day")


def event(
    rid: str,
    time_ms: int,
    cost: int,
    *,
    workspace: str = "ws",
    key_id: str = "",
    developer_id: str = "",
    model: str = "claude-sonnet-4-5",
    status: int = 200,
) -> tpb.UsageEvent:
    ev = tpb.UsageEvent(
        request_id=rid,
        time_ms=time_ms,
        workspace=workspace,
        key_id=key_id,
        developer_id=developer_id,
        model_requested=model,
        model_served=model,
        provider="sim",
        status=status,
    )
    ev.usage.cost_micros = cost
    ev.usage.input_tokens = cost % 97
    return ev


def report(db: Database, events: list[tpb.UsageEvent], seq: int = 1) -> tpb.ReportUsageResponse:
    request = tpb.ReportUsageRequest(node_id="dp-test", last_seq=seq, events=events)
    return asyncio.run(ingest(db, UsageHub(), request))


def add_workspace(db: Database, name: str, tz: str = "") -> None:
    db.run_sync(lambda s: s.add(WorkspaceRow(name=name, timezone=tz)))


def totals(s: Session) -> dict[tuple[str, str, str, int], tuple[int, int]]:
    rows = s.exec(select(SpendTotalRow)).all()
    return {
        (r.scope_kind, r.scope_id, r.period, r.period_start_ms): (r.spent_micros, r.requests)
        for r in rows
    }


def raw_totals(s: Session) -> dict[tuple[str, str, str, int], tuple[int, int]]:
    """The totals a scan of the raw events gives (the definition the table must equal)."""
    zones = {w.name: w.timezone for w in s.exec(select(WorkspaceRow)).all()}
    acc: dict[tuple[str, str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for r in s.exec(select(UsageEventRow)).all():
        scopes = [("workspace", r.workspace)]
        scopes += [("key", r.key_id)] if r.key_id else []
        scopes += [("developer", r.developer_id)] if r.developer_id else []
        periods = [("lifetime", 0)] + [
            (p.word, current_window(p, r.time_ms, zones.get(r.workspace, "")).start_ms)
            for p in (Period.DAY, Period.WEEK, Period.MONTH)
        ]
        for kind, scope_id in scopes:
            for period, start in periods:
                cell = acc[(kind, scope_id, period, start)]
                cell[0] += r.cost_micros
                cell[1] += 1
    return {k: (v[0], v[1]) for k, v in acc.items()}


def count(s: Session, table: str) -> int:
    return int(s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def derived(s: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every derived row, without ``updated_at_ms`` (when it was written is not content)."""
    out = {}
    for table in TABLES:
        result = s.execute(text(f"SELECT * FROM {table}"))
        keys = [k for k in result.keys() if k != "updated_at_ms"]
        out[table] = sorted(tuple(row._mapping[k] for k in keys) for row in result)
    return out
