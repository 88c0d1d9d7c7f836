"""Infrastructure faults with a real control plane: a data plane's SIGTERM during 50 streams, and
a spool disk that refuses writes while the control plane is down.

The control plane's own restart (killed, data plane keeps serving, usage replayed once) is
``test_gateway.py::test_control_plane_outage_loses_nothing_and_counts_nothing_twice``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import dataplane.sync.spool
from dataplane.private import open_append
from dataplane.process.server import DataPlane, Settings
from gwclient.client import GatewayClient
from tests.e2e.faults_support import MODEL, SMALL_USAGE, TcpProxy, sse_names
from tests.e2e.test_gateway import (
    DP_TOKEN,
    ControlPlaneProcess,
    alice_on_control_plane,
    call,
    free_port,
    spawn_dp,
    start_dp,
    total,
    wait_for,
)
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic, Scripted, stream_frames

pytestmark = pytest.mark.e2e

CHUNKS = 15


@dataclass
class Setup:
    cp: ControlPlaneProcess
    admin: GatewayClient
    upstream: FakeAnthropic
    secret: str
    tmp: Path


@pytest.fixture
async def setup(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Setup]:
    async with alice_on_control_plane(sqlite_url, tmp_path) as s:
        yield Setup(s.cp, s.admin, s.upstream, s.created.secret, tmp_path)


def slow_answer(_req: object) -> Scripted:
    frames = stream_frames(MODEL, [f" w{i}" for i in range(CHUNKS)], usage=SMALL_USAGE)
    return Scripted(headers=[(b"content-type", b"text/event-stream")], frames=frames, delay=0.1)


async def stream_from(port: int, secret: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        return await call(client, secret)


async def balanced(ports: list[int], secret: str) -> tuple[int, httpx.Response]:
    """What a load balancer (or a retrying client) does: next replica on a refusal or a 503."""
    for port in ports:
        try:
            r = await stream_from(port, secret)
        except httpx.ConnectError:
            continue
        if r.status_code != 503:
            return port, r
    raise AssertionError("no replica served the request")


@pytest.mark.slow
async def test_sigterm_during_50_streams_drains_them_and_sends_new_work_elsewhere(
    setup: Setup,
) -> None:
    s = setup
    s.upstream.on_request = slow_answer
    port = free_port()
    log = s.tmp / "dp1.log"
    proc = spawn_dp(
        s.cp.address, port, s.tmp / "dp1", log, "--drain-seconds", "2", "--graceful-s", "10"
    )
    other: DataPlane | None = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as probe:

            async def healthy() -> bool:
                try:
                    return (await probe.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(healthy, timeout=20, interval=0.05)
        other = await start_dp(s.cp, s.tmp / "dp2")
        await other.wait_for_snapshot()

        streams = [asyncio.create_task(stream_from(port, s.secret)) for _ in range(50)]

        async def all_upstream() -> bool:
            return len(s.upstream.requests) >= 50

        try:
            await wait_for(all_upstream, timeout=20)
        except AssertionError:
            failed = [repr(t.exception()) for t in streams if t.done() and t.exception()]
            raise AssertionError(f"upstream saw {len(s.upstream.requests)}; {failed[:3]}") from None
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as probe:

            async def draining() -> bool:
                r = await probe.get("/healthz")
                return r.status_code == 503 and r.json()["status"] == "draining"

            await wait_for(draining, timeout=1.0, interval=0.01)
            # Still listening (the drain period), but new work is turned away with a 503.
            refused = await call(probe, s.secret)
        assert refused.status_code == 503 and refused.headers["connection"] == "close"
        assert refused.json()["error"]["type"] == "overloaded_error"
        assert "shutting down" in refused.json()["error"]["message"]
        port_used, r = await balanced([port, other.port], s.secret)
        assert port_used == other.port and r.status_code == 200

        results = await asyncio.gather(*streams)
        for r in results:
            names = sse_names(r.content)
            assert r.status_code == 200 and names[-1] == "message_stop", names[-3:]
            assert names.count("content_block_delta") == CHUNKS and "error" not in names
        assert proc.wait(timeout=15) == 0, log.read_text()[-2000:]
        assert time.monotonic() - signalled < 2 + 10  # drain + grace
        # Gone for good: connections are refused, and the balancer keeps using the other one.
        port_used, r = await balanced([port, other.port], s.secret)
        assert port_used == other.port and r.status_code == 200

        async def all_counted() -> bool:
            return (await total(s.admin))[0] == 52

        try:
            await wait_for(all_counted, timeout=15)  # the 50 drained + 2 served elsewhere, once
        except AssertionError:
            spool = sorted(f.name for f in (s.tmp / "dp1" / "spool").iterdir())
            raise AssertionError(f"counted {await total(s.admin)}; dp1 spool {spool}") from None
        await asyncio.sleep(0.5)
        assert (await total(s.admin))[0] == 52
    finally:
        print(f"data plane exit code {proc.poll()}; its log:\n{log.read_text()[-4000:]}")
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if other is not None:
            await other.stop()


def enospc_for(spool_dir: Path) -> Any:
    """``open_append`` as seen by the spool module: appends under ``spool_dir`` fail like a
    full disk."""

    def full_disk_open(path: Path) -> int:
        if path.parent == spool_dir:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return open_append(path)

    return full_disk_open


async def test_spool_disk_full_while_control_plane_down_keeps_usage_in_memory(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = setup
    host, _, cp_port = s.cp.address.rpartition(":")
    link = TcpProxy(host, int(cp_port))  # the data plane's only way to the control plane
    await link.start()
    dp = DataPlane(
        Settings(
            listen="127.0.0.1:0",
            control_plane=f"127.0.0.1:{link.port}",
            token=DP_TOKEN,
            state_dir=s.tmp / "dp",
            env={"UPSTREAM_KEY": UPSTREAM_KEY},
        )
    )
    await dp.start()
    try:
        await dp.wait_for_snapshot()
        await link.kill()  # the control plane is unreachable from here on
        spool_dir = dp.settings.state_dir / "spool"
        monkeypatch.setattr(dataplane.sync.spool, "open_append", enospc_for(spool_dir))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=10) as c:
            for _ in range(6):  # still served: usage goes to memory, not to the full disk
                r = await call(c, s.secret)
                assert r.status_code == 200 and sse_names(r.content)[-1] == "message_stop"

            async def in_memory() -> bool:
                return dp.spool.memory_only == 6

            await wait_for(in_memory, timeout=5)
            assert dp.spool.write_failing and dp.spool.dropped == 0
            assert not list(spool_dir.glob("seg-*.log"))  # nothing reached the disk
            metrics = (await c.get("/metrics")).text
        assert "tollgate_usage_spool_write_failing 1" in metrics
        assert "tollgate_usage_memory_only 6" in metrics
        assert any("cannot write usage events to disk" in m for m in caplog.messages)
        # One error per episode, not one per batch.
        assert sum("cannot write usage events" in m for m in caplog.messages) == 1

        await link.restore()  # the control plane is back; the disk is still full

        async def delivered() -> bool:
            try:
                return (await total(s.admin))[0] == 6
            except Exception:
                return False

        await wait_for(delivered, timeout=20)
        await wait_for(lambda: _drained(dp), timeout=5)
        assert dp.spool.memory_only == 0 and dp.spool.dropped == 0
    finally:
        await dp.stop()
        await link.kill()


async def _drained(dp: DataPlane) -> bool:
    return dp.reporter is not None and dp.reporter.backlog == 0
