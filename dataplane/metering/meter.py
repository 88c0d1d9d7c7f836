"""Token metering from Anthropic Messages responses, streamed or not.

Contract (see WIRE.md):

* ``message_start.message.usage`` carries the input and cache numbers and an initial
  ``output_tokens``; ``message_delta.usage`` is **cumulative**: for every field it carries, the
  last value wins — values are never summed.
* Cache writes are split by ``cache_creation.{ephemeral_5m_input_tokens,ephemeral_1h_input_tokens}``.
  Without a split, every cache write counts as 5m. With a split, the split is authoritative and any
  remainder of ``cache_creation_input_tokens`` beyond it also counts as 5m, so no written token goes
  unpriced; ``cache_creation_input_tokens`` is then at least ``5m + 1h``.
* Server tools: ``server_tool_use.{web_search_requests,web_fetch_requests}`` are counted like the
  token fields (last value wins). Code execution is billed by Anthropic per container-hour, which
  the usage object does not report, so it is not metered here.
* A field that is absent, ``null``, negative, boolean or not an integer is ignored. Unknown events
  and fields are ignored. Malformed JSON never raises; the event simply records nothing.
* A stream that ends without its final usage (no ``message_delta`` with usage: the client or the
  upstream went away first) is billed by :meth:`StreamMeter.billable`: its output is *estimated*
  from the content relayed (:class:`ContentCounter`: the bytes of the ``text``, ``partial_json``
  and ``thinking`` strings of the deltas, at :data:`ESTIMATE_BYTES_PER_TOKEN`, at most the
  request's ``max_tokens``), never below the ``output_tokens`` the upstream reported so far.
* Only ``message_start``, ``message_delta`` and ``error`` payloads are parsed; the bulk of a stream
  (``content_block_delta``, ``ping``) is counted and skipped without touching its JSON. Those event
  types are ``METER_SKIP``: decoding with ``SSEDecoder(skip=METER_SKIP)`` drops them before they
  are built and gives the same usage, model, id, stop reason, error and start/stop flags (only
  ``events``, the count of events fed, is smaller).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from dataplane.codecs.sse import SSEEvent

__all__ = [
    "ESTIMATE_BYTES_PER_TOKEN",
    "METER_SKIP",
    "ContentCounter",
    "StreamMeter",
    "TokenUsage",
    "usage_from_message",
]

# Claude's tokenizer averages ~3.5-4 characters a token for English and code, fewer for other
# scripts (a CJK character is 3 UTF-8 bytes and about a token). 3 bytes a token, counted on the
# JSON-escaped text, errs on the side of billing more, never less.
ESTIMATE_BYTES_PER_TOKEN = 3


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one request. ``cache_creation_input_tokens`` = 5m + 1h writes.

    ``web_search_requests`` and ``web_fetch_requests`` are the server tools' request counts."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    web_search_requests: int = 0
    web_fetch_requests: int = 0

    @property
    def prompt_tokens(self) -> int:
        """Everything the model read: uncached input + cache writes + cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


# Raw usage fields, in the order kept by _Fields: four totals, the cache split, the server tools.
_INPUT, _OUTPUT, _CREATE, _READ, _W5M, _W1H, _SEARCH, _FETCH = range(8)
_NFIELDS = 8
_TOP_FIELDS = (
    ("input_tokens", _INPUT),
    ("output_tokens", _OUTPUT),
    ("cache_creation_input_tokens", _CREATE),
    ("cache_read_input_tokens", _READ),
)
_SPLIT_FIELDS = (("ephemeral_5m_input_tokens", _W5M), ("ephemeral_1h_input_tokens", _W1H))
_TOOL_FIELDS = (("web_search_requests", _SEARCH), ("web_fetch_requests", _FETCH))


def _count(value: object) -> int | None:
    # bool is an int subclass; a JSON true/false is never a token count.
    if type(value) is int and value >= 0:
        return value
    return None


def _merge(fields: list[int | None], usage: object) -> None:
    """Overwrite ``fields`` with every valid count ``usage`` carries (last value wins)."""
    if not isinstance(usage, Mapping):
        return
    for name, slot in _TOP_FIELDS:
        n = _count(usage.get(name))
        if n is not None:
            fields[slot] = n
    for key, names in (("cache_creation", _SPLIT_FIELDS), ("server_tool_use", _TOOL_FIELDS)):
        sub = usage.get(key)
        if isinstance(sub, Mapping):
            for name, slot in names:
                n = _count(sub.get(name))
                if n is not None:
                    fields[slot] = n


def _build(fields: list[int | None]) -> TokenUsage:
    created = fields[_CREATE] or 0
    w5m, w1h = fields[_W5M], fields[_W1H]
    if w5m is None and w1h is None:
        w5m, w1h = created, 0
    else:
        w5m, w1h = w5m or 0, w1h or 0
        # A total larger than its split: the unexplained remainder is priced as 5m writes.
        w5m += max(0, created - w5m - w1h)
    return TokenUsage(
        input_tokens=fields[_INPUT] or 0,
        output_tokens=fields[_OUTPUT] or 0,
        cache_creation_input_tokens=w5m + w1h,
        cache_read_input_tokens=fields[_READ] or 0,
        cache_write_5m_tokens=w5m,
        cache_write_1h_tokens=w1h,
        web_search_requests=fields[_SEARCH] or 0,
        web_fetch_requests=fields[_FETCH] or 0,
    )


def usage_from_message(body: Mapping[str, object]) -> TokenUsage:
    """Usage of a non-streaming Messages response body (its ``usage`` object); zeros if absent."""
    fields: list[int | None] = [None] * _NFIELDS
    _merge(fields, body.get("usage"))
    return _build(fields)


# Events whose payload never affects metering; they are most of every stream. As bytes, for
# ``SSEDecoder(skip=METER_SKIP)``: a decoder feeding only a StreamMeter need not build them at all.
# ``message`` is not in it: an event without an ``event`` field is metered by its payload's type.
METER_SKIP = frozenset(
    {b"content_block_delta", b"content_block_start", b"content_block_stop", b"ping"}
)
_SKIPPED = frozenset(name.decode() for name in METER_SKIP)


def _loads(data: str) -> dict[str, Any] | None:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


class StreamMeter:
    """Accumulates usage, model, stop reason and error from a stream's decoded SSE events.

    Feed every event in order; read the attributes at any time (e.g. after a client disconnect:
    the usage seen so far is what gets billed).
    """

    __slots__ = (
        "_fields",
        "_usage",
        "content",
        "error",
        "events",
        "message_id",
        "model",
        "saw_final_usage",
        "saw_message_start",
        "saw_message_stop",
        "stop_reason",
    )

    def __init__(self) -> None:
        self._fields: list[int | None] = [None] * _NFIELDS
        self._usage: TokenUsage | None = TokenUsage()
        # Fed by the relay with the raw chunks it passed on: the basis of an output estimate.
        self.content = ContentCounter()
        self.saw_final_usage = False  # a message_delta carried usage (its output is final)
        self.model: str | None = None
        self.message_id: str | None = None
        self.stop_reason: str | None = None
        self.error: tuple[str, str] | None = None
        self.saw_message_start = False
        self.saw_message_stop = False
        self.events = 0

    @property
    def usage(self) -> TokenUsage:
        """Usage so far: the latest value of every field seen in message_start/message_delta."""
        if self._usage is None:
            self._usage = _build(self._fields)
        return self._usage

    def billable(self, max_tokens: int = 0) -> tuple[TokenUsage, bool]:
        """``(usage to bill, whether its output is estimated)``.

        The usage as reported when the final ``message_delta`` usage arrived; otherwise (the
        stream ended early) the output is ``max(reported output, min(⌈content bytes / 3⌉,
        max_tokens))`` — the request's ``max_tokens`` (when > 0) bounds what the model can have
        produced. A stream that showed nothing (no ``message_start``, no content) has nothing to
        estimate."""
        usage = self.usage
        if self.saw_final_usage or not (self.saw_message_start or self.content.bytes):
            return usage, False
        estimate = -(-self.content.bytes // ESTIMATE_BYTES_PER_TOKEN)
        if max_tokens > 0:
            estimate = min(estimate, max_tokens)
        return replace(usage, output_tokens=max(usage.output_tokens, estimate)), True

    def feed(self, event: SSEEvent) -> None:
        """Account for one event. Never raises on malformed or unexpected input."""
        self.events += 1
        name = event.event
        if name in _SKIPPED:  # the hot case: no JSON parse
            return
        if name == "message_stop":
            self.saw_message_stop = True
            return
        obj = _loads(event.data)
        if obj is None:
            return
        if name == "message":
            # No `event:` line (not how Anthropic sends it): fall back to the payload's own type.
            kind = obj.get("type")
            if not isinstance(kind, str) or kind in _SKIPPED:
                return
            if kind == "message_stop":
                self.saw_message_stop = True
                return
            name = kind
        if name == "message_start":
            self._on_start(obj)
        elif name == "message_delta":
            self._on_delta(obj)
        elif name == "error":
            self._on_error(obj)

    def _on_start(self, obj: dict[str, Any]) -> None:
        self.saw_message_start = True
        message = obj.get("message")
        if not isinstance(message, Mapping):
            return
        model = message.get("model")
        if isinstance(model, str) and model:
            self.model = model
        mid = message.get("id")
        if isinstance(mid, str) and mid:
            self.message_id = mid
        _merge(self._fields, message.get("usage"))
        self._usage = None

    def _on_delta(self, obj: dict[str, Any]) -> None:
        delta = obj.get("delta")
        if isinstance(delta, Mapping):
            reason = delta.get("stop_reason")
            if isinstance(reason, str) and reason:
                self.stop_reason = reason
        usage = obj.get("usage")
        if isinstance(usage, Mapping) and _count(usage.get("output_tokens")) is not None:
            self.saw_final_usage = True
        _merge(self._fields, usage)
        self._usage = None

    def _on_error(self, obj: dict[str, Any]) -> None:
        err = obj.get("error")
        if isinstance(err, Mapping):
            etype, message = err.get("type"), err.get("message")
            self.error = (
                etype if isinstance(etype, str) and etype else "api_error",
                message if isinstance(message, str) else "",
            )
        else:
            self.error = ("api_error", "")


# A string value of "text" (text_delta), "partial_json" (input_json_delta) or "thinking"
# (thinking_delta), as it stands in the JSON; never spans a line. The quote before the name keeps
# out e.g. "cited_text"; a quote inside a JSON string is escaped, so model output cannot match.
# Unrolled and possessive: linear, no backtracking.
_CONTENT = re.compile(
    rb'"(?:text|partial_json|thinking)":[ \t]*+"([^"\\\r\n]*+(?:\\.[^"\\\r\n]*+)*+)"'
)
_MAX_LINE = 1 << 20  # a longer unterminated line is left out of the count (never a real delta)


# Chunks are kept unscanned up to this many bytes: most streams end with their final usage,
# which makes the count moot, so it is taken only when asked for (or to bound the memory held).
# 32 KiB covers a typical Claude Code answer; 1,000 open streams hold at most 32 MiB for it.
_DEFER_BYTES = 32 * 1024
# The builtin, for ContentCounter's annotations: its property ``bytes`` shadows the name there.
_Bytes = bytes


class ContentCounter:
    """Bytes of generated content in a stream of Anthropic SSE, fed raw chunks split anywhere.

    ``bytes`` is the total length of every ``"text"``, ``"partial_json"`` and ``"thinking"`` string
    value (JSON-escaped, as relayed) in complete lines. Signatures, tool names and ids are left
    out. Cheap: one C-level regex scan per batch of chunks, no JSON parsing; only a line cut by a
    chunk boundary is copied. The scan is deferred: chunks are held (at most
    :data:`_DEFER_BYTES` of them, then scanned) until ``bytes`` is read, so a stream whose final
    usage arrived, and whose count is never read, is usually never scanned at all.
    """

    __slots__ = ("_counted", "_held", "_held_len", "_tail", "_tail_len")

    def __init__(self) -> None:
        self._counted = 0
        self._held: list[_Bytes] = []  # fed, not scanned yet
        self._held_len = 0
        self._tail: list[_Bytes] = []  # the unterminated last line, as received
        self._tail_len = 0

    @property
    def bytes(self) -> int:
        """The total so far: every chunk fed is counted (complete lines only)."""
        if self._held:
            self._flush()
        return self._counted

    def feed(self, chunk: _Bytes) -> None:
        self._held.append(chunk)
        self._held_len += len(chunk)
        if self._held_len > _DEFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        # The count does not depend on how the stream is split: the held chunks are scanned as one.
        held = self._held
        self._held, self._held_len = [], 0
        self._scan_chunk(held[0] if len(held) == 1 else b"".join(held))

    def _scan_chunk(self, chunk: _Bytes) -> None:
        last = chunk.rfind(b"\n")
        if last < 0:
            self._keep(chunk)
            return
        start = 0
        if self._tail:
            first = chunk.find(b"\n")
            self._tail.append(chunk[:first])
            if self._tail_len + first <= _MAX_LINE:
                self._scan(b"".join(self._tail), 0, self._tail_len + first)
            self._tail, self._tail_len = [], 0
            start = first + 1
        if start <= last:
            self._scan(chunk, start, last)
        if last + 1 < len(chunk):
            self._keep(chunk[last + 1 :])

    def _scan(self, data: _Bytes, start: int, end: int) -> None:
        self._counted += sum(map(len, _CONTENT.findall(data, start, end)))

    def _keep(self, part: _Bytes) -> None:
        if self._tail_len <= _MAX_LINE:  # beyond that the line is dropped from the count
            self._tail.append(part)
        self._tail_len += len(part)
