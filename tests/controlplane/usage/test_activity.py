"""Developer activity on the control plane: ReportActivity over real gRPC, idempotent on
(node id, batch id) in the same transaction as the sums, on SQLite and PostgreSQL; and the
activity fields of QueryUsage grouped by developer."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from sqlmodel import select

from controlplane.server import Running
from controlplane.store.db import Database
from controlplane.store.models.config import WorkspaceRow
from controlplane.store.models.signin import DeveloperRow
from controlplane.store.models.usage import ActivityBatchRow, DeveloperActivityRow
from controlplane.usage.activity import DAY_MS, add_activity, ingest_activity, purge_batches
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import Clients, expect_error

DAY = 20_428 * DAY_MS  # a UTC midnight
NOON = DAY + DAY_MS // 2


def activity(developer: str = "dev_alice", time_ms: int = NOON, **kw: int) -> tpb.DeveloperActivity:
    values = {
        "cost_micros": 32_610,
        "input_tokens": 412,
        "output_tokens": 162,
        "lines_added": 6,
        "lines_removed": 1,
        "commits": 1,
        "pull_requests": 1,
        "edits_accepted": 2,
        "sessions": 1,
    }
    values.update(kw)
    return tpb.DeveloperActivity(
        developer_id=developer, workspace="team-a", time_ms=time_ms, **values
    )


def stored(db: Database) -> dict[tuple[str, int], DeveloperActivityRow]:
    rows = db.read_sync(lambda s: list(s.exec(select(DeveloperActivityRow)).all()))
    return {(r.developer_id, r.day_ms): r for r in rows}


async def test_report_activity_is_idempotent(cp: Running, dataplane: Clients) -> None:
    batch = tpb.ReportActivityRequest(
        node_id="dp-1", batch_id="b-1", activity=[activity(), activity(cost_micros=1_000)]
    )
    first = await dataplane.telemetry.ReportActivity(batch)
    assert (first.accepted, first.duplicate) == (2, False)
    again = await dataplane.telemetry.ReportActivity(batch)  # a retry after a lost answer
    assert (again.accepted, again.duplicate) == (0, True)
    # The same batch id from another data plane is another batch.
    other = tpb.ReportActivityRequest(node_id="dp-2", batch_id="b-1", activity=[activity()])
    assert not (await dataplane.telemetry.ReportActivity(other)).duplicate
    rows = stored(cp.state.db)
    row = rows[("dev_alice", DAY)]
    assert row.cost_micros == 32_610 * 2 + 1_000
    assert (row.lines_added, row.commits, row.edits_accepted, row.sessions) == (18, 3, 6, 3)
    assert row.workspace == "team-a"


async def test_concurrent_retries_count_once(cp: Running, dataplane: Clients) -> None:
    batch = tpb.ReportActivityRequest(node_id="dp-1", batch_id="b-race", activity=[activity()])
    answers = await asyncio.gather(*(dataplane.telemetry.ReportActivity(batch) for _ in range(5)))
    assert sum(not a.duplicate for a in answers) == 1
    assert stored(cp.state.db)[("dev_alice", DAY)].cost_micros == 32_610


async def test_days_and_latest_workspace(cp: Running, dataplane: Clients) -> None:
    moved = activity(time_ms=NOON + 1000)
    moved.workspace = "team-b"
    await dataplane.telemetry.ReportActivity(
        tpb.ReportActivityRequest(
            node_id="dp-1",
            batch_id="b-days",
            activity=[activity(time_ms=DAY - 1), activity(), moved],
        )
    )
    rows = stored(cp.state.db)
    assert sorted(rows) == [("dev_alice", DAY - DAY_MS), ("dev_alice", DAY)]
    assert rows[("dev_alice", DAY)].workspace == "team-b"
    assert rows[("dev_alice", DAY)].commits == 2


@pytest.mark.parametrize(
    ("request_", "text_"),
    [
        (tpb.ReportActivityRequest(node_id="dp", activity=[activity()]), "batch_id"),
        (
            tpb.ReportActivityRequest(node_id="dp", batch_id="x" * 65, activity=[activity()]),
            "batch_id",
        ),
        (tpb.ReportActivityRequest(batch_id="b", activity=[activity("")]), "developer_id"),
        (tpb.ReportActivityRequest(batch_id="b", activity=[activity(time_ms=0)]), "time_ms"),
        (tpb.ReportActivityRequest(batch_id="b", activity=[activity(commits=-1)]), "negative"),
    ],
)
async def test_malformed_batches_are_refused(
    cp: Running, dataplane: Clients, request_: tpb.ReportActivityRequest, text_: str
) -> None:
    await expect_error(
        dataplane.telemetry.ReportActivity(request_), grpc.StatusCode.INVALID_ARGUMENT, text_
    )
    assert stored(cp.state.db) == {}


async def test_only_data_planes_report(cp: Running, admin: Any) -> None:
    created = await admin.CreateToken(apb.CreateTokenRequest(name="ops", role="admin"))
    async with grpc.aio.insecure_channel(cp.address) as ch:
        other = Clients(ch, created.secret)
        await expect_error(
            other.telemetry.ReportActivity(
                tpb.ReportActivityRequest(node_id="x", batch_id="b", activity=[activity()])
            ),
            grpc.StatusCode.PERMISSION_DENIED,
            "data plane",
        )


def test_purge_forgets_old_batch_ids(db: Database) -> None:
    db.run_sync(
        lambda s: ingest_activity(
            s, tpb.ReportActivityRequest(node_id="n", batch_id="old", activity=[activity()])
        )
    )
    db.run_sync(lambda s: purge_batches(s, 0))
    assert len(db.read_sync(lambda s: list(s.exec(select(ActivityBatchRow)).all()))) == 1
    assert db.run_sync(lambda s: purge_batches(s, 2**62)) == 1
    assert db.read_sync(lambda s: list(s.exec(select(ActivityBatchRow)).all())) == []


def seed(db: Database) -> None:
    def work(s: Any) -> None:
        s.add(WorkspaceRow(name="team-a"))
        s.add(WorkspaceRow(name="team-b"))
        s.flush()
        s.add(
            DeveloperRow(id="dev_alice", subject="a", workspace="team-a", email="alice@example.com")
        )
        s.add(DeveloperRow(id="dev_bob", subject="b", workspace="team-b", email="bob@example.com"))
        for i, (dev, ws, day, cost) in enumerate(
            [
                ("dev_alice", "team-a", DAY - DAY_MS, 1_000),
                ("dev_alice", "team-a", DAY, 32_610),
                ("dev_bob", "team-b", DAY, 5_000),
                ("dev_alice", "team-a", DAY + DAY_MS, 7),
            ]
        ):
            request = tpb.ReportActivityRequest(
                node_id="n",
                batch_id=f"seed-{i}",
                activity=[activity(dev, day + 3600_000, cost_micros=cost)],
            )
            request.activity[0].workspace = ws
            ingest_activity(s, request)

    db.run_sync(work)


def test_add_activity_fills_and_adds_rows(db: Database) -> None:
    seed(db)
    metered = [
        tpb.UsageRow(group="dev_alice", requests=5, cost_micros=33_000),
        tpb.UsageRow(group="dev_carol", requests=1, cost_micros=10),
    ]
    # The window touches one day (noon to 13:00): the whole day counts.
    req = tpb.QueryUsageRequest(group_by="developer", since_ms=NOON, until_ms=NOON + 3600_000)
    rows = db.read_sync(lambda s: add_activity(s, metered, req))
    by = {r.group: r for r in rows}
    assert [r.group for r in rows] == ["dev_alice", "dev_carol", "dev_bob"]
    alice = by["dev_alice"]
    assert (alice.requests, alice.cost_micros, alice.client_cost_micros) == (5, 33_000, 32_610)
    assert (alice.lines_added, alice.lines_removed, alice.commits, alice.pull_requests) == (
        6,
        1,
        1,
        1,
    )
    assert (alice.edits_accepted, alice.edits_rejected, alice.client_sessions) == (2, 0, 1)
    assert alice.developer_email == "alice@example.com" and alice.workspace == "team-a"
    assert by["dev_carol"].client_cost_micros == 0  # metered, no activity
    bob = by["dev_bob"]  # activity, no metered request: a row of its own
    assert (bob.requests, bob.client_cost_micros, bob.developer_email) == (
        0,
        5_000,
        "bob@example.com",
    )


def test_add_activity_window_and_filters(db: Database) -> None:
    seed(db)

    def query(**kw: Any) -> dict[str, int]:
        req = tpb.QueryUsageRequest(group_by="developer", **kw)
        rows = db.read_sync(lambda s: add_activity(s, [], req, kw.pop("scope", frozenset())))
        return {r.group: r.client_cost_micros for r in rows}

    assert query() == {"dev_alice": 33_617, "dev_bob": 5_000}
    assert query(since_ms=DAY + 1) == {"dev_alice": 32_617, "dev_bob": 5_000}
    assert query(until_ms=DAY) == {"dev_alice": 1_000}
    assert query(workspace="team-b") == {"dev_bob": 5_000}
    assert query(developer_id="dev_alice", since_ms=DAY, until_ms=DAY + DAY_MS) == {
        "dev_alice": 32_610
    }
    assert query(key_id="key_x") == {}  # keys have no activity
    rows = db.read_sync(
        lambda s: add_activity(
            s, [], tpb.QueryUsageRequest(group_by="developer"), frozenset({"team-a"})
        )
    )
    assert [r.group for r in rows] == ["dev_alice"]


async def test_query_usage_by_developer_carries_activity(
    cp: Running, dataplane: Clients, admin_clients: Clients
) -> None:
    """Through the real QueryUsage: activity joined to the developer rows by id."""
    await dataplane.telemetry.ReportActivity(
        tpb.ReportActivityRequest(node_id="dp-1", batch_id="q-1", activity=[activity()])
    )
    resp = await admin_clients.telemetry.QueryUsage(
        tpb.QueryUsageRequest(group_by="developer", since_ms=DAY, until_ms=DAY + DAY_MS)
    )
    [row] = resp.rows
    assert (row.group, row.client_cost_micros, row.commits) == ("dev_alice", 32_610, 1)
