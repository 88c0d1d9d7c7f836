"""``gwctl dataplane serve --workers 2`` as an operator runs it: a supervisor and two worker
processes on one port, a real control plane (SQLite), the local Redis for the counters, and the
strict fake upstream.

* Both workers take connections on the one port, ``/metrics`` on either shows both (a ``worker``
  label per sample, ``tollgate_worker_up``), whoami answers on any, usage arrives once.
* A worker killed with SIGKILL is restarted by the supervisor; what it had spooled while the
  control plane was down reaches the ledger exactly once.
* SIGTERM to the supervisor drains every worker: streams in flight finish, usage is flushed, the
  supervisor exits 0 and no worker is left.
* A port that cannot be bound: exit 1 with a readable message.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from gwclient.client import GatewayClient
from tests.dataplane.redis_support import REDIS_URL
from tests.e2e.test_gateway import (
    DP_TOKEN,
    ROOT,
    ControlPlaneProcess,
    alice_on_control_plane,
    free_port,
)
from tests.e2e.workers_support import (
    WorkersProcess,
    per_worker,
    spooled_records,
    workers_on_redis,
)
from tests.fakes.anthropic import FakeAnthropic, Received, Scripted, stream_frames

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-5-20250929"
BODY = orjson.dumps(
    {
        "model": MODEL,
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
)


@dataclass
class Fleet:
    cp: ControlPlaneProcess
    dp: WorkersProcess
    upstream: FakeAnthropic
    admin: GatewayClient
    secret: str

    def headers(self) -> dict[str, str]:
        return {
            "x-api-key": self.secret,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }

    async def call_fresh(self) -> httpx.Response:
        """One streamed request on a connection of its own (so the kernel picks a worker)."""
        async with httpx.AsyncClient(base_url=self.dp.url, timeout=30) as c:
            return await c.post("/v1/messages", content=BODY, headers=self.headers())

    async def ledger(self) -> int:
        rows = await self.admin.query_usage(workspace="team-a")
        return rows[0].requests if rows else 0


@pytest.fixture
async def fleet(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    async with (
        alice_on_control_plane(sqlite_url, tmp_path) as s,
        workers_on_redis(tmp_path / "dp", s.cp.address, DP_TOKEN) as dp,
    ):
        yield Fleet(s.cp, dp, s.upstream, s.admin, s.created.secret)


async def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_two_workers_share_the_port_serve_and_gather_metrics(fleet: Fleet) -> None:
    responses = await asyncio.gather(*(fleet.call_fresh() for _ in range(40)))
    assert [r.status_code for r in responses] == [200] * 40
    text = await fleet.dp.metrics()
    served = per_worker(text, "tollgate_requests_total")
    assert set(served) == {"0", "1"} and all(v > 0 for v in served.values()), served
    assert sum(served.values()) == 40
    assert per_worker(text, "tollgate_worker_up") == {"0": 1.0, "1": 1.0}
    # Either worker answers the scrape with both workers' series.
    again = per_worker(await fleet.dp.metrics(), "tollgate_requests_total")
    assert sum(again.values()) == 40
    # Diagnostics behind auth work on whichever worker takes the connection.
    answered = set()
    for _ in range(40):
        async with httpx.AsyncClient(base_url=fleet.dp.url, timeout=10) as c:
            who = await c.get("/v1/tollgate/whoami", headers=fleet.headers())
        assert who.status_code == 200 and who.json()["workspace"]["name"] == "team-a", who.text
        answered.add(who.json()["dataplane_id"][-3:])
        if len(answered) == 2:
            break
    assert answered == {"-w0", "-w1"}

    async def arrived() -> bool:
        return await fleet.ledger() >= 40

    await wait_until(arrived)
    assert await fleet.ledger() == 40
    dataplanes = await fleet.admin.list_dataplanes()
    nodes = {d.node_id for d in dataplanes.dataplanes}
    assert any(n.endswith("-w0") for n in nodes) and any(n.endswith("-w1") for n in nodes)


async def test_a_killed_worker_is_restarted_and_its_spool_arrives_once(fleet: Fleet) -> None:
    fleet.cp.kill()  # usage now waits in the workers' spools
    responses = await asyncio.gather(*(fleet.call_fresh() for _ in range(30)))
    assert [r.status_code for r in responses] == [200] * 30
    spools = [fleet.dp.state_dir / "workers" / str(i) / "spool" for i in (0, 1)]

    async def on_disk() -> bool:
        return sum(spooled_records(s) for s in spools) == 30

    await wait_until(on_disk)
    victim = fleet.dp.pid_of(1)
    assert spooled_records(spools[1]) > 0, "worker 1 served nothing: nothing to prove"
    subprocess.run(["kill", "-KILL", str(victim)], check=True)

    async def replaced() -> bool:
        pid = fleet.dp.pid_of(1)
        return pid != victim and fleet.dp.alive(pid)

    await wait_until(replaced)
    await fleet.dp.wait_serving()  # the new worker serves from its cached snapshot
    assert "worker 1" in fleet.dp.output() and "restarting it" in fleet.dp.output()
    await fleet.cp.start()  # same port: the workers' reporters reconnect and replay

    async def drained() -> bool:
        text = await fleet.dp.metrics()
        return sum(per_worker(text, "tollgate_usage_backlog").values()) == 0

    await wait_until(drained, timeout=30)
    assert await fleet.ledger() == 30


async def test_sigterm_drains_every_worker(fleet: Fleet) -> None:
    started = asyncio.Event()
    begun = 0

    def slow(_req: Received) -> Scripted:
        nonlocal begun
        begun += 1
        if begun >= 6:
            started.set()
        return Scripted(
            headers=[(b"content-type", b"text/event-stream")],
            frames=stream_frames(MODEL, [f"w{i} " for i in range(20)]),
            delay=0.05,
        )

    fleet.upstream.on_request = slow
    pids = [fleet.dp.pid_of(i) for i in (0, 1)]
    calls = [asyncio.create_task(fleet.call_fresh()) for _ in range(6)]
    await asyncio.wait_for(started.wait(), 10)
    fleet.dp.terminate()
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [200] * 6
    assert all(b"message_stop" in r.content for r in responses)
    assert fleet.dp.proc is not None
    assert await asyncio.to_thread(fleet.dp.proc.wait, 30) == 0
    assert not any(fleet.dp.alive(p) for p in pids)
    assert not list(fleet.dp.state_dir.glob("workers/*/pid"))  # they name running workers
    with pytest.raises(httpx.ConnectError):
        await fleet.call_fresh()
    assert await fleet.ledger() == 6  # flushed by the drain, before the workers exited
    assert "draining 2 worker(s)" in fleet.dp.output()


def test_a_port_in_use_is_a_readable_exit_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gwctl.main", "dataplane", "serve",
             "--listen", f"127.0.0.1:{port}", "--control-plane", f"127.0.0.1:{free_port()}",
             "--state-dir", str(tmp_path / "dp"), "--workers", "2", "--redis", REDIS_URL],
            cwd=ROOT,
            env={"TOLLGATE_DATAPLANE_TOKEN": DP_TOKEN, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Address already in use" in done.stderr
