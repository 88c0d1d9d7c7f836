"""Budget alerts end to end over real gRPC, on SQLite and PostgreSQL: ingest → detection →
one record per threshold and period → webhook → ListAlerts; and fresh spend in the snapshot."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from grpc import StatusCode

from controlplane.server import Running, running
from controlplane.usage import alerts as alerts_mod
from controlplane.usage.alert_monitor import AlertMonitor
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import (
    ADMIN_TOKEN,
    DATAPLANE_TOKEN,
    Clients,
    expect_error,
    make_settings,
)
from tests.fakes.slack import FakeSlack
from tests.fakes.webhook import WebhookSink
from tests.waiting import eventually

MONTH = pb.PERIOD_MONTH


FAST = {"spend_refresh_s": 0.2, "webhook_backoff_s": 0.02, "webhook_timeout_s": 2.0}


@pytest.fixture
async def cp(db_url: str) -> AsyncIterator[Running]:
    """Fast spend refresh and webhook retries, so tests wait milliseconds, not seconds. The
    webhook sinks listen on 127.0.0.1, so internal destinations are allowed here."""
    settings = make_settings(db_url, allow_internal_webhooks=True, **FAST)
    async with running(settings) as r:
        yield r


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def usage(rid: str, cost: int, *, key: str, ws: str = "team-a") -> tpb.UsageEvent:
    return tpb.UsageEvent(
        request_id=rid,
        time_ms=now_ms(),
        workspace=ws,
        key_id=key,
        key_name="alice",
        status=200,
        usage=pb.Usage(cost_micros=cost),
    )


async def report(dp: Clients, events: list[tpb.UsageEvent]) -> tpb.ReportUsageResponse:
    return await dp.telemetry.ReportUsage(
        tpb.ReportUsageRequest(node_id="dp-1", events=events, last_seq=1)
    )


async def setup(admin: Any, webhook: str = "") -> str:
    """team-a ($10/month, webhook) with key alice ($4/month); returns the key id."""
    await admin.CreateWorkspace(
        apb.CreateWorkspaceRequest(
            workspace=pb.Workspace(
                name="team-a",
                alert_webhook=webhook,
                limits=pb.Limits(budgets=[pb.Budget(amount_micros=10_000_000, period=MONTH)]),
            )
        )
    )
    await admin.CreateProvider(
        apb.CreateProviderRequest(provider=pb.Provider(name="sim", kind="simulator"))
    )
    created = await admin.CreateKey(
        apb.CreateKeyRequest(
            workspace="team-a",
            name="alice",
            provider="sim",
            limits=pb.Limits(budgets=[pb.Budget(amount_micros=4_000_000, period=MONTH)]),
        )
    )
    return str(created.key.id)


async def alerts(clients: Clients, **kw: Any) -> list[tpb.BudgetAlert]:
    resp = await clients.telemetry.ListAlerts(tpb.ListAlertsRequest(**kw))
    return list(resp.alerts)


def summary(items: list[tpb.BudgetAlert]) -> list[tuple[str, int]]:
    return [(a.scope, a.threshold_percent) for a in items]


async def test_each_threshold_is_recorded_once(
    cp: Running, admin: Any, admin_clients: Clients, dataplane: Clients
) -> None:
    with WebhookSink() as sink:
        key = await setup(admin, sink.url)
        batch1 = [usage("r1", 1_500_000, key=key), usage("r2", 500_000, key=key)]  # key 50 %
        batch2 = [usage("r3", 1_300_000, key=key)]  # key 82.5 %
        batch3 = [usage("r4", 3_000_000, key=key)]  # key 157.5 %, workspace 63 %
        for batch in (batch1, batch2, batch3):
            await report(dataplane, batch)
            await cp.state.alerts.idle()
        # Newest first; batch 3's two alerts share a time and come in reverse insertion order.
        assert summary(await alerts(admin_clients)) == [
            ("key", 100),
            ("workspace", 50),
            ("key", 80),
            ("key", 50),
        ]

        # Replays, a check from a second monitor (a restart, another replica) and concurrent
        # checks record nothing more.
        for batch in (batch3, batch1, batch2):
            resp = await report(dataplane, batch)
            assert resp.accepted == 0
        await cp.state.alerts.idle()
        twin = AlertMonitor(cp.state.db)
        results = await asyncio.gather(
            *(twin.check([key], ["team-a"]) for _ in range(4)),
            cp.state.alerts.check([key], ["team-a"]),
        )
        assert all(r == [] for r in results)
        await twin.close()

        listed = await alerts(admin_clients)
        assert len(listed) == 4
        by = {(a.scope, a.threshold_percent): a for a in listed}
        hundred = by[("key", 100)]
        assert (hundred.id, hundred.name, hundred.workspace) == (key, "alice", "team-a")
        assert hundred.budget == pb.Budget(amount_micros=4_000_000, period=MONTH)
        assert hundred.spent_micros == 6_300_000 and hundred.period_start_ms > 0
        assert by[("key", 50)].spent_micros == 2_000_000
        assert by[("workspace", 50)].id == "team-a"
        assert {a.webhook_status for a in listed} == {"delivered"}

        assert len(sink.bodies) == 4  # one POST per alert, none for replays
        body = next(b for b in sink.bodies if b["threshold_percent"] == 100)
        assert body["type"] == "budget_alert" and body["id"] == key and body["scope"] == "key"
        assert body["budget"] == "$4.00/month" and body["spent_usd"] == "6.300000"
        assert body["text"].startswith("Key 'alice' (workspace team-a) reached 100 % of its budget")
        assert body["period_end"].endswith("T00:00:00Z") and body["period"] == "month"
        assert sink.headers[0]["content-type"] == "application/json"


async def test_concurrent_ingests_cross_once(
    cp: Running, admin: Any, admin_clients: Clients, dataplane: Clients
) -> None:
    key = await setup(admin)
    batches = [[usage(f"c{i}", 450_000, key=key)] for i in range(12)]  # 5.4 of 4 dollars
    await asyncio.gather(*(report(dataplane, b) for b in batches))
    await cp.state.alerts.idle()
    await asyncio.gather(*(report(dataplane, b) for b in batches))  # and all of it again
    await cp.state.alerts.idle()
    listed = await alerts(admin_clients, workspace="team-a")
    assert sorted(summary(listed)) == [("key", 50), ("key", 80), ("key", 100), ("workspace", 50)]
    assert {a.webhook_status for a in listed} == {""}  # no webhook configured


async def test_list_alerts_filters(
    cp: Running, admin: Any, admin_clients: Clients, dataplane: Clients
) -> None:
    key = await setup(admin)
    await report(dataplane, [usage("x1", 4_000_000, key=key)])
    await cp.state.alerts.idle()
    assert len(await alerts(admin_clients)) == 3
    assert len(await alerts(admin_clients, workspace="team-a")) == 3
    assert await alerts(admin_clients, workspace="team-b") == []
    assert len(await alerts(admin_clients, limit=2)) == 2
    assert await alerts(admin_clients, since_ms=now_ms() + 60_000) == []
    assert len(await alerts(admin_clients, since_ms=now_ms() - 60_000)) == 3
    await expect_error(
        admin_clients.telemetry.ListAlerts(tpb.ListAlertsRequest(limit=-1)),
        StatusCode.INVALID_ARGUMENT,
        "limit",
    )


async def test_alert_trouble_never_fails_or_slows_ingest(
    cp: Running,
    admin: Any,
    admin_clients: Clients,
    dataplane: Clients,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with WebhookSink(delay_s=1.5) as slow:
        key = await setup(admin, slow.url)
        started = time.monotonic()
        resp = await report(dataplane, [usage("s1", 4_000_000, key=key)])
        assert resp.accepted == 1 and time.monotonic() - started < 1.0

        async def three_recorded() -> bool:
            return len(await alerts(admin_clients)) == 3

        await eventually(three_recorded, "the 3 alerts recorded (checked off the ingest path)")
        pending = await alerts(admin_clients)
        assert len(pending) == 3 and {a.webhook_status for a in pending} == {"pending"}
        await cp.state.alerts.idle()
        assert {a.webhook_status for a in await alerts(admin_clients)} == {"delivered"}

    def broken(*_: Any) -> None:
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(alerts_mod, "unrecorded", broken)
    with caplog.at_level(logging.ERROR):
        # The workspace reaches 50 %: a new threshold, so the recorder asks the database.
        resp = await report(dataplane, [usage("s2", 1_000_000, key=key)])
        await cp.state.alerts.idle()
    assert resp.accepted == 1
    assert "budget alert check failed" in caplog.text


async def test_ingested_spend_reaches_the_snapshot_soon(
    cp: Running, admin: Any, dataplane: Clients
) -> None:
    key = await setup(admin)
    cache = cp.state.cache
    before = cache.current
    assert before is not None
    seeds = {(e.scope, e.id): e.spent_micros for e in before.spend}
    assert seeds == {("key", key): 0, ("workspace", "team-a"): 0}

    published = cache.publication
    await report(dataplane, [usage("p1", 123_456, key=key)])
    assert await cache.wait_for_publication(published, timeout=3)
    # Spend travels on its own: the configuration's version does not move.
    assert cache.version == before.version and cache.spend_version
    after = cache.current
    assert after is not None
    assert {(e.scope, e.id): e.spent_micros for e in after.spend} == {
        ("key", key): 123_456,
        ("workspace", "team-a"): 123_456,
    }
    # A replay changes nothing, so no rebuild is even requested.
    published = cache.publication
    await report(dataplane, [usage("p1", 123_456, key=key)])
    assert not await cache.wait_for_publication(published, timeout=0.5)


async def test_internal_webhook_destinations_are_refused_by_default(db_url: str) -> None:
    """SSRF: a workspace-admin may set the webhook and trigger it at will (a tiny budget). With
    the default settings, internal IP literals are refused when saved, a name that resolves to
    loopback is refused when delivering, nothing reaches the internal receiver, and the status
    says nothing about how it would have answered."""
    with WebhookSink() as sink:
        async with (
            running(make_settings(db_url, **FAST)) as r,
            grpc.aio.insecure_channel(r.address) as channel,
        ):
            admin = Clients(channel, ADMIN_TOKEN).admin
            key = await setup(admin)
            lead = await admin.CreateToken(
                apb.CreateTokenRequest(name="lead", role="workspace-admin", workspaces=["team-a"])
            )
            as_lead = Clients(channel, lead.secret).admin

            def set_webhook(url: str) -> Any:
                return as_lead.UpdateWorkspace(
                    apb.UpdateWorkspaceRequest(
                        workspace=pb.Workspace(name="team-a", alert_webhook=url),
                        update_mask=FieldMask(paths=["alert_webhook"]),
                    )
                )

            for url in (
                f"http://127.0.0.1:{sink.port}/hooks",
                "http://10.0.0.1/x",
                "http://192.168.1.1/x",
                "http://169.254.169.254/latest/meta-data",
                "http://[::1]:8080/x",
                "http://[fd00::1]/x",
                "http://[::ffff:127.0.0.1]/x",
            ):
                await expect_error(
                    set_webhook(url),
                    StatusCode.INVALID_ARGUMENT,
                    "control plane delivers alerts to public addresses only",
                )
            await set_webhook(f"http://localhost:{sink.port}/hooks/tollgate")

            await report(Clients(channel, DATAPLANE_TOKEN), [usage("l1", 4_000_000, key=key)])
            await r.state.alerts.idle()
            listed = await alerts(Clients(channel, lead.secret))
            assert len(listed) == 3
            assert {a.webhook_status for a in listed} == {
                "refused: destination not allowed (internal address)"
            }
    assert sink.bodies == []


async def test_a_delivery_cut_short_by_a_shutdown_says_so(db_url: str) -> None:
    """Waiting out a receiver's Retry-After when the control plane stops: the alert does not
    stay "retrying" forever; after a restart it reads as interrupted, with its one attempt."""
    settings = make_settings(db_url, allow_internal_webhooks=True, webhook_max_delay_s=30, **FAST)
    with FakeSlack([(429, {"Retry-After": "30"})]) as slack:
        async with running(settings) as r, grpc.aio.insecure_channel(r.address) as channel:
            key = await setup(Clients(channel, ADMIN_TOKEN).admin, slack.url)
            await report(Clients(channel, DATAPLANE_TOKEN), [usage("i1", 2_100_000, key=key)])
            deadline = time.monotonic() + 10
            listed: list[tpb.BudgetAlert] = []
            while time.monotonic() < deadline:
                listed = await alerts(Clients(channel, ADMIN_TOKEN))
                if listed and listed[0].webhook_status.startswith("retrying"):
                    break
                await asyncio.sleep(0.05)
            (alert,) = listed
            assert alert.webhook_status == "retrying: HTTP 429"
            assert alert.webhook_next_attempt_ms - alert.webhook_last_attempt_ms >= 29_000
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 10  # the 30 s wait did not hold the shutdown
        async with running(settings) as r, grpc.aio.insecure_channel(r.address) as channel:
            (alert,) = await alerts(Clients(channel, ADMIN_TOKEN))
    assert alert.webhook_status == "failed: interrupted (the control plane stopped)"
    assert (alert.webhook_attempts, alert.webhook_next_attempt_ms) == (1, 0)
    assert len(slack.requests) == 1


async def test_thresholds_already_recorded_cost_no_query(
    cp: Running,
    admin: Any,
    admin_clients: Clients,
    dataplane: Clients,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A budget past a threshold stays a candidate at every spend refresh until its period ends;
    the monitor remembers what is recorded instead of asking the database each time."""
    key = await setup(admin)
    await report(dataplane, [usage("q1", 2_500_000, key=key)])  # key 62.5 %
    await cp.state.alerts.idle()
    assert summary(await alerts(admin_clients)) == [("key", 50)]
    asked: list[int] = []
    real = alerts_mod.unrecorded

    def counting(s: Any, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        asked.append(len(found))
        return real(s, found)

    monkeypatch.setattr(alerts_mod, "unrecorded", counting)
    for i in range(3):  # still 50 % and over, nothing new
        await report(dataplane, [usage(f"q-small-{i}", 10_000, key=key)])
        await cp.state.alerts.idle()
    assert asked == []
    await report(dataplane, [usage("q2", 700_000, key=key)])  # key 81.25 %
    await cp.state.alerts.idle()
    assert asked == [1]  # only the new threshold is looked up
    assert summary(await alerts(admin_clients)) == [("key", 80), ("key", 50)]
