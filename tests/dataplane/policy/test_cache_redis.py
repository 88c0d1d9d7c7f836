"""The Redis response cache on the real local Redis, and with Redis down."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from dataplane.metering.meter import TokenUsage
from dataplane.policy.cache import CachedResponse, CacheRecorder, cache_key
from dataplane.policy.cache_store import RedisCache, encode_entry
from tests.dataplane.anthropic_streams import text_stream
from tests.dataplane.redis_support import REDIS_URL, keys_under, redis_namespace

pytestmark = pytest.mark.redis

MODEL = "claude-sonnet-4-5-20250929"
HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"x-odd", b"\xff\x00")]
USAGE = TokenUsage(input_tokens=12, output_tokens=9, cache_creation_input_tokens=5,
                   cache_read_input_tokens=7, cache_write_5m_tokens=2, cache_write_1h_tokens=3)  # fmt: skip


def recorded(stream: bytes, size: int = 5) -> CachedResponse:
    rec = CacheRecorder(1 << 24)
    for i in range(0, len(stream), size):
        rec.add(stream[i : i + size])
    e = rec.entry(200, HEADERS, MODEL, USAGE, 4321)
    assert e is not None
    return e


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with redis_namespace() as p:
        yield p


@pytest.fixture
async def cache(prefix: str) -> AsyncIterator[RedisCache]:
    c = RedisCache.from_url(REDIS_URL, prefix=prefix, max_entry_bytes=64 * 1024)
    yield c
    await c.aclose()


async def test_round_trip_byte_identical(cache: RedisCache, prefix: str) -> None:
    stream = text_stream()
    e = recorded(stream)
    k = cache_key("team-a", MODEL, {"model": MODEL, "temperature": 0}, [], [])
    assert await cache.get(k) is None
    await cache.put(k, e, 60)
    got = await cache.get(k)
    assert got == e
    assert got is not None and got.chunks == e.chunks and b"".join(got.chunks) == stream
    assert await keys_under(prefix) == [f"{prefix}cache:{k}"]
    # another workspace, same request: a miss
    assert (
        await cache.get(cache_key("team-b", MODEL, {"model": MODEL, "temperature": 0}, [], []))
        is None
    )


async def test_ttl_is_set_in_milliseconds(cache: RedisCache, prefix: str) -> None:
    await cache.put("k", recorded(b"hello world"), 30)
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        pttl = await admin.pttl(f"{prefix}cache:k")
        assert 29_000 < pttl <= 30_000
        assert await admin.get(f"{prefix}cache:k") == encode_entry(recorded(b"hello world"))
    finally:
        await admin.aclose()
    await cache.put("zero", recorded(b"x"), 0)
    assert await keys_under(prefix) == [f"{prefix}cache:k"]


async def test_oversized_entries_are_not_stored(cache: RedisCache, prefix: str) -> None:
    await cache.put("big", recorded(b"x" * (64 * 1024 + 1), 4096), 60)
    await cache.put("edge", recorded(b"x" * (64 * 1024 - 10), 4096), 60)  # frame > cap
    assert await keys_under(prefix) == []
    assert await cache.get("big") is None


async def test_malformed_value_is_a_miss(cache: RedisCache, prefix: str) -> None:
    admin = aioredis.Redis.from_url(REDIS_URL)
    try:
        await admin.set(f"{prefix}cache:bad", b"TGC1\x00\x00\x00\x05garbage", px=60_000)
    finally:
        await admin.aclose()
    assert await cache.get("bad") is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_redis_down_is_a_miss_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    c = RedisCache.from_url(f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.2, breaker_s=0)
    try:
        with caplog.at_level(logging.WARNING, logger="tollgate.cache"):
            for _ in range(3):
                assert await c.get("k") is None
                await c.put("k", recorded(b"hello"), 60)
        warnings = [r for r in caplog.records if r.name == "tollgate.cache"]
        assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    finally:
        await c.aclose()


async def test_breaker_skips_redis_after_a_failure() -> None:
    now = [100.0]
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{_closed_port()}/0", socket_connect_timeout=0.2
    )
    c = RedisCache(client, breaker_s=5.0, clock=lambda: now[0])
    calls = 0
    original = client.get

    async def counting_get(name: str) -> object:
        nonlocal calls
        calls += 1
        return await original(name)

    client.get = counting_get  # type: ignore[method-assign,assignment]
    try:
        assert await c.get("k") is None
        assert await c.get("k") is None  # within the breaker window: Redis not tried
        assert calls == 1
        now[0] += 5.0
        assert await c.get("k") is None
        assert calls == 2
    finally:
        await c.aclose()
