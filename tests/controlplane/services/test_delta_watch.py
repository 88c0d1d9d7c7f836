"""Discovery.DeltaWatch with the real data-plane subscriber: deltas, disk cache and reconnect
(only differences travel), NACK (the last good state keeps serving), registry status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from controlplane.server import Running
from dataplane.disk_cache import RESOURCES_FILE
from dataplane.runtime import SnapshotHolder
from dataplane.subscriber import Subscriber
from gwapi.v1 import admin_pb2 as apb
from gwapi.v1 import discovery_pb2 as dpb
from tests.controlplane.conftest import DATAPLANE_TOKEN, Clients, seed_basics
from tests.dataplane import runtimes


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def key_ids(holder: SnapshotHolder) -> set[str]:
    current = holder.current
    return {k.id for k in current.keys_by_hash.values()} if current is not None else set()


class Recording(Subscriber):
    """The real subscriber, remembering every delta response it applied."""

    responses: list[dpb.DeltaWatchResponse]

    def _apply_delta(self, response: dpb.DeltaWatchResponse) -> dpb.DeltaWatchRequest:
        self.responses.append(response)
        return super()._apply_delta(response)


def subscriber(cp: Running, holder: SnapshotHolder, state_dir: Path, channel: Any) -> Recording:
    sub = Recording(channel, DATAPLANE_TOKEN, holder, state_dir, "dp-d", "127.0.0.1:1")
    sub.responses = []
    return sub


async def test_deltas_then_a_reconnect_from_disk_gets_only_differences(
    cp: Running, admin: Any, admin_clients: Clients, tmp_path: Path
) -> None:
    basics = await seed_basics(admin)
    target = f"127.0.0.1:{cp.port}"
    holder = runtimes.holder()
    async with grpc.aio.insecure_channel(target) as channel:
        sub = subscriber(cp, holder, tmp_path, channel)
        task = asyncio.create_task(sub.run())
        await until(lambda: basics["key"].id in key_ids(holder))
        assert sub.use_delta and holder.current is not None
        assert holder.current.version == cp.state.cache.version
        second = await admin.CreateKey(
            apb.CreateKeyRequest(workspace="team-a", name="bob", provider="sim")
        )
        await until(lambda: second.key.id in key_ids(holder))
        last = sub.responses[-1]
        assert [r.name for r in last.resources] == [second.key.id] and not last.full_state

        async def acked() -> bool:
            resp = await admin_clients.discovery.ListDataPlanes(dpb.ListDataPlanesRequest())
            st = next(d for d in resp.dataplanes if d.node_id == "dp-d")
            return st.acked_version == cp.state.cache.version

        deadline = time.monotonic() + 5
        while not await acked():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (tmp_path / RESOURCES_FILE).exists()  # written on the way out, latest state

    # While it is away: one key revoked, one created.
    await admin.RevokeKey(apb.RevokeKeyRequest(id=basics["key"].id))
    third = await admin.CreateKey(
        apb.CreateKeyRequest(workspace="team-a", name="carol", provider="sim")
    )
    restarted = runtimes.holder()
    async with grpc.aio.insecure_channel(target) as channel:
        sub = subscriber(cp, restarted, tmp_path, channel)
        assert sub.load_cached()  # serves the disk state at once
        assert key_ids(restarted) == {basics["key"].id, second.key.id}
        task = asyncio.create_task(sub.run())
        try:
            await until(lambda: third.key.id in key_ids(restarted))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    first = sub.responses[0]
    sent = {(r.kind, r.name) for r in first.resources}
    # Only the differences: the two changed keys; no unchanged workspace, provider or key.
    assert ("key", third.key.id) in sent and ("key", basics["key"].id) in sent
    assert ("key", second.key.id) not in sent and ("workspace", "team-a") not in sent
    assert ("provider", "sim") not in sent
    assert restarted.current is not None
    revoked = {k.id: k.revoked for k in restarted.current.keys_by_hash.values()}
    assert revoked[basics["key"].id] is True
    assert restarted.current.version == cp.state.cache.version


async def test_a_nack_keeps_the_last_good_state_and_the_next_change_is_the_full_state(
    cp: Running, admin: Any, admin_clients: Clients, dataplane: Clients, tmp_path: Path
) -> None:
    await seed_basics(admin)
    holder = runtimes.holder()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cp.port}") as channel:
        sub = subscriber(cp, holder, tmp_path, channel)
        good = sub._apply_delta(
            dpb.DeltaWatchResponse(
                system_version="v1",
                nonce="n1",
                resources=[
                    dpb.Resource(kind="workspace", name="w", version="1", workspace={"name": "w"})
                ],
            )
        )
        assert good.error_detail == "" and holder.current is not None
        before = holder.current
        bad = sub._apply_delta(
            dpb.DeltaWatchResponse(
                system_version="v2",
                nonce="n2",
                resources=[
                    dpb.Resource(
                        kind="key",
                        name="key_1",
                        version="1",
                        key={"id": "key_1", "secret_sha256": "a" * 64, "workspace": "nowhere"},
                    )
                ],
            )
        )
        assert "unknown workspace 'nowhere'" in bad.error_detail
        assert bad.system_version == "v1" and holder.current is before

    # On the server: the NACK is recorded, and the stream's next response is the full state.
    call = dataplane.discovery.DeltaWatch(timeout=None)
    await call.write(dpb.DeltaWatchRequest(node_id="dp-n"))
    first = await asyncio.wait_for(call.read(), 5)
    await call.write(
        dpb.DeltaWatchRequest(
            node_id="dp-n", response_nonce=first.nonce, error_detail="cannot apply"
        )
    )

    async def nacked() -> dpb.DataPlaneStatus:
        resp = await admin_clients.discovery.ListDataPlanes(dpb.ListDataPlanesRequest())
        return next(d for d in resp.dataplanes if d.node_id == "dp-n")

    deadline = time.monotonic() + 5
    while (await nacked()).nacked_version != first.system_version:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert (await nacked()).last_error == "cannot apply"
    await admin.CreateKey(apb.CreateKeyRequest(workspace="team-a", name="zed", provider="sim"))
    nxt = await asyncio.wait_for(call.read(), 5)
    assert nxt.full_state and len([r for r in nxt.resources if r.kind == "key"]) == 2
    call.cancel()
