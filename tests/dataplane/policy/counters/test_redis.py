"""The Redis counters against the shared contract, on the real local Redis, plus what only
Redis has: the key layout and its expiry, and an unreachable server."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from dataplane.policy.counters.base import BudgetCheck, CountersUnavailable, ScopeCheck
from dataplane.policy.counters.redis import RedisCounters
from tests.dataplane.policy.counters.contract import (
    T0,
    CounterContract,
    key_scope,
    req,
    ws_scope,
)
from tests.dataplane.redis_support import REDIS_URL, keys_under, redis_namespace

pytestmark = pytest.mark.redis


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with redis_namespace() as p:
        yield p


@pytest.fixture
async def redis_counters(prefix: str) -> AsyncIterator[RedisCounters]:
    c = RedisCounters.from_url(REDIS_URL, prefix=prefix)
    yield c
    await c.aclose()


class TestRedisCounters(CounterContract):
    @pytest.fixture
    def counters(self, redis_counters: RedisCounters) -> RedisCounters:
        return redis_counters


async def test_key_layout_and_expiry(redis_counters: RedisCounters, prefix: str) -> None:
    now = int(time.time() * 1000)  # Redis expires by its own clock: use the real time here
    day_end = now + 3_600_000
    key = ScopeCheck(
        "k:key_a",
        rpm=5,
        rph=50,
        tpm=1000,
        budgets=(BudgetCheck("b:d:2026-11-18@UTC", 1000, 0, day_end),),
    )
    ws = ws_scope(max_parallel=3)
    v = await redis_counters.admit(req(now, key, ws, reserve=10, lease_ms=600_000))
    assert v.ticket is not None
    await redis_counters.settle(v.ticket, 7, 30, now + 5)
    keys = await keys_under(prefix)
    tag = f"{prefix}{{team-a}}:"
    assert keys == sorted(
        [
            tag + "k:key_a:req",
            tag + "k:key_a:tok",
            tag + "k:key_a:b:d:2026-11-18@UTC",
        ]
    )  # the workspace's in-flight set is empty again, so Redis removed it
    admin = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        ttl = {k[len(tag) :]: await admin.pttl(k) for k in keys}
        assert 3_600_000 < ttl["k:key_a:req"] <= 3_660_000
        assert 0 < ttl["k:key_a:tok"] <= 121_000
        assert 3_600_000 + 86_000_000 < ttl["k:key_a:b:d:2026-11-18@UTC"] <= 3_600_000 + 86_400_000
        assert await admin.hgetall(tag + "k:key_a:b:d:2026-11-18@UTC") == {
            "spent": "7",
            "reserved": "0",
        }
    finally:
        await admin.aclose()


async def test_lifetime_budget_keeps_a_sliding_ttl(
    redis_counters: RedisCounters, prefix: str
) -> None:
    s = key_scope(budgets=(BudgetCheck("b:life", 1000, 0, 0),))
    v = await redis_counters.admit(req(T0, s, reserve=10))
    assert v.ticket is not None
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        ttl = await admin.pttl(f"{prefix}{{team-a}}:k:key_a:b:life")
        assert 29 * 86_400_000 < ttl <= 30 * 86_400_000
    finally:
        await admin.aclose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_redis_raises_and_trips_the_breaker() -> None:
    c = RedisCounters.from_url(f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.2)
    try:
        with pytest.raises(CountersUnavailable):
            await c.admit(req(T0, key_scope(rpm=1)))
        with pytest.raises(CountersUnavailable, match="moments ago"):
            await c.admit(req(T0, key_scope(rpm=1)))
    finally:
        await c.aclose()
