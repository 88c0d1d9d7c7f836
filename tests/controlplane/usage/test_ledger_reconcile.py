"""Rolling upgrades and the ledger: events stored by the previous release's code (which does not
know ``ledger_counted``) and events of a database from before the totals are counted into the
totals and rollups exactly once, by the reconciler, without blocking the start."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from controlplane.server import open_database
from controlplane.store.db import Database, make_engine
from controlplane.store.models.usage import UsageEventRow
from controlplane.store.schema import Migrator
from controlplane.usage import rebuild, reconcile
from controlplane.usage.events import event_to_values
from controlplane.usage.ledger import query_usage
from gwapi.v1 import telemetry_pb2 as tpb
from tests.conftest import _reset_pg_schema
from tests.controlplane.store import schema_data
from tests.controlplane.usage.ledger_support import (
    DAY,
    NOW,
    add_workspace,
    count,
    derived,
    event,
    raw_totals,
    report,
    totals,
)

# usage_event as the previous release (revision 0003) knows it: no ledger_counted.
_OLD = Table(
    "usage_event",
    MetaData(),
    *(
        Column(c.name, c.type, primary_key=c.primary_key)
        for c in UsageEventRow.__table__.columns  # type: ignore[attr-defined]
        if c.name != "ledger_counted"
    ),
)


def old_release_insert(engine: Engine, events: list[tpb.UsageEvent]) -> int:
    """Insert the way the previous release's ingest does: a Core insert of its own columns,
    ``ON CONFLICT (request_id) DO NOTHING``, no totals; returns the rows inserted."""
    rows = []
    for ev in events:
        values = event_to_values(ev, NOW)
        del values["ledger_counted"]
        rows.append(values)
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(_OLD)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(_OLD.c.request_id)
    )
    with engine.begin() as conn:
        return len(conn.execute(stmt).all())


def traffic(prefix: str, n: int, start: int = NOW - 3 * DAY) -> list[tpb.UsageEvent]:
    return [
        event(
            f"{prefix}-{i}",
            start + i * 3_517_000,
            1_000 + i,
            key_id=f"key_{i % 3}" if i % 2 else "",
            developer_id="" if i % 2 else f"dev_{i % 4}",
            workspace="ws-a" if i % 5 else "ws-b",
            status=500 if i % 7 == 0 else 200,
        )
        for i in range(n)
    ]


def drain(db: Database, batch: int = reconcile.BATCH) -> int:
    return asyncio.run(reconcile.catch_up(db, batch=batch))


def assert_exact(db: Database) -> None:
    """Totals equal the raw events' sums, the rollups equal a rebuild from the raw events, and
    nothing waits to be counted."""
    assert db.read_sync(reconcile.uncounted) == 0
    assert db.read_sync(totals) == db.read_sync(raw_totals)
    got = db.read_sync(derived)
    rebuild.rebuild_sync(db)
    assert db.read_sync(derived) == got


def test_rows_inserted_by_the_previous_release_are_counted_once(db: Database) -> None:
    add_workspace(db, "ws-a", "Asia/Kolkata")
    add_workspace(db, "ws-b", "")
    report(db, traffic("new", 40))
    assert old_release_insert(db.engine, traffic("old", 30)) == 30
    assert db.read_sync(reconcile.uncounted) == 30
    assert db.read_sync(totals) != db.read_sync(raw_totals)  # the old rows are not in them yet
    assert drain(db, batch=7) == 30
    assert drain(db) == 0  # counted once: a second pass finds nothing
    assert_exact(db)
    rows = db.read_sync(lambda s: query_usage(s, tpb.QueryUsageRequest()))
    assert rows[0].requests == 70


def test_replays_across_releases_still_count_once(db: Database) -> None:
    add_workspace(db, "ws-a", "Europe/Berlin")
    old = traffic("old", 20)
    new = traffic("new", 20, NOW - DAY)
    assert old_release_insert(db.engine, old) == 20
    # A data plane replays its spool to a new replica: the old rows are duplicates there.
    response = report(db, old[:10] + new)
    assert (response.accepted, response.duplicates) == (20, 10)
    # ...and a spool of events the new release stored replays to an old replica: nothing new.
    assert old_release_insert(db.engine, new[5:] + old[:3]) == 0
    assert drain(db) == 20
    report(db, old + new)  # everything again, after the reconciler: still nothing added
    assert old_release_insert(db.engine, old + new) == 0
    assert drain(db) == 0
    assert_exact(db)


def test_two_reconcilers_racing_count_every_row_once(db_url: str) -> None:
    one, two = Database(db_url), Database(db_url)
    try:
        one.create_all()
        add_workspace(one, "ws-a", "America/New_York")
        claimed: list[list[str]] = [[], []]
        errors: list[BaseException] = []
        stop = threading.Event()
        start = threading.Barrier(3)

        def reconciler(db: Database, out: list[str]) -> None:
            try:
                start.wait(timeout=30)
                while True:
                    done = stop.is_set()  # read before the batch: the last pass sees all rows
                    rows = db.run_sync(lambda s: reconcile.reconcile_batch(s, 13))
                    out.extend(r["request_id"] for r in rows)
                    if done and not rows:
                        return
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=reconciler, args=(db, out))
            for db, out in zip((one, two), claimed, strict=True)
        ]
        for t in threads:
            t.start()
        start.wait(timeout=30)
        for n in range(12):  # a previous-release replica keeps ingesting meanwhile
            old_release_insert(one.engine, traffic(f"old{n}", 25, NOW - n * DAY))
            report(one, traffic(f"new{n}", 5, NOW - n * DAY), seq=n + 1)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        everything = claimed[0] + claimed[1]
        assert len(everything) == len(set(everything)) == 12 * 25  # disjoint, none missed
        assert_exact(one)
    finally:
        one.dispose()
        two.dispose()


def test_rebuild_marks_everything_counted_and_purge_keeps_the_uncounted(db: Database) -> None:
    add_workspace(db, "ws-a", "")
    report(db, traffic("new", 10, NOW - 100 * DAY))
    old_release_insert(db.engine, traffic("old", 10, NOW - 100 * DAY))
    assert rebuild.purge(db, NOW, 40) == 10  # the counted ones only
    assert db.read_sync(lambda s: count(s, "usage_event")) == 10
    before = db.read_sync(derived)
    rebuild.rebuild_sync(db)  # counts the kept old rows (before the purge date) exactly once
    assert db.read_sync(reconcile.uncounted) == 0
    assert drain(db) == 0
    after = db.read_sync(derived)
    assert after != before
    rows = db.read_sync(lambda s: query_usage(s, tpb.QueryUsageRequest()))
    assert rows[0].requests == 20
    assert rows[0].cost_micros == 2 * sum(1_000 + i for i in range(10))


def _pre_ledger_database(url: str, events: list[tpb.UsageEvent]) -> None:
    """A database of the previous release (revision 0003) with usage events in it."""
    engine = make_engine(url)
    try:
        schema_data.at_revision(engine, "0003")
        old_release_insert(engine, events)
    finally:
        engine.dispose()


def test_a_pre_ledger_database_starts_at_once_and_is_filled_in_the_background(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    events = traffic("before", 300)
    _pre_ledger_database(db_url, events)
    caplog.set_level(logging.INFO, logger="controlplane.usage")
    db = open_database(db_url, migrate=True)  # reads no event: it does not wait for the fill
    try:
        assert db.read_sync(reconcile.uncounted) == 300
        assert "300 usage events predate the ledger's running totals" in caplog.text
        assert db.read_sync(lambda s: count(s, "spend_total")) == 0
        assert rebuild.ensure_built(db) == 0  # the second start does not even count them
        ticks = iter(range(0, 10_000, 4))  # a clock that moves 4 s per reading
        counted = asyncio.run(
            reconcile.catch_up(db, batch=50, clock=lambda: float(next(ticks)), progress_s=10)
        )
        assert counted == 300
        assert "ledger: 300 usage events are not yet in the totals" in caplog.text
        assert "ledger: counted 150 of 300 usage events" in caplog.text
        oldest = reconcile._utc(events[150].time_ms)  # newest first: 299 down to 150
        assert f"totals and rollups are complete for events after {oldest}" in caplog.text
        assert "all usage events are in the totals and rollups (counted 300" in caplog.text
        assert_exact(db)
    finally:
        db.dispose()


def test_the_fill_goes_newest_first(db: Database) -> None:
    events = traffic("old", 40)
    old_release_insert(db.engine, events)
    rows = db.run_sync(lambda s: reconcile.reconcile_batch(s, 10))
    got = sorted(r["time_ms"] for r in rows)
    assert got == sorted(ev.time_ms for ev in events)[-10:]


@pytest.mark.postgres
def test_adding_the_column_rewrites_no_table_on_postgresql(pg_database: str) -> None:
    """Revision 0004's column is metadata only: usage_event keeps its file (no rewrite). (A
    PostgreSQL matter: SQLite's ADD COLUMN never copies the table.)"""
    _reset_pg_schema(pg_database)
    db_url = pg_database
    _pre_ledger_database(db_url, traffic("before", 50))
    engine = make_engine(db_url)
    try:

        def filenode(conn: Any) -> int:
            return int(conn.execute(text("SELECT pg_relation_filenode('usage_event')")).scalar())

        with engine.connect() as conn:
            before = filenode(conn)
        Migrator(engine).upgrade()
        with engine.connect() as conn:
            assert filenode(conn) == before
            uncounted = conn.execute(
                text("SELECT count(*) FROM usage_event WHERE NOT ledger_counted")
            ).scalar()
            assert uncounted == 50
    finally:
        engine.dispose()
