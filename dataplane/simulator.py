"""The built-in ``simulator`` model: Anthropic-shaped answers without a provider. Pure, no I/O.

Contract:

* ``simulate(request, request_bytes=…, model=…)`` returns a complete Messages response body
  (``SimulatedReply.message``) and its exact SSE rendering (``SimulatedReply.sse_frames()``):
  ``message_start`` → ``content_block_start`` → ``ping`` → ``content_block_delta`` × n →
  ``content_block_stop`` → ``message_delta`` → ``message_stop``. Decoding the frames and metering
  them yields exactly ``message["usage"]``; the deltas concatenate to the body's text.
* The text starts with ``[Tollgate simulator]`` and quotes the last user message, so a demo is
  visibly answered and never mistaken for a real model.
* Usage is derived from the request size: the prompt is ``count_tokens(request_bytes)``
  (≈ bytes / 4). When the request carries ``cache_control`` and the prompt is long enough to be
  cacheable (``MIN_CACHEABLE_TOKENS``), 90% of it is the cached prefix: written on a first turn
  (one message), otherwise 85% of the prefix is read and the rest written — as a growing
  conversation looks. Writes are 1h when any ``cache_control`` asks for ``ttl: "1h"``, else 5m.
  Output tokens = round(words × 1.3), capped by ``max_tokens`` (the text is then cut and
  ``stop_reason`` is ``"max_tokens"``).
* Deterministic: the same request gives the same reply, id included. Malformed request shapes
  never raise; they just give a less specific answer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["MIN_CACHEABLE_TOKENS", "SimulatedReply", "count_tokens", "simulate"]

MIN_CACHEABLE_TOKENS = 1024  # Anthropic does not cache shorter prompts
_QUOTE_CHARS = 80
_WORDS_PER_DELTA = 3
_WORD = re.compile(r"\S+\s*")


def count_tokens(request_bytes: int) -> int:
    """Simulated prompt size of a request body of ``request_bytes`` bytes (≈ 4 bytes a token)."""
    return max(1, (request_bytes + 2) // 4)


def _output_tokens(words: int) -> int:
    return (words * 13 + 5) // 10  # round(words × 1.3), in integers


@dataclass(frozen=True, slots=True)
class SimulatedReply:
    message: dict[str, Any]  # the non-streaming response body
    deltas: tuple[str, ...]  # the text, as streamed (concatenates to the body's text)

    def sse_frames(self) -> list[bytes]:
        """The reply in Anthropic's SSE wire format, one ``event:``/``data:`` frame per item."""
        msg = self.message
        usage = msg["usage"]
        start = {
            **msg,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        frames = [
            _frame("message_start", {"type": "message_start", "message": start}),
            _frame(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            _frame("ping", {"type": "ping"}),
        ]
        for piece in self.deltas:
            frames.append(
                _frame(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            )
        frames.append(_frame("content_block_stop", {"type": "content_block_stop", "index": 0}))
        # message_delta usage is cumulative, as the API sends it: the final figures, not increments.
        final = {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
            "cache_read_input_tokens": usage["cache_read_input_tokens"],
            "output_tokens": usage["output_tokens"],
        }
        frames.append(
            _frame(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                    "usage": final,
                },
            )
        )
        frames.append(_frame("message_stop", {"type": "message_stop"}))
        return frames


def _frame(event: str, payload: Mapping[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def simulate(request: Mapping[str, Any], *, request_bytes: int, model: str) -> SimulatedReply:
    """Answer ``request`` (a parsed Messages body) as the simulator model would."""
    messages = request.get("messages")
    messages = messages if isinstance(messages, list) else []
    quote = _quote(_last_user_text(messages))
    said = f'You wrote: "{quote}".' if quote else "Your last message carried no text."
    text = (
        "[Tollgate simulator] This answer comes from Tollgate's built-in simulator, not from a "
        f"real model. {said} The gateway authenticated, routed and metered this request; "
        "configure an Anthropic, Bedrock or Vertex provider to get real answers."
    )
    words = _WORD.findall(text)
    out_tokens = _output_tokens(len(words))
    stop_reason = "end_turn"
    max_tokens = request.get("max_tokens")
    if type(max_tokens) is int and max_tokens > 0 and out_tokens > max_tokens:
        keep = 1
        while keep < len(words) and _output_tokens(keep + 1) <= max_tokens:
            keep += 1
        words = words[:keep]
        words[-1] = words[-1].rstrip()
        text = "".join(words)
        out_tokens = min(_output_tokens(keep), max_tokens)
        stop_reason = "max_tokens"

    prompt = count_tokens(request_bytes)
    read = write = 0
    cache_ttl = _cache_ttl(request)
    if cache_ttl and prompt >= MIN_CACHEABLE_TOKENS:
        prefix = prompt * 9 // 10
        read = 0 if len(messages) <= 1 else prefix * 85 // 100
        write = prefix - read
    w1h = write if cache_ttl == "1h" else 0
    usage = {
        "input_tokens": prompt - read - write,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": write - w1h,
            "ephemeral_1h_input_tokens": w1h,
        },
        "output_tokens": out_tokens,
        "service_tier": "standard",
    }
    seed = f"{model}\0{request_bytes}\0{len(messages)}\0{max_tokens}\0{quote}".encode()
    message = {
        "id": "msg_sim_" + hashlib.sha256(seed).hexdigest()[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    deltas = tuple(
        "".join(words[i : i + _WORDS_PER_DELTA]) for i in range(0, len(words), _WORDS_PER_DELTA)
    )
    return SimulatedReply(message, deltas)


def _last_user_text(messages: list[Any]) -> str:
    """Text of the last user message (its last text block: Claude Code puts reminders first)."""
    for msg in reversed(messages):
        if not isinstance(msg, Mapping) or msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            for block in reversed(content):
                if isinstance(block, Mapping) and block.get("type") == "text":
                    text = block.get("text")
                    if isinstance(text, str) and text.strip():
                        return text
        return ""  # e.g. only tool_result blocks: the last user turn is what we answer
    return ""


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= _QUOTE_CHARS:
        return flat
    return flat[: _QUOTE_CHARS - 1].rstrip() + "…"


def _cache_ttl(request: Mapping[str, Any]) -> str:
    """ "1h" if any cache_control asks for it, "5m" if any cache_control is present, else ""."""
    found = ""
    blocks: list[Any] = []
    for key in ("system", "tools"):
        value = request.get(key)
        if isinstance(value, list):
            blocks.extend(value)
    messages = request.get("messages")
    if isinstance(messages, list):
        for msg in messages:
            if isinstance(msg, Mapping):
                content = msg.get("content")
                if isinstance(content, list):
                    blocks.extend(content)
    for block in blocks:
        if isinstance(block, Mapping):
            control = block.get("cache_control")
            if isinstance(control, Mapping):
                if control.get("ttl") == "1h":
                    return "1h"
                found = "5m"
    return found
