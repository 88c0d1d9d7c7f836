"""The stores going away under load: PostgreSQL behind the control plane, Redis behind the data
plane's counters. Neither shared server is touched: each test puts a TCP proxy on 127.0.0.1 in
front of it and kills the proxy (every connection dropped, the port closed), then brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import httpx
import pytest
import redis.asyncio as aioredis

from dataplane.server import DataPlane
from gwapi.v1 import common_pb2, discovery_pb2
from gwclient.client import GatewayClient
from gwclient.errors import ClientError
from tests.conftest import _reset_pg_schema
from tests.dataplane.conftest import SECRET, sha, usage_events
from tests.dataplane.redis_support import REDIS_URL, redis_namespace
from tests.e2e.faults_support import (
    BUDGET_MICROS,
    HEADERS,
    MODEL,
    SMALL_USAGE,
    TcpProxy,
    body,
    faulty_snapshot,
    sse_names,
    start_faulty,
)
from tests.e2e.test_gateway import (
    ADMIN,
    ControlPlaneProcess,
    alice_in_team_a,
    call,
    start_dp,
    total,
    wait_for,
)
from tests.fakes.anthropic import FakeAnthropic, Scripted, stream_frames

pytestmark = pytest.mark.e2e

OPEN = "gw-open-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHI"


@contextlib.asynccontextmanager
async def load(port: int, secret: str) -> AsyncIterator[list[int]]:
    """Requests one after another for as long as the block runs; yields their statuses."""
    statuses: list[int] = []
    stop = asyncio.Event()

    async def run() -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            while not stop.is_set():
                statuses.append((await call(c, secret)).status_code)
                await asyncio.sleep(0.02)

    task = asyncio.create_task(run())
    try:
        yield statuses
    finally:
        stop.set()
        await task


@pytest.mark.postgres
@pytest.mark.slow
async def test_postgres_outage_under_load_loses_and_doubles_nothing(
    pg_database: str, tmp_path: Path, upstream: FakeAnthropic
) -> None:
    _reset_pg_schema(pg_database)
    parts = urlsplit(pg_database)
    db = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await db.start()
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{db.port}"))
    cp = ControlPlaneProcess(proxied, tmp_path / "cp.log")
    await cp.start()
    admin = GatewayClient(cp.address, ADMIN)
    dp: DataPlane | None = None
    try:
        created = await alice_in_team_a(admin, upstream.base_url)
        dp = await start_dp(cp, tmp_path / "dp")
        await dp.wait_for_snapshot()
        async with load(dp.port, created.secret) as statuses:
            await asyncio.sleep(0.3)
            await db.kill()  # PostgreSQL "restarts": every connection gone, nothing listening
            await asyncio.sleep(0.5)
            with pytest.raises(ClientError) as info:  # an admin call during the outage
                await admin.query_usage()
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
            assert info.value.message == (
                "the control plane's database is unavailable; retry shortly"
            )
            backlog_during = dp.reporter.backlog if dp.reporter else 0
            await asyncio.sleep(1.0)
            await db.restore()  # back, without restarting the control plane
            await asyncio.sleep(0.5)
        assert statuses and set(statuses) == {200}, statuses  # traffic never noticed
        assert backlog_during > 0  # usage waited in the data plane's spool meanwhile
        served = len(statuses)

        async def all_counted() -> bool:
            try:
                return (await total(admin))[0] == served
            except ClientError:
                return False

        await wait_for(all_counted, timeout=20)
        await wait_for(lambda: _drained(dp), timeout=5)
        await asyncio.sleep(0.5)  # any replay would have landed by now
        requests, cost = await total(admin)
        assert requests == served  # each once: none lost in the outage, none replayed twice
        assert cost % served == 0  # identical requests: every one was priced the same
    finally:
        if dp is not None:
            await dp.stop()
        await admin.close()
        cp.stop()
        await db.kill()


async def _drained(dp: DataPlane) -> bool:
    return dp.reporter is not None and dp.reporter.backlog == 0


def two_workspaces(upstream_url: str) -> discovery_pb2.Snapshot:
    """team-a (Redis failure policy: closed) and team-open (open), each with a budgeted key."""
    snap = faulty_snapshot(upstream_url, first_byte_ms=3000, idle_ms=3000)
    snap.workspaces.append(common_pb2.Workspace(name="team-open", redis_failure="open"))
    key = discovery_pb2.SnapshotKey(
        id="key_open", secret_sha256=sha(OPEN), name="open", workspace="team-open"
    )
    key.provider = "anthropic"
    key.limits.budgets.append(
        common_pb2.Budget(amount_micros=BUDGET_MICROS, period=common_pb2.PERIOD_DAY)
    )
    snap.keys.append(key)
    return snap


async def redis_budget(prefix: str, tag: str, scope: str) -> tuple[int, int, int, int]:
    """(spent, reserved, holds, in flight) straight from Redis."""
    r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        base = f"{prefix}{{{tag}}}:{scope}"
        spent = reserved = holds = 0
        async for k in r.scan_iter(match=base + ":b:*"):
            h = await r.hgetall(k)
            spent += int(h.get("spent", 0))
            reserved += int(h.get("reserved", 0))
            holds += sum(1 for f in h if str(f).startswith("r:"))
        return spent, reserved, holds, int(await r.zcard(base + ":fl"))
    finally:
        await r.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_redis_outage_fails_closed_or_open_and_leaves_nothing_reserved(
    tmp_path: Path, upstream: FakeAnthropic
) -> None:
    host, port = urlsplit(REDIS_URL).hostname, urlsplit(REDIS_URL).port
    async with redis_namespace() as prefix:
        proxy = TcpProxy(host or "127.0.0.1", port or 6379)
        await proxy.start()
        dp = await start_faulty(
            tmp_path / "dp",
            two_workspaces(upstream.base_url),
            redis_url=f"redis://127.0.0.1:{proxy.port}/0",
            redis_prefix=prefix,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=10) as c:
                posts = 0

                async def post(secret: str) -> httpx.Response:
                    nonlocal posts
                    posts += 1
                    return await c.post(
                        "/v1/messages", content=body(), headers={**HEADERS, "x-api-key": secret}
                    )

                assert (await post(SECRET)).status_code == 200
                assert (await post(OPEN)).status_code == 200
                # A stream in flight when Redis goes: it finishes during the outage, and its
                # settle must land once Redis is back.
                frames = stream_frames(MODEL, [f" w{i}" for i in range(8)], usage=SMALL_USAGE)
                upstream.script.append(
                    Scripted(
                        headers=[(b"content-type", b"text/event-stream")], frames=frames, delay=0.1
                    )
                )
                in_flight = asyncio.create_task(post(SECRET))
                await wait_for(_upstream_has(upstream, 3), timeout=5)
                await proxy.kill()
                assert (await in_flight).status_code == 200

                refused = await post(SECRET)
                assert refused.status_code == 503, refused.text
                error = refused.json()["error"]
                assert error["type"] == "overloaded_error"
                assert "cannot check budgets" in error["message"]
                assert refused.headers["retry-after"] == "5"
                unchecked = await post(OPEN)  # the workspace chose availability over limits
                assert unchecked.status_code == 200
                assert sse_names(unchecked.content)[-1] == "message_stop"

                await proxy.restore()
                started = time.monotonic()

                async def admitted() -> bool:
                    return (await post(SECRET)).status_code == 200

                await wait_for(admitted, timeout=5, interval=0.2)
                assert time.monotonic() - started < 3  # the counters' breaker is short
                await wait_for(_settled(dp), timeout=10)

            events = await usage_events(dp, posts)
            assert len(events) == posts
            alice = [e for e in events if e.key_id == "key_alice" and e.status == 200]
            assert len(alice) >= 3
            spent, reserved, holds, flight = await redis_budget(prefix, "team-a", "k:key_alice")
            assert (reserved, holds, flight) == (0, 0, 0), "a reservation is stuck in Redis"
            assert spent == sum(e.usage.cost_micros for e in alice)  # the late settle included
            _, reserved, holds, flight = await redis_budget(prefix, "team-open", "k:key_open")
            assert (reserved, holds, flight) == (0, 0, 0)
        finally:
            await dp.stop()
            await proxy.kill()


def _upstream_has(upstream: FakeAnthropic, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(upstream.requests) >= n

    return check


def _settled(dp: DataPlane) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return dp.limiter.unfinished == 0

    return check
