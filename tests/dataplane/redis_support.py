"""The local Redis for counter tests: one key prefix per test, every key deleted afterwards.

Unreachable Redis: the test is skipped locally and FAILS under CI (env var CI set), where the
machine runs Redis and its absence is a broken environment, not a reason to pass.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.ci import unavailable

REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


@contextlib.asynccontextmanager
async def redis_namespace() -> AsyncIterator[str]:
    """Yields a fresh ``tollgate-test-<hex>:`` prefix; deletes every key under it at the end."""
    admin = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        await admin.ping()
    except (RedisError, OSError) as exc:
        await admin.aclose()
        unavailable(f"Redis not reachable at {REDIS_URL}: {exc}")  # fails under CI
    prefix = f"tollgate-test-{secrets.token_hex(6)}:"
    try:
        yield prefix
    finally:
        keys = [k async for k in admin.scan_iter(match=prefix + "*", count=500)]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()


async def keys_under(prefix: str) -> list[str]:
    admin = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return sorted([k async for k in admin.scan_iter(match=prefix + "*", count=500)])
    finally:
        await admin.aclose()
