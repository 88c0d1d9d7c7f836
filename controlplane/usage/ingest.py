"""Idempotent ingest of usage batches from data planes.

Contract of :func:`ingest`: every event is inserted with ``ON CONFLICT (request_id) DO NOTHING``
(dialect-specific statement for SQLite and PostgreSQL) inside one transaction. After the commit,
``accepted`` = newly stored events, ``duplicates`` = events already in the ledger (or repeated
within the batch), and ``acked_seq`` = the request's ``last_seq``: the data plane may drop its
spool up to that sequence. If anything fails nothing is acknowledged and the data plane replays
the batch later, which is safe because of the conflict rule. Newly stored events are then
published to the live :class:`~controlplane.usage.hub.UsageHub` and handed to each ``after``
callback (budget alerts, the snapshot's spend refresh): callbacks must return at once and
their failures are logged, never turned into an ingest failure. Logged headers and bodies go to
``request_log_body`` in the same transaction (:mod:`controlplane.usage.request_logs`) and are
stripped from the events before they are published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from controlplane.catalog.common import now_ms
from controlplane.domain.errors import InvalidArgument
from controlplane.store.db import Database
from controlplane.store.models import UsageEventRow
from controlplane.usage.events import event_to_values
from controlplane.usage.hub import UsageHub
from controlplane.usage.request_logs import has_log, store_bodies, strip_log
from gwapi.v1 import telemetry_pb2 as tpb

log = logging.getLogger(__name__)

CHUNK_ROWS = 200  # ~40 columns each: well under SQLite's and PostgreSQL's bind-parameter limits
MAX_REQUEST_ID = 128


def _validate(events: list[tpb.UsageEvent]) -> None:
    for i, ev in enumerate(events):
        if not ev.request_id:
            raise InvalidArgument(f"event #{i}: request_id is required (it is the idempotency key)")
        if len(ev.request_id) > MAX_REQUEST_ID:
            raise InvalidArgument(f"event #{i}: request_id longer than {MAX_REQUEST_ID} characters")


def insert_new(s: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert rows, skipping request ids already stored; returns the ids actually inserted."""
    dialect = s.get_bind().dialect.name
    insert_fn: Any
    if dialect == "postgresql":
        insert_fn = postgresql.insert
    elif dialect == "sqlite":
        insert_fn = sqlite.insert
    else:  # pragma: no cover - make_engine only builds these two
        raise RuntimeError(f"unsupported dialect {dialect}")
    inserted: set[str] = set()
    table = UsageEventRow.__table__  # type: ignore[attr-defined]
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[start : start + CHUNK_ROWS]
        stmt = (
            insert_fn(table)
            .values(chunk)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(col(UsageEventRow.request_id))
        )
        inserted.update(s.exec(stmt).scalars().all())
    return inserted


async def ingest(
    db: Database,
    hub: UsageHub,
    request: tpb.ReportUsageRequest,
    after: Sequence[Callable[[list[tpb.UsageEvent]], None]] = (),
) -> tpb.ReportUsageResponse:
    events = list(request.events)
    _validate(events)
    received = now_ms()
    # Later copies of a request id inside one batch are duplicates too; keep the first.
    unique: dict[str, tpb.UsageEvent] = {}
    for ev in events:
        unique.setdefault(ev.request_id, ev)
    rows = [event_to_values(ev, received) for ev in unique.values()]
    logged = [ev for ev in unique.values() if has_log(ev)]

    def store(s: Session) -> set[str]:
        ids = insert_new(s, rows)
        if logged:  # headers/bodies, policy-checked, compressed, in the same transaction
            store_bodies(s, logged, received)
        return ids

    inserted = await db.run(store) if rows else set()
    # Committed: from here on the batch is durable and may be acknowledged.
    for ev in logged:
        strip_log(ev)  # the live tail and post-ingest callbacks never carry bodies
    fresh = [ev for rid, ev in unique.items() if rid in inserted]
    hub.publish(fresh)
    if fresh:
        for callback in after:
            try:
                callback(fresh)
            except Exception:
                log.exception("post-ingest callback failed (the batch is stored and acknowledged)")
    duplicates = len(events) - len(fresh)
    if events:
        log.debug(
            "usage from %s: %d accepted, %d duplicates, acked_seq=%d",
            request.node_id or "?",
            len(fresh),
            duplicates,
            request.last_seq,
        )
    return tpb.ReportUsageResponse(
        acked_seq=request.last_seq, accepted=len(fresh), duplicates=duplicates
    )
