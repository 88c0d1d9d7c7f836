"""Discovery.Watch (xDS-style snapshot stream) and ListDataPlanes, over real gRPC."""

import asyncio
import time
from typing import Any

import grpc
import pytest
from grpc import StatusCode

from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import discovery_pb2 as dpb
from tests.controlplane.conftest import Clients, seed_basics


class Watcher:
    def __init__(self, clients: Clients, node_id: str, version: str = "") -> None:
        self.call = clients.discovery.Watch(timeout=None)
        self.node_id = node_id
        self.first = dpb.WatchRequest(
            node_id=node_id, version_info=version, hostname="host-1", listen="127.0.0.1:8080"
        )
        self._read: asyncio.Future[dpb.WatchResponse] | None = None

    async def start(self) -> "Watcher":
        await self.call.write(self.first)
        return self

    async def next(self, timeout: float = 5.0) -> dpb.WatchResponse:
        resp = await asyncio.wait_for(self.call.read(), timeout)
        assert resp is not grpc.aio.EOF
        return resp

    async def nothing_for(self, seconds: float) -> None:
        """Assert no response arrives for ``seconds``; the read stays pending for later."""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pending_read()), seconds)

    def _pending_read(self) -> "asyncio.Future[dpb.WatchResponse]":
        if self._read is None:
            self._read = asyncio.ensure_future(self.call.read())
        return self._read

    async def next_after_wait(self, timeout: float = 5.0) -> dpb.WatchResponse:
        """The response to the read left pending by :meth:`nothing_for`."""
        try:
            return await asyncio.wait_for(self._pending_read(), timeout)
        finally:
            self._read = None

    async def ack(self, resp: dpb.WatchResponse) -> None:
        await self.call.write(
            dpb.WatchRequest(
                node_id=self.node_id, version_info=resp.version, response_nonce=resp.nonce
            )
        )

    async def nack(self, resp: dpb.WatchResponse, previous: str, error: str) -> None:
        await self.call.write(
            dpb.WatchRequest(
                node_id=self.node_id,
                version_info=previous,
                response_nonce=resp.nonce,
                error_detail=error,
            )
        )


async def status_of(admin_clients: Clients, node_id: str) -> dpb.DataPlaneStatus:
    resp = await admin_clients.discovery.ListDataPlanes(dpb.ListDataPlanesRequest())
    return next(d for d in resp.dataplanes if d.node_id == node_id)


async def eventually(check, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def nacked_watcher(
    admin: Any, admin_clients: Clients, dataplane: Clients, node_id: str, error: str
) -> tuple[Watcher, dpb.WatchResponse, dpb.WatchResponse]:
    """A watcher ``node_id`` on the seeded config that ACKed its first snapshot and NACKed the
    second (after a new workspace) with ``error``, once the control plane has recorded the NACK:
    the watcher and the two snapshots."""
    await seed_basics(admin)
    w = await Watcher(dataplane, node_id).start()
    first = await w.next()
    await w.ack(first)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="bad")))
    second = await w.next()
    await w.nack(second, first.version, error)

    async def nacked() -> bool:
        return (await status_of(admin_clients, node_id)).nacked_version == second.version

    await eventually(nacked)
    return w, first, second


async def test_initial_snapshot_and_ack(cp, admin, admin_clients, dataplane) -> None:
    seeded = await seed_basics(admin)
    w = await Watcher(dataplane, "dp-1").start()
    resp = await w.next()
    assert resp.version == resp.snapshot.version == cp.state.cache.version
    assert len(resp.version) == 16 and resp.nonce
    snap = resp.snapshot
    assert [k.id for k in snap.keys] == [seeded["key"].id]
    assert snap.keys[0].secret_sha256 and not snap.keys[0].revoked
    assert [w_.name for w_ in snap.workspaces] == ["team-a"]
    assert [p.name for p in snap.providers] == ["sim"]
    assert len(snap.prices) == 11 and list(snap.spend) == []

    st = await status_of(admin_clients, "dp-1")
    assert st.connected and st.hostname == "host-1" and st.listen == "127.0.0.1:8080"
    assert st.acked_version == "" and st.connected_at_ms > 0
    await w.ack(resp)

    async def acked() -> bool:
        return (await status_of(admin_clients, "dp-1")).acked_version == resp.version

    await eventually(acked)
    listed = await admin_clients.discovery.ListDataPlanes(dpb.ListDataPlanesRequest())
    assert listed.current_version == resp.version
    w.call.cancel()

    async def gone() -> bool:
        return not (await status_of(admin_clients, "dp-1")).connected

    await eventually(gone)


async def test_no_resend_when_client_runs_current_version(cp, admin, dataplane) -> None:
    await seed_basics(admin)
    current = cp.state.cache.version
    w = await Watcher(dataplane, "dp-1", version=current).start()
    await w.nothing_for(0.3)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="team-b")))
    resp = await w.next_after_wait()
    assert resp.version != current and resp.version == cp.state.cache.version
    assert "team-b" in [x.name for x in resp.snapshot.workspaces]
    w.call.cancel()


async def test_revocation_pushed_in_under_a_second(cp, admin, dataplane) -> None:
    seeded = await seed_basics(admin)
    watchers = [await Watcher(dataplane, f"dp-{i}").start() for i in range(3)]
    for w in watchers:
        await w.ack(await w.next())
    started = time.perf_counter()
    await admin.RevokeKey(apb.RevokeKeyRequest(id=seeded["key"].id))
    for w in watchers:
        resp = await w.next(timeout=1.0)
        (key,) = resp.snapshot.keys
        assert key.id == seeded["key"].id and key.revoked  # still there: "revoked", not "unknown"
    assert time.perf_counter() - started < 1.0
    for w in watchers:
        w.call.cancel()


async def test_nack_recorded_and_not_resent(cp, admin, admin_clients, dataplane) -> None:
    w, first, second = await nacked_watcher(
        admin, admin_clients, dataplane, "dp-n", "route 'x' has no usable target"
    )
    st = await status_of(admin_clients, "dp-n")
    assert st.acked_version == first.version and st.last_error == "route 'x' has no usable target"
    assert st.connected
    # The NACKed version is not sent again on this stream; the next change is, with a new nonce.
    await w.nothing_for(0.3)
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="good")))
    third = await w.next_after_wait()
    assert third.version not in (first.version, second.version)
    assert third.nonce not in (first.nonce, second.nonce)
    await w.ack(third)

    async def recovered() -> bool:
        st = await status_of(admin_clients, "dp-n")
        return st.acked_version == third.version and st.last_error == ""

    await eventually(recovered)
    w.call.cancel()


async def test_newer_change_sent_without_waiting_for_ack(cp, admin, dataplane) -> None:
    await seed_basics(admin)
    w = await Watcher(dataplane, "dp-slow").start()
    first = await w.next()  # never ACKed
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="b")))
    second = await w.next(timeout=1.0)
    assert second.version != first.version
    w.call.cancel()


async def test_reconnect_with_disk_version_gets_nothing_until_change(cp, admin, dataplane) -> None:
    await seed_basics(admin)
    w1 = await Watcher(dataplane, "dp-r").start()
    v = (await w1.next()).version
    w1.call.cancel()
    w2 = await Watcher(dataplane, "dp-r", version=v).start()
    await w2.nothing_for(0.2)
    w2.call.cancel()


async def test_node_id_required(dataplane) -> None:
    call = dataplane.discovery.Watch()
    await call.write(dpb.WatchRequest(version_info="x"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == StatusCode.INVALID_ARGUMENT
    assert "node_id is required" in (info.value.details() or "")


async def test_client_half_close_ends_stream(cp, admin_clients, dataplane) -> None:
    w = await Watcher(dataplane, "dp-h").start()
    await w.next()
    await w.call.done_writing()
    assert await asyncio.wait_for(w.call.read(), 2) is grpc.aio.EOF
    assert await w.call.code() == StatusCode.OK

    async def gone() -> bool:
        return not (await status_of(admin_clients, "dp-h")).connected

    await eventually(gone)


async def test_server_shutdown_ends_watch_streams(db_url) -> None:
    from controlplane.server import running
    from tests.controlplane.conftest import DATAPLANE_TOKEN, make_settings

    async with running(make_settings(db_url)) as r:
        ch = grpc.aio.insecure_channel(r.address)
        w = await Watcher(Clients(ch, DATAPLANE_TOKEN), "dp-s").start()
        await w.next()
        started = time.perf_counter()
    try:
        assert time.perf_counter() - started < 1.0  # the stream ended, no grace period wasted
        assert await asyncio.wait_for(w.call.read(), 2) is grpc.aio.EOF
        assert await w.call.code() == StatusCode.OK
    finally:
        await ch.close()


async def test_revoked_key_in_snapshot_when_reconnecting_after_change(cp, admin, dataplane) -> None:
    seeded = await seed_basics(admin)
    w1 = await Watcher(dataplane, "dp-x").start()
    old = await w1.next()
    w1.call.cancel()
    await admin.RevokeKey(apb.RevokeKeyRequest(id=seeded["key"].id))
    w2 = await Watcher(dataplane, "dp-x", version=old.version).start()
    resp = await w2.next()
    assert resp.version != old.version and resp.snapshot.keys[0].revoked
    w2.call.cancel()


async def test_breakers_recorded_without_acking(cp, admin, admin_clients, dataplane) -> None:
    w, first, second = await nacked_watcher(admin, admin_clients, dataplane, "dp-b", "nope")
    # A status-only request (no nonce) claiming another version: only the breakers change.
    await w.call.write(
        dpb.WatchRequest(
            node_id="dp-b",
            version_info="something-else",
            breakers={"p1": "open", "p2": "half_open", "p3": "closed"},
        )
    )

    async def reported() -> bool:
        return bool((await status_of(admin_clients, "dp-b")).breakers)

    await eventually(reported)
    st = await status_of(admin_clients, "dp-b")
    assert dict(st.breakers) == {"p1": "open", "p2": "half_open"}  # closed ones are not kept
    assert (st.acked_version, st.nacked_version) == (first.version, second.version)
    assert st.last_error == "nope"
    # An ACK carries the current states too: here all closed again.
    await admin.CreateWorkspace(apb.CreateWorkspaceRequest(workspace=pb.Workspace(name="ok")))
    third = await w.next()
    await w.ack(third)

    async def cleared() -> bool:
        st = await status_of(admin_clients, "dp-b")
        return st.acked_version == third.version and not st.breakers

    await eventually(cleared)
    w.call.cancel()


def test_registry_breakers_are_bounded_and_leave_versions_alone() -> None:
    from controlplane.services.registry import MAX_BREAKERS, DataPlaneRegistry

    reg = DataPlaneRegistry()
    reg.report_breakers("unknown", {"p": "open"})  # no entry is created for an unknown node
    assert reg.get("unknown") is None
    reg.connect("dp-1", "h", "l", "v1")
    reg.nack("dp-1", "v2", "bad")
    reg.report_breakers("dp-1", {f"p{i:04d}": "open" for i in range(MAX_BREAKERS + 50)})
    st = reg.get("dp-1")
    assert st is not None and len(st.breakers) == MAX_BREAKERS
    assert (st.acked_version, st.nacked_version, st.last_error) == ("v1", "v2", "bad")
    reg.report_breakers("dp-1", {"a": "half_open", "b": "closed"})
    st = reg.get("dp-1")
    assert st is not None and dict(st.breakers) == {"a": "half_open"}


async def test_quarantined_events_are_recorded_from_first_and_status_requests(
    cp, admin, admin_clients, dataplane
) -> None:
    """P2 finding 1: the usage events a data plane set aside show in ListDataPlanes."""
    await seed_basics(admin)
    w = Watcher(dataplane, "dp-q")
    w.first.quarantined_events = 2
    await w.start()
    await w.next()  # every request carries the count (the data plane's ACKs too)

    async def two() -> bool:
        return (await status_of(admin_clients, "dp-q")).quarantined_events == 2

    await eventually(two)
    await w.call.write(dpb.WatchRequest(node_id="dp-q", quarantined_events=3))  # status-only

    async def three() -> bool:
        return (await status_of(admin_clients, "dp-q")).quarantined_events == 3

    await eventually(three)
    w.call.cancel()
