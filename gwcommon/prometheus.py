"""A tiny Prometheus registry (text exposition format 0.0.4), stdlib only, shared by both planes.

Counters and histograms are plain dicts keyed by a tuple of label values (fixed label names per
metric, fixed histogram buckets); gauges are read from callbacks at scrape time. Cheap enough to
update on every request: a dict lookup and an add.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[str, ...]


def escape_label(value: str) -> str:
    """A label value as the exposition format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _fmt(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _labels(names: Labels, values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    def __init__(self, name: str, help: str, labels: Labels = ()) -> None:
        self.name, self.help, self.label_names = name, help, labels
        self.values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, labels: Labels = ()) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_fmt(value)}"


class Gauge:
    """A gauge whose samples come from a callback at scrape time."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: Labels,
        collect: Callable[[], Iterable[tuple[Labels, float]]],
    ) -> None:
        self.name, self.help, self.label_names, self.collect = name, help, labels, collect

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} gauge"
        for labels, value in sorted(self.collect()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_fmt(value)}"


class Histogram:
    def __init__(self, name: str, help: str, labels: Labels, buckets: Sequence[float]) -> None:
        self.name, self.help, self.label_names = name, help, labels
        self.buckets = tuple(buckets)
        # per label set: [count per bucket (non-cumulative) ..., +Inf bucket], sum
        self.series: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect.bisect_left(self.buckets, value)] += 1
        series[1][0] += value

    def count(self, labels: Labels) -> int:
        series = self.series.get(labels)
        return sum(series[0]) if series else 0

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} histogram"
        for labels, (counts, total) in sorted(self.series.items()):
            running = 0
            for bound, n in zip((*self.buckets, float("inf")), counts, strict=True):
                running += n
                le = f'le="{_fmt(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, labels, le)} {running}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_fmt(total[0])}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {running}"


Metric = Counter | Gauge | Histogram
M = TypeVar("M", Counter, Gauge, Histogram)


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Metric] = []

    def add(self, metric: M) -> M:
        self.metrics.append(metric)
        return metric

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self.metrics:
            lines.extend(metric.render())
        return ("\n".join(lines) + "\n").encode()
