"""Telemetry: idempotent ReportUsage, QueryUsage grouping, TailLogs (+follow), real gRPC."""

import asyncio
import datetime as dt
from typing import Any

import grpc
import pytest
from grpc import StatusCode

from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import Clients, expect_error

DAY_MS = 86_400_000
T0 = int(dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC).timestamp() * 1000)


def event(
    rid: str,
    *,
    t: int = T0,
    ws: str = "team-a",
    key: str = "key_a",
    model: str = "claude-sonnet-4-5",
    served: str = "",
    provider: str = "anthropic",
    session: str = "s1",
    status: int = 200,
    cost: int = 1_000,
    tin: int = 10,
    tout: int = 20,
    meta: dict[str, str] | None = None,
) -> tpb.UsageEvent:
    return tpb.UsageEvent(
        request_id=rid,
        time_ms=t,
        workspace=ws,
        key_id=key,
        key_name=f"{key}-name",
        session_id=session,
        metadata=meta or {},
        model_requested=model,
        model_served=served,
        provider=provider,
        attempts=1,
        status=status,
        stream=True,
        path="/v1/messages",
        usage=pb.Usage(
            input_tokens=tin,
            output_tokens=tout,
            cache_creation_input_tokens=3,
            cache_read_input_tokens=4,
            cache_write_5m_tokens=2,
            cache_write_1h_tokens=1,
            cost_micros=cost,
            priced_as="claude-sonnet-4-5",
        ),
    )


async def report(dp: Clients, events: list[tpb.UsageEvent], seq: int) -> tpb.ReportUsageResponse:
    return await dp.telemetry.ReportUsage(
        tpb.ReportUsageRequest(node_id="dp-1", events=events, last_seq=seq)
    )


async def totals(admin_clients: Clients, **kw: object) -> tpb.UsageRow:
    resp = await admin_clients.telemetry.QueryUsage(tpb.QueryUsageRequest(**kw))  # type: ignore[arg-type]
    (row,) = resp.rows
    return row


async def test_report_usage_is_idempotent(cp, dataplane, admin_clients) -> None:
    batch = [event("r1", cost=100), event("r2", cost=200, status=529), event("r3", cost=300)]
    first = await report(dataplane, batch, seq=3)
    assert (first.accepted, first.duplicates, first.acked_seq) == (3, 0, 3)
    before = await totals(admin_clients)
    assert (before.requests, before.errors, before.cost_micros) == (3, 1, 600)
    assert (before.input_tokens, before.output_tokens) == (30, 60)
    assert (before.cache_creation_input_tokens, before.cache_read_input_tokens) == (9, 12)

    replay = await report(dataplane, batch, seq=3)
    assert (replay.accepted, replay.duplicates, replay.acked_seq) == (0, 3, 3)
    assert await totals(admin_clients) == before

    mixed = await report(dataplane, [event("r3"), event("r4", cost=5), event("r4", cost=5)], seq=5)
    assert (mixed.accepted, mixed.duplicates, mixed.acked_seq) == (1, 2, 5)
    after = await totals(admin_clients)
    assert (after.requests, after.cost_micros) == (4, 605)


async def test_report_large_batch_and_empty_batch(dataplane, admin_clients) -> None:
    resp = await report(dataplane, [event(f"big-{i}", cost=1) for i in range(450)], seq=450)
    assert (resp.accepted, resp.duplicates) == (450, 0)
    assert (await totals(admin_clients)).requests == 450
    empty = await report(dataplane, [], seq=451)
    assert (empty.accepted, empty.duplicates, empty.acked_seq) == (0, 0, 451)


async def test_report_rejects_events_without_request_id(dataplane, admin_clients) -> None:
    await expect_error(
        report(dataplane, [event("ok"), event("")], seq=2),
        StatusCode.INVALID_ARGUMENT,
        "event #1: request_id is required",
    )
    assert (await totals(admin_clients)).requests == 0  # nothing of the batch was stored


async def test_query_usage_grouping(dataplane, admin_clients) -> None:
    await report(
        dataplane,
        [
            event("a1", ws="team-a", key="key_a", cost=500, meta={"project": "web"}, session="s1"),
            event(
                "a2",
                ws="team-a",
                key="key_a",
                cost=100,
                meta={"project": "api"},
                session="s2",
                status=429,
                model="claude-opus-4-8",
                served="claude-opus-4-8",
                provider="bedrock",
            ),
            event(
                "a3",
                ws="team-a",
                key="key_b",
                cost=50,
                meta={"project": "web", "env": "dev"},
                t=T0 + DAY_MS,
            ),
            event("b1", ws="team-b", key="key_c", cost=1_000, t=T0 + 2 * DAY_MS),
        ],
        seq=4,
    )

    async def rows(group_by: str, **kw: Any) -> list[tuple[str, int, int, int]]:
        resp = await admin_clients.telemetry.QueryUsage(
            tpb.QueryUsageRequest(group_by=group_by, **kw)
        )
        return [(r.group, r.requests, r.errors, r.cost_micros) for r in resp.rows]

    assert await rows("") == [("", 4, 1, 1650)]
    assert await rows("workspace") == [("team-b", 1, 0, 1000), ("team-a", 3, 1, 650)]
    assert await rows("key") == [("key_c", 1, 0, 1000), ("key_a", 2, 1, 600), ("key_b", 1, 0, 50)]
    assert await rows("model") == [
        ("claude-sonnet-4-5", 3, 0, 1550),
        ("claude-opus-4-8", 1, 1, 100),
    ]
    assert await rows("provider") == [("anthropic", 3, 0, 1550), ("bedrock", 1, 1, 100)]
    assert await rows("session", workspace="team-a") == [("s1", 2, 0, 550), ("s2", 1, 1, 100)]
    assert await rows("day") == [
        ("2025-03-01", 2, 1, 600),
        ("2025-03-02", 1, 0, 50),
        ("2025-03-03", 1, 0, 1000),
    ]
    assert await rows("metadata.project") == [
        ("", 1, 0, 1000),
        ("web", 2, 0, 550),
        ("api", 1, 1, 100),
    ]
    assert await rows("metadata.project", workspace="team-a") == [
        ("web", 2, 0, 550),
        ("api", 1, 1, 100),
    ]
    assert await rows("metadata.env") == [("", 3, 1, 1600), ("dev", 1, 0, 50)]
    # Filters: key, and the [since, until) window.
    assert await rows("", key_id="key_a") == [("", 2, 1, 600)]
    assert await rows("", since_ms=T0 + DAY_MS) == [("", 2, 0, 1050)]
    assert await rows("", since_ms=T0, until_ms=T0 + DAY_MS) == [("", 2, 1, 600)]
    assert await rows("", workspace="nobody") == [("", 0, 0, 0)]
    assert await rows("workspace", workspace="nobody") == []


async def test_query_usage_validation(admin_clients) -> None:
    for bad in ("team", "metadata.", "metadata.a b", "cost"):
        await expect_error(
            admin_clients.telemetry.QueryUsage(tpb.QueryUsageRequest(group_by=bad)),
            StatusCode.INVALID_ARGUMENT,
            "unknown group_by",
        )
    await expect_error(
        admin_clients.telemetry.QueryUsage(tpb.QueryUsageRequest(since_ms=10, until_ms=5)),
        StatusCode.INVALID_ARGUMENT,
        "until_ms",
    )


async def collect(
    call: grpc.aio.UnaryStreamCall, n: int, timeout: float = 3.0
) -> list[tpb.UsageEvent]:
    out: list[tpb.UsageEvent] = []
    while len(out) < n:
        msg = await asyncio.wait_for(call.read(), timeout)
        assert msg is not grpc.aio.EOF
        out.append(msg)
    return out


async def test_tail_logs_history(dataplane, admin_clients) -> None:
    full = event("full", t=T0 - 1, meta={"project": "x"}, served="claude-sonnet-4-5-20250929")
    await report(
        dataplane,
        [full] + [event(f"r{i}", t=T0 + i, ws="team-b" if i % 2 else "team-a") for i in range(30)],
        seq=1,
    )
    got = [e async for e in admin_clients.telemetry.TailLogs(tpb.TailLogsRequest())]
    assert [e.request_id for e in got] == [
        f"r{i}" for i in range(10, 30)
    ]  # default 20, oldest first
    got = [
        e
        async for e in admin_clients.telemetry.TailLogs(
            tpb.TailLogsRequest(limit=3, workspace="team-a")
        )
    ]
    assert [e.request_id for e in got] == ["r24", "r26", "r28"]
    got = [e async for e in admin_clients.telemetry.TailLogs(tpb.TailLogsRequest(limit=100))]
    assert got[0] == full  # every field survives the ledger round trip


async def test_tail_logs_follow_receives_new_events(cp, dataplane, admin_clients) -> None:
    await report(dataplane, [event("old-1", t=T0), event("old-2", t=T0 + 1)], seq=2)
    call = admin_clients.telemetry.TailLogs(
        tpb.TailLogsRequest(follow=True, limit=5, key_id="key_a"), timeout=None
    )
    history = await collect(call, 2)
    assert [e.request_id for e in history] == ["old-1", "old-2"]
    await report(
        dataplane, [event("new-1", t=T0 + 5), event("other", key="key_z"), event("old-1")], seq=4
    )
    (live,) = await collect(call, 1)
    assert live.request_id == "new-1"  # other keys filtered out, replayed duplicates not re-sent
    await report(dataplane, [event("new-2", t=T0 + 6)], seq=5)
    assert [e.request_id for e in await collect(call, 1)] == ["new-2"]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(asyncio.ensure_future(call.read())), 0.2)
    assert cp.state.hub.subscriber_count == 1
    call.cancel()
    for _ in range(100):  # the server drops the subscription when the client goes away
        if cp.state.hub.subscriber_count == 0:
            break
        await asyncio.sleep(0.02)
    assert cp.state.hub.subscriber_count == 0
