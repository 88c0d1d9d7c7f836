"""SSEDecoder: spec edge cases, split-invariance at every byte boundary, a reference decoder."""

from __future__ import annotations

import random
import re

import pytest

from dataplane.codecs import SSEDecoder, SSEEvent
from tests.dataplane.anthropic_streams import text_stream, tool_use_stream


def decode(*chunks: bytes) -> tuple[list[SSEEvent], int]:
    d = SSEDecoder()
    out: list[SSEEvent] = []
    for c in chunks:
        out += d.feed(c)
    out += d.close()
    return out, d.pending


def ev(
    data: str, event: str = "message", id: str | None = None, retry: int | None = None
) -> SSEEvent:
    return SSEEvent(event=event, data=data, id=id, retry=retry)


# --- a literal, slow transcription of the WHATWG algorithm, used as the oracle ---------------------

_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")


_STR_LINE = re.compile(r"([^\r\n]*)(\r\n|\r|\n)")


def reference(stream: bytes) -> tuple[list[SSEEvent], int]:
    """Decode the whole stream first (as the spec does), then split lines; pending from bytes."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    boundary = 0
    for m in _LINE.finditer(stream):
        if not m.group(1):
            boundary = m.end()
    events: list[SSEEvent] = []
    data, event = "", ""
    last_id: str | None = None
    retry: int | None = None
    for text_match in _STR_LINE.finditer(stream.decode("utf-8", "replace")):
        line = text_match.group(1)
        if line == "":
            if data:
                events.append(SSEEvent(event or "message", data.removesuffix("\n"), last_id, retry))
            data, event, retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            value = value.removeprefix(" ")
        else:
            name, value = line, ""
        if name == "data":
            data += value + "\n"
        elif name == "event":
            event = value
        elif name == "id":
            if "\0" not in value:
                last_id = value
        elif name == "retry":
            if value and all(c in "0123456789" for c in value):
                retry = int(value)
    return events, len(stream) - boundary


# --- fixtures -------------------------------------------------------------------------------------

FIXTURES: dict[str, bytes] = {
    "lf": b"event: a\ndata: 1\n\ndata: 2\n\n",
    "crlf": b"event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n",
    "cr": b"event: a\rdata: 1\r\rdata: 2\r\r",
    "mixed": b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\n\r",
    "bom": b"\xef\xbb\xbfdata: bom\n\n",
    "multiline": b"data: one\ndata: two\ndata:\ndata: four\n\n",
    "comments": b": keepalive\n:\ndata: x\n: mid\n\n",
    "nocolon": b"data\n\ndata\ndata\n\n",
    "spaces": b"data:no-space\ndata:  two-spaces\ndata: \n\n",
    "ids": b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n",
    "retry": b"retry: 1500\ndata: a\n\nretry: 15x\ndata: b\n\nretry:\ndata: c\n\nretry: \xd9\xa1\ndata: d\n\n",
    "unknown": b"foo: bar\nDATA: nope\ndata : nope\ndata: yes\n\n",
    "empty_data_no_dispatch": b"event: lonely\n\nid: 7\n\ndata: after\n\n",
    "utf8": "data: héllo wörld — 世界 😀\n\n".encode(),
    "invalid_utf8": b"data: \xff\xfe ok \xe2\x82\n\n",
    "truncated": b"data: done\n\nevent: x\ndata: partial",
    "truncated_after_line": b"data: done\n\ndata: partial\n",
    "anthropic_lf": text_stream(),
    "anthropic_crlf": text_stream(eol="\r\n"),
    "anthropic_cr": text_stream(eol="\r"),
    "anthropic_tools": tool_use_stream(),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_matches_reference(name: str) -> None:
    assert decode(FIXTURES[name]) == reference(FIXTURES[name])


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_split_at_every_boundary(name: str) -> None:
    stream = FIXTURES[name]
    whole = decode(stream)
    for i in range(len(stream) + 1):
        assert decode(stream[:i], stream[i:]) == whole, i


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_byte_by_byte(name: str) -> None:
    stream = FIXTURES[name]
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == decode(stream)


@pytest.mark.parametrize("name", [n for n in sorted(FIXTURES) if len(FIXTURES[n]) < 120])
def test_split_at_every_pair_of_boundaries(name: str) -> None:
    stream = FIXTURES[name]
    whole = decode(stream)
    n = len(stream)
    for i in range(n + 1):
        for j in range(i, n + 1):
            assert decode(stream[:i], stream[i:j], stream[j:]) == whole, (i, j)


def test_pending_after_each_event_is_zero_only_at_boundaries() -> None:
    stream = text_stream()
    d = SSEDecoder()
    for i in range(len(stream)):
        d.feed(stream[i : i + 1])
        at_boundary = stream[: i + 1].endswith(b"\n\n")
        assert (d.pending == 0) == at_boundary, i
    assert d.pending == 0


# --- spec edge cases, spelled out -----------------------------------------------------------------


def test_basic_and_default_event_name() -> None:
    assert decode(b"data: hi\n\n")[0] == [ev("hi")]
    assert decode(b"event: ping\ndata: {}\n\n")[0] == [ev("{}", "ping")]


def test_event_name_resets_after_dispatch() -> None:
    assert decode(b"event: a\ndata: 1\n\ndata: 2\n\n")[0] == [ev("1", "a"), ev("2")]


def test_multiple_data_lines_joined_with_newline() -> None:
    assert decode(FIXTURES["multiline"])[0] == [ev("one\ntwo\n\nfour")]


def test_only_one_space_after_colon_is_removed() -> None:
    assert decode(FIXTURES["spaces"])[0] == [ev("no-space\n two-spaces\n")]


def test_field_without_colon_has_empty_value() -> None:
    assert decode(FIXTURES["nocolon"])[0] == [ev(""), ev("\n")]


def test_comments_ignored() -> None:
    assert decode(FIXTURES["comments"])[0] == [ev("x")]


def test_blank_line_without_data_dispatches_nothing() -> None:
    events, _ = decode(FIXTURES["empty_data_no_dispatch"])
    # The "lonely" event type was reset; the id persisted.
    assert events == [ev("after", id="7")]


def test_unknown_and_case_sensitive_fields_ignored() -> None:
    assert decode(FIXTURES["unknown"])[0] == [ev("yes")]


def test_last_event_id_persists_and_nul_is_ignored() -> None:
    d = SSEDecoder()
    events = d.feed(FIXTURES["ids"])
    assert [e.id for e in events] == ["1", "1", "", ""]
    assert d.last_event_id == ""
    assert decode(b"data: x\n\n")[0] == [ev("x", id=None)]


def test_retry_only_when_all_ascii_digits_and_per_event() -> None:
    events, _ = decode(FIXTURES["retry"])
    assert [e.retry for e in events] == [1500, None, None, None]


def test_bom_stripped_once_even_when_split() -> None:
    stream = b"\xef\xbb\xbfdata: x\n\n"
    for i in range(5):
        assert decode(stream[:i], stream[i:])[0] == [ev("x")]
    assert decode(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n")[0] == []  # a second BOM is a field name
    assert decode(b"\xef\xbbdata: x\n\n")[0] == []  # a partial BOM is not stripped
    assert decode(b"\xef")[1] == 1  # held, and reported as pending


def test_crlf_split_across_chunks_is_one_line_ending() -> None:
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n")[0] == [ev("a\nb")]
    assert decode(b"data: a\r\n\r", b"\n")[0] == [ev("a")]
    d = SSEDecoder()
    assert d.feed(b"data: a\r\n\r") == [ev("a")]  # dispatched at the CR, without waiting
    assert d.feed(b"\n") == []
    assert d.pending == 0


def test_cr_only_blank_line() -> None:
    assert decode(b"data: a\r\rdata: b\r\r")[0] == [ev("a"), ev("b")]


def test_utf8_multibyte_split_everywhere() -> None:
    text = "héllo — 世界 😀"
    stream = f"data: {text}\n\n".encode()
    for i in range(len(stream) + 1):
        assert decode(stream[:i], stream[i:])[0] == [ev(text)]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode(FIXTURES["invalid_utf8"])[0] == [ev("\ufffd\ufffd ok \ufffd")]


def test_truncated_stream_discards_partial_event_and_reports_pending() -> None:
    events, pending = decode(FIXTURES["truncated"])
    assert events == [ev("done")]
    assert pending == len(b"event: x\ndata: partial")
    events, pending = decode(FIXTURES["truncated_after_line"])
    assert events == [ev("done")]
    assert pending == len(b"data: partial\n")


def test_pending_zero_after_clean_end_and_crlf() -> None:
    assert decode(FIXTURES["anthropic_crlf"])[1] == 0
    assert decode(b"data: a\r\n\r\n")[1] == 0


def test_empty_chunks_are_harmless() -> None:
    assert decode(b"", b"data: a\n", b"", b"\n", b"")[0] == [ev("a")]


def test_long_line_in_many_chunks() -> None:
    payload = "x" * 200_000
    stream = f"data: {payload}\n\n".encode()
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    assert decode(*chunks)[0] == [ev(payload)]


def test_anthropic_stream_events() -> None:
    events, pending = decode(FIXTURES["anthropic_lf"])
    assert pending == 0
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert '"世界 😀"' in events[5].data


# --- randomized differential test against the reference (seeded: reproducible) -------------------

_TOKENS = [
    b"data",
    b"event",
    b"id",
    b"retry",
    b":",
    b": ",
    b" ",
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b"x",
    b"42",
    b"\0",
    "é世😀".encode(),
    b"\xff",
    b"\xe2\x82",
    b"\xef\xbb\xbf",
]


def test_random_streams_and_chunkings_match_reference() -> None:
    rng = random.Random(20250929)
    for _ in range(1500):
        stream = b"".join(rng.choice(_TOKENS) for _ in range(rng.randint(0, 40)))
        expected = reference(stream)
        cuts = sorted(rng.randint(0, len(stream)) for _ in range(rng.randint(0, 6)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert decode(*chunks) == expected, (stream, cuts)
