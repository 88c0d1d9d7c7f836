"""Two control-plane replicas on one PostgreSQL database, each with its own fleet bus: what is
done through one is seen through the other at once (deadlines, never sleeps)."""

from __future__ import annotations

import asyncio
import time

import grpc
import psycopg
import pytest

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import Authed, seed_basics
from tests.controlplane.fleet.conftest import Replica, replica, within
from tests.controlplane.services.test_telemetry import T0, event
from tests.controlplane.usage import ledger_support
from tests.controlplane.usage.test_ledger_reconcile import old_release_insert

pytestmark = pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def test_a_change_through_b_reaches_a_snapshot_within_a_second(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    seeded = await seed_basics(b.admin.admin)
    key_id = seeded["key"].id

    async def a_has_key() -> bool:
        snap = a.cp.state.cache.current
        return snap is not None and any(k.id == key_id for k in snap.keys)

    await within(1.0, a_has_key, "a key created through B in A's snapshot")
    await b.admin.admin.RevokeKey(apb.RevokeKeyRequest(id=key_id))

    async def a_sees_revoked() -> bool:
        snap = a.cp.state.cache.current
        return snap is not None and any(k.id == key_id and k.revoked for k in snap.keys)

    await within(1.0, a_sees_revoked, "a key revoked through B revoked in A's snapshot")


async def test_an_admin_token_revoked_on_b_is_refused_on_a_at_once(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    created = await a.admin.admin.CreateToken(apb.CreateTokenRequest(name="ops", role="admin"))
    # A has the token cached (and B too): both accept it.
    for r in (a, b):
        await Authed(r.admin.admin._stub, created.secret).WhoAmI(apb.WhoAmIRequest())
    await b.admin.admin.RevokeToken(apb.RevokeTokenRequest(id=created.token.id))

    async def refused_on_a() -> bool:
        try:
            await Authed(a.admin.admin._stub, created.secret).WhoAmI(apb.WhoAmIRequest())
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in (exc.details() or "")
            return True
        return False

    took = await within(1.0, refused_on_a, "a token revoked on B refused on A")
    assert took < 0.25, f"A kept accepting a revoked token for {took:.3f} s"


async def test_tail_audit_on_a_shows_a_change_made_on_b(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    call = a.admin.admin.TailAudit(apb.TailAuditRequest(follow=True, limit=5), timeout=None)
    await b.admin.admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="made-on-b"))
    )
    await a.admin.admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="made-on-a"))
    )
    seen: list[str] = []
    while len(seen) < 2:
        ev = await asyncio.wait_for(call.read(), 2.0)
        assert ev is not grpc.aio.EOF
        seen.append(ev.resource)
    assert seen == ["made-on-b", "made-on-a"]  # each once, in commit order
    with pytest.raises(TimeoutError):  # and nothing twice
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(call.read())), 0.3)
    call.cancel()


async def test_tail_logs_and_stats_on_a_show_traffic_ingested_by_b(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    tail = a.admin.telemetry.TailLogs(tpb.TailLogsRequest(follow=True), timeout=None)
    stats = a.admin.telemetry.StreamStats(
        tpb.StreamStatsRequest(group_by="workspace", window_s=600), timeout=None
    )
    await asyncio.wait_for(stats.read(), 2.0)  # the first frame: subscribed
    t = int(time.time() * 1000)  # inside the stats window
    await b.dataplane.telemetry.ReportUsage(
        tpb.ReportUsageRequest(
            node_id="dp-b", last_seq=1, events=[event("via-b-1", t=t), event("via-b-2", t=t)]
        )
    )
    await a.dataplane.telemetry.ReportUsage(
        tpb.ReportUsageRequest(node_id="dp-a", last_seq=1, events=[event("via-a-1", t=t)])
    )
    got: list[str] = []
    while len(got) < 3:
        ev = await asyncio.wait_for(tail.read(), 2.0)
        assert ev is not grpc.aio.EOF
        got.append(ev.request_id)
    assert sorted(got) == ["via-a-1", "via-b-1", "via-b-2"]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(tail.read())), 0.3)
    tail.cancel()

    async def three_requests() -> bool:
        frame = await asyncio.wait_for(stats.read(), 2.0)
        return sum(round(r.requests_per_s * 600) for r in frame.rows) == 3

    await within(3.0, three_requests, "A's stats counting B's traffic")
    stats.cancel()


async def test_a_replica_that_lost_its_bus_catches_up_on_reconnect(
    pair: tuple[Replica, Replica], db_url: str
) -> None:
    a, b = pair
    bus = a.cp.state.fleet.bus
    tail = a.admin.telemetry.TailLogs(tpb.TailLogsRequest(follow=True), timeout=None)
    await b.dataplane.telemetry.ReportUsage(
        tpb.ReportUsageRequest(node_id="dp-b", last_seq=1, events=[event("before", t=T0)])
    )
    first = await asyncio.wait_for(tail.read(), 2.0)
    assert first.request_id == "before"
    created = await a.admin.admin.CreateToken(apb.CreateTokenRequest(name="ops", role="admin"))
    await Authed(a.admin.admin._stub, created.secret).WhoAmI(apb.WhoAmIRequest())  # cached
    connections = bus.connections
    now = int(time.time() * 1000)
    with psycopg.connect(db_url, autocommit=True) as admin:  # A's LISTEN session dies
        admin.execute("SELECT pg_terminate_backend(%s)", (bus.backend_pid,))
    # While A does not listen: traffic and a revocation through B.
    await b.dataplane.telemetry.ReportUsage(
        tpb.ReportUsageRequest(
            node_id="dp-b",
            last_seq=2,
            events=[event("during-1", t=now), event("during-2", t=now)],  # within the lookback
        )
    )
    await b.admin.admin.RevokeToken(apb.RevokeTokenRequest(id=created.token.id))
    await within(5.0, lambda: _true(bus.connections > connections), "A listens again")
    got = sorted([(await asyncio.wait_for(tail.read(), 5.0)).request_id for _ in range(2)])
    assert got == ["during-1", "during-2"]
    with pytest.raises(grpc.aio.AioRpcError, match="revoked"):
        await Authed(a.admin.admin._stub, created.secret).WhoAmI(apb.WhoAmIRequest())
    tail.cancel()


async def test_ingest_of_the_same_batches_through_both_replicas_counts_once(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    batches = [
        [event(f"r{n}-{i}", t=T0 + n * 100 + i, cost=1_000 + i) for i in range(50)]
        for n in range(20)
    ]

    async def send(r: Replica, node: str) -> tuple[int, int]:
        accepted = duplicates = 0
        for seq, batch in enumerate(batches, 1):
            resp = await r.dataplane.telemetry.ReportUsage(
                tpb.ReportUsageRequest(node_id=node, last_seq=seq, events=batch)
            )
            assert resp.acked_seq == seq
            accepted, duplicates = accepted + resp.accepted, duplicates + resp.duplicates
        return accepted, duplicates

    (acc_a, dup_a), (acc_b, dup_b) = await asyncio.gather(send(a, "dp-1"), send(b, "dp-1"))
    total = sum(len(batch) for batch in batches)
    assert acc_a + acc_b == total and dup_a + dup_b == total
    rows = (await a.admin.telemetry.QueryUsage(tpb.QueryUsageRequest())).rows
    assert rows[0].requests == total
    assert rows[0].cost_micros == sum(ev.usage.cost_micros for batch in batches for ev in batch)


async def test_exactly_one_leader_and_failover_when_it_closes(db_url: str) -> None:
    async with replica(db_url) as a:
        leader_a = a.cp.state.fleet.leader
        await within(2.0, lambda: _true(leader_a.is_leader), "A leads alone")
        async with replica(db_url) as b:
            leader_b = b.cp.state.fleet.leader
            # B keeps trying (every 0.1 s) and never leads while A does.
            tried = leader_b.attempts
            await within(2.0, lambda: _true(leader_b.attempts >= tried + 3), "B tries the lock")
            assert leader_a.is_leader and not leader_b.is_leader
            await leader_a.close()  # A steps down (as on shutdown): its session ends
            took = await within(1.0, lambda: _true(leader_b.is_leader), "B takes over")
            assert took < 0.5
            assert {name for name, _ in leader_b.jobs} >= {"log-body-purge", "signin-purge"}
            assert {t.get_name() for t in leader_b._running} == {n for n, _ in leader_b.jobs}


async def _true(value: bool) -> bool:
    return value


async def test_the_leader_counts_what_a_previous_release_stores(db_url: str) -> None:
    """A replica of the previous release (its Core insert, no ledger_counted) ingests alongside
    this release's: the leader's reconciler brings its events into the totals and rollups."""
    new = [event(f"new-{i}", t=T0 + i, cost=1_000 + i) for i in range(30)]
    old = [event(f"old-{i}", t=T0 + 100 + i, cost=2_000 + i) for i in range(40)]
    async with replica(db_url) as a:
        await within(2.0, lambda: _true(a.cp.state.fleet.leader.is_leader), "A leads")
        assert "ledger-reconcile" in {t.get_name() for t in a.cp.state.fleet.leader._running}
        await a.dataplane.telemetry.ReportUsage(
            tpb.ReportUsageRequest(node_id="dp-new", last_seq=1, events=new)
        )
        assert await asyncio.to_thread(old_release_insert, a.cp.state.db.engine, old) == 40
        cost = sum(ev.usage.cost_micros for ev in new + old)

        async def counted() -> bool:
            rows = (await a.admin.telemetry.QueryUsage(tpb.QueryUsageRequest())).rows
            return bool(rows) and (rows[0].requests, rows[0].cost_micros) == (70, cost)

        await within(10.0, counted, "the previous release's events are in the rollups")
        totals = await a.cp.state.db.read(ledger_support.totals)
        assert totals == await a.cp.state.db.read(ledger_support.raw_totals)


async def test_spend_ingested_by_b_raises_one_alert_recorded_by_the_leader(db_url: str) -> None:
    """Alerts are recorded by the leader alone, from its spend refresh: traffic ingested by
    another replica (no data plane connected to the leader) still crosses the thresholds."""
    fast = {"spend_refresh_s": 0.2}
    async with replica(db_url, **fast) as a:
        await within(2.0, lambda: _true(a.cp.state.fleet.leader.is_leader), "A leads")
        async with replica(db_url, **fast) as b:
            assert not b.cp.state.fleet.leader.is_leader
            month = pb.Budget(amount_micros=1_000_000, period=pb.PERIOD_MONTH)
            await a.admin.admin.CreateWorkspace(
                apb.CreateWorkspaceRequest(
                    workspace=pb.Workspace(name="team-a", limits=pb.Limits(budgets=[month]))
                )
            )
            now = int(time.time() * 1000)
            for seq, (rid, cost) in enumerate((("b-1", 300_000), ("b-2", 300_000)), 1):
                await b.dataplane.telemetry.ReportUsage(
                    tpb.ReportUsageRequest(
                        node_id="dp-b", last_seq=seq, events=[event(rid, t=now, cost=cost)]
                    )
                )

            async def listed() -> list[tuple[str, int, int]]:
                resp = await b.admin.telemetry.ListAlerts(tpb.ListAlertsRequest())
                return [(x.id, x.threshold_percent, x.spent_micros) for x in resp.alerts]

            async def fifty() -> bool:
                return len(await listed()) == 1

            await within(5.0, fifty, "the 50 % alert, recorded by A")
            assert await listed() == [("team-a", 50, 600_000)]
            await a.cp.state.alerts.idle()
            await b.cp.state.alerts.idle()
            assert await listed() == [("team-a", 50, 600_000)]  # once, though both refreshed
