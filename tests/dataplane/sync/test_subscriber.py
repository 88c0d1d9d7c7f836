"""The data plane's Watch client against a scripted Discovery server: ACK, NACK, cache, reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dataplane.sync.disk_cache import SNAPSHOT_FILE, load_cached
from dataplane.sync.subscriber import Subscriber
from gwapi.v1 import discovery_pb2, discovery_pb2_grpc
from tests.dataplane import runtimes
from tests.dataplane.conftest import build_snapshot


class ScriptedDiscovery:
    """Sends each scripted snapshot in turn, recording every request it gets (the Watch that
    :class:`Latest`, the servicer, delegates to)."""

    def __init__(self, snapshots: list[discovery_pb2.Snapshot]) -> None:
        self.snapshots = snapshots
        self.requests: list[discovery_pb2.WatchRequest] = []
        self.metadata: list[tuple[str, str]] = []
        self.streams = 0

    async def Watch(self, request_iterator, context):
        self.streams += 1
        self.metadata = list(context.invocation_metadata())
        first = await request_iterator.__anext__()
        self.requests.append(first)
        for i, snap in enumerate(self.snapshots):
            if snap.version == first.version_info:
                continue
            yield discovery_pb2.WatchResponse(version=snap.version, nonce=f"n{i}", snapshot=snap)
            self.requests.append(await request_iterator.__anext__())
        async for request in request_iterator:  # status reports, until the client goes
            self.requests.append(request)


class Latest(discovery_pb2_grpc.DiscoveryServicer):
    """Delegates each new stream to the most recently installed script. It serves Watch only:
    DeltaWatch and ListDataPlanes answer UNIMPLEMENTED, as a control plane of the previous
    version does (so it is made under ``type: ignore[abstract]``)."""

    def __init__(self, scripts: list[ScriptedDiscovery]) -> None:
        self.scripts = scripts

    async def Watch(self, request_iterator, context):
        async for response in self.scripts[-1].Watch(request_iterator, context):
            yield response


@pytest.fixture
async def server() -> AsyncIterator[tuple[grpc.aio.Server, int, list[ScriptedDiscovery]]]:
    srv = grpc.aio.server()
    holder: list[ScriptedDiscovery] = []
    port = srv.add_insecure_port("127.0.0.1:0")

    discovery_pb2_grpc.add_DiscoveryServicer_to_server(Latest(holder), srv)  # type: ignore[abstract]
    await srv.start()
    yield srv, port, holder
    await srv.stop(0)


def bad_snapshot() -> discovery_pb2.Snapshot:
    snap = build_snapshot("http://127.0.0.1:1", version="bad")
    snap.keys[0].workspace = "no-such-workspace"
    return snap


async def until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_ack_nack_and_disk_cache(server, tmp_path: Path) -> None:
    _, port, holder = server
    good = build_snapshot("http://127.0.0.1:1", version="good")
    script = ScriptedDiscovery([good, bad_snapshot()])
    holder.append(script)
    snapshots = runtimes.holder()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        sub = Subscriber(channel, "dp-secret", snapshots, tmp_path, "dp-1", "127.0.0.1:8080")
        task = asyncio.create_task(sub.run())
        try:
            await until(lambda: len(script.requests) == 3)
        finally:
            task.cancel()
    first, ack, nack = script.requests
    # This server has no DeltaWatch (a control plane of the previous version): Watch is used.
    assert sub.use_delta is False
    assert first.node_id == "dp-1" and first.version_info == "" and first.listen == "127.0.0.1:8080"
    assert (ack.version_info, ack.response_nonce, ack.error_detail) == ("good", "n0", "")
    assert nack.version_info == "good" and nack.response_nonce == "n1"
    assert "no-such-workspace" in nack.error_detail
    assert ("authorization", "Bearer dp-secret") in script.metadata
    # The good snapshot kept serving and is what a restart would load from disk.
    assert snapshots.current is not None and snapshots.current.version == "good"
    cached = load_cached(tmp_path)
    assert cached is not None and cached.version == "good"
    assert (tmp_path / SNAPSHOT_FILE).stat().st_mode & 0o777 == 0o600


async def test_reconnect_sends_the_version_it_runs(server, tmp_path: Path) -> None:
    srv, port, holder = server
    good = build_snapshot("http://127.0.0.1:1", version="good")
    holder.append(ScriptedDiscovery([good]))
    snapshots = runtimes.holder()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        sub = Subscriber(channel, "t", snapshots, tmp_path, "dp-1", "x")
        task = asyncio.create_task(sub.run())
        try:
            await until(lambda: snapshots.current is not None)
            second = ScriptedDiscovery([good])
            holder.append(second)
            # Break the stream; the subscriber must come back announcing the version it has,
            # so the server need not resend an identical snapshot.
            await srv.stop(0)
            srv2 = grpc.aio.server()

            discovery_pb2_grpc.add_DiscoveryServicer_to_server(Latest(holder), srv2)  # type: ignore[abstract]
            srv2.add_insecure_port(f"127.0.0.1:{port}")
            await srv2.start()
            try:
                await until(lambda: len(second.requests) == 1, timeout=10)
            finally:
                await srv2.stop(0)
        finally:
            task.cancel()
    assert second.requests[0].version_info == "good"
    assert len(second.requests) == 1  # nothing was resent, so nothing needed an ACK


async def test_breaker_states_reported_on_change(server, tmp_path: Path) -> None:
    _, port, holder = server
    good = build_snapshot("http://127.0.0.1:1", version="good")
    script = ScriptedDiscovery([good])
    holder.append(script)
    states = {"p1": "closed", "p2": "open"}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        sub = Subscriber(
            channel, "t", runtimes.holder(), tmp_path, "dp-1", "x",
            status=lambda: dict(states), status_interval=0.02,
        )  # fmt: skip
        task = asyncio.create_task(sub.run())
        try:
            await until(lambda: len(script.requests) == 2)
            # Unchanged states send nothing more.
            await asyncio.sleep(0.2)
            assert len(script.requests) == 2
            states["p1"] = "half_open"
            await until(lambda: len(script.requests) == 3)
            states.update(p1="closed", p2="closed")
            await until(lambda: len(script.requests) == 4)
            await asyncio.sleep(0.1)
        finally:
            task.cancel()
    first, ack, change, cleared = script.requests
    # Closed breakers are not reported; the first request and the ACK carry the others.
    assert dict(first.breakers) == {"p2": "open"}
    assert ack.response_nonce == "n0" and dict(ack.breakers) == {"p2": "open"}
    # A status-only request: the version it runs, no nonce, so it is neither ACK nor NACK.
    assert (change.node_id, change.version_info, change.response_nonce) == ("dp-1", "good", "")
    assert change.error_detail == ""
    assert dict(change.breakers) == {"p1": "half_open", "p2": "open"}
    assert cleared.response_nonce == "" and dict(cleared.breakers) == {}
    assert len(script.requests) == 4


async def test_failing_status_does_not_break_the_stream(server, tmp_path: Path) -> None:
    _, port, holder = server
    script = ScriptedDiscovery([build_snapshot("http://127.0.0.1:1", version="good")])
    holder.append(script)

    def broken() -> dict[str, str]:
        raise RuntimeError("boom")

    snapshots = runtimes.holder()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        sub = Subscriber(
            channel, "t", snapshots, tmp_path, "dp-1", "x", status=broken, status_interval=0.02
        )
        task = asyncio.create_task(sub.run())
        try:
            await until(lambda: len(script.requests) == 2)
            await asyncio.sleep(0.1)
        finally:
            task.cancel()
    assert script.streams == 1 and len(script.requests) == 2
    assert snapshots.current is not None and snapshots.current.version == "good"


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / SNAPSHOT_FILE).write_bytes(b"\x00garbage")
    assert load_cached(tmp_path) is None
