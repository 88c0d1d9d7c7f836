"""Realistic Anthropic Messages SSE streams, shared by the codec and metering tests."""

from __future__ import annotations

import json
from typing import Any


def frame(event: str, payload: dict[str, Any], *, eol: str = "\n") -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}{eol}data: {data}{eol}{eol}".encode()


def text_stream(
    *,
    model: str = "claude-sonnet-4-5-20250929",
    start_usage: dict[str, Any] | None = None,
    delta_usage: dict[str, Any] | None = None,
    texts: tuple[str, ...] = ("Hello", ", wörld — ", "世界 😀", "!"),
    stop_reason: str = "end_turn",
    eol: str = "\n",
    tail: tuple[tuple[str, dict[str, Any]], ...] = (),
    finish: bool = True,
) -> bytes:
    """message_start → ping → one text block → message_delta → message_stop, as the API sends."""
    su = start_usage if start_usage is not None else {"input_tokens": 12, "output_tokens": 1}
    du = delta_usage if delta_usage is not None else {"output_tokens": 9}
    out = [
        frame(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": su,
                },
            },
            eol=eol,
        ),
        frame(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            eol=eol,
        ),
        frame("ping", {"type": "ping"}, eol=eol),
    ]
    for t in texts:
        out.append(
            frame(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": t},
                },
                eol=eol,
            )
        )
    out.append(frame("content_block_stop", {"type": "content_block_stop", "index": 0}, eol=eol))
    for name, payload in tail:
        out.append(frame(name, payload, eol=eol))
    if finish:
        out.append(
            frame(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": du,
                },
                eol=eol,
            )
        )
        out.append(frame("message_stop", {"type": "message_stop"}, eol=eol))
    return b"".join(out)


def tool_use_stream() -> bytes:
    """A Claude Code style turn: thinking, text, then a tool_use with input_json_delta."""
    return b"".join(
        [
            frame(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_01Tool",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-opus-4-8",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": 3,
                            "cache_creation_input_tokens": 2500,
                            "cache_read_input_tokens": 41000,
                            "cache_creation": {
                                "ephemeral_5m_input_tokens": 2000,
                                "ephemeral_1h_input_tokens": 500,
                            },
                            "output_tokens": 1,
                            "service_tier": "standard",
                        },
                    },
                },
            ),
            frame(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
            ),
            frame(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": "Let me look at the file."},
                },
            ),
            frame(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"},
                },
            ),
            frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
            frame("ping", {"type": "ping"}),
            frame(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {
                        "type": "tool_use",
                        "id": "toolu_01",
                        "name": "Read",
                        "input": {},
                    },
                },
            ),
            frame(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": '{"file_path": "/src/ma'},
                },
            ),
            frame(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": 'in.py"}'},
                },
            ),
            frame("content_block_stop", {"type": "content_block_stop", "index": 1}),
            frame(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                    "usage": {
                        "input_tokens": 3,
                        "cache_creation_input_tokens": 2500,
                        "cache_read_input_tokens": 41000,
                        "output_tokens": 87,
                    },
                },
            ),
            frame("message_stop", {"type": "message_stop"}),
        ]
    )
