"""Token metering from Anthropic Messages responses, streamed or not.

Contract (see WIRE.md):

* ``message_start.message.usage`` carries the input and cache numbers and an initial
  ``output_tokens``; ``message_delta.usage`` is **cumulative**: for every field it carries, the
  last value wins — values are never summed.
* Cache writes are split by ``cache_creation.{ephemeral_5m_input_tokens,ephemeral_1h_input_tokens}``.
  Without a split, every cache write counts as 5m. With a split, the split is authoritative and any
  remainder of ``cache_creation_input_tokens`` beyond it also counts as 5m, so no written token goes
  unpriced; ``cache_creation_input_tokens`` is then at least ``5m + 1h``.
* A field that is absent, ``null``, negative, boolean or not an integer is ignored. Unknown events
  and fields are ignored. Malformed JSON never raises; the event simply records nothing.
* Only ``message_start``, ``message_delta`` and ``error`` payloads are parsed; the bulk of a stream
  (``content_block_delta``, ``ping``) is counted and skipped without touching its JSON. Those event
  types are ``METER_SKIP``: decoding with ``SSEDecoder(skip=METER_SKIP)`` drops them before they
  are built and gives the same usage, model, id, stop reason, error and start/stop flags (only
  ``events``, the count of events fed, is smaller).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from dataplane.codecs.sse import SSEEvent

__all__ = ["METER_SKIP", "StreamMeter", "TokenUsage", "usage_from_message"]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one request. ``cache_creation_input_tokens`` = 5m + 1h writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """Everything the model read: uncached input + cache writes + cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


# Raw usage fields, in the order kept by _Fields; the last four are the totals and the split.
_INPUT, _OUTPUT, _CREATE, _READ, _W5M, _W1H = range(6)
_TOP_FIELDS = (
    ("input_tokens", _INPUT),
    ("output_tokens", _OUTPUT),
    ("cache_creation_input_tokens", _CREATE),
    ("cache_read_input_tokens", _READ),
)
_SPLIT_FIELDS = (("ephemeral_5m_input_tokens", _W5M), ("ephemeral_1h_input_tokens", _W1H))


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
    split = usage.get("cache_creation")
    if isinstance(split, Mapping):
        for name, slot in _SPLIT_FIELDS:
            n = _count(split.get(name))
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
    )


def usage_from_message(body: Mapping[str, object]) -> TokenUsage:
    """Usage of a non-streaming Messages response body (its ``usage`` object); zeros if absent."""
    fields: list[int | None] = [None] * 6
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
        "error",
        "events",
        "message_id",
        "model",
        "saw_message_start",
        "saw_message_stop",
        "stop_reason",
    )

    def __init__(self) -> None:
        self._fields: list[int | None] = [None] * 6
        self._usage: TokenUsage | None = TokenUsage()
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
        _merge(self._fields, obj.get("usage"))
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
