"""Idempotent ingest of usage batches from data planes.

Contract of :func:`ingest`: events are checked (a missing, over-long or NUL-bearing
``request_id`` is ``INVALID_ARGUMENT`` naming the event) and made storable (:func:`sanitize`: NUL
replaced, text cut to :data:`gwcommon.usage_limits.TEXT_CHARS`), so one odd event cannot make a
whole batch fail. If the database still refuses the data itself (not an outage), the call is
``INVALID_ARGUMENT`` naming the event when the batch holds one, so the data plane can split the
batch and set that event aside (see :mod:`dataplane.sync.reporter`). The events actually inserted
are added to the spend totals and usage rollups in the same transaction
(:mod:`controlplane.usage.derived`). Every event is inserted with ``ON CONFLICT (request_id) DO NOTHING``
(dialect-specific statement for SQLite and PostgreSQL) inside one transaction. After the commit,
``accepted`` = newly stored events, ``duplicates`` = events already in the ledger (or repeated
within the batch), and ``acked_seq`` = the request's ``last_seq``: the data plane may drop its
spool up to that sequence. If anything fails nothing is acknowledged and the data plane replays
the batch later, which is safe because of the conflict rule. Newly stored events are then
published to the live :class:`~controlplane.fanout.UsageHub` and handed to each ``after``
callback (budget alerts, the snapshot's spend refresh): callbacks must return at once and
their failures are logged, never turned into an ingest failure. Logged headers and bodies go to
``request_log_body`` in the same transaction (:mod:`controlplane.usage.request_logs`) and are
stripped from the events before they are published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlmodel import Session

from controlplane.catalog.common import now_ms
from controlplane.domain.errors import InvalidArgument, shown
from controlplane.fanout import UsageHub
from controlplane.fleet import topics as fleet_topics
from controlplane.store.db import Database
from controlplane.store.models.usage import UsageEventRow
from controlplane.usage import derived
from controlplane.usage.events import event_to_values
from controlplane.usage.request_logs import has_log, store_bodies, strip_log
from controlplane.usage.upsert import PG_CHUNK_ROWS, pg_unnest_insert
from gwapi.v1 import telemetry_pb2 as tpb
from gwcommon.usage_limits import TEXT_CHARS, cut

log = logging.getLogger(__name__)

CHUNK_ROWS = 200  # ~40 columns each: well under SQLite's and PostgreSQL's bind-parameter limits
MAX_REQUEST_ID = 128
MAX_PRICED_AS = 256
MAX_METADATA_CHARS = 256
_REFUSED_SQLSTATES = ("22", "23", "54")


def _validate(events: list[tpb.UsageEvent]) -> None:
    for i, ev in enumerate(events):
        if not ev.request_id:
            raise InvalidArgument(f"event #{i}: request_id is required (it is the idempotency key)")
        if len(ev.request_id) > MAX_REQUEST_ID:
            raise InvalidArgument(f"event #{i}: request_id longer than {MAX_REQUEST_ID} characters")
        if "\x00" in ev.request_id:
            raise InvalidArgument(f"event #{i}: request_id {shown(ev.request_id)} contains NUL")


def _text(value: str, limit: int) -> str:
    return cut(value.replace("\x00", "\ufffd"), limit)


def sanitize(ev: tpb.UsageEvent) -> bool:
    """Make an event's text storable, in place: NUL (which PostgreSQL refuses in text) becomes
    U+FFFD and over-long strings are cut to ``TEXT_CHARS`` (an over-long ``session_id`` would
    pass PostgreSQL's B-tree entry limit). Current data planes never send such events; older
    ones, or their spools, may. Returns True if anything changed."""
    changed = False
    for name, limit in TEXT_CHARS.items():
        value = getattr(ev, name)
        if len(value) > limit or "\x00" in value:
            setattr(ev, name, _text(value, limit))
            changed = True
    priced_as = ev.usage.priced_as
    if len(priced_as) > MAX_PRICED_AS or "\x00" in priced_as:
        ev.usage.priced_as = _text(priced_as, MAX_PRICED_AS)
        changed = True
    bad = [k for k, v in ev.metadata.items() if "\x00" in k or "\x00" in v]
    for key in bad:
        value = ev.metadata.pop(key)
        ev.metadata[_text(key, MAX_METADATA_CHARS)] = _text(value, MAX_METADATA_CHARS)
        changed = True
    return changed


def _refused_by_database(exc: DBAPIError) -> bool:
    """The database refused the data itself (not an outage): a data exception, an integrity
    violation or a program limit (SQLSTATE classes 22, 23, 54)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return sqlstate[:2] in _REFUSED_SQLSTATES


def _refusal(events: list[tpb.UsageEvent], exc: DBAPIError) -> InvalidArgument:
    reason = (str(exc.orig).strip().splitlines() or ["?"])[0][:200]
    if len(events) == 1:
        return InvalidArgument(
            f"usage event {shown(events[0].request_id)} was refused by the database ({reason}); "
            "it cannot be stored"
        )
    return InvalidArgument(
        f"the database refused one of the {len(events)} usage events of this batch ({reason}); "
        "send them one at a time to find it"
    )


def insert_new(s: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert rows, skipping request ids already stored; returns the ids actually inserted."""
    dialect = s.get_bind().dialect.name
    table = UsageEventRow.__table__  # type: ignore[attr-defined]
    inserted: set[str] = set()
    if dialect == "postgresql":  # one statement of arrays per batch: far cheaper than VALUES
        suffix = "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
        for start in range(0, len(rows), PG_CHUNK_ROWS):
            cursor = pg_unnest_insert(s, table, rows[start : start + PG_CHUNK_ROWS], suffix)
            inserted.update(r[0] for r in cursor.fetchall())
        return inserted
    if dialect != "sqlite":  # pragma: no cover - make_engine only builds these two
        raise RuntimeError(f"unsupported dialect {dialect}")
    # One statement, compiled once and cached; the rows go as executemany parameters, which
    # SQLAlchemy sends in batched VALUES ("insertmanyvalues") with RETURNING. A statement built
    # with .values(rows) was compiled anew for every batch: ~1 ms of CPU per event.
    for start in range(0, len(rows), CHUNK_ROWS):
        result = s.connection().execute(_SQLITE_INSERT, rows[start : start + CHUNK_ROWS])
        inserted.update(r[0] for r in result.all())
    return inserted


_SQLITE_INSERT = (
    sqlite.insert(UsageEventRow.__table__)  # type: ignore[attr-defined]
    .on_conflict_do_nothing(index_elements=["request_id"])
    .returning(UsageEventRow.__table__.c.request_id)  # type: ignore[attr-defined]
)


async def ingest(
    db: Database,
    hub: UsageHub,
    request: tpb.ReportUsageRequest,
    after: Sequence[Callable[[list[tpb.UsageEvent]], None]] = (),
) -> tpb.ReportUsageResponse:
    events = list(request.events)
    _validate(events)
    cleaned = [ev.request_id for ev in events if sanitize(ev)]
    if cleaned:
        log.warning(
            "usage from %s: %d events carried NUL or over-long text, stored cleaned and cut "
            "(first: %s)",
            request.node_id or "?",
            len(cleaned),
            cleaned[0],
        )
    received = now_ms()
    # Later copies of a request id inside one batch are duplicates too; keep the first.
    unique: dict[str, tpb.UsageEvent] = {}
    for ev in events:
        unique.setdefault(ev.request_id, ev)
    rows = [event_to_values(ev, received) for ev in unique.values()]
    logged = [ev for ev in unique.values() if has_log(ev)]

    def store(s: Session) -> set[str]:
        ids = insert_new(s, rows)
        fleet_topics.attach(s, fleet_topics.USAGE, sorted(ids))  # other replicas read these
        if logged:  # headers/bodies, policy-checked, compressed, in the same transaction
            store_bodies(s, logged, received)
        # Only what this transaction stored: a replay, or another replica's copy, adds nothing.
        derived.apply(s, [r for r in rows if r["request_id"] in ids], received)
        return ids

    try:
        inserted = await db.run(store) if rows else set()
    except DBAPIError as exc:
        if not _refused_by_database(exc):
            raise  # an outage (UNAVAILABLE) or a bug (INTERNAL): the data plane retries
        log.warning("usage from %s refused by the database: %s", request.node_id or "?", exc.orig)
        raise _refusal(list(unique.values()), exc) from exc
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
