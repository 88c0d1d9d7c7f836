"""Claude Code's own figures from its OTLP metrics, summed per developer and UTC day.

Only signed-in developers produce activity (the control plane stores it per developer and day);
virtual keys' telemetry is forwarded but not summed here.

Metrics read (Claude Code 2.1.197; the data point attribute that splits them in brackets):

=======================================  ==============================================
``claude_code.cost.usage`` (USD)         ``cost_micros`` (the client's own estimate)
``claude_code.token.usage`` [type]       input / output / cacheRead / cacheCreation tokens
``claude_code.lines_of_code.count``      [type] added / removed
``claude_code.commit.count``             commits
``claude_code.pull_request.count``       pull requests
``claude_code.code_edit_tool.decision``  [decision] accept / reject
``claude_code.session.count``            sessions
=======================================  ==============================================

Temporality: Claude Code exports **delta** sums by default; those are added as they come.
**Cumulative** sums (``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=cumulative``) are
turned into deltas against the last value seen for the same series (metric, resource and point
attributes, start time), kept in a bounded table:

* a series seen for the first time counts its whole value only if it started after this data
  plane did; one that started earlier (this replica restarted, or the client moved here from
  another replica) only sets the baseline, so nothing is counted twice (what it did in between
  is lost instead);
* a value lower than the last one (a counter reset) counts from zero;
* series not seen for ``series_ttl_s`` are forgotten; past ``max_series`` new series are
  ignored (counted in ``tollgate_activity_dropped_total{reason="series"}``) rather than
  evicting live ones, which would count them twice later.

With several data planes, cumulative exports of one client must keep reaching the same replica
(Claude Code's exporter keeps its connection alive, so it normally does); delta exports have no
such need.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from dataplane.telemetry.identity import Identity
from dataplane.telemetry.metrics import TelemetryMetrics
from dataplane.telemetry.otlp import IDENTITY_KEYS
from gwapi.v1 import telemetry_pb2

DAY_MS = 86_400_000
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE

# DeveloperActivity's counters, filled from metrics (the proto is the one list): every field but
# who and when.
FIELDS = tuple(
    f.name
    for f in telemetry_pb2.DeveloperActivity.DESCRIPTOR.fields
    if f.name not in ("developer_id", "workspace", "time_ms")
)
_BY_ATTRIBUTE: dict[str, tuple[str, dict[str, str]]] = {
    "claude_code.token.usage": (
        "type",
        {
            "input": "input_tokens",
            "output": "output_tokens",
            "cacheRead": "cache_read_tokens",
            "cacheCreation": "cache_creation_tokens",
        },
    ),
    "claude_code.lines_of_code.count": (
        "type",
        {"added": "lines_added", "removed": "lines_removed"},
    ),
    "claude_code.code_edit_tool.decision": (
        "decision",
        {"accept": "edits_accepted", "reject": "edits_rejected"},
    ),
}
_PLAIN = {
    "claude_code.cost.usage": "cost_micros",
    "claude_code.commit.count": "commits",
    "claude_code.pull_request.count": "pull_requests",
    "claude_code.session.count": "sessions",
}
WANTED = frozenset(_PLAIN) | frozenset(_BY_ATTRIBUTE)
_SCALE = {"cost_micros": 1_000_000}  # USD → micro-dollars; everything else is a count

IDENTITY = frozenset(IDENTITY_KEYS)  # stamped or not, the same series
SeriesKey = tuple[str, str, int, tuple[tuple[str, bytes], ...], tuple[tuple[str, bytes], ...]]
RowKey = tuple[str, str, int]  # developer id, workspace, UTC day (ms)


@dataclass
class _Row:
    time_ms: int
    values: dict[str, int] = field(default_factory=dict)


@dataclass
class _Series:
    total: int  # last cumulative value, scaled to the field's integer unit
    seen_ms: int


class ActivityAggregator:
    def __init__(
        self,
        metrics: TelemetryMetrics | None = None,
        *,
        started_ns: int | None = None,
        max_series: int = 200_000,
        max_rows: int = 50_000,
        series_ttl_s: float = 6 * 3600,
    ) -> None:
        self.metrics = metrics or TelemetryMetrics()
        self.started_ns = time.time_ns() if started_ns is None else started_ns
        self.max_series = max_series
        self.max_rows = max_rows
        self.series_ttl_ms = int(series_ttl_s * 1000)
        self._series: collections.OrderedDict[SeriesKey, _Series] = collections.OrderedDict()
        self._rows: dict[RowKey, _Row] = {}

    @property
    def pending_rows(self) -> int:
        return len(self._rows)

    @property
    def series(self) -> int:
        return len(self._series)

    def add(
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        identity: Identity,
        now_ms: int,
    ) -> None:
        """Sum the figures of one export for ``identity`` (a developer; others are ignored)."""
        if not identity.is_developer:
            return
        row_key = (identity.developer_id, identity.workspace, now_ms - now_ms % DAY_MS)
        resource_key: tuple[tuple[str, bytes], ...] | None = None
        for rm in request.resource_metrics:
            resource_key = None
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name not in WANTED or metric.WhichOneof("data") != "sum":
                        continue
                    temporality = metric.sum.aggregation_temporality
                    if temporality not in (DELTA, CUMULATIVE):
                        continue
                    for point in metric.sum.data_points:
                        name = _field(metric.name, point.attributes)
                        if name is None:
                            continue
                        scaled = _scaled(point, name)
                        if temporality == DELTA:
                            amount = scaled
                        else:
                            if resource_key is None:
                                resource_key = _attrs_key(
                                    a for a in rm.resource.attributes if a.key not in IDENTITY
                                )
                            amount = self._cumulative(
                                (
                                    identity.developer_id,
                                    metric.name,
                                    point.start_time_unix_nano,
                                    resource_key,
                                    _attrs_key(point.attributes),
                                ),
                                scaled,
                                point.start_time_unix_nano,
                                now_ms,
                            )
                        if amount > 0:
                            self._add(row_key, name, amount, now_ms)

    def _cumulative(self, key: SeriesKey, total: int, start_ns: int, now_ms: int) -> int:
        state = self._series.get(key)
        if state is None:
            if len(self._series) >= self.max_series:
                self.expire(now_ms)
                if len(self._series) >= self.max_series:
                    self.metrics.activity_dropped.inc(("series",))
                    return 0
            self._series[key] = _Series(total, now_ms)
            return total if start_ns >= self.started_ns else 0
        self._series.move_to_end(key)
        state.seen_ms = now_ms
        previous, state.total = state.total, total
        return total - previous if total >= previous else total

    def _add(self, key: RowKey, name: str, amount: int, now_ms: int) -> None:
        row = self._rows.get(key)
        if row is None:
            if len(self._rows) >= self.max_rows:
                self.metrics.activity_dropped.inc(("rows",))
                return
            row = self._rows[key] = _Row(now_ms)
        row.time_ms = max(row.time_ms, now_ms)
        row.values[name] = row.values.get(name, 0) + amount

    def expire(self, now_ms: int) -> None:
        """Forget cumulative series not seen for ``series_ttl_s``."""
        cutoff = now_ms - self.series_ttl_ms
        while self._series:
            key, state = next(iter(self._series.items()))
            if state.seen_ms >= cutoff:
                break
            del self._series[key]

    def take(self) -> list[telemetry_pb2.DeveloperActivity]:
        """Everything summed since the last call, one row per developer, workspace and day."""
        rows, self._rows = self._rows, {}
        out = []
        for (developer_id, workspace, _day), row in sorted(rows.items()):
            out.append(
                telemetry_pb2.DeveloperActivity(
                    developer_id=developer_id,
                    workspace=workspace,
                    time_ms=row.time_ms,
                    **row.values,
                )
            )
        return out


def _field(metric: str, attributes: Iterable[common_pb2.KeyValue]) -> str | None:
    plain = _PLAIN.get(metric)
    if plain is not None:
        return plain
    attribute, mapping = _BY_ATTRIBUTE[metric]
    for kv in attributes:
        if kv.key == attribute:
            return mapping.get(kv.value.string_value)
    return None


def _scaled(point: metrics_pb2.NumberDataPoint, name: str) -> int:
    value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
    if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite: ignore
        return 0
    return round(value * _SCALE.get(name, 1))


def _attrs_key(attributes: Iterable[common_pb2.KeyValue]) -> tuple[tuple[str, bytes], ...]:
    return tuple(
        sorted((kv.key, kv.value.SerializeToString(deterministic=True)) for kv in attributes)
    )
