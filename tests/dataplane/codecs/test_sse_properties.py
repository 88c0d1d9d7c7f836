"""SSEDecoder, property-based: generated event lists round-trip through an encoder and any
chunking; any byte string decodes the same whole or in pieces (errors included); arbitrary bytes
raise nothing but SSEError, and the memory cap holds.

test_sse.py checks the spec's edge cases against a reference decoder on fixed and random-token
streams; here hypothesis generates the events (unicode, NUL, multi-line data, ids, retry,
comments, CR / LF / CRLF per line) and the chunkings, and shrinks any failure to a minimal one.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataplane.codecs.sse import MAX_EVENT_BYTES, SSEDecoder, SSEError, SSEEvent
from dataplane.metering.meter import METER_SKIP

FAST = settings(max_examples=150, deadline=None)

# -- strategies ------------------------------------------------------------------------------

_NO_EOL = st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n")
# Data may hold any character but CR: data lines are joined with LF, so a CR cannot round-trip.
_NO_CR = st.characters(blacklist_categories=["Cs"], blacklist_characters="\r")
_EOLS = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def events(draw: st.DrawFn) -> list[tuple[str | None, str, str | None, int | None]]:
    """(event name or None, data, id or None, retry or None) per event."""
    out = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.none() | st.text(_NO_EOL, max_size=12))
        data = draw(st.text(_NO_CR, max_size=40))
        ident = draw(st.none() | st.text(_NO_EOL.filter(lambda c: c != "\0"), max_size=10))
        retry = draw(st.none() | st.integers(0, 10**12))
        out.append((name, data, ident, retry))
    return out


def encode(
    evs: Sequence[tuple[str | None, str, str | None, int | None]], source: st.DataObject, bom: bool
) -> bytes:
    """A conforming stream for ``evs`` with line endings and comments drawn from ``source``."""
    draw = source.draw
    lines: list[str] = []
    for name, data, ident, retry in evs:
        fields: list[str] = []
        if name is not None:
            fields.append("event: " + name)
        if ident is not None:
            fields.append("id: " + ident)
        if retry is not None:
            fields.append(f"retry: {retry}")
        if draw(st.booleans()):
            fields.append("x-unknown-field: ignored")
        block = draw(st.permutations(fields)) + ["data: " + part for part in data.split("\n")]
        if draw(st.booleans()):  # a comment anywhere, even between data lines
            at = draw(st.integers(0, len(block)))
            block.insert(at, ":" + draw(st.text(_NO_EOL, max_size=10)))
        lines += block
        lines.append("")  # the blank line that dispatches
    text = ""
    prev = ""
    for line in lines:
        eol = draw(_EOLS)
        if prev == "\r" and line == "" and eol == "\n":
            eol = "\r\n"  # CR then a lone LF would read as one CRLF ending, not a blank line
        text += line + eol
        prev = eol
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


def expected(evs: Sequence[tuple[str | None, str, str | None, int | None]]) -> list[SSEEvent]:
    out = []
    last_id: str | None = None
    for name, data, ident, retry in evs:
        if ident is not None:
            last_id = ident
        out.append(SSEEvent(name or "message", data, last_id, retry))
    return out


def chunked(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({min(c, len(stream)) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


cut_lists = st.lists(st.integers(0, 4096), max_size=12)


def run(chunks: Sequence[bytes], **kw: object) -> tuple[list[SSEEvent], str | None, int]:
    """Events in order (those carried by the error too), the error text, pending at the end."""
    d = SSEDecoder(**kw)  # type: ignore[arg-type]
    out: list[SSEEvent] = []
    for chunk in chunks:
        try:
            out += d.feed(chunk)
        except SSEError as exc:
            out += exc.events
            # Failed for good: every later call raises again, completing nothing.
            with pytest.raises(SSEError):
                d.feed(b"data: more\n\n")
            return out, str(exc), d.pending
        # The memory bound, after every call (up to 2 bytes of a possible BOM are held apart).
        assert d.pending <= max(d._max, 2)
    out += d.close()
    return out, None, d.pending


# -- (a) round trip --------------------------------------------------------------------------


@FAST
@given(st.data())
def test_generated_events_round_trip_through_any_chunking(data: st.DataObject) -> None:
    evs = data.draw(events())
    stream = encode(evs, data, bom=data.draw(st.booleans()))
    want = expected(evs)
    got, error, pending = run(chunked(stream, data.draw(cut_lists)))
    assert (got, error, pending) == (want, None, 0)
    # Byte by byte too: the worst case for CRLF and multibyte UTF-8 split across chunks.
    assert run([stream[i : i + 1] for i in range(len(stream))])[0] == want


# -- (b) split invariance on arbitrary bytes, errors included --------------------------------

_TOKENS = st.sampled_from(
    [b"data:", b"data: ", b"event: ", b"id: ", b"retry: ", b"retry: 12", b": c", b"x", b"\xc3",
     b"\xa9", b"\xef\xbb\xbf", b"\0", b"\r", b"\n", b"\r\n", b"\n\n", b"ping", b"message", b" "]
)  # fmt: skip
streams = st.lists(_TOKENS | st.binary(max_size=8), max_size=40).map(b"".join)


@FAST
@given(streams, cut_lists, st.integers(1, 48))
def test_whole_or_in_pieces_gives_the_same_result_and_error(
    stream: bytes, cuts: list[int], cap: int
) -> None:
    for kw in ({}, {"max_event_bytes": cap}):
        whole = run([stream], **kw)
        assert run(chunked(stream, cuts), **kw) == whole
        assert run([stream[i : i + 1] for i in range(len(stream))], **kw) == whole


@FAST
@given(streams, cut_lists, st.integers(1, 48))
def test_skipping_decoder_is_the_full_decoder_minus_skipped_events_even_when_capped(
    stream: bytes, cuts: list[int], cap: int
) -> None:
    full_events, full_error, full_pending = run([stream], max_event_bytes=cap)
    skip = frozenset({b"ping", b"message", *METER_SKIP})
    wanted = [e for e in full_events if e.event.encode() not in skip]
    for chunks in ([stream], chunked(stream, cuts)):
        got = run(chunks, skip=skip, max_event_bytes=cap)
        assert got == (wanted, full_error, full_pending)


# -- (c) robustness and the memory cap -------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20), st.integers(1, 256))
def test_arbitrary_bytes_raise_nothing_but_sse_error(chunks: list[bytes], cap: int) -> None:
    d = SSEDecoder(max_event_bytes=cap)
    for chunk in chunks:
        try:
            for event in d.feed(chunk):
                assert isinstance(event.data, str) and isinstance(event.event, str)
        except SSEError:
            return
        assert d.pending <= max(cap, 2)


@FAST
@given(st.integers(1, 200), _EOLS, st.sampled_from([frozenset(), frozenset({b"ping"})]))
def test_an_event_of_exactly_the_cap_passes_and_one_byte_more_fails(
    cap: int, eol: str, skip: frozenset[bytes]
) -> None:
    """The cap counts the bytes of an event's lines (terminators included), not the blank line."""
    head = f"event: ping{eol}data: ".encode()
    size = cap - len(head) - len(eol)  # data bytes that make the block exactly `cap` long
    if size < 0:
        return
    ok = head + b"y" * size + eol.encode()
    assert len(ok) == cap
    stream = ok + eol.encode() + ok + eol.encode()
    got = run([stream], max_event_bytes=cap, skip=skip)
    assert got[1] is None and got[2] == 0
    too_long = head + b"y" * (size + 1) + eol.encode() + eol.encode()
    for chunks in ([too_long], [too_long[:-1], too_long[-1:]], [bytes([b]) for b in too_long]):
        assert run(chunks, max_event_bytes=cap, skip=skip)[1] is not None


def test_endless_line_is_refused_at_the_default_cap_with_bounded_memory() -> None:
    """An upstream that never ends its line would otherwise grow the buffer without bound."""
    d = SSEDecoder()
    piece = b"x" * (1024 * 1024)
    fed = 0
    with pytest.raises(SSEError, match="longer than 16777216 bytes") as info:
        d.feed(b"event: message_start\ndata: {")
        for _ in range(64):
            d.feed(piece)
            fed += len(piece)
            assert d.pending <= MAX_EVENT_BYTES
    assert fed <= MAX_EVENT_BYTES and info.value.events == []
    with pytest.raises(SSEError):  # stays failed
        d.feed(b"\n\n")


def test_endless_lines_without_a_blank_line_are_refused_too() -> None:
    d = SSEDecoder(max_event_bytes=4096)
    assert d.feed(b"data: first\n\n") == [SSEEvent("message", "first")]
    with pytest.raises(SSEError) as info:
        for _ in range(1000):
            d.feed(b"data: another line of the same event\n")
    assert info.value.events == []


def test_events_completed_before_the_overflow_in_the_same_chunk_travel_with_the_error() -> None:
    stream = b"data: a\n\ndata: b\n\ndata: " + b"z" * 100
    with pytest.raises(SSEError) as info:
        SSEDecoder(max_event_bytes=50).feed(stream)
    assert [e.data for e in info.value.events] == ["a", "b"]


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_event_bytes"):
        SSEDecoder(max_event_bytes=0)
