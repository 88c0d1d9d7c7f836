"""Rebuilding totals and rollups from raw events (idempotent, safe during ingest, at start for
an upgraded database), and raw-event retention that keeps totals and rollups."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import text

from controlplane.ledger_cli import main as rebuild_cli
from controlplane.store.db import Database
from controlplane.usage import rebuild, reconcile
from controlplane.usage.ledger import query_usage
from gwapi.v1 import telemetry_pb2 as tpb
from gwctl.main import main as gwctl_main
from tests.controlplane.usage.ledger_support import (
    DAY,
    NOW,
    TABLES,
    add_workspace,
    count,
    derived,
    event,
    raw_totals,
    report,
    totals,
)


def traffic(db: Database, days: int = 3, per_day: int = 30, seq: int = 1) -> None:
    evs = [
        event(
            f"t{seq}-{d}-{i}",
            NOW - d * DAY + i * 997_000,
            1_000 * (i + 1),
            key_id=f"key_{i % 3}" if i % 2 else "",
            developer_id="" if i % 2 else f"dev_{i % 4}",
            workspace="ws-a" if i % 5 else "ws-b",
            status=500 if i % 7 == 0 else 200,
        )
        for d in range(days)
        for i in range(per_day)
    ]
    report(db, evs, seq=seq)


def test_rebuild_repairs_and_is_idempotent(db: Database) -> None:
    add_workspace(db, "ws-a", "Asia/Kolkata")  # +05:30: windows off the hour grid
    add_workspace(db, "ws-b", "")
    traffic(db)
    built = db.read_sync(derived)
    db.run_sync(
        lambda s: (
            s.execute(text("DELETE FROM spend_total WHERE period = 'week'")),
            s.execute(text("UPDATE usage_rollup_day SET cost_micros = cost_micros + 1")),
            s.execute(text("DELETE FROM usage_rollup_hour WHERE errors > 0")),
        )
    )
    assert db.read_sync(derived) != built
    report_ = rebuild.rebuild_sync(db)
    assert report_ is not None and report_.events == 90
    assert "rebuilt the ledger from 90 usage events" in report_.text()
    assert db.read_sync(derived) == built
    assert db.read_sync(totals) == db.read_sync(raw_totals)
    rebuild.rebuild_sync(db)
    assert db.read_sync(derived) == built


def test_an_upgraded_database_gets_its_totals_at_start(db: Database) -> None:
    add_workspace(db, "ws-a", "Europe/Berlin")
    traffic(db)
    built = db.read_sync(derived)
    db.run_sync(
        lambda s: [
            *[s.execute(text(f"DELETE FROM {t}")) for t in (*TABLES, "ledger_state")],
            s.execute(text("UPDATE usage_event SET ledger_counted = false")),
        ]
    )  # as a database from before the ledger's totals looks after revision 0004
    assert rebuild.ensure_built(db) == 90  # the start only notes them: the reconciler counts
    assert rebuild.ensure_built(db) == 0  # marked: later starts read nothing
    assert asyncio.run(reconcile.catch_up(db)) == 90
    assert db.read_sync(derived) == built


def test_a_new_database_is_marked_built(db: Database) -> None:
    assert rebuild.ensure_built(db) == 0
    assert db.read_sync(lambda s: rebuild.state(s) is not None)


def test_rebuild_while_ingesting_counts_everything_once(db_url: str) -> None:
    one, two = Database(db_url), Database(db_url)
    try:
        one.create_all()
        add_workspace(one, "ws-a", "America/New_York")
        traffic(one, days=2, per_day=50)
        errors: list[BaseException] = []

        def ingest_more() -> None:
            try:
                for n in range(2, 12):
                    traffic(two, days=1, per_day=20, seq=n)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=ingest_more)
        thread.start()
        for _ in range(3):
            rebuild.rebuild_sync(one)
        thread.join(timeout=120)
        assert not errors, errors
        assert one.read_sync(totals) == one.read_sync(raw_totals)
        rows = one.read_sync(lambda s: query_usage(s, tpb.QueryUsageRequest()))
        assert rows[0].requests == 100 + 10 * 20
        before = one.read_sync(derived)
        rebuild.rebuild_sync(one)
        assert one.read_sync(derived) == before
    finally:
        one.dispose()
        two.dispose()


def test_retention_purges_raw_events_and_keeps_totals_and_rollups(db: Database) -> None:
    add_workspace(db, "ws-a", "Europe/Berlin")
    add_workspace(db, "ws-b", "")
    traffic(db, days=100, per_day=4)
    built = db.read_sync(derived)
    everything = db.read_sync(lambda s: query_usage(s, tpb.QueryUsageRequest(group_by="day")))
    purged = rebuild.purge(db, NOW, 40, batch=50)
    assert purged > 0
    assert db.read_sync(lambda s: count(s, "usage_event")) == 400 - purged
    cutoff = rebuild.purge_cutoff(NOW, 40)
    assert db.read_sync(lambda s: rebuild.state(s)).purged_before_ms == cutoff  # type: ignore[union-attr]
    assert db.read_sync(derived) == built
    # Whole days before the purge still answer from the rollups.
    again = db.read_sync(lambda s: query_usage(s, tpb.QueryUsageRequest(group_by="day")))
    assert again == everything
    # A rebuild recomputes from the raw events it has and keeps what only the rollups know.
    rebuild.rebuild_sync(db)
    assert db.read_sync(derived) == built
    assert rebuild.purge(db, NOW, 0) == 0  # 0 = keep forever


def test_gwctl_rebuild_ledger_says_what_it_did(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Database(db_url)
    try:
        db.create_all()
        add_workspace(db, "ws-a")
        traffic(db, days=1, per_day=5)
    finally:
        db.dispose()
    assert gwctl_main(["controlplane", "rebuild-ledger", "--db", db_url]) == 0
    out = capsys.readouterr().out
    assert "rebuilt the ledger from 5 usage events" in out and "spend_total" in out
    assert rebuild_cli(["--db", "mysql://nope/x"]) == 1
    assert "unsupported database" in capsys.readouterr().err


def test_usage_retention_setting() -> None:
    from controlplane.settings import MIN_USAGE_RETENTION_DAYS, Settings

    env = {"TOLLGATE_ADMIN_TOKEN": "a", "TOLLGATE_DATAPLANE_TOKEN": "d"}
    assert Settings.from_args([], env).usage_retention_days == 0
    got = Settings.from_args(["--usage-retention-days", "90"], env)
    got.validate()
    assert got.usage_retention_days == 90
    from_env = Settings.from_args([], {**env, "TOLLGATE_USAGE_RETENTION_DAYS": "400"})
    assert from_env.usage_retention_days == 400
    for bad in ("7", "x", "-1"):
        with pytest.raises(ValueError, match="--usage-retention-days"):
            Settings.from_args(["--usage-retention-days", bad], env).validate()
    Settings.from_args(["--usage-retention-days", str(MIN_USAGE_RETENTION_DAYS)], env).validate()
