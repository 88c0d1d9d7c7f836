"""EventStreamDecoder / encode_message: spec vectors, split-invariance, corruption, all header types.

botocore's own decoder is used as an independent oracle for what we encode.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import uuid
import zlib
from datetime import UTC, datetime

import pytest
from botocore.eventstream import EventStreamBuffer

from dataplane.codecs.eventstream import (
    MAX_HEADERS_LENGTH,
    EventStreamDecoder,
    EventStreamError,
    EventStreamMessage,
    Int8,
    Int16,
    Int64,
    encode_message,
)

# Public test vectors of the AWS event-stream encoding (aws-c-event-stream's test suite).
EMPTY_MESSAGE = bytes.fromhex("000000100000000005c248eb7d98c8ff")
INT32_HEADER = bytes.fromhex(
    "0000002d0000001041c424b80a6576656e742d747970650400 00a00c7b27666f6f273a27626172277d36f480a0".replace(
        " ", ""
    )
)

ALL_TYPES: dict[str, object] = {
    "true": True,
    "false": False,
    "byte": Int8(-7),
    "short": Int16(-30000),
    "int": 2_000_000_000,
    "long": Int64(-(2**62)),
    "bytes": b"\x00\xffraw",
    "string": "héllo ✓",
    "timestamp": datetime(2025, 9, 29, 12, 34, 56, 789000, tzinfo=UTC),
    "uuid": uuid.UUID("01234567-89ab-cdef-0123-456789abcdef"),
}


def chunk_frame(event: dict[str, object]) -> bytes:
    payload = json.dumps(
        {"bytes": base64.b64encode(json.dumps(event).encode()).decode(), "p": "abcdefgh"}
    ).encode()
    return encode_message(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
        payload,
    )


def stream() -> bytes:
    frames = [
        chunk_frame({"type": "message_start", "n": i, "text": "x" * (i * 37)}) for i in range(6)
    ]
    frames.append(encode_message(ALL_TYPES, b"all types"))
    frames.append(EMPTY_MESSAGE)
    frames.append(INT32_HEADER)
    return b"".join(frames)


def decode(*chunks: bytes) -> list[EventStreamMessage]:
    d = EventStreamDecoder()
    out: list[EventStreamMessage] = []
    for c in chunks:
        out += d.feed(c)
    assert d.pending == 0
    return out


# --- spec vectors ----------------------------------------------------------------------------------


def test_spec_vectors_decode() -> None:
    assert decode(EMPTY_MESSAGE) == [EventStreamMessage({}, b"")]
    [m] = decode(INT32_HEADER)
    assert m.headers == {"event-type": 0xA00C}
    assert m.payload == b"{'foo':'bar'}"


def test_spec_vectors_encode_identically() -> None:
    assert encode_message({}, b"") == EMPTY_MESSAGE
    assert encode_message({"event-type": 0xA00C}, b"{'foo':'bar'}") == INT32_HEADER


def test_frame_built_by_hand_from_the_spec() -> None:
    """A Bedrock chunk frame assembled field by field, exactly as the spec lays it out."""
    event = b'{"type":"message_stop"}'
    payload = b'{"bytes":"' + base64.b64encode(event) + b'","p":"abc"}'
    headers = b""
    for name, value in (
        (b":event-type", b"chunk"),
        (b":content-type", b"application/json"),
        (b":message-type", b"event"),
    ):
        headers += bytes([len(name)]) + name + b"\x07" + struct.pack(">H", len(value)) + value
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    frame = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + payload
    frame += struct.pack(">I", zlib.crc32(frame))

    [m] = decode(frame)
    assert (m.message_type, m.event_type, m.exception_type) == ("event", "chunk", "")
    assert m.headers[":content-type"] == "application/json"
    assert base64.b64decode(json.loads(m.payload)["bytes"]) == event
    assert encode_message(m.headers, m.payload) == frame


# --- round trips and split invariance --------------------------------------------------------------


def test_round_trip_and_botocore_agrees() -> None:
    data = stream()
    ours = decode(data)
    assert len(ours) == 9
    assert b"".join(encode_message(m.headers, m.payload) for m in ours) == data
    theirs = EventStreamBuffer()
    theirs.add_data(data)
    parsed = list(theirs)
    assert [m.payload for m in parsed] == [m.payload for m in ours]
    for mine, boto in zip(ours, parsed, strict=True):
        # botocore renders timestamps as ints and uuids as bytes; compare everything else.
        comparable = {
            k: v for k, v in mine.headers.items() if not isinstance(v, datetime | uuid.UUID)
        }
        assert {k: boto.headers[k] for k in comparable} == comparable


def test_every_single_split_point() -> None:
    data = stream()
    whole = decode(data)
    for i in range(len(data) + 1):
        assert decode(data[:i], data[i:]) == whole, i


def test_byte_by_byte() -> None:
    data = stream()
    d = EventStreamDecoder()
    got: list[EventStreamMessage] = []
    for i in range(len(data)):
        got += d.feed(data[i : i + 1])
    assert got == decode(data)
    assert d.pending == 0


def test_random_chunkings() -> None:
    data = stream()
    whole = decode(data)
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 30)))
        parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert decode(*parts) == whole


def test_all_header_types_round_trip_with_their_widths() -> None:
    [m] = decode(encode_message(ALL_TYPES, b"p"))
    assert m.headers == ALL_TYPES
    assert type(m.headers["byte"]) is Int8
    assert type(m.headers["short"]) is Int16
    assert type(m.headers["int"]) is int
    assert type(m.headers["long"]) is Int64
    assert m.headers["timestamp"] == ALL_TYPES["timestamp"]
    # type bytes on the wire, in order
    raw = encode_message(ALL_TYPES, b"p")
    types = []
    pos, hlen = 12, struct.unpack(">I", raw[4:8])[0]
    while pos < 12 + hlen:
        pos += 1 + raw[pos]
        types.append(raw[pos])
        pos += 1 + {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}.get(raw[pos], 0)
        if types[-1] in (6, 7):
            pos += 2 + struct.unpack(">H", raw[pos : pos + 2])[0]
    assert types == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_large_int_becomes_long_and_bad_values_refused() -> None:
    [m] = decode(encode_message({"n": 2**40}, b""))
    assert m.headers["n"] == 2**40 and type(m.headers["n"]) is Int64
    with pytest.raises(ValueError):
        encode_message({"n": Int8(300)}, b"")
    with pytest.raises(ValueError):
        encode_message({"t": datetime(2025, 1, 1)}, b"")  # naive timestamp
    with pytest.raises(ValueError):
        encode_message({"": "x"}, b"")
    with pytest.raises(TypeError):
        encode_message({"f": 1.5}, b"")


def test_helpers() -> None:
    m = EventStreamMessage(
        {":message-type": "exception", ":exception-type": "throttlingException", "n": 1}, b"{}"
    )
    assert (m.message_type, m.event_type, m.exception_type) == (
        "exception",
        "",
        "throttlingException",
    )
    assert m.header("n") == ""


# --- corruption is detected, never passed on -------------------------------------------------------


def test_corrupted_prelude_crc() -> None:
    frame = bytearray(chunk_frame({"type": "ping"}))
    frame[9] ^= 0x01
    with pytest.raises(EventStreamError, match="prelude CRC"):
        EventStreamDecoder().feed(bytes(frame))


def test_corrupted_length_is_caught_by_the_prelude_crc_before_waiting() -> None:
    frame = bytearray(chunk_frame({"type": "ping"}))
    frame[0] = 0x7F  # a huge total length: never wait for 2 GB, fail at once
    d = EventStreamDecoder()
    with pytest.raises(EventStreamError, match="prelude CRC"):
        d.feed(bytes(frame[:12]))


@pytest.mark.parametrize("offset", [12, 40, -10, -1])
def test_corrupted_message_crc_anywhere_after_the_prelude(offset: int) -> None:
    good = chunk_frame({"type": "message_start"})
    frame = bytearray(good)
    frame[offset] ^= 0x40
    d = EventStreamDecoder()
    # the good frame before the corrupt one is delivered, the corrupt one never is
    with pytest.raises(EventStreamError, match="message CRC"):
        d.feed(good + bytes(frame))
    with pytest.raises(EventStreamError):
        d.feed(good)  # the decoder stays failed: framing is lost


def test_corruption_detected_at_every_split() -> None:
    good = chunk_frame({"type": "content_block_delta"})
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01
    for i in range(len(bad) + 1):
        d = EventStreamDecoder()
        with pytest.raises(EventStreamError):
            d.feed(bytes(bad[:i]))
            d.feed(bytes(bad[i:]))


def _with_prelude(total: int, hlen: int, rest: bytes = b"") -> bytes:
    prelude = struct.pack(">II", total, hlen)
    return prelude + struct.pack(">I", zlib.crc32(prelude)) + rest


@pytest.mark.parametrize(
    ("total", "hlen"),
    [
        (8, 0),
        (15, 0),
        (17 * 1024 * 1024, 0),
        (100, 90),
        (MAX_HEADERS_LENGTH + 64, MAX_HEADERS_LENGTH + 1),
    ],
)
def test_absurd_lengths_refused_even_with_a_valid_prelude_crc(total: int, hlen: int) -> None:
    with pytest.raises(EventStreamError, match="out of bounds"):
        EventStreamDecoder().feed(_with_prelude(total, hlen))


def test_custom_cap() -> None:
    frame = encode_message({}, b"x" * 100)
    with pytest.raises(EventStreamError):
        EventStreamDecoder(max_message_length=64).feed(frame)


def _raw_message(headers: bytes, payload: bytes = b"") -> bytes:
    total = 12 + len(headers) + len(payload) + 4
    body = _with_prelude(total, len(headers), headers + payload)
    return body + struct.pack(">I", zlib.crc32(body))


@pytest.mark.parametrize(
    "headers",
    [
        b"\x01a\x0a",  # unknown type 10
        b"\x01a\x07\x00\x09abc",  # string longer than the headers
        b"\x01a\x04\x00\x00",  # int32 cut short
        b"\x05ab",  # name cut short
        b"\x01a\x07\x00\x02\xff\xfe",  # invalid UTF-8
        b"\x01a",  # no type byte
    ],
)
def test_malformed_headers_with_valid_crcs(headers: bytes) -> None:
    with pytest.raises(EventStreamError):
        EventStreamDecoder().feed(_raw_message(headers))


def test_truncated_stream_is_visible_as_pending() -> None:
    frame = chunk_frame({"type": "message_stop"})
    d = EventStreamDecoder()
    assert d.feed(frame[:-3]) == []
    assert d.pending == len(frame) - 3


def test_decode_returns_the_frames_before_a_corruption_in_the_same_read() -> None:
    good = chunk_frame({"type": "message_start"})
    bad = bytearray(chunk_frame({"type": "content_block_delta"}))
    bad[-10] ^= 0x40
    d = EventStreamDecoder()
    messages, failed = d.decode(good + good + bytes(bad) + good)
    assert len(messages) == 2 and all(m.event_type == "chunk" for m in messages)
    assert isinstance(failed, EventStreamError) and "message CRC" in str(failed)
    assert d.decode(good) == ([], failed)  # framing is lost: nothing after it is decoded
    with pytest.raises(EventStreamError):
        d.feed(good)
