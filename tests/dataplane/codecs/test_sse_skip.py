"""SSEDecoder(skip=...): the full decoder's output minus the skipped events, at every split.

The oracle is the full decoder (itself checked against a transcription of the WHATWG algorithm in
test_sse.py). For every stream, skip set and chunking, each ``feed()`` call of the skipping decoder
must return exactly what the same call of the full decoder returns with the skipped events
filtered out, and ``pending`` / ``last_event_id`` must agree after every call.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterable, Sequence

import pytest

from dataplane.codecs import SSEDecoder, SSEEvent
from dataplane.codecs import sse as sse_module
from dataplane.metering.meter import METER_SKIP
from tests.dataplane.anthropic_streams import frame, text_stream, tool_use_stream
from tests.dataplane.codecs.test_sse import _TOKENS, FIXTURES

Trace = list[tuple[list[SSEEvent], int, str | None]]


def trace(decoder: SSEDecoder, chunks: Iterable[bytes]) -> Trace:
    """What every call returned, with ``pending`` and ``last_event_id`` after it."""
    out: Trace = [(decoder.feed(c), decoder.pending, decoder.last_event_id) for c in chunks]
    out.append((decoder.close(), decoder.pending, decoder.last_event_id))
    return out


def expected(skip: frozenset[bytes], chunks: Sequence[bytes]) -> Trace:
    return [
        ([e for e in events if e.event.encode() not in skip], pending, last_id)
        for events, pending, last_id in trace(SSEDecoder(), chunks)
    ]


def check(stream: bytes, skip: frozenset[bytes], cuts: Iterable[int]) -> None:
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert trace(SSEDecoder(skip=skip), chunks) == expected(skip, chunks), (stream, skip, bounds)


# --- streams --------------------------------------------------------------------------------------


def bench_like(deltas: int, eol: str = "\n") -> bytes:
    """The shape `make bench` serves: start, block start, many text deltas, stop, delta, stop."""
    return text_stream(texts=tuple(f"token{i:03d} of the answer " for i in range(deltas)), eol=eol)


ERROR_TAIL = (
    (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ),
)

EXTRA: dict[str, bytes] = {
    "bench_like": bench_like(12),
    "bench_like_crlf": bench_like(12, "\r\n"),
    "anthropic_error": text_stream(tail=ERROR_TAIL, finish=False),
    "anthropic_truncated": tool_use_stream()[:-30],
    "anthropic_bom": b"\xef\xbb\xbf" + text_stream(),
    # Keep-alive comments and blank lines between (and inside) frames.
    "comments_between": (
        b": hi\n\n"
        + frame("message_start", {"type": "message_start"})
        + b"\n\n: keepalive\n\n"
        + frame("ping", {"type": "ping"})
        + b"\n"
        + b"event: content_block_delta\n: mid-block comment\ndata: {}\n\n"
        + frame("message_stop", {"type": "message_stop"})
    ),
    # last_event_id must carry over through skipped events.
    "ids_in_skipped": (
        b"id: 1\nevent: message_start\ndata: a\n\n"
        b"event: ping\nid: 2\ndata: {}\n\n"
        b"event: ping\ndata: {}\nid: 3\n\n"
        b"id: x\0y\nevent: ping\ndata: {}\n\n"
        b"event: message_delta\ndata: b\n\n"
        b"event: ping\nid\ndata: {}\n\n"
        b"event: message_stop\ndata: c\n\n"
        b"event: ping\nid: 9\n\n"  # no data: not dispatched, but the id still counts
        b"event: message_stop\ndata: d\n\n"
        b"event: ping\nidx: 10\ndata: {}\n\n"  # an unknown field, not an id
        b"event: message_stop\ndata: e\n\n"
    ),
    # The last event line of a block decides its type.
    "renamed": (
        b"event: ping\nevent: message_delta\ndata: kept\n\n"
        b"event: message_delta\nevent: ping\ndata: dropped\n\n"
        b"event: ping\ndata: x\nevent: message_stop\ndata: kept too\n\n"
        b"data: first\nevent: ping\n\n"
        b"event: ping\nevent\ndata: default type\n\n"
        b"event: ping\neventual: not an event line\ndata: dropped\n\n"
    ),
    "near_names": (
        b"event:ping\ndata: no space, still ping\n\n"
        b"event:  ping\ndata: two spaces\n\n"
        b"event: ping \ndata: trailing space\n\n"
        b"event: pingx\ndata: longer\n\n"
        b"event: pin\ndata: shorter\n\n"
        b"Event: ping\ndata: case\n\n"
        b"event: Ping\ndata: case\n\n"
        b"event: \ndata: empty is message\n\n"
        b"event\ndata: no colon is message\n\n"
        b"event: message\ndata: explicit message\n\n"
        b"data: no event line\n\n"
    ),
    "retry_and_multiline": (
        b"event: ping\nretry: 100\ndata: a\ndata: b\n\n"
        b"retry: 200\nevent: message_start\ndata: c\ndata:\ndata: d\n\n"
        b"event: ping\ndata: e\nretry: 300\n\n"
        b"event: message_stop\ndata: f\n\n"
    ),
    "utf8_in_skipped": (
        "event: ping\ndata: 世界 😀\n\n".encode()
        + b"event: ping\ndata: \xff\xe2\x82\n\n"
        + "event: 世界\ndata: named in UTF-8\n\n".encode()
        + b"event: \xff\ndata: invalid name\n\n"
        + "event: \ufffd\ndata: replacement char\n\n".encode()
        + b"event: message_stop\ndata: end\n\n"
    ),
    "mixed_endings": (
        b"event: ping\ndata: a\n\n"
        b"event: ping\r\ndata: b\r\n\r\n"
        b"event: ping\rdata: c\r\r"
        b"event: message_start\ndata: d\r\n\n"
        b"event: ping\ndata: e\n\r"
        b"event: message_stop\ndata: f\n\n"
    ),
    "unterminated_skipped": b"event: message_start\ndata: a\n\nevent: ping\ndata: {}\n",
    "unterminated_kept": b"event: ping\ndata: {}\n\nevent: message_start\ndata: a",
    "only_blank_lines": b"\n\n\n\n",
}

STREAMS: dict[str, bytes] = {**FIXTURES, **EXTRA}

SKIPS: dict[str, frozenset[bytes]] = {
    "meter": METER_SKIP,
    "ping": frozenset({b"ping"}),
    "a": frozenset({b"a"}),
    "message": frozenset({b"message"}),
    "utf8": frozenset({"世界".encode(), b"x"}),
    "odd": frozenset({b"", b"a\nb", b"ping\r", b"lonely", b"message_start"}),
    "all": METER_SKIP | {b"message", b"message_start", b"message_delta", b"message_stop", b"a"},
}


def test_streams_cover_the_interesting_cases() -> None:
    """Guard against a vacuous oracle: every skip set drops events somewhere, and some are kept."""
    for skip in SKIPS.values():
        events = [e for s in STREAMS.values() for e in trace(SSEDecoder(), [s])[0][0]]
        assert any(e.event.encode() in skip for e in events)
        assert any(e.event.encode() not in skip for e in events)


# --- the property, at every split -------------------------------------------------------------------


@pytest.mark.parametrize("skip_name", sorted(SKIPS))
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_whole_and_every_split(name: str, skip_name: str) -> None:
    stream, skip = STREAMS[name], SKIPS[skip_name]
    check(stream, skip, [])
    for i in range(len(stream) + 1):
        check(stream, skip, [i])


@pytest.mark.parametrize("skip_name", sorted(SKIPS))
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_byte_by_byte(name: str, skip_name: str) -> None:
    stream = STREAMS[name]
    check(stream, SKIPS[skip_name], range(1, len(stream)))


@pytest.mark.parametrize("name", [n for n in sorted(STREAMS) if len(STREAMS[n]) < 140])
def test_every_pair_of_splits(name: str) -> None:
    stream = STREAMS[name]
    n = len(stream)
    for skip in (METER_SKIP, SKIPS["all"]):
        for i in range(n + 1):
            for j in range(i, n + 1):
                check(stream, skip, [i, j])


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_realistic_stream_in_fixed_size_chunks(eol: str) -> None:
    stream = bench_like(200, eol)
    for size in (5, 7, 64, 100, 1000, 3700, len(stream)):
        check(stream, METER_SKIP, range(size, len(stream), size))


# --- randomized: token soup and plausible frames, random chunkings (seeded) -----------------------

_SKIP_TOKENS = [
    b"event: ping\n",
    b"event: content_block_delta\n",
    b"event: message_start\n",
    b"event: \n",
    b"event: a\n",
    b"data: {}\n",
    b"data: \xff\n",
    b"id: 7\n",
    b"id\n",
    b"retry: 5\n",
    b": c\n",
    b"\n",
    b"\n\n",
    b"ev",
    b"ent",
]


_FRAME_NAMES = [
    "ping",
    "content_block_delta",
    "content_block_start",
    "message_start",
    "message_delta",
    "message_stop",
    "error",
    "message",
    "",
    "a",
]


def _random_frame(rng: random.Random, eol: str) -> bytes:
    lines: list[str] = []
    if rng.random() < 0.2:
        lines.append(rng.choice(["id: 1", "id: 2", "id", ": keepalive", "retry: 10", "foo: bar"]))
    name = rng.choice(_FRAME_NAMES)
    if name or rng.random() < 0.5:
        lines.append(f"event: {name}")
    for _ in range(rng.choice([0, 1, 1, 1, 1, 2, 3])):
        lines.append("data: " + json.dumps({"type": name, "text": rng.choice(["x", "é世😀", ""])}))
    if rng.random() < 0.1:
        lines.append(rng.choice(["event: ping", "event: message_delta", "id: 3", "data"]))
    sep = eol if eol != "mix" else rng.choice(["\n", "\r\n", "\r"])
    return (sep.join(lines) + sep + sep * rng.choice([1, 1, 1, 1, 0, 2])).encode()


def _random_cuts(rng: random.Random, n: int) -> list[int]:
    return sorted(rng.randint(0, n) for _ in range(rng.randint(0, 8)))


def test_random_token_streams() -> None:
    rng = random.Random(20251104)
    tokens = _TOKENS + _SKIP_TOKENS * 3
    skips = list(SKIPS.values())
    for _ in range(3000):
        stream = b"".join(rng.choice(tokens) for _ in range(rng.randint(0, 40)))
        check(stream, rng.choice(skips), _random_cuts(rng, len(stream)))


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r", "mix"])
def test_random_frame_streams(eol: str) -> None:
    rng = random.Random(f"frames{eol}")
    skips = list(SKIPS.values())
    for _ in range(600):
        stream = b"".join(_random_frame(rng, eol) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.2:
            stream = stream[: rng.randint(0, len(stream))]  # truncated
        check(stream, rng.choice(skips), _random_cuts(rng, len(stream)))


# --- what the fast path promises beyond equal output -------------------------------------------------


def test_skipped_events_are_never_built(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []

    def counting(*args: object) -> SSEEvent:
        built.append(str(args[0]))
        return SSEEvent(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sse_module, "SSEEvent", counting)
    for eol in ("\n", "\r\n", "\r"):  # the block scanner and the line parser alike
        built.clear()
        stream = bench_like(50, eol)
        d = SSEDecoder(skip=METER_SKIP)
        events = [e for i in range(0, len(stream), 97) for e in d.feed(stream[i : i + 97])]
        assert [e.event for e in events] == ["message_start", "message_delta", "message_stop"]
        assert built == ["message_start", "message_delta", "message_stop"]


def regions_seen_by(monkeypatch: pytest.MonkeyPatch, method: str) -> list[bytes]:
    """The regions every decoder hands its ``method`` (``_lines`` or ``_blocks``) from now on."""
    seen: list[bytes] = []
    real = getattr(SSEDecoder, method)

    def spy(self: SSEDecoder, region: bytes) -> list[SSEEvent]:
        seen.append(region)
        return real(self, region)

    monkeypatch.setattr(SSEDecoder, method, spy)
    return seen


def test_lf_skipped_blocks_bypass_the_line_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = regions_seen_by(monkeypatch, "_lines")
    stream = bench_like(200)
    SSEDecoder(skip=METER_SKIP).feed(stream)
    kept = [stream[stream.index(b"event: " + n) :] for n in (b"message_delta", b"message_start")]
    # Fed whole, the line parser sees exactly the three metered frames.
    assert seen == [
        kept[1][: kept[1].index(b"\n\n") + 2],
        kept[0],  # message_delta + message_stop: one contiguous run
    ]
    # In 8 pieces, cut anywhere, a skipped frame cut by a chunk boundary is held back and
    # matched whole with its end: the line parser still sees only the metered frames.
    seen.clear()
    d = SSEDecoder(skip=METER_SKIP)
    size = -(-len(stream) // 8)
    for i in range(0, len(stream), size):
        d.feed(stream[i : i + size])
    assert [r.split(b"\n", 1)[0] for r in seen] == [
        b"event: message_start",
        b"event: message_delta",
    ]


def test_a_long_skipped_block_arriving_line_by_line_is_not_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Holding an open block back re-reads it with each chunk; past a few KiB the line parser
    takes it as it arrives, so a block trickling in stays linear."""
    seen = regions_seen_by(monkeypatch, "_lines")
    line = b"data: " + b"x" * 200 + b"\n"
    stream = b"event: ping\n" + line * 100 + b"\nevent: message_stop\ndata: {}\n\n"
    cuts = [len(b"event: ping\n") + len(line) * i for i in range(101)]
    check(stream, METER_SKIP, cuts)
    seen.clear()
    d = SSEDecoder(skip=METER_SKIP)
    bounds = [0, *cuts, len(stream)]
    for a, b in itertools.pairwise(bounds):
        d.feed(stream[a:b])
    # Held while short (~4 KiB: the first ~20 lines), then one line per chunk.
    assert len(seen) > 70
    assert max(map(len, seen)) <= 4096 + len(line)


def test_a_streamed_token_at_a_block_boundary_is_one_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """A paced stream arrives one event per chunk: each skipped token is consumed by the
    whole-chunk match, never the block scanner; the first and last frames take the full path."""
    scanned = regions_seen_by(monkeypatch, "_blocks")
    stream = bench_like(30)
    chunks = [block + b"\n\n" for block in stream.split(b"\n\n")[:-1]]
    assert b"".join(chunks) == stream
    d = SSEDecoder(skip=METER_SKIP)
    events = [e for chunk in chunks for e in d.feed(chunk)]
    assert [e.event for e in events] == ["message_start", "message_delta", "message_stop"]
    assert [r.split(b"\n", 1)[0] for r in scanned] == [
        b"event: message_start",
        b"event: message_delta",
        b"event: message_stop",
    ]
    # Not at a block boundary (the previous chunk ended mid-block): the full path, same result.
    check(stream, METER_SKIP, [len(chunks[0]) + 5, len(chunks[0]) + len(chunks[1])])


def test_no_skip_is_the_full_decoder() -> None:
    stream = bench_like(20)
    assert SSEDecoder(skip=frozenset()).feed(stream) == SSEDecoder().feed(stream)


@pytest.mark.parametrize("bad", [b"\xff", b"ab\xe2\x82", "\ufffd".encode()])
def test_names_that_cannot_be_compared_as_bytes_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="skip"):
        SSEDecoder(skip=frozenset({b"ping", bad}))
