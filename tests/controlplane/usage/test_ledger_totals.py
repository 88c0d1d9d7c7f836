"""Running spend totals: kept in the ingest transaction, exact under replay and under two
control planes ingesting at once, per period and time zone, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

from google.protobuf.field_mask_pb2 import FieldMask
from sqlmodel import Session

from controlplane.catalog import workspaces
from controlplane.store.db import Database
from controlplane.store.models.config import VirtualKeyRow, WorkspaceRow
from controlplane.store.models.signin import DeveloperRow
from controlplane.store.models.usage import UsageEventRow
from controlplane.usage.spend import current_spend, scopes_for
from gwapi.v1 import common_pb2 as pb
from tests.controlplane.usage.ledger_support import (
    add_workspace,
    event,
    ms,
    raw_totals,
    report,
    totals,
)

NOW = ms(2026, 11, 28, 23, 30)  # 29 November in Berlin already


def test_replayed_batch_counts_once(db: Database) -> None:
    add_workspace(db, "ws", "Europe/Berlin")
    batch = [
        event("r1", NOW, 1_000, key_id="key_a"),
        event("r2", NOW - 3_600_000, 20_000, developer_id="dev_a"),
        event("r1", NOW, 1_000, key_id="key_a"),  # repeated inside the batch
    ]
    first = report(db, batch)
    assert (first.accepted, first.duplicates) == (2, 1)
    again = report(db, [*batch, event("r3", NOW, 300_000, key_id="key_a")], seq=2)
    assert (again.accepted, again.duplicates) == (1, 3)
    got = db.read_sync(totals)
    assert got == db.read_sync(raw_totals)
    berlin_day = ms(2026, 11, 28, 23)
    assert got[("key", "key_a", "day", berlin_day)] == (301_000, 2)
    assert got[("workspace", "ws", "lifetime", 0)] == (321_000, 3)
    # r2 was at 22:30 UTC: 28 November in Berlin, the previous day's cell.
    assert got[("developer", "dev_a", "day", berlin_day - 86_400_000)] == (20_000, 1)


def test_two_replicas_ingesting_at_once_stay_exact(db_url: str) -> None:
    """Two Database handles (two control planes) ingest overlapping batches concurrently: every
    event counts once, and hot cells (the workspace's) lose no addition."""
    one, two = Database(db_url), Database(db_url)
    try:
        one.create_all()
        add_workspace(one, "ws", "America/New_York")
        events = [
            event(
                f"r{i}",
                NOW + i * 1000,
                1_000 + i,
                key_id=f"key_{i % 7}",
                developer_id=f"dev_{i % 5}",
            )
            for i in range(400)
        ]
        batches = [events[i : i + 40] for i in range(0, 400, 20)]  # each event in two batches
        errors: list[BaseException] = []

        def run(db: Database, mine: list[list]) -> None:
            try:
                for n, batch in enumerate(mine):
                    report(db, batch, seq=n + 1)
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(one, batches[0::2])),
            threading.Thread(target=run, args=(two, batches[1::2])),
            threading.Thread(target=run, args=(two, batches[::-1])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        got = one.read_sync(totals)
        assert got == one.read_sync(raw_totals)
        assert got[("workspace", "ws", "lifetime", 0)] == (sum(1_000 + i for i in range(400)), 400)
    finally:
        one.dispose()
        two.dispose()


def test_period_rollover_and_budgets_added_later(db: Database) -> None:
    """Cells exist for every period, budget or not: a budget added (or changed from day to
    month) after the traffic finds its spend; a new day starts at zero."""
    add_workspace(db, "ws", "Europe/Berlin")
    db.run_sync(lambda s: s.add(WorkspaceRow(name="other")))
    report(
        db,
        [
            event("a", ms(2026, 11, 28, 22, 59), 5, key_id="key_k"),  # 28 Nov, Berlin
            event("b", ms(2026, 11, 28, 23, 0), 7, key_id="key_k"),  # 29 Nov, Berlin
            event("c", ms(2026, 11, 30, 23, 0), 11, key_id="key_k"),  # 1 Dec: a new month
        ],
    )

    def with_budget(s: Session, period: str) -> None:
        key = s.get(VirtualKeyRow, "key_k") or VirtualKeyRow(
            id="key_k", secret_sha256="k" * 64, workspace="ws", provider=""
        )
        key.limits_json = f'{{"budgets":[{{"amount_micros":100,"period":"{period}"}}]}}'
        s.add(key)

    def spend(now: int) -> list[tuple[str, int, int]]:
        def read(s: Session) -> list[tuple[str, int, int]]:
            return [
                (sp.budget.period.word, sp.window.start_ms, sp.spent_micros)
                for sp in current_spend(s, scopes_for(s, key_ids=["key_k"]), now)
            ]

        return db.read_sync(read)

    db.run_sync(lambda s: with_budget(s, "day"))
    assert spend(ms(2026, 11, 29, 12)) == [("day", ms(2026, 11, 28, 23), 7)]
    assert spend(ms(2026, 11, 28, 12)) == [("day", ms(2026, 11, 27, 23), 5)]
    assert spend(ms(2026, 11, 29, 23, 30)) == [("day", ms(2026, 11, 29, 23), 0)]
    db.run_sync(lambda s: with_budget(s, "month"))
    assert spend(ms(2026, 11, 29, 12)) == [("month", ms(2026, 10, 31, 23), 12)]
    assert spend(ms(2026, 12, 1, 12)) == [("month", ms(2026, 11, 30, 23), 11)]
    db.run_sync(lambda s: with_budget(s, "week"))
    assert spend(ms(2026, 12, 1, 12)) == [("week", ms(2026, 11, 29, 23), 11)]


def test_time_zone_change_recounts_the_current_windows(db: Database) -> None:
    add_workspace(db, "ws", "")  # UTC
    db.run_sync(lambda s: s.add(DeveloperRow(id="dev_x", workspace="ws", issuer="i", subject="x")))
    report(
        db,
        [
            event("a", ms(2026, 11, 28, 22, 30), 5, developer_id="dev_x"),
            event("b", ms(2026, 11, 28, 23, 30), 7, developer_id="dev_x"),
        ],
    )
    now = ms(2026, 11, 28, 23, 45)  # 29 Nov 00:45 in Berlin
    db.run_sync(
        lambda s: workspaces.update(
            s, pb.Workspace(name="ws", timezone="Europe/Berlin"), FieldMask(paths=["timezone"]), now
        )
    )
    got = db.read_sync(totals)
    berlin_day = ms(2026, 11, 28, 23)
    assert got[("workspace", "ws", "day", berlin_day)] == (7, 1)
    assert got[("developer", "dev_x", "day", berlin_day)] == (7, 1)
    assert got[("workspace", "ws", "day", ms(2026, 11, 28))] == (12, 2)  # the UTC day it was
    # Later traffic counts in the new zone, on top of the recount.
    report(db, [event("c", now, 100, developer_id="dev_x")], seq=2)
    assert db.read_sync(totals)[("workspace", "ws", "day", berlin_day)] == (107, 2)


def test_orm_inserts_update_the_totals_too(db: Database) -> None:
    add_workspace(db, "ws")
    db.run_sync(
        lambda s: s.add(
            UsageEventRow(request_id="o1", workspace="ws", key_id="k", time_ms=NOW, cost_micros=9)
        )
    )
    assert db.read_sync(totals) == db.read_sync(raw_totals)
    assert db.read_sync(totals)[("key", "k", "lifetime", 0)] == (9, 1)


def test_cells_of_a_batch_match_each_events_own_windows() -> None:
    """``cells`` reuses an event's windows for the next event of its time zone while it falls in
    the same day: across day, week, month and year ends, in zones on both sides of UTC and one
    this machine does not know, the sums equal a window computed per event."""
    import random

    from controlplane.domain.budgets import Period
    from controlplane.domain.spend import current_window
    from controlplane.usage import totals as totals_mod

    zones = {
        "ws-utc": "",
        "ws-ber": "Europe/Berlin",
        "ws-syd": "Australia/Sydney",
        "ws-ny": "America/New_York",
        "ws-bad": "Mars/Olympus_Mons",
    }
    rng = random.Random(7)
    edges = [
        ms(2026, 12, 31, 23, 0),
        ms(2026, 11, 30, 22, 0),
        ms(2026, 11, 29, 12, 0),
        ms(2026, 3, 29, 0, 30),
        ms(2026, 10, 25, 0, 30),
    ]  # year, month, week, DST ends
    rows: list[dict[str, Any]] = []
    for _ in range(3000):
        edge = rng.choice(edges)
        rows.append(
            {
                "time_ms": edge + rng.randint(-30, 30) * 600_000,  # ±5 h around the edge
                "cost_micros": rng.randint(0, 9_999),
                "workspace": rng.choice(list(zones)),
                "key_id": rng.choice(["", "key_a", "key_b"]),
                "developer_id": rng.choice(["", "dev_1"]),
            }
        )
    want: dict[tuple[str, str, str, int], list[int]] = {}
    for row in rows:
        tz = zones[row["workspace"]]
        for kind, scope_id in totals_mod.scopes_of(row):
            periods = [("lifetime", 0)]
            for p in (Period.DAY, Period.WEEK, Period.MONTH):
                try:
                    window = current_window(p, row["time_ms"], tz)
                except ValueError:
                    window = current_window(p, row["time_ms"], "")
                periods.append((p.word, window.start_ms))
            for word, start in periods:
                cell = want.setdefault((kind, scope_id, word, start), [0, 0])
                cell[0] += row["cost_micros"]
                cell[1] += 1
    got = totals_mod.cells(rows, zones)
    assert {k: list(v) for k, v in got.items()} == want
