"""The Bedrock fake's own event-stream encoder (tests/fakes/eventstream.py) against the production
decoder: the two were written apart, so agreeing on every frame the fake sends, split at every
byte boundary, checks both."""

from __future__ import annotations

import pytest

from dataplane.codecs.eventstream import EventStreamDecoder, encode_message
from tests.fakes.bedrock import chunk, exception, stream_frames
from tests.fakes.eventstream import encode_frame

EMPTY_MESSAGE = bytes.fromhex("000000100000000005c248eb7d98c8ff")  # the AWS spec vector

MESSAGES: list[tuple[dict[str, str], bytes]] = [
    ({}, b""),
    ({":event-type": "chunk", ":message-type": "event"}, b'{"bytes": "e30="}'),
    ({":exception-type": "throttlingException", ":message-type": "exception"}, b"{}"),
    ({"n\u00e4me": "v\u00e4lue \u2603", "empty": ""}, "payload \u2603".encode()),
    ({"h": "x" * 300}, bytes(range(256)) * 4),
]


def test_the_spec_vector() -> None:
    assert encode_frame({}, b"") == EMPTY_MESSAGE


@pytest.mark.parametrize(("headers", "payload"), MESSAGES)
def test_the_production_codec_reads_and_writes_the_same_bytes(
    headers: dict[str, str], payload: bytes
) -> None:
    data = encode_frame(headers, payload)
    [message] = EventStreamDecoder().feed(data)
    assert (dict(message.headers), message.payload) == (headers, payload)
    assert encode_message(headers, payload) == data


def test_what_the_fake_sends_decodes_split_at_every_byte_boundary() -> None:
    sent = [
        *MESSAGES,
        ({":event-type": "chunk", ":message-type": "event"}, b"{}"),
    ]
    frames = [encode_frame(h, p) for h, p in sent]
    frames += stream_frames("claude-sonnet-4-5-20250929", ["Hello", " there"])
    frames += [chunk({"type": "ping"}), exception("modelStreamErrorException", "boom")]
    stream = b"".join(frames)
    whole = [(dict(m.headers), m.payload) for m in EventStreamDecoder().feed(stream)]
    assert len(whole) == len(frames)
    assert whole[: len(sent)] == sent
    for cut in range(len(stream) + 1):
        decoder = EventStreamDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [(dict(m.headers), m.payload) for m in got] == whole, f"split at byte {cut}"
        assert decoder.pending == 0
    decoder = EventStreamDecoder()
    byte_by_byte = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert [(dict(m.headers), m.payload) for m in byte_by_byte] == whole
