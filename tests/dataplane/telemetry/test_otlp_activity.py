"""Developer activity from Claude Code's own metrics, on the exports captured from the real CLI
(tests/fixtures/otlp: one session that wrote a file, edited it, committed and opened a pull
request), in every temporality and encoding it sends; and the batches to the control plane."""

from __future__ import annotations

import gzip
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from dataplane.asgi import Message
from dataplane.telemetry.activity import DAY_MS, ActivityAggregator
from dataplane.telemetry.activity_reporter import ActivityReporter
from dataplane.telemetry.destinations import Destination
from dataplane.telemetry.endpoint import OtlpHandler
from dataplane.telemetry.forwarder import Forwarder
from dataplane.telemetry.identity import Identity, identity_of
from dataplane.telemetry.metrics import TelemetryMetrics
from dataplane.telemetry.otlp import stamp_identity
from gwapi.v1 import telemetry_pb2
from tests.dataplane.otlp_support import FIXTURES, fixture
from tests.fakes.otlp_collector import FakeCollector, parse_otlp_json

DEV = Identity(workspace="team-a", developer_id="dev_alice", developer_email="alice@example.com")
KEY = Identity(workspace="team-a", key_id="key_alice", key_name="alice-laptop")
NOW_MS = 1_796_554_100_000  # the day the fixtures were captured
# What the captured session did, as Claude Code itself counted it.
SESSION = {
    "cost_micros": 32_610,
    "input_tokens": 412,
    "output_tokens": 162,
    "cache_read_tokens": 18_000,
    "cache_creation_tokens": 2_500,
    "lines_added": 6,
    "lines_removed": 1,
    "commits": 1,
    "pull_requests": 1,
    "edits_accepted": 2,
    "sessions": 1,
}


def load(name: str) -> metrics_service_pb2.ExportMetricsServiceRequest:
    raw = fixture(name)
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    if ".json" in name:
        msg = parse_otlp_json("metrics", raw)
        assert isinstance(msg, metrics_service_pb2.ExportMetricsServiceRequest)
        return msg
    return metrics_service_pb2.ExportMetricsServiceRequest.FromString(raw)


def series(pattern: str) -> list[metrics_service_pb2.ExportMetricsServiceRequest]:
    return [load(p.name) for p in sorted(FIXTURES.glob(pattern))]


def totals(rows: list[telemetry_pb2.DeveloperActivity]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        for field, value in json_format.MessageToDict(
            row, preserving_proto_field_name=True
        ).items():
            if field not in ("developer_id", "workspace", "time_ms"):
                out[field] = out.get(field, 0) + int(value)
    return out


@pytest.mark.parametrize(
    "pattern",
    ["metrics-delta-*.pb", "metrics-delta-*.json", "metrics-delta-gzip-*.pb.gz"],
)
def test_delta_exports_sum_to_the_session(pattern: str) -> None:
    agg = ActivityAggregator()
    for request in series(pattern):
        agg.add(request, DEV, NOW_MS)
    rows = agg.take()
    assert [(r.developer_id, r.workspace, r.time_ms) for r in rows] == [
        ("dev_alice", "team-a", NOW_MS)
    ]
    assert totals(rows) == SESSION
    assert agg.take() == []  # taken once


def test_cumulative_exports_count_each_increment_once() -> None:
    requests = series("metrics-cumulative-*.pb")
    assert len(requests) == 7
    agg = ActivityAggregator(started_ns=0)  # this data plane saw the series start
    collected = []
    for request in requests:
        agg.add(request, DEV, NOW_MS)
        collected += agg.take()  # flushed between exports, as the reporter does
    assert totals(collected) == SESSION
    # Re-sending an export (same cumulative values) adds nothing.
    agg.add(requests[-1], DEV, NOW_MS)
    assert totals(agg.take()) == {}


def test_cumulative_series_older_than_this_data_plane_only_set_a_baseline() -> None:
    """After a restart the first cumulative value seen may already have been counted by the
    previous process: it is not counted again; increments from there on are."""
    requests = series("metrics-cumulative-*.pb")
    # This data plane (re)started just before the third export: the series begun earlier set
    # a baseline; the commit and pull-request counters, begun later, count in full.
    restart = requests[2].resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    agg = ActivityAggregator(started_ns=restart.time_unix_nano)
    agg.add(requests[2], DEV, NOW_MS)  # mid-session: cost 0.0025, 2 accepted edits, 6/1 lines
    assert agg.take() == []
    for request in requests[3:]:
        agg.add(request, DEV, NOW_MS)
    got = totals(agg.take())
    assert got == {
        "cost_micros": 32_610 - 2_500,
        "input_tokens": 412 - 200,
        "output_tokens": 162 - 60,
        "cache_read_tokens": 18_000,
        "cache_creation_tokens": 2_500,
        "commits": 1,
        "pull_requests": 1,
    }


def test_stamping_does_not_start_a_new_series() -> None:
    """A destination added mid-session makes the exports arrive stamped: same series."""
    requests = series("metrics-cumulative-*.pb")
    agg = ActivityAggregator(started_ns=0)
    agg.add(requests[-2], DEV, NOW_MS)
    stamped = metrics_service_pb2.ExportMetricsServiceRequest()
    stamped.CopyFrom(requests[-1])
    stamp_identity("metrics", stamped, DEV.attributes())
    agg.add(stamped, DEV, NOW_MS)
    assert totals(agg.take()) == SESSION


def test_cumulative_reset_counts_from_zero() -> None:
    requests = series("metrics-cumulative-*.pb")
    agg = ActivityAggregator(started_ns=0)
    agg.add(requests[-1], DEV, NOW_MS)
    agg.take()
    lower = metrics_service_pb2.ExportMetricsServiceRequest()
    lower.CopyFrom(requests[-1])
    for metric in lower.resource_metrics[0].scope_metrics[0].metrics:
        if metric.name == "claude_code.commit.count":
            metric.sum.data_points[0].as_double = 0.0  # reset
    agg.add(lower, DEV, NOW_MS)
    lower.resource_metrics[0].scope_metrics[0].metrics[3].sum.data_points[0].as_double = 2.0
    agg.add(lower, DEV, NOW_MS)
    got = totals(agg.take())
    assert got.get("commits") == 2


def test_rejected_edits_and_midnight() -> None:
    """Reject decisions (interactive only: synthesised from the captured accept), and a day
    boundary splitting one developer's figures into two rows."""
    request = load("metrics-delta-01.pb")
    for metric in request.resource_metrics[0].scope_metrics[0].metrics:
        if metric.name == "claude_code.code_edit_tool.decision":
            for attr in metric.sum.data_points[0].attributes:
                if attr.key == "decision":
                    attr.value.string_value = "reject"
    agg = ActivityAggregator()
    midnight = NOW_MS - NOW_MS % DAY_MS + DAY_MS
    agg.add(request, DEV, midnight - 1)
    agg.add(request, DEV, midnight + 1)
    rows = agg.take()
    assert [r.time_ms for r in rows] == [midnight - 1, midnight + 1]
    assert all(r.edits_rejected == 1 and r.edits_accepted == 0 for r in rows)


def test_virtual_keys_are_forwarded_not_summed() -> None:
    agg = ActivityAggregator()
    for request in series("metrics-delta-*.pb"):
        agg.add(request, KEY, NOW_MS)
    assert agg.take() == []


def test_series_table_is_bounded_without_double_counting() -> None:
    requests = series("metrics-cumulative-*.pb")
    metrics = TelemetryMetrics()
    agg = ActivityAggregator(metrics, started_ns=0, max_series=3)
    for request in requests:
        agg.add(request, DEV, NOW_MS)
    assert agg.series == 3
    assert metrics.activity_dropped.get(("series",)) > 0
    # The tracked series counted once; the untracked ones were not counted at all.
    got = totals(agg.take())
    assert got and all(got[k] <= SESSION[k] for k in got)
    # Idle series expire, making room.
    agg.expire(NOW_MS + 7 * 3600 * 1000)
    assert agg.series == 0


def test_identity_of_a_developer_principal() -> None:
    """The spot the developer principal (P1) plugs into: a member with developer fields."""
    member = SimpleNamespace(
        developer_id="dev_alice", developer_email="alice@example.com", key_id="", key_name=""
    )
    principal: Any = SimpleNamespace(member=member, workspace=SimpleNamespace(name="team-a"))
    ident = identity_of(principal)
    assert ident == DEV
    assert dict(ident.attributes()) == {
        "enduser.id": "alice@example.com",
        "tollgate.developer.id": "dev_alice",
        "tollgate.developer.email": "alice@example.com",
        "tollgate.workspace": "team-a",
    }


async def test_a_developers_export_is_stamped_and_summed() -> None:
    collector = FakeCollector()
    await collector.start()
    metrics = TelemetryMetrics()
    forwarder = Forwarder(metrics)
    agg = ActivityAggregator(metrics)
    handler = OtlpHandler(forwarder, agg, metrics, clock=lambda: NOW_MS / 1000)
    member = SimpleNamespace(developer_id="dev_alice", developer_email="alice@example.com")
    dest = Destination("c", collector.base_url, frozenset({"metrics"}))
    principal = SimpleNamespace(
        member=member,
        workspace=SimpleNamespace(name="team-a"),
        snapshot=SimpleNamespace(telemetry_destinations=(dest,)),
    )
    body = fixture("metrics-delta-01.pb")
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/metrics",
        "headers": [(b"content-type", b"application/x-protobuf")],
        "tollgate.principal": principal,
    }
    try:
        await handler(scope, receive, send)
        assert sent[0]["status"] == 200
        [export] = await collector.wait_for(1)
        attrs = export.resource_attributes()[0]
        assert attrs["enduser.id"] == "alice@example.com"
        assert attrs["tollgate.developer.id"] == "dev_alice"
        assert "tollgate.key.id" not in attrs
        rows = agg.take()
        assert [r.developer_id for r in rows] == ["dev_alice"] and rows[0].cost_micros > 0
    finally:
        await forwarder.aclose(1)
        await collector.stop()


class FakeTelemetry:
    """ReportActivity as the control plane answers it: idempotent on (node, batch)."""

    def __init__(self) -> None:
        self.calls: list[telemetry_pb2.ReportActivityRequest] = []
        self.stored: set[tuple[str, str]] = set()
        self.fail: list[BaseException] = []

    async def __call__(
        self, request: telemetry_pb2.ReportActivityRequest
    ) -> telemetry_pb2.ReportActivityResponse:
        self.calls.append(request)
        if self.fail:
            raise self.fail.pop(0)
        key = (request.node_id, request.batch_id)
        duplicate = key in self.stored
        self.stored.add(key)
        return telemetry_pb2.ReportActivityResponse(
            accepted=0 if duplicate else len(request.activity), duplicate=duplicate
        )


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="nope")


async def test_reporter_retries_the_same_batch_and_keeps_summing() -> None:
    metrics = TelemetryMetrics()
    agg = ActivityAggregator(metrics)
    cp = FakeTelemetry()
    reporter = ActivityReporter(agg, cp, "dp-1", metrics)
    requests = series("metrics-delta-*.pb")
    agg.add(requests[1], DEV, NOW_MS)
    cp.fail = [RpcError(grpc.StatusCode.UNAVAILABLE), ConnectionError("down")]
    assert not await reporter.report_once()
    agg.add(requests[2], DEV, NOW_MS)  # arrives while the first batch is still pending
    assert not await reporter.report_once()
    assert reporter.pending_rows == 2
    assert await reporter.report_once()
    assert len({c.batch_id for c in cp.calls}) == 1  # the same batch, three times
    assert await reporter.report_once()  # then what was summed meanwhile, a new batch
    assert len({c.batch_id for c in cp.calls}) == 2
    assert reporter.pending_rows == 0
    assert metrics.activity_batches.get(("failed",)) == 2
    assert metrics.activity_batches.get(("accepted",)) == 2
    first, second = cp.calls[0].activity[0], cp.calls[-1].activity[0]
    assert first.cost_micros + second.cost_micros > 0


async def test_reporter_drops_a_batch_the_control_plane_refuses() -> None:
    metrics = TelemetryMetrics()
    agg = ActivityAggregator(metrics)
    cp = FakeTelemetry()
    reporter = ActivityReporter(agg, cp, "dp-1", metrics)
    agg.add(load("metrics-delta-01.pb"), DEV, NOW_MS)
    cp.fail = [RpcError(grpc.StatusCode.INVALID_ARGUMENT)]
    assert not await reporter.report_once()
    assert reporter.pending_rows == 0
    assert metrics.activity_batches.get(("rejected",)) == 1


async def test_flush_at_shutdown() -> None:
    metrics = TelemetryMetrics()
    agg = ActivityAggregator(metrics)
    cp = FakeTelemetry()
    reporter = ActivityReporter(agg, cp, "dp-1", metrics)
    agg.add(load("metrics-delta-01.pb"), DEV, NOW_MS)
    assert await reporter.flush(1)
    assert len(cp.calls) == 1 and totals(list(cp.calls[0].activity))["cost_micros"] > 0
