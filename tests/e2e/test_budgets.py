"""Budgets and rate limits through real data planes: no overshoot under concurrency, also across
three replicas sharing the local Redis and across the two worker processes of one data plane
(``--workers 2``, the ledger checked too); exact rate limits; refusals Claude Code shows well.

The fake upstream answers every request with ``max_tokens`` output tokens and the input the data
plane estimates, so a request's real cost is close to its reservation — the condition under which
any zero-overshoot scheme can serve ⌊budget / cost⌋ concurrent requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from dataplane.process.server import DataPlane
from gwapi.v1 import admin_pb2, common_pb2, discovery_pb2, telemetry_pb2
from gwclient.client import GatewayClient
from tests.dataplane.conftest import SECRET, build_snapshot, sha, start_dataplane
from tests.dataplane.redis_support import REDIS_URL, redis_namespace
from tests.e2e.test_gateway import ADMIN, DP_TOKEN, ControlPlaneProcess
from tests.e2e.workers_support import per_worker, workers_on_redis
from tests.fakes.anthropic import FakeAnthropic, Scripted, anthropic_at, stream_frames
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

MAX_TOKENS = 1000
BODY = orjson.dumps(
    {
        "model": "claude-opus-4-8",
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "messages": [{"role": "user", "content": "count to three"}],
    }
)
INPUT_TOKENS = -(-len(BODY) // 3)  # what the data plane's estimate assumes
# Opus 4.8: input $5, output $25 per MTok.
COST = (INPUT_TOKENS * 5_000_000 + MAX_TOKENS * 25_000_000 + 999_999) // 1_000_000
BUDGET = COST * 6 + COST // 2  # room for six requests
OTHER = "gw-other-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
HEADERS = {
    "x-api-key": SECRET,
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}


def answer(_req: object) -> Scripted:
    usage = {"input_tokens": INPUT_TOKENS, "output_tokens": 1}
    return Scripted(
        headers=[(b"content-type", b"text/event-stream")],
        frames=stream_frames(
            "claude-opus-4-8", ["one", " two", " three"], usage=usage, output_tokens=MAX_TOKENS
        ),
        delay=0.01,
    )


def limited_snapshot(upstream: FakeAnthropic, **limits: int) -> discovery_pb2.Snapshot:
    snap = build_snapshot(upstream.base_url)
    key = next(k for k in snap.keys if k.id == "key_alice")
    budget = limits.pop("budget", 0)
    if budget:
        key.limits.budgets.append(
            common_pb2.Budget(amount_micros=budget, period=common_pb2.PERIOD_DAY)
        )
    for name, value in limits.items():
        if name.startswith("ws_"):
            setattr(snap.workspaces[0].limits, name[3:], value)
        else:
            setattr(key.limits, name, value)
    snap.keys.append(
        discovery_pb2.SnapshotKey(
            id="key_other",
            secret_sha256=sha(OTHER),
            name="bob",
            workspace="team-a",
            provider="anthropic",
        )
    )
    return snap


@pytest.fixture
async def upstream() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic()
    fake.on_request = answer
    await fake.start()
    yield fake
    await fake.stop()


async def stream_one(client: httpx.AsyncClient, secret: str = SECRET) -> httpx.Response:
    async with client.stream(
        "POST", "/v1/messages", content=BODY, headers={**HEADERS, "x-api-key": secret}
    ) as r:
        await r.aread()
        return r


def check_refusal(r: httpx.Response) -> None:
    """Every refusal is the budget error, shaped for Claude Code."""
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert error["message"].startswith("Budget of $"), error["message"]
    assert "alice-laptop" in error["message"] and "team-a" in error["message"]
    assert r.headers["retry-after"].isdigit()


async def settled_spend(dps: list[DataPlane], requests: int) -> int:
    """What the data planes metered for served requests (their usage events, still spooled),
    once every one of ``requests`` has its event (recorded after its answer went out)."""

    def events() -> list[telemetry_pb2.UsageEvent]:
        return [
            telemetry_pb2.UsageEvent.FromString(p)
            for dp in dps
            for _, p in dp.spool.pending(10_000)
        ]

    await eventually(lambda: len(events()) >= requests, f"the {requests} usage events spooled")
    return sum(e.usage.cost_micros for e in events() if e.status == 200)


async def run_concurrently(dps: list[DataPlane], n: int) -> list[httpx.Response]:
    clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=30) for dp in dps]
    try:
        return await asyncio.gather(*(stream_one(clients[i % len(clients)]) for i in range(n)))
    finally:
        for c in clients:
            await c.aclose()


def assert_no_overshoot(responses: list[httpx.Response], spend: int) -> None:
    served = [r for r in responses if r.status_code == 200]
    for r in responses:
        if r.status_code != 200:
            check_refusal(r)
    assert spend <= BUDGET + COST, (spend, BUDGET, COST)
    assert len(served) >= BUDGET // COST - 1, len(served)
    assert spend == len(served) * COST


async def test_32_concurrent_streams_never_overshoot_the_budget(
    tmp_path: Path, upstream: FakeAnthropic
) -> None:
    dp = await start_dataplane(tmp_path / "dp", limited_snapshot(upstream, budget=BUDGET))
    try:
        responses = await run_concurrently([dp], 32)
        assert_no_overshoot(responses, await settled_spend([dp], len(responses)))
        # Once spent, the refusal says so and tells Claude Code not to retry before the reset.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as client:
            spent = await client.post("/v1/messages", content=BODY, headers=HEADERS)
        check_refusal(spent)
        assert "is spent" in spent.json()["error"]["message"]
        assert "it resets at" in spent.json()["error"]["message"]
        assert spent.headers["x-should-retry"] == "false"
    finally:
        await dp.stop()


async def test_three_replicas_sharing_redis_never_overshoot(
    tmp_path: Path, upstream: FakeAnthropic
) -> None:
    async with redis_namespace() as prefix:
        dps = [
            await start_dataplane(
                tmp_path / f"dp{i}",
                limited_snapshot(upstream, budget=BUDGET),
                redis_url=REDIS_URL,
                redis_prefix=prefix,
            )
            for i in range(3)
        ]
        try:
            responses = await run_concurrently(dps, 48)
            assert_no_overshoot(responses, await settled_spend(dps, len(responses)))
        finally:
            for dp in dps:
                await dp.stop()


async def test_rate_limits_are_exact_and_refusals_do_not_count(
    tmp_path: Path, upstream: FakeAnthropic
) -> None:
    dp = await start_dataplane(tmp_path / "dp", limited_snapshot(upstream, rpm=10, ws_rpm=15))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=30) as client:
            first = [await stream_one(client) for _ in range(12)]
            assert [r.status_code for r in first] == [200] * 10 + [429] * 2
            refusal = first[-1].json()["error"]
            assert (
                refusal["type"] == "rate_limit_error"
                and "10 requests per minute" in refusal["message"]
            )
            assert 1 <= int(first[-1].headers["retry-after"]) <= 60
            assert "x-should-retry" not in first[-1].headers  # Claude Code retries a rate limit
            # The workspace allows 15 a minute: another key gets the 5 that are left.
            other = [await stream_one(client, OTHER) for _ in range(7)]
            assert [r.status_code for r in other] == [200] * 5 + [429] * 2
            assert "workspace" in other[-1].json()["error"]["message"]
            assert first[0].headers["x-tollgate-ratelimit-requests-limit"] == "10"
    finally:
        await dp.stop()


async def test_two_workers_of_one_data_plane_never_overshoot_and_the_ledger_is_exact(
    tmp_path: Path, upstream: FakeAnthropic, sqlite_url: str
) -> None:
    """The concurrency test above against ``gwctl dataplane serve --workers 2 --redis``: two
    processes behind one port, a real control plane; the ledger holds exactly what was served."""
    cp = ControlPlaneProcess(sqlite_url, tmp_path / "cp.log")
    await cp.start()
    admin = GatewayClient(cp.address, ADMIN)
    try:
        await admin.create_workspace(common_pb2.Workspace(name="team-a"))
        await admin.create_provider(anthropic_at(upstream.base_url))
        budget = common_pb2.Budget(amount_micros=BUDGET, period=common_pb2.PERIOD_DAY)
        created = await admin.create_key(
            admin_pb2.CreateKeyRequest(
                workspace="team-a",
                name="alice-laptop",
                provider="anthropic",
                limits=common_pb2.Limits(budgets=[budget]),
            )
        )
        async with workers_on_redis(tmp_path / "dp", cp.address, DP_TOKEN) as dp:

            async def fresh() -> httpx.Response:  # a connection each: both workers serve
                async with httpx.AsyncClient(base_url=dp.url, timeout=30) as c:
                    return await stream_one(c, created.secret)

            responses = await asyncio.gather(*(fresh() for _ in range(48)))
            served = [r for r in responses if r.status_code == 200]
            by_worker = per_worker(await dp.metrics(), "tollgate_requests_total")
            assert set(by_worker) == {"0", "1"} and min(by_worker.values()) > 0, by_worker

            async def ledger() -> tuple[int, int]:
                rows = await admin.query_usage(workspace="team-a")
                return (rows[0].requests, rows[0].cost_micros) if rows else (0, 0)

            deadline = time.monotonic() + 20
            while (await ledger())[0] < len(responses) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            requests, spend = await ledger()
            assert requests == len(responses)  # refusals are ledger rows too (cost 0)
            assert_no_overshoot(responses, spend)
            assert spend == len(served) * COST
    finally:
        await admin.close()
        cp.stop()
