"""AWS event stream (``application/vnd.amazon.eventstream``): incremental decoder and encoder.

Stdlib only, no I/O. The wire format, all integers big-endian::

    total length u32 | headers length u32 | prelude CRC32 u32 (of the 8 bytes before it)
    headers (headers-length bytes) | payload | message CRC32 u32 (of every byte before it)

``total length`` counts the whole message, prelude and trailing CRC included (so >= 16). A header
is ``name length u8 | name (UTF-8) | type u8 | value``, value by type:

====  =========  ==========================================  ======================
type  name       encoding                                    Python value
====  =========  ==========================================  ======================
0     bool true  (no bytes)                                  ``True``
1     bool false (no bytes)                                  ``False``
2     byte       i8                                          :class:`Int8`
3     short      i16                                         :class:`Int16`
4     integer    i32                                         ``int``
5     long       i64                                         :class:`Int64`
6     bytes      u16 length + bytes                          ``bytes``
7     string     u16 length + UTF-8                          ``str``
8     timestamp  i64 milliseconds since the Unix epoch       ``datetime`` (UTC)
9     uuid       16 bytes                                    ``uuid.UUID``
====  =========  ==========================================  ======================

Contract:

* ``EventStreamDecoder.feed(chunk)`` accepts arbitrary chunks (split anywhere) and returns the
  messages they complete, in order; feeding a stream whole or byte by byte gives the same result.
* A corrupt frame is detected, never passed on: the prelude CRC is checked *before* the lengths
  are trusted, the lengths are bounded (``max_message_length``, default 16 MiB; headers at most
  128 KiB, the AWS limit), the message CRC is checked before a message is returned, and headers
  must parse exactly: every header name non-empty and, as AWS specifies, no name twice (taking
  one of two ``:event-type`` values would be guessing which message was sent). Any failure
  raises :class:`EventStreamError`; framing is then lost, so the decoder drops its buffer, stays
  failed and every later ``feed`` raises again.
* ``pending`` is the number of buffered bytes of an incomplete message (non-zero at the end of a
  stream means it was truncated; 0 once failed).
* ``encode_message(headers, payload)`` is the exact inverse: ``encode_message(m.headers,
  m.payload)`` re-creates the bytes of any decoded message ``m``. Plain ``int`` encodes as type 4
  (type 5 if it does not fit in 32 bits); ``Int8``/``Int16``/``Int64`` pick the width; ``datetime``
  must be timezone-aware.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "MAX_HEADERS_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "EventStreamDecoder",
    "EventStreamError",
    "EventStreamMessage",
    "HeaderValue",
    "Int8",
    "Int16",
    "Int64",
    "encode_message",
]

PRELUDE_LENGTH = 12
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + 4
MAX_HEADERS_LENGTH = 128 * 1024
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_INTS = {
    2: struct.Struct(">b"),
    3: struct.Struct(">h"),
    4: struct.Struct(">i"),
    5: struct.Struct(">q"),
}


class EventStreamError(ValueError):
    """The byte stream is not a valid event stream (bad CRC, absurd length, malformed header)."""


class Int8(int):
    """An ``int`` header value sent as type 2 (byte)."""


class Int16(int):
    """An ``int`` header value sent as type 3 (short)."""


class Int64(int):
    """An ``int`` header value sent as type 5 (long)."""


HeaderValue = bool | int | bytes | str | datetime | uuid.UUID


@dataclass(frozen=True, slots=True)
class EventStreamMessage:
    headers: Mapping[str, object]
    payload: bytes

    def header(self, name: str) -> str:
        """A string header's value, or ``""`` when absent or not a string."""
        value = self.headers.get(name)
        return value if isinstance(value, str) else ""

    @property
    def message_type(self) -> str:
        """``event``, ``exception`` or ``error`` (the ``:message-type`` header)."""
        return self.header(":message-type")

    @property
    def event_type(self) -> str:
        """The ``:event-type`` header (e.g. ``chunk``), ``""`` if absent."""
        return self.header(":event-type")

    @property
    def exception_type(self) -> str:
        """The ``:exception-type`` header (e.g. ``throttlingException``), ``""`` if absent."""
        return self.header(":exception-type")


class EventStreamDecoder:
    """Push-style decoder: ``feed()`` bytes as they arrive, get completed messages back."""

    __slots__ = ("_buf", "_failed", "_max", "_need")

    def __init__(self, max_message_length: int = MAX_MESSAGE_LENGTH) -> None:
        self._buf = bytearray()
        self._max = max_message_length
        self._need = 0  # total length of the message at the head of the buffer, once validated
        self._failed: EventStreamError | None = None

    @property
    def pending(self) -> int:
        """Bytes buffered towards a message not yet complete."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[EventStreamMessage]:
        """Decode ``chunk``; return every message it completes. Raises EventStreamError."""
        out, failed = self.decode(chunk)
        if failed is not None:
            raise failed
        return out

    def decode(self, chunk: bytes) -> tuple[list[EventStreamMessage], EventStreamError | None]:
        """Like :meth:`feed`, but a corruption is returned, not raised, together with the
        messages completed before it (several frames can arrive in one read). Once failed, the
        decoder stays failed: framing is lost."""
        if self._failed is not None:
            return [], self._failed
        if chunk:
            self._buf += chunk
        out: list[EventStreamMessage] = []
        try:
            while True:
                if not self._need:
                    if len(self._buf) < PRELUDE_LENGTH:
                        break
                    self._need = self._prelude()
                if len(self._buf) < self._need:
                    break
                frame = self._buf[: self._need]  # a copy: the buffer can shrink below
                del self._buf[: self._need]
                out.append(_message(frame))
                self._need = 0
        except EventStreamError as exc:
            self._failed = exc
            self._buf = bytearray()  # framing is lost: nothing buffered will ever decode
            return out, exc
        return out, None

    def _prelude(self) -> int:
        total, hlen, crc = _PRELUDE.unpack_from(self._buf)
        if zlib.crc32(self._buf[:8]) != crc:
            raise EventStreamError("event stream prelude CRC mismatch")
        if total < MIN_MESSAGE_LENGTH or total > self._max:
            raise EventStreamError(f"event stream message length {total} out of bounds")
        if hlen > MAX_HEADERS_LENGTH or hlen > total - MIN_MESSAGE_LENGTH:
            raise EventStreamError(f"event stream headers length {hlen} out of bounds")
        return int(total)


def _message(data: bytearray) -> EventStreamMessage:
    """Check the message CRC of a complete frame (prelude already checked) and parse it."""
    frame = memoryview(data)
    total = len(frame)
    (expected,) = _U32.unpack_from(frame, total - 4)
    if zlib.crc32(frame[: total - 4]) != expected:
        raise EventStreamError("event stream message CRC mismatch")
    (hlen,) = _U32.unpack_from(frame, 4)
    headers_end = PRELUDE_LENGTH + hlen
    headers = _headers(frame[PRELUDE_LENGTH:headers_end])
    return EventStreamMessage(headers, bytes(frame[headers_end : total - 4]))


def _headers(data: memoryview) -> dict[str, object]:
    headers: dict[str, object] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            nlen = data[pos]
            if not nlen:
                raise EventStreamError("event stream has an empty header name")
            name = bytes(data[pos + 1 : pos + 1 + nlen]).decode("utf-8")
            pos += 1 + nlen
            if pos >= end:
                raise EventStreamError("event stream header truncated")
            kind = data[pos]
            pos += 1
            value: object
            if kind == 0 or kind == 1:
                value = kind == 0
            elif kind in _INTS:
                fmt = _INTS[kind]
                if pos + fmt.size > end:
                    raise EventStreamError("event stream header truncated")
                (n,) = fmt.unpack_from(data, pos)
                pos += fmt.size
                value = (
                    Int8(n)
                    if kind == 2
                    else Int16(n)
                    if kind == 3
                    else Int64(n)
                    if kind == 5
                    else n
                )
            elif kind == 6 or kind == 7:
                if pos + 2 > end:
                    raise EventStreamError("event stream header truncated")
                (vlen,) = _U16.unpack_from(data, pos)
                pos += 2
                if pos + vlen > end:
                    raise EventStreamError("event stream header truncated")
                raw = bytes(data[pos : pos + vlen])
                pos += vlen
                value = raw if kind == 6 else raw.decode("utf-8")
            elif kind == 8:
                if pos + 8 > end:
                    raise EventStreamError("event stream header truncated")
                (ms,) = _INTS[5].unpack_from(data, pos)
                pos += 8
                value = _EPOCH + timedelta(milliseconds=ms)
            elif kind == 9:
                if pos + 16 > end:
                    raise EventStreamError("event stream header truncated")
                value = uuid.UUID(bytes=bytes(data[pos : pos + 16]))
                pos += 16
            else:
                raise EventStreamError(f"event stream header {name!r} has unknown type {kind}")
            if name in headers:
                raise EventStreamError(f"event stream message has a duplicate header {name!r}")
            headers[name] = value
    except UnicodeDecodeError as exc:
        raise EventStreamError("event stream header is not valid UTF-8") from exc
    except OverflowError as exc:  # a timestamp beyond datetime's range
        raise EventStreamError("event stream timestamp header out of range") from exc
    return headers


def _encode_header(name: str, value: object) -> bytes:
    raw_name = name.encode("utf-8")
    if not 0 < len(raw_name) < 256:
        raise ValueError(f"header name {name!r} must be 1-255 bytes")
    head = bytes((len(raw_name),)) + raw_name
    if isinstance(value, bool):
        return head + (b"\x00" if value else b"\x01")
    if isinstance(value, int):
        if isinstance(value, Int8):
            kind = 2
        elif isinstance(value, Int16):
            kind = 3
        elif isinstance(value, Int64) or not -(2**31) <= value < 2**31:
            kind = 5
        else:
            kind = 4
        try:
            return head + bytes((kind,)) + _INTS[kind].pack(value)
        except struct.error as exc:
            raise ValueError(f"header {name!r}: {value} does not fit its type") from exc
    if isinstance(value, bytes | str):
        kind, raw = (6, value) if isinstance(value, bytes) else (7, value.encode("utf-8"))
        if len(raw) > 0xFFFF:
            raise ValueError(f"header {name!r} value is longer than 65535 bytes")
        return head + bytes((kind,)) + _U16.pack(len(raw)) + raw
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"header {name!r}: timestamps must be timezone-aware")
        ms = (value - _EPOCH) // timedelta(milliseconds=1)
        return head + b"\x08" + _INTS[5].pack(ms)
    if isinstance(value, uuid.UUID):
        return head + b"\x09" + value.bytes
    raise TypeError(f"header {name!r}: unsupported value type {type(value).__name__}")


def encode_message(headers: Mapping[str, object], payload: bytes) -> bytes:
    """One complete event-stream message (see the module docstring for the value types)."""
    raw_headers = b"".join(_encode_header(k, v) for k, v in headers.items())
    total = PRELUDE_LENGTH + len(raw_headers) + len(payload) + 4
    if len(raw_headers) > MAX_HEADERS_LENGTH or total > MAX_MESSAGE_LENGTH:
        raise ValueError("event stream message too large")
    prelude = _U32.pack(total) + _U32.pack(len(raw_headers))
    body = prelude + _U32.pack(zlib.crc32(prelude)) + raw_headers + payload
    return body + _U32.pack(zlib.crc32(body))
