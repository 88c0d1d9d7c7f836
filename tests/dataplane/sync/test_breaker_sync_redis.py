"""Breakers shared between two data planes through the local Redis, by two BreakerSync tasks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from dataplane.sync.breaker_sync import BreakerSync
from gwapi.v1 import common_pb2
from tests.dataplane.policy.test_routing import Planner, build, principal, record, target
from tests.dataplane.redis_support import REDIS_URL, keys_under, redis_namespace

ROUTE = common_pb2.Route(
    name="fb",
    mode="fallback",
    targets=[target("a"), target("b")],
    breaker_failures=2,
    breaker_cooldown_s=10,
)
SNAP = build(ROUTE)
KEY = principal(SNAP, "key-fb")


class Skewable:
    """time.monotonic, plus an offset a test can move forward (to end a cooldown)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def replica() -> tuple[Planner, Skewable]:
    clock = Skewable()
    return Planner(clock), clock


async def until(check: Callable[[], bool], timeout: float = 2.0) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not shared in time"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with redis_namespace() as p:
        yield p


async def test_two_replicas_share_open_and_close(prefix: str) -> None:
    (ra, _), (rb, clock_b) = replica(), replica()
    sa = BreakerSync.from_url(REDIS_URL, ra.breaker, prefix=prefix)
    sb = BreakerSync.from_url(REDIS_URL, rb.breaker, prefix=prefix)
    sa.start()
    sb.start()
    try:
        record(ra, KEY, "a", False)
        record(ra, KEY, "a", False)  # opens on A
        assert ra.breaker_states() == {"a": "open"}
        took = await until(lambda: rb.breaker_states().get("a") == "open")
        assert took < 1.2
        assert rb.tried(KEY) == ["b", "a"]  # B skips a without having seen it fail
        assert f"{prefix}breaker:a" in await keys_under(prefix)

        clock_b.offset = 11.0  # B's cooldown is over: its next plan probes a
        assert rb.breaker_states() == {"a": "half_open"}
        assert rb.tried(KEY) == ["a", "b"]
        record(rb, KEY, "a", True)  # the probe succeeded
        took = await until(lambda: ra.breaker_states().get("a") == "closed")
        assert took < 1.2
        assert ra.tried(KEY) == ["a", "b"]
        await asyncio.sleep(0.7)  # a few more rounds change nothing
        assert ra.breaker_states() == {"a": "closed"} and rb.breaker_states() == {"a": "closed"}
    finally:
        await sa.stop()
        await sb.stop()
    assert ra.breaker.on_transition is None


async def test_a_newer_entry_is_never_overwritten(prefix: str) -> None:
    (ra, _), (rb, _) = replica(), replica()
    sa = BreakerSync.from_url(REDIS_URL, ra.breaker, prefix=prefix)
    sb = BreakerSync.from_url(REDIS_URL, rb.breaker, prefix=prefix)
    try:
        record(ra, KEY, "a", False)
        record(ra, KEY, "a", False)  # A opens first ...
        await asyncio.sleep(0.01)
        record(rb, KEY, "a", False)
        record(rb, KEY, "a", False)  # ... B later
        await sb.publish_pending()
        await sa.publish_pending()  # A's older change arrives last: dropped
        await sa.pull()
        ra_until = ra.breaker._cells["a"].open_until
        rb_until = rb.breaker._cells["a"].open_until
        assert ra_until is not None and rb_until is not None
        assert abs(ra_until - rb_until) < 0.01  # A took B's later cooldown end
    finally:
        await sa.stop()
        await sb.stop()


async def test_redis_down_both_keep_working_locally(caplog: pytest.LogCaptureFixture) -> None:
    down = "redis://127.0.0.1:1/0"  # nothing listens there
    (ra, _), (rb, _) = replica(), replica()
    sa = BreakerSync.from_url(down, ra.breaker, retry_s=0.2)
    sb = BreakerSync.from_url(down, rb.breaker, retry_s=0.2)
    caplog.set_level(logging.WARNING, logger="tollgate.breaker_sync")
    sa.start()
    sb.start()
    try:
        for _ in range(3):
            start = time.monotonic()
            record(ra, KEY, "a", False)
            record(ra, KEY, "a", False)
            assert time.monotonic() - start < 0.01  # never waits on Redis
            assert ra.tried(KEY) == ["b", "a"]  # local breaker still decides
            assert rb.tried(KEY) == ["a", "b"]  # B, alone, has seen nothing
            record(ra, KEY, "a", True)
            assert ra.tried(KEY) == ["a", "b"]
            await asyncio.sleep(0.3)
    finally:
        await sa.stop()
        await sb.stop()
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 2  # once per replica for the whole outage
