"""The hub's tails (TailLogs, TailAudit): history first, then live events once each, filtered,
ending with the hub; leaving the tail ends its subscription at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

import pytest

from controlplane.fanout import Hub, Tail


def _tail(hub: Hub[int], follow: bool = True) -> Tail[int]:
    return Tail(hub, follow, key=lambda ev: ev, wanted=lambda ev: ev % 2 == 0, what="test tail")


async def _take(tail: Tail[int], n: int) -> list[int]:
    got = []
    async for ev in tail:
        got.append(ev)
        if len(got) == n:
            break
    return got


async def test_history_then_live_events_once_each_and_filtered() -> None:
    hub: Hub[int] = Hub()
    with _tail(hub) as tail:
        hub.publish([4])  # committed while the history was being read: in both
        tail.seed([2, 4])
        hub.publish([5])  # not wanted
        hub.publish([6])
        assert await asyncio.wait_for(_take(tail, 3), 5) == [2, 4, 6]


async def test_without_follow_the_history_is_all() -> None:
    hub: Hub[int] = Hub()
    with _tail(hub, follow=False) as tail:
        assert hub.subscriber_count == 0
        tail.seed([1, 2])  # the history is sent as read; the filter is for live events
        hub.publish([8])
        assert [ev async for ev in tail] == [1, 2]


async def test_the_tail_ends_when_the_hub_closes() -> None:
    hub: Hub[int] = Hub()
    with _tail(hub) as tail:
        tail.seed([])
        task = asyncio.ensure_future(_take(tail, 10))
        hub.publish([2])
        await asyncio.sleep(0)
        hub.close()
        assert await asyncio.wait_for(task, 5) == [2]


async def test_leaving_the_tail_ends_the_subscription_and_reports_a_slow_follower(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub: Hub[int] = Hub(queue_size=2)
    with caplog.at_level(logging.WARNING, "controlplane.fanout"), _tail(hub) as tail:
        tail.seed([])
        assert hub.subscriber_count == 1
        for ev in (2, 4, 6, 8):  # the queue holds two: the two oldest are dropped
            hub.publish([ev])
        assert await asyncio.wait_for(_take(tail, 2), 5) == [6, 8]
    assert hub.subscriber_count == 0
    assert "test tail was too slow: 2 events skipped" in caplog.text


async def test_a_handler_closed_mid_follow_ends_its_subscription() -> None:
    # The gRPC stream's handler is an async generator; closing it (the client left) must end
    # the subscription then and there, not when something is garbage-collected.
    hub: Hub[int] = Hub()

    async def handler() -> AsyncIterator[int]:
        with _tail(hub) as tail:
            tail.seed([2])
            async for ev in tail:
                yield ev

    stream = handler()
    assert await stream.__anext__() == 2
    assert hub.subscriber_count == 1
    waiting = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert hub.subscriber_count == 0


async def test_a_handler_closed_between_events_ends_its_subscription() -> None:
    # grpc.aio closes a finished stream's generator while it waits at its ``yield``: the tail
    # must not outlive it (a nested generator would, until collected).
    hub: Hub[int] = Hub()

    async def handler() -> AsyncGenerator[int, None]:
        with _tail(hub) as tail:
            tail.seed([2, 4])
            async for ev in tail:
                yield ev

    stream = handler()
    assert await stream.__anext__() == 2
    await stream.aclose()
    assert hub.subscriber_count == 0
