"""The event-loop lag gauge: samples how late a periodic wake-up runs, exposes it on /metrics."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from dataplane.process.looplag import LoopLag
from dataplane.process.server import DataPlane
from gwcommon.prometheus import Registry


def test_record_keeps_a_window_and_clamps_negative_samples() -> None:
    lag = LoopLag(window=3)
    assert lag.max_recent() == 0.0
    for sample in (0.5, 0.001, -0.2, 0.002, 0.003):
        lag.record(sample)
    # 0.5 fell out of the 3-sample window; -0.2 was recorded as 0.
    assert list(lag.recent) == [0.0, 0.002, 0.003]
    assert lag.max_recent() == 0.003
    assert lag.histogram.count(()) == 5


def test_metrics_render_histogram_and_recent_max() -> None:
    registry = Registry()
    lag = LoopLag()
    lag.register(registry)
    lag.record(0.03)
    text = registry.render().decode()
    assert 'tollgate_event_loop_lag_seconds_bucket{le="0.05"} 1' in text
    assert 'tollgate_event_loop_lag_seconds_bucket{le="0.02"} 0' in text
    assert "tollgate_event_loop_lag_max_seconds 0.03" in text


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        LoopLag(interval=0)


async def test_a_blocked_loop_shows_as_lag() -> None:
    lag = LoopLag(interval=0.01)
    task = asyncio.create_task(lag.run())
    try:
        while lag.histogram.count(()) < 1:  # the sampler is running
            await asyncio.sleep(0.005)
        seen = lag.histogram.count(())
        time.sleep(0.08)  # hold the loop: the sampler's next wake-up is ~70 ms late
        deadline = time.monotonic() + 5
        while lag.histogram.count(()) == seen and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert lag.max_recent() >= 0.06
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_data_plane_samples_its_loop_and_serves_the_lag(
    dataplane: DataPlane, client: httpx.AsyncClient
) -> None:
    async with asyncio.timeout(10):
        while dataplane.loop_lag.histogram.count(()) < 2:  # the sampler runs from start()
            await asyncio.sleep(0.02)
    metrics = (await client.get("/metrics")).text
    assert "# TYPE tollgate_event_loop_lag_seconds histogram" in metrics
    count = next(
        x for x in metrics.splitlines() if x.startswith("tollgate_event_loop_lag_seconds_count")
    )
    assert int(count.split()[-1]) >= 2
    assert "tollgate_event_loop_lag_max_seconds " in metrics
