"""The gateway's own tracing, piece by piece: W3C trace-context parsing at a request's start, the
``traceparent`` each attempt sends, the command-line flags, and the exporter's log on a full queue.
The whole path through real servers is tests/e2e/test_tracing.py."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from dataplane.asgi import forwardable_headers
from dataplane.edge.tracing.context import begin
from dataplane.edge.tracing.spans import Tracer, traces_url
from dataplane.metering.bodylog import BodyLog
from dataplane.metering.record import RequestRecord
from dataplane.process import server
from dataplane.providers.base import UpstreamRequest

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def ctx(*headers: tuple[bytes, bytes]) -> Any:
    return begin(list(headers), time.perf_counter())


def test_a_valid_traceparent_is_continued_with_its_flags_and_tracestate() -> None:
    t = ctx(
        (b"traceparent", f"00-{TRACE}-{SPAN}-01".encode()),
        (b"tracestate", b"a=1"),
        (b"tracestate", b"b=2"),
    )
    assert f"{t.trace_id:032x}" == TRACE and t.parent is not None
    assert f"{t.parent.span_id:016x}" == SPAN and t.parent.is_remote
    assert t.sampled and t.span_id not in (0, int(SPAN, 16))
    request = UpstreamRequest("/v1/messages", b"", (), b"{}", "m", True, "r", {}, ())
    sent = t.upstream(request, "anthropic")
    (attempt,) = t.attempts
    assert sent.trace_headers == (
        (b"traceparent", f"00-{TRACE}-{attempt.span_id:016x}-01".encode()),
        (b"tracestate", b"a=1,b=2"),
    )
    assert request.trace_headers == ()  # the plan's request is left as it was


@pytest.mark.parametrize(
    "value",
    [
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has nothing after the flags
        "00-short-ids-01",
        "x" * 600,
    ],
)
def test_an_invalid_traceparent_starts_a_new_sampled_trace(value: str) -> None:
    t = ctx((b"traceparent", value.encode()), (b"tracestate", b"a=1"))
    assert t.parent is None and t.sampled and f"{t.trace_id:032x}" != TRACE
    sent = t.upstream(UpstreamRequest("/v1/messages", b"", (), b"{}", "m", True, "r", {}, ()), "x")
    assert [k for k, _ in sent.trace_headers] == [b"traceparent"]  # its tracestate is not kept


def test_two_traceparents_are_ambiguous_and_start_a_new_trace() -> None:
    one = (b"traceparent", f"00-{TRACE}-{SPAN}-01".encode())
    t = ctx(one, one)
    assert t.parent is None and f"{t.trace_id:032x}" != TRACE


def test_a_later_version_is_read_by_its_version_00_prefix() -> None:
    t = ctx((b"traceparent", f"01-{TRACE}-{SPAN}-00-what-comes-next".encode()))
    assert t.parent is not None and f"{t.trace_id:032x}" == TRACE and not t.sampled


def test_no_traceparent_is_a_new_root_trace_each_time() -> None:
    a, b = ctx(), ctx()
    assert a.parent is None and a.sampled and a.trace_id != b.trace_id


def test_with_tracing_on_the_clients_trace_headers_are_not_forwarded() -> None:
    headers = [
        (b"traceparent", b"00-x"),
        (b"tracestate", b"a=1"),
        (b"baggage", b"k=v"),
        (b"anthropic-version", b"2023-06-01"),
    ]
    assert forwardable_headers(headers) == tuple(headers)  # tracing off: untouched
    traced = forwardable_headers(headers, frozenset(server_drop()))
    assert traced == ((b"baggage", b"k=v"), (b"anthropic-version", b"2023-06-01"))


def server_drop() -> frozenset[bytes]:
    from dataplane import asgi

    return asgi.DROP_REQUEST_TRACED


def test_traces_url_takes_a_base_or_the_full_path() -> None:
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("https://c/otlp/") == "https://c/otlp/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


# -- flags ---------------------------------------------------------------------------------------


@pytest.fixture
def started(served: list[Any], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    monkeypatch.setenv("TOLLGATE_DATAPLANE_TOKEN", "dp-token")
    monkeypatch.delenv(server.OTLP_ENDPOINT_ENV, raising=False)
    return served


def test_otlp_flags_reach_the_settings_with_headers_from_the_environment(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLLECTOR_HEADERS", "x-api-key=s3cret%3Dvalue,x-team=gw")
    server.main(["--otlp-endpoint", "https://otel.example.com:4318", "--otlp-headers-env",
                 "COLLECTOR_HEADERS"])  # fmt: skip
    (settings,) = started
    assert settings.otlp_endpoint == "https://otel.example.com:4318"
    assert settings.otlp_headers == {"x-api-key": "s3cret=value", "x-team": "gw"}
    assert "s3cret" not in repr(settings)


def test_otlp_endpoint_from_the_environment(
    started: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(server.OTLP_ENDPOINT_ENV, "http://127.0.0.1:4318")
    server.main([])
    assert started[0].otlp_endpoint == "http://127.0.0.1:4318"
    assert started[0].otlp_headers == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--otlp-endpoint", "127.0.0.1:4318"], "must be an http:// or https:// URL"),
        (["--otlp-endpoint", "http://u:pw@c:4318"], "takes no query, fragment or credentials"),
        (["--otlp-endpoint", "http://c", "--otlp-headers-env", "NOPE_UNSET"], "NOPE_UNSET"),
        (["--otlp-headers-env", "COLLECTOR_HEADERS"], "--otlp-headers-env needs --otlp-endpoint"),
    ],
)
def test_bad_otlp_flags_are_usage_errors(
    started: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("COLLECTOR_HEADERS", "x-api-key=s3cret")
    monkeypatch.delenv("NOPE_UNSET", raising=False)
    with pytest.raises(SystemExit) as info:
        server.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and "s3cret" not in err and "pw" not in err
    assert started == []


# -- the exporter -----------------------------------------------------------------------------


class _Stuck:
    """An exporter stuck on its first batch, like one waiting on a dead collector."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Any) -> Any:
        self.release.wait(10)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


def traced_record() -> RequestRecord:
    rec = RequestRecord("gwreq_1", "dp", "/v1/messages")
    rec.trace = ctx()
    rec.model_requested = "claude-x"
    return rec


def test_a_stuck_collector_drops_spans_with_one_log_line_not_one_per_span(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
    exporter = _Stuck()
    tracer = Tracer("http://127.0.0.1:9", "dp-test", exporter=exporter)  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.WARNING):
            t0 = time.perf_counter()
            for _ in range(200):
                tracer.finish(traced_record())
            elapsed = time.perf_counter() - t0
    finally:
        exporter.release.set()
        tracer.shutdown()
    assert elapsed < 1.0  # the request path never waits for the exporter
    full = [r for r in caplog.records if "Queue full" in r.getMessage()]
    assert len(full) == 1, [r.getMessage() for r in caplog.records]


def test_spans_carry_no_body_or_header_value() -> None:
    """What finish() exports is built from the record's fields only (see tests/e2e for a
    real request); here: a record with bodies logged still gives spans without them."""
    rec = traced_record()
    rec.log = BodyLog("full", 1 << 20, [(b"x-secret-header", b"header-value-9f")])
    rec.log.add_request(orjson.dumps({"messages": [{"content": "body-text-1a2b"}]}))
    tracer = Tracer("http://127.0.0.1:9", "dp-test", exporter=_Stuck())  # type: ignore[arg-type]
    assert rec.trace is not None
    try:
        spans = tracer.spans(rec, rec.trace, time.perf_counter())
    finally:
        tracer.shutdown()
    text = repr([(s.name, dict(s.attributes or {})) for s in spans])
    assert "claude-x" in text
    assert "body-text-1a2b" not in text and "header-value-9f" not in text
