"""The live-stats aggregator: synthetic events, an injected clock, no server."""

from __future__ import annotations

import pytest

from controlplane.usage.stats import (
    MAX_WINDOW_S,
    StatsAggregator,
    hist_index,
    hist_value,
    percentile,
)
from gwapi.v1 import common_pb2 as pb
from gwapi.v1 import telemetry_pb2 as tpb

T0 = 1_700_000_000_000  # ms, on a second boundary


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def ev(
    n: int,
    t: int,
    *,
    ws: str = "team-a",
    key: str = "key_a",
    provider: str = "anthropic",
    status: int = 200,
    error_type: str = "",
    latency: int = 100,
    ttfb: int = 10,
    tokens: int = 30,
    cost: int = 1_000,
) -> tpb.UsageEvent:
    return tpb.UsageEvent(
        request_id=f"r{n}",
        time_ms=t,
        workspace=ws,
        key_id=key,
        provider=provider,
        status=status,
        error_type=error_type,
        latency_ms=latency,
        ttfb_ms=ttfb,
        usage=pb.Usage(input_tokens=tokens - 10, output_tokens=10, cost_micros=cost),
    )


def test_histogram_is_exact_below_32_and_within_4_percent_above() -> None:
    for v in range(32):
        assert hist_value(hist_index(v)) == v
    for v in (32, 33, 100, 999, 1_234, 65_000, 600_000):
        assert abs(hist_value(hist_index(v)) - v) <= v * 0.04
    indices = [hist_index(v) for v in range(0, 5_000)]
    assert indices == sorted(indices)  # monotonic: percentiles walk slots in value order


def test_percentile_nearest_rank() -> None:
    hist = {hist_index(v): 1 for v in range(1, 21)}  # 1..20 ms once each
    assert percentile(hist, 0.5) == 10
    assert percentile(hist, 0.95) == 19
    assert percentile(hist, 0.99) == 20
    assert percentile({}, 0.5) == 0


def test_frame_rates_errors_percentiles_and_sparkline() -> None:
    clock = Clock(T0 + 9_500)  # inside second 9
    agg = StatsAggregator(clock)
    events = [ev(i, T0 + (i % 10) * 1000, latency=i + 1, ttfb=(i % 5) + 1) for i in range(20)]
    events += [
        ev(100, T0 + 9_000, status=529, error_type="overloaded_error", latency=30),
        ev(101, T0 + 9_100, status=200, error_type="api_error", latency=30),  # mid-stream error
        ev(102, T0 + 8_000, ws="team-b", provider="bedrock"),
    ]
    agg.add(events)
    frame = agg.frame("workspace", window_s=10)
    assert frame.time_ms == T0 + 9_500
    assert [r.group for r in frame.rows] == ["team-a", "team-b"]
    a = frame.rows[0]
    assert a.requests_per_s == pytest.approx(22 / 10)
    assert a.error_rate == pytest.approx(2 / 22)
    assert a.tokens_per_s == pytest.approx(22 * 30 / 10)
    assert a.cost_micros == 22_000
    # latencies 1..20 plus 30, 30: nearest rank
    assert (a.latency_p50_ms, a.latency_p95_ms, a.latency_p99_ms) == (11, 30, 30)
    assert a.ttfb_p50_ms == 3 and a.ttfb_p99_ms == 10
    assert list(a.requests_per_second) == [2] * 9 + [4]  # oldest first, the current second last
    assert list(frame.rows[1].requests_per_second) == [0] * 8 + [1, 0]

    providers = agg.frame("provider", window_s=10)
    assert [(r.group, round(r.requests_per_s * 10)) for r in providers.rows] == [
        ("anthropic", 22),
        ("bedrock", 1),
    ]
    only_b = agg.frame("provider", window_s=10, workspace="team-b")
    assert [r.group for r in only_b.rows] == ["bedrock"]
    keys = agg.frame("key", window_s=10, workspace="nobody")
    assert list(keys.rows) == []


def test_window_slides_with_the_clock_and_old_buckets_are_dropped() -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock)
    agg.add([ev(1, T0), ev(2, T0 + 1), ev(3, T0 - 1_000)])
    assert list(agg.frame("key", window_s=3).rows[0].requests_per_second) == [0, 1, 2]
    clock.ms += 2_000
    assert list(agg.frame("key", window_s=3).rows[0].requests_per_second) == [2, 0, 0]
    clock.ms += 1_000
    assert list(agg.frame("key", window_s=3).rows) == []  # nothing in the window: no row
    assert agg.bucket_count == 8  # 2 seconds x 4 groupings, still within MAX_WINDOW_S
    clock.ms += MAX_WINDOW_S * 1000
    agg.frame("key")
    assert agg.bucket_count == 0


def test_events_outside_the_retained_range_are_ignored() -> None:
    clock = Clock(T0)
    agg = StatsAggregator(clock)
    agg.add([ev(1, T0 - MAX_WINDOW_S * 1000), ev(2, T0 + 3_600_000), ev(3, T0)])
    assert agg.bucket_count == 4  # only the current event, once per grouping


def test_window_defaults_and_limits() -> None:
    agg = StatsAggregator(Clock(T0))
    agg.add([ev(1, T0)])
    assert len(agg.frame("workspace", window_s=0).rows[0].requests_per_second) == 60
    assert len(agg.frame("workspace", window_s=10_000).rows[0].requests_per_second) == 600
    with pytest.raises(ValueError):
        agg.frame("model")
