"""Telemetry.StreamStats over real gRPC: frames every second, fed by ReportUsage."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import StatusCode

from controlplane.server import Running
from gwapi.v1 import telemetry_pb2 as tpb
from tests.controlplane.conftest import Clients, expect_error
from tests.controlplane.services.test_telemetry import event, report


@pytest.fixture
def db_url(sqlite_url: str) -> str:  # one backend is enough: the stats never touch SQL
    return sqlite_url


async def next_frame(call: grpc.aio.UnaryStreamCall, timeout: float = 3.0) -> tpb.StatsFrame:
    msg = await asyncio.wait_for(call.read(), timeout)
    assert msg is not grpc.aio.EOF
    return msg


async def test_stream_stats_frames_follow_ingest(
    cp: Running, dataplane: Clients, admin_clients: Clients
) -> None:
    now_ms = 1_800_000_000_900  # .9 s into a second: the servicer's next tick is 100 ms away
    cp.state.stats.clock = lambda: now_ms / 1000
    call = admin_clients.telemetry.StreamStats(
        tpb.StreamStatsRequest(group_by="provider", window_s=5), timeout=None
    )
    first = await next_frame(call)
    assert first.time_ms == now_ms and list(first.rows) == []

    evs = [event(f"s{i}", t=now_ms - 1_000 * (i % 2), status=200 if i else 500) for i in range(4)]
    evs.append(event("b1", t=now_ms, provider="bedrock", ws="team-b"))
    await report(dataplane, evs, seq=1)
    for _ in range(30):  # at most a second or so of real time
        frame = await next_frame(call)
        if frame.rows:
            break
    rows = {r.group: r for r in frame.rows}
    assert set(rows) == {"anthropic", "bedrock"}
    assert rows["anthropic"].requests_per_s == pytest.approx(4 / 5)
    assert rows["anthropic"].error_rate == pytest.approx(1 / 4)
    assert list(rows["anthropic"].requests_per_second) == [0, 0, 0, 2, 2]
    assert rows["anthropic"].cost_micros == 4_000
    call.cancel()

    narrowed = admin_clients.telemetry.StreamStats(
        tpb.StreamStatsRequest(group_by="workspace", workspace="team-b"), timeout=None
    )
    frame = await next_frame(narrowed)
    assert [r.group for r in frame.rows] == ["team-b"]
    assert len(frame.rows[0].requests_per_second) == 60  # window_s 0 = 60
    narrowed.cancel()


async def test_stream_stats_rejects_bad_requests_and_needs_admin(
    cp: Running, dataplane: Clients, admin_clients: Clients
) -> None:
    async def first(clients: Clients, req: tpb.StreamStatsRequest) -> tpb.StatsFrame:
        call = clients.telemetry.StreamStats(req, timeout=5)
        try:
            return await next_frame(call)
        finally:
            call.cancel()

    await expect_error(
        first(admin_clients, tpb.StreamStatsRequest(group_by="model")),
        StatusCode.INVALID_ARGUMENT,
        "group_by",
    )
    await expect_error(
        first(admin_clients, tpb.StreamStatsRequest(group_by="key", window_s=601)),
        StatusCode.INVALID_ARGUMENT,
        "window_s",
    )
    await expect_error(
        first(dataplane, tpb.StreamStatsRequest(group_by="key")), StatusCode.UNAUTHENTICATED
    )
