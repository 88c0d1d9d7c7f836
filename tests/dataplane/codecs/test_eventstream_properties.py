"""EventStreamDecoder, property-based: generated messages (every header type, AWS widths and
ranges) round-trip through any chunking; any single-byte corruption is refused, never decoded as
a different message; truncation waits; arbitrary bytes raise only EventStreamError, the same
whole or in pieces; a frame with valid CRCs is either refused or re-encodes to its exact bytes.

test_eventstream.py holds the spec vectors, botocore agreement and hand-picked corruptions.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dataplane.codecs.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    EventStreamMessage,
    Int8,
    Int16,
    Int64,
    encode_message,
)

FAST = settings(max_examples=150, deadline=None)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# -- strategies ------------------------------------------------------------------------------

names = st.text(min_size=1, max_size=40).filter(lambda n: len(n.encode()) <= 255)
timestamps = st.integers(
    (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1),
    (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1),
).map(lambda ms: _EPOCH + timedelta(milliseconds=ms))
values = st.one_of(
    st.booleans(),
    st.integers(-(2**7), 2**7 - 1).map(Int8),
    st.integers(-(2**15), 2**15 - 1).map(Int16),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.binary(max_size=64),
    st.text(max_size=40),
    timestamps,
    st.uuids(),
)
headers = st.dictionaries(names, values, max_size=6)
messages = st.tuples(headers, st.binary(max_size=200))
cut_lists = st.lists(st.integers(0, 2048), max_size=10)


def chunked(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({min(c, len(stream)) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


def typed(h: dict[str, object]) -> dict[str, tuple[type, object]]:
    """Headers with their Python types: Int8(1) == 1, but they encode differently."""
    return {k: (type(v), v) for k, v in h.items()}


def run(chunks: Sequence[bytes]) -> tuple[list[EventStreamMessage], str | None, int]:
    d = EventStreamDecoder()
    out: list[EventStreamMessage] = []
    for chunk in chunks:
        got, error = d.decode(chunk)
        out += got
        if error is not None:
            with pytest.raises(EventStreamError):  # failed for good
                d.feed(b"")
            return out, str(error), d.pending
    return out, None, d.pending


# -- round trip ------------------------------------------------------------------------------


@FAST
@given(st.lists(messages, max_size=5), cut_lists)
def test_generated_messages_round_trip_through_any_chunking(
    msgs: list[tuple[dict[str, object], bytes]], cuts: list[int]
) -> None:
    frames = [encode_message(h, p) for h, p in msgs]
    stream = b"".join(frames)
    got, error, pending = run(chunked(stream, cuts))
    assert error is None and pending == 0
    assert [(typed(dict(m.headers)), m.payload) for m in got] == [(typed(h), p) for h, p in msgs]
    # The encoder is the exact inverse of the decoder.
    assert [encode_message(m.headers, m.payload) for m in got] == frames


@FAST
@given(messages, st.data())
def test_a_truncated_frame_waits_for_more_bytes(
    msg: tuple[dict[str, object], bytes], data: st.DataObject
) -> None:
    frame = encode_message(*msg)
    cut = data.draw(st.integers(0, len(frame) - 1))
    d = EventStreamDecoder()
    assert d.feed(frame[:cut]) == [] and d.pending == cut
    assert [m.payload for m in d.feed(frame[cut:])] == [msg[1]] and d.pending == 0


# -- corruption ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_any_single_byte_corruption_is_refused_never_a_wrong_message(
    msg: tuple[dict[str, object], bytes], data: st.DataObject
) -> None:
    frame = bytearray(encode_message(*msg))
    at = data.draw(st.integers(0, len(frame) - 1), label="offset")
    frame[at] ^= data.draw(st.integers(1, 255), label="xor")
    good = encode_message(*msg)
    trailer = encode_message({":event-type": "next"}, b"after")  # must never be reached
    for chunks in (
        [bytes(frame) + trailer],
        chunked(bytes(frame) + trailer, data.draw(cut_lists, label="cuts")),
    ):
        got, error, _ = run(chunks)
        assert got == [] and error is not None, (at, bytes(frame) != good)
        assert "CRC mismatch" in error or "out of bounds" in error, error


# -- arbitrary bytes -------------------------------------------------------------------------

_PIECES = st.one_of(
    st.binary(max_size=24),
    messages.map(lambda m: encode_message(*m)),
    st.builds(  # a prelude with a valid CRC and arbitrary lengths
        lambda total, hlen: (
            (p := struct.pack(">II", total, hlen)) + struct.pack(">I", zlib.crc32(p))
        ),
        st.integers(0, 2**32 - 1) | st.integers(0, 64),
        st.integers(0, 2**32 - 1) | st.integers(0, 64),
    ),
)


@FAST
@given(st.lists(_PIECES, max_size=6).map(b"".join), cut_lists)
def test_arbitrary_bytes_whole_or_in_pieces_give_the_same_messages_and_error(
    stream: bytes, cuts: list[int]
) -> None:
    whole = run([stream])
    assert run(chunked(stream, cuts)) == whole
    if len(stream) < 400:
        assert run([stream[i : i + 1] for i in range(len(stream))]) == whole


def frame_with(raw_headers: bytes, payload: bytes) -> bytes:
    """A frame with correct CRCs around arbitrary header bytes."""
    total = 16 + len(raw_headers) + len(payload)
    prelude = struct.pack(">II", total, len(raw_headers))
    body = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))


_HEADER_BYTES = st.lists(
    st.one_of(
        st.binary(max_size=12),
        st.builds(  # plausible headers: name, a type 0-9 (or beyond), a value of random length
            lambda name, kind, value: bytes((len(name),)) + name + bytes((kind,)) + value,
            st.binary(max_size=6),
            st.integers(0, 12),
            st.binary(max_size=18),
        ),
        st.builds(lambda n, v: encode_message({n: v}, b"")[12:-4], names, values),
    ),
    max_size=5,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(_HEADER_BYTES, st.binary(max_size=16))
def test_valid_crcs_around_arbitrary_headers_decode_exactly_or_are_refused(
    raw_headers: bytes, payload: bytes
) -> None:
    """A decoded message re-encodes to the very bytes it came from: no header is silently
    dropped, merged or reinterpreted (duplicate names and empty names are refused)."""
    assume(len(raw_headers) <= 128 * 1024)
    frame = frame_with(raw_headers, payload)
    d = EventStreamDecoder()
    try:
        got = d.feed(frame)
    except EventStreamError:
        return
    assert len(got) == 1
    assert encode_message(got[0].headers, got[0].payload) == frame


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01a\x07\x00\x01x\x01a\x07\x00\x01y", "duplicate header 'a'"),
        (b"\x01a\x00\x01a\x01", "duplicate header 'a'"),
        (b"\x00\x00", "empty header name"),
    ],
)
def test_duplicate_or_empty_header_names_are_refused(raw: bytes, message: str) -> None:
    """AWS: "any given header can appear only once"; a name has at least one byte. Picking one
    of two ':event-type' values would be guessing which message was sent."""
    with pytest.raises(EventStreamError, match=message):
        EventStreamDecoder().feed(frame_with(raw, b"{}"))


@FAST
@given(st.uuids(), timestamps)
def test_uuid_and_timestamp_headers_keep_their_values(u: uuid.UUID, t: datetime) -> None:
    (m,) = EventStreamDecoder().feed(encode_message({"u": u, "t": t}, b""))
    assert m.headers == {"u": u, "t": t}
