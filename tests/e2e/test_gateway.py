"""The whole gateway on loopback: a control-plane process, a data plane, the strict fake upstream.

Run against both databases (``db_url``: SQLite and the local PostgreSQL). The control plane is a
real subprocess so that it can be killed (SIGKILL, no goodbye) and restarted on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from dataplane.process.server import DataPlane, Settings
from gwapi.v1 import admin_pb2, common_pb2
from gwclient.client import GatewayClient
from tests.fakes.anthropic import UPSTREAM_KEY, FakeAnthropic, anthropic_at
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ADMIN = "admin-token-e2e-0123456789"
DP_TOKEN = "dataplane-token-e2e-0123456789"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM ``proc`` if it still runs; if it has not exited ``timeout`` seconds later, SIGKILL
    it (and reap it)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class ControlPlaneProcess:
    def __init__(self, db_url: str, log: Path, extra_args: Sequence[str] = ()) -> None:
        self.db_url = db_url
        self.port = free_port()
        self.log = log
        self.extra_args = tuple(extra_args)  # more `controlplane serve` flags
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, "TOLLGATE_ADMIN_TOKEN": ADMIN, "TOLLGATE_DATAPLANE_TOKEN": DP_TOKEN}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gwctl.main",
                    "controlplane",
                    "serve",
                    "--listen",
                    self.address,
                    "--db",
                    self.db_url,
                    *self.extra_args,
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with GatewayClient(self.address, ADMIN) as c:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if await c.health(wait_s=0.5) == "SERVING":
                        return
                except Exception:
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(
                        "control plane did not start:\n" + self.log.read_text()[-3000:]
                    )
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)


@dataclass
class Gateway:
    cp: ControlPlaneProcess
    dp: DataPlane
    upstream: FakeAnthropic
    admin: GatewayClient
    secret: str
    key_id: str
    tmp: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dp.port}"


def spawn_dp(
    control_plane: str,
    port: int,
    state_dir: Path,
    log: Path,
    *flags: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``gwctl dataplane serve`` as its own process on ``127.0.0.1:port``, its output appended
    to ``log``: the data-plane token and the fake upstream's key in its environment (and
    ``env``), ``flags`` after listen, control plane and state directory. Not waited for."""
    args = ["--listen", f"127.0.0.1:{port}", "--control-plane", control_plane]
    args += ["--state-dir", str(state_dir), *flags]
    variables = {**os.environ, "UPSTREAM_KEY": UPSTREAM_KEY, "TOLLGATE_DATAPLANE_TOKEN": DP_TOKEN}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gwctl.main", "dataplane", "serve", *args],
            cwd=ROOT,
            env={**variables, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def start_dp(cp: ControlPlaneProcess, state_dir: Path) -> DataPlane:
    dp = DataPlane(
        Settings(
            listen="127.0.0.1:0",
            control_plane=cp.address,
            token=DP_TOKEN,
            state_dir=state_dir,
            env={"UPSTREAM_KEY": UPSTREAM_KEY},
        )
    )
    await dp.start()
    return dp


async def alice_in_team_a(admin: GatewayClient, upstream_url: str) -> admin_pb2.CreateKeyResponse:
    """Workspace ``team-a``, :func:`anthropic_at` ``upstream_url`` and key ``alice`` on it: what
    most end-to-end tests start from."""
    await admin.create_workspace(common_pb2.Workspace(name="team-a"))
    await admin.create_provider(anthropic_at(upstream_url))
    return await admin.create_key(
        admin_pb2.CreateKeyRequest(workspace="team-a", name="alice", provider="anthropic")
    )


@dataclass
class AliceSetup:
    upstream: FakeAnthropic
    cp: ControlPlaneProcess
    admin: GatewayClient
    created: admin_pb2.CreateKeyResponse


@contextlib.asynccontextmanager
async def alice_on_control_plane(db_url: str, tmp_path: Path) -> AsyncIterator[AliceSetup]:
    """The fake upstream, a control-plane process on ``db_url`` (its log ``tmp_path/cp.log``),
    an admin client and :func:`alice_in_team_a`; on the way out the client is closed, then the
    control plane and the upstream stopped."""
    async with FakeAnthropic() as upstream:
        cp = ControlPlaneProcess(db_url, tmp_path / "cp.log")
        await cp.start()
        admin = GatewayClient(cp.address, ADMIN)
        try:
            created = await alice_in_team_a(admin, upstream.base_url)
            yield AliceSetup(upstream, cp, admin, created)
        finally:
            await admin.close()
            cp.stop()


@pytest.fixture
async def gateway(db_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    async with alice_on_control_plane(db_url, tmp_path) as s:
        dp = await start_dp(s.cp, tmp_path / "dp")
        try:
            await dp.wait_for_snapshot()
            yield Gateway(
                s.cp, dp, s.upstream, s.admin, s.created.secret, s.created.key.id, tmp_path
            )
        finally:
            await dp.stop()


def body(text: str = "hi", stream: bool = True) -> bytes:
    return orjson.dumps(
        {
            "model": "claude-sonnet-4-5-20250929",
            "max_tokens": 100,
            "stream": stream,
            "messages": [{"role": "user", "content": text}],
        }
    )


async def call(client: httpx.AsyncClient, secret: str, session: str = "sess-1") -> httpx.Response:
    return await client.post(
        "/v1/messages",
        content=body(),
        headers={
            "x-api-key": secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            "x-claude-code-session-id": session,
        },
    )


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01) -> float:
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)
    return time.monotonic() - start


async def total(admin: GatewayClient) -> tuple[int, int]:
    rows = await admin.query_usage()
    return (rows[0].requests, rows[0].cost_micros) if rows else (0, 0)


async def test_revocation_reaches_the_data_plane_within_a_second(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        assert (await call(client, gateway.secret)).status_code == 200
        await gateway.admin.revoke_key(gateway.key_id)
        revoked_at = time.monotonic()

        async def refused() -> bool:
            return (await call(client, gateway.secret)).status_code == 401

        await wait_for(refused, timeout=5)
        elapsed = time.monotonic() - revoked_at
    assert elapsed < 1.0, f"revocation took {elapsed:.3f} s"

    # The data plane ACKs the version it now serves (just after swapping it in).
    async def acked() -> bool:
        status = await gateway.admin.list_dataplanes()
        (dp,) = status.dataplanes
        return dp.connected and dp.acked_version == status.current_version

    await wait_for(acked, timeout=2)
    (dp,) = (await gateway.admin.list_dataplanes()).dataplanes
    assert dp.listen == f"127.0.0.1:{gateway.dp.port}"


async def test_usage_reaches_the_control_plane_once(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        for i in range(5):
            assert (await call(client, gateway.secret, session=f"s{i % 2}")).status_code == 200

    async def five() -> bool:
        return (await total(gateway.admin))[0] == 5

    await wait_for(five)
    by_session = {r.group: r.requests for r in await gateway.admin.query_usage(group_by="session")}
    assert by_session == {"s0": 3, "s1": 2}


async def test_control_plane_outage_loses_nothing_and_counts_nothing_twice(
    gateway: Gateway,
) -> None:
    gw = gateway
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for _ in range(3):
            assert (await call(client, gw.secret)).status_code == 200

        async def three() -> bool:
            return (await total(gw.admin))[0] == 3

        await wait_for(three)
        _, cost_of_three = await total(gw.admin)

        gw.cp.kill()  # no goodbye: the data plane just loses its streams
        for _ in range(7):  # served from the last snapshot while the control plane is gone
            assert (await call(client, gw.secret)).status_code == 200
        reporter = gw.dp.reporter
        assert reporter is not None
        await eventually(lambda: reporter.backlog == 7, "the 7 events recorded")
        await reporter.drain()  # and on disk, for the copy
        assert reporter.spool.backlog == 7
        spool_copy = gw.tmp / "spool-copy"
        shutil.copytree(gw.dp.settings.state_dir / "spool", spool_copy)

    # The data plane also restarts while the control plane is down: it serves from its cached
    # snapshot and keeps its spool.
    await gw.dp.stop()
    gw.dp = await start_dp(gw.cp, gw.tmp / "dp")
    assert gw.dp.holder.current is not None
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await call(client, gw.secret)).status_code == 200

    await gw.cp.start()  # same port, same database

    async def eleven() -> bool:
        try:
            return (await total(gw.admin))[0] == 11
        except Exception:
            return False

    await wait_for(eleven, timeout=20)
    assert gw.dp.reporter is not None
    await wait_for(lambda: _zero(gw.dp))

    # A replica whose acknowledgement was lost replays the same events: nothing counts twice.
    replay_dir = gw.tmp / "dp-replay"
    replay_dir.mkdir()
    shutil.copytree(spool_copy, replay_dir / "spool")
    replay = await start_dp(gw.cp, replay_dir)
    try:
        await wait_for(lambda: _zero(replay))
    finally:
        await replay.stop()
    requests, cost = await total(gw.admin)
    assert requests == 11
    assert cost == cost_of_three // 3 * 11


async def _zero(dp: DataPlane) -> bool:
    return dp.reporter is not None and dp.reporter.backlog == 0


async def test_switching_a_keys_provider_moves_live_traffic_within_a_second(
    gateway: Gateway,
) -> None:
    """The seed's promise: switch providers with a config change, nothing changes for the developer."""
    await gateway.admin.create_provider(common_pb2.Provider(name="sim", kind="simulator"))
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        first = await call(client, gateway.secret)
        assert first.headers["x-tollgate-provider"] == "anthropic"
        await gateway.admin.update_key(
            common_pb2.VirtualKey(id=gateway.key_id, provider="sim"), ["provider"]
        )
        switched_at = time.monotonic()

        async def on_sim() -> bool:
            r = await call(client, gateway.secret)
            return r.status_code == 200 and r.headers["x-tollgate-provider"] == "sim"

        await wait_for(on_sim, timeout=5)
        elapsed = time.monotonic() - switched_at
    assert elapsed < 1.0, f"switch took {elapsed:.3f} s"
