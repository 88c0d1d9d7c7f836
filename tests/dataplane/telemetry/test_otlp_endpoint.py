"""``POST /v1/{metrics,logs,traces}`` on a real data plane, forwarding to the strict fake
collector: Claude Code's captured exports (protobuf, OTLP/JSON, gzip; chunked as the CLI sends
them, or with Content-Length), identity attributes, spoofing, refusals, and a dead collector.

This module is long because every case runs a real data plane against the strict fake collector,
and the captured Claude Code exports they replay share one setup."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2 as otel_common

from dataplane.process.server import DataPlane
from tests.dataplane.conftest import SECRET, build_snapshot, start_dataplane
from tests.dataplane.otlp_support import (
    JSON,
    PROTOBUF,
    destination,
    fixture,
    raw_post,
    with_destinations,
)
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.otlp_collector import FakeCollector, parse_otlp_json

AUTH = {"authorization": f"Bearer {SECRET}"}
KEY_IDENTITY = {
    "enduser.id": "alice-laptop",
    "tollgate.key.id": "key_alice",
    "tollgate.workspace": "team-a",
}
COLLECTOR_KEY = "collector-api-key-0123456789abcdef"


@pytest.fixture
async def collector() -> AsyncIterator[FakeCollector]:
    c = FakeCollector(required_headers={"x-api-key": COLLECTOR_KEY})
    await c.start()
    yield c
    await c.stop()


@pytest.fixture
async def dp(tmp_path: Path, upstream: FakeAnthropic) -> AsyncIterator[DataPlane]:
    d = await start_dataplane(tmp_path / "dp", build_snapshot(upstream.base_url))
    yield d
    await d.stop()


def forward_to(dp: DataPlane, collector: FakeCollector, **kw: object) -> None:
    with_destinations(
        dp,
        build_snapshot("http://127.0.0.1:9"),
        destination(
            "main",
            collector.base_url,
            headers={"x-api-key": COLLECTOR_KEY},
            **kw,  # type: ignore[arg-type]
        ),
    )


async def post_fixture(
    dp: DataPlane, path: str, name: str, content_type: str = PROTOBUF, chunked: bool = True
) -> tuple[int, dict[str, str], bytes]:
    """Posts the recorded fixture ``name`` to ``path`` as an authenticated client exports it:
    status, headers and body of the answer."""
    return await raw_post(
        dp.port, path, fixture(name), {**AUTH, "content-type": content_type}, chunked=chunked
    )


def metric_value(dp: DataPlane, line_start: str) -> float:
    for line in dp.metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
async def test_protobuf_export_is_forwarded_with_identity(
    dp: DataPlane, collector: FakeCollector, chunked: bool
) -> None:
    forward_to(dp, collector)
    body = fixture("metrics-delta-01.pb")
    status, headers, answer = await raw_post(
        dp.port, "/v1/metrics", body, {**AUTH, "content-type": PROTOBUF}, chunked=chunked
    )
    assert status == 200 and answer == b""
    assert headers["content-type"] == PROTOBUF
    [export] = await collector.wait_for(1)
    assert export.signal == "metrics" and export.content_type == PROTOBUF
    assert export.headers["x-api-key"] == COLLECTOR_KEY
    [attrs] = export.resource_attributes()
    assert {k: attrs[k] for k in KEY_IDENTITY} == KEY_IDENTITY
    assert attrs["service.name"] == "claude-code"  # the client's own attributes stay
    assert "tollgate.developer.id" not in attrs and "tollgate.developer.email" not in attrs
    # Everything but the resource attributes arrives unchanged.
    sent = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
    got = export.message
    assert got.resource_metrics[0].scope_metrics == sent.resource_metrics[0].scope_metrics


async def test_json_export_is_forwarded_as_protobuf(
    dp: DataPlane, collector: FakeCollector
) -> None:
    forward_to(dp, collector)
    body = fixture("metrics-delta-01.json")
    status, headers, answer = await raw_post(
        dp.port, "/v1/metrics", body, {**AUTH, "content-type": JSON}, chunked=True
    )
    assert (status, answer) == (200, b"{}")
    assert headers["content-type"] == JSON
    [export] = await collector.wait_for(1)
    assert export.content_type == PROTOBUF
    assert export.message.resource_metrics[0].scope_metrics == (
        parse_otlp_json("metrics", body).resource_metrics[0].scope_metrics  # type: ignore[attr-defined]
    )
    [attrs] = export.resource_attributes()
    assert {k: attrs[k] for k in KEY_IDENTITY} == KEY_IDENTITY


async def test_json_traces_keep_their_hex_ids(dp: DataPlane, collector: FakeCollector) -> None:
    """OTLP/JSON ids are hex: forwarded as the same 16/8 bytes, not base64-misread."""
    forward_to(dp, collector)
    body = fixture("traces-00.json")
    status, _, _ = await raw_post(
        dp.port, "/v1/traces", body, {**AUTH, "content-type": JSON}, chunked=True
    )
    assert status == 200
    [export] = await collector.wait_for(1)
    sent = orjson.loads(body)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    got = export.message.resource_spans[0].scope_spans[0].spans
    assert len(got) == len(sent) == 18
    for s, g in zip(sent, got, strict=True):
        assert g.trace_id.hex() == s["traceId"] and len(g.trace_id) == 16
        assert g.span_id.hex() == s["spanId"] and len(g.span_id) == 8
        assert g.parent_span_id.hex() == s.get("parentSpanId", "")


async def test_logs_protobuf_and_json(dp: DataPlane, collector: FakeCollector) -> None:
    forward_to(dp, collector)
    for name, ctype in (("logs-00.pb", PROTOBUF), ("logs-00.json", JSON)):
        status, _, _ = await post_fixture(dp, "/v1/logs", name, ctype)
        assert status == 200
    exports = await collector.wait_for(2)
    for export in exports:
        assert export.signal == "logs"
        attrs = export.resource_attributes()[0]
        assert {k: attrs[k] for k in KEY_IDENTITY} == KEY_IDENTITY
        assert export.message.resource_logs[0].scope_logs[0].log_records


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies(dp: DataPlane, collector: FakeCollector, coding: str) -> None:
    forward_to(dp, collector)
    if coding == "gzip":  # as the CLI sends it with OTEL_EXPORTER_OTLP_COMPRESSION=gzip
        body, plain = fixture("metrics-delta-gzip-00.pb.gz"), None
    else:
        plain = fixture("metrics-delta-01.pb")
        wbits = zlib.MAX_WBITS if coding == "deflate" else -zlib.MAX_WBITS
        c = zlib.compressobj(wbits=wbits)
        body = c.compress(plain) + c.flush()
    status, _, _ = await raw_post(
        dp.port,
        "/v1/metrics",
        body,
        {**AUTH, "content-type": PROTOBUF, "content-encoding": coding.removeprefix("raw-")},
        chunked=True,
    )
    assert status == 200
    [export] = await collector.wait_for(1)
    expected = plain if plain is not None else gzip.decompress(body)
    sent = metrics_service_pb2.ExportMetricsServiceRequest.FromString(expected)
    assert (
        export.message.resource_metrics[0].scope_metrics == sent.resource_metrics[0].scope_metrics
    )


async def test_client_cannot_spoof_identity(dp: DataPlane, collector: FakeCollector) -> None:
    forward_to(dp, collector)
    msg = metrics_service_pb2.ExportMetricsServiceRequest.FromString(fixture("metrics-delta-01.pb"))
    for key, value in (
        ("enduser.id", "ceo@example.com"),
        ("tollgate.developer.id", "dev_ceo"),
        ("tollgate.developer.email", "ceo@example.com"),
        ("tollgate.key.id", "key_other"),
        ("tollgate.workspace", "finance"),
    ):
        msg.resource_metrics[0].resource.attributes.append(
            otel_common.KeyValue(key=key, value=otel_common.AnyValue(string_value=value))
        )
    status, _, _ = await raw_post(
        dp.port,
        "/v1/metrics",
        msg.SerializeToString(),
        {**AUTH, "content-type": PROTOBUF},
        chunked=True,
    )
    assert status == 200
    [export] = await collector.wait_for(1)
    attrs = export.message.resource_metrics[0].resource.attributes
    keys = [a.key for a in attrs]
    assert sorted(k for k in keys if k.startswith(("tollgate.", "enduser."))) == sorted(
        KEY_IDENTITY
    )
    assert {a.key: a.value.string_value for a in attrs if a.key in KEY_IDENTITY} == KEY_IDENTITY


async def test_no_destination_answers_200_and_discards(dp: DataPlane) -> None:
    status, _, answer = await post_fixture(dp, "/v1/metrics", "metrics-delta-01.pb")
    assert (status, answer) == (200, b"")
    assert metric_value(dp, 'tollgate_otlp_discarded_total{signal="metrics"}') == 1
    assert (
        metric_value(dp, 'tollgate_otlp_received_total{signal="metrics",encoding="protobuf"}') == 1
    )


async def test_refusals_are_anthropic_errors(dp: DataPlane, collector: FakeCollector) -> None:
    forward_to(dp, collector)
    cases = [
        ({"content-type": PROTOBUF}, b"\xff\xff\xff\xff garbage", 400, "not an OTLP metrics"),
        ({"content-type": JSON}, b"{not json", 400, "not JSON"),
        ({"content-type": JSON}, b'{"resourceMetrics": 5}', 400, "OTLP metrics export in JSON"),
        ({"content-type": "text/plain"}, b"hello", 400, "application/x-protobuf"),
        ({"content-type": PROTOBUF, "content-encoding": "br"}, b"x", 400, "Content-Encoding"),
        ({"content-type": PROTOBUF, "content-encoding": "gzip"}, b"not gzip", 400, "decompress"),
    ]
    for headers, body, status, text in cases:
        for chunked in (True, False):
            got, resp_headers, answer = await raw_post(
                dp.port, "/v1/metrics", body, {**AUTH, **headers}, chunked=chunked
            )
            error = orjson.loads(answer)
            assert got == status, (headers, answer)
            assert error["type"] == "error"
            assert error["error"]["type"] == "invalid_request_error"
            assert text in error["error"]["message"], error
            assert "Traceback" not in answer.decode()
            assert resp_headers["x-should-retry"] == "false"
    # Unauthenticated and wrong method: the middleware and the route answer.
    status, _, answer = await raw_post(
        dp.port, "/v1/logs", b"", {"content-type": PROTOBUF}, chunked=False
    )
    assert status == 401 and b"authentication_error" in answer
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}") as client:
        r = await client.get("/v1/metrics", headers=AUTH)
    assert r.status_code == 405 and "Use POST" in r.json()["error"]["message"]
    assert collector.received == []


async def test_oversize_bodies_are_413(tmp_path: Path, upstream: FakeAnthropic) -> None:
    dp = await start_dataplane(tmp_path / "dp", build_snapshot(upstream.base_url))
    try:
        dp.telemetry.handler.max_body = 64 * 1024  # type: ignore[union-attr]
        dp.telemetry.handler.max_decoded = 256 * 1024  # type: ignore[union-attr]
        big = b"\x00" * (100 * 1024)
        for chunked in (True, False):
            status, _, answer = await raw_post(
                dp.port, "/v1/metrics", big, {**AUTH, "content-type": PROTOBUF}, chunked=chunked
            )
            assert status == 413, answer
            assert orjson.loads(answer)["error"]["type"] == "request_too_large"
        # A small gzip body that inflates past the decoded cap (a "bomb").
        bomb = gzip.compress(b"\x00" * (1024 * 1024))
        assert len(bomb) < 64 * 1024
        status, _, answer = await raw_post(
            dp.port,
            "/v1/metrics",
            bomb,
            {**AUTH, "content-type": PROTOBUF, "content-encoding": "gzip"},
            chunked=True,
        )
        assert status == 413 and b"decompressed" in answer
        assert (
            metric_value(dp, 'tollgate_otlp_rejected_total{signal="metrics",reason="too_large"}')
            == 3
        )
    finally:
        await dp.stop()


async def test_signals_filter(dp: DataPlane) -> None:
    a, b = FakeCollector(), FakeCollector(prefix="/otlp")
    await a.start()
    await b.start()
    try:
        with_destinations(
            dp,
            build_snapshot("http://127.0.0.1:9"),
            destination("metrics-only", a.base_url, ["metrics"]),
            destination("logs-and-traces", b.base_url + "/otlp/", ["logs", "traces"]),
        )
        for path, name in (
            ("/v1/metrics", "metrics-delta-01.pb"),
            ("/v1/logs", "logs-00.pb"),
        ):
            status, _, _ = await post_fixture(dp, path, name)
            assert status == 200
        status, _, _ = await post_fixture(dp, "/v1/traces", "traces-00.json", JSON)
        assert status == 200
        await a.wait_for(1)
        await b.wait_for(2)
        await asyncio.sleep(0.2)
        assert [e.signal for e in a.received] == ["metrics"]
        assert sorted(e.signal for e in b.received) == ["logs", "traces"]
    finally:
        await a.stop()
        await b.stop()


async def test_dead_collector_never_slows_the_client(dp: DataPlane) -> None:
    """A destination that refuses connections: every export is still answered 200 at once;
    the forwarder retries in the background, then counts the failure."""
    dp.telemetry.forwarder.backoff_s = 0.05  # type: ignore[union-attr]
    with_destinations(
        dp,
        build_snapshot("http://127.0.0.1:9"),
        destination("dead", "http://127.0.0.1:9", headers={"authorization": "Bearer s3cr3t"}),
    )
    for _ in range(3):
        started = time.perf_counter()
        status, _, _ = await post_fixture(dp, "/v1/metrics", "metrics-delta-01.pb")
        assert status == 200
        assert time.perf_counter() - started < 0.5
    deadline = time.monotonic() + 10
    while metric_value(dp, 'tollgate_otlp_forward_failed_total{destination="dead"') < 3:
        assert time.monotonic() < deadline, dp.metrics.render().decode()
        await asyncio.sleep(0.05)
    assert b"s3cr3t" not in dp.metrics.render()


async def test_collector_errors_are_retried(dp: DataPlane, collector: FakeCollector) -> None:
    dp.telemetry.forwarder.backoff_s = 0.05  # type: ignore[union-attr]
    forward_to(dp, collector)
    collector.fail_next(2, 503)
    status, _, _ = await post_fixture(dp, "/v1/metrics", "metrics-delta-01.pb")
    assert status == 200
    await collector.wait_for(1)
    assert collector.attempts == 3
    assert (
        metric_value(dp, 'tollgate_otlp_forwarded_total{destination="main",signal="metrics"}') == 1
    )
    # A 400 (the collector refuses the export itself) is not retried.
    collector.fail_next(1, 400)
    await post_fixture(dp, "/v1/metrics", "metrics-delta-01.pb")
    deadline = time.monotonic() + 5
    while metric_value(dp, 'tollgate_otlp_forward_failed_total{destination="main"') < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert collector.attempts == 4


async def test_full_queue_drops_and_counts(dp: DataPlane, collector: FakeCollector) -> None:
    forward_to(dp, collector)
    dp.telemetry.forwarder.max_queue = 2  # type: ignore[union-attr]
    collector.delay = 0.3
    for _ in range(6):
        status, _, _ = await post_fixture(dp, "/v1/metrics", "metrics-delta-01.pb", chunked=False)
        assert status == 200
    dropped = metric_value(
        dp, 'tollgate_otlp_dropped_total{destination="main",reason="queue_full"}'
    )
    assert dropped >= 3
    await collector.wait_for(6 - int(dropped))


async def test_header_values_never_logged(
    dp: DataPlane, collector: FakeCollector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dp.telemetry.forwarder.backoff_s = 0.01  # type: ignore[union-attr]
    forward_to(dp, collector)
    collector.fail_next(10, 500)
    await post_fixture(dp, "/v1/logs", "logs-00.pb")
    deadline = time.monotonic() + 5
    while metric_value(dp, 'tollgate_otlp_forward_failed_total{destination="main"') < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert "did not take" in caplog.text
    assert COLLECTOR_KEY not in caplog.text
    assert COLLECTOR_KEY not in repr(dp.holder.current)


async def test_a_destination_pointing_back_at_the_gateway_cannot_loop(dp: DataPlane) -> None:
    with_destinations(
        dp,
        build_snapshot("http://127.0.0.1:9"),
        destination(
            "self", f"http://127.0.0.1:{dp.port}", headers={"authorization": f"Bearer {SECRET}"}
        ),
    )
    status, _, _ = await post_fixture(dp, "/v1/metrics", "metrics-delta-01.pb")
    assert status == 200
    deadline = time.monotonic() + 5
    while metric_value(dp, 'tollgate_otlp_forwarded_total{destination="self"') < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert metric_value(dp, 'tollgate_otlp_forwarded_total{destination="self"') == 1
    assert metric_value(dp, 'tollgate_otlp_discarded_total{signal="metrics"}') == 1
    assert metric_value(dp, 'tollgate_otlp_received_total{signal="metrics"') == 1
