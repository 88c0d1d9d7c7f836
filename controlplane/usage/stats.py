"""Rolling live stats for ``Telemetry.StreamStats``: an in-memory aggregator fed at ingest.

Every freshly ingested event lands in one one-second bucket, keyed by the event's ``time_ms``
(when the request arrived), for each of the four groupings (workspace, key, developer, provider), each also
keyed by the event's workspace so a stream can be narrowed to one workspace. A bucket holds
counts (requests, errors, tokens, cost) and two sparse fixed-bucket histograms (latency and
TTFB), so buckets merge exactly and memory stays bounded: values below 32 ms are exact, larger
ones within about 3 %. Buckets older than :data:`MAX_WINDOW_S` (or further than
:data:`MAX_FUTURE_S` ahead of the clock) are dropped.

Everything runs on the event loop thread; nothing here awaits. The store is per process: a
restarted control plane starts from empty stats (the ledger keeps the history).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gwapi.v1 import telemetry_pb2 as tpb

GROUPINGS = ("workspace", "key", "developer", "provider")
DEFAULT_WINDOW_S = 60
MAX_WINDOW_S = 600
MAX_FUTURE_S = 60  # events stamped further ahead than this (clock skew) are ignored
_SUB = 16  # histogram sub-buckets per power of two


def hist_index(value: int) -> int:
    """The histogram slot of a millisecond value (exact below 32)."""
    v = max(0, int(value))
    if v < 2 * _SUB:
        return v
    shift = v.bit_length() - 5  # v >> shift lies in [16, 31]
    return _SUB + shift * _SUB + ((v >> shift) - _SUB)


def hist_value(index: int) -> int:
    """The representative (middle) value of a histogram slot."""
    if index < 2 * _SUB:
        return index
    shift, mantissa = divmod(index - _SUB, _SUB)
    low = (mantissa + _SUB) << shift
    return low + ((1 << shift) - 1) // 2


def percentile(hist: dict[int, int], p: float) -> int:
    """Nearest-rank percentile ``p`` (0..1) of a histogram; 0 when it is empty."""
    total = sum(hist.values())
    if not total:
        return 0
    rank = max(1, math.ceil(p * total))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return hist_value(index)
    return hist_value(max(hist))  # pragma: no cover - rank <= total


@dataclass
class Bucket:
    requests: int = 0
    errors: int = 0
    tokens: int = 0
    cost_micros: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    ttfb: dict[int, int] = field(default_factory=dict)

    def add_point(self, point: tuple[int, int, int, int, int]) -> None:
        """Add one event as :func:`_point` made it (read once, added to four groupings)."""
        errors, tokens, cost, latency, ttfb = point
        self.requests += 1
        self.errors += errors
        self.tokens += tokens
        self.cost_micros += cost
        if latency >= 0:
            self.latency[latency] = self.latency.get(latency, 0) + 1
        if ttfb >= 0:
            self.ttfb[ttfb] = self.ttfb.get(ttfb, 0) + 1

    def merge(self, other: Bucket) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.tokens += other.tokens
        self.cost_micros += other.cost_micros
        for mine, theirs in ((self.latency, other.latency), (self.ttfb, other.ttfb)):
            for i, n in theirs.items():
                mine[i] = mine.get(i, 0) + n


def _point(ev: tpb.UsageEvent) -> tuple[int, int, int, int, int]:
    """(error 0/1, tokens, cost, latency slot, TTFB slot) of an event; a slot is -1 when the
    value is not positive (not measured)."""
    u = ev.usage
    tokens = (
        u.input_tokens + u.output_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens
    )
    latency, ttfb = ev.latency_ms, ev.ttfb_ms
    return (
        1 if ev.status >= 400 or ev.error_type else 0,
        tokens,
        u.cost_micros,
        hist_index(latency) if latency > 0 else -1,
        hist_index(ttfb) if ttfb > 0 else -1,
    )


def _group_of(ev: tpb.UsageEvent, group_by: str) -> str:
    if group_by == "workspace":
        return ev.workspace
    if group_by == "key":
        return ev.key_id
    if group_by == "developer":  # shown by email; virtual-key traffic is group ""
        return ev.developer_email or ev.developer_id
    return ev.provider


def clamp_window(window_s: int) -> int:
    if window_s <= 0:
        return DEFAULT_WINDOW_S
    return min(window_s, MAX_WINDOW_S)


class StatsAggregator:
    """Per grouping: ``second -> (workspace, group) -> Bucket``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # seconds, like time.time
        self._seconds: dict[str, dict[int, dict[tuple[str, str], Bucket]]] = {
            g: {} for g in GROUPINGS
        }

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def add(self, events: Iterable[tpb.UsageEvent]) -> None:
        now_s = self.now_ms() // 1000
        oldest, newest = now_s - MAX_WINDOW_S, now_s + MAX_FUTURE_S
        for ev in events:
            second = ev.time_ms // 1000
            if not oldest < second <= newest:
                continue
            point = _point(ev)  # the event's fields read once, for all four groupings
            workspace = ev.workspace
            for group_by, seconds in self._seconds.items():
                cell = seconds.setdefault(second, {})
                key = (workspace, _group_of(ev, group_by))
                bucket = cell.get(key)
                if bucket is None:
                    bucket = cell[key] = Bucket()
                bucket.add_point(point)
        self.prune(now_s)

    def prune(self, now_s: int) -> None:
        cutoff = now_s - MAX_WINDOW_S
        for seconds in self._seconds.values():
            for second in [s for s in seconds if s <= cutoff]:
                del seconds[second]

    @property
    def bucket_count(self) -> int:
        return sum(len(cell) for s in self._seconds.values() for cell in s.values())

    def frame(
        self,
        group_by: str,
        window_s: int = DEFAULT_WINDOW_S,
        workspace: str = "",
        now_ms: int | None = None,
        scope: frozenset[str] = frozenset(),
    ) -> tpb.StatsFrame:
        """The stats over the ``window_s`` seconds ending with the current (partial) one.

        Rows are sorted by group; a group appears only if it had traffic in the window. With
        ``scope`` (non-empty) only traffic of those workspaces counts (a provider's row is then
        that share of its traffic).
        """
        if group_by not in self._seconds:
            raise ValueError(f"group_by must be one of {', '.join(GROUPINGS)}")
        window_s = clamp_window(window_s)
        now = self.now_ms() if now_ms is None else now_ms
        now_s = now // 1000
        self.prune(now_s)
        first = now_s - window_s + 1
        seconds = self._seconds[group_by]
        totals: dict[str, Bucket] = {}
        series: dict[str, list[int]] = {}
        for second in range(first, now_s + 1):
            cell = seconds.get(second)
            if not cell:
                continue
            for (ws, group), bucket in cell.items():
                if (workspace and ws != workspace) or (scope and ws not in scope):
                    continue
                total = totals.get(group)
                if total is None:
                    total = totals[group] = Bucket()
                    series[group] = [0] * window_s
                total.merge(bucket)
                series[group][second - first] += bucket.requests
        rows = []
        for group in sorted(totals):
            b = totals[group]
            rows.append(
                tpb.StatsRow(
                    group=group,
                    requests_per_s=b.requests / window_s,
                    error_rate=b.errors / b.requests if b.requests else 0.0,
                    tokens_per_s=b.tokens / window_s,
                    latency_p50_ms=percentile(b.latency, 0.50),
                    latency_p95_ms=percentile(b.latency, 0.95),
                    latency_p99_ms=percentile(b.latency, 0.99),
                    ttfb_p50_ms=percentile(b.ttfb, 0.50),
                    ttfb_p95_ms=percentile(b.ttfb, 0.95),
                    ttfb_p99_ms=percentile(b.ttfb, 0.99),
                    cost_micros=b.cost_micros,
                    requests_per_second=series[group],
                )
            )
        return tpb.StatsFrame(time_ms=now, rows=rows)
