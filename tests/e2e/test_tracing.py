"""The gateway's own traces (``--otlp-endpoint``), through a real data plane to a real OTLP/HTTP
receiver (tests/fakes/otlp_collector.py decodes the exports with opentelemetry-proto): the span
tree of a fallback request, the client's W3C trace context continued and each attempt's sent
upstream, sampling, refusals at admission, flush on shutdown — and, with tracing off, the
client's trace headers passed through untouched.

This module is long because each case needs the same real processes (a data plane, the OTLP
receiver, strict upstreams) and reads the same span tree; the span helpers are kept beside the
cases that read them."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from dataplane.process.server import DataPlane
from gwapi.v1 import common_pb2
from gwclient.client import GatewayClient
from tests.dataplane.conftest import SECRET, UPSTREAM_KEY, build_snapshot, start_dataplane
from tests.e2e.test_gateway import (
    ADMIN,
    ControlPlaneProcess,
    alice_in_team_a,
    call,
    free_port,
    spawn_dp,
    wait_for,
)
from tests.e2e.test_routing import FAILURES, ROUTED, routed_snapshot
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.otlp_collector import FakeCollector

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-5-20250929"
PROMPT = "prompt-text-that-must-never-reach-a-span-7c1e"
BODY = orjson.dumps(
    {
        "model": MODEL,
        "max_tokens": 300,
        "stream": True,
        "messages": [{"role": "user", "content": PROMPT}],
    }
)
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
COLLECTOR_KEY = "collector-api-key-5d0e"
SESSION = "session-3f1c"


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent: str
    name: str
    kind: int
    start: int
    end: int
    status: int
    attrs: dict[str, Any]


def spans_of(collector: FakeCollector) -> tuple[list[Span], list[dict[str, str]]]:
    """Every span received, and every resource's attributes."""
    out: list[Span] = []
    resources: list[dict[str, str]] = []
    for export in collector.of("traces"):
        resources += export.resource_attributes()
        for rs in export.message.resource_spans:
            for ss in rs.scope_spans:
                assert ss.scope.name == "tollgate.dataplane"
                for s in ss.spans:
                    attrs = {
                        a.key: getattr(a.value, a.value.WhichOneof("value")) for a in s.attributes
                    }
                    out.append(
                        Span(
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            s.kind,
                            s.start_time_unix_nano,
                            s.end_time_unix_nano,
                            s.status.code,
                            attrs,
                        )
                    )
    return out, resources


async def wait_for_spans(collector: FakeCollector, n: int, timeout: float = 5.0) -> list[Span]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        spans, _ = spans_of(collector)
        if len(spans) >= n or loop.time() > deadline:
            return spans
        await asyncio.sleep(0.02)


def upstream_header(fake: FakeAnthropic, i: int, name: bytes) -> list[bytes]:
    return [v for k, v in fake.requests[i].headers if k == name]


async def post(dp: DataPlane, secret: str, **extra: str) -> httpx.Response:
    headers = {
        "x-api-key": secret,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        **extra,
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dp.port}", timeout=30) as client:
        r = await client.post("/v1/messages", content=BODY, headers=headers)
        await r.aread()
        return r


@pytest.fixture
async def collector() -> AsyncIterator[FakeCollector]:
    async with FakeCollector(required_headers={"authorization": f"Bearer {COLLECTOR_KEY}"}) as fake:
        yield fake


def traced(collector: FakeCollector) -> dict[str, Any]:
    return {
        "otlp_endpoint": collector.base_url,
        "otlp_headers": {"Authorization": f"Bearer {COLLECTOR_KEY}"},
    }


async def test_fallback_request_is_one_trace_continued_from_the_client_and_sent_upstream(
    tmp_path: Path,
    upstream: FakeAnthropic,
    backup: FakeAnthropic,
    collector: FakeCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export within the test, not in 5 s
    upstream.script.append(FAILURES["529"])
    dp = await start_dataplane(
        tmp_path / "dp", routed_snapshot(upstream.base_url, backup), **traced(collector)
    )
    try:
        r = await post(
            dp,
            ROUTED,
            traceparent=f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
            tracestate="vendor=opaque-value",
            **{"x-claude-code-session-id": SESSION},
        )
        assert r.status_code == 200 and r.headers["x-tollgate-provider"] == "backup"
        spans = await wait_for_spans(collector, 5)
    finally:
        await dp.stop()
    spans, resources = spans_of(collector)
    assert len(spans) == 5, [s.name for s in spans]
    by_name = {s.name: s for s in spans}
    request = by_name[f"chat {MODEL}"]
    admission = by_name["tollgate.admission"]
    first = by_name[f"anthropic {MODEL}"]
    second = by_name[f"backup {MODEL}"]
    ttfb = by_name["tollgate.ttfb"]

    # One trace, the client's: the request span hangs under the client's span, the rest under it.
    assert {s.trace_id for s in spans} == {CLIENT_TRACE}
    assert request.parent == CLIENT_SPAN
    assert request.kind == trace_pb2.Span.SPAN_KIND_SERVER
    for child in (admission, first, second, ttfb):
        assert child.parent == request.span_id
    assert first.kind == second.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert admission.kind == ttfb.kind == trace_pb2.Span.SPAN_KIND_INTERNAL
    assert len({s.span_id for s in spans}) == 5

    # Each upstream got its attempt's traceparent (and the client's tracestate), never the
    # client's own traceparent.
    assert upstream_header(upstream, 0, b"traceparent") == [
        f"00-{CLIENT_TRACE}-{first.span_id}-01".encode()
    ]
    assert upstream_header(backup, 0, b"traceparent") == [
        f"00-{CLIENT_TRACE}-{second.span_id}-01".encode()
    ]
    assert upstream_header(backup, 0, b"tracestate") == [b"vendor=opaque-value"]

    # Timing: admission, then the failed attempt, then the served one, all inside the request.
    assert request.start <= admission.start < admission.end <= first.start
    assert first.start < first.end <= second.start < second.end <= request.end
    assert request.start < ttfb.end <= request.end and ttfb.start == request.start

    # Attributes: GenAI conventions plus tollgate.*.
    a = request.attrs
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.system"] == a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == MODEL
    assert a["gen_ai.request.max_tokens"] == 300
    assert a["gen_ai.usage.input_tokens"] == 12 + 2500 + 18000  # cached tokens included
    assert a["gen_ai.usage.cache_read.input_tokens"] == 18000
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 2500
    assert a["gen_ai.usage.output_tokens"] > 0
    assert a["http.response.status_code"] == 200 and "error.type" not in a
    assert a["tollgate.workspace"] == "team-a" and a["tollgate.key.id"] == "key_routed"
    assert a["tollgate.session.id"] == SESSION
    assert a["tollgate.request_id"] == r.headers["x-tollgate-request-id"]
    assert a["tollgate.provider"] == "backup" and a["tollgate.attempts"] == 2
    assert a["tollgate.cost_micros"] > 0
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert request.status == trace_pb2.Status.STATUS_CODE_UNSET

    assert first.attrs["tollgate.attempt.outcome"] == "fell_back"
    assert first.attrs["http.response.status_code"] == 529
    assert first.attrs["error.type"] == "overloaded_error"
    assert first.attrs["tollgate.provider"] == "anthropic" and first.attrs["tollgate.attempt"] == 1
    assert first.status == trace_pb2.Status.STATUS_CODE_ERROR
    assert second.attrs["tollgate.attempt.outcome"] == "served"
    assert (
        second.attrs["http.response.status_code"] == 200 and second.attrs["tollgate.attempt"] == 2
    )
    assert second.attrs["gen_ai.system"] == "anthropic"
    assert second.attrs["gen_ai.usage.output_tokens"] == a["gen_ai.usage.output_tokens"]
    assert second.status == trace_pb2.Status.STATUS_CODE_UNSET
    assert admission.attrs["tollgate.admission.outcome"] == "admitted"

    assert resources[0]["service.name"] == "tollgate-dataplane"
    assert resources[0]["service.instance.id"] == dp.node_id
    # Never a prompt, a virtual key or a provider key in what was exported.
    raw = b"".join(e.raw for e in collector.of("traces"))
    for secret in (PROMPT, ROUTED, UPSTREAM_KEY, COLLECTOR_KEY):
        assert secret.encode() not in raw


async def test_tracing_off_passes_the_clients_trace_headers_through_untouched(
    tmp_path: Path, upstream: FakeAnthropic, backup: FakeAnthropic
) -> None:
    upstream.script.append(FAILURES["529"])
    dp = await start_dataplane(tmp_path / "dp", routed_snapshot(upstream.base_url, backup))
    parent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    try:
        assert dp.tracer is None
        r = await post(dp, ROUTED, traceparent=parent, tracestate="vendor=opaque-value")
        assert r.status_code == 200
    finally:
        await dp.stop()
    for fake in (upstream, backup):  # both attempts: exactly what the client sent
        assert upstream_header(fake, 0, b"traceparent") == [parent.encode()]
        assert upstream_header(fake, 0, b"tracestate") == [b"vendor=opaque-value"]


async def test_unsampled_client_trace_is_propagated_not_exported_and_shutdown_flushes(
    tmp_path: Path,
    upstream: FakeAnthropic,
    collector: FakeCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing is exported on schedule during the test: what arrives came from stop()'s flush.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    dp = await start_dataplane(
        tmp_path / "dp", build_snapshot(upstream.base_url), **traced(collector)
    )
    try:
        unsampled = await post(dp, SECRET, traceparent=f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-00")
        fresh = await post(dp, SECRET, traceparent="00-not-a-valid-traceparent-01")
        assert unsampled.status_code == fresh.status_code == 200
        assert collector.received == []
    finally:
        await dp.stop()
    (sent_unsampled,) = upstream_header(upstream, 0, b"traceparent")
    version, trace_id, attempt_id, flags = sent_unsampled.decode().split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "00") and attempt_id != CLIENT_SPAN
    # A malformed traceparent starts a new trace (and is not forwarded).
    (sent_fresh,) = upstream_header(upstream, 1, b"traceparent")
    _, fresh_trace, fresh_attempt, fresh_flags = sent_fresh.decode().split("-")
    assert fresh_trace != CLIENT_TRACE and fresh_flags == "01"

    spans, _ = spans_of(collector)
    assert {s.trace_id for s in spans} == {fresh_trace}  # only the sampled request's spans
    (request,) = [s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
    assert request.parent == ""  # a root span: no client trace to continue
    (attempt,) = [s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT]
    assert attempt.span_id == fresh_attempt and attempt.parent == request.span_id
    assert attempt.name == f"anthropic {MODEL}"


async def test_refusal_at_admission_is_a_refused_admission_span_and_no_attempt(
    tmp_path: Path,
    upstream: FakeAnthropic,
    collector: FakeCollector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    snap = build_snapshot(upstream.base_url)
    key = next(k for k in snap.keys if k.id == "key_alice")
    key.limits.CopyFrom(common_pb2.Limits(rpm=1))
    dp = await start_dataplane(tmp_path / "dp", snap, **traced(collector))
    try:
        assert (await post(dp, SECRET)).status_code == 200
        refused = await post(dp, SECRET)
        assert refused.status_code == 429
        spans = await wait_for_spans(collector, 6)  # 4 for the first request, 2 for the second
    finally:
        await dp.stop()
    (trace,) = {s.trace_id for s in spans if s.attrs.get("http.response.status_code") == 429}
    mine = [s for s in spans if s.trace_id == trace]
    assert sorted(s.name for s in mine) == [f"chat {MODEL}", "tollgate.admission"]
    request = next(s for s in mine if s.name.startswith("chat"))
    admission = next(s for s in mine if s.name == "tollgate.admission")
    assert request.attrs["error.type"] == "rate_limit_error"
    assert request.status == trace_pb2.Status.STATUS_CODE_UNSET  # a 4xx is the client's answer
    assert request.attrs["tollgate.attempts"] == 0
    assert admission.attrs["tollgate.admission.outcome"] == "refused"
    assert admission.attrs["error.type"] == "rate_limit_error"
    assert admission.status == trace_pb2.Status.STATUS_CODE_ERROR
    assert admission.parent == request.span_id


async def test_a_stuck_collector_never_slows_requests_nor_holds_up_shutdown(
    tmp_path: Path, upstream: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
    # A collector that takes connections and never answers: each export waits out the
    # exporter's own timeout (10 s) in the exporter's thread.
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(64)
    dp = await start_dataplane(
        tmp_path / "dp",
        build_snapshot(upstream.base_url),
        otlp_endpoint=f"http://127.0.0.1:{stuck.getsockname()[1]}",
        otlp_flush_s=1.0,
    )
    try:
        for _ in range(20):
            t0 = time.monotonic()
            assert (await post(dp, SECRET)).status_code == 200
            assert time.monotonic() - t0 < 1.0
    finally:
        t0 = time.monotonic()
        await dp.stop()
        stopped_in = time.monotonic() - t0
        stuck.close()
    assert stopped_in < 3.0  # the flush gives up after otlp_flush_s, not the exporter's 10 s


@pytest.mark.slow
async def test_sigterm_with_a_stuck_collector_exits_within_the_flush_bound(
    sqlite_url: str, tmp_path: Path, upstream: FakeAnthropic
) -> None:
    """The real process (``gwctl dataplane serve``), not only DataPlane.stop(): spans queued for
    a collector that never answers must not keep it alive past the 5 s flush bound at exit
    (``asyncio.run`` waits for the loop's executor threads, so the flush may not run there)."""
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(64)
    cp = ControlPlaneProcess(sqlite_url, tmp_path / "cp.log")
    await cp.start()
    proc: subprocess.Popen[bytes] | None = None
    held: socket.socket | None = None
    log = tmp_path / "dp.log"
    try:
        async with GatewayClient(cp.address, ADMIN) as admin:
            key = await alice_in_team_a(admin, upstream.base_url)
        port = free_port()
        otlp = f"http://127.0.0.1:{stuck.getsockname()[1]}"
        flags = ("--drain-seconds", "0", "--otlp-endpoint", otlp)
        env = {"OTEL_BSP_SCHEDULE_DELAY": "20"}
        proc = spawn_dp(cp.address, port, tmp_path / "dp", log, *flags, env=env)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def served() -> bool:
                try:
                    return (await call(client, key.secret)).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(served, timeout=20, interval=0.1)
            for _ in range(10):
                assert (await call(client, key.secret)).status_code == 200
        # The exporter has connected (the collector accepts and never answers): its first
        # batch is now stuck there.
        stuck.setblocking(False)
        held, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_accept(stuck), 10)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert await asyncio.to_thread(proc.wait, 30) == 0, log.read_text()[-2000:]
        assert time.monotonic() - signalled < 5 + 3, log.read_text()[-2000:]
        assert "spans still queued after 5 s were not exported" in log.read_text()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)
        cp.stop()
        if held is not None:
            held.close()
        stuck.close()
