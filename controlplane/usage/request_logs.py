"""Logged request headers and bodies: stored apart from the ledger, compressed, purged on time.

Data planes send ``request_headers`` (secrets already redacted), the body sizes and, with
``log_bodies=full``, ``request_body``/``response_body`` (each cut at the workspace's cap) only
when their snapshot's workspace policy asks. The control plane checks the policy again at
ingest, against its own database: a workspace whose policy is ``none`` (or one changed to
``none`` while a data plane still had the old snapshot) gets no ``request_log_body`` row, and
``metadata`` keeps headers and sizes but never body bytes. Rows are zlib-compressed, written in
the ingest's transaction with ``ON CONFLICT DO NOTHING`` (replays are harmless), and deleted by
:func:`purge` once older than their workspace's ``log_retention_days``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, delete, select

from controlplane.catalog.common import now_ms
from controlplane.domain.errors import NotFound
from controlplane.domain.workspaces import DEFAULT_LOG_RETENTION_DAYS
from controlplane.store.db import Database
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.usage import RequestLogBodyRow, UsageEventRow
from controlplane.usage.events import row_to_event
from gwapi.v1 import telemetry_pb2 as tpb

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
PURGE_INTERVAL_S = 300.0
_LOG_FIELDS = (
    "request_headers",
    "request_body",
    "response_body",
    "bodies_truncated",
    "request_body_size",
    "response_body_size",
)


def has_log(ev: tpb.UsageEvent) -> bool:
    return bool(ev.request_headers or ev.request_body or ev.response_body or ev.request_body_size)


def strip_log(ev: tpb.UsageEvent) -> None:
    """Drop the logged headers and bodies from an event (the live tail never carries them)."""
    for name in _LOG_FIELDS:
        ev.ClearField(name)  # type: ignore[arg-type]


def _policies(s: Session, workspaces: Iterable[str]) -> dict[str, str]:
    names = sorted(set(workspaces))
    if not names:
        return {}
    rows = s.exec(
        select(WorkspaceRow.name, WorkspaceRow.log_bodies).where(col(WorkspaceRow.name).in_(names))
    ).all()
    return {name: policy or "none" for name, policy in rows}


def body_rows(
    s: Session, events: Iterable[tpb.UsageEvent], created_ms: int
) -> list[dict[str, Any]]:
    """Row values for the events that carry log fields, as the workspace's policy allows."""
    logged = [ev for ev in events if has_log(ev)]
    if not logged:
        return []
    policy = _policies(s, (ev.workspace for ev in logged))
    out = []
    for ev in logged:
        mode = policy.get(ev.workspace, "none")
        if mode == "none":
            continue
        full = mode == "full"
        out.append(
            {
                "request_id": ev.request_id,
                "workspace": ev.workspace,
                "created_ms": created_ms,
                "headers_json": json.dumps(
                    dict(ev.request_headers), sort_keys=True, separators=(",", ":")
                ),
                "request_body_z": zlib.compress(ev.request_body) if full else b"",
                "response_body_z": zlib.compress(ev.response_body) if full else b"",
                "request_body_size": ev.request_body_size,
                "response_body_size": ev.response_body_size,
                "truncated": ev.bodies_truncated if full else False,
            }
        )
    return out


def store_bodies(s: Session, events: Iterable[tpb.UsageEvent], created_ms: int) -> int:
    """Insert the events' log rows (policy-checked), skipping request ids already stored."""
    rows = body_rows(s, events, created_ms)
    if not rows:
        return 0
    dialect = s.get_bind().dialect.name
    insert_fn: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = RequestLogBodyRow.__table__  # type: ignore[attr-defined]
    for start in range(0, len(rows), 50):  # bodies are large: small statements
        stmt = (
            insert_fn(table)
            .values(rows[start : start + 50])
            .on_conflict_do_nothing(index_elements=["request_id"])
        )
        s.exec(stmt)
    return len(rows)


def get_log(s: Session, request_id: str) -> tpb.UsageEvent:
    """The ledger row plus its logged headers and bodies (decompressed), if any."""
    row = s.get(UsageEventRow, request_id) if request_id else None
    if row is None:
        raise NotFound(f"request {request_id[:130]!r} not found in the usage ledger")
    ev = row_to_event(row)
    body = s.get(RequestLogBodyRow, request_id)
    if body is not None:
        ev.request_headers.update(json.loads(body.headers_json or "{}"))
        if body.request_body_z:
            ev.request_body = zlib.decompress(body.request_body_z)
        if body.response_body_z:
            ev.response_body = zlib.decompress(body.response_body_z)
        ev.bodies_truncated = body.truncated
        ev.request_body_size = body.request_body_size
        ev.response_body_size = body.response_body_size
    return ev


def purge(s: Session, now: int) -> int:
    """Delete log rows older than their workspace's retention (the default for rows whose
    workspace is gone). Returns how many were deleted."""
    deleted = 0
    known: list[str] = []
    for name, days in s.exec(select(WorkspaceRow.name, WorkspaceRow.log_retention_days)).all():
        known.append(name)
        cutoff = now - (days or DEFAULT_LOG_RETENTION_DAYS) * DAY_MS
        result: Any = s.exec(
            delete(RequestLogBodyRow).where(
                col(RequestLogBodyRow.workspace) == name,
                col(RequestLogBodyRow.created_ms) < cutoff,
            )
        )
        deleted += result.rowcount or 0
    orphan_cutoff = now - DEFAULT_LOG_RETENTION_DAYS * DAY_MS
    result = s.exec(
        delete(RequestLogBodyRow).where(
            col(RequestLogBodyRow.workspace).not_in(known),
            col(RequestLogBodyRow.created_ms) < orphan_cutoff,
        )
    )
    deleted += result.rowcount or 0
    return deleted


async def purge_forever(
    db: Database, interval_s: float = PURGE_INTERVAL_S, clock: Callable[[], int] = now_ms
) -> None:
    """Purge at once (on start), then every ``interval_s``; failures are logged and retried."""
    while True:
        try:
            n = await db.run(functools.partial(purge, now=clock()))
            if n:
                log.info("purged %d logged request bodies past their retention", n)
        except Exception:
            log.exception("purging logged request bodies failed; will retry")
        await asyncio.sleep(interval_s)
