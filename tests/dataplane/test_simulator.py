"""The simulator model: wire-exact SSE, usage consistent between stream and body, determinism."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dataplane.codecs import SSEDecoder
from dataplane.metering.meter import StreamMeter, TokenUsage, usage_from_message
from dataplane.simulator import MIN_CACHEABLE_TOKENS, count_tokens, simulate

SYSTEM: list[dict[str, Any]] = [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197"},
    {
        "type": "text",
        "text": "You are Claude Code, Anthropic's official CLI for Claude.",
        "cache_control": {"type": "ephemeral"},
    },
]


def claude_code_request(
    *turns: Any, ttl: str | None = None, max_tokens: int = 64000
) -> dict[str, Any]:
    system = [dict(b) for b in SYSTEM]
    if ttl:
        system[1]["cache_control"] = {"type": "ephemeral", "ttl": ttl}
    return {
        "model": "claude-opus-4-8",
        "max_tokens": max_tokens,
        "stream": True,
        "system": system,
        "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
        "messages": list(turns),
        "thinking": {"type": "adaptive"},
    }


def user(text: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": "<system-reminder>context</system-reminder>"},
            {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}},
        ],
    }


def decode_frames(frames: list[bytes], chunk: int = 0) -> tuple[list[str], StreamMeter, str]:
    wire = b"".join(frames)
    chunks = [wire[i : i + chunk] for i in range(0, len(wire), chunk)] if chunk else [wire]
    d, m = SSEDecoder(), StreamMeter()
    names: list[str] = []
    text = ""
    for c in chunks:
        for e in d.feed(c):
            m.feed(e)
            names.append(e.event)
            payload = orjson.loads(e.data)
            assert payload["type"] == e.event
            if e.event == "content_block_delta":
                text += payload["delta"]["text"]
    assert d.pending == 0
    return names, m, text


def test_count_tokens() -> None:
    assert count_tokens(0) == 1
    assert count_tokens(4) == 1
    assert count_tokens(400) == 100
    assert count_tokens(70_000) == 17_500


def test_body_shape_and_text() -> None:
    req = claude_code_request(user("Please refactor   the\nparser module"))
    reply = simulate(req, request_bytes=2000, model="claude-opus-4-8")
    msg = reply.message
    assert msg["id"].startswith("msg_sim_") and len(msg["id"]) == 8 + 24
    assert (msg["type"], msg["role"], msg["model"]) == ("message", "assistant", "claude-opus-4-8")
    assert msg["stop_reason"] == "end_turn" and msg["stop_sequence"] is None
    [block] = msg["content"]
    assert block["type"] == "text"
    assert block["text"].startswith("[Tollgate simulator]")
    assert '"Please refactor the parser module"' in block["text"]
    orjson.dumps(msg)  # JSON-serialisable as is


@pytest.mark.parametrize("chunk", [0, 1, 5, 64])
def test_frames_meter_to_exactly_the_body_usage(chunk: int) -> None:
    req = claude_code_request(
        user("hi"), {"role": "assistant", "content": "hello"}, user("and now?")
    )
    reply = simulate(req, request_bytes=80_000, model="claude-opus-4-8")
    names, meter, text = decode_frames(reply.sse_frames(), chunk)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") == len(reply.deltas) >= 3
    assert meter.usage == usage_from_message(reply.message)
    assert meter.model == "claude-opus-4-8"
    assert meter.stop_reason == "end_turn"
    assert meter.saw_message_start and meter.saw_message_stop and meter.error is None
    assert text == reply.message["content"][0]["text"]


def test_wire_format_is_exact() -> None:
    frames = simulate({"messages": []}, request_bytes=10, model="simulator").sse_frames()
    assert frames[2] == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert frames[-1] == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    for f in frames:
        head, data, blank = f.split(b"\n", 2)
        assert head.startswith(b"event: ") and data.startswith(b"data: {") and blank == b"\n"
    start = orjson.loads(frames[0].split(b"data: ", 1)[1])
    assert start["message"]["usage"]["output_tokens"] == 1
    assert start["message"]["content"] == [] and start["message"]["stop_reason"] is None


def test_deltas_are_a_few_words_each() -> None:
    reply = simulate(claude_code_request(user("hello there")), request_bytes=500, model="m")
    assert all(1 <= len(d.split()) <= 3 for d in reply.deltas)
    assert "".join(reply.deltas) == reply.message["content"][0]["text"]


def test_usage_without_cache_control() -> None:
    req = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    u = simulate(req, request_bytes=8_000, model="m").message["usage"]
    assert (u["input_tokens"], u["cache_creation_input_tokens"], u["cache_read_input_tokens"]) == (
        2000,
        0,
        0,
    )


def test_first_turn_writes_the_cache() -> None:
    reply = simulate(claude_code_request(user("hi")), request_bytes=72_000, model="m")
    u = usage_from_message(reply.message)
    # prompt 18000 tokens; 90% cached prefix = 16200, all written (5m), nothing read.
    assert u == TokenUsage(1800, u.output_tokens, 16200, 0, 16200, 0)
    assert u.prompt_tokens == count_tokens(72_000)


def test_later_turns_read_most_of_the_prefix() -> None:
    req = claude_code_request(user("a"), {"role": "assistant", "content": "b"}, user("c"))
    u = usage_from_message(simulate(req, request_bytes=400_000, model="m").message)
    # prompt 100000; prefix 90000: 85% read = 76500, 13500 written; 10000 uncached input.
    assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (
        10000,
        76500,
        13500,
    )
    assert u.cache_write_5m_tokens == 13500 and u.cache_write_1h_tokens == 0
    assert u.prompt_tokens == count_tokens(400_000)


def test_one_hour_ttl_writes_are_1h() -> None:
    req = claude_code_request(user("a"), ttl="1h")
    u = usage_from_message(simulate(req, request_bytes=72_000, model="m").message)
    assert (u.cache_write_5m_tokens, u.cache_write_1h_tokens) == (0, 16200)


def test_short_prompts_are_not_cached() -> None:
    bytes_ = (MIN_CACHEABLE_TOKENS - 1) * 4
    u = usage_from_message(
        simulate(claude_code_request(user("a")), request_bytes=bytes_, model="m").message
    )
    assert u.cache_creation_input_tokens == u.cache_read_input_tokens == 0


def test_output_tokens_follow_the_words() -> None:
    reply = simulate(claude_code_request(user("x")), request_bytes=100, model="m")
    words = len(reply.message["content"][0]["text"].split())
    assert reply.message["usage"]["output_tokens"] == (words * 13 + 5) // 10  # words × 1.3, half up


@pytest.mark.parametrize("cap", [1, 2, 3, 7, 20])
def test_max_tokens_caps_output(cap: int) -> None:
    reply = simulate(claude_code_request(user("x"), max_tokens=cap), request_bytes=100, model="m")
    u = reply.message["usage"]
    assert 1 <= u["output_tokens"] <= cap
    assert reply.message["stop_reason"] == "max_tokens"
    text = reply.message["content"][0]["text"]
    assert text.startswith("[Tollgate") and text == text.strip()
    _, meter, streamed = decode_frames(reply.sse_frames())
    assert meter.stop_reason == "max_tokens" and streamed == text
    assert meter.usage.output_tokens == u["output_tokens"]


def test_deterministic_and_input_sensitive() -> None:
    req = claude_code_request(user("same question"))
    a = simulate(req, request_bytes=5000, model="m")
    b = simulate(req, request_bytes=5000, model="m")
    assert a == b and a.sse_frames() == b.sse_frames()
    c = simulate(claude_code_request(user("other question")), request_bytes=5000, model="m")
    assert c.message["id"] != a.message["id"]


def test_quote_is_shortened_and_flattened() -> None:
    long = "word " * 100
    text = simulate(claude_code_request(user(long)), request_bytes=100, model="m").message[
        "content"
    ][0]["text"]
    quote = text.split('"')[1]
    assert len(quote) <= 80 and quote.endswith("…") and "\n" not in quote


def test_last_user_message_is_the_one_quoted() -> None:
    req = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "system", "content": "mid-conversation system message"},
            {"role": "user", "content": "second"},
        ]
    }
    assert '"second"' in simulate(req, request_bytes=100, model="m").message["content"][0]["text"]


def test_tool_result_only_turn() -> None:
    req = {
        "messages": [
            {"role": "user", "content": "read it"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "data"}],
            },
        ]
    }
    text = simulate(req, request_bytes=100, model="m").message["content"][0]["text"]
    assert text.startswith("[Tollgate simulator]") and "no text" in text


@pytest.mark.parametrize(
    "req",
    [
        {},
        {"messages": "nope"},
        {"messages": [None, 5, {"role": "user", "content": 7}]},
        {"system": "str", "tools": None},
    ],
)
def test_malformed_requests_do_not_raise(req: dict[str, Any]) -> None:
    reply = simulate(req, request_bytes=0, model="simulator")
    _, meter, _ = decode_frames(reply.sse_frames())
    assert meter.usage == usage_from_message(reply.message)
    assert meter.usage.input_tokens == 1
