"""The usage reporter: retries through outages, delivers in order, isolates a poison event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from dataplane.events import RequestRecord
from dataplane.reporter import Reporter
from dataplane.spool import Spool
from gwapi.v1 import telemetry_pb2


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class ControlPlane:
    """Records delivered request ids; can be down, or refuse one poison id as malformed."""

    def __init__(self) -> None:
        self.up = True
        self.poison = ""
        self.delivered: list[str] = []

    async def send(self, request: telemetry_pb2.ReportUsageRequest) -> int:
        if not self.up:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused")
        if any(e.request_id == self.poison for e in request.events):
            raise rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad event")
        for e in request.events:
            if e.request_id not in self.delivered:
                self.delivered.append(e.request_id)
        return request.last_seq


def record(i: int) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", dataplane_id="dp", path="/v1/messages", status=200)


@pytest.fixture
def cp() -> ControlPlane:
    return ControlPlane()


async def test_outage_then_delivery_in_order(tmp_path: Path, cp: ControlPlane) -> None:
    cp.up = False
    reporter = Reporter(Spool(tmp_path), cp.send, "dp", interval=0.01)
    task = asyncio.create_task(reporter.run())
    try:
        for i in range(20):
            reporter.record(record(i))
        await asyncio.sleep(0.2)
        assert cp.delivered == [] and reporter.backlog == 20
        cp.up = True
        async with asyncio.timeout(10):
            while reporter.backlog:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert cp.delivered == [f"r{i}" for i in range(20)]


async def test_poison_event_is_set_aside_not_blocking(tmp_path: Path, cp: ControlPlane) -> None:
    cp.poison = "r3"
    spool = Spool(tmp_path)
    reporter = Reporter(spool, cp.send, "dp", interval=0.01)
    for i in range(6):
        reporter.record(record(i))
    assert await reporter.flush()
    assert cp.delivered == ["r0", "r1", "r2", "r4", "r5"]
    assert reporter.backlog == 0
    assert b"r3" in (tmp_path / "rejected.log").read_bytes()
