"""StreamMeter and usage_from_message against realistic Anthropic streams and bodies.

This module is long because metering is money: every stream shape Anthropic sends (text, tools,
thinking, cache reads and writes, errors mid-stream, truncation) gets its own exact case."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.codecs import SSEDecoder, SSEEvent
from dataplane.metering.meter import (
    _DEFER_BYTES,
    ESTIMATE_BYTES_PER_TOKEN,
    METER_SKIP,
    ContentCounter,
    StreamMeter,
    TokenUsage,
    usage_from_message,
)
from tests.dataplane.anthropic_streams import frame, text_stream, tool_use_stream


def meter_of(stream: bytes, chunk: int = 0) -> StreamMeter:
    d, m = SSEDecoder(), StreamMeter()
    chunks = [stream[i : i + chunk] for i in range(0, len(stream), chunk)] if chunk else [stream]
    for c in chunks:
        for e in d.feed(c):
            m.feed(e)
    return m


def test_prompt_tokens() -> None:
    u = TokenUsage(input_tokens=3, cache_creation_input_tokens=20, cache_read_input_tokens=100)
    assert u.prompt_tokens == 123
    assert TokenUsage().prompt_tokens == 0


def test_simple_stream() -> None:
    m = meter_of(text_stream())
    assert m.usage == TokenUsage(input_tokens=12, output_tokens=9)
    assert m.model == "claude-sonnet-4-5-20250929"
    assert m.message_id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert m.stop_reason == "end_turn"
    assert m.saw_message_start and m.saw_message_stop
    assert m.error is None
    assert m.events == 10


@pytest.mark.parametrize("chunk", [1, 7, 64, 0])
def test_tool_use_stream_with_cache_split(chunk: int) -> None:
    m = meter_of(tool_use_stream(), chunk)
    assert m.usage == TokenUsage(
        input_tokens=3,
        output_tokens=87,
        cache_creation_input_tokens=2500,
        cache_read_input_tokens=41000,
        cache_write_5m_tokens=2000,
        cache_write_1h_tokens=500,
    )
    assert m.usage.prompt_tokens == 43503
    assert m.model == "claude-opus-4-8"
    assert m.stop_reason == "tool_use"
    assert m.saw_message_stop


def test_message_delta_is_cumulative_last_value_wins() -> None:
    events = [
        SSEEvent(
            "message_start",
            '{"type":"message_start","message":{"model":"m","usage":{"input_tokens":10,'
            '"cache_read_input_tokens":5,"output_tokens":1}}}',
        ),
        SSEEvent(
            "message_delta", '{"type":"message_delta","delta":{},"usage":{"output_tokens":40}}'
        ),
        SSEEvent(
            "message_delta", '{"type":"message_delta","delta":{},"usage":{"output_tokens":90}}'
        ),
    ]
    m = StreamMeter()
    for e in events:
        m.feed(e)
    assert m.usage == TokenUsage(input_tokens=10, output_tokens=90, cache_read_input_tokens=5)


def test_message_delta_updates_input_and_cache_fields() -> None:
    """Newer API versions repeat (possibly revised) input and cache figures in message_delta."""
    stream = text_stream(
        start_usage={
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
        delta_usage={
            "input_tokens": 420,
            "cache_creation_input_tokens": 1600,
            "cache_read_input_tokens": 9000,
            "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 1000},
            "output_tokens": 55,
        },
    )
    assert meter_of(stream).usage == TokenUsage(
        input_tokens=420,
        output_tokens=55,
        cache_creation_input_tokens=1600,
        cache_read_input_tokens=9000,
        cache_write_5m_tokens=600,
        cache_write_1h_tokens=1000,
    )


def test_delta_without_a_field_keeps_the_start_value() -> None:
    stream = text_stream(
        start_usage={"input_tokens": 7, "cache_read_input_tokens": 300, "output_tokens": 1},
        delta_usage={"output_tokens": 12, "cache_read_input_tokens": None},
    )
    assert meter_of(stream).usage == TokenUsage(
        input_tokens=7, output_tokens=12, cache_read_input_tokens=300
    )


def test_cache_write_without_split_counts_as_5m() -> None:
    stream = text_stream(
        start_usage={"input_tokens": 5, "cache_creation_input_tokens": 4000, "output_tokens": 1}
    )
    u = meter_of(stream).usage
    assert (u.cache_creation_input_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (
        4000,
        4000,
        0,
    )


def test_cache_write_1h_only() -> None:
    stream = text_stream(
        start_usage={
            "input_tokens": 5,
            "cache_creation_input_tokens": 4000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 4000},
            "output_tokens": 1,
        }
    )
    u = meter_of(stream).usage
    assert (u.cache_creation_input_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (
        4000,
        0,
        4000,
    )


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(
            {
                "cache_creation_input_tokens": 1000,
                "cache_creation": {"ephemeral_1h_input_tokens": 300},
            },
            (1000, 700, 300),
            id="an_unexplained_remainder_is_priced_as_5m",
        ),
        pytest.param(
            {"cache_creation": {"ephemeral_5m_input_tokens": 10, "ephemeral_1h_input_tokens": 20}},
            (30, 10, 20),
            id="a_split_without_total_derives_the_total",
        ),
    ],
)
def test_cache_write_split(usage: dict[str, Any], expected: tuple[int, int, int]) -> None:
    u = usage_from_message({"usage": usage})
    assert (u.cache_creation_input_tokens, u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (
        expected
    )


def test_error_event_after_200() -> None:
    stream = text_stream(
        tail=(
            (
                "error",
                {
                    "type": "error",
                    "error": {"type": "overloaded_error", "message": "Overloaded"},
                    "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
                },
            ),
        ),
        finish=False,
    )
    m = meter_of(stream, 13)
    assert m.error == ("overloaded_error", "Overloaded")
    assert m.saw_message_start and not m.saw_message_stop
    assert m.stop_reason is None
    assert m.usage == TokenUsage(input_tokens=12, output_tokens=1)  # what was seen is still billed


def test_error_event_without_details() -> None:
    m = StreamMeter()
    m.feed(SSEEvent("error", '{"type":"error","error":"boom"}'))
    assert m.error == ("api_error", "")


def test_truncated_stream_keeps_usage_so_far() -> None:
    stream = tool_use_stream()
    cut = stream.index(b"event: message_delta")
    m = meter_of(stream[:cut])
    assert m.usage.cache_read_input_tokens == 41000
    assert m.usage.output_tokens == 1
    assert not m.saw_message_stop


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{",
        "null",
        "[1,2]",
        '"str"',
        "{}",
        '{"message": 5}',
        '{"message": {"usage": [1]}}',
        "\ud800",
    ],
)
def test_malformed_payloads_never_raise(data: str) -> None:
    m = StreamMeter()
    for name in ("message_start", "message_delta", "error", "message", "message_stop", "weird"):
        m.feed(SSEEvent(name, data))
    assert m.usage == TokenUsage()
    assert m.events == 6


def test_bad_field_values_are_ignored() -> None:
    usage: dict[str, Any] = {
        "input_tokens": True,
        "output_tokens": -5,
        "cache_read_input_tokens": 1.5,
        "cache_creation_input_tokens": "100",
        "cache_creation": {"ephemeral_5m_input_tokens": None, "ephemeral_1h_input_tokens": False},
        "server_tool_use": {"web_search_requests": -2, "web_fetch_requests": True},
    }
    assert usage_from_message({"usage": usage}) == TokenUsage()


def test_unknown_events_and_fields_ignored() -> None:
    m = StreamMeter()
    m.feed(SSEEvent("future_event", '{"type":"future_event","usage":{"output_tokens":999}}'))
    m.feed(SSEEvent("content_block_delta", "not even json"))
    m.feed(SSEEvent("ping", "{}"))
    assert m.usage == TokenUsage()
    assert m.events == 3


def test_unnamed_events_use_the_payload_type() -> None:
    stream = b"".join(
        b"data: " + line + b"\n\n"
        for line in (
            b'{"type":"message_start","message":{"model":"x","usage":{"input_tokens":4,"output_tokens":1}}}',
            b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}',
            b'{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}',
            b'{"type":"message_stop"}',
        )
    )
    m = meter_of(stream)
    assert m.usage == TokenUsage(input_tokens=4, output_tokens=2)
    assert m.model == "x" and m.stop_reason == "end_turn" and m.saw_message_stop


def test_usage_from_message() -> None:
    body = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5-20251001",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 1500,
            "cache_read_input_tokens": 2048,
            "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 500},
            "output_tokens": 393,
            "service_tier": "standard",
        },
    }
    assert usage_from_message(body) == TokenUsage(21, 393, 1500, 2048, 1000, 500)
    assert usage_from_message({}) == TokenUsage()
    assert usage_from_message({"usage": None}) == TokenUsage()


def test_usage_property_is_cached_until_the_next_usage_event() -> None:
    m = meter_of(text_stream())
    assert m.usage is m.usage


# --- METER_SKIP: what the meter ignores, so a decoder feeding only a meter may drop it -------------


def metered(m: StreamMeter) -> tuple[object, ...]:
    """Everything a StreamMeter reports except ``events`` (the count of events it was fed)."""
    return (
        m.usage,
        m.model,
        m.message_id,
        m.stop_reason,
        m.error,
        m.saw_message_start,
        m.saw_message_stop,
    )


def test_meter_skip_names_exactly_what_the_meter_ignores() -> None:
    loud = (
        '{"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        '"usage":{"output_tokens":5},"message":{"model":"x","usage":{"input_tokens":3}},'
        '"error":{"type":"overloaded_error","message":"m"}}'
    )
    for name in METER_SKIP:
        m = StreamMeter()
        m.feed(SSEEvent(name.decode(), loud))
        assert metered(m) == metered(StreamMeter()), name
    for counted in ("message_start", "message_delta", "message_stop", "error"):
        m = StreamMeter()
        m.feed(SSEEvent(counted, loud))
        assert metered(m) != metered(StreamMeter()), counted


def _meter(decoder: SSEDecoder, chunks: list[bytes]) -> StreamMeter:
    m = StreamMeter()
    for c in chunks:
        for e in decoder.feed(c):
            m.feed(e)
    return m


METER_STREAMS = {
    "text": text_stream(),
    "text_crlf": text_stream(eol="\r\n"),
    "tools": tool_use_stream(),
    "error": text_stream(
        tail=(("error", {"type": "error", "error": {"type": "api_error", "message": "x"}}),),
        finish=False,
    ),
    "truncated": tool_use_stream()[:-40],
    "unnamed": b"".join(
        b"data: " + line + b"\n\n"
        for line in (
            b'{"type":"message_start","message":{"model":"x","usage":{"input_tokens":4}}}',
            b'{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}',
            b'{"type":"message_delta","usage":{"output_tokens":2}}',
            b'{"type":"message_stop"}',
        )
    ),
}


@pytest.mark.parametrize("name", sorted(METER_STREAMS))
def test_skipping_decoder_meters_identically_at_every_split(name: str) -> None:
    stream = METER_STREAMS[name]
    full = metered(_meter(SSEDecoder(), [stream]))
    for i in range(len(stream) + 1):
        chunks = [stream[:i], stream[i:]]
        assert metered(_meter(SSEDecoder(skip=METER_SKIP), chunks)) == full, i
    one_by_one = [stream[i : i + 1] for i in range(len(stream))]
    assert metered(_meter(SSEDecoder(skip=METER_SKIP), one_by_one)) == full


# --- server tools ---------------------------------------------------------------------------------


def test_server_tool_use_is_counted_last_value_wins() -> None:
    stream = text_stream(
        start_usage={
            "input_tokens": 10,
            "output_tokens": 1,
            "server_tool_use": {"web_search_requests": 0},
        },
        delta_usage={
            "output_tokens": 50,
            "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 2},
        },
    )
    for chunk in (0, 1, 13):
        m = meter_of(stream, chunk)
        assert m.usage == TokenUsage(
            input_tokens=10, output_tokens=50, web_search_requests=3, web_fetch_requests=2
        )
    body = {"usage": {"input_tokens": 5, "server_tool_use": {"web_search_requests": 4}}}
    assert usage_from_message(body) == TokenUsage(input_tokens=5, web_search_requests=4)


# --- output estimate when a stream ends early -------------------------------------------------


def _strings(stream: bytes) -> int:
    """Expected ContentCounter total: the JSON-escaped text/partial_json/thinking values."""
    total = 0
    for block in stream.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: "):
                obj = orjson.loads(line[6:])
                delta = obj.get("delta") if isinstance(obj, dict) else None
                if isinstance(delta, dict):
                    for key in ("text", "partial_json", "thinking"):
                        if isinstance(delta.get(key), str):
                            total += len(orjson.dumps(delta[key])) - 2
    return total


CONTENT_STREAMS = {
    "text": text_stream(texts=("Hello", ', "quoted" wörld\n', "世界 😀", "\\ end")),
    "tools": tool_use_stream(),
}


@pytest.mark.parametrize("name", sorted(CONTENT_STREAMS))
def test_content_counter_counts_the_delta_strings_at_every_split(name: str) -> None:
    stream = CONTENT_STREAMS[name]
    expected = _strings(stream)
    assert expected > 20
    for i in range(len(stream) + 1):
        c = ContentCounter()
        c.feed(stream[:i])
        c.feed(stream[i:])
        assert c.bytes == expected, i
    c = ContentCounter()
    for i in range(len(stream)):
        c.feed(stream[i : i + 1])
    assert c.bytes == expected


def test_content_counter_is_exact_across_its_deferred_scans() -> None:
    """Chunks are held unscanned up to _DEFER_BYTES: a stream several times that long, fed in
    uneven chunks and read at every point, counts what the whole stream counts so far."""
    texts = tuple(f"part {i} " + 'é\\"x' * (i % 97) for i in range(1500))
    stream = text_stream(texts=texts)
    assert len(stream) > 4 * _DEFER_BYTES
    c, fed, step = ContentCounter(), 0, 1
    while fed < len(stream):
        c.feed(stream[fed : fed + step])
        fed += step
        step = step * 7 % 9001 + 1
        if fed % 3 == 0:
            assert c.bytes == _strings(stream[: stream.rfind(b"\n", 0, fed) + 1]), fed
    assert c.bytes == _strings(stream)


def test_content_counter_ignores_other_strings() -> None:
    c = ContentCounter()
    c.feed(
        frame(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {
                    "type": "citations_delta",
                    "citation": {"cited_text": "not generated", "title": "x", "url": "y"},
                },
            },
        )
        + frame(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        + frame(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"},
            },
        )
    )
    assert c.bytes == 0


def _early(stream: bytes, before: bytes) -> StreamMeter:
    """A meter fed the stream up to (not including) the first occurrence of ``before``."""
    m = meter_of(stream[: stream.index(before)])
    m.content.feed(stream[: stream.index(before)])
    return m


def test_billable_is_the_reported_usage_when_the_final_usage_arrived() -> None:
    stream = text_stream()
    m = meter_of(stream)
    m.content.feed(stream)
    assert m.saw_final_usage
    assert m.billable() == (TokenUsage(input_tokens=12, output_tokens=9), False)


def test_billable_estimates_the_output_of_a_stream_cut_before_its_final_usage() -> None:
    texts = ("x" * 300, "y" * 301)
    stream = text_stream(texts=texts, start_usage={"input_tokens": 7, "output_tokens": 1})
    m = _early(stream, b"event: message_delta")
    usage, estimated = m.billable()
    assert estimated
    assert usage == TokenUsage(input_tokens=7, output_tokens=-(-601 // ESTIMATE_BYTES_PER_TOKEN))
    # Cut in the middle of the content: only what was relayed counts.
    m = _early(stream, b"yyy")
    assert m.billable() == (TokenUsage(input_tokens=7, output_tokens=100), True)


def test_billable_estimate_is_at_most_max_tokens() -> None:
    stream = text_stream(texts=("x" * 3000,), start_usage={"input_tokens": 7, "output_tokens": 1})
    m = _early(stream, b"event: message_delta")
    assert m.billable() == (TokenUsage(input_tokens=7, output_tokens=1000), True)
    assert m.billable(max_tokens=64) == (TokenUsage(input_tokens=7, output_tokens=64), True)


def test_billable_is_never_below_the_reported_output() -> None:
    stream = text_stream(texts=("ab",), start_usage={"input_tokens": 7, "output_tokens": 40})
    m = _early(stream, b"event: message_delta")
    assert m.billable() == (TokenUsage(input_tokens=7, output_tokens=40), True)
    assert m.billable(max_tokens=10) == (TokenUsage(input_tokens=7, output_tokens=40), True)


def test_billable_estimates_nothing_when_nothing_was_seen() -> None:
    assert StreamMeter().billable() == (TokenUsage(), False)
