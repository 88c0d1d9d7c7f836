"""Developers in snapshots (effective limits and target, spend seeds) and in usage: ingest,
QueryUsage by developer, TailLogs and StreamStats filters, budget alerts for developers."""

from __future__ import annotations

import logging
import time
from typing import Any

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.signin.conftest import ALICE, Flow, configure, workspace
from tests.fakes.oidc import Login

DAY = pb.Budget(amount_micros=10_000_000, period=pb.PERIOD_DAY)
BOB = Login(sub="sub-bob", email="bob@example.com", groups=["research"])


def event(
    rid: str, dev: pb.Developer | None, cost: int, workspace_name: str = "", key_id: str = ""
) -> tpb.UsageEvent:
    return tpb.UsageEvent(
        request_id=rid,
        time_ms=int(time.time() * 1000),
        workspace=dev.workspace if dev is not None else workspace_name,
        key_id=key_id,
        developer_id=dev.id if dev is not None else "",
        developer_email=dev.email if dev is not None else "",
        provider="sim",
        model_served="claude-sonnet-4-5",
        status=200,
        usage=pb.Usage(input_tokens=10, output_tokens=5, cost_micros=cost),
    )


async def report(dp: Any, *events: tpb.UsageEvent) -> None:
    await dp.telemetry.ReportUsage(
        tpb.ReportUsageRequest(node_id="dp-1", events=list(events), last_seq=1)
    )


async def alice_and_bob(flow: Flow, admin: Any) -> tuple[pb.Developer, pb.Developer]:
    """Alice (platform) and Bob (the workspace research) signed in: their developer records."""
    await workspace(admin, "research", ["research"])
    await flow.sign_in(ALICE)
    await flow.sign_in(BOB)
    alice = await admin.GetDeveloper(apb.GetDeveloperRequest(id="alice@example.com"))
    bob = await admin.GetDeveloper(apb.GetDeveloperRequest(id="bob@example.com"))
    return alice, bob


async def test_snapshot_developers_targets_and_seeds(
    flow: Flow, admin: Any, ready: Any, dp: Any
) -> None:
    await admin.CreateRoute(
        apb.CreateRouteRequest(route=pb.Route(name="rt", targets=[pb.RouteTarget(provider="sim")]))
    )
    await workspace(
        admin,
        "research",
        ["research"],
        member_route="rt",
        member_limits=pb.Limits(budgets=[DAY], rpm=9),
    )
    await flow.sign_in(ALICE)
    await flow.sign_in(BOB)
    alice = await admin.GetDeveloper(apb.GetDeveloperRequest(id="alice@example.com"))
    bob = await admin.GetDeveloper(apb.GetDeveloperRequest(id="bob@example.com"))
    await report(dp, event("r-1", bob, 4_000_000))
    await ready.state.cache.rebuild()
    snap = ready.state.cache.current
    devs = {d.email: d for d in snap.developers}
    # platform has no member target and there is exactly one provider: that one.
    assert (devs["alice@example.com"].provider, devs["alice@example.com"].route) == ("sim", "")
    assert (devs["bob@example.com"].provider, devs["bob@example.com"].route) == ("", "rt")
    assert devs["bob@example.com"].limits.rpm == 9 and not devs["bob@example.com"].disabled
    assert [d.id for d in snap.developers] == sorted(d.id for d in snap.developers)
    seeds = [(s.scope, s.id, s.spent_micros) for s in snap.spend if s.scope == "developer"]
    assert seeds == [("developer", bob.id, 4_000_000)]  # alice has no budget: no seed
    assert alice.id not in {s.id for s in snap.spend}


async def test_target_fallbacks_and_the_warning(
    flow: Flow, admin: Any, ready: Any, idp: Any, caplog: Any
) -> None:
    await flow.sign_in(ALICE)
    await admin.CreateProvider(
        apb.CreateProviderRequest(provider=pb.Provider(name="sim2", kind="simulator"))
    )
    caplog.set_level(logging.WARNING)
    await ready.state.cache.rebuild()
    dev = ready.state.cache.current.developers[0]
    assert (dev.provider, dev.route) == ("", "")  # two providers, no default: no target
    assert "no provider for signed-in developers in workspace 'platform'" in caplog.text
    assert ready.state.cache.notices and ready.state.cache.last_error == ""
    await configure(admin, idp, default_provider="sim2")
    assert ready.state.cache.current.developers[0].provider == "sim2"
    assert ready.state.cache.notices == ()


async def test_ingest_and_query_usage_by_developer(
    flow: Flow, admin: Any, dp: Any, admin_clients: Any
) -> None:
    alice, bob = await alice_and_bob(flow, admin)
    key = await admin.CreateKey(
        apb.CreateKeyRequest(workspace="platform", name="ci", provider="sim")
    )
    await report(
        dp,
        event("a-1", alice, 300),
        event("a-2", alice, 200),
        event("b-1", bob, 1_000),
        event("k-1", None, 50, "platform", key.key.id),
    )
    logged = await admin_clients.telemetry.GetLog(tpb.GetLogRequest(request_id="a-1"))
    assert (logged.developer_id, logged.developer_email, logged.key_id) == (
        alice.id,
        alice.email,
        "",
    )
    rows = (
        await admin_clients.telemetry.QueryUsage(tpb.QueryUsageRequest(group_by="developer"))
    ).rows
    shown = [(r.group, r.developer_email, r.workspace, r.requests, r.cost_micros) for r in rows]
    assert shown == [  # keyed by developer id, shown by email
        (bob.id, "bob@example.com", "research", 1, 1_000),
        (alice.id, "alice@example.com", "platform", 2, 500),
        ("", "", "", 1, 50),  # virtual-key traffic
    ]
    only = await admin_clients.telemetry.QueryUsage(tpb.QueryUsageRequest(developer_id=alice.id))
    assert (only.rows[0].requests, only.rows[0].cost_micros) == (2, 500)


async def test_tail_logs_and_stream_stats_by_developer(
    flow: Flow, admin: Any, dp: Any, admin_clients: Any
) -> None:
    alice, bob = await alice_and_bob(flow, admin)
    await report(dp, event("a-1", alice, 300), event("b-1", bob, 1_000))
    telemetry = admin_clients.telemetry
    tail = [
        ev.request_id async for ev in telemetry.TailLogs(tpb.TailLogsRequest(developer_id=bob.id))
    ]
    assert tail == ["b-1"]
    stream = telemetry.StreamStats(tpb.StreamStatsRequest(group_by="developer"))
    frame = await stream.read()
    stream.cancel()
    assert sorted(r.group for r in frame.rows) == ["alice@example.com", "bob@example.com"]


async def test_budget_alerts_for_developers(
    flow: Flow, admin: Any, dp: Any, ready: Any, admin_clients: Any
) -> None:
    await workspace(admin, "research", ["research"], member_limits=pb.Limits(budgets=[DAY]))
    await flow.sign_in(BOB)
    bob = await admin.GetDeveloper(apb.GetDeveloperRequest(id="bob@example.com"))
    await report(dp, event("b-1", bob, 8_500_000))
    await ready.state.alerts.idle()
    alerts = (await admin_clients.telemetry.ListAlerts(tpb.ListAlertsRequest())).alerts
    got = sorted((a.scope, a.id, a.threshold_percent, a.workspace, a.name) for a in alerts)
    assert got == [
        ("developer", bob.id, 50, "research", "bob@example.com"),
        ("developer", bob.id, 80, "research", "bob@example.com"),
    ]
    recorded = await ready.state.alerts.check([], [], developer_ids=[bob.id])
    assert recorded == []  # once per period
